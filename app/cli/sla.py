"""``xunjian sla``: 超期预警与督办 (overdue warnings and escalation by working time).

``tick`` is one pass of the scheduler (run it from cron); ``watch`` repeats it.
The rules are ``escalation.yaml`` in the city data folder (see ``city.escalation``).
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from app.cli.common import (
    actor,
    city,
    err,
    fmt_time,
    out,
    parse_time,
    print_json,
    store,
)
from city import escalation
from city.errors import InvalidInput

app = typer.Typer(help="超期预警与督办：按工作时间找出即将超期、已超期的案卷，按规则通知责任单位和协调中心并记录。",
                  no_args_is_help=True)

LEVEL_STYLE = {1: "yellow", 2: "red", 3: "bold red"}
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|秒|分钟|分|小时)?\s*$")
_UNIT_SECONDS = {"s": 1, "秒": 1, "m": 60, "分": 60, "分钟": 60, "h": 3600, "小时": 3600, None: 60}


def _level(n: int) -> str:
    return f"[{LEVEL_STYLE.get(n, 'bold red')}]{n}[/]" if n else "—"


def parse_every(text: str) -> timedelta:
    """``10m``, ``30s``, ``1h`` (also 分钟/秒/小时; a bare number is minutes)."""
    m = _EVERY.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise InvalidInput(f"--every {text!r}：应为正的时间间隔，如 30s、10m、1h")
    return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])


def _dept(ref: str | None) -> str | None:
    """A department id from an id or its full or short name."""
    return city().departments.get(ref).id if ref else None


def render_report(report: escalation.TickReport) -> None:
    """The notifications a tick sent, as a table, and a summary line."""
    if report.sent:
        t = Table(title=f"本轮发送的预警/督办（{len(report.sent)}）")
        for col in ("ID", "级别", "规则", "案卷", "接收单位", "内容"):
            t.add_column(col, overflow="fold")
        names = city().departments.by_id
        for s in report.sent:
            to = f"{s.recipient} {names[s.recipient].label}" if s.recipient in names else s.recipient
            t.add_row(str(s.id), _level(s.level), s.rule, s.case_number, to, escape(s.message))
        out.print(t)
    out.print(f"{fmt_time(report.at)} 检查到期案卷 {report.checked} 件，发送 {len(report.sent)} 条，"
              f"已发送过 {report.skipped} 条（不重复发送）。")


@app.command()
def tick(
    when: str = typer.Option(None, "--time", help="以此时间计算（默认现在），ISO 8601"),
    who: str = typer.Option(escalation.SYSTEM, "--actor", help="审计记录中的操作人"),
    as_json: bool = typer.Option(False, "--json"),
):
    """执行一轮超期检查：按规则发送预警/督办（同一案卷、规则、接收单位、时限只发一次）。适合由 cron 定时调用。"""
    report = escalation.tick(store(), now=parse_time(when), actor=who)
    print_json(report) if as_json else render_report(report)


@app.command()
def watch(
    every: str = typer.Option("10m", "--every", help="检查间隔，如 30s、10m、1h"),
    times: int = typer.Option(0, "--times", help="执行多少轮后退出（默认 0：一直运行，Ctrl-C 停止）"),
):
    """持续运行：每隔一段时间执行一轮超期检查（Ctrl-C 停止；定时任务请用 `sla tick`）。修改规则后请重启。"""
    period = parse_every(every).total_seconds()
    st = store()
    rules = escalation.load_escalation(city=st.city)
    out.print(f"超期检查：每 {every} 一轮，规则 {len(rules.rules)} 条（{escalation.escalation_path(st.city)}）。Ctrl-C 停止。")
    done = 0
    try:
        while True:
            try:
                render_report(escalation.tick(st, rules=rules))
            except SQLAlchemyError as e:  # the database may come back: report and keep going
                err.print(f"[red]本轮检查失败[/]：{escape(str(e).splitlines()[0])}")
            done += 1
            if times and done >= times:
                break
            time.sleep(period)
    except KeyboardInterrupt:
        out.print("已停止。")
    finally:
        st.close()


@app.command()
def due(
    dept: str = typer.Option(None, "--dept", help="只看某个责任单位（ID 或名称）"),
    when: str = typer.Option(None, "--time", help="以此时间计算（默认现在），ISO 8601"),
    as_json: bool = typer.Option(False, "--json"),
):
    """即将超期和已超期的案卷（按责任单位的工作日历计算剩余工作时间），以及当前触发的预警级别。"""
    rows = escalation.assess(store(), parse_time(when), department_id=_dept(dept))
    if as_json:
        return print_json([{"case": d.case.public().model_dump(mode="json"), "state": d.state,
                            "remaining_minutes": int(d.remaining.total_seconds() // 60), "level": d.level,
                            "rules": [r.name for r in d.rules]} for d in rows])
    t = Table(title=f"超期预警（{len(rows)}）")
    for col in ("编号", "状态", "预警", "级别", "责任单位", "类别", "处置时限", "剩余工作时间"):
        t.add_column(col)
    for d in rows:
        c, style = d.case, LEVEL_STYLE.get(d.level, "yellow" if d.state == "即将超期" else "red")
        left = f"超期 {escalation.fmt_duration(d.remaining)}" if d.state == "已超期" else escalation.fmt_duration(d.remaining)
        t.add_row(c.number, c.status.value, f"[{style}]{d.state}[/]", _level(d.level), c.department_id or "—",
                  f"{c.code} {c.title}", fmt_time(c.deadline), f"[{style}]{left}[/]")
    out.print(t)


@app.command()
def notifications(
    to: str = typer.Option(None, "--to", help="接收单位（ID 或名称）"),
    unread: bool = typer.Option(False, "--unread", help="只看未签收的"),
    case: str = typer.Option(None, "--case", help="只看某个案卷"),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
):
    """已发送的预警/督办通知（新的在前）。"""
    rows = escalation.notifications(store(), recipient=_dept(to), unacknowledged=unread, limit=limit, case_number=case)
    if as_json:
        return print_json(rows)
    t = Table(title=f"预警/督办通知（{len(rows)}）")
    for col in ("ID", "时间", "级别", "规则", "案卷", "接收单位", "签收", "内容"):
        t.add_column(col, overflow="fold")
    for n in rows:
        read = f"{escape(n.acknowledged_by or '')} {fmt_time(n.acknowledged_at)}" if n.acknowledged_at else "[yellow]未签收[/]"
        t.add_row(str(n.id), fmt_time(n.created_at), _level(n.level), n.rule, n.case_number, n.recipient, read, escape(n.message))
    out.print(t)


@app.command()
def ack(
    notification_id: int = typer.Argument(..., help="通知 ID（见 `sla notifications`）"),
    who: str = typer.Option(None, "--actor", help="签收人（默认 $XUNJIAN_USER 或系统用户名）"),
    when: str = typer.Option(None, "--time", help="签收时间（默认现在），ISO 8601"),
):
    """签收一条预警/督办通知（重复签收保留第一次的记录）。"""
    n = escalation.acknowledge(store(), notification_id, actor(who), now=parse_time(when))
    out.print(f"[green]✓[/] 通知 {n.id}（{n.case_number} {n.rule} → {n.recipient}）已由 {escape(n.acknowledged_by or '')} "
              f"于 {fmt_time(n.acknowledged_at)} 签收")
