"""Cases: the list, one case with its evidence files, lifecycle actions (with
photos), the edited reply to the citizen, and the review gate's queue.

The rules are the CLI's (``xunjian cases act``, ``xunjian review``) and the
roles' (:mod:`city.users`): a department user sees only its own department's
cases and takes only the department's actions on them (签收、处置完成、退回); a
viewer reads; a dispatcher or an admin does everything. Every change is audited
under the signed-in user's name; a refused request writes nothing.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from agents.state import Triage
from app.api.deps import CurrentUser, Manager, ServicesDep, StoreDep, Writer
from city.bundle import CityData
from city.cases import Case, CaseQuery, Evidence, mask_text
from city.catalogue import Kind, Risk, Source, Urgency, WorkDuration
from city.errors import IllegalTransition, InvalidInput, NotFound, XunjianError
from city.lifecycle import (
    WITH_DEPARTMENT,
    Action,
    Status,
    allowed_actions,
    parse_action,
    transition,
)
from city.photos import check_photos, copy_photos, photo_note, remove_files
from city.store import Store
from city.users import DEPARTMENT_ACTIONS, PermissionDenied, Role, User

router = APIRouter(prefix="/api", tags=["cases"])

REPLY_EDITED = "修改回复稿"  # the audit action of an edited reply to the citizen (status unchanged)
SUMMARY_CHARS = 120
MAX_PHOTOS, MAX_PHOTO_BYTES = 12, 25 << 20
#: Evidence files served to the browser, by suffix (never SVG or HTML: they could carry scripts).
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif",
               ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff", ".mp4": "video/mp4",
               ".mov": "video/quicktime", ".webm": "video/webm", ".avi": "video/x-msvideo", ".mkv": "video/x-matroska"}
CITIZEN_SOURCES = (Source.CITIZEN, Source.HOTLINE)


# -- reading what the client sends --------------------------------------------------------------


def parse_time(text: str | None, tz: ZoneInfo, *, end: bool = False) -> datetime | None:
    """ISO 8601 (no zone: the city's); a bare date is its midnight, or for an ``end``
    the next midnight (the day included)."""
    if not text or not text.strip():
        return None
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"时间「{text}」无法识别；应为 ISO 8601，如 2026-11-23 或 2026-11-23T09:00+08:00") from None
        return t if t.tzinfo else t.replace(tzinfo=tz)
    return datetime.combine(day + timedelta(days=1 if end else 0), datetime.min.time(), tzinfo=tz)


def _statuses(values: list[str] | None) -> list[Status] | None:
    words = [w.strip() for v in values or () for w in re.split(r"[,，、]", v) if w.strip()]
    try:
        return [Status(w) for w in words] or None
    except ValueError:
        raise InvalidInput(f"未知状态；可用：{'、'.join(s.value for s in Status)}") from None


def case_filters(
    user: CurrentUser,
    store: StoreDep,
    status: Annotated[list[str] | None, Query(description="状态，可多次给出或用逗号分隔，如 派遣,处置中")] = None,
    department_id: Annotated[str | None, Query(description="承办单位编号，如 JB-HW")] = None,
    code: Annotated[str | None, Query(pattern=r"^\d{5}$", description="目录代码，如 06010")] = None,
    source: Annotated[Source | None, Query(description="来源：车巡、机巡、市民、热线、采集员")] = None,
    district_id: Annotated[str | None, Query(description="区划代码")] = None,
    street_id: Annotated[str | None, Query(description="街道编号")] = None,
    since: Annotated[str | None, Query(description="上报时间不早于（ISO 8601；无时区按本市时区）")] = None,
    until: Annotated[str | None, Query(description="上报时间早于（日期则含当天）")] = None,
    overdue: Annotated[bool | None, Query(description="true：在办且已过处置时限；false：未超期")] = None,
    q: Annotated[str | None, Query(max_length=100, description="在编号、描述、地址中查找的文字")] = None,
) -> CaseQuery:
    """The list filters of ``/api/cases`` and ``/api/map/cases``; a department user
    gets its own department's cases only."""
    if user.role is Role.DEPARTMENT:
        if department_id and department_id != user.department_id:
            raise PermissionDenied(f"{user.label} 只能查看本单位（{user.department_id}）的案件")
        department_id = user.department_id
    tz = store.tz
    return CaseQuery(status=_statuses(status), department_id=department_id or None, code=code, source=source,
                     district_id=district_id or None, street_id=street_id or None, since=parse_time(since, tz),
                     until=parse_time(until, tz, end=True), overdue=overdue, as_of=datetime.now(tz), text=q or None)


CaseFilters = Annotated[CaseQuery, Depends(case_filters)]


# -- what the API answers -----------------------------------------------------------------------


class CaseSummary(BaseModel):
    number: str
    status: Status
    source: Source
    kind: Kind
    code: str
    title: str
    description: str = Field(description="描述（已脱敏，最多 120 字）")
    address: str
    lat: float | None
    lon: float | None
    district_id: str | None
    street_id: str | None
    grid_id: str | None
    department_id: str | None
    department_name: str | None
    urgency: Urgency
    risk_level: Risk
    deadline: datetime | None
    overdue: bool = Field(description="在办（派遣/处置中）且已过处置时限")
    created_at: datetime
    updated_at: datetime


class CasePage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[CaseSummary]
    next_after: str | None = Field(default=None, description="下一页用 ?after=此编号（键集分页，深翻页也快）；没有下一页时为空")


class EvidenceOut(Evidence):
    url: str | None = Field(default=None, description="本地图片/视频文件的地址（/api/cases/{编号}/evidence/{序号}）")
    box: list[float] | None = Field(default=None, description="检测框 [x1, y1, x2, y2]，为图片宽、高的比例（0–1）")


class CaseOut(Case):
    evidence: list[EvidenceOut] = Field(default_factory=list)


class Routing(BaseModel):
    rule: str | None
    principle: str | None
    note: str | None
    department_id: str | None
    department_name: str | None


class Reply(BaseModel):
    text: str
    edited_by: str | None = None
    edited_at: datetime | None = None


class CaseDetail(BaseModel):
    case: CaseOut
    department_name: str | None
    overdue: bool
    routing: Routing
    triage: Triage | None = Field(description="流水线分类（非流水线案件为空）")
    record: dict | None = Field(description="流水线起草的案卷")
    reply: Reply | None = Field(description="回复市民的草稿（有修改时为最近一次修改）")
    waiting: dict | None = Field(description="在审核关口等待时：原因、拟派单位")
    allowed_actions: list[str] = Field(description="该用户当前可执行的流程操作（在审核关口等待时为空：请用审核队列）")
    areas: dict[str, str | None] = Field(description="区划名称：district、street、grid")


def area_names(city: CityData, case: Case) -> dict[str, str | None]:
    j = city.jurisdiction
    names = {}
    for level, areas, area_id in (("district", j.districts, case.district_id), ("street", j.streets, case.street_id),
                                  ("grid", j.grids, case.grid_id)):
        area = areas.get(area_id) if area_id else None
        names[level] = area.name if area else None
    return names


def department_name(city: CityData, dept_id: str | None) -> str | None:
    dept = city.departments.by_id.get(dept_id) if dept_id else None
    return dept.name if dept else dept_id


def is_overdue(case: Case, now: datetime) -> bool:
    return case.status in WITH_DEPARTMENT and case.deadline is not None and case.deadline < now


def summarize(case: Case, city: CityData, now: datetime) -> CaseSummary:
    text = mask_text(case.description)
    if len(text) > SUMMARY_CHARS:
        text = text[:SUMMARY_CHARS - 1] + "…"
    data = case.model_dump(include=set(CaseSummary.model_fields) - {"description", "address"})
    return CaseSummary(**data, description=text, address=mask_text(case.address or ""),
                       department_name=department_name(city, case.department_id), overdue=is_overdue(case, now))


def user_actions(user: User, case: Case) -> list[str]:
    """The lifecycle actions ``user`` may take on ``case`` now."""
    if user.role is Role.VIEWER or not user.can_see(case):
        return []
    acts = allowed_actions(case.status)
    if not user.manages:
        acts = [a for a in acts if a in DEPARTMENT_ACTIONS]
    return [a.value for a in acts]


def visible_case(store: Store, user: User, number: str) -> Case:
    try:
        case = store.get(number)
    except NotFound:
        raise NotFound(f"案件 {number} 不存在") from None
    user.require_see(case)
    return case


def local_media(ev: Evidence) -> tuple[Path, str] | None:
    """(path, media type) of evidence that is a local image or video file."""
    uri = ev.uri
    if ev.kind not in ("image", "video") or not uri:
        return None
    if uri.startswith("file://"):
        uri = unquote(urlsplit(uri).path)
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.\-]+:", uri):  # http:, report:, footage: … (not C:\)
        return None
    media = MEDIA_TYPES.get(Path(uri).suffix.lower())
    return (Path(uri), media) if media else None


