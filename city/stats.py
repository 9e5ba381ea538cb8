"""Performance evaluation (数字化城市管理 绩效评价): ``xunjian stats``.

Metrics per department, street, district or source over a period, computed
from the store's tables: ``cases`` and the audit log ``case_audit`` (one row per
lifecycle action). The exact definition of every metric (Chinese name and
formula) and the thresholds (hot-spot radius and count, the satisfied rating)
are data: ``stats.yaml`` in the city data folder, else the bundled
``city/data/stats.yaml``. In short, for the half-open period ``since <= t < until``:

- 上报数: cases created in the period, also by source; 立案数: 立案 actions.
- 结案率 = 结案数 / 立案数 (cases filed in the period and closed by its end).
- 派遣准确率 = (派遣数 − 被退回数) / 派遣数; 处置率 = 处置数 / 派遣数 (the
  dispatches of the period, returned or reported 处置完成 by its end).
- 按期处置率 = 按期处置数 / 应处置数, per time limit (派遣, 返工, 解除挂账; 延期
  moves it): counted when completed in time, else when the limit ran out.
- 返工率 = cases with a 核查不通过 / cases with a 核查 decision in the period.
- 平均处置用时: working hours (the department's calendar) from the start of a
  time limit to its 处置完成.
- 平均评分 and 满意率 (rating ≥ the threshold) of the 评价 actions.
- 重复发生热点: ≥ N cases of one code within R metres of one of them.

Only what happened before ``until`` counts, so a past period always gives the
same figures. Counting is SQL aggregation where it is a plain count; the time
limits (which need the working calendars) are one ordered pass over the narrow
audit rows of the cases active in or after the period, never Case models.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)
from sqlalchemy import case, func, select, union

from city import geo, settings
from city.bundle import CityData
from city.catalogue import Source
from city.datafiles import read_yaml, validate
from city.errors import InvalidInput
from city.lifecycle import WITH_DEPARTMENT, Action, Status
from city.store.schema import AuditRow, CaseRow

STATS_FILE = "stats.yaml"

# -- the data file ----------------------------------------------------------------------


class HotSpotRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    radius_m: float = Field(gt=0, le=geo.MAX_CELL_RADIUS_M)
    min_cases: int = Field(ge=2)
    exclude_statuses: list[Status] = []


class SatisfactionRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    satisfied_min_rating: int = Field(ge=1, le=5)


class MetricDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    formula: str = Field(min_length=1)


#: The metrics ``stats.yaml`` must define (the keys of :class:`StatsRow`, and hot spots).
METRIC_KEYS = ("reported", "filed", "closed", "dispatched", "dispatch_accuracy", "handled", "on_time", "rework",
               "handling_hours", "rating", "satisfied", "hot_spots")


class StatsConfig(BaseModel):
    """The whole of ``stats.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hot_spots: HotSpotRule
    satisfaction: SatisfactionRule
    metrics: dict[str, MetricDef]

    @field_validator("metrics")
    @classmethod
    def _complete(cls, v: dict[str, MetricDef]) -> dict[str, MetricDef]:
        missing = [k for k in METRIC_KEYS if k not in v]
        unknown = [k for k in v if k not in METRIC_KEYS]
        if missing or unknown:
            raise ValueError(f"missing metrics {missing}, unknown metrics {unknown}; expected exactly {list(METRIC_KEYS)}")
        return v


@lru_cache(maxsize=8)
def _load_config(path: Path, stamp: tuple[int, int]) -> StatsConfig:
    return validate(StatsConfig, read_yaml(path), str(path))


def load_config(city: CityData | None = None) -> StatsConfig:
    """``stats.yaml`` of the city's data folder, else the bundled one."""
    path = city.folder / STATS_FILE if city is not None else None
    if path is None or not path.is_file():
        path = settings.BUNDLED_CITY_DATA / STATS_FILE
    path = path.resolve()
    st = path.stat()
    return _load_config(path, (st.st_mtime_ns, st.st_size))  # an edited file is read again


# -- query and results ---------------------------------------------------------------------


class GroupBy(StrEnum):
    DEPARTMENT = "department"
    STREET = "street"
    DISTRICT = "district"
    SOURCE = "source"


