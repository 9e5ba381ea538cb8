"""Open311 GeoReport v2 under ``/open311/v2``: citizens' apps and 12345 hotline
systems report problems and follow them (http://wiki.open311.org/GeoReport_v2).

============================================  ==========================================================
``GET  discovery.json``                        service discovery (this endpoint, its formats)
``GET  services.json``                         what citizens may report (``city/data/open311.yaml``)
``GET  services/{service_code}.json``          the questions asked with a service (its attributes)
``POST requests.json``                         report a problem (``api_key`` required) → ``[{token, service_notice}]``
``GET  tokens/{token}.json``                   → ``[{service_request_id, token}]`` once the case exists
``GET  requests.json``                         public requests (filters below); newest first
``GET  requests/{service_request_id}.json``    one request = one case (the case number is the id)
``GET  media/{sha256}.jpg``                    a photo a citizen uploaded with a request (metadata stripped)
============================================  ==========================================================

Every path also answers in XML with ``.xml`` instead of ``.json``; any other
format is 404. Errors are ``[{"code": <HTTP status>, "description": "<中文说明>"}]``
(``<errors><error>…`` in XML). Datetimes are ISO 8601 in the city's time zone
with its offset (``2026-11-23T10:00:00+08:00``).

Decisions:

- **Asynchronous, so services are ``type: batch``.** A POST validates and stores
  the request, queues a job of kind ``open311`` and answers 201 with a *token*
  at once; the worker runs the case pipeline (classify, dedupe, route, draft,
  review gate, dispatch). ``tokens/{token}.json`` gives the case number when
  there is one. GeoReport calls exactly this behaviour ``batch`` (``realtime``
  would return the service_request_id in the POST answer).
- **The chosen service guides the classification**: the pipeline reads
  ``【<service name>】<description>``; it may still choose another class (the
  request's ``service_code`` is then the case's). An answer to an attribute
  with ``maps_to: context`` becomes the case's location context, which the
  responsibility rules route on. Injected instructions in the description are
  text: the pipeline flags them and holds the case at its review gate.
- **What is public**: ``requests.json`` lists the cases citizens reported
  (sources 市民 and 热线) and any case an Open311 request was merged into;
  patrol findings (车巡/机巡/采集员) are not service requests. Descriptions and
  status notes are masked (:func:`city.cases.mask_text`); the reporter's name,
  phone, email and device id are never returned. ``media_url`` points only at
  photos uploaded through this API, re-encoded without EXIF (no GPS or device
  data); the original is kept as the case's evidence.
- **POST bodies**: ``application/x-www-form-urlencoded`` (the spec) and
  ``multipart/form-data`` with one file part ``media`` (JPEG/PNG/WebP/BMP/GIF/
  TIFF, at most :data:`MEDIA_MAX_BYTES`); text must be UTF-8. Coordinates are
  WGS-84 (the spec); ``crs=gcj02`` (an extension) converts GCJ-02 ones from
  Chinese map apps. ``api_key`` may also be given in the query string.
- **Idempotent resubmission**: the same client, ``device_id``, service, place and
  description again within :data:`RESUBMIT_WINDOW` answers the first token (200).
- **Rate limits** (:mod:`app.api.ratelimit`): POST per API key, GET per client IP.
- ``requests.json`` also takes ``page`` and ``page_size`` (the common extension).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl
from xml.etree.ElementTree import Element, SubElement, tostring

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator
from sqlalchemy import or_, select

from app.api.deps import services as get_services
from app.api.ratelimit import check, key_of_secret
from app.api.worker import handler, wake
from city import geo, settings
from city.bundle import CityData
from city.cases import Evidence, mask_text
from city.catalogue import Kind, Source
from city.datafiles import read_yaml, validate
from city.errors import DataError, NotFound, XunjianError
from city.lifecycle import OPEN
from city.store.schema import AuditRow, CaseRow, EvidenceRow, Open311RequestRow
from city.users import PermissionDenied

log = logging.getLogger("xunjian.open311")

SPEC = "http://wiki.open311.org/GeoReport_v2"
FORMATS = {"json": "application/json", "xml": "text/xml; charset=utf-8"}
MEDIA_MAX_BYTES = int(os.environ.get("XUNJIAN_OPEN311_MEDIA_MAX") or 10 * 1024 * 1024)
FORM_MAX_BYTES = 64 * 1024  # everything but the photo
MAX_PIXELS = 50_000_000
PUBLIC_MAX_SIDE = 2048  # the public copy of a photo is at most this wide/high
DESCRIPTION_MAX = 4000
RESUBMIT_WINDOW = timedelta(minutes=10)
LIST_MAX = 1000
DEFAULT_SPAN = timedelta(days=90)
PUBLIC_SOURCES = (Source.CITIZEN.value, Source.HOTLINE.value)
CLOSED = "closed"
PHOTO_FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MEDIA_NAME = re.compile(r"^([0-9a-f]{64})\.jpg$")
_ATTR = re.compile(r"^attribute\[([^\[\]]{1,64})\](\[\])?$")


# -- the city's data: open311.yaml ------------------------------------------------------------


class Value(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64)


class AttributeDef(BaseModel):
    """A question asked with a service (a GeoReport attribute)."""

    model_config = ConfigDict(extra="forbid")
    description: str = Field(min_length=1)
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    datatype_description: str = ""
    required: bool = False
    maps_to: Literal["context", "owner"] | None = None
    values: list[Value] = []

    @field_validator("values", mode="before")
    @classmethod
    def _plain(cls, v):
        return [{"key": x, "name": x} if isinstance(x, str) else x for x in v or []]


class ServiceDef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^\d{5}$")
    attributes: list[str] = []
    notice: str | None = None


class Open311Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notice: str = Field(min_length=1)
    attributes: dict[str, AttributeDef] = {}
    services: list[ServiceDef]

    _by_code: dict[str, ServiceDef] = PrivateAttr(default_factory=dict)

    def model_post_init(self, _context) -> None:
        self._by_code = {s.code: s for s in self.services}

    def service(self, code: str) -> ServiceDef | None:
        return self._by_code.get(code)


_CONFIGS: dict[Path, Open311Config] = {}


def load_config(city: CityData) -> Open311Config:
    """``open311.yaml`` of the city, checked against its catalogue and routing vocabulary."""
    folder = Path(city.folder)
    if folder in _CONFIGS:
        return _CONFIGS[folder]
    path = folder / "open311.yaml"
    cfg = validate(Open311Config, read_yaml(path), str(path))
    vocab = {"context": city.router.vocabulary.contexts, "owner": city.router.vocabulary.owners}
    for code, a in cfg.attributes.items():
        if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", code):
            raise DataError(f"{path}: attribute {code!r}: codes are letters, digits and _")
        if a.datatype.endswith("valuelist") and not a.values:
            raise DataError(f"{path}: attribute {code}: a {a.datatype} needs values")
        if a.maps_to:
            if a.datatype != "singlevaluelist":
                raise DataError(f"{path}: attribute {code}: maps_to needs a singlevaluelist")
            bad = [v.key for v in a.values if v.key not in vocab[a.maps_to]]
            if bad:
                raise DataError(f"{path}: attribute {code}: values {bad} are not {a.maps_to}s of routing.yaml")
    seen = set()
    for s in cfg.services:
        if s.code in seen:
            raise DataError(f"{path}: service {s.code} listed twice")
        seen.add(s.code)
        if (Kind.EVENT, s.code) not in city.catalogue:
            raise DataError(f"{path}: service {s.code}: no 事件 with this code in the catalogue")
        if Source.CITIZEN not in city.catalogue.get(s.code, Kind.EVENT).sources:
            raise DataError(f"{path}: service {s.code}: the catalogue does not list 市民 among its sources")
        unknown = [a for a in s.attributes if a not in cfg.attributes]
        if unknown:
            raise DataError(f"{path}: service {s.code}: unknown attributes {unknown}")
    _CONFIGS[folder] = cfg
    return cfg


# -- errors and formats -----------------------------------------------------------------------


class Open311Error(Exception):
    def __init__(self, status: int, description: str, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.status, self.description, self.headers = status, description, headers


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


def _read_limit(request: Request) -> None:
    if request.method in ("GET", "HEAD"):
        check(request, "open311_read")


router = APIRouter(prefix="/open311/v2", tags=["open311"], route_class=Open311Route,
                   dependencies=[Depends(_read_limit)])


def _fmt(fmt: str) -> str:
    if fmt not in FORMATS:
        raise Open311Error(404, f"不支持的格式「.{fmt[:16]}」：请使用 .json 或 .xml")
    return fmt


def _jurisdiction(city: CityData, jurisdiction_id: str | None) -> None:
    if jurisdiction_id and jurisdiction_id.strip() not in (city.settings.code, city.settings.name):
        raise Open311Error(404, f"jurisdiction_id「{jurisdiction_id[:32]}」不存在：本服务只受理 {city.settings.code}（{city.settings.name}）")


def _iso(dt: datetime | None, tz) -> str | None:
    return dt.astimezone(tz).isoformat(timespec="seconds") if dt else None


# -- services ---------------------------------------------------------------------------------


def _service_view(cfg: Open311Config, city: CityData, s: ServiceDef) -> dict:
    e = city.catalogue.get(s.code, Kind.EVENT)
    return {"service_code": e.code, "service_name": e.name, "description": e.definition or e.name,
            "metadata": bool(s.attributes), "type": "batch", "keywords": ", ".join(e.synonyms), "group": e.major_name}


def _definition_view(cfg: Open311Config, s: ServiceDef) -> dict:
    attrs = []
    for i, code in enumerate(s.attributes, start=1):
        a = cfg.attributes[code]
        view = {"variable": True, "code": code, "datatype": a.datatype, "required": a.required,
                "datatype_description": a.datatype_description or None, "order": i, "description": a.description}
        if a.values:
            view["values"] = [v.model_dump() for v in a.values]
        attrs.append(view)
    return {"service_code": s.code, "attributes": attrs}


@router.get("/discovery.{fmt}", summary="服务发现")
def discovery(fmt: str, request: Request) -> Response:
    fmt = _fmt(fmt)
    city = get_services(request).store.city
    base = str(request.url_for("services", fmt="json")).rsplit("/", 1)[0]
    data = {"changeset": "2026-11-24T00:00:00Z", "contact": f"{city.settings.name} 城市管理（数字城管）",
            "key_service": "API key 由管理员签发：POST /api/keys",
            "endpoints": [{"specification": SPEC, "url": base, "changeset": "2026-11-24T00:00:00Z",
                           "type": "production", "formats": ["application/json", "text/xml"]}]}
    return render(fmt, data, "discovery")


@router.get("/services.{fmt}", summary="可上报的问题类别")
def services(fmt: str, request: Request, jurisdiction_id: str | None = None) -> Response:
    fmt = _fmt(fmt)
    city = get_services(request).store.city
    _jurisdiction(city, jurisdiction_id)
    cfg = load_config(city)
    return render(fmt, [_service_view(cfg, city, s) for s in cfg.services], "services", "service")


@router.get("/services/{service_code}.{fmt}", summary="类别的问题定义（属性）")
def service_definition(service_code: str, fmt: str, request: Request, jurisdiction_id: str | None = None) -> Response:
    fmt = _fmt(fmt)
    city = get_services(request).store.city
    _jurisdiction(city, jurisdiction_id)
    cfg = load_config(city)
    s = cfg.service(service_code)
    if s is None:
        raise Open311Error(404, f"service_code「{service_code[:16]}」不存在：请先 GET services.json 查看可上报的类别")
    return render(fmt, _definition_view(cfg, s), "service_definition")


# -- POST requests: reading the body ------------------------------------------------------------


class Upload:
    def __init__(self, filename: str, content_type: str, data: bytes):
        self.filename, self.content_type, self.data = filename, content_type, data


async def _body(request: Request, limit: int, too_large: str) -> bytes:
    """The request body, refused with 413 (``too_large``) beyond ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise Open311Error(400, "Content-Length 无效")
        if int(length) > limit:
            raise Open311Error(413, too_large)
    buf = bytearray()
    async for chunk in request.stream():
        buf.extend(chunk)
        if len(buf) > limit:
            raise Open311Error(413, too_large)
    return bytes(buf)


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.3g} MB" if n >= 1024 * 1024 else f"{n / 1024:.3g} KB"


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Open311Error(400, f"{what}不是合法的 UTF-8 文本：请用 UTF-8 编码提交") from None