def _boxes(store: Store, case: Case) -> dict[str, list[float]]:
    """Evidence-frame uri → the detection box as fractions of the frame, for the
    observations the case came from (its own, a repeat's, a 核查's)."""
    ids = set()
    if (case.external_id or "").startswith("obs:"):
        ids.add(case.external_id[4:])
    for ev in case.evidence:
        if ev.uri.startswith("report:obs:"):
            ids.add(ev.uri[len("report:obs:"):])
        ids.update(re.findall(r"（观测 ([^）\s]+)）", ev.note))
    out = {}
    for oid in sorted(ids):
        try:
            o = store.observation(oid)
        except NotFound:
            continue
        size = _source_size(store, o) if o.frame_uri else None
        if size:
            w, h = size
            out[o.frame_uri] = [round(o.box[0] / w, 4), round(o.box[1] / h, 4), round(o.box[2] / w, 4), round(o.box[3] / h, 4)]
    return out


def _source_size(store: Store, o) -> tuple[int, int] | None:
    """Width and height of the frame the box was found in (the camera of its file)."""
    done = store.done_file(o.batch_id, o.file, o.file_sha256)
    cam = ((done.stats if done else {}).get("view") or {}).get("camera") or {}
    if cam.get("width") and cam.get("height"):
        return cam["width"], cam["height"]
    try:  # the evidence frame is the whole frame, downscaled only when wider than 960 px
        from PIL import Image

        with Image.open(o.frame_uri) as im:
            return im.size if im.size[0] < 960 else None
    except OSError:
        return None


