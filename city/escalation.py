"""超期预警与督办: warn about cases close to or past their deadline, and escalate.

The rules are data (``escalation.yaml`` in the city data folder, else the
bundled one): each names the state it fires in (即将超期 / 已超期, optionally
only once overdue by more than a working duration), who is told (the
responsible department, the district's 区城市运行和治理中心, the city centre)
and the message. Time is working time on the department's calendar.

:func:`tick` is one pass of the scheduler. For each due case and each rule that
fires it inserts one notification per recipient, keyed by
``case:rule:recipient:deadline``, and one audit row on the case (status
unchanged), in one transaction. The key makes it idempotent: a later tick, or a
concurrent one on another machine, sends nothing twice; a new deadline (延期, a
re-dispatch after 核查不通过) starts afresh.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from string import Formatter
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from city import settings
from city.bundle import CityData
from city.cases import Case
from city.catalogue import WorkDuration
from city.datafiles import read_yaml, validate
from city.errors import InvalidInput, NotFound
from city.store.schema import AuditRow, CaseRow, NotificationRow

if TYPE_CHECKING:
    from city.store import Store

FILENAME = "escalation.yaml"
SYSTEM = "system"

#: The placeholders a rule's message may use.
FIELDS = frozenset({
    "number", "title", "code", "department", "department_id", "address", "deadline",
    "left", "overdue", "overdue_by", "status", "urgency", "level", "rule",
})


class Recipient(StrEnum):
    """Who a rule notifies, by role; resolved to a department id per case."""

    DEPARTMENT = "department"
    DISTRICT_COORDINATOR = "district_coordinator"
    CITY_COORDINATOR = "city_coordinator"


class Condition(BaseModel):
    """When a rule fires: the case's SLA state, and optionally how far overdue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["即将超期", "已超期"]
    overdue_by: WorkDuration | None = None  # fire only once overdue by more than this (working time)

    @model_validator(mode="after")
    def _overdue_only(self):
        if self.overdue_by is not None and self.state != "已超期":
            raise ValueError("overdue_by goes with state 已超期 only")
        return self


class EscalationRule(BaseModel):
    """One rule of ``escalation.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=32, pattern=r"^[^:\s]+$")
    level: int = Field(ge=1, le=9)
    action: Literal["超期预警", "督办"] = "超期预警"
    when: Condition
    recipients: list[Recipient] = Field(min_length=1)
    message: str = Field(min_length=1)

    @field_validator("recipients")
    @classmethod
    def _unique(cls, v: list[Recipient]) -> list[Recipient]:
        if len(set(v)) != len(v):
            raise ValueError(f"recipient listed twice in {[r.value for r in v]}")
        return v

    @field_validator("message")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            names = {name for _, name, _, _ in Formatter().parse(v) if name is not None}
        except ValueError as e:
            raise ValueError(f"message is not a valid template: {e}") from None
        unknown = names - FIELDS
        if unknown:
            raise ValueError(f"unknown placeholder {{{min(unknown)}}} in message; known: {', '.join(sorted(FIELDS))}")
        try:
            v.format(**dict.fromkeys(FIELDS, ""))
        except (ValueError, IndexError) as e:
            raise ValueError(f"message is not a valid template: {e}") from None
        return v


class EscalationRules(BaseModel):
    """The whole of ``escalation.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[EscalationRule] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, v: list[EscalationRule]) -> list[EscalationRule]:
        names = [r.name for r in v]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise ValueError(f"rule name {dup!r} used twice")
        return v


def escalation_path(city: CityData | None = None) -> Path:
    """``escalation.yaml`` of the city's data folder (``city.folder``, else
    ``XUNJIAN_CITY_DATA``), or the bundled one when that folder has none."""
    folder = city.folder if city is not None else settings.city_data_dir()
    path = Path(folder) / FILENAME
    return path if path.is_file() else settings.BUNDLED_CITY_DATA / FILENAME


def load_escalation(path: Path | str | None = None, *, city: CityData | None = None) -> EscalationRules:
    """Load and check the rules (default: :func:`escalation_path`); errors are DataError."""
    path = Path(path) if path is not None else escalation_path(city)
    return validate(EscalationRules, read_yaml(path), str(path))


# -- assessing ------------------------------------------------------------------------


class Due(BaseModel):
    """A case that is 即将超期 or 已超期, and the rules that fire for it now."""

    case: Case
    state: Literal["即将超期", "已超期"]
    remaining: timedelta  # working time left; negative when overdue
    rules: list[EscalationRule]

    @property
    def level(self) -> int:
        return max((r.level for r in self.rules), default=0)


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise InvalidInput("time must carry a time zone (e.g. 2026-11-23T09:00+08:00)")
    return now