#: The Chinese name of each grouping, and the label of the rows without a key.
GROUP_NAMES = {GroupBy.DEPARTMENT: "责任单位", GroupBy.STREET: "街道", GroupBy.DISTRICT: "区", GroupBy.SOURCE: "来源"}
NO_KEY = {GroupBy.DEPARTMENT: "（未派遣）", GroupBy.STREET: "（无街道）", GroupBy.DISTRICT: "（无区划）", GroupBy.SOURCE: "（无来源）"}


class StatsQuery(BaseModel):
    """The period (``since <= t < until``, aware datetimes), the grouping and the filters."""

    since: datetime
    until: datetime
    by: GroupBy = GroupBy.DEPARTMENT
    department_id: str | None = None
    district_id: str | None = None

    @model_validator(mode="after")
    def _period(self):
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("since and until must carry a time zone (e.g. 2026-11-01T00:00+08:00)")
        if self.until <= self.since:
            raise ValueError(f"the period is empty: until ({self.until.isoformat()}) is not after since ({self.since.isoformat()})")
        return self


class Ratio(BaseModel):
    """num / den; ``rate`` is None when den is 0."""

    num: int = 0
    den: int = 0

    @computed_field
    @property
    def rate(self) -> float | None:
        return self.num / self.den if self.den else None


class Mean(BaseModel):
    """total / count; ``mean`` is None when count is 0."""

    count: int = 0
    total: float = 0.0

    @computed_field
    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


class StatsRow(BaseModel):
    """The metrics of one group (or of all: the totals row); see ``stats.yaml``."""

    key: str | None
    label: str
    reported: int = 0
    reported_by_source: dict[str, int] = {}
    filed: int = 0
    closed: Ratio = Ratio()  # 结案数 / 立案数
    dispatched: int = 0
    returned: int = 0
    dispatch_accuracy: Ratio = Ratio()  # (派遣数 − 被退回数) / 派遣数
    handled: Ratio = Ratio()  # 处置数 / 派遣数
    on_time: Ratio = Ratio()  # 按期处置数 / 应处置数
    rework: Ratio = Ratio()  # 返工案卷数 / 核查案卷数
    handling_hours: Mean = Mean()  # working hours, 派遣 → 处置完成
    rating: Mean = Mean()
    satisfied: Ratio = Ratio()  # 满意数 / 评价数


class HotSpot(BaseModel):
    """Cases of one code at one place: all within ``radius_m`` of the centre case
    (whose position ``lat``, ``lon``, address and area are given)."""

    code: str
    title: str
    lat: float
    lon: float
    address: str
    district_id: str | None
    street_id: str | None
    place: str  # district and street names
    count: int
    centre: str  # the case number of the centre
    cases: list[str]  # oldest first
    first_at: datetime
    last_at: datetime


class StatsReport(BaseModel):
    query: StatsQuery
    as_of: datetime
    group_name: str
    rows: list[StatsRow]
    total: StatsRow
    hot_spots: list[HotSpot] = []
    hot_spot_rule: HotSpotRule
    satisfaction: SatisfactionRule
    definitions: dict[str, MetricDef]


# -- accumulation ---------------------------------------------------------------------------


@dataclass
class _Acc:
    """Running counts of one group."""

    reported: Counter = field(default_factory=Counter)
    filed: int = 0
    closed: int = 0
    dispatched: int = 0
    returned: int = 0
    handled: int = 0
    due: int = 0
    on_time: int = 0
    verified: set = field(default_factory=set)
    failed: set = field(default_factory=set)
    handling_n: int = 0
    handling_hours: float = 0.0
    ratings: int = 0
    rating_sum: int = 0
    satisfied: int = 0

    def row(self, key: str | None, label: str) -> StatsRow:
        return StatsRow(
            key=key, label=label, reported=sum(self.reported.values()),
            reported_by_source={s.value: self.reported.get(s.value, 0) for s in Source},
            filed=self.filed, closed=Ratio(num=self.closed, den=self.filed),
            dispatched=self.dispatched, returned=self.returned,
            dispatch_accuracy=Ratio(num=self.dispatched - self.returned, den=self.dispatched),
            handled=Ratio(num=self.handled, den=self.dispatched), on_time=Ratio(num=self.on_time, den=self.due),
            rework=Ratio(num=len(self.failed), den=len(self.verified)),
            handling_hours=Mean(count=self.handling_n, total=self.handling_hours),
            rating=Mean(count=self.ratings, total=self.rating_sum), satisfied=Ratio(num=self.satisfied, den=self.ratings),
        )