def _run(svc, case: Case):
    """The pipeline run of a case it created, else None."""
    if not case.external_id:
        return None
    try:
        return svc.pipeline.state_of(case.number)
    except NotFound:
        return None


def _reply(case: Case, run) -> Reply | None:
    for h in reversed(case.history):
        if h.action == REPLY_EDITED and "text" in h.data:
            return Reply(text=h.data["text"], edited_by=h.actor, edited_at=h.at)
    if run is not None and run.state.reply:
        return Reply(text=run.state.reply.get("text", ""))
    return None


def case_detail(svc, user: User, case: Case) -> CaseDetail:
    store, city, now = svc.store, svc.store.city, datetime.now(svc.store.tz)
    pub, boxes = case.public(), _boxes(store, case)
    evidence = []
    for i, ev in enumerate(case.evidence):
        media = local_media(ev)
        url = f"/api/cases/{case.number}/evidence/{i}" if media and media[0].is_file() else None
        evidence.append(EvidenceOut(**{**ev.model_dump(), "note": mask_text(ev.note)}, url=url, box=boxes.get(ev.uri)))
    run = _run(svc, case)
    waiting = run.waiting if run else None
    if waiting:
        waiting = {**waiting, "department_name": department_name(city, waiting.get("department_id"))}
    return CaseDetail(
        case=CaseOut(**pub.model_dump(exclude={"evidence"}), evidence=evidence),
        department_name=department_name(city, case.department_id), overdue=is_overdue(case, now),
        routing=Routing(rule=case.route_rule, principle=case.route_principle, note=case.route_note,
                        department_id=case.department_id, department_name=department_name(city, case.department_id)),
        triage=run.state.triage if run else None, record=run.state.record if run else None, reply=_reply(case, run),
        waiting=waiting, allowed_actions=[] if waiting else user_actions(user, case), areas=area_names(city, case),
    )


# -- cases --------------------------------------------------------------------------------------


@router.get("/cases", response_model=CasePage, summary="案件列表")
def list_cases(
    store: StoreDep, query: CaseFilters,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0)] = 0,
    after: Annotated[str | None, Query(max_length=64, description="上一页最后一件的编号：从它之后接着列（键集分页）")] = None,
) -> CasePage:
    """按条件列出案件（新的在前）：状态、承办单位、类别、来源、区/街道、上报时间、是否超期、文字。
    责任单位用户只看到本单位的案件。翻页用 offset，或用上一页的 next_after 作 after（大表深翻页快得多）。"""
    q = query.model_copy(update={"limit": limit, "offset": offset})
    now = query.as_of
    cases = store.list(q, after=after or None)
    items = [summarize(c, store.city, now) for c in cases]
    next_after = cases[-1].number if len(cases) == limit else None
    return CasePage(total=store.count(q), limit=limit, offset=offset, items=items, next_after=next_after)


