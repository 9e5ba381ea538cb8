"""How Open311 answers: JSON or XML by the path's extension (:func:`render`), and
every error as ``[{"code", "description"}]`` (``<errors><error>…`` in XML) —
:class:`Open311Error` from the endpoints, and the app's own errors (validation,
rate limits, not found…) turned into the same by :class:`Open311Route`."""

from __future__ import annotations

import logging
import re
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from city.errors import DataError, NotFound, XunjianError
from city.users import PermissionDenied

log = logging.getLogger("xunjian.open311")

FORMATS = {"json": "application/json", "xml": "text/xml; charset=utf-8"}


class Open311Error(Exception):
    def __init__(self, status: int, description: str, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.status, self.description, self.headers = status, description, headers


def check_format(fmt: str) -> str:
    """The format of a path's extension: ``json`` or ``xml``; else 404."""
    if fmt not in FORMATS:
        raise Open311Error(404, f"不支持的格式「.{fmt[:16]}」：请使用 .json 或 .xml")
    return fmt


_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SINGULAR = {"attributes": "attribute", "values": "value", "endpoints": "endpoint", "formats": "format"}


def _fill(el: Element, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            child = SubElement(el, k)
            if isinstance(v, list):
                for x in v:
                    _fill(SubElement(child, _SINGULAR.get(k, "item")), x)
            else:
                _fill(child, v)
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    elif value is not None:
        el.text = _XML_BAD.sub("", str(value))


def render(fmt: str, data: Any, root: str, item: str | None = None, *, status: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    """``data`` (a list of ``item`` dicts, or one dict when ``item`` is None) as JSON or XML."""
    if fmt == "xml":
        top = Element(root)
        for d in data if item else [data]:
            _fill(SubElement(top, item) if item else top, d)
        body = '<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(top, encoding="unicode")
        return Response(body.encode(), status_code=status, media_type=FORMATS["xml"], headers=headers)
    return JSONResponse(data, status_code=status, headers=headers)


def error(status: int, description: str, fmt: str = "json", headers: dict[str, str] | None = None) -> Response:
    return render(fmt, [{"code": status, "description": description}], "errors", "error", status=status, headers=headers)


def _path_format(request: Request) -> str:
    return "xml" if request.url.path.endswith(".xml") else "json"


class Open311Route(APIRoute):
    """Every error of these endpoints in the Open311 format (and their format)."""

    def get_route_handler(self):
        inner = super().get_route_handler()

        async def route(request: Request) -> Response:
            fmt = _path_format(request)
            try:
                return await inner(request)
            except Open311Error as e:
                return error(e.status, e.description, fmt, e.headers)
            except HTTPException as e:  # RateLimited and friends
                return error(e.status_code, str(e.detail), fmt, getattr(e, "headers", None))
            except RequestValidationError as e:
                first = (e.errors() or [{"loc": (), "msg": "invalid"}])[0]
                name = ".".join(str(p) for p in first["loc"] if p not in ("query", "path", "body")) or "参数"
                return error(400, f"参数 {name} 无效：{first['msg']}", fmt)
            except NotFound as e:
                return error(404, str(e), fmt)
            except PermissionDenied as e:
                return error(403, str(e), fmt)
            except DataError as e:
                log.error("open311: %s", e)
                return error(500, f"服务器的城市数据有误：{e}", fmt)
            except XunjianError as e:
                return error(400, str(e), fmt)

        return route
