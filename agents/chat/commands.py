"""The offline command mode of the dispatch chat: slash commands over the same tools
an LLM agent uses, so the chat is useful (and says so) without any model.

``run_command(line, user, store)`` answers one line with a :class:`CommandResult`;
a state-changing command only *plans* (``pending``), and ``/confirm`` executes the
pending plan (pass it back in with ``pending=``). :class:`ChatSession` keeps the
pending plan between lines for a caller that wants that done for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from agents.chat import tools as t
from city.users import User
from city.catalogue import Source, Urgency
from city.errors import InvalidInput, NotFound, XunjianError
from city.store import Store

HELP = """可用命令（不需要大模型）：
/cases [条件…]             查找案件。条件用空格分开，可组合：区/街道名（江北区、观音桥街道）、单位（JB-HW、江北环卫所、环卫）、
                           类别（06010、暴露垃圾）、状态（上报、立案、派遣、处置中、未派遣、在办、未结案）、来源（车巡、机巡、市民、热线、采集员）、
                           时间（今天、昨天、本周、近30天）、超期（overdue/已超期、即将超期、超期预警）、其他文字（在描述和地址中查找）、数字（最多显示几件）
                           例：/cases overdue 环卫    /cases 江北区 今天 车巡 暴露垃圾 未派遣
