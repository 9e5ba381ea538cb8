"""Errors as JSON: ``{"detail": "<一句中文说明>", "error": "<kind>"}`` with the right status.

The domain raises :class:`city.errors.XunjianError` subclasses with messages meant
for the user; here they become 4xx answers, so no endpoint needs its own try/except.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from city.errors import DataError, IllegalTransition, InvalidInput, NotFound, XunjianError
from city.users import PermissionDenied

STATUS = [
    (PermissionDenied, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (IllegalTransition, 409, "illegal_transition"),
    (InvalidInput, 422, "invalid_input"),
    (DataError, 500, "data_error"),
    (XunjianError, 400, "error"),
]


def _field(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p not in ("body", "query", "path", "form")) or "input"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(XunjianError)
    async def _domain(request: Request, exc: XunjianError):
        for cls, status, kind in STATUS:
            if isinstance(exc, cls):
                return JSONResponse({"detail": str(exc), "error": kind}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid"}
        msg = "请求体不是合法的 JSON" if first.get("type") == "json_invalid" else f"{_field(first['loc'])}：{first['msg']}"
        return JSONResponse({"detail": msg, "error": "invalid_input",
                             "fields": [{"field": _field(e["loc"]), "message": e["msg"]} for e in errors]},
                            status_code=422)