_ANY = object()


class _Tally:
    """Accumulators per group key, and the totals."""

    def __init__(self, q: StatsQuery):
        self.q = q
        self.groups: dict[str | None, _Acc] = defaultdict(_Acc)
        self.total = _Acc()

    def accs(self, key: str | None, dept: Any = _ANY) -> tuple[_Acc, ...]:
        """The accumulators an event of group ``key`` counts in; none when the
        event's department is not the one asked for."""
        if self.q.department_id and dept is not _ANY and dept != self.q.department_id:
            return ()
        return self.groups[key], self.total


def _key_column(by: GroupBy):
    return {GroupBy.DEPARTMENT: CaseRow.department_id, GroupBy.STREET: CaseRow.street_id,
            GroupBy.DISTRICT: CaseRow.district_id, GroupBy.SOURCE: CaseRow.source}[by]


def _case_filters(stmt, q: StatsQuery, *, department: bool = True):
    if department and q.department_id:
        stmt = stmt.where(CaseRow.department_id == q.department_id)
    if q.district_id:
        stmt = stmt.where(CaseRow.district_id == q.district_id)
    return stmt


def _in_period(col, q: StatsQuery):
    return (col >= q.since) & (col < q.until)


# -- the SQL counts ---------------------------------------------------------------------------


def _count_reported(s, q: StatsQuery, tally: _Tally) -> None:
    key = _key_column(q.by)
    stmt = _case_filters(select(key, CaseRow.source, func.count(CaseRow.id)), q)
    stmt = stmt.where(_in_period(CaseRow.created_at, q)).group_by(key, CaseRow.source)
    for k, source, n in s.execute(stmt):
        for acc in tally.accs(k):
            acc.reported[source] += n


def _count_filed(s, q: StatsQuery, tally: _Tally) -> None:
    key = _key_column(q.by)
    closed = func.sum(case((CaseRow.closed_at < q.until, 1), else_=0))
    stmt = select(key, func.count(func.distinct(CaseRow.id)), closed).join(AuditRow, AuditRow.case_id == CaseRow.id)
    stmt = _case_filters(stmt, q).where(AuditRow.action == Action.FILE.value, _in_period(AuditRow.at, q)).group_by(key)
    for k, n, n_closed in s.execute(stmt):
        for acc in tally.accs(k):
            acc.filed += n
            acc.closed += int(n_closed or 0)


def _count_ratings(s, q: StatsQuery, tally: _Tally, rule: SatisfactionRule) -> None:
    key = _key_column(q.by)
    satisfied = func.sum(case((CaseRow.rating >= rule.satisfied_min_rating, 1), else_=0))
    stmt = select(key, func.count(CaseRow.id), func.sum(CaseRow.rating), satisfied).join(AuditRow, AuditRow.case_id == CaseRow.id)
    stmt = _case_filters(stmt, q).where(AuditRow.action == Action.EVALUATE.value, _in_period(AuditRow.at, q),
                                        CaseRow.rating.is_not(None)).group_by(key)
    for k, n, total, n_satisfied in s.execute(stmt):
        for acc in tally.accs(k):
            acc.ratings += n
            acc.rating_sum += int(total or 0)
            acc.satisfied += int(n_satisfied or 0)


# -- the time limits: one pass over the audit log -----------------------------------------------

_DISPATCH, _FAIL, _PASS, _EXTEND = Action.DISPATCH.value, Action.FAIL.value, Action.PASS.value, Action.EXTEND.value
_COMPLETE, _RETURN = Action.COMPLETE.value, Action.RETURN.value
#: Actions that start a time limit (处置时限) at a department.
_STARTS = {_DISPATCH, _FAIL, Action.UNSHELVE.value}
#: Actions that end one without completing it.
_ENDS = {_RETURN, Action.SHELVE.value, Action.VOID.value}
_WALKED = sorted(_STARTS | _ENDS | {_EXTEND, _COMPLETE, _PASS})