def _parse_urlencoded(body: bytes) -> list[tuple[str, str]]:
    text = _utf8(body, "请求体")
    try:
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=200)
    except UnicodeDecodeError:
        raise Open311Error(400, "请求体含有不是 UTF-8 的百分号编码：请用 UTF-8 编码提交") from None
    except ValueError as e:
        raise Open311Error(400, f"请求体不是合法的表单数据：{e}") from None


def _parse_multipart(body: bytes, content_type: str) -> tuple[list[tuple[str, str]], Upload | None]:
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise Open311Error(400, "multipart/form-data 缺少 boundary")
    fields: list[tuple[str, str]] = []
    upload: list[Upload] = []
    part: dict = {}

    def on_part_begin():
        part.clear()
        part.update(headers={}, data=bytearray(), hname=b"", hvalue=b"")

    def on_header_field(data, start, end):
        part["hname"] += data[start:end]

    def on_header_value(data, start, end):
        part["hvalue"] += data[start:end]

    def on_header_end():
        part["headers"][part["hname"].lower()] = part["hvalue"]
        part["hname"], part["hvalue"] = b"", b""

    def on_headers_finished():
        _, opts = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if b"name" not in opts:
            raise Open311Error(400, "multipart 的每一部分都要有 Content-Disposition 的 name")
        part["name"] = _utf8(opts[b"name"], "字段名")
        part["filename"] = _utf8(opts[b"filename"], "文件名") if b"filename" in opts else None
        if part["filename"] is not None and part["name"] != "media":
            raise Open311Error(400, f"文件字段「{part['name'][:32]}」不受理：照片请用字段名 media")
        if part["filename"] is None and len(fields) >= 200:
            raise Open311Error(400, "表单字段过多")

    def on_part_data(data, start, end):
        part["data"] += data[start:end]
        limit = MEDIA_MAX_BYTES if part.get("filename") is not None else FORM_MAX_BYTES
        if len(part["data"]) > limit:
            raise Open311Error(413, f"照片过大：最多 {_size(MEDIA_MAX_BYTES)}" if part.get("filename") is not None
                               else f"字段「{part['name'][:32]}」过长")

    def on_part_end():
        if part["filename"] is None:
            fields.append((part["name"], _utf8(bytes(part["data"]), f"字段「{part['name'][:32]}」")))
        elif part["data"] or part["filename"]:
            if upload:
                raise Open311Error(400, "每条诉求最多上传一张照片（字段 media）")
            ctype = _utf8(part["headers"].get(b"content-type", b""), "Content-Type")
            upload.append(Upload(part["filename"], ctype, bytes(part["data"])))

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    })
    try:
        parser.write(body)
        parser.finalize()
    except Open311Error:
        raise
    except Exception as e:  # noqa: BLE001 - python-multipart's errors: a malformed body
        raise Open311Error(400, f"multipart/form-data 格式错误：{type(e).__name__}") from None
    if upload and not upload[0].data:
        upload.clear()  # an empty file input: no photo
    return fields, upload[0] if upload else None


