"""Errors as JSON: ``{"detail": "<一句中文说明>", "error": "<kind>"}`` with the right status.

The domain raises :class:`city.errors.XunjianError` subclasses with messages meant
for the user; here they become 4xx answers, so no endpoint needs its own try/except.
An endpoint's own ``HTTPException`` (401, 404 of a route, 413, 429 …) gets the same
shape, its ``error`` named by the status (:data:`HTTP_KINDS`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from city.errors import (
    DataError,
    IllegalTransition,
    InvalidInput,
    NotFound,
    XunjianError,
)
from city.users import PermissionDenied

STATUS = [
    (PermissionDenied, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (IllegalTransition, 409, "illegal_transition"),
    (InvalidInput, 422, "invalid_input"),
    (DataError, 500, "data_error"),
    (XunjianError, 400, "error"),
]

#: ``error`` of an ``HTTPException`` by its status (others: ``http_<status>``).
HTTP_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 413: "too_large", 415: "unsupported_media_type", 416: "range_not_satisfiable",
              422: "invalid_input", 429: "rate_limited", 503: "unavailable"}
_PHRASES = {"Not Found": "没有这个地址", "Method Not Allowed": "这个地址不支持该请求方法"}


#: pydantic error types → a Chinese sentence (``ctx`` fills the braces); others keep pydantic's text.
_ZH = {
    "missing": "必填",
    "less_than_equal": "应不大于 {le}",
    "less_than": "应小于 {lt}",
    "greater_than_equal": "应不小于 {ge}",
    "greater_than": "应大于 {gt}",
    "string_too_short": "至少 {min_length} 个字符",
    "string_too_long": "最多 {max_length} 个字符",
    "string_pattern_mismatch": "格式不对（应匹配 {pattern}）",
    "int_parsing": "应为整数",
    "int_from_float": "应为整数",
    "float_parsing": "应为数字",
    "bool_parsing": "应为 true 或 false",
    "enum": "应为以下之一：{expected}",
    "literal_error": "应为以下之一：{expected}",
    "datetime_parsing": "时间格式无效，应为 ISO 8601（如 2026-11-24T09:30+08:00）",
    "datetime_from_date_parsing": "时间格式无效，应为 ISO 8601（如 2026-11-24 或 2026-11-24T09:30）",
    "date_parsing": "日期格式无效，应为 2026-11-24 这样的格式",
    "dict_type": "应为 JSON 对象",
    "list_type": "应为列表",
    "string_type": "应为字符串",
    "model_attributes_type": "应为 JSON 对象",
    "extra_forbidden": "不认识这个字段",
}


def _message(error: dict) -> str:
    template = _ZH.get(error.get("type", ""))
    if template is None:
        msg = error.get("msg", "无效")
        return msg.removeprefix("Value error, ")
    try:
        return template.format(**{k: v for k, v in (error.get("ctx") or {}).items()})
    except (KeyError, IndexError):
        return error.get("msg", "无效")


def _field(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p not in ("body", "query", "path", "form")) or "input"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(XunjianError)
    async def _domain(request: Request, exc: XunjianError):
        for cls, status, kind in STATUS:
            if isinstance(exc, cls):
                return JSONResponse({"detail": str(exc), "error": kind}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = _PHRASES.get(exc.detail, exc.detail)  # Starlette's own English phrases (an unknown path …)
        return JSONResponse({"detail": detail, "error": HTTP_KINDS.get(exc.status_code, f"http_{exc.status_code}")},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid"}
        msg = "请求体不是合法的 JSON" if first.get("type") == "json_invalid" else f"{_field(first['loc'])}：{_message(first)}"
        return JSONResponse({"detail": msg, "error": "invalid_input",
                             "fields": [{"field": _field(e["loc"]), "message": _message(e)} for e in errors]},
                            status_code=422)