def fires(rule: EscalationRule, city: CityData, case: Case, state: str, now: datetime) -> bool:
    """Whether ``rule`` fires for ``case`` (in SLA ``state``) at ``now``. ``overdue_by``
    is counted on the department's calendar from the deadline: 2工作日 past a
    Friday 17:00 deadline is Tuesday 17:00 on the standard calendar."""
    if rule.when.state != state:
        return False
    if rule.when.overdue_by is None:
        return True
    return now > city.calendar(case.department_id).add(case.deadline, rule.when.overdue_by)


def assess(store: Store, now: datetime | None = None, rules: EscalationRules | None = None,
           department_id: str | None = None) -> list[Due]:
    """The due cases (:meth:`Store.due`, earliest deadline first) with the rules that fire."""
    now = _aware(now)
    rules = rules or load_escalation(city=store.city)
    out = []
    for case, state, left in store.due(now, department_id=department_id):
        fired = [r for r in rules.rules if fires(r, store.city, case, state, now)]
        out.append(Due(case=case, state=state, remaining=left, rules=fired))
    return out


# -- sending --------------------------------------------------------------------------


class Sent(BaseModel):
    """One notification a tick inserted."""

    id: int
    case_number: str
    rule: str
    level: int
    action: str
    recipient: str
    message: str
    deadline: datetime


class TickReport(BaseModel):
    """What one pass of the scheduler did."""

    at: datetime
    checked: int = 0  # due cases looked at
    sent: list[Sent] = []
    skipped: int = 0  # notifications already sent before (or by a concurrent tick)


def fmt_duration(d: timedelta) -> str:
    """``1小时30分钟``, ``45分钟``, ``2小时`` (the absolute value)."""
    minutes = int(abs(d).total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes}分钟"
    return f"{hours}小时{minutes}分钟" if minutes else f"{hours}小时"


def recipients(city: CityData, case: Case, roles: list[Recipient]) -> list[str]:
    """The department ids ``roles`` stand for on ``case``, in order, each once. A case
    with no district (or no 区协调中心) has the city centre as its district coordinator."""
    ids: list[str] = []
    for role in roles:
        if role is Recipient.DEPARTMENT:
            rid = case.department_id
        elif role is Recipient.DISTRICT_COORDINATOR:
            coordinator = city.departments.coordinator(case.district_id) if case.district_id else None
            rid = coordinator.id if coordinator else city.settings.coordinator
        else:
            rid = city.settings.coordinator
        if rid and rid not in ids:
            ids.append(rid)
    return ids


def render(rule: EscalationRule, city: CityData, due: Due) -> str:
    """The rule's message for a due case."""
    case = due.case
    dept = city.departments.by_id.get(case.department_id)
    return rule.message.format(
        number=case.number, title=case.title, code=case.code, address=case.address or "—",
        department=dept.name if dept else case.department_id, department_id=case.department_id,
        deadline=case.deadline.astimezone(city.calendars.tz).strftime("%Y-%m-%d %H:%M"),
        left=fmt_duration(max(due.remaining, timedelta(0))), overdue=fmt_duration(min(due.remaining, timedelta(0))),
        overdue_by=str(rule.when.overdue_by or ""), status=case.status.value, urgency=case.urgency.value,
        level=rule.level, rule=rule.name,
    )


def notification_key(number: str, rule: str, recipient: str, deadline: datetime) -> str:
    """The idempotency key: one notification per (case, rule, recipient, deadline)."""
    return f"{number}:{rule}:{recipient}:{deadline.astimezone(UTC).isoformat()}"


