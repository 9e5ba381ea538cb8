"""Statistics, the dashboard, the map (cases and areas), and the pickers'
reference data (catalogue, departments). A department user's figures and map
are its own department's."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from shapely.geometry import mapping
from sqlalchemy import func, select

from app.api.cases import CaseFilters, department_name, is_overdue, parse_time
from app.api.deps import CurrentUser, ServicesDep, StoreDep
from city.cases import CaseQuery, mask_text
from city.catalogue import Kind
from city.errors import InvalidInput, NotFound
from city.jurisdiction import Jurisdiction
from city.lifecycle import OPEN
from city.stats import GroupBy, HotSpot, StatsQuery, StatsReport, compute
from city.store import Store
from city.store.schema import CaseRow
from city.users import PermissionDenied, Role, User

router = APIRouter(prefix="/api", tags=["dashboard"])

DEFAULT_DAYS = 30


def _scope(user: User, store: Store, department_id: str | None) -> str | None:
    """The department the figures are limited to: a department user's own."""
    if user.role is Role.DEPARTMENT:
        if department_id and department_id != user.department_id:
            raise PermissionDenied(f"{user.label} 只能查看本单位（{user.department_id}）的统计")
        return user.department_id
    if department_id and department_id not in store.city.departments:
        raise NotFound(f"责任单位「{department_id}」不存在；用 /api/departments 查看全部单位")
    return department_id or None


def _masked(spots: list[HotSpot]) -> list[HotSpot]:
    return [h.model_copy(update={"address": mask_text(h.address)}) for h in spots]


@router.get("/stats", response_model=StatsReport, summary="绩效评价")
def stats(
    user: CurrentUser, store: StoreDep,
    since: Annotated[str | None, Query(description="起始日期或时间（含），ISO 8601；默认：截止前 30 天")] = None,
    until: Annotated[str | None, Query(description="截止日期（含当天）或时间（不含）；默认：现在")] = None,
    by: Annotated[GroupBy, Query(description="department 责任单位、street 街道、district 区、source 来源")] = GroupBy.DEPARTMENT,
    department_id: Annotated[str | None, Query(description="只看某个责任单位")] = None,
    district_id: Annotated[str | None, Query(description="只看某个区（区划代码）")] = None,
    hot_spots: Annotated[bool, Query(description="是否计算重复发生热点")] = True,
) -> StatsReport:
    """绩效评价（同 `xunjian stats`）：上报、立案、派遣准确率、按期处置率、处置率、结案率、返工率、处置用时、
    满意率，按单位/街道/区/来源分组，附指标口径和重复发生热点。"""
    now = datetime.now(store.tz)
    end = parse_time(until, store.tz, end=True) or now
    start = parse_time(since, store.tz) or end - timedelta(days=DEFAULT_DAYS)
    if end <= start:
        raise InvalidInput("统计时段为空：since 须早于 until")
    if district_id and district_id not in store.city.jurisdiction.districts:
        raise NotFound(f"区「{district_id}」不存在；用 /api/map/areas 查看区划")
    q = StatsQuery(since=start, until=end, by=by, department_id=_scope(user, store, department_id), district_id=district_id)
    report = compute(store, q, now=now, with_hot_spots=hot_spots)
    return report.model_copy(update={"hot_spots": _masked(report.hot_spots)})


# -- the dashboard ------------------------------------------------------------------------------


class Period(BaseModel):
    since: datetime
    until: datetime


class SourceCount(BaseModel):
    source: str
    count: int


class DayCount(BaseModel):
    day: date
    source: str
    count: int


class DepartmentDue(BaseModel):
    department_id: str
    name: str
    overdue: int
    due_soon: int


