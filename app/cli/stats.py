"""``xunjian stats``: performance evaluation (绩效评价) per department, street,
district or source over a period; see :mod:`city.stats` for the definitions."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.common import city, fmt_time, out, parse_time, print_json, store, tz
from city.errors import InvalidInput, NotFound
from city.stats import (
    GroupBy,
    Ratio,
    StatsQuery,
    StatsReport,
    compute,
    fmt_num,
    fmt_rate,
    to_csv,
    to_xlsx,
)

DEFAULT_DAYS = 30


class Period(StrEnum):
    TODAY = "today"
    WEEK = "week"
    MONTH = "month"


def period_start(period: Period, now: datetime) -> datetime:
    """Local midnight of today, of this week's Monday, or of the 1st of this month."""
    day = now.date()
    first = {Period.TODAY: day, Period.WEEK: day - timedelta(days=day.weekday()), Period.MONTH: day.replace(day=1)}[period]
    return datetime.combine(first, datetime.min.time(), tzinfo=now.tzinfo)


def _bound(text: str, *, end: bool) -> datetime:
    """A time, or a date: its midnight, or for an end the next midnight (the day included)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return parse_time(text)
    return datetime.combine(day + timedelta(days=1 if end else 0), datetime.min.time(), tzinfo=tz())


def resolve_period(since: str | None, until: str | None, period: Period | None, now: datetime) -> tuple[datetime, datetime]:
    """(since, until) from the options: ``--period``, or ``--since``/``--until``
    (default: the last 30 days up to ``now``)."""
    if period and (since or until):
        raise InvalidInput("--period 不能与 --since/--until 同时使用")
    if period:
        return period_start(period, now), now
    end = _bound(until, end=True) if until else now
    start = _bound(since, end=False) if since else end - timedelta(days=DEFAULT_DAYS)
    return start, end


def _district_id(ref: str | None) -> str | None:
    if not ref:
        return None
    for d in city().jurisdiction.districts.values():
        if ref in (d.id, d.name):
            return d.id
    raise NotFound(f"no district {ref!r}; expected a 区划代码 such as 500105 or a name such as 江北区")


def stats(
    since: Annotated[str | None, typer.Option("--since", help="起始日期或时间（含），ISO 8601，如 2026-11-01；默认：截止前 30 天")] = None,
    until: Annotated[str | None, typer.Option("--until", help="截止日期（含当天）或时间（不含），ISO 8601；默认：现在")] = None,
    period: Annotated[Period | None, typer.Option("--period", help="today 今天、week 本周、month 本月（至今）")] = None,
    by: Annotated[GroupBy, typer.Option("--by", help="按 department 责任单位、street 街道、district 区、source 来源 分组")] = GroupBy.DEPARTMENT,
    dept: Annotated[str | None, typer.Option("--dept", help="只看某个责任单位（ID 或名称）")] = None,
    district: Annotated[str | None, typer.Option("--district", help="只看某个区（区划代码或名称）")] = None,
    with_hot_spots: Annotated[bool, typer.Option("--hot-spots/--no-hot-spots", help="是否列出重复发生热点")] = True,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="另存为 CSV（UTF-8，Excel 可直接打开）")] = None,
    xlsx_path: Annotated[Path | None, typer.Option("--xlsx", help="另存为 Excel（含热点、指标口径）")] = None,
    when: Annotated[str | None, typer.Option("--time", help="以此时间为“现在”计算（默认现在），ISO 8601")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON（含指标口径）")] = False,
):
    """绩效评价：立案、派遣准确率、按期处置率、处置率、结案率、返工率、处置用时、满意率，以及重复发生热点。"""
    now = parse_time(when) or datetime.now(tz())
    start, end = resolve_period(since, until, period, now)
    q = StatsQuery(since=start, until=end, by=by, department_id=dept and city().departments.get(dept).id,
                   district_id=_district_id(district))
    report = compute(store(), q, now=now, with_hot_spots=with_hot_spots)
    saved = [write(report, p) for p, write in ((csv_path, to_csv), (xlsx_path, to_xlsx)) if p]
    if as_json:
        return print_json(report)
    render(report, hot_spots=with_hot_spots)
    for p in saved:
        out.print(f"[green]✓[/] 已保存 {escape(str(p))}")


WIDE = 150


def _ratio(r: Ratio, wide: bool = True) -> str:
    if not r.den:
        return "—"
    return f"{fmt_rate(r.rate)} [dim]{r.num}/{r.den}[/]" if wide else fmt_rate(r.rate)


COLUMNS = ["reported", "filed", "closed", "dispatched", "dispatch_accuracy", "handled", "on_time", "rework",
           "handling_hours", "rating", "satisfied"]
#: In a narrow terminal the metrics come as two tables: counts, then rates.
NARROW_SPLIT = (["reported", "filed", "dispatched", "handling_hours", "rating"],
                ["closed", "dispatch_accuracy", "handled", "on_time", "rework", "satisfied"])


def render(report: StatsReport, *, hot_spots: bool = True) -> None:
    """The metrics (a totals row last; one table in a wide terminal, counts and
    rates apart in a narrow one), intake by source, the hot spots."""
    wide = out.width >= WIDE
    q = report.query
    title = f"绩效评价 {fmt_time(q.since)} 至 {fmt_time(q.until)}（按{report.group_name}）"
    fractions = "比率后为 分子/分母；" if wide else f"终端宽 {WIDE} 列以上时合为一表并显示分子/分母；"
    caption = f"{fractions}“—” 表示分母为 0。指标口径见 `--json` 或 Excel 的“口径”表。统计时点 {fmt_time(report.as_of)}"
    parts = [COLUMNS] if wide else list(NARROW_SPLIT)
    names = {k: d.name for k, d in report.definitions.items()}
    rows = [*report.rows, report.total]
    for n, cols in enumerate(parts):
        last = n == len(parts) - 1
        t = Table(title=title if n == 0 else None, caption=caption if last else None)
        t.add_column(report.group_name, overflow="fold")
        for c in cols:
            t.add_column(names[c], justify="right", overflow="fold")
        for i, r in enumerate(rows):
            cells = _cells(r, wide)
            t.add_row(cells[0], *(cells[1 + COLUMNS.index(c)] for c in cols), style="bold" if i == len(rows) - 1 else None,
                      end_section=i == len(rows) - 2)
        out.print(t)
    _render_sources(report)
    if hot_spots:
        _render_hot_spots(report)


def _cells(r, wide: bool = True) -> list[str]:
    """The label, then one cell per metric in :data:`COLUMNS` order."""
    if wide:
        label = escape(r.label) + (f" [dim]{escape(r.key)}[/]" if r.key and r.key != r.label else "")
    else:
        dept = city().departments.by_id.get(r.key) if r.key else None
        label = escape(dept.short if dept and dept.short else r.label)
    rating = f"{fmt_num(r.rating.mean, 2)} [dim]({r.rating.count})[/]" if r.rating.count else "—"
    return [label, str(r.reported), str(r.filed), _ratio(r.closed, wide), str(r.dispatched), _ratio(r.dispatch_accuracy, wide),
            _ratio(r.handled, wide), _ratio(r.on_time, wide), _ratio(r.rework, wide), fmt_num(r.handling_hours.mean),
            rating, _ratio(r.satisfied, wide)]


def _render_sources(report: StatsReport) -> None:
    parts = [f"{s} {n}" for s, n in report.total.reported_by_source.items()]
    out.print(f"上报来源：{'，'.join(parts)}（合计 {report.total.reported}）")


def _render_hot_spots(report: StatsReport) -> None:
    rule = report.hot_spot_rule
    if not report.hot_spots:
        out.print(f"重复发生热点：无（同一类别 {rule.radius_m:g} 米内不少于 {rule.min_cases} 件）")
        return
    t = Table(title=f"重复发生热点（{len(report.hot_spots)}；同一类别 {rule.radius_m:g} 米内不少于 {rule.min_cases} 件）")
    for col in ("类别", "件数", "区域", "地址", "坐标", "案卷编号", "首次", "最近"):
        t.add_column(col, overflow="fold")
    for h in report.hot_spots:
        t.add_row(f"{h.code} {h.title}", str(h.count), h.place, escape(h.address) or "—", f"{h.lat:.6f},{h.lon:.6f}",
                  "\n".join(h.cases), fmt_time(h.first_at), fmt_time(h.last_at))
    out.print(t)
