"""The case store: cases, evidence and the audit log in SQLite or PostgreSQL.

Every lifecycle action runs in one transaction that checks the transition,
updates the case and writes its audit row, so a crash leaves either all of it
or none of it. Creation is idempotent on ``external_id``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, func, not_, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from city import geo, settings
from city.bundle import CityData, load_city
from city.cases import AuditEntry, Case, CaseQuery, Evidence, NewCase
from city.catalogue import Kind, Urgency, WorkDuration
from city.errors import InvalidInput, NotFound, XunjianError
from city.lifecycle import OPEN, WITH_DEPARTMENT, Action, Status, transition
from city.routing import RouteDecision
from city.store.accounts import AccountStore
from city.store.db import make_engines, migrate
from city.store.jobs import JobStore
from city.store.observations import ObservationStore
from city.store.schema import AuditRow, CaseRow, CounterRow, EvidenceRow
from city.store.verifications import VerificationStore

SYSTEM = "system"
URGENCY_CHANGED = "调整紧急程度"  # the audit action of an urgency change outside the lifecycle


def _cap_box(lat: float, lon: float, radius_m: float) -> tuple[float, float, tuple[float, float] | None]:
    """(lat_min, lat_max, (lon_min, lon_max) or None) bounding every point within
    ``radius_m`` of (lat, lon), with the margins of :func:`city.geo.cells_within`;
    no longitude bounds where the circle holds a pole or crosses the antimeridian."""
    d = radius_m * (1 + 1e-9) / geo.EARTH_RADIUS_M
    dlat = math.degrees(d) + 1e-9
    cos_lat = math.cos(math.radians(lat))
    if lat + dlat >= 90 or lat - dlat <= -90 or math.sin(d) >= cos_lat:
        return lat - dlat, lat + dlat, None
    dlon = math.degrees(math.asin(math.sin(d) / cos_lat)) + 1e-9
    if lon - dlon < -180 or lon + dlon > 180:
        return lat - dlat, lat + dlat, None
    return lat - dlat, lat + dlat, (lon - dlon, lon + dlon)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise InvalidInput("time must carry a time zone (e.g. 2026-11-23T09:00+08:00)")
    return now


class Store(ObservationStore, VerificationStore, AccountStore, JobStore):
    """Open (and migrate) the store at ``url`` (default: ``XUNJIAN_DB_URL`` or the
    SQLite file in the user's data dir) for the given city data."""

    def __init__(self, url: str | None = None, city: CityData | None = None, *, auto_migrate: bool = True):
        self.url = url or settings.db_url()
        self.city = city or load_city()
        self.read_engine, self.write_engine = make_engines(self.url)
        try:
            if auto_migrate:
                migrate(self.write_engine)
        except OperationalError as e:
            raise XunjianError(f"cannot open the store at {self.read_engine.url.render_as_string()}: {e.orig}") from None
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)
        self.tz = self.city.calendars.tz

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    def close(self) -> None:
        self.read_engine.dispose()
        self.write_engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read() as s, s.begin():
            yield s

    @contextmanager
    def writing(self) -> Iterator[Session]:
        with self._write() as s, s.begin():
            yield s

    # -- creation ----------------------------------------------------------------

    def _next_number(self, s: Session, scope: str, day: str) -> str:
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = (
            insert(CounterRow)
            .values(scope=scope, day=day, last=1)
            .on_conflict_do_update(index_elements=["scope", "day"], set_={"last": CounterRow.last + 1})
            .returning(CounterRow.last)
        )
        seq = s.execute(stmt).scalar_one()
        return f"{scope}-{day}-{seq:04d}"

    def create_case(self, new: NewCase, *, actor: str = SYSTEM, now: datetime | None = None) -> Case:
        """Open a case in status 上报. With an ``external_id`` already in the store,
        return that case instead (idempotent)."""
        now = _now(now)
        if new.external_id and (existing := self.find_external(new.external_id)):
            return existing
        entry = self.city.catalogue.get(new.code, new.kind)
        if (new.lat is None) != (new.lon is None):
            raise InvalidInput("give both lat and lon, or neither")
        if new.lat is not None and not geo.in_china(new.lat, new.lon):
            raise InvalidInput(f"position {new.lat},{new.lon} is outside China; expected LAT,LON in WGS-84")
        loc = self.city.locate(new.lat, new.lon)
        scope = loc.district_id or self.city.settings.code
        day = now.astimezone(self.tz).strftime("%Y%m%d")
        try:
            with self.writing() as s:
                row = CaseRow(
                    number=self._next_number(s, scope, day),
                    external_id=new.external_id,
                    source=new.source.value,
                    kind=entry.kind.value,
                    code=entry.code,
                    title=entry.name,
                    description=new.description,
                    address=new.address,
                    lat=new.lat,
                    lon=new.lon,
                    cell=geo.cell_of(new.lat, new.lon) if new.lat is not None else None,
                    district_id=loc.district_id,
                    street_id=loc.street_id,
                    grid_id=loc.grid_id,
                    context=new.context,
                    owner=new.owner,
                    urgency=(new.urgency or entry.default_priority).value,
                    risk_level=(new.risk_level or entry.risk_level).value,
                    status=Status.REPORTED.value,
                    reporter_name=new.reporter_name,
                    reporter_phone=new.reporter_phone,
                    rework_count=0,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
                s.flush()
                for ev in new.evidence:
                    s.add(self._evidence_row(row.id, ev, actor, now))
                s.add(AuditRow(case_id=row.id, at=now, actor=actor, action="发现" if new.source.value in ("车巡", "机巡") else "上报",
                               from_status=None, to_status=Status.REPORTED.value, note="", data={"source": new.source.value}))
                number = row.number
        except IntegrityError:
            if new.external_id and (existing := self.find_external(new.external_id)):
                return existing  # a concurrent writer created it first
            raise
        return self.get(number)

    @staticmethod
    def _evidence_row(case_id: int, ev: Evidence, actor: str, now: datetime) -> EvidenceRow:
        return EvidenceRow(case_id=case_id, kind=ev.kind, uri=ev.uri, note=ev.note, sha256=ev.sha256,
                           captured_at=ev.captured_at and _now(ev.captured_at), added_at=now, added_by=actor)

    # -- reading -------------------------------------------------------------------

    def _row(self, s: Session, number: str, lock: bool = False) -> CaseRow:
        stmt = select(CaseRow).where(CaseRow.number == number)
        if lock and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = s.execute(stmt).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no case {number!r}")
        return row

    @staticmethod
    def _to_case(row: CaseRow, evidence=(), history=()) -> Case:
        data = {c.key: getattr(row, c.key) for c in CaseRow.__table__.columns if c.key not in ("id", "cell")}
        return Case(
            **data,
            evidence=[Evidence(kind=e.kind, uri=e.uri, note=e.note, sha256=e.sha256, captured_at=e.captured_at,
                               added_at=e.added_at, added_by=e.added_by) for e in evidence],
            history=[AuditEntry(at=a.at, actor=a.actor, action=a.action, from_status=a.from_status,
                                to_status=a.to_status, note=a.note, data=a.data or {}) for a in history],
        )

    def get(self, number: str) -> Case:
        with self.reading() as s:
            row = self._row(s, number)
            ev = s.execute(select(EvidenceRow).where(EvidenceRow.case_id == row.id).order_by(EvidenceRow.id)).scalars().all()
            hist = s.execute(select(AuditRow).where(AuditRow.case_id == row.id).order_by(AuditRow.id)).scalars().all()
            return self._to_case(row, ev, hist)

    def find_external(self, external_id: str) -> Case | None:
        with self.reading() as s:
            number = s.execute(select(CaseRow.number).where(CaseRow.external_id == external_id)).scalar_one_or_none()
        return self.get(number) if number else None

    def history(self, number: str) -> list[AuditEntry]:
        return self.get(number).history

    def _filtered(self, stmt, q: CaseQuery):
        if q.status:
            stmt = stmt.where(CaseRow.status.in_([st.value for st in q.status]))
        for col, value in ((CaseRow.department_id, q.department_id), (CaseRow.code, q.code),
                           (CaseRow.source, q.source and q.source.value), (CaseRow.district_id, q.district_id),
                           (CaseRow.street_id, q.street_id)):
            if value:
                stmt = stmt.where(col == value)
        if q.since:
            stmt = stmt.where(CaseRow.created_at >= _now(q.since))
        if q.until:
            stmt = stmt.where(CaseRow.created_at < _now(q.until))
        if q.text and q.text.strip():
            t = q.text.strip()
            stmt = stmt.where(or_(*(col.icontains(t, autoescape=True)
                                    for col in (CaseRow.number, CaseRow.description, CaseRow.address))))
        if q.overdue is not None:
            late = and_(CaseRow.status.in_([st.value for st in WITH_DEPARTMENT]), CaseRow.deadline.is_not(None),
                        CaseRow.deadline < _now(q.as_of))
            stmt = stmt.where(late if q.overdue else not_(late))
        if q.located:
            stmt = stmt.where(CaseRow.lat.is_not(None), CaseRow.lon.is_not(None))
        return stmt

    #: from this offset on, a page is found by its ids first (an index-only walk of
    #: ``(created_at, id)``), then only its rows are read (docs/scale.md)
    DEEP_OFFSET = 1000

    def list(self, q: CaseQuery | None = None, *, after: str | None = None) -> list[Case]:
        """Cases matching ``q``, newest first (without evidence and history).
        ``after``: the number of the last case of the previous page (keyset
        paging: the cases that come after it in this order, ``q.offset`` counted
        from there); fast at any depth, unlike a large ``q.offset``."""
        q = q or CaseQuery()
        order = (CaseRow.created_at.desc(), CaseRow.id.desc())
        with self.reading() as s:
            cond = None
            if after:
                ref = s.execute(select(CaseRow.created_at, CaseRow.id).where(CaseRow.number == after)).one_or_none()
                if ref is None:
                    raise NotFound(f"没有编号为 {after} 的案件（after 应为上一页最后一件的编号）")
                cond = tuple_(CaseRow.created_at, CaseRow.id) < tuple_(ref.created_at, ref.id)
            if q.offset >= self.DEEP_OFFSET:
                ids = self._filtered(select(CaseRow.id), q)
                ids = ids.where(cond) if cond is not None else ids
                page = ids.order_by(*order).limit(q.limit).offset(q.offset).scalar_subquery()
                stmt = select(CaseRow).where(CaseRow.id.in_(page)).order_by(*order)
            else:
                stmt = self._filtered(select(CaseRow), q)
                stmt = (stmt.where(cond) if cond is not None else stmt).order_by(*order).limit(q.limit).offset(q.offset)
            return [self._to_case(r) for r in s.execute(stmt).scalars()]

    def count(self, q: CaseQuery | None = None) -> int:
        with self.reading() as s:  # count(*), not count(id): an index-only scan where an index has the filter's columns
            return s.execute(self._filtered(select(func.count()).select_from(CaseRow), q or CaseQuery())).scalar_one()

    # -- the lifecycle ---------------------------------------------------------------

    def act(
        self,
        number: str,
        action: Action,
        *,
        actor: str,
        note: str | None = None,
        department_id: str | None = None,
        urgency: Urgency | None = None,
        extend: WorkDuration | None = None,
        approver: str | None = None,
        duplicate_of: str | None = None,
        rating: int | None = None,
        decision: RouteDecision | None = None,
        evidence: list[Evidence] | None = None,
        data: dict | None = None,
        now: datetime | None = None,
    ) -> Case:
        """Apply one lifecycle action in one transaction (check, change, audit row).

        派遣 goes to ``department_id`` when given (人工指定), else to the department
        of ``decision`` (a routing already made, e.g. by the pipeline), else to what
        the responsibility rules decide now. ``evidence`` (e.g. the department's
        photos with 处置完成, the footage of a 核查) is attached in the same
        transaction; ``data`` is merged into the audit row's data."""
        now = _now(now)
        if not actor or not actor.strip():
            raise InvalidInput("every action needs an actor (who did it)")
        with self.writing() as s:
            self._act(s, number, action, actor=actor, note=note, department_id=department_id, urgency=urgency,
                      extend=extend, approver=approver, duplicate_of=duplicate_of, rating=rating, decision=decision,
                      evidence=evidence, data=data, now=now)
        return self.get(number)

    def act_many(self, number: str, steps: list[dict], *, actor: str, data: dict | None = None,
                 now: datetime | None = None) -> Case:
        """Several changes to one case in ONE transaction (e.g. 退回 then 派遣 for a
        reassignment): each step is the keyword arguments of :meth:`act` with its
        ``action``, or ``{"urgency": U, "note": ...}`` without an action to change
        the urgency alone (audited as 调整紧急程度; status and deadline unchanged).
        ``data`` goes into every audit row."""
        now = _now(now)
        if not actor or not actor.strip():
            raise InvalidInput("every action needs an actor (who did it)")
        with self.writing() as s:
            for step in steps:
                step = dict(step)
                action = step.pop("action", None)
                if action is None:
                    self._set_urgency(s, number, Urgency(step["urgency"]), actor=actor, note=step.get("note", ""),
                                      data=data or {}, now=now)
                else:
                    self._act(s, number, Action(action), actor=actor, data=data, now=now, **step)
        return self.get(number)

    def _set_urgency(self, s: Session, number: str, urgency: Urgency, *, actor: str, note: str, data: dict,
                     now: datetime) -> None:
        row = self._row(s, number, lock=True)
        old = row.urgency
        row.urgency, row.updated_at = urgency.value, now
        s.add(AuditRow(case_id=row.id, at=now, actor=actor, action=URGENCY_CHANGED, from_status=row.status,
                       to_status=row.status, note=note, data={**data, "urgency": urgency.value, "old_urgency": old}))

    def _act(self, s: Session, number: str, action: Action, *, actor: str, note: str | None = None,
             department_id: str | None = None, urgency: Urgency | None = None, extend: WorkDuration | None = None,
             approver: str | None = None, duplicate_of: str | None = None, rating: int | None = None,
             decision: RouteDecision | None = None, evidence: list[Evidence] | None = None, data: dict | None = None,
             now: datetime) -> CaseRow:
        """:meth:`act` inside an open write transaction ``s`` (several actions can share one)."""
        row = self._row(s, number, lock=True)
        before = Status(row.status)
        after = transition(before, action, note)
        data = dict(data or {})
        entry = self.city.catalogue.get(row.code, Kind(row.kind))
        if urgency is not None:
            row.urgency = urgency.value
            data["urgency"] = urgency.value

        # 解除挂账 of a case shelved before any department held it (挂账 from 立案) enters
        # 派遣 with no department: route it as a 派遣 would
        if action is Action.DISPATCH or (action is Action.UNSHELVE and row.department_id is None):
            returned = self._returned_by(s, row.id)
            if department_id:
                dept = self.city.departments.get(department_id)
                row.route_rule, row.route_principle, row.route_note = "manual", "人工指定", f"由 {actor} 指定"
            else:
                if decision is None or decision.department_id in returned:
                    decision = self.city.route(entry, row.lat, row.lon, row.context, row.owner, exclude=frozenset(returned))
                dept = self.city.departments.get(decision.department_id)
                row.route_rule = decision.rule_id or "无责任主体"
                row.route_principle = decision.principle
                row.route_note = "\n".join(decision.trail)
                data["ambiguous"] = decision.ambiguous
            row.department_id = dept.id
            data["department"] = dept.id
        elif department_id:
            raise InvalidInput(f"a department is chosen only when dispatching (派遣), not at {action.value}")

        if after is Status.DISPATCHED and action is not Action.EXTEND:  # 派遣, 核查不通过 (rework), 解除挂账: a new time limit runs
            limit = entry.time_limits[Urgency(row.urgency)]
            row.deadline = self.city.deadline(row.department_id, now, limit)
            data["deadline"] = row.deadline.isoformat()
            data["time_limit"] = str(limit)
        if action is Action.FAIL:
            row.rework_count += 1
        if action is Action.RETURN:
            data["returned_by"] = row.department_id
            row.department_id = None
            row.deadline = None
        if action is Action.EXTEND:
            if extend is None or not approver:
                raise InvalidInput("延期 needs the extra time (--extend, e.g. 2工作日) and who approved it (--approver)")
            old = row.deadline
            row.deadline = self.city.deadline(row.department_id, old or now, extend)
            data.update(approver=approver, extend=str(extend), old_deadline=old and old.isoformat(), deadline=row.deadline.isoformat())
        if action is Action.VOID and duplicate_of:
            if duplicate_of == number:
                raise InvalidInput("a case cannot be a duplicate of itself")
            self._row(s, duplicate_of)
            row.duplicate_of = duplicate_of
            data["duplicate_of"] = duplicate_of
        if action is Action.EVALUATE:
            if rating is None or not 1 <= rating <= 5:
                raise InvalidInput("评价 needs a rating from 1 (不满意) to 5 (非常满意): --rating")
            row.rating = rating
            data["rating"] = rating
        if after is Status.CLOSED:
            row.closed_at = now

        for ev in evidence or ():
            s.add(self._evidence_row(row.id, ev, actor, now))
        if evidence:
            data["evidence"] = len(evidence)
        row.status = after.value
        row.updated_at = now
        s.add(AuditRow(case_id=row.id, at=now, actor=actor, action=action.value, from_status=before.value,
                       to_status=after.value, note=note or "", data=data))
        return row

    @staticmethod
    def _returned_by(s: Session, case_id: int) -> set[str]:
        rows = s.execute(select(AuditRow.data).where(AuditRow.case_id == case_id, AuditRow.action == Action.RETURN.value)).scalars()
        return {d.get("returned_by") for d in rows if d and d.get("returned_by")}

    def add_evidence(self, number: str, evidence: list[Evidence], *, actor: str, note: str = "", now: datetime | None = None) -> Case:
        """Attach evidence (e.g. a later sighting of the same issue); audited, status unchanged."""
        now = _now(now)
        with self.writing() as s:
            row = self._row(s, number, lock=True)
            for ev in evidence:
                s.add(self._evidence_row(row.id, ev, actor, now))
            s.add(AuditRow(case_id=row.id, at=now, actor=actor, action="补充证据", from_status=row.status,
                           to_status=row.status, note=note, data={"count": len(evidence)}))
            row.updated_at = now
        return self.get(number)

    def annotate(self, number: str, action: str, *, actor: str, note: str = "", data: dict | None = None,
                 now: datetime | None = None) -> Case:
        """An audit row that changes no status (e.g. 修改回复稿, the edited reply to the
        citizen in ``data``); the case's ``updated_at`` moves. Lifecycle actions go
        through :meth:`act`."""
        now = _now(now)
        if not actor or not actor.strip():
            raise InvalidInput("every action needs an actor (who did it)")
        if not action or action in {a.value for a in Action} or action in (URGENCY_CHANGED, "上报", "发现", "补充证据"):
            raise InvalidInput(f"{action!r} is not a note-only audit action")
        with self.writing() as s:
            row = self._row(s, number, lock=True)
            s.add(AuditRow(case_id=row.id, at=now, actor=actor, action=action, from_status=row.status,
                           to_status=row.status, note=note, data=data or {}))
            row.updated_at = now
        return self.get(number)

    # -- dedupe and SLA queries ------------------------------------------------------

    def nearby_open(
        self, lat: float, lon: float, radius_m: float, codes: list[str] | None = None, since: datetime | None = None,
    ) -> list[tuple[Case, float]]:
        """Open cases within ``radius_m`` of a point (optionally of given codes and
        created since a time), nearest first, with their distance in metres.
        Uses the ``(cell, code, created_at)`` index: a handful of cells, never a
        table scan; the circle's bounding box keeps the rest of those cells' rows
        out of the ORM (see benchmarks/README.md)."""
        cells = geo.cells_within(lat, lon, radius_m)
        stmt = select(CaseRow).where(CaseRow.cell.in_(cells), CaseRow.status.in_([st.value for st in OPEN]))
        if codes:
            stmt = stmt.where(CaseRow.code.in_(codes))
        if since:
            stmt = stmt.where(CaseRow.created_at >= _now(since))
        lat_lo, lat_hi, lon_range = _cap_box(lat, lon, radius_m)
        stmt = stmt.where(CaseRow.lat.between(lat_lo, lat_hi))
        if lon_range:
            stmt = stmt.where(CaseRow.lon.between(*lon_range))
        with self.reading() as s:
            rows = s.execute(stmt).scalars().all()
        out = []
        for r in rows:
            d = float(geo.haversine_m(lat, lon, r.lat, r.lon))
            if d <= radius_m:
                out.append((self._to_case(r), d))
        out.sort(key=lambda x: x[1])
        return out

    def find_duplicates(
        self, code: str, lat: float, lon: float, *, kind: Kind | None = None, radius_m: float = 50.0,
        window: timedelta = timedelta(days=30), now: datetime | None = None,
    ) -> list[tuple[Case, float]]:
        """Open cases of the same or a related class (its 部件/事件 twin and the
        classes the catalogue names as related) within ``radius_m`` and ``window``."""
        entry = self.city.catalogue.get(code, kind)
        codes = sorted({e.code for e in self.city.catalogue.related(entry)})
        return self.nearby_open(lat, lon, radius_m, codes=codes, since=_now(now) - window)

    def due(self, now: datetime | None = None, department_id: str | None = None, soon: bool = True) -> list[tuple[Case, str, timedelta]]:
        """Cases held by a department that are 已超期 (and, with ``soon``, 即将超期),
        with their status and the working time left (negative when overdue)."""
        now = _now(now)
        horizon = now + timedelta(days=14) if soon else now  # a superset; the calendar decides
        stmt = select(CaseRow).where(CaseRow.status.in_([st.value for st in WITH_DEPARTMENT]),
                                     CaseRow.deadline.is_not(None), CaseRow.deadline <= horizon)
        if department_id:
            stmt = stmt.where(CaseRow.department_id == department_id)
        with self.reading() as s:
            rows = s.execute(stmt.order_by(CaseRow.deadline)).scalars().all()
        out = []
        for r in rows:
            cal = self.city.calendar(r.department_id)
            limit = self.city.catalogue.get(r.code, Kind(r.kind)).time_limits[Urgency(r.urgency)]
            state = cal.status(r.deadline, now, limit=limit)
            if state == "已超期" or (soon and state == "即将超期"):
                out.append((self._to_case(r), state, cal.remaining(r.deadline, now)))
        return out

    def due_counts(self, now: datetime | None = None, department_id: str | None = None) -> dict[str, dict[str, int]]:
        """``{department_id: {"已超期": n, "即将超期": m}}``: what :meth:`due` finds,
        counted from the few columns it needs (no cases loaded: for dashboards)."""
        now = _now(now)
        stmt = select(CaseRow.department_id, CaseRow.code, CaseRow.kind, CaseRow.urgency, CaseRow.deadline).where(
            CaseRow.status.in_([st.value for st in WITH_DEPARTMENT]), CaseRow.deadline.is_not(None),
            CaseRow.deadline <= now + timedelta(days=14))
        if department_id:
            stmt = stmt.where(CaseRow.department_id == department_id)
        with self.reading() as s:
            rows = s.execute(stmt).all()
        out: dict[str, dict[str, int]] = {}
        for dept, code, kind, urgency, deadline in rows:
            limit = self.city.catalogue.get(code, Kind(kind)).time_limits[Urgency(urgency)]
            state = self.city.calendar(dept).status(deadline, now, limit=limit)
            if state in ("已超期", "即将超期"):
                counts = out.setdefault(dept, {"已超期": 0, "即将超期": 0})
                counts[state] += 1
        return out