@router.get("/cases/{number}", response_model=CaseDetail, summary="案件详情")
def get_case(number: str, user: CurrentUser, svc: ServicesDep) -> CaseDetail:
    """一件案件的完整案卷：审计记录、证据（本地文件附地址与检测框）、派遣依据、流水线分类与起草的案卷、
    回复市民的草稿、审核关口状态，以及当前用户可执行的操作。"""
    return case_detail(svc, user, visible_case(svc.store, user, number))


@router.get("/cases/{number}/evidence/{index}", response_class=FileResponse, summary="证据文件",
            responses={200: {"content": {"image/jpeg": {}, "video/mp4": {}}, "description": "证据文件"}})
def evidence_file(number: str, index: int, user: CurrentUser, store: StoreDep) -> FileResponse:
    """案件的一个证据文件（图片或视频）；只提供该案件证据记录中的本地文件。"""
    case = visible_case(store, user, number)
    if not 0 <= index < len(case.evidence):
        raise NotFound(f"案件 {number} 没有第 {index} 项证据（共 {len(case.evidence)} 项，从 0 起）")
    media = local_media(case.evidence[index])
    if media is None:
        raise NotFound(f"案件 {number} 的第 {index} 项证据不是本地图片或视频文件")
    path, media_type = media
    if not path.is_file():
        raise NotFound(f"案件 {number} 的第 {index} 项证据文件已不存在")
    return FileResponse(path, media_type=media_type,
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"})


# -- lifecycle actions --------------------------------------------------------------------------


class ActionIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    action: str = Field(min_length=1, max_length=16, description="立案 不予立案 派遣 签收 退回 处置完成 发起核查 核查通过 "
                        "核查不通过 评价 延期 挂账 解除挂账 作废（或英文别名 file/dispatch/accept/…）")
    note: str | None = Field(default=None, max_length=2000, description="说明/原因（不予立案、退回、核查不通过、延期、挂账、作废必填）")
    department_id: str | None = Field(default=None, max_length=32, description="派遣时人工指定的单位（默认按权责规则）")
    urgency: Urgency | None = Field(default=None, description="同时调整紧急程度")
    extend: str | None = Field(default=None, max_length=16, description="延期时长，如 2工作日")
    approver: str | None = Field(default=None, max_length=64, description="延期批准人（默认：当前用户）")
    duplicate_of: str | None = Field(default=None, max_length=32, description="作废时：重复于哪个案件")
    rating: int | None = Field(default=None, ge=1, le=5, description="评价：1–5")


@dataclass
class ActionBody:
    fields: ActionIn
    photos: list[tuple[str, Path]]  # (the uploaded file's name, its temporary copy)


async def _save_upload(upload: UploadFile, folder: Path, n: int) -> tuple[str, Path]:
    name = Path(upload.filename or f"照片{n + 1}").name
    path, size = folder / f"{n:02d}.upload", 0
    with path.open("wb") as f:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > MAX_PHOTO_BYTES:
                raise InvalidInput(f"照片「{name}」超过 {MAX_PHOTO_BYTES >> 20} MB")
            f.write(chunk)
    return name, path


async def action_body(request: Request, _: Writer) -> AsyncIterator[ActionBody]:
    """The action as JSON, or as multipart/form-data with ``photos`` files (kept in a
    temporary folder for the request)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    with tempfile.TemporaryDirectory(prefix="xunjian-upload-") as tmp:
        photos: list[tuple[str, Path]] = []
        if ctype == "application/json":
            try:
                raw = await request.json()
            except ValueError:
                raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}]) from None
            if not isinstance(raw, dict):
                raise InvalidInput("请求体须为 JSON 对象")
        elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raw = {}
            async with request.form(max_files=MAX_PHOTOS, max_fields=32) as form:
                for key, value in form.multi_items():
                    if not isinstance(value, UploadFile):
                        if value.strip():
                            raw[key] = value
                    elif key != "photos":
                        raise InvalidInput(f"未知的文件字段「{key}」；照片请用 photos")
                    elif value.filename or value.size:  # an empty file input sends a nameless empty part
                        photos.append(await _save_upload(value, Path(tmp), len(photos)))
        else:
            raise InvalidInput("请求体须为 JSON；附照片时用 multipart/form-data")
        try:
            fields = ActionIn.model_validate(raw)
        except ValidationError as e:
            raise RequestValidationError(e.errors(include_url=False, include_context=False)) from None
        yield ActionBody(fields, photos)


def _check_action(store: Store, user: User, case: Case, action: Action, f: ActionIn) -> None:
    """Role, lifecycle and argument checks, in Chinese, before anything is written."""
    if not user.manages:
        user.require_department_action(case, action)
        if any(v is not None for v in (f.department_id, f.urgency, f.extend, f.approver, f.duplicate_of, f.rating)):
            raise PermissionDenied(f"{user.label} 只能签收、处置完成（附说明和照片）、退回（附原因），不能指定单位、紧急程度或时限")
    try:
        transition(case.status, action, f.note)  # IllegalTransition (409) first
    except InvalidInput:
        raise InvalidInput(f"「{action.value}」须写明原因/说明（note）") from None
    if action is Action.COMPLETE and not user.manages and not f.note:
        raise InvalidInput("处置完成须写明处置情况（note）")
    misplaced = [(f.department_id, Action.DISPATCH, "department_id"), (f.extend, Action.EXTEND, "extend"),
                 (f.duplicate_of, Action.VOID, "duplicate_of"), (f.rating, Action.EVALUATE, "rating")]
    for value, only, name in misplaced:
        if value is not None and action is not only:
            raise InvalidInput(f"{name} 只用于「{only.value}」，不用于「{action.value}」")
    if f.department_id and f.department_id not in store.city.departments:
        raise NotFound(f"责任单位「{f.department_id}」不存在；用 /api/departments 查看全部单位")
    if action is Action.EXTEND and not f.extend:
        raise InvalidInput("延期须给出延长的时间（extend，如 2工作日、4工作时）")
    if action is Action.EVALUATE and f.rating is None:
        raise InvalidInput("评价须给出评分（rating，1 不满意 – 5 非常满意）")
    if f.duplicate_of:
        if f.duplicate_of == case.number:
            raise InvalidInput("案件不能是自己的重复")
        visible_case(store, user, f.duplicate_of)


@router.post("/cases/{number}/actions", response_model=CaseDetail, summary="流程操作", openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": ActionIn.model_json_schema()},
                                  "multipart/form-data": {"schema": {**ActionIn.model_json_schema(), "properties": {
                                      **ActionIn.model_json_schema()["properties"],
                                      "photos": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}})
def act(number: str, user: Writer, body: Annotated[ActionBody, Depends(action_body)], svc: ServicesDep) -> CaseDetail:
    """对案件执行一个流程操作，记入审计（操作人为当前用户）。

    JSON，或附照片时用 multipart/form-data（同样的字段，加 photos 文件，如处置后照片）。
    责任单位只能对本单位的案件签收、处置完成（须写处置情况）、退回（须写原因）；只读用户不能操作。
    非法的状态转换返回 409，缺少原因等返回 422；被拒绝时什么也不写入（照片也不保留）。"""
    store, f = svc.store, body.fields
    action = parse_action(f.action)
    case = visible_case(store, user, number)
    if case.status is Status.REPORTED and (run := _run(svc, case)) is not None and run.waiting:
        raise IllegalTransition(f"案件 {case.number} 在审核关口等待人工审核：请在审核队列中通过、修改或驳回"
                                f"（POST /api/review/{case.number}）")
    _check_action(store, user, case, action, f)
    try:
        extend = WorkDuration.model_validate(f.extend) if f.extend else None
    except ValidationError:
        raise InvalidInput(f"延期时长「{f.extend}」无法识别；应为如 2工作日、4工作时、6小时") from None
    photos = check_photos([p for _, p in body.photos], [n for n, _ in body.photos])  # all, before any is copied
    evidence, copied = copy_photos(case.number, photos, photo_note(action))
    try:
        case = store.act(case.number, action, actor=user.name, note=f.note, department_id=f.department_id,
                         urgency=f.urgency, extend=extend, approver=f.approver or (user.name if extend else None),
                         duplicate_of=f.duplicate_of, rating=f.rating, evidence=evidence or None,
                         data={"via": "api"})
    except XunjianError:
        remove_files(copied)  # refused (nothing written): keep no file the store does not reference
        raise
    return case_detail(svc, user, case)


class ReplyIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000, description="回复市民的文字（草稿，不发送）")


@router.put("/cases/{number}/reply", response_model=Reply, summary="修改回复市民的草稿")
def edit_reply(number: str, body: ReplyIn, user: Manager, store: StoreDep) -> Reply:
    """修改回复市民的草稿：记入审计（「修改回复稿」，状态不变）；调度员或管理员。"""
    case = visible_case(store, user, number)
    if case.source not in CITIZEN_SOURCES:
        raise InvalidInput(f"案件 {number} 来源为{case.source.value}，没有回复市民的草稿（只有市民、热线来源的案件有）")
    text = body.text.strip()
    if not text or re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", text):
        raise InvalidInput("回复文字为空或含控制字符")
    case = store.annotate(case.number, REPLY_EDITED, actor=user.name, data={"text": text, "via": "api"})
    row = case.history[-1]
    return Reply(text=text, edited_by=row.actor, edited_at=row.at)


# -- the review gate ----------------------------------------------------------------------------


class ReviewItem(BaseModel):
    number: str
    code: str | None
    name: str | None
    kind: str | None
    department_id: str | None = Field(description="拟派单位")
    department_name: str | None
    reasons: list[str] = Field(description="等待人工审核的原因")
    text: str = Field(description="上报原文（已脱敏）")
    risk_level: Risk
    urgency: Urgency
    created_at: datetime


class ReviewIn(BaseModel):
    decision: Literal["approve", "edit", "reject"] = Field(description="approve 通过；edit 修改后通过；reject 驳回（不予立案）")
    note: str = Field(default="", max_length=500, description="审核意见；驳回时必填")
    department_id: str | None = Field(default=None, max_length=32, description="edit：改派的单位")
    urgency: Urgency | None = Field(default=None, description="edit：新的紧急程度")


@router.get("/review", response_model=list[ReviewItem], summary="审核队列")
def review_queue(user: CurrentUser, svc: ServicesDep) -> list[ReviewItem]:
    """在审核关口等待人工确认的案件（先到先审）；责任单位用户不可见。"""
    if user.role is Role.DEPARTMENT:
        raise PermissionDenied(f"{user.label} 不能查看审核队列：审核由调度员或管理员负责")
    store, out = svc.store, []
    for run in svc.pipeline.waiting():
        w, st = run.waiting, run.state
        try:
            case = store.get(w["case_number"])
        except NotFound:
            continue
        out.append(ReviewItem(number=case.number, code=w.get("code"), name=w.get("name"), kind=st.triage and st.triage.kind,
                              department_id=w.get("department_id"),
                              department_name=department_name(store.city, w.get("department_id")),
                              reasons=w.get("reasons", []), text=mask_text(st.report.text), risk_level=case.risk_level,
                              urgency=case.urgency, created_at=case.created_at))
    return out


@router.post("/review/{number}", response_model=CaseDetail, summary="审核决定")
def review(number: str, body: ReviewIn, user: Manager, svc: ServicesDep) -> CaseDetail:
    """审核：通过（立案并派遣）、修改单位或紧急程度后通过、驳回（不予立案，须写原因）；调度员或管理员。"""
    case = visible_case(svc.store, user, number)
    run = _run(svc, case)
    if run is None or not run.waiting:
        raise IllegalTransition(f"案件 {number} 不在审核关口等待（当前「{case.status.value}」）")
    edits: dict = {}
    if body.decision == "edit":
        if body.department_id:
            if body.department_id not in svc.store.city.departments:
                raise NotFound(f"责任单位「{body.department_id}」不存在；用 /api/departments 查看全部单位")
            edits["department_id"] = body.department_id
        if body.urgency:
            edits["urgency"] = body.urgency.value
        if not edits:
            raise InvalidInput("修改后通过（edit）须给出新的责任单位或紧急程度")
    elif body.department_id or body.urgency:
        raise InvalidInput("只有修改后通过（edit）可以改单位或紧急程度")
    if body.decision == "reject" and not body.note.strip():
        raise InvalidInput("驳回须写明原因（note）")
    svc.pipeline.resume(case.number, body.decision, by=user.name, note=body.note.strip(), edits=edits)
    return case_detail(svc, user, svc.store.get(case.number))
