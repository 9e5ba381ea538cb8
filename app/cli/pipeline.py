"""``xunjian report`` and ``xunjian review``: the case pipeline from the command line."""

from __future__ import annotations

from contextlib import contextmanager

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from app.cli.cases import render_case
from app.cli.common import actor, out, print_json, store
from city.catalogue import Source, Urgency
from city.geo import parse_latlon

review_app = typer.Typer(help="审核：在审核关口等待人工确认的案件。", no_args_is_help=True)
pipeline_app = typer.Typer(help="案件流水线：把视频批次的观测批量送入流水线。", no_args_is_help=True)


@contextmanager
def _pipeline():
    """The pipeline on the default store, with the configured LLM (starting the
    embedded model for the ``local`` backend, and stopping it afterwards)."""
    from agents.context import Context, llm_endpoint
    from agents.llm import LLMClient, SqlCallLog
    from agents.pipeline import Pipeline

    st = store()
    with llm_endpoint() as config:
        yield Pipeline(st, Context.default(st, llm=LLMClient(config, log=SqlCallLog(st))))


RECORD_FIELDS = [
    ("number", "案卷编号"), ("source", "来源"), ("code", "类别代码"), ("name", "类别名称"), ("kind", "类型"),
    ("address", "地址"), ("district_name", "区"), ("street_name", "街道"), ("grid_id", "网格"),
    ("description", "问题描述"), ("filing_basis", "立案依据"), ("closing_condition", "结案条件"),
    ("department_name", "责任单位"), ("route_principle", "派遣原则"), ("route_rule", "依据规则"),
    ("deadline_text", "处置时限"), ("urgency", "紧急程度"), ("risk_level", "风险等级"),
]


def _show(result, as_json: bool) -> None:
    if as_json:
        return print_json(result)
    st = result.state
    if st.case_number:
        render_case(store().get(st.case_number).public())
    if st.record:
        lines = [f"{label}：{st.record[key]}" for key, label in RECORD_FIELDS if st.record.get(key) not in (None, "", [])]
        out.print(Panel(escape("\n".join(lines)), title="案卷草稿", expand=False))
    if st.reply:
        out.print(Panel(escape(st.reply.get("text", "")), title="回复市民（草稿）", expand=False))
    if result.waiting:
        out.print(f"[yellow]⏸ 等待人工审核[/]：{'；'.join(result.waiting['reasons'])}\n"
                  f"  xunjian review approve {st.case_number}   |   xunjian review reject {st.case_number} --note 原因")
    elif st.outcome == "attached":
        out.print(f"[cyan]已作为证据附加到未结案案件 {st.duplicate_of}[/]（不重复立案）")
    elif st.outcome is None and not st.case_number:
        out.print("[yellow]未能归类到目录中的任何类别，未立案[/]；请人工处理。")
    out.print("[dim]" + escape("\n".join(st.notes)) + "[/]")



def report(
    text: str = typer.Argument(..., help="市民诉求或巡查描述（中文）"),
    at: str = typer.Option(None, "--at", help="纬度,经度（WGS-84），如 29.56,106.55"),
    crs: str = typer.Option("wgs84", "--crs", help="wgs84 或 gcj02"),
    address: str = typer.Option("", "--address"),
    source: Source = typer.Option(Source.CITIZEN, "--source"),
    context: str = typer.Option(None, "--context", help="场景：道路、小区内、河道…"),
    name: str = typer.Option(None, "--name", help="上报人姓名"),
    phone: str = typer.Option(None, "--phone", help="上报人电话"),
    external_id: str = typer.Option(None, "--external-id", help="外部编号（幂等）"),
    as_json: bool = typer.Option(False, "--json"),
):
    """把一条上报送入案件流水线：分类 → 判重 → 路由 → 起草案卷与回复 → 审核关口 → 派遣。"""
    from agents.state import Report

    point = parse_latlon(at, crs=crs) if at else None
    rep = Report(source=source, text=text, lat=point and point.lat, lon=point and point.lon, address=address,
                 context=context, reporter_name=name, reporter_phone=phone, external_id=external_id)
    with _pipeline() as pipe:
        if not pipe.context.llm.enabled:
            out.print("[dim]policy: offline（未配置 LLM：检索分类 + 规则路由 + 模板起草）[/]")
        _show(pipe.run(rep), as_json)