@dataclass
class _Clock:
    """One running time limit: who holds the case, since when, until when."""

    dept: str | None
    start: datetime
    deadline: datetime | None
    cohort: bool  # a 派遣 of the period: counts for 派遣准确率 and 处置率


def _parse_time(text: str | None) -> datetime | None:
    """An audit row's ISO deadline, in UTC (as the store's times: fast comparisons)."""
    try:
        return datetime.fromisoformat(text).astimezone(UTC) if text else None
    except (TypeError, ValueError):
        return None


class _Walker:
    """Replays the audit rows of one case at a time (in order) into a tally."""

    def __init__(self, city: CityData, q: StatsQuery, tally: _Tally, as_of: datetime):
        self.city, self.q, self.tally = city, q, tally
        self.since, self.until = q.since.astimezone(UTC), q.until.astimezone(UTC)
        self.as_of = min(as_of, q.until).astimezone(UTC)  # a limit running out after this has not yet

    def _in(self, t: datetime) -> bool:
        return self.since <= t < self.until

    def _key(self, case_key: str | None, dept: str | None) -> str | None:
        return dept if self.q.by is GroupBy.DEPARTMENT else case_key

    def case(self, case_id: int, case_key: str | None, rows) -> None:
        """One case's rows (action, at, data["department"], data["deadline"]), in
        the order they happened."""
        dept: str | None = None
        clock: _Clock | None = None
        for action, at, assigned, deadline in rows:
            if action in _STARTS:
                self._end(clock, case_key, ended=at)  # not expected: a limit starts only after the last one ended
                dept = assigned or dept
                if action == _FAIL:
                    self._verified(case_id, case_key, dept, at, failed=True)
                clock = _Clock(dept, at, _parse_time(deadline), action == _DISPATCH and self._in(at))
                if clock.cohort:
                    for acc in self.tally.accs(self._key(case_key, dept), dept):
                        acc.dispatched += 1
            elif action == _EXTEND and clock:
                clock.deadline = _parse_time(deadline) or clock.deadline
            elif action == _COMPLETE and clock:
                self._complete(clock, case_key, at)
                clock = None
            elif action in _ENDS:
                self._end(clock, case_key, ended=at, returned=action == _RETURN)
                clock = None
                dept = None if action == _RETURN else dept
            elif action == _PASS:
                self._verified(case_id, case_key, dept, at, failed=False)
        self._end(clock, case_key, ended=None)

    def _verified(self, case_id: int, case_key, dept, at: datetime, *, failed: bool) -> None:
        if not self._in(at):
            return
        for acc in self.tally.accs(self._key(case_key, dept), dept):
            acc.verified.add(case_id)
            if failed:
                acc.failed.add(case_id)

    def _complete(self, clock: _Clock, case_key, at: datetime) -> None:
        accs = self.tally.accs(self._key(case_key, clock.dept), clock.dept)
        hours = self._calendar(clock.dept).working_time_between(clock.start, at) / timedelta(hours=1) if self._in(at) else None
        for acc in accs:
            acc.handled += clock.cohort
            if hours is not None:
                acc.handling_n += 1
                acc.handling_hours += hours
        self._settle(clock, accs, done=at)

    def _end(self, clock: _Clock | None, case_key, *, ended: datetime | None, returned: bool = False) -> None:
        if clock is None:
            return
        accs = self.tally.accs(self._key(case_key, clock.dept), clock.dept)
        for acc in accs:
            acc.returned += returned and clock.cohort
        self._settle(clock, accs, ended=ended)

    def _settle(self, clock: _Clock, accs, *, done: datetime | None = None, ended: datetime | None = None) -> None:
        """按期: a limit counts when completed in time, or else when it ran out;
        one that ended otherwise (退回, 挂账, 作废) before running out does not."""
        if clock.deadline is None:
            return
        in_time = done is not None and done <= clock.deadline
        if not in_time and ended is not None and ended <= clock.deadline:
            return
        moment = done if in_time else clock.deadline
        if not in_time and moment >= self.as_of:
            return  # still running, not yet overdue
        if self._in(moment):
            for acc in accs:
                acc.due += 1
                acc.on_time += in_time

    def _calendar(self, dept: str | None):
        if dept and dept in self.city.departments:
            return self.city.calendar(dept)
        return self.city.calendars.default