/show 案件编号              查看案卷、历史和证据
/why 案件编号               为什么派给这个单位、为什么是这个紧急程度
/summary overdue|today|hotspots|rates [天数]   超期汇总、今日受理、重复热点、考核指标
/reply 案件编号 [受理|办结]  起草给市民的回复（只起草，不发送）
/depts [区名]               列出单位
以下命令只生成计划，输入 /confirm 才执行（/cancel 取消）：
/assign 案件编号 单位 [原因]          改派
/urgent 案件编号 紧急|较急|一般 原因   调整紧急程度
/extend 案件编号 2工作日 批准人 原因   延期
/merge 案件编号 保留的案件编号 [说明]  合并重复案件（作废前者）
/void 案件编号 原因                   不予立案（上报）或作废（立案、派遣）
/approve 案件编号 [意见]              审核通过（审核关口）
/edit 案件编号 单位|紧急程度… [意见]    修改后通过（审核关口）
/reject 案件编号 原因                 审核驳回
/accept 案件编号    /done 案件编号 处置说明    /return 案件编号 原因    （责任单位：签收、处置完成、退回）"""

NO_LLM = "未配置大模型（LLM），不能理解自由文本；请使用下面的命令。"

_DUE_WORDS = {"overdue": "overdue", "超期": "overdue", "已超期": "overdue", "soon": "soon", "即将超期": "soon",
              "超期预警": "due", "due": "due"}
_PERIOD_WORDS = {"today": "today", "今天": "today", "今日": "today", "yesterday": "yesterday", "昨天": "yesterday",
                 "本周": "week", "week": "week", "本月": "month", "近30天": "month", "month": "month"}
_SUMMARY_WORDS = {"overdue": "overdue", "超期": "overdue", "today": "today", "今日": "today", "今天": "today",
                  "hotspots": "hotspots", "热点": "hotspots", "rates": "rates", "指标": "rates", "考核": "rates"}


class CommandResult(BaseModel):
    text: str  # the answer, in Chinese
    data: dict = {}
    pending: t.PlannedAction | None = None  # the plan awaiting /confirm after this line


def _dump(model: BaseModel) -> dict:
    return model.model_dump(mode="json")


def _need(args: list[str], n: int, usage: str) -> None:
    if len(args) < n:
        raise InvalidInput(f"用法：{usage}")


def _departments_exact(city, word: str):
    """Departments by id/name/short name/type only (no fragments): for parsing words."""
    try:
        found = t.resolve_departments(city, word)
    except NotFound:
        return None
    exact = [d for d in found if word in (d.id, d.name, d.short) or d.type.value == word]
    return exact or None


def _is_area(city, word: str) -> bool:
    try:
        t.resolve_area(city, word)
        return True
    except NotFound:
        return False


def parse_case_filters(ctx: t.ToolContext, words: list[str]) -> t.FindCasesArgs:
    """``/cases`` words → :class:`~agents.chat.tools.FindCasesArgs`; one unrecognised word
    is searched as text, more than one is an error (nothing is guessed)."""
    city = ctx.city
    args: dict[str, Any] = {}
    statuses: list[str] = []
    unknown: list[str] = []

    def put(key: str, value, word: str):
        if key in args and args[key] != value:
            raise InvalidInput(f"条件重复：「{word}」与已有的{key}条件冲突")
        args[key] = value

    for w in words:
        lw = w.lower()
        if lw in _DUE_WORDS:
            put("due", _DUE_WORDS[lw], w)
        elif lw in _PERIOD_WORDS:
            put("period", _PERIOD_WORDS[lw], w)
        elif w.isdigit() and len(w) <= 3:
            put("limit", int(w), w)
        elif w in t.STATUS_ALIASES or w in {s.value for s in t.Status}:
            statuses.append(w)
        elif w in {s.value for s in Source}:
            put("source", w, w)
        elif _is_area(city, w):  # before departments: 观音桥街道 is the street, not its office's short name
            put("area", w, w)
        elif _departments_exact(city, w):
            put("department", w, w)
        elif t.exact_codes(city, w) or re.fullmatch(r"(?:(?:部件|事件)[:：])?\d{5}", w):
            put("code", w, w)
        else:
            unknown.append(w)
    if len(unknown) > 1:
        raise InvalidInput(f"无法识别的条件：{'、'.join(unknown)}（只能有一个自由文字条件）；/help 查看可用条件")
    if unknown:
        args["text"] = unknown[0]
    if statuses:
        args["status"] = statuses
    return t.FindCasesArgs(**args)


def _parse_urgency(word: str) -> Urgency:
    try:
        return Urgency(word)
    except ValueError:
        raise InvalidInput(f"紧急程度「{word}」无效；可用：紧急、较急、一般") from None


def run_command(line: str, user: User, store: Store, pipeline=None, *, pending: t.PlannedAction | None = None,
                now: datetime | None = None) -> CommandResult:
    """Answer one chat line. ``pending`` is the plan awaiting confirmation from an
    earlier line (``/confirm`` executes it, ``/cancel`` drops it); the result's
    ``pending`` is the plan awaiting confirmation afterwards."""
    ctx = t.ToolContext(store=store, user=user, pipeline=pipeline, clock=now)
    line = (line or "").strip()
    if not line:
        return CommandResult(text=HELP, pending=pending)
    if not line.startswith("/"):
        return CommandResult(text=f"{NO_LLM}\n{HELP}", data={"llm": False}, pending=pending)
    cmd, *args = line.split()
    cmd = cmd.lower()
    handler = _COMMANDS.get(cmd)
    if handler is None:
        return CommandResult(text=f"未知命令 {cmd}。\n{HELP}", data={"error": "unknown_command"}, pending=pending)
    try:
        return handler(ctx, args, pending)
    except XunjianError as e:
        return CommandResult(text=f"错误：{e}", data={"error": type(e).__name__, "message": str(e)}, pending=pending)


# -- handlers: (ctx, args, pending) -> CommandResult ---------------------------------------------------


def _help(ctx, args, pending):
    return CommandResult(text=HELP, pending=pending)


def _cases(ctx, args, pending):
    res = t.find_cases(ctx, parse_case_filters(ctx, args))
    return CommandResult(text=res.text(), data=_dump(res), pending=pending)


def _show(ctx, args, pending):
    _need(args, 1, "/show 案件编号")
    res = t.show_case(ctx, t.NumberArgs(number=args[0]))
    return CommandResult(text=res.text(), data=_dump(res), pending=pending)


def _why(ctx, args, pending):
    _need(args, 1, "/why 案件编号")
    route = t.explain_routing(ctx, t.NumberArgs(number=args[0]))
    prio = t.explain_priority(ctx, t.NumberArgs(number=args[0]))
    return CommandResult(text=f"{route.text()}\n\n{prio.text()}", data={"routing": _dump(route), "priority": _dump(prio)},
                         pending=pending)


def _summary(ctx, args, pending):
    _need(args, 1, "/summary overdue|today|hotspots|rates [天数]")
    kind = _SUMMARY_WORDS.get(args[0].lower())
    if kind is None:
        raise InvalidInput(f"未知汇总「{args[0]}」；可用：overdue、today、hotspots、rates")
    days = int(args[1]) if len(args) > 1 and args[1].isdigit() else 30
    res = t.summary(ctx, t.SummaryArgs(kind=kind, days=days))
    return CommandResult(text=res.text(), data=_dump(res), pending=pending)


def _reply(ctx, args, pending):
    _need(args, 1, "/reply 案件编号 [受理|办结]")
    kind = {"办结": "closure", "closure": "closure"}.get(args[1] if len(args) > 1 else "", "ack")
    res = t.draft_reply(ctx, t.ReplyArgs(number=args[0], kind=kind))
    return CommandResult(text=res.text_out(), data=_dump(res), pending=pending)


def _depts(ctx, args, pending):
    depts = list(ctx.city.departments)
    if args:
        _, area_id, _ = t.resolve_area(ctx.city, args[0])
        depts = [d for d in depts if d.district in (None, area_id[:6])]
    lines = [f"{d.id}  {d.name}（{d.short or '—'}，{d.type.value}）" for d in depts]
    return CommandResult(text="\n".join(lines), data={"departments": [d.id for d in depts]}, pending=pending)


def _planned(plan: t.PlannedAction) -> CommandResult:
    return CommandResult(text=plan.text(), data={"plan": _dump(plan)}, pending=plan)


def _assign(ctx, args, pending):
    _need(args, 2, "/assign 案件编号 单位 [原因]")
    return _planned(t.plan_reassign(ctx, t.ReassignArgs(number=args[0], department=args[1], reason=" ".join(args[2:]) or None)))


def _urgent(ctx, args, pending):
    _need(args, 3, "/urgent 案件编号 紧急|较急|一般 原因")
    return _planned(t.plan_escalate_priority(ctx, t.EscalateArgs(number=args[0], urgency=_parse_urgency(args[1]),
                                                                 reason=" ".join(args[2:]))))


def _extend(ctx, args, pending):
    _need(args, 4, "/extend 案件编号 2工作日 批准人 原因")
    return _planned(t.plan_extend_deadline(ctx, t.ExtendArgs(number=args[0], duration=args[1], approver=args[2],
                                                             reason=" ".join(args[3:]))))


def _merge(ctx, args, pending):
    _need(args, 2, "/merge 案件编号 保留的案件编号 [说明]")
    return _planned(t.plan_merge_duplicate(ctx, t.MergeArgs(number=args[0], into=args[1], reason=" ".join(args[2:]) or None)))


def _void(ctx, args, pending):
    _need(args, 2, "/void 案件编号 原因")
    return _planned(t.plan_decline_or_void(ctx, t.VoidArgs(number=args[0], reason=" ".join(args[1:]))))


def _approve(ctx, args, pending):
    _need(args, 1, "/approve 案件编号 [意见]")
    return _planned(t.plan_review(ctx, t.ReviewArgs(number=args[0], decision="approve", note=" ".join(args[1:]))))


def _edit(ctx, args, pending):
    _need(args, 2, "/edit 案件编号 单位|紧急程度… [意见]")
    dept = urgency = None
    note: list[str] = []
    for w in args[1:]:
        if w in {u.value for u in Urgency} and urgency is None:
            urgency = Urgency(w)
        elif dept is None and not note and _departments_exact(ctx.city, w):
            dept = w
        else:
            note.append(w)
    return _planned(t.plan_review(ctx, t.ReviewArgs(number=args[0], decision="edit", department=dept, urgency=urgency,
                                                    note=" ".join(note))))


def _reject(ctx, args, pending):
    _need(args, 2, "/reject 案件编号 原因")
    return _planned(t.plan_review(ctx, t.ReviewArgs(number=args[0], decision="reject", note=" ".join(args[1:]))))


def _dept_action(action: str, usage: str, min_args: int):
    def handler(ctx, args, pending):
        _need(args, min_args, usage)
        return _planned(t.plan_department_action(ctx, t.DepartmentActionArgs(number=args[0], action=action,
                                                                             note=" ".join(args[1:]))))
    return handler


def _confirm(ctx, args, pending):
    if pending is None:
        return CommandResult(text="没有待确认的操作。", data={"executed": False})
    res = t.execute(ctx, pending)
    return CommandResult(text=res.text(), data={"executed": True, "result": _dump(res)}, pending=None)


def _cancel(ctx, args, pending):
    if pending is None:
        return CommandResult(text="没有待确认的操作。", data={"cancelled": False})
    return CommandResult(text=f"已取消，未做任何修改：{pending.description}", data={"cancelled": True, "plan": pending.id},
                         pending=None)


_COMMANDS = {
    "/help": _help, "/h": _help, "/?": _help,
    "/cases": _cases, "/show": _show, "/why": _why, "/summary": _summary, "/reply": _reply, "/depts": _depts,
    "/assign": _assign, "/urgent": _urgent, "/extend": _extend, "/merge": _merge, "/void": _void,
    "/approve": _approve, "/edit": _edit, "/reject": _reject,
    "/accept": _dept_action("签收", "/accept 案件编号", 1),
    "/done": _dept_action("处置完成", "/done 案件编号 处置说明", 2),
    "/return": _dept_action("退回", "/return 案件编号 原因", 2),
    "/confirm": _confirm, "/cancel": _cancel,
}
COMMANDS = sorted(_COMMANDS)


@dataclass
class ChatSession:
    """One user's chat over the store: keeps the plan awaiting /confirm between lines."""

    user: User
    store: Store
    pipeline: Any = None
    now: datetime | None = None
    pending: t.PlannedAction | None = None
    transcript: list[tuple[str, str]] = field(default_factory=list)

    def send(self, line: str) -> CommandResult:
        res = run_command(line, self.user, self.store, self.pipeline, pending=self.pending, now=self.now)
        self.pending = res.pending
        self.transcript.append((line, res.text))
        return res