class Dashboard(BaseModel):
    period: Period
    intake_by_source: list[SourceCount]
    intake_by_day: list[DayCount] = Field(description="每天（本市时区）各来源上报数；没有上报的日子不列")
    rates: dict[str, float | None] = Field(description="处置率、按期处置率、结案率、派遣准确率、返工率、满意率（0–1），"
                                           "平均评分、平均处置用时（工作小时）；无分母时为 null")
    counts: dict[str, int] = Field(description="上报、立案、派遣、被退回数")
    overdue_by_department: list[DepartmentDue]
    hot_spots: list[HotSpot]
    review_waiting: int = Field(description="在审核关口等待的案件数")
    open_cases: int = Field(description="未结案的案件数（全部时间）")


def _intake(store: Store, since: datetime, until: datetime, dept: str | None) -> list[DayCount]:
    """Cases reported per local day and source: one GROUP BY."""
    col = CaseRow.created_at
    if store.dialect == "postgresql":
        day = func.date(func.timezone(store.tz.key, col))
    else:  # SQLite keeps UTC text: shift by the city's UTC offset (fixed in China)
        minutes = int(since.astimezone(store.tz).utcoffset().total_seconds() // 60)
        day = func.date(col, f"{minutes:+d} minutes")
    stmt = select(day.label("day"), CaseRow.source, func.count()).where(col >= since, col < until)
    if dept:
        stmt = stmt.where(CaseRow.department_id == dept)
    with store.reading() as s:
        rows = s.execute(stmt.group_by(day, CaseRow.source).order_by(day, CaseRow.source)).all()
    return [DayCount(day=d if isinstance(d, date) else date.fromisoformat(d), source=src, count=n) for d, src, n in rows]


@router.get("/dashboard", response_model=Dashboard, summary="统计看板")
def dashboard(user: CurrentUser, svc: ServicesDep,
              days: Annotated[int, Query(ge=1, le=366, description="统计最近多少天（含今天）")] = DEFAULT_DAYS) -> Dashboard:
    """统计看板：各来源受理量（合计与逐日）、考核指标、各单位超期与即将超期、重复发生热点、待审核数、
    未结案数。责任单位用户只看本单位。"""
    store = svc.store
    now = datetime.now(store.tz)
    since = datetime.combine(now.date() - timedelta(days=days - 1), datetime.min.time(), tzinfo=store.tz)
    dept = _scope(user, store, None)
    report = compute(store, StatsQuery(since=since, until=now, department_id=dept), now=now)
    t = report.total
    by_day = _intake(store, since, now, dept)
    by_source = Counter()
    for d in by_day:
        by_source[d.source] += d.count
    due = store.due_counts(now, department_id=dept)  # store.due(), counted
    return Dashboard(
        period=Period(since=since, until=now),
        intake_by_source=[SourceCount(source=s, count=n) for s, n in by_source.most_common()],
        intake_by_day=by_day,
        rates={"handling_rate": t.handled.rate, "on_time_rate": t.on_time.rate, "closure_rate": t.closed.rate,
               "dispatch_accuracy": t.dispatch_accuracy.rate, "rework_rate": t.rework.rate,
               "satisfaction_rate": t.satisfied.rate, "mean_rating": t.rating.mean,
               "mean_handling_hours": t.handling_hours.mean},
        counts={"reported": t.reported, "filed": t.filed, "dispatched": t.dispatched, "returned": t.returned},
        overdue_by_department=sorted(
            (DepartmentDue(department_id=d, name=department_name(store.city, d), overdue=c["已超期"], due_soon=c["即将超期"])
             for d, c in due.items()), key=lambda x: (-x.overdue, -x.due_soon, x.department_id)),
        hot_spots=_masked(report.hot_spots),
        review_waiting=0 if dept else len(svc.pipeline.waiting()),
        open_cases=store.count(CaseQuery(status=sorted(OPEN), department_id=dept)),
    )


# -- the map ------------------------------------------------------------------------------------


@router.get("/map/cases", summary="地图：案件")
def map_cases(store: StoreDep, query: CaseFilters,
              limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> dict:
    """地图上的案件（GeoJSON 点，经纬度 WGS-84）：筛选条件同 /api/cases，只含有坐标的案件，新的在前。"""
    q = query.model_copy(update={"limit": limit, "offset": 0, "located": True})
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [c.lon, c.lat]},
                 "properties": {"number": c.number, "status": c.status.value, "risk_level": c.risk_level.value,
                                "title": c.title, "code": c.code, "overdue": is_overdue(c, query.as_of),
                                "department_name": department_name(store.city, c.department_id),
                                "address": mask_text(c.address or "")}}
                for c in store.list(q)]
    return {"type": "FeatureCollection", "features": features, "total": store.count(q), "limit": limit}


