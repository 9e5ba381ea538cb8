"""The case lifecycle: statuses, actions, and exactly the legal transitions.

    上报/发现 ─立案→ 立案 ─派遣→ 派遣 ─签收→ 处置中 ─处置完成→ 处置完成 ─发起核查→ 核查
        │              │  ↑        │  ↑                                      │
     不予立案          挂账 │     退回 │                                      ├─核查通过→ 结案 ─评价→ 已评价
        ↓              ↓  解除挂账  ↓  └──────────────── 核查不通过 ──────────┘
     不予立案          挂账 ──┘   立案 (re-route)
    作废 from 上报/立案/派遣 (duplicate or false report); 延期 in 派遣/处置中 (deadline
    extension with an approver, status unchanged).

The table below is the whole truth; :func:`transition` refuses everything else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from city.errors import IllegalTransition, InvalidInput


class Status(StrEnum):
    REPORTED = "上报"
    FILED = "立案"
    NOT_FILED = "不予立案"
    DISPATCHED = "派遣"
    IN_PROGRESS = "处置中"
    HANDLED = "处置完成"
    VERIFYING = "核查"
    CLOSED = "结案"
    EVALUATED = "已评价"
    SHELVED = "挂账"
    VOID = "作废"


class Action(StrEnum):
    FILE = "立案"
    DECLINE = "不予立案"
    DISPATCH = "派遣"
    ACCEPT = "签收"
    RETURN = "退回"
    COMPLETE = "处置完成"
    REQUEST_VERIFY = "发起核查"
    PASS = "核查通过"
    FAIL = "核查不通过"
    EVALUATE = "评价"
    EXTEND = "延期"
    SHELVE = "挂账"
    UNSHELVE = "解除挂账"
    VOID = "作废"


#: English aliases for the CLI and API.
ALIASES: dict[str, Action] = {
    "file": Action.FILE, "decline": Action.DECLINE, "dispatch": Action.DISPATCH,
    "accept": Action.ACCEPT, "return": Action.RETURN, "complete": Action.COMPLETE,
    "verify": Action.REQUEST_VERIFY, "pass": Action.PASS, "fail": Action.FAIL,
    "evaluate": Action.EVALUATE, "extend": Action.EXTEND, "shelve": Action.SHELVE,
    "unshelve": Action.UNSHELVE, "void": Action.VOID,
}


class Rule(NamedTuple):
    sources: frozenset[Status]
    target: Status | None  # None: status unchanged (延期)
    needs_reason: bool = False


S = Status
TRANSITIONS: dict[Action, Rule] = {
    Action.FILE: Rule(frozenset({S.REPORTED}), S.FILED),
    Action.DECLINE: Rule(frozenset({S.REPORTED}), S.NOT_FILED, needs_reason=True),
    Action.DISPATCH: Rule(frozenset({S.FILED}), S.DISPATCHED),
    Action.ACCEPT: Rule(frozenset({S.DISPATCHED}), S.IN_PROGRESS),
    Action.RETURN: Rule(frozenset({S.DISPATCHED, S.IN_PROGRESS}), S.FILED, needs_reason=True),
    Action.COMPLETE: Rule(frozenset({S.IN_PROGRESS}), S.HANDLED),
    Action.REQUEST_VERIFY: Rule(frozenset({S.HANDLED}), S.VERIFYING),
    Action.PASS: Rule(frozenset({S.VERIFYING}), S.CLOSED),
    Action.FAIL: Rule(frozenset({S.VERIFYING}), S.DISPATCHED, needs_reason=True),
    Action.EVALUATE: Rule(frozenset({S.CLOSED}), S.EVALUATED),
    Action.EXTEND: Rule(frozenset({S.DISPATCHED, S.IN_PROGRESS}), None, needs_reason=True),
    Action.SHELVE: Rule(frozenset({S.FILED, S.DISPATCHED, S.IN_PROGRESS}), S.SHELVED, needs_reason=True),
    Action.UNSHELVE: Rule(frozenset({S.SHELVED}), S.DISPATCHED),
    Action.VOID: Rule(frozenset({S.REPORTED, S.FILED, S.DISPATCHED}), S.VOID, needs_reason=True),
}

#: Statuses in which a department holds the case and its deadline runs.
WITH_DEPARTMENT = frozenset({S.DISPATCHED, S.IN_PROGRESS})
#: Statuses of a case that is still open (dedupe attaches new evidence to these).
OPEN = frozenset({S.REPORTED, S.FILED, S.DISPATCHED, S.IN_PROGRESS, S.HANDLED, S.VERIFYING, S.SHELVED})
#: Statuses after which nothing else happens.
FINAL = frozenset({S.NOT_FILED, S.EVALUATED, S.VOID})


def parse_action(text: str) -> Action:
    """``派遣`` or ``dispatch`` → Action.DISPATCH."""
    text = text.strip()
    if text.lower() in ALIASES:
        return ALIASES[text.lower()]
    try:
        return Action(text)
    except ValueError:
        choices = "、".join(a.value for a in Action)
        raise InvalidInput(f"未知操作「{text}」；可用：{choices}（或英文别名 {', '.join(ALIASES)}）") from None


def allowed_actions(status: Status) -> list[Action]:
    return [a for a, r in TRANSITIONS.items() if status in r.sources]


def transition(status: Status, action: Action, reason: str | None = None) -> Status:
    """The status after ``action``, or :class:`IllegalTransition` naming what is allowed."""
    rule = TRANSITIONS[action]
    if status not in rule.sources:
        allowed = "、".join(a.value for a in allowed_actions(status)) or "无（已终结）"
        raise IllegalTransition(f"当前状态「{status.value}」不能执行「{action.value}」；可执行：{allowed}")
    if rule.needs_reason and not (reason and reason.strip()):
        raise InvalidInput(f"「{action.value}」需要填写原因/说明（--note）")
    return rule.target or status