async def read_form(request: Request) -> tuple[dict[str, list[str]], Upload | None]:
    ctype = request.headers.get("content-type", "")
    kind = ctype.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        body = await _body(request, MEDIA_MAX_BYTES + FORM_MAX_BYTES,
                           f"请求过大：照片最多 {_size(MEDIA_MAX_BYTES)}，其余字段合计最多 {_size(FORM_MAX_BYTES)}")
        pairs, upload = _parse_multipart(body, ctype)
    elif kind == "application/x-www-form-urlencoded":
        body = await _body(request, FORM_MAX_BYTES, f"请求体过大：最多 {_size(FORM_MAX_BYTES)}（照片请用 multipart/form-data 上传）")
        pairs, upload = _parse_urlencoded(body), None
    else:
        raise Open311Error(415, f"不支持的 Content-Type「{kind[:64] or '无'}」：请用 application/x-www-form-urlencoded，"
                                "或带照片时用 multipart/form-data（文件字段 media）")
    form: dict[str, list[str]] = {}
    for k, v in [*request.query_params.multi_items(), *pairs]:
        form.setdefault(k, []).append(v)
    return form, upload


# -- POST requests: checking it -----------------------------------------------------------------


def _one(form: dict[str, list[str]], name: str, max_len: int) -> str | None:
    values = [v.strip() for v in form.get(name, [])]
    values = [v for v in values if v]
    if not values:
        return None
    if len(set(values)) > 1:
        raise Open311Error(400, f"参数 {name} 给了多个不同的值")
    v = values[0]
    if len(v) > max_len:
        raise Open311Error(400, f"参数 {name} 过长：最多 {max_len} 个字符")
    if _CONTROL.search(v.replace("\n", "").replace("\r", "").replace("\t", "")):
        raise Open311Error(400, f"参数 {name} 含有控制字符")
    return v


