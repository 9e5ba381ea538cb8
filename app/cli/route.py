"""``xunjian route``: who is responsible, and why."""

from __future__ import annotations

import typer
from rich.panel import Panel

from app.cli.common import city, out, print_json
from city.catalogue import Kind
from city.geo import parse_latlon

app = typer.Typer(help="权责路由：按权责清单确定责任单位。", no_args_is_help=True)


@app.command()
def explain(
    code: str = typer.Argument(..., help="目录代码，如 06010 或 事件:01002"),
    at: str = typer.Option(None, "--at", help="位置 纬度,经度（WGS-84），如 29.575,106.53"),
    crs: str = typer.Option("wgs84", "--crs", help="坐标系：wgs84 或 gcj02（高德/腾讯地图坐标）"),
    context: str = typer.Option(None, "--context", help="场景：道路、小区内、桥梁、河道…"),
    owner: str = typer.Option(None, "--owner", help="设施权属：燃气、供水、电力…"),
    kind: Kind = typer.Option(None, "--kind"),
    as_json: bool = typer.Option(False, "--json"),
):
    """显示路由决定和所依据的规则。"""
    c = city()
    entry = c.catalogue.get(code, kind)
    point = parse_latlon(at, crs=crs) if at else None
    loc = c.locate(point.lat, point.lon) if point else None
    decision = c.route(entry, point and point.lat, point and point.lon, context, owner)
    if as_json:
        return print_json({"location": loc and loc.model_dump(), "decision": decision.model_dump()})
    where = (f"{loc.district_name or '（区外）'} {loc.street_name or ''} 网格 {loc.grid_id or '—'}" if loc else "未给出位置")
    lines = [
        f"[b]{entry.label}[/b]",
        f"位置：{point or '—'} → {where}",
        f"责任单位：[b green]{decision.department_name}[/]（{decision.department_id}）",
        f"原则：{decision.principle}" + ("   [yellow]⚠ 规则有歧义，需人工/模型裁定[/]" if decision.ambiguous else ""),
        f"规则：{decision.rule_id or '—'} {decision.rule}",
        f"依据：{decision.basis}",
        "",
        "决策过程：",
        *[f"  {i}. {step}" for i, step in enumerate(decision.trail, 1)],
    ]
    out.print(Panel("\n".join(lines), title="路由解释", expand=False))
