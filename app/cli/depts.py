"""``xunjian depts``: departments (责任单位)."""

from __future__ import annotations

import typer
from rich.table import Table

from app.cli.common import city, out, print_json

app = typer.Typer(help="责任单位。", no_args_is_help=True)


@app.command("list")
def list_(
    district: str = typer.Option(None, "--district", help="区划代码，如 500105"),
    as_json: bool = typer.Option(False, "--json"),
):
    """列出责任单位。"""
    depts = [d for d in city().departments if district is None or d.district == district]
    if as_json:
        return print_json(depts)
    t = Table(title=f"责任单位（{len(depts)}）")
    for col in ("ID", "名称", "类型", "区", "工作日历", "电话"):
        t.add_column(col)
    for d in depts:
        t.add_row(d.id, d.name, d.type.value, d.district or "全市", d.calendar, d.contact.phone)
    out.print(t)