def _number(form, name: str) -> float | None:
    v = _one(form, name, 32)
    if v is None:
        return None
    try:
        x = float(v)
    except ValueError:
        raise Open311Error(400, f"{name} 必须是数字（WGS-84 十进制度），收到「{v}」") from None
    if not math.isfinite(x):
        raise Open311Error(400, f"{name} 必须是有限的数字")
    return x


def _location(form) -> tuple[float | None, float | None, str | None]:
    lat, lon = _number(form, "lat"), _number(form, "long")
    address = _one(form, "address_string", 256)
    if (lat is None) != (lon is None):
        raise Open311Error(400, "lat 和 long 要同时提供（纬度和经度，WGS-84）")
    if lat is None and not address:
        hint = "（本服务不能解析 address_id）" if _one(form, "address_id", 128) else ""
        raise Open311Error(400, f"缺少位置：请提供 lat 和 long（WGS-84），或 address_string{hint}")
    if lat is not None:
        crs = (_one(form, "crs", 8) or "wgs84").lower()
        if crs not in ("wgs84", "gcj02"):
            raise Open311Error(400, "crs 只能是 wgs84 或 gcj02")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            if -90 <= lon <= 90 and -180 <= lat <= 180 and geo.in_china(lon, lat):
                raise Open311Error(400, f"lat 和 long 写反了：lat 是纬度（如 29.56），long 是经度（如 106.55），收到 lat={lat}, long={lon}")
            raise Open311Error(400, f"坐标超出范围：lat 应在 -90…90，long 应在 -180…180，收到 lat={lat}, long={lon}")
        if not geo.in_china(lat, lon):
            if geo.in_china(lon, lat):
                raise Open311Error(400, f"lat 和 long 写反了：lat 是纬度（如 29.56），long 是经度（如 106.55），收到 lat={lat}, long={lon}")
            raise Open311Error(400, f"位置 {lat},{lon} 不在中国境内：请提供 WGS-84 坐标（lat 纬度，long 经度）")
        if crs == "gcj02":
            lat, lon = geo.gcj02_to_wgs84(lat, lon)
            lat, lon = round(lat, 7), round(lon, 7)
    return lat, lon, address