@pipeline_app.command("run")
def run_batch(
    batch: str = typer.Option(..., "--batch", "-b", help="批次号（xunjian observations batches）"),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=64, help="同时处理的观测数"),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="先用本批次视频核查它拍到的已有案件（xunjian verify）"),
    workers: int = typer.Option(1, "--workers", "-w", min=1, max=64, help="本机工作进程数（每个进程处理一个分片）"),
    shard: str = typer.Option(None, "--shard", help="只处理分片 i/N（多节点：每个节点一个分片，i 从 0 起），如 0/4"),
    shard_by: str = typer.Option("id", "--shard-by", help="按什么分片：id（观测编号，最均匀）| area（约 1 公里的地块：同一地点归同一进程，锁等待少）"),
    as_json: bool = typer.Option(False, "--json"),
):
    """先核查本批次拍到的已有案件，再把尚未立案的问题观测逐条送入案件流水线（Send 扇出，并发有上限）。
    --workers N 在本机用 N 个进程分片并行；--shard i/N 只处理第 i 个分片（各节点共用 PostgreSQL 存储与检查点）。"""
    from agents.batch import run_batch as run
    from agents.batch import run_batch_workers
    from app.cli.verify import render_verifications

    part = _parse_shard(shard)
    if shard_by not in ("id", "area"):
        raise typer.BadParameter(f"应为 id 或 area，收到 {shard_by!r}", param_hint="--shard-by")
    if part != (0, 1) and workers > 1:
        raise typer.BadParameter("--shard 与 --workers 只能选一个")
    with _pipeline() as pipe:
        before = {v.case_number for v in pipe.store.verifications(batch_id=batch)} if verify else set()
        if workers > 1:
            results = run_batch_workers(pipe, batch, workers=workers, max_concurrency=concurrency, verify=verify, shard_by=shard_by)
        else:
            results = run(pipe, batch, max_concurrency=concurrency, verify=verify, shard=part, shard_by=shard_by)
        checked = [v for v in pipe.store.verifications(batch_id=batch) if v.case_number not in before] if verify else []
    if as_json:
        return print_json({"verifications": [v.model_dump(mode="json") for v in checked], "results": results})
    if checked:
        render_verifications(checked, f"批次 {batch} 核查：{len(checked)} 件")
    if not results:
        out.print(f"批次 {batch} 没有待处理的问题观测（都已立案或附加到案件）。")
        return
    t = Table(title=f"批次 {batch}：{len(results)} 条观测送入流水线")
    for col in ("观测", "类别代码", "案卷", "结果"):
        t.add_column(col)
    outcome_zh = {"dispatched": "已派遣", "attached": "并入已有案件", "rejected": "已驳回", "waiting": "等待审核", None: "未立案"}
    for r in results:
        t.add_row(r["observation"].rsplit(":", 1)[-1], r["code"] or "—", r["case"] or "—",
                  outcome_zh.get("waiting" if r["waiting"] else r["outcome"], r["outcome"]))
    out.print(t)


def _parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise typer.BadParameter(f"分片应写成 i/N，如 0/4，收到 {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise typer.BadParameter(f"分片 {text}：须 0 ≤ i < N")
    return i, n


@review_app.command("list")
def review_list(as_json: bool = typer.Option(False, "--json")):
    """等待审核的案件。"""
    with _pipeline() as pipe:
        rows = pipe.waiting()
    if as_json:
        return print_json(rows)
    t = Table(title=f"待审核（{len(rows)}）")
    for col in ("案卷", "类别", "拟派单位", "原因", "描述"):
        t.add_column(col, overflow="fold")
    for r in rows:
        w = r.waiting
        t.add_row(w["case_number"], f"{w['code']} {w['name']}", w.get("department_id") or "—", "；".join(w["reasons"]),
                  escape(r.state.report.text[:40]))
    out.print(t)


@review_app.command()
def approve(number: str, note: str = typer.Option("", "--note", "-m"), who: str = typer.Option(None, "--actor"),
            as_json: bool = typer.Option(False, "--json")):
    """批准：立案并按拟定单位派遣。"""
    with _pipeline() as pipe:
        _show(pipe.resume(number, "approve", by=actor(who), note=note), as_json)


@review_app.command()
def edit(number: str, dept: str = typer.Option(None, "--dept", help="改派单位 ID"),
         urgency: Urgency = typer.Option(None, "--urgency"), note: str = typer.Option("", "--note", "-m"),
         who: str = typer.Option(None, "--actor"), as_json: bool = typer.Option(False, "--json")):
    """修改后批准：改派单位和/或紧急程度，然后立案派遣。"""
    edits = {k: v for k, v in {"department_id": dept, "urgency": urgency and urgency.value}.items() if v}
    with _pipeline() as pipe:
        _show(pipe.resume(number, "edit", by=actor(who), note=note, edits=edits), as_json)


@review_app.command()
def reject(number: str, note: str = typer.Option(..., "--note", "-m", help="不予立案的原因"),
           who: str = typer.Option(None, "--actor"), as_json: bool = typer.Option(False, "--json")):
    """驳回：不予立案（须说明原因）。"""
    with _pipeline() as pipe:
        _show(pipe.resume(number, "reject", by=actor(who), note=note), as_json)
