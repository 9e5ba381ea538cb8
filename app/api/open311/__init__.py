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
  TIFF, at most :data:`MEDIA_MAX_BYTES`), streamed to disk; text must be UTF-8. Coordinates are
  WGS-84 (the spec); ``crs=gcj02`` (an extension) converts GCJ-02 ones from
  Chinese map apps. ``api_key`` may also be given in the query string.
- **Idempotent resubmission**: the same client, ``device_id``, service, place and
  description again within :data:`RESUBMIT_WINDOW` answers the first token (200).
- **Rate limits** (:mod:`app.api.ratelimit`): POST per API key, GET per client IP.
- ``requests.json`` also takes ``page`` and ``page_size`` (the common extension).

Here: the router and its endpoints. The rest of the package: :mod:`.config`
(``open311.yaml``, the jurisdiction), :mod:`.formats` (JSON/XML, errors),
:mod:`.form` (reading a POST's body), :mod:`.intake` (checking and taking in a
POST), :mod:`.media` (its photo), :mod:`.job` (the worker's ``open311`` job),
:mod:`.views` (what GET shows).
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from sqlalchemy import select

from app.api.deps import services as get_services
from app.api.open311 import job  # noqa: F401 - registers the "open311" job handler
from app.api.open311.config import check_jurisdiction, load_config
from app.api.open311.form import FORM_MAX_BYTES, read_form
from app.api.open311.formats import Open311Error, Open311Route, check_format, render
from app.api.open311.intake import accept, job_id
from app.api.open311.media import media_dirs
from app.api.open311.views import (
    LIST_MAX,
    OPEN_VALUES,
    VIEW_COLUMNS,
    csv,
    definition_view,
    request_views,
    service_view,
    visible,
    when,
)
from app.api.ratelimit import check
from city.errors import NotFound
from city.store.schema import CaseRow

__all__ = ["FORM_MAX_BYTES", "MEDIA_MAX_BYTES", "job_id", "load_config", "media_dirs", "router"]

SPEC = "http://wiki.open311.org/GeoReport_v2"
MEDIA_MAX_BYTES = int(os.environ.get("XUNJIAN_OPEN311_MEDIA_MAX") or 10 * 1024 * 1024)
"""The largest photo a POST may carry (read at each POST)."""
DEFAULT_SPAN = timedelta(days=90)
_MEDIA_NAME = re.compile(r"^([0-9a-f]{64})\.jpg$")


def _read_limit(request: Request) -> None:
    if request.method in ("GET", "HEAD"):
        check(request, "open311_read")


router = APIRouter(prefix="/open311/v2", tags=["open311"], route_class=Open311Route,
                   dependencies=[Depends(_read_limit)])


# -- services ---------------------------------------------------------------------------------


@router.get("/discovery.{fmt}", summary="服务发现")
def discovery(fmt: str, request: Request) -> Response:
    fmt = check_format(fmt)
    city = get_services(request).store.city
    base = str(request.url_for("services", fmt="json")).rsplit("/", 1)[0]
    data = {"changeset": "2026-11-24T00:00:00Z", "contact": f"{city.settings.name} 城市管理（数字城管）",
            "key_service": "API key 由管理员签发：POST /api/keys",
            "endpoints": [{"specification": SPEC, "url": base, "changeset": "2026-11-24T00:00:00Z",
                           "type": "production", "formats": ["application/json", "text/xml"]}]}
    return render(fmt, data, "discovery")


@router.get("/services.{fmt}", summary="可上报的问题类别")
def services(fmt: str, request: Request, jurisdiction_id: str | None = None) -> Response:
    fmt = check_format(fmt)
    city = get_services(request).store.city
    check_jurisdiction(city, jurisdiction_id)
    cfg = load_config(city)
    return render(fmt, [service_view(city, s) for s in cfg.services], "services", "service")


@router.get("/services/{service_code}.{fmt}", summary="类别的问题定义（属性）")
def service_definition(service_code: str, fmt: str, request: Request, jurisdiction_id: str | None = None) -> Response:
    fmt = check_format(fmt)
    city = get_services(request).store.city
    check_jurisdiction(city, jurisdiction_id)
    cfg = load_config(city)
    s = cfg.service(service_code)
    if s is None:
        raise Open311Error(404, f"service_code「{service_code[:16]}」不存在：请先 GET services.json 查看可上报的类别")
    return render(fmt, definition_view(cfg, s), "service_definition")


# -- requests ---------------------------------------------------------------------------------


@router.post("/requests.{fmt}", status_code=201, summary="提交诉求（异步：返回 token）")
async def post_request(fmt: str, request: Request) -> Response:
    """``application/x-www-form-urlencoded`` 或 ``multipart/form-data``（照片字段 media）。"""
    fmt = check_format(fmt)
    with tempfile.TemporaryDirectory(prefix="xunjian-open311-") as tmp:
        form, photo = await read_form(request, Path(tmp), MEDIA_MAX_BYTES)
        answer, status = await run_in_threadpool(accept, request, form, photo)
    return render(fmt, [answer], "service_requests", "request", status=status)


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
    fmt = check_format(fmt)
    store = get_services(request).store
    check_jurisdiction(store.city, jurisdiction_id)
    stmt = select(*VIEW_COLUMNS).where(visible())
    ids = csv(service_request_id, "service_request_id")
    if ids:
        stmt = stmt.where(CaseRow.number.in_(ids))
    else:
        codes = csv(service_code, "service_code", 100)
        statuses = {s.lower() for s in csv(status, "status", 2)}
        if statuses - {"open", "closed"}:
            raise Open311Error(400, "status 只能是 open 或 closed（可用逗号同时给出）")
        end = when(end_date, "end_date", store.tz) or datetime.now(UTC)
        start = when(start_date, "start_date", store.tz) or end - DEFAULT_SPAN
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
    return render(fmt, request_views(request, rows), "service_requests", "request")


@router.get("/requests/{service_request_id}.{fmt}", summary="查询一条诉求")
def get_request(service_request_id: str, fmt: str, request: Request, jurisdiction_id: str | None = None) -> Response:
    fmt = check_format(fmt)
    store = get_services(request).store
    check_jurisdiction(store.city, jurisdiction_id)
    with store.reading() as s:
        row = s.execute(select(*VIEW_COLUMNS).where(CaseRow.number == service_request_id, visible())).one_or_none()
    if row is None:
        raise Open311Error(404, f"诉求「{service_request_id[:40]}」不存在")
    return render(fmt, request_views(request, [row]), "service_requests", "request")


@router.get("/tokens/{token}.{fmt}", summary="用 token 查询案卷编号")
def get_token(token: str, fmt: str, request: Request, jurisdiction_id: str | None = None) -> Response:
    fmt = check_format(fmt)
    store = get_services(request).store
    check_jurisdiction(store.city, jurisdiction_id)
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