@lru_cache(maxsize=8)
def _areas_json(j: Jurisdiction, level: str | None) -> bytes:
    levels = [("district", j.districts), ("street", j.streets), ("grid", j.grids)]
    features = [{"type": "Feature", "geometry": mapping(a.shape),
                 "properties": {"level": lv, "id": a.id, "name": a.name, "parent": a.parent}}
                for lv, areas in levels if level in (None, lv) for a in sorted(areas.values(), key=lambda a: a.id)]
    return json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False).encode()


@router.get("/map/areas", response_class=Response, summary="地图：区划边界",
            responses={200: {"content": {"application/json": {}}, "description": "GeoJSON FeatureCollection"}})
def map_areas(_: CurrentUser, store: StoreDep,
              level: Annotated[Literal["district", "street", "grid"] | None, Query(description="只要某一级")] = None) -> Response:
    """区、街道、单元网格的边界（GeoJSON 多边形，WGS-84），属性 level、id、name、parent。"""
    return Response(_areas_json(store.city.jurisdiction, level), media_type="application/json",
                    headers={"Cache-Control": "private, max-age=3600"})


# -- reference data for pickers -----------------------------------------------------------------


class CatalogueItem(BaseModel):
    code: str
    kind: Kind
    name: str
    major: str = Field(description="大类名称")
    major_code: str
    default_priority: str
    risk_level: str
    score: float | None = Field(default=None, description="按文字查找时的相关度")


class DepartmentItem(BaseModel):
    id: str
    name: str
    short: str
    type: str
    district: str | None
    street: str | None


def _item(e, score: float | None = None) -> CatalogueItem:
    return CatalogueItem(code=e.code, kind=e.kind, name=e.name, major=e.major_name, major_code=e.major_code,
                         default_priority=e.default_priority.value, risk_level=e.risk_level.value, score=score)


@router.get("/catalogue", response_model=list[CatalogueItem], summary="问题目录")
def catalogue(_: CurrentUser, store: StoreDep,
              q: Annotated[str, Query(max_length=100, description="描述文字、名称或代码前缀")] = "",
              kind: Annotated[Kind | None, Query(description="部件 或 事件")] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 20) -> list[CatalogueItem]:
    """城市管理问题目录（供选择类别）：按代码前缀或描述文字查找；不给 q 时按代码列出。"""
    cat, q = store.city.catalogue, q.strip()
    entries = sorted(cat, key=lambda e: (e.code, e.kind is not Kind.EVENT))
    if kind:
        entries = [e for e in entries if e.kind is kind]
    if not q:
        return [_item(e) for e in entries[:limit]]
    if q.isdigit():
        return [_item(e) for e in entries if e.code.startswith(q)][:limit]
    return [_item(h.entry, h.score) for h in cat.search(q, k=limit, kind=kind)]


@router.get("/departments", response_model=list[DepartmentItem], summary="责任单位")
def departments(_: CurrentUser, store: StoreDep) -> list[DepartmentItem]:
    """全部责任单位（编号、全称、简称、类型、服务的区/街道）。"""
    return [DepartmentItem(id=d.id, name=d.name, short=d.short, type=d.type.value, district=d.district, street=d.street)
            for d in store.city.departments]
