"""``xunjian``: the command line. Each command group lives in its own module."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from app.cli import (
    cases,
    catalog,
    chat,
    db,
    demo,
    depts,
    evals,
    llm,
    pipeline,
    route,
    serve,
    sla,
    stats,
    verify,
    vision,
)
from app.cli.common import err, state
from city.errors import XunjianError

app = typer.Typer(
    name="xunjian",
    help="巡检 xunjian：城市管理巡检与派遣（目录、权责路由、案卷与全流程）。",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(catalog.app, name="catalog")
app.add_typer(depts.app, name="depts")
app.add_typer(route.app, name="route")
app.add_typer(cases.app, name="cases")
app.add_typer(db.app, name="db")
app.add_typer(pipeline.review_app, name="review")
app.add_typer(pipeline.pipeline_app, name="pipeline")
app.add_typer(llm.app, name="llm")
app.add_typer(vision.obs_app, name="observations")
app.add_typer(vision.vision_app, name="vision")
app.add_typer(sla.app, name="sla")
app.add_typer(evals.app, name="eval")
app.add_typer(serve.users_app, name="users")
app.command("ingest")(vision.ingest)
app.command("report")(pipeline.report)
app.command("verify")(verify.verify)
app.command("stats")(stats.stats)
app.command("chat")(chat.chat)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)


@app.callback()
def _global(
    db_url: str = typer.Option(None, "--db", envvar="XUNJIAN_DB_URL", help="数据库 URL（默认：用户数据目录下的 SQLite 文件）"),
    city_data: str = typer.Option(None, "--city-data", envvar="XUNJIAN_CITY_DATA", help="城市数据目录（默认：内置示例城市）"),
):
    state.db_url = db_url
    state.city_data = city_data


def main() -> None:
    try:
        app()
    except XunjianError as e:
        err.print(f"[bold red]错误[/]：{e}", highlight=False)
        sys.exit(1)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "input"
        err.print(f"[bold red]输入无效[/]：{loc}：{first['msg']}", highlight=False)
        sys.exit(2)
