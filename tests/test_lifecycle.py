"""The case lifecycle: the transition table itself, then the same rules and the
audit log through the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from city.catalogue import Urgency, WorkDuration
from city.cases import Evidence, NewCase
from city.errors import IllegalTransition, InvalidInput, NotFound
from city.lifecycle import (
    ALIASES, FINAL, OPEN, TRANSITIONS, WITH_DEPARTMENT, Action, Status, allowed_actions, parse_action, transition,
)
from city.store.schema import AuditRow
from crash_writer import PATH_TO, args_for, drive, ref_deadline

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)  # a Monday, a working day
S, A = Status, Action

# The lifecycle as documented (DESIGN.md, city/lifecycle.py): a second source of
# truth, so an accidental edit of TRANSITIONS fails here.
DOCUMENTED = {
    A.FILE: ({S.REPORTED}, S.FILED, False),
    A.DECLINE: ({S.REPORTED}, S.NOT_FILED, True),
    A.DISPATCH: ({S.FILED}, S.DISPATCHED, False),
    A.ACCEPT: ({S.DISPATCHED}, S.IN_PROGRESS, False),
    A.RETURN: ({S.DISPATCHED, S.IN_PROGRESS}, S.FILED, True),
    A.COMPLETE: ({S.IN_PROGRESS}, S.HANDLED, False),
    A.REQUEST_VERIFY: ({S.HANDLED}, S.VERIFYING, False),
    A.PASS: ({S.VERIFYING}, S.CLOSED, False),
    A.FAIL: ({S.VERIFYING}, S.DISPATCHED, True),
    A.EVALUATE: ({S.CLOSED}, S.EVALUATED, False),
    A.EXTEND: ({S.DISPATCHED, S.IN_PROGRESS}, None, True),
    A.SHELVE: ({S.FILED, S.DISPATCHED, S.IN_PROGRESS}, S.SHELVED, True),
    A.UNSHELVE: ({S.SHELVED}, S.DISPATCHED, False),
    A.VOID: ({S.REPORTED, S.FILED, S.DISPATCHED}, S.VOID, True),
}

LEGAL = [(a, s, rule.target or s) for a, rule in TRANSITIONS.items() for s in sorted(rule.sources)]
ILLEGAL = [(a, s) for a in Action for s in Status if s not in TRANSITIONS[a].sources]


def reason_for(action: Action) -> str | None:
    return "原因说明" if TRANSITIONS[action].needs_reason else None


# -- the table --------------------------------------------------------------------------


def test_table_is_the_documented_lifecycle():
    assert set(TRANSITIONS) == set(Action)
    for action, (sources, target, needs_reason) in DOCUMENTED.items():
        rule = TRANSITIONS[action]
        assert (set(rule.sources), rule.target, rule.needs_reason) == (sources, target, needs_reason), action
    assert len(LEGAL) == 20 and len(LEGAL) + len(ILLEGAL) == len(Action) * len(Status)


@pytest.mark.parametrize(("action", "source", "target"), LEGAL, ids=[f"{a.name}-{s.name}" for a, s, _ in LEGAL])
def test_every_legal_transition(action, source, target):
    assert transition(source, action, reason_for(action)) is target
    assert action in allowed_actions(source)


@pytest.mark.parametrize(("action", "status"), ILLEGAL, ids=[f"{a.name}-{s.name}" for a, s in ILLEGAL])
def test_every_illegal_transition_is_refused(action, status):
    assert action not in allowed_actions(status)
    with pytest.raises(IllegalTransition) as err:
        transition(status, action, "原因说明")  # a reason does not make it legal
    msg = str(err.value)
    assert f"「{status.value}」" in msg and f"「{action.value}」" in msg
    allowed = allowed_actions(status)
    listed = msg.split("可执行：", 1)[1]
    if allowed:
        assert listed.split("、") == [a.value for a in allowed]
    else:
        assert listed == "无（已终结）"


@pytest.mark.parametrize("action", [a for a, r in TRANSITIONS.items() if r.needs_reason], ids=lambda a: a.name)
@pytest.mark.parametrize("reason", [None, "", "   ", "\n\t"], ids=["none", "empty", "spaces", "whitespace"])
def test_actions_needing_a_reason_refuse_an_empty_one(action, reason):
    source = min(TRANSITIONS[action].sources)
    with pytest.raises(InvalidInput, match=action.value):
        transition(source, action, reason)
    assert transition(source, action, " 有原因 ") is (TRANSITIONS[action].target or source)


def test_actions_without_reason_need_none():
    for action, rule in TRANSITIONS.items():
        if not rule.needs_reason:
            for s in rule.sources:
                assert transition(s, action) is rule.target


def test_illegal_is_checked_before_the_reason():
    with pytest.raises(IllegalTransition):
        transition(S.CLOSED, A.RETURN, "")


def test_status_groups():
    assert not OPEN & FINAL
    assert OPEN | FINAL | {S.CLOSED} == set(Status)
    assert WITH_DEPARTMENT <= OPEN
    for s in FINAL:
        assert allowed_actions(s) == []
    for s in OPEN | {S.CLOSED}:
        assert allowed_actions(s), s
    assert allowed_actions(S.CLOSED) == [A.EVALUATE]
    assert allowed_actions(S.REPORTED) == [A.FILE, A.DECLINE, A.VOID]


def test_every_status_is_reachable_and_every_path_ends():
    seen, todo = {S.REPORTED}, [S.REPORTED]
    while todo:
        s = todo.pop()
        for a in allowed_actions(s):
            t = transition(s, a, "x")
            if t not in seen:
                seen.add(t)
                todo.append(t)
    assert seen == set(Status)
    for status, path in PATH_TO.items():  # the helper paths the store tests use are legal
        s = S.REPORTED
        for a in path:
            s = transition(s, a, "x")
        assert s is status


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.name)
def test_parse_action_chinese_name(action):
    assert parse_action(action.value) is action
    assert parse_action(f"  {action.value}\n") is action


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_parse_action_english_alias(alias):
    assert parse_action(alias) is ALIASES[alias]
    assert parse_action(alias.upper()) is ALIASES[alias]
    assert parse_action(f" {alias.title()} ") is ALIASES[alias]


def test_aliases_cover_every_action():
    assert set(ALIASES.values()) == set(Action)


@pytest.mark.parametrize("junk", ["", "   ", "foo", "派", "立 案", "dispatched", "DISPATCH!", "签收;drop table", "1"])
def test_parse_action_rejects_junk(junk):
    with pytest.raises(InvalidInput) as err:
        parse_action(junk)
    msg = str(err.value)
    assert "未知操作" in msg and "派遣" in msg and "dispatch" in msg


# -- through the store --------------------------------------------------------------------


def new_case(store, *, code="06010", lat=29.575, lon=106.53, source="市民", now=T0, **kw):
    return store.create_case(NewCase(source=source, code=code, description="路边有一堆垃圾", lat=lat, lon=lon, **kw),
                             actor="reporter", now=now)


def audit_count(store, number=None) -> int:
    with store.reading() as s:
        stmt = select(func.count(AuditRow.id))
        if number:
            case_id = store._row(s, number).id
            stmt = stmt.where(AuditRow.case_id == case_id)
        return s.execute(stmt).scalar_one()


def snapshot(store, number) -> dict:
    return store.get(number).model_dump()


@pytest.mark.parametrize("status", list(Status), ids=lambda s: s.name)
def test_store_walks_legal_and_refuses_illegal(store, status):
    """For a case in ``status``: every legal action works and writes one audit row;
    every other action is refused and changes nothing (case nor audit log)."""
    now = T0 + timedelta(hours=1)
    for action in allowed_actions(status):
        number = new_case(store).number
        drive(store, number, status, now=T0)
        before = audit_count(store, number)
        case = store.act(number, action, actor="op", now=now, **args_for(action))
        assert case.status is (TRANSITIONS[action].target or status)
        assert audit_count(store, number) == before + 1
        last = case.history[-1]
        assert (last.action, last.from_status, last.to_status, last.actor, last.at) == (
            action.value, status.value, case.status.value, "op", now)

    number = new_case(store).number
    drive(store, number, status, now=T0)
    before, total = snapshot(store, number), audit_count(store)
    for action in Action:
        if action in allowed_actions(status):
            if TRANSITIONS[action].needs_reason:  # legal, but not without a reason
                with pytest.raises(InvalidInput):
                    store.act(number, action, actor="op", now=now, **{**args_for(action), "note": " "})
            continue
        with pytest.raises(IllegalTransition, match=f"「{status.value}」"):
            store.act(number, action, actor="op", now=now, **args_for(action))
    assert snapshot(store, number) == before
    assert audit_count(store) == total


def test_creation_writes_one_audit_row(store):
    sources = {"市民": "上报", "热线": "上报", "采集员": "上报", "车巡": "发现", "机巡": "发现"}
    for source, action in sources.items():
        case = new_case(store, source=source)
        assert case.status is S.REPORTED
        assert len(case.history) == 1
        h = case.history[0]
        assert (h.action, h.from_status, h.to_status, h.actor, h.at) == (action, None, "上报", "reporter", T0)
        assert h.data == {"source": source}
    assert audit_count(store) == len(sources)


def test_every_transition_writes_exactly_one_audit_row(store, city):
    number = new_case(store, code="06010").number
    steps = [
        (A.FILE, {}, S.FILED),
        (A.DISPATCH, {}, S.DISPATCHED),
        (A.ACCEPT, {}, S.IN_PROGRESS),
        (A.EXTEND, dict(note="雨天无法作业", extend=WorkDuration.model_validate("4工作时"), approver="张科长"), S.IN_PROGRESS),
        (A.COMPLETE, {"note": "已清运"}, S.HANDLED),
        (A.REQUEST_VERIFY, {}, S.VERIFYING),
        (A.PASS, {"note": "现场已清理"}, S.CLOSED),
        (A.EVALUATE, {"rating": 4, "note": "满意"}, S.EVALUATED),
    ]
    for i, (action, kw, target) in enumerate(steps, start=1):
        now = T0 + timedelta(hours=i)
        prev = store.get(number)
        case = store.act(number, action, actor=f"user{i}", now=now, **kw)
        assert case.status is target
        assert len(case.history) == len(prev.history) + 1
        h = case.history[-1]
        assert (h.at, h.actor, h.action, h.from_status, h.to_status, h.note) == (
            now, f"user{i}", action.value, prev.status.value, target.value, kw.get("note", ""))
        assert case.updated_at == now
    assert [h.action for h in case.history] == ["上报"] + [a.value for a, _, _ in steps]
    chain = case.history
    for a, b in zip(chain, chain[1:]):
        assert b.from_status == a.to_status
    assert case.closed_at == T0 + timedelta(hours=7)
    assert case.rating == 4 and case.history[-1].data == {"rating": 4}


def test_dispatch_records_department_and_deadline(store, city):
    number = new_case(store, code="06010").number  # 暴露垃圾 on a 江北区 road → 江北环卫所 (extended calendar)
    store.act(number, A.FILE, actor="op", now=T0)
    case = store.act(number, A.DISPATCH, actor="op", now=T0)
    assert case.department_id == "JB-HW" and case.route_rule == "E001" and case.route_principle == "行业主管"
    limit = city.catalogue.get("06010").time_limits[case.urgency]
    # the limit runs on 江北环卫所's extended calendar (08:00-20:00 every day)
    assert case.deadline == ref_deadline("extended", T0, limit)
    data = case.history[-1].data
    assert data["department"] == "JB-HW" and data["ambiguous"] is False
    assert datetime.fromisoformat(data["deadline"]) == case.deadline
    assert data["time_limit"] == str(limit)
    assert "E001" in case.route_note

    # a manual dispatch names the department and urgency; the limit follows the urgency
    other = new_case(store, code="06010").number
    store.act(other, A.FILE, actor="op", now=T0)
    case = store.act(other, A.DISPATCH, actor="张调度", department_id="JB-SZ", urgency=Urgency.HIGH, now=T0)
    assert case.department_id == "JB-SZ" and case.route_rule == "manual" and case.urgency is Urgency.HIGH
    limit = city.catalogue.get("06010").time_limits[Urgency.HIGH]
    assert case.deadline == ref_deadline("standard", T0, limit)  # 市政所 keeps office hours
    assert case.history[-1].data["time_limit"] == str(limit)
    assert case.history[-1].data["urgency"] == "较急"


def test_dispatch_deadline_standard_calendar(store, city):
    # 09006 占道经营 at 解放碑 → 解放碑街道 (standard calendar), dispatched on a Friday afternoon
    number = new_case(store, code="09006", lat=29.5578, lon=106.5751).number
    friday = datetime(2026, 11, 27, 17, 0, tzinfo=TZ)
    store.act(number, A.FILE, actor="op", now=friday)
    case = store.act(number, A.DISPATCH, actor="op", now=friday)
    assert case.department_id == "YZ-JFB" and case.route_rule == "S004"
    limit = city.catalogue.get("09006").time_limits[case.urgency]
    assert case.deadline == ref_deadline("standard", friday, limit)
    if limit.unit != "小时":
        assert case.deadline.astimezone(TZ).weekday() < 5  # the weekend does not count


def test_department_only_at_dispatch(store):
    number = new_case(store).number
    before = audit_count(store, number)
    with pytest.raises(InvalidInput, match="派遣"):
        store.act(number, A.FILE, actor="op", department_id="JB-HW", now=T0)
    assert store.get(number).status is S.REPORTED and audit_count(store, number) == before


def test_extend_needs_approver_and_time(store, city):
    number = new_case(store).number
    case = drive(store, number, S.DISPATCHED, now=T0)
    old = case.deadline
    four = WorkDuration.model_validate("4工作时")
    for kw in ({"extend": four}, {"approver": "张科长"}, {}, {"extend": four, "approver": ""}):
        with pytest.raises(InvalidInput, match="延期"):
            store.act(number, A.EXTEND, actor="op", note="需要协调", now=T0, **kw)
    with pytest.raises(InvalidInput):  # a reason is needed too
        store.act(number, A.EXTEND, actor="op", extend=four, approver="张科长", now=T0)
    assert store.get(number).deadline == old and len(store.get(number).history) == len(case.history)

    case = store.act(number, A.EXTEND, actor="op", note="需要协调", extend=four, approver="张科长", now=T0)
    assert case.status is S.DISPATCHED
    # from the old deadline, not from now; old is at 09:02 on the extended calendar (08:00-20:00)
    assert old.astimezone(TZ).hour == 9
    assert case.deadline == ref_deadline("extended", old, four) == old + timedelta(hours=4)
    h = case.history[-1]
    assert (h.action, h.from_status, h.to_status) == ("延期", "派遣", "派遣")
    assert h.data["approver"] == "张科长" and h.data["extend"] == "4工作时"
    assert datetime.fromisoformat(h.data["old_deadline"]) == old
    assert datetime.fromisoformat(h.data["deadline"]) == case.deadline


def test_return_clears_department_and_redispatch_skips_it(store):
    number = new_case(store, code="06010").number  # 江北区 road: E001 JB-HW, then E060 @街道, then 无责任主体
    case = drive(store, number, S.DISPATCHED, now=T0)
    assert case.department_id == "JB-HW"
    with pytest.raises(InvalidInput):
        store.act(number, A.RETURN, actor="JB-HW", now=T0)
    case = store.act(number, A.RETURN, actor="JB-HW", note="不属于本单位职责", now=T0 + timedelta(hours=1))
    assert case.status is S.FILED and case.department_id is None and case.deadline is None
    assert case.history[-1].data == {"returned_by": "JB-HW"}

    case = store.act(number, A.DISPATCH, actor="op", now=T0 + timedelta(hours=2))
    assert case.department_id == "JB-GYQ"  # 观音桥街道, by 属地管理
    assert case.route_rule == "E060" and "已退回过本案" in case.route_note

    store.act(number, A.ACCEPT, actor="JB-GYQ", now=T0 + timedelta(hours=3))
    case = store.act(number, A.RETURN, actor="JB-GYQ", note="需环卫处理", now=T0 + timedelta(hours=4))
    assert case.history[-1].data == {"returned_by": "JB-GYQ"} and case.history[-1].from_status == "处置中"
    case = store.act(number, A.DISPATCH, actor="op", now=T0 + timedelta(hours=5))
    assert case.department_id == "JB-XT" and case.route_rule == "无责任主体" and case.route_principle == "无责任主体"

    # a manual dispatch may still send it back to a department that returned it
    store.act(number, A.RETURN, actor="JB-XT", note="请环卫所处理", now=T0 + timedelta(hours=6))
    case = store.act(number, A.DISPATCH, actor="主任", department_id="JB-HW", now=T0 + timedelta(hours=7))
    assert case.department_id == "JB-HW"


def test_fail_sends_back_for_rework_with_a_new_deadline(store, city):
    number = new_case(store, code="06010").number
    case = drive(store, number, S.VERIFYING, now=T0)
    first_deadline = case.deadline
    fail_at = datetime(2026, 11, 24, 10, 0, tzinfo=TZ)
    with pytest.raises(InvalidInput):
        store.act(number, A.FAIL, actor="核查员", now=fail_at)
    case = store.act(number, A.FAIL, actor="核查员", note="现场仍有垃圾", now=fail_at)
    assert case.status is S.DISPATCHED and case.rework_count == 1 and case.department_id == "JB-HW"
    limit = city.catalogue.get("06010").time_limits[case.urgency]
    assert case.deadline == ref_deadline("extended", fail_at, limit) != first_deadline
    assert datetime.fromisoformat(case.history[-1].data["deadline"]) == case.deadline
    for step in (A.ACCEPT, A.COMPLETE, A.REQUEST_VERIFY):
        store.act(number, step, actor="x", now=fail_at)
    case = store.act(number, A.FAIL, actor="核查员", note="仍未清理", now=fail_at)
    assert case.rework_count == 2


def test_void_as_duplicate(store):
    original = new_case(store).number
    dup = new_case(store).number
    n = audit_count(store, dup)
    with pytest.raises(NotFound):
        store.act(dup, A.VOID, actor="op", note="重复", duplicate_of="500105-20260101-9999", now=T0)
    with pytest.raises(InvalidInput, match="itself"):
        store.act(dup, A.VOID, actor="op", note="重复", duplicate_of=dup, now=T0)
    assert store.get(dup).status is S.REPORTED and audit_count(store, dup) == n
    case = store.act(dup, A.VOID, actor="op", note="重复上报", duplicate_of=original, now=T0)
    assert case.status is S.VOID and case.duplicate_of == original
    assert case.history[-1].data == {"duplicate_of": original}
    plain = new_case(store).number
    case = store.act(plain, A.VOID, actor="op", note="虚假上报", now=T0)
    assert case.duplicate_of is None and case.history[-1].data == {}


def test_evaluate_needs_rating_1_to_5(store):
    number = new_case(store).number
    drive(store, number, S.CLOSED, now=T0)
    n = audit_count(store, number)
    for rating in (None, 0, 6, -1, 10):
        with pytest.raises(InvalidInput, match="rating"):
            store.act(number, A.EVALUATE, actor="市民", rating=rating, now=T0)
    case = store.get(number)
    assert case.status is S.CLOSED and case.rating is None and audit_count(store, number) == n
    for ok in (1, 3, 5):
        other = new_case(store).number
        drive(store, other, S.CLOSED, now=T0)
        assert store.act(other, A.EVALUATE, actor="市民", rating=ok, now=T0).rating == ok


def test_shelve_and_unshelve(store, city):
    # shelved while held by a department: unshelving gives it back with a new deadline
    number = new_case(store).number
    drive(store, number, S.IN_PROGRESS, now=T0)
    store.act(number, A.SHELVE, actor="op", note="待资金", now=T0)
    later = datetime(2026, 11, 30, 9, 0, tzinfo=TZ)
    case = store.act(number, A.UNSHELVE, actor="op", now=later)
    assert case.status is S.DISPATCHED and case.department_id == "JB-HW"
    assert case.deadline == ref_deadline("extended", later, city.catalogue.get("06010").time_limits[case.urgency])
    assert datetime.fromisoformat(case.history[-1].data["deadline"]) == case.deadline

    # shelved before any department held it: unshelving routes it (派遣 needs a department)
    number = new_case(store).number
    drive(store, number, S.SHELVED, now=T0)
    case = store.act(number, A.UNSHELVE, actor="op", now=later)
    assert case.status is S.DISPATCHED and case.department_id == "JB-HW" and case.route_rule == "E001"
    assert case.deadline == ref_deadline("extended", later, city.catalogue.get("06010").time_limits[case.urgency])
    assert case.history[-1].data["department"] == "JB-HW"

    # the same after a 退回: the department that returned it is skipped
    number = new_case(store).number
    drive(store, number, S.DISPATCHED, now=T0)
    store.act(number, A.RETURN, actor="JB-HW", note="非本单位职责", now=T0)
    store.act(number, A.SHELVE, actor="op", note="待协调", now=T0)
    case = store.act(number, A.UNSHELVE, actor="op", now=later)
    assert case.status is S.DISPATCHED and case.department_id == "JB-GYQ"
    # or a dispatcher names the department
    number = new_case(store).number
    drive(store, number, S.SHELVED, now=T0)
    case = store.act(number, A.UNSHELVE, actor="op", department_id="JB-SZ", now=later)
    assert case.department_id == "JB-SZ" and case.route_rule == "manual"


def test_act_needs_an_actor_and_an_existing_case(store):
    number = new_case(store).number
    for actor in ("", "  "):
        with pytest.raises(InvalidInput, match="actor"):
            store.act(number, A.FILE, actor=actor, now=T0)
    with pytest.raises(NotFound):
        store.act("500105-20261123-9999", A.FILE, actor="op", now=T0)
    assert store.get(number).status is S.REPORTED and audit_count(store, number) == 1


def test_add_evidence_is_audited_without_changing_status(store):
    number = new_case(store).number
    drive(store, number, S.DISPATCHED, now=T0)
    case = store.add_evidence(number, [Evidence(uri="file:///a.jpg"), Evidence(uri="file:///b.jpg", kind="image")],
                              actor="车巡-07", note="再次发现", now=T0 + timedelta(days=1))
    assert case.status is S.DISPATCHED and [e.uri for e in case.evidence] == ["file:///a.jpg", "file:///b.jpg"]
    h = case.history[-1]
    assert (h.action, h.from_status, h.to_status, h.data) == ("补充证据", "派遣", "派遣", {"count": 2})


def test_concurrent_actions_on_one_case_apply_once(store):
    """Several dispatchers accept the same case at once: one wins, the others are
    refused, and the audit log has one 签收."""
    number = new_case(store).number
    drive(store, number, S.DISPATCHED, now=T0)
    n = 6
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i):
        barrier.wait()
        try:
            results[i] = store.act(number, A.ACCEPT, actor=f"staff{i}", now=T0 + timedelta(hours=1)).status
        except IllegalTransition as e:
            results[i] = e
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is S.IN_PROGRESS for r in results) == 1, results
    assert sum(isinstance(r, IllegalTransition) for r in results) == n - 1, results
    assert [h.action for h in store.get(number).history].count("签收") == 1
