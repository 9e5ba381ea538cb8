"""A writer process for tests/test_crash.py, and lifecycle helpers the store tests share.

    python tests/crash_writer.py URL PROGRESS_FILE [--ops N] [--seed S]

opens the store at URL and loops: create a case, or take an open case one legal
step further (with the arguments each action needs), or attach evidence. After
each committed operation it appends one line to PROGRESS_FILE, so the test can
wait for real progress before it kills the process. ``--ops 0`` (the default)
runs until killed.
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from city.catalogue import WorkDuration  # noqa: E402
from city.cases import Evidence, NewCase  # noqa: E402
from city.lifecycle import FINAL, TRANSITIONS, Action, Status, allowed_actions  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")

#: A legal path from 上报 to each status.
PATH_TO: dict[Status, list[Action]] = {
    Status.REPORTED: [],
    Status.FILED: [Action.FILE],
    Status.NOT_FILED: [Action.DECLINE],
    Status.DISPATCHED: [Action.FILE, Action.DISPATCH],
    Status.IN_PROGRESS: [Action.FILE, Action.DISPATCH, Action.ACCEPT],
    Status.HANDLED: [Action.FILE, Action.DISPATCH, Action.ACCEPT, Action.COMPLETE],
    Status.VERIFYING: [Action.FILE, Action.DISPATCH, Action.ACCEPT, Action.COMPLETE, Action.REQUEST_VERIFY],
    Status.CLOSED: [Action.FILE, Action.DISPATCH, Action.ACCEPT, Action.COMPLETE, Action.REQUEST_VERIFY, Action.PASS],
    Status.EVALUATED: [Action.FILE, Action.DISPATCH, Action.ACCEPT, Action.COMPLETE, Action.REQUEST_VERIFY, Action.PASS,
                       Action.EVALUATE],
    Status.SHELVED: [Action.FILE, Action.SHELVE],
    Status.VOID: [Action.VOID],
}

#: Places of the sample city (lat, lon): 江北区 观音桥, 渝中区 解放碑, none.
PLACES = [(29.575, 106.53), (29.5578, 106.5751), (None, None)]
CODES = ["06010", "09006", "01011", "06001", "03005", "01002"]


def args_for(action: Action, rng: random.Random | None = None) -> dict:
    """The keyword arguments ``Store.act`` needs for ``action`` to be accepted."""
    kw: dict = {}
    if TRANSITIONS[action].needs_reason:
        kw["note"] = f"{action.value}的原因"
    if action is Action.EXTEND:
        kw.update(extend=WorkDuration.model_validate("1工作日"), approver="值班长")
    if action is Action.EVALUATE:
        kw["rating"] = rng.randint(1, 5) if rng else 5
    return kw


def drive(store, number: str, status: Status, *, now: datetime, actor: str = "tester"):
    """Take case ``number`` (in 上报) to ``status`` along :data:`PATH_TO`."""
    case = store.get(number)
    for i, action in enumerate(PATH_TO[status]):
        case = store.act(number, action, actor=actor, now=now + timedelta(minutes=i + 1), **args_for(action))
    assert case.status is status
    return case


# -- a reference SLA clock ----------------------------------------------------------------
# A deliberately naive, independent model of calendars.yaml (minute by minute), so
# the store tests can check deadlines whatever time limits the catalogue holds.

_OFF_2026 = [("01-01", "01-03"), ("02-15", "02-23"), ("04-04", "04-06"), ("05-01", "05-05"), ("06-19", "06-21"),
             ("09-25", "09-27"), ("10-01", "10-07")]
_MAKEUP_2026 = {"01-04", "02-14", "02-28", "05-09", "09-20", "10-10"}
REF_PERIODS = {  # minutes from local midnight
    "standard": [(8 * 60 + 30, 12 * 60), (13 * 60 + 30, 18 * 60)],
    "extended": [(8 * 60, 20 * 60)],
    "round_the_clock": [(0, 24 * 60)],
}


def _ref_workday(calendar: str, day) -> bool:
    if calendar != "standard":
        return True
    assert day.year == 2026, "the reference clock knows only 2026"
    md = day.strftime("%m-%d")
    if md in _MAKEUP_2026:
        return True
    if any(a <= md <= b for a, b in _OFF_2026):
        return False
    return day.weekday() < 5


def _ref_working_minute(calendar: str, t: datetime) -> bool:
    """Whether the minute starting at ``t`` (local, minute-aligned) is working time."""
    m = t.hour * 60 + t.minute
    return _ref_workday(calendar, t.date()) and any(s <= m < e for s, e in REF_PERIODS[calendar])


def ref_hours(calendar: str, limit: WorkDuration) -> float:
    per_day = sum(e - s for s, e in REF_PERIODS[calendar]) / 60
    return limit.value * (per_day if limit.unit == "工作日" else 1)


def ref_deadline(calendar: str, start: datetime, limit: WorkDuration) -> datetime:
    start = start.astimezone(TZ)
    assert start.second == start.microsecond == 0
    if limit.unit == "小时":
        return start + timedelta(hours=limit.value)
    need, t = round(ref_hours(calendar, limit) * 60), start
    while need:
        if _ref_working_minute(calendar, t):
            need -= 1
        t += timedelta(minutes=1)
    return t


def ref_remaining(calendar: str, now: datetime, deadline: datetime) -> timedelta:
    """Working time from ``now`` to ``deadline`` (negative after it)."""
    a, b = now.astimezone(TZ), deadline.astimezone(TZ)
    sign = 1
    if b < a:
        a, b, sign = b, a, -1
    total = timedelta(0)
    day = a.date()
    while day <= b.date():
        if _ref_workday(calendar, day):
            midnight = datetime(day.year, day.month, day.day, tzinfo=TZ)
            for s, e in REF_PERIODS[calendar]:
                lo, hi = max(a, midnight + timedelta(minutes=s)), min(b, midnight + timedelta(minutes=e))
                if hi > lo:
                    total += hi - lo
        day += timedelta(days=1)
    return sign * total


# -- the writer process -----------------------------------------------------------------

#: How likely each action is chosen when it is allowed (forward steps dominate).
WEIGHTS = {
    Action.FILE: 8, Action.DECLINE: 1, Action.DISPATCH: 8, Action.ACCEPT: 8, Action.RETURN: 2, Action.COMPLETE: 8,
    Action.REQUEST_VERIFY: 8, Action.PASS: 6, Action.FAIL: 2, Action.EVALUATE: 6, Action.EXTEND: 1,
    Action.SHELVE: 1, Action.UNSHELVE: 4, Action.VOID: 1,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("progress")
    p.add_argument("--ops", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    from city.bundle import load_city
    from city.cases import CaseQuery
    from city.store import Store

    rng = random.Random(a.seed)
    store = Store(a.url, load_city())
    start = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)  # every run works on the same day's numbers
    open_statuses = [s for s in Status if s not in FINAL]
    externals: list[str] = []
    with open(a.progress, "a", encoding="utf-8", buffering=1) as progress:
        i = 0
        while a.ops == 0 or i < a.ops:
            now = start + timedelta(seconds=i)
            live = store.list(CaseQuery(status=open_statuses, limit=200))
            roll = rng.random()
            if len(live) < 3 or roll < (0.25 if len(live) < 10 else 0.1):
                lat, lon = rng.choice(PLACES)
                ext = f"s{a.seed}-{i}" if rng.random() < 0.5 else None
                if externals and rng.random() < 0.15:
                    ext = rng.choice(externals)  # a repeat: must give the same case back
                elif ext:
                    externals.append(ext)
                case = store.create_case(NewCase(
                    source=rng.choice(["车巡", "机巡", "市民", "热线"]), code=rng.choice(CODES),
                    description=f"压力测试案件 {a.seed}-{i}", lat=lat, lon=lon, external_id=ext,
                ), actor="writer", now=now)
                op = f"create {case.number}"
            elif roll < 0.15:
                case = rng.choice(live)
                store.add_evidence(case.number, [Evidence(uri=f"file:///ev/{a.seed}/{i}.jpg")], actor="writer", now=now)
                op = f"evidence {case.number}"
            else:
                case = rng.choice(live)
                actions = allowed_actions(case.status)
                action = rng.choices(actions, weights=[WEIGHTS[x] for x in actions])[0]
                kw = args_for(action, rng)
                if action is Action.VOID and len(live) > 1 and rng.random() < 0.5:
                    kw["duplicate_of"] = rng.choice([c.number for c in live if c.number != case.number])
                case = store.act(case.number, action, actor="writer", now=now, **kw)
                op = f"{action.value} {case.number} -> {case.status.value}"
            progress.write(f"{i} {op}\n")
            i += 1
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
