"""``xunjian db``: the store's schema and a quick look at it."""

from __future__ import annotations

import typer

from app.cli.common import out, state
from city import settings
from city.store.db import current_revision, head_revision, make_engines, migrate

app = typer.Typer(help="数据库：迁移与状态。", no_args_is_help=True)


@app.command()
def upgrade():
    """把数据库结构迁移到最新版本（打开存储时也会自动执行）。"""
    _, engine = make_engines(state.db_url or settings.db_url())
    ran = migrate(engine)
    out.print(f"{'已迁移到' if ran else '已是最新版本'} {current_revision(engine)}（{engine.url.render_as_string()}）")


@app.command()
def info():
    """显示数据库位置、结构版本和案卷数量。"""
    from app.cli.common import store
    from city.lifecycle import Status
    from city.cases import CaseQuery

    st = store()
    out.print(f"数据库：{st.write_engine.url.render_as_string()}")
    out.print(f"结构版本：{current_revision(st.write_engine)}（最新 {head_revision(st.write_engine)}）")
    out.print(f"案卷总数：{st.count()}")
    for s in Status:
        n = st.count(CaseQuery(status=[s]))
        if n:
            out.print(f"  {s.value}：{n}")