def _insert(s: Session, dialect: str, values: dict) -> int | None:
    """Insert a notification unless its key exists; its id, or None if it existed."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(NotificationRow).values(**values).on_conflict_do_nothing(index_elements=["key"]).returning(NotificationRow.id)
    return s.execute(stmt).scalar_one_or_none()


def _locked_case(s: Session, dialect: str, number: str) -> CaseRow | None:
    stmt = select(CaseRow).where(CaseRow.number == number)
    if dialect == "postgresql":
        stmt = stmt.with_for_update()
    return s.execute(stmt).scalar_one_or_none()


def _send(store: Store, due: Due, now: datetime, actor: str, report: TickReport) -> None:
    """Send what the due case's rules call for, in one transaction, unless the case
    changed since it was read (handled, returned, extended meanwhile)."""
    case, city = due.case, store.city
    with store.writing() as s:
        row = _locked_case(s, store.dialect, case.number)
        if row is None or (row.status, row.department_id, row.deadline) != (case.status.value, case.department_id, case.deadline):
            return
        for rule in due.rules:
            message = render(rule, city, due)
            to = []
            for rid in recipients(city, case, rule.recipients):
                nid = _insert(s, store.dialect, {
                    "key": notification_key(case.number, rule.name, rid, case.deadline), "case_id": row.id,
                    "rule": rule.name, "level": rule.level, "recipient": rid, "message": message,
                    "deadline": case.deadline, "created_at": now})
                if nid is None:
                    report.skipped += 1
                    continue
                to.append(rid)
                report.sent.append(Sent(id=nid, case_number=case.number, rule=rule.name, level=rule.level, action=rule.action,
                                        recipient=rid, message=message, deadline=case.deadline))
            if to:
                s.add(AuditRow(case_id=row.id, at=now, actor=actor, action=rule.action, from_status=row.status,
                               to_status=row.status, note=message,
                               data={"rule": rule.name, "level": rule.level, "recipients": to, "state": due.state,
                                     "deadline": case.deadline.astimezone(city.calendars.tz).isoformat(),
                                     "remaining_minutes": int(due.remaining.total_seconds() // 60)}))


def tick(store: Store, now: datetime | None = None, rules: EscalationRules | None = None, *, actor: str = SYSTEM) -> TickReport:
    """One pass: find the due cases and send what the rules call for, each thing once."""
    now = _aware(now)
    rules = rules or load_escalation(city=store.city)
    report = TickReport(at=now)
    for due in assess(store, now, rules):
        report.checked += 1
        if not due.rules:
            continue
        mark = len(report.sent), report.skipped
        try:
            _send(store, due, now, actor, report)
        except IntegrityError:  # a concurrent tick won a race the key did not cover: nothing of ours was kept
            del report.sent[mark[0]:]
            report.skipped = mark[1] + 1
    return report


# -- reading and acknowledging ----------------------------------------------------------------


class Notification(BaseModel):
    """A notification as stored, with its case's number."""

    id: int
    case_number: str
    rule: str
    level: int
    recipient: str
    message: str
    deadline: datetime | None
    created_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


def _to_notification(row: NotificationRow, number: str) -> Notification:
    return Notification(id=row.id, case_number=number, rule=row.rule, level=row.level, recipient=row.recipient,
                        message=row.message, deadline=row.deadline, created_at=row.created_at,
                        acknowledged_at=row.acknowledged_at, acknowledged_by=row.acknowledged_by)


def notifications(store: Store, recipient: str | None = None, unacknowledged: bool = False, limit: int = 100,
                  case_number: str | None = None) -> list[Notification]:
    """Notifications, newest first: to ``recipient`` (a department id), only the
    unacknowledged ones, about one case."""
    stmt = select(NotificationRow, CaseRow.number).join(CaseRow, CaseRow.id == NotificationRow.case_id)
    if recipient:
        stmt = stmt.where(NotificationRow.recipient == recipient)
    if unacknowledged:
        stmt = stmt.where(NotificationRow.acknowledged_at.is_(None))
    if case_number:
        stmt = stmt.where(CaseRow.number == case_number)
    stmt = stmt.order_by(NotificationRow.created_at.desc(), NotificationRow.id.desc()).limit(limit)
    with store.reading() as s:
        return [_to_notification(row, number) for row, number in s.execute(stmt)]


def acknowledge(store: Store, notification_id: int, actor: str, now: datetime | None = None) -> Notification:
    """Mark a notification read (签收) by ``actor``; acknowledging it again keeps the first."""
    now = _aware(now)
    if not actor or not actor.strip():
        raise InvalidInput("acknowledging needs an actor (who read it)")
    stmt = (select(NotificationRow, CaseRow.number).join(CaseRow, CaseRow.id == NotificationRow.case_id)
            .where(NotificationRow.id == notification_id))
    if store.dialect == "postgresql":
        stmt = stmt.with_for_update(of=NotificationRow)
    with store.writing() as s:
        found = s.execute(stmt).one_or_none()
        if found is None:
            raise NotFound(f"no notification {notification_id}")
        row, number = found
        if row.acknowledged_at is None:
            row.acknowledged_at, row.acknowledged_by = now.astimezone(UTC), actor
        s.flush()
        return _to_notification(row, number)
