"""``xunjian verify``: 核查 by re-inspection from the command line."""

from __future__ import annotations

import typer
from rich.table import Table

from app.cli.common import out, print_json, store

STYLE = {"核查通过": "green", "核查不通过": "red", "待人工核查": "yellow", "仍存在": "magenta", "未再发现": "cyan", "未覆盖": "dim"}


def _why(v) -> str:
    if v.observations:
        return f"原位置再次检出（{len(v.observations)} 条观测）"
    if v.frames:
        return f"{v.frames} 帧拍到，覆盖 {v.coverage:.0%}，未检出"
    return "未拍到原位置"


def render_verifications(decisions, title: str) -> None:
    """One row per decision; the full reasons are in each case's history (xunjian cases show)."""
    t = Table(title=title)
    for col in ("案卷", "结果", "状态", "置信度", "依据"):
        t.add_column(col, overflow="fold", no_wrap=col in ("案卷", "结果"))
    for v in decisions:
        style = STYLE.get(v.outcome.value, "")
        status = v.status_before if v.status_before == v.status_after else f"{v.status_before}→{v.status_after or '（预演）'}"
        t.add_row(v.case_number, f"[{style}]{v.outcome.value}[/]", status, f"{v.confidence:.2f}", _why(v))
    out.print(t)


def verify(
    batch: str = typer.Option(..., "--batch", "-b", help="复查用的巡检批次号（xunjian observations batches）"),
    dry_run: bool = typer.Option(False, "--dry-run", help="只显示判断，不改动案件"),
    as_json: bool = typer.Option(False, "--json"),
):
    """核查：用一个巡检批次的新视频复核它拍到的案件位置。

    已处置的案件：原位置再次发现同类问题 → 核查不通过（退回返工，附新证据）；原位置清楚拍到且未发现 →
    核查通过（附处置前后对比）；未拍到 → 不作判断；把握不足 → 待人工核查。未处置的案件：再次发现的问题作为证据并入，
    不重复立案。`xunjian pipeline run --batch` 也会先做这一步。规则见 city/data/verification.yaml。"""
    from vision.verify import verify_batch

    st = store()
    decisions = verify_batch(st, batch, dry_run=dry_run)
    if as_json:
        return print_json(decisions)
    earlier = [v for v in st.verifications(batch_id=batch) if v.case_number not in {d.case_number for d in decisions}]
    if not decisions:
        out.print(f"批次 {batch} 没有需要新核查的案件（此前已核查 {len(earlier)} 件）。")
        return
    render_verifications(decisions, f"批次 {batch} 核查{'（预演，未改动）' if dry_run else ''}：{len(decisions)} 件")
    counts: dict[str, int] = {}
    for v in decisions:
        counts[v.outcome.value] = counts.get(v.outcome.value, 0) + 1
    out.print("，".join(f"{k} {n}" for k, n in counts.items()) + (f"；此前已核查 {len(earlier)} 件" if earlier else ""))