def _attributes(form, cfg: Open311Config, service: ServiceDef) -> dict[str, str | list[str]]:
    given: dict[str, list[str]] = {}
    for k, values in form.items():
        m = _ATTR.match(k)
        if m:
            given.setdefault(m.group(1), []).extend(v.strip() for v in values if v.strip())
        elif k.startswith("attribute"):
            raise Open311Error(400, f"参数 {k[:64]} 格式不对：应为 attribute[属性代码]")
    out: dict[str, str | list[str]] = {}
    for code, values in given.items():
        if code not in service.attributes:
            allowed = "、".join(service.attributes) or "无"
            raise Open311Error(400, f"类别 {service.code} 没有属性「{code[:32]}」（可用：{allowed}）")
        a = cfg.attributes[code]
        if not values:
            continue
        keys = {v.key for v in a.values}
        if a.datatype != "multivaluelist" and len(set(values)) > 1:
            raise Open311Error(400, f"属性 {code} 只能有一个值")
        for v in values:
            if len(v) > 1000:
                raise Open311Error(400, f"属性 {code} 的值过长")
            if a.values and v not in keys:
                raise Open311Error(400, f"属性 {code} 的值「{v[:32]}」不在可选范围内：{'、'.join(sorted(keys))}")
            if a.datatype == "number":
                try:
                    float(v)
                except ValueError:
                    raise Open311Error(400, f"属性 {code} 应为数字") from None
            if a.datatype == "datetime":
                try:
                    datetime.fromisoformat(v)
                except ValueError:
                    raise Open311Error(400, f"属性 {code} 应为 ISO 8601 时间") from None
        out[code] = sorted(set(values)) if a.datatype == "multivaluelist" else values[0]
    missing = [c for c in service.attributes if cfg.attributes[c].required and c not in out]
    if missing:
        raise Open311Error(400, f"缺少必填属性：{'、'.join(f'attribute[{c}]' for c in missing)}")
    return out


class Photo:
    def __init__(self, data: bytes, fmt: str):
        self.data, self.format = data, fmt
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.suffix = PHOTO_FORMATS[fmt]


def check_media(upload: Upload) -> Photo:
    """An image Pillow can read, in one of :data:`PHOTO_FORMATS`, not absurdly large."""
    from PIL import Image

    if len(upload.data) > MEDIA_MAX_BYTES:
        raise Open311Error(413, f"照片过大：最多 {_size(MEDIA_MAX_BYTES)}")
    try:
        with Image.open(io.BytesIO(upload.data)) as im:
            fmt, (w, h) = im.format, im.size
            if w * h > MAX_PIXELS:
                raise Open311Error(400, f"照片像素过多（{w}×{h}）：最多 {MAX_PIXELS // 1_000_000} 百万像素")
            im.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise Open311Error(400, "media 不是可读取的图片（支持 JPEG、PNG、WebP、BMP、GIF、TIFF）") from None
    if fmt not in PHOTO_FORMATS:
        raise Open311Error(400, f"media 是 {fmt} 格式，不支持（支持 JPEG、PNG、WebP、BMP、GIF、TIFF）")
    return Photo(upload.data, fmt)


def media_dirs() -> tuple[Path, Path]:
    """(originals: the cases' evidence, public copies without metadata)."""
    home = settings.home()
    return home / "evidence" / "open311", home / "open311" / "public"


def _write(path: Path, data: bytes) -> bool:
    """Write atomically; False when the file was already there (same content: same name)."""
    if path.is_file():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.part")  # concurrent uploads of one photo
    part.write_bytes(data)
    os.replace(part, path)
    return True


def save_photo(photo: Photo) -> tuple[Path, list[Path]]:
    """The original under ``evidence/open311/<sha256><ext>`` and a public JPEG without
    EXIF (orientation applied, at most 2048 px) under ``open311/public/<sha256>.jpg``:
    (the original's path, the files this call created)."""
    from PIL import Image, ImageOps

    originals, public = media_dirs()
    dest, pub = originals / f"{photo.sha256}{photo.suffix}", public / f"{photo.sha256}.jpg"
    created = []
    if not pub.is_file():
        with Image.open(io.BytesIO(photo.data)) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((PUBLIC_MAX_SIDE, PUBLIC_MAX_SIDE))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
        if _write(pub, buf.getvalue()):
            created.append(pub)
    if _write(dest, photo.data):
        created.append(dest)
    return dest, created