def _walk_limits(s, store, q: StatsQuery, tally: _Tally, as_of: datetime) -> None:
    """Replay the limits of every case that was active in or after the period
    (or whose limit ran out in it untouched): its audit rows before ``until``."""
    touched = select(AuditRow.case_id).where(AuditRow.at >= q.since)
    running = select(CaseRow.id).where(CaseRow.status.in_([st.value for st in WITH_DEPARTMENT]),
                                       _in_period(CaseRow.deadline, q))
    key = _key_column(q.by)
    stmt = (select(AuditRow.case_id, key, AuditRow.action, AuditRow.at, AuditRow.data["department"].as_string(),
                   AuditRow.data["deadline"].as_string())
            .join(CaseRow, CaseRow.id == AuditRow.case_id)
            .where(AuditRow.case_id.in_(union(touched, running)), AuditRow.action.in_(_WALKED), AuditRow.at < q.until))
    stmt = _case_filters(stmt, q, department=False).order_by(AuditRow.case_id, AuditRow.id)
    walker = _Walker(store.city, q, tally, as_of)
    result = s.execute(stmt.execution_options(yield_per=5000))
    for (case_id, case_key), rows in itertools.groupby(result, key=lambda r: (r[0], r[1])):
        walker.case(case_id, case_key, (r[2:] for r in rows))


# -- the report ------------------------------------------------------------------------------


def _label(city: CityData, by: GroupBy, key: str | None) -> str:
    if key is None:
        return NO_KEY[by]
    areas = {GroupBy.DEPARTMENT: city.departments.by_id, GroupBy.STREET: city.jurisdiction.streets,
             GroupBy.DISTRICT: city.jurisdiction.districts}.get(by, {})
    item = areas.get(key)
    return item.name if item is not None else key


def _order(by: GroupBy, key: str | None):
    if by is GroupBy.SOURCE:
        sources = [s.value for s in Source]
        return (key not in sources, sources.index(key) if key in sources else 0, key or "")
    return (key is None, key or "")


def compute(store, query: StatsQuery, *, now: datetime | None = None, with_hot_spots: bool = True) -> StatsReport:
    """The metrics of ``query`` from the store, as of ``now`` (default: the
    current time; a time limit running out after it is not overdue yet)."""
    if now is not None and now.tzinfo is None:
        raise InvalidInput("now must carry a time zone (e.g. 2026-11-23T09:00+08:00)")
    as_of = (now or datetime.now(store.tz)).astimezone(store.tz)
    cfg = load_config(store.city)
    tally = _Tally(query)
    with store.reading() as s:
        _count_reported(s, query, tally)
        _count_filed(s, query, tally)
        _count_ratings(s, query, tally, cfg.satisfaction)
        _walk_limits(s, store, query, tally, as_of)
    keys = sorted(tally.groups, key=lambda k: _order(query.by, k))
    return StatsReport(
        query=query, as_of=as_of, group_name=GROUP_NAMES[query.by],
        rows=[tally.groups[k].row(k, _label(store.city, query.by, k)) for k in keys],
        total=tally.total.row(None, "合计"),
        hot_spots=hot_spots(store, query, cfg.hot_spots) if with_hot_spots else [],
        hot_spot_rule=cfg.hot_spots, satisfaction=cfg.satisfaction, definitions=cfg.metrics,
    )


# -- hot spots --------------------------------------------------------------------------------


def _neighbours(lat: np.ndarray, lon: np.ndarray, radius_m: float) -> list[np.ndarray]:
    """For each point, the indices of the points within ``radius_m`` (itself
    included), sorted: buckets one radius wide, each compared with the 3×3
    buckets around it in one :func:`city.geo.haversine_m` call."""
    dlat = math.degrees(radius_m / geo.EARTH_RADIUS_M) * 1.01 + 1e-9
    dlon = dlat / max(math.cos(math.radians(float(np.abs(lat).max()) + dlat)), 1e-6)
    rows, cols = np.floor(lat / dlat).astype(np.int64), np.floor(lon / dlon).astype(np.int64)
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, key in enumerate(zip(rows.tolist(), cols.tolist())):
        buckets[key].append(i)
    near: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(lat)
    for (r, c), members in buckets.items():
        idx = np.array(members)
        cand = np.array(sorted(j for dr in (-1, 0, 1) for dc in (-1, 0, 1) for j in buckets.get((r + dr, c + dc), ())))
        dist = geo.haversine_m(lat[idx, None], lon[idx, None], lat[None, cand], lon[None, cand])
        for k, i in enumerate(members):
            near[i] = cand[dist[k] <= radius_m]
    return near


