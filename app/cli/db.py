"""``xunjian db``: the store's schema, a quick look at it, backup and restore."""

from __future__ import annotations

from pathlib import Path

import typer

from app.cli.common import out, state
from city import settings
from city.store.db import current_revision, head_revision, make_engines, migrate

app = typer.Typer(help="数据库：迁移、状态、备份与恢复。", no_args_is_help=True)


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
    from city.cases import CaseQuery
    from city.lifecycle import Status

    st = store()
    out.print(f"数据库：{st.write_engine.url.render_as_string()}")
    out.print(f"结构版本：{current_revision(st.write_engine)}（最新 {head_revision(st.write_engine)}）")
    out.print(f"案卷总数：{st.count()}")
    for s in Status:
        n = st.count(CaseQuery(status=[s]))
        if n:
            out.print(f"  {s.value}：{n}")


@app.command()
def backup(
    path: Path = typer.Argument(..., help="备份目录（新建或空目录）"),
    files: bool = typer.Option(True, "--files/--no-files", help="同时备份数据目录中的证据图片等文件"),
    uploads: bool = typer.Option(False, "--uploads", help="连同上传的原始视频（uploads/，可能很大）"),
    as_json: bool = typer.Option(False, "--json"),
):
    """备份：数据库（案件、审计、观测、账号、流水线检查点）与数据目录中的证据文件。
    SQLite 用在线备份接口，PostgreSQL 用 pg_dump -Fc；服务运行中也可备份。"""
    from app.cli.common import print_json
    from city.store.backup import backup as run

    manifest = run(state.db_url or settings.db_url(), path, files=files, uploads=uploads)
    if as_json:
        return print_json(manifest)
    counts = "，".join(f"{k} {v}" for k, v in manifest["counts"].items())
    out.print(f"已备份到 {path}（{manifest['dialect']}，结构版本 {manifest['revision']}）：{counts}")
    if manifest.get("files"):
        out.print(f"  文件：{', '.join(manifest['files']['top']) or '无'}（未包含 {', '.join(manifest['files']['skipped'])}）")


@app.command()
def restore(
    path: Path = typer.Argument(..., help="xunjian db backup 写出的备份目录"),
    force: bool = typer.Option(False, "--force", help="目标数据库已有案件时也覆盖（会删除其中全部数据）"),
    files: bool = typer.Option(True, "--files/--no-files", help="同时恢复数据目录中的文件"),
    as_json: bool = typer.Option(False, "--json"),
):
    """从备份恢复数据库与文件（先停止服务与工作进程）；恢复后打开存储时自动迁移到最新结构。"""
    from app.cli.common import print_json
    from city.store import Store
    from city.store.backup import restore as run

    url = state.db_url or settings.db_url()
    manifest = run(url, path, force=force, files=files)
    st = Store(url)  # migrates an older backup to the current schema
    try:
        now = {"cases": st.count(), "revision": current_revision(st.write_engine)}
    finally:
        st.close()
    if as_json:
        return print_json({"manifest": manifest, "restored": now})
    out.print(f"已从 {path} 恢复（备份于 {manifest['created_at']}）：案卷 {now['cases']} 件，结构版本 {now['revision']}")