def _api_client(request: Request, store, form) -> str:
    """The client label of a valid API key (rate-limited per key, or per IP without one)."""
    key = _one(form, "api_key", 256)
    found = store.token(key) if key else None
    valid = found is not None and found[0] == "api_key"
    check(request, "open311_post", key_of_secret(key) if valid else None)
    if not key:
        raise Open311Error(403, "缺少 api_key：Open311 提交需要管理员签发的 API key")
    if not valid:
        raise Open311Error(403, "api_key 无效或已吊销")
    return found[2]


def _resubmitted(store, client: str, payload: dict) -> str | None:
    """The token of the same request from the same device within RESUBMIT_WINDOW."""
    if not payload.get("device_id"):
        return None
    since = datetime.now(UTC) - RESUBMIT_WINDOW
    same = ("device_id", "service_code", "description", "lat", "long", "address_string")
    with store.reading() as s:
        rows = s.execute(select(Open311RequestRow.token, Open311RequestRow.payload)
                         .where(Open311RequestRow.client == client, Open311RequestRow.received_at >= since)
                         .order_by(Open311RequestRow.received_at.desc()).limit(200)).all()
    for token, p in rows:
        if all(p.get(k) == payload.get(k) for k in same):
            return token
    return None


def accept(request: Request, form: dict[str, list[str]], upload: Upload | None) -> tuple[dict, int]:
    """Check a POSTed request, save it and queue it: (the answer, the status)."""
    store = get_services(request).store
    client = _api_client(request, store, form)
    city = store.city
    _jurisdiction(city, _one(form, "jurisdiction_id", 64))
    cfg = load_config(city)
    code = _one(form, "service_code", 16)
    if not code:
        raise Open311Error(400, "缺少 service_code：请先 GET services.json 查看可上报的类别")
    service = cfg.service(code)
    if service is None:
        raise Open311Error(400, f"service_code「{code}」不在受理范围：请先 GET services.json 查看可上报的类别")
    lat, lon, address = _location(form)
    description = _one(form, "description", DESCRIPTION_MAX) or ""
    payload = {
        "service_code": code, "lat": lat, "long": lon, "address_string": address,
        "address_id": _one(form, "address_id", 128), "description": description,
        "attributes": _attributes(form, cfg, service),
        "email": _one(form, "email", 254), "device_id": _one(form, "device_id", 128),
        "account_id": _one(form, "account_id", 128), "first_name": _one(form, "first_name", 32),
        "last_name": _one(form, "last_name", 32), "phone": _one(form, "phone", 32),
        "media_url": _one(form, "media_url", 1024), "media": [],
    }
    if payload["media_url"] and not payload["media_url"].startswith(("http://", "https://")):
        raise Open311Error(400, "media_url 必须是 http(s) 地址")
    photo = check_media(upload) if upload is not None else None
    notice = service.notice or cfg.notice
    if (token := _resubmitted(store, client, payload)) is not None:
        return {"token": token, "service_notice": f"相同的诉求刚刚已提交，沿用原 token。{notice}"}, 200
    created: list[Path] = []
    try:
        if photo is not None:
            path, created = save_photo(photo)
            payload["media"].append({"path": str(path), "sha256": photo.sha256, "format": photo.format,
                                     "bytes": len(photo.data)})
        req = store.add_open311(client, payload)
        store.add_job("open311", client, {"token": req.token}, job_id=job_id(req.token))
    except BaseException:
        for f in created:
            f.unlink(missing_ok=True)
        raise
    wake(request)
    return {"token": req.token, "service_notice": notice}, 201


def job_id(token: str) -> str:
    return f"open311-{token}"


@router.post("/requests.{fmt}", status_code=201, summary="提交诉求（异步：返回 token）")
async def post_request(fmt: str, request: Request) -> Response:
    """``application/x-www-form-urlencoded`` 或 ``multipart/form-data``（照片字段 media）。"""
    fmt = _fmt(fmt)
    form, upload = await read_form(request)
    answer, status = await run_in_threadpool(accept, request, form, upload)
    return render(fmt, [answer], "service_requests", "request", status=status)


# -- the worker: a request becomes a case -------------------------------------------------------


def report_of(token: str, payload: dict, city: CityData, cfg: Open311Config):
    """The pipeline's input for a stored Open311 request."""
    from agents.state import Report

    service = cfg.service(payload["service_code"])
    entry = city.catalogue.get(payload["service_code"], Kind.EVENT)
    description = payload.get("description") or ""
    prefix = f"【{entry.name}】"
    text = prefix + description if len(prefix) + len(description) <= DESCRIPTION_MAX else description
    mapped = {}
    for code, value in (payload.get("attributes") or {}).items():
        a = cfg.attributes.get(code)
        if a and a.maps_to and service and code in service.attributes:
            mapped[a.maps_to] = value
    name = "".join(x for x in (payload.get("last_name"), payload.get("first_name")) if x) or None
    evidence = [Evidence(kind="image", uri=m["path"], sha256=m["sha256"], note="市民上传照片（Open311）")
                for m in payload.get("media") or []]
    if payload.get("media_url"):
        evidence.append(Evidence(kind="link", uri=payload["media_url"], note="市民提供的照片链接（Open311）"))
    return Report(source=Source.CITIZEN, text=text, lat=payload.get("lat"), lon=payload.get("long"),
                  address=payload.get("address_string") or "", context=mapped.get("context"),
                  owner=mapped.get("owner"), reporter_name=name, reporter_phone=payload.get("phone"),
                  external_id=f"open311:{token}", evidence=evidence)