def _clusters(lat: np.ndarray, lon: np.ndarray, radius_m: float, min_cases: int) -> list[tuple[int, list[int]]]:
    """Greedy: the point with the most others within ``radius_m`` (earliest on a
    tie) takes them all while at least ``min_cases`` are still free; repeat.
    Returns (centre, members) by index."""
    near = _neighbours(lat, lon, radius_m)
    taken = np.zeros(len(lat), dtype=bool)
    out = []
    for i in sorted(range(len(lat)), key=lambda i: (-len(near[i]), i)):
        if taken[i] or len(near[i]) < min_cases:
            continue
        members = near[i][~taken[near[i]]]
        if len(members) >= min_cases:
            taken[members] = True
            out.append((i, members.tolist()))
    return out


def _place(city: CityData, district_id: str | None, street_id: str | None) -> str:
    names = [city.jurisdiction.districts[district_id].name if district_id in city.jurisdiction.districts else district_id,
             city.jurisdiction.streets[street_id].name if street_id in city.jurisdiction.streets else street_id]
    return " ".join(n for n in names if n) or "—"


def hot_spots(store, query: StatsQuery, rule: HotSpotRule | None = None) -> list[HotSpot]:
    """重复发生热点: cases created in the period, of one catalogue code, at least
    ``rule.min_cases`` within ``rule.radius_m`` of one of them (``stats.yaml``).
    Biggest first; each case is in at most one hot spot."""
    rule = rule or load_config(store.city).hot_spots
    stmt = select(CaseRow.number, CaseRow.code, CaseRow.title, CaseRow.lat, CaseRow.lon, CaseRow.address,
                  CaseRow.district_id, CaseRow.street_id, CaseRow.created_at)
    stmt = _case_filters(stmt, query).where(_in_period(CaseRow.created_at, query), CaseRow.lat.is_not(None),
                                            CaseRow.lon.is_not(None))
    if rule.exclude_statuses:
        stmt = stmt.where(CaseRow.status.not_in([st.value for st in rule.exclude_statuses]))
    with store.reading() as s:
        rows = s.execute(stmt.order_by(CaseRow.code, CaseRow.created_at, CaseRow.id)).all()
    spots = []
    for _, group in itertools.groupby(rows, key=lambda r: r.code):
        points = list(group)
        lat, lon = np.array([p.lat for p in points]), np.array([p.lon for p in points])
        for centre, members in _clusters(lat, lon, rule.radius_m, rule.min_cases):
            spots.append(_hot_spot(store.city, points[centre], [points[j] for j in members]))
    return sorted(spots, key=lambda h: (-h.count, h.code, h.first_at))


def _hot_spot(city: CityData, c, members: list) -> HotSpot:
    return HotSpot(code=c.code, title=c.title, lat=c.lat, lon=c.lon, address=c.address, district_id=c.district_id,
                   street_id=c.street_id, place=_place(city, c.district_id, c.street_id), count=len(members), centre=c.number,
                   cases=[m.number for m in members], first_at=members[0].created_at, last_at=members[-1].created_at)


# -- export -----------------------------------------------------------------------------------