@handler("open311")
def process(job, services, progress) -> dict:
    """Run one Open311 request through the case pipeline and record its case."""
    store = services.store
    token = job.params["token"]
    req = store.open311(token)
    if req.status != "received":  # done before (a re-run of the job)
        return {"token": token, "case_number": req.case_number, "status": req.status}
    try:
        report = report_of(token, req.payload, store.city, load_config(store.city))
        result = services.pipeline.run(report)
    except Exception as e:
        store.open311_done(token, case_number=None, note=f"处理失败：{type(e).__name__}", failed=True)
        raise
    st = result.state
    number = st.case_number
    if result.waiting:
        outcome, note = "waiting", "已受理，等待人工审核后派遣"
    elif st.outcome == "attached":
        outcome, note = "attached", f"与未结案案件 {st.duplicate_of} 是同一问题，已并入该案件"
    elif st.outcome == "rejected":
        outcome, note = "rejected", "经审核不予立案"
    elif st.outcome == "dispatched":
        dept = st.route.department_name if st.route else ""
        outcome, note = "dispatched", f"已立案并派遣至{dept}"
    else:
        outcome, note = "unclassified", "未能归类到受理的问题类别，未立案"
    store.open311_done(token, case_number=number, note=note)
    return {"token": token, "case_number": number, "outcome": outcome}


# -- reading requests ----------------------------------------------------------------------------


def _opened_by_open311():
    return select(Open311RequestRow.case_number).where(Open311RequestRow.case_number.is_not(None))


def _visible():
    return or_(CaseRow.source.in_(PUBLIC_SOURCES), CaseRow.number.in_(_opened_by_open311()))


#: the columns a request view reads (not whole ORM rows: a page of 1000 loads 3× faster)
VIEW_COLUMNS = (CaseRow.id, CaseRow.number, CaseRow.status, CaseRow.title, CaseRow.code, CaseRow.description,
                CaseRow.department_id, CaseRow.created_at, CaseRow.updated_at, CaseRow.deadline, CaseRow.address,
                CaseRow.lat, CaseRow.lon)


def _views(request: Request, rows: list) -> list[dict]:
    """The GeoReport view of cases (one query each for their notes and photos)."""
    store = get_services(request).store
    city, tz = store.city, store.tz
    if not rows:
        return []
    ids = [r.id for r in rows]
    notes: dict[int, tuple[str, str]] = {}
    photos: dict[int, list[str]] = {}
    with store.reading() as s:
        for case_id, action, note in s.execute(
                select(AuditRow.case_id, AuditRow.action, AuditRow.note)
                .where(AuditRow.case_id.in_(ids), AuditRow.note != "").order_by(AuditRow.id)):
            notes[case_id] = (action, note)
        for case_id, sha in s.execute(
                select(EvidenceRow.case_id, EvidenceRow.sha256)
                .where(EvidenceRow.case_id.in_(ids), EvidenceRow.kind == "image", EvidenceRow.sha256.is_not(None))
                .order_by(EvidenceRow.id)):
            photos.setdefault(case_id, []).append(sha)
    _, public = media_dirs()
    try:
        cfg = load_config(city)
    except DataError:
        cfg = None
    out = []
    for r in rows:
        dept = city.departments.by_id[r.department_id].name if r.department_id in city.departments else None
        media = next((s for s in photos.get(r.id, []) if (public / f"{s}.jpg").is_file()), None)
        note = notes.get(r.id)
        service = cfg.service(r.code) if cfg else None
        out.append({
            "service_request_id": r.number,
            "status": "open" if r.status in OPEN_VALUES else CLOSED,
            "status_notes": mask_text(f"{note[0]}：{note[1]}") if note else None,
            "service_name": r.title,
            "service_code": r.code,
            "description": mask_text(r.description),
            "agency_responsible": dept,
            "service_notice": service.notice if service else None,  # (the general notice answers the POST)
            "requested_datetime": _iso(r.created_at, tz),
            "updated_datetime": _iso(r.updated_at, tz),
            "expected_datetime": _iso(r.deadline, tz),
            "address": r.address or None,
            "address_id": None,
            "zipcode": None,
            "lat": r.lat,
            "long": r.lon,
            "media_url": str(request.url_for("media", name=f"{media}.jpg")) if media else None,
        })
    return out


OPEN_VALUES = frozenset(s.value for s in OPEN)


def _csv(value: str | None, what: str, max_items: int = LIST_MAX) -> list[str]:
    items = [x.strip() for x in (value or "").split(",") if x.strip()]
    if len(items) > max_items:
        raise Open311Error(400, f"{what} 最多 {max_items} 个")
    return items


def _when(value: str | None, name: str, tz) -> datetime | None:
    """An ISO 8601 time; without an offset, in the city's time zone. A ``+`` left
    unencoded in the query string arrives as a space: read it as ``+``."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r".+T.+ \d{2}:?\d{2}", text):
        text = text.replace(" ", "+")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise Open311Error(400, f"{name} 不是 ISO 8601 时间（如 2026-11-23T00:00:00+08:00），收到「{value[:40]}」") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)


@router.get("/requests.{fmt}", summary="查询诉求（公开）")
def list_requests(
    fmt: str,
    request: Request,
    service_request_id: str | None = Query(None, description="案卷编号，逗号分隔；给出时忽略其他条件"),
    service_code: str | None = Query(None, description="类别代码，逗号分隔"),
    start_date: str | None = Query(None, description="受理时间不早于（ISO 8601）；默认 end_date 前 90 天"),
    end_date: str | None = Query(None, description="受理时间早于（ISO 8601）；默认现在"),
    status: str | None = Query(None, description="open 或 closed，逗号分隔"),
    jurisdiction_id: str | None = None,
    page: int = Query(1, ge=1, le=100_000),
    page_size: int = Query(LIST_MAX, ge=1, le=LIST_MAX),
) -> Response:
    fmt = _fmt(fmt)
    store = get_services(request).store
    _jurisdiction(store.city, jurisdiction_id)
    stmt = select(*VIEW_COLUMNS).where(_visible())
    ids = _csv(service_request_id, "service_request_id")
    if ids:
        stmt = stmt.where(CaseRow.number.in_(ids))
    else:
        codes = _csv(service_code, "service_code", 100)
        statuses = {s.lower() for s in _csv(status, "status", 2)}
        if statuses - {"open", "closed"}:
            raise Open311Error(400, "status 只能是 open 或 closed（可用逗号同时给出）")
        end = _when(end_date, "end_date", store.tz) or datetime.now(UTC)
        start = _when(start_date, "start_date", store.tz) or end - DEFAULT_SPAN
        if start_date and end_date and start >= end:
            raise Open311Error(400, "start_date 必须早于 end_date")
        stmt = stmt.where(CaseRow.created_at >= start, CaseRow.created_at < end)
        if codes:
            stmt = stmt.where(CaseRow.code.in_(codes))
        if statuses == {"open"}:
            stmt = stmt.where(CaseRow.status.in_(OPEN_VALUES))
        elif statuses == {"closed"}:
            stmt = stmt.where(CaseRow.status.not_in(OPEN_VALUES))
    stmt = stmt.order_by(CaseRow.created_at.desc(), CaseRow.id.desc()).limit(page_size).offset((page - 1) * page_size)
    with store.reading() as s:
        rows = s.execute(stmt).all()
    return render(fmt, _views(request, rows), "service_requests", "request")


@router.get("/requests/{service_request_id}.{fmt}", summary="查询一条诉求")
def get_request(service_request_id: str, fmt: str, request: Request, jurisdiction_id: str | None = None) -> Response:
    fmt = _fmt(fmt)
    store = get_services(request).store
    _jurisdiction(store.city, jurisdiction_id)
    with store.reading() as s:
        row = s.execute(select(*VIEW_COLUMNS).where(CaseRow.number == service_request_id, _visible())).one_or_none()
    if row is None:
        raise Open311Error(404, f"诉求「{service_request_id[:40]}」不存在")
    return render(fmt, _views(request, [row]), "service_requests", "request")


@router.get("/tokens/{token}.{fmt}", summary="用 token 查询案卷编号")
def get_token(token: str, fmt: str, request: Request, jurisdiction_id: str | None = None) -> Response:
    fmt = _fmt(fmt)
    store = get_services(request).store
    _jurisdiction(store.city, jurisdiction_id)
    if not re.fullmatch(r"[0-9a-f]{32}", token):
        raise Open311Error(404, "token 不存在")
    try:
        req = store.open311(token)
    except NotFound:
        raise Open311Error(404, "token 不存在") from None
    return render(fmt, [{"service_request_id": req.case_number, "token": req.token}], "service_requests", "request")


@router.get("/media/{name}", summary="市民上传的照片（已去除 EXIF）", name="media")
def media(name: str) -> Response:
    m = _MEDIA_NAME.match(name)
    path = media_dirs()[1] / name if m else None
    if path is None or not path.is_file():
        raise Open311Error(404, "照片不存在")
    return FileResponse(path, media_type="image/jpeg",
                        headers={"Cache-Control": "public, max-age=86400, immutable", "X-Content-Type-Options": "nosniff"})