def columns(report: StatsReport) -> list[tuple[str, str, Any]]:
    """(header, kind, value of a row) of every exported column; kind is
    ``text``, ``int``, ``rate`` (a fraction or None) or ``num`` (or None)."""
    m = {k: d.name for k, d in report.definitions.items()}
    cols: list[tuple[str, str, Any]] = [
        (report.group_name + "代码", "text", lambda r: r.key or ""),
        (report.group_name, "text", lambda r: r.label),
        (m["reported"], "int", lambda r: r.reported),
    ]
    cols += [(f"上报-{s.value}", "int", lambda r, s=s.value: r.reported_by_source.get(s, 0)) for s in Source]
    cols += [
        (m["filed"], "int", lambda r: r.filed),
        ("结案数", "int", lambda r: r.closed.num),
        (m["closed"], "rate", lambda r: r.closed.rate),
        (m["dispatched"], "int", lambda r: r.dispatched),
        ("被退回数", "int", lambda r: r.returned),
        (m["dispatch_accuracy"], "rate", lambda r: r.dispatch_accuracy.rate),
        ("处置数", "int", lambda r: r.handled.num),
        (m["handled"], "rate", lambda r: r.handled.rate),
        ("应处置数", "int", lambda r: r.on_time.den),
        ("按期处置数", "int", lambda r: r.on_time.num),
        (m["on_time"], "rate", lambda r: r.on_time.rate),
        ("核查案卷数", "int", lambda r: r.rework.den),
        ("返工案卷数", "int", lambda r: r.rework.num),
        (m["rework"], "rate", lambda r: r.rework.rate),
        ("处置完成次数", "int", lambda r: r.handling_hours.count),
        (m["handling_hours"], "num", lambda r: r.handling_hours.mean),
        ("评价数", "int", lambda r: r.rating.count),
        (m["rating"], "num", lambda r: r.rating.mean),
        ("满意数", "int", lambda r: r.satisfied.num),
        (m["satisfied"], "rate", lambda r: r.satisfied.rate),
    ]
    return cols


def fmt_rate(rate: float | None) -> str:
    """0.8571 → ``85.7%``; None → ``—``."""
    return "—" if rate is None else f"{rate * 100:.1f}%"


def fmt_num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _text(kind: str, value) -> str | int:
    if kind == "rate":
        return fmt_rate(value)
    if kind == "num":
        return fmt_num(value, 2)
    return value


def to_csv(report: StatsReport, path: Path | str) -> Path:
    """The rows and the totals row, UTF-8 with a BOM (Excel opens it as such);
    rates as ``85.7%``, ``—`` where the denominator is 0."""
    path = Path(path)
    cols = columns(report)
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow([h for h, _, _ in cols])
        for row in [*report.rows, report.total]:
            w.writerow([_text(kind, get(row)) for _, kind, get in cols])
    return path


def to_xlsx(report: StatsReport, path: Path | str) -> Path:
    """Sheets 指标 (rows and totals; rates as numbers formatted 0.0%), 热点 and 口径."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    path = Path(path)
    wb = Workbook()
    ws = wb.active
    ws.title = "指标"
    cols = columns(report)
    ws.append([h for h, _, _ in cols])
    for row in [*report.rows, report.total]:
        ws.append([("—" if get(row) is None else get(row)) for _, _, get in cols])
    for j, (_, kind, _) in enumerate(cols, start=1):
        for (cell,) in ws.iter_rows(min_row=2, min_col=j, max_col=j):
            cell.number_format = "0.0%" if kind == "rate" else "0.00" if kind == "num" else cell.number_format
    for cell in itertools.chain(ws[1], ws[ws.max_row]):
        cell.font = Font(bold=True)
    _xlsx_hot_spots(wb.create_sheet("热点"), report)
    _xlsx_definitions(wb.create_sheet("口径"), report)
    wb.save(path)
    return path


def _xlsx_hot_spots(ws, report: StatsReport) -> None:
    ws.append(["目录代码", "名称", "件数", "区域", "地址", "纬度", "经度", "案卷编号", "首次", "最近"])
    tz = report.as_of.tzinfo
    for h in report.hot_spots:
        ws.append([h.code, h.title, h.count, h.place, h.address, h.lat, h.lon, "、".join(h.cases),
                   h.first_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"), h.last_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")])


def _xlsx_definitions(ws, report: StatsReport) -> None:
    tz = report.as_of.tzinfo
    q = report.query
    ws.append(["期间", f"{q.since.astimezone(tz):%Y-%m-%d %H:%M} 至 {q.until.astimezone(tz):%Y-%m-%d %H:%M}（不含）"])
    ws.append(["分组", report.group_name])
    ws.append([])
    ws.append(["指标", "口径"])
    for d in report.definitions.values():
        ws.append([d.name, d.formula])
    ws.append([])
    ws.append(["热点半径（米）", report.hot_spot_rule.radius_m])
    ws.append(["热点最少件数", report.hot_spot_rule.min_cases])
    ws.append(["满意评分下限", report.satisfaction.satisfied_min_rating])
