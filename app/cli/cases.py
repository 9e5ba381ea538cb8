"""``xunjian cases``: create cases, walk them through the lifecycle, see the audit log."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from app.cli.common import actor, city, fmt_span, fmt_time, out, parse_time, print_json, store
from city.cases import Case, CaseQuery, Evidence, NewCase
from city.catalogue import Source, Urgency, WorkDuration
from city.errors import InvalidInput, XunjianError
from city.geo import parse_latlon
from city.lifecycle import Status, allowed_actions, parse_action
from city.photos import check_photos as _check_photos
from city.photos import copy_photos as _copy_photos
from city.photos import photo_note
from city.photos import remove_files as _remove

app = typer.Typer(help="案卷：立案、派遣、处置、核查、结案、评价，以及审计记录。", no_args_is_help=True)

RISK_STYLE = {"红": "bold red", "橙": "dark_orange", "黄": "yellow", "蓝": "blue", "绿": "green"}


def render_case(case: Case) -> None:
    c = city()
    dept = c.departments.by_id.get(case.department_id) if case.department_id else None
    loc = " ".join(x for x in [case.district_id and c.jurisdiction.districts[case.district_id].name,
                               case.street_id and c.jurisdiction.streets[case.street_id].name] if x)
    lines = [
        f"[b]{case.number}[/b]  [{RISK_STYLE.get(case.risk_level, '')}]■ {case.risk_level}[/]  状态：[b]{case.status.value}[/b]",
        f"类别：{case.kind.value} {case.code} {case.title}    来源：{case.source.value}    紧急程度：{case.urgency.value}",
        f"描述：{escape(case.description)}",
        f"地址：{escape(case.address) or '—'}",
        f"坐标：{f'{case.lat:.6f},{case.lon:.6f}' if case.lat is not None else '—'}    区域：{loc or '—'}    网格：{case.grid_id or '—'}",
        f"责任单位：{dept.name if dept else '—'}" + (f"（{case.route_principle}，规则 {case.route_rule}）" if case.route_rule else ""),
        f"处置时限：{fmt_time(case.deadline)}" + (f"    返工次数：{case.rework_count}" if case.rework_count else ""),
        f"上报人：{escape(case.reporter_name or '—')} {escape(case.reporter_phone or '')}",
        f"创建：{fmt_time(case.created_at)}    更新：{fmt_time(case.updated_at)}" + (f"    结案：{fmt_time(case.closed_at)}" if case.closed_at else ""),
    ]
    if case.duplicate_of:
        lines.append(f"重复于：{case.duplicate_of}")
    if case.rating:
        lines.append(f"评价：{case.rating}/5")
    for ev in case.evidence:
        lines.append(escape(f"证据：[{ev.kind}] {ev.uri} {ev.note}"))
    nxt = "、".join(a.value for a in allowed_actions(case.status)) or "无"
    lines.append(f"[dim]可执行操作：{nxt}[/]")
    out.print(Panel("\n".join(lines), title="案卷", expand=False))


def render_history(case: Case) -> None:
    t = Table(title=f"{case.number} 审计记录")
    for col in ("时间", "操作人", "操作", "从", "到", "说明"):
        t.add_column(col)
    for h in case.history:
        extra = "；".join(f"{k}={v}" for k, v in h.data.items() if k in ("department", "deadline", "approver", "duplicate_of", "rating", "returned_by"))
        t.add_row(fmt_time(h.at), escape(h.actor), h.action, h.from_status or "—", h.to_status, escape("；".join(x for x in [h.note, extra] if x)))
    out.print(t)


@app.command()
def create(
    code: str = typer.Option(..., "--code", help="目录代码，如 06010（可先用 `xunjian catalog search` 查）"),
    description: str = typer.Option(..., "--desc", help="问题描述"),
    at: str = typer.Option(None, "--at", help="纬度,经度（WGS-84）"),
    crs: str = typer.Option("wgs84", "--crs", help="wgs84 或 gcj02"),
    address: str = typer.Option("", "--address"),
    source: Source = typer.Option(Source.CITIZEN, "--source"),
    context: str = typer.Option(None, "--context", help="场景：道路、小区内、河道…"),
    owner: str = typer.Option(None, "--owner", help="设施权属：燃气、供水…"),
    urgency: Urgency = typer.Option(None, "--urgency", help="紧急、较急、一般（默认取目录的默认优先级）"),
    reporter: str = typer.Option(None, "--reporter"),
    phone: str = typer.Option(None, "--phone"),
    evidence: list[str] = typer.Option([], "--evidence", help="证据文件路径或 URL，可多次给出"),
    external_id: str = typer.Option(None, "--external-id", help="外部编号（幂等：同一编号只建一次）"),
    who: str = typer.Option(None, "--actor", help="操作人（默认 $XUNJIAN_USER 或系统用户名）"),
    when: str = typer.Option(None, "--time", help="发生时间（默认现在），ISO 8601"),
    reveal: bool = typer.Option(False, "--reveal", help="显示完整的上报人联系方式"),
    as_json: bool = typer.Option(False, "--json"),
):
    """上报/发现一个问题，建立案卷（状态：上报）。"""
    point = parse_latlon(at, crs=crs) if at else None
    new = NewCase(
        source=source, code=code, description=description, address=address,
        lat=point and point.lat, lon=point and point.lon, context=context, owner=owner, urgency=urgency,
        reporter_name=reporter, reporter_phone=phone, external_id=external_id,
        evidence=[_evidence(e) for e in evidence],
    )
    case = store().create_case(new, actor=actor(who), now=parse_time(when))
    shown = case if reveal else case.public()
    print_json(shown) if as_json else render_case(shown)


@app.command()
def show(
    number: str = typer.Argument(..., help="案卷编号"),
    reveal: bool = typer.Option(False, "--reveal", help="显示完整的上报人联系方式（仅在确有需要时）"),
    as_json: bool = typer.Option(False, "--json"),
):
    """显示案卷及其审计记录。"""
    case = store().get(number)
    shown = case if reveal else case.public()
    if as_json:
        return print_json(shown)
    render_case(shown)
    render_history(shown)


@app.command("list")
def list_(
    status: list[Status] = typer.Option(None, "--status", help="状态，可多次给出"),
    dept: str = typer.Option(None, "--dept", help="责任单位 ID"),
    code: str = typer.Option(None, "--code"),
    source: Source = typer.Option(None, "--source"),
    district: str = typer.Option(None, "--district"),
    street: str = typer.Option(None, "--street"),
    since: str = typer.Option(None, "--since", help="创建时间下限，ISO 8601"),
    until: str = typer.Option(None, "--until"),
    limit: int = typer.Option(50, "--limit"),
    offset: int = typer.Option(0, "--offset"),
    as_json: bool = typer.Option(False, "--json"),
):
    """按条件列出案卷（新的在前）。"""
    q = CaseQuery(status=status or None, department_id=dept, code=code, source=source, district_id=district,
                  street_id=street, since=parse_time(since), until=parse_time(until), limit=limit, offset=offset)
    st = store()
    cases = [c.public() for c in st.list(q)]
    if as_json:
        return print_json(cases)
    t = Table(title=f"案卷（{len(cases)} / 共 {st.count(q)}）")
    for col in ("编号", "状态", "风险", "类别", "来源", "责任单位", "时限", "描述"):
        t.add_column(col, overflow="fold")
    for c in cases:
        t.add_row(c.number, c.status.value, f"[{RISK_STYLE.get(c.risk_level, '')}]{c.risk_level}[/]", f"{c.code} {c.title}",
                  c.source.value, c.department_id or "—", fmt_time(c.deadline), escape(c.description[:30]))
    out.print(t)


@app.command()
def act(
    number: str = typer.Argument(..., help="案卷编号"),
    action: str = typer.Argument(..., help="操作：立案 不予立案 派遣 签收 退回 处置完成 发起核查 核查通过 核查不通过 评价 延期 挂账 解除挂账 作废（或英文别名 file/dispatch/…）"),
    note: str = typer.Option(None, "--note", "-m", help="说明/原因（不予立案、退回、核查不通过、延期、挂账、作废必填）"),
    dept: str = typer.Option(None, "--dept", help="派遣时人工指定责任单位（默认按权责清单自动路由）"),
    urgency: Urgency = typer.Option(None, "--urgency", help="同时调整紧急程度"),
    extend: str = typer.Option(None, "--extend", help="延期时长，如 2工作日"),
    approver: str = typer.Option(None, "--approver", help="延期审批人"),
    dup: str = typer.Option(None, "--dup", help="作废时：重复于哪个案卷"),
    rating: int = typer.Option(None, "--rating", help="评价：1-5"),
    photo: list[str] = typer.Option([], "--photo", help="照片（如处置后照片），可多次给出；复制到 $XUNJIAN_HOME/evidence/<案卷编号>/ 并记录 sha256"),
    who: str = typer.Option(None, "--actor", help="操作人"),
    when: str = typer.Option(None, "--time", help="操作时间（默认现在），ISO 8601"),
    as_json: bool = typer.Option(False, "--json"),
):
    """对案卷执行一个流程操作（非法操作会被拒绝并说明可执行的操作）。

    处置完成时可用 --note 说明处置结果、--photo 附上处置后照片（与操作在同一事务中记录）。"""
    act_ = parse_action(action)
    try:
        ext = WorkDuration.model_validate(extend) if extend else None
    except ValueError:
        raise InvalidInput(f"--extend {extend!r}: expected e.g. 4工作时 or 2工作日") from None
    photos = _check_photos(photo)  # all of them, before anything is copied or changed
    st = store()
    if photos:
        st.get(number)  # an unknown case fails here, before any file is copied
    label = photo_note(act_)
    evidence, copied = _copy_photos(number, photos, label)
    try:
        case = st.act(number, act_, actor=actor(who), note=note, department_id=dept, urgency=urgency, extend=ext,
                      approver=approver, duplicate_of=dup, rating=rating, evidence=evidence or None, now=parse_time(when))
    except XunjianError:
        _remove(copied)  # the action was refused (nothing was written): keep no file the store does not reference
        raise
    if as_json:
        return print_json(case.public())
    last = case.history[-1]
    out.print(f"[green]✓[/] {case.number}：{last.action}（{last.from_status} → {last.to_status}）")
    render_case(case.public())
    if case.status is Status.CLOSED and case.source in (Source.CITIZEN, Source.HOTLINE):
        reply = closure_reply(case)
        out.print(Panel(escape(reply.text), title="办结回复市民（草稿）", expand=False))
        for v in reply.violations:
            out.print(f"[yellow]回复检查[/]：{v}")


def closure_reply(case: Case):
    """The 办结回复 for a closed case: what the department reported doing (the
    last 处置完成 note), never the citizen's own text or contact details."""
    from agents.offline import draft_reply
    from city.lifecycle import Action

    done = [h for h in case.history if h.action == Action.COMPLETE.value]
    return draft_reply("closure", case, city(), result=done[-1].note if done else "")


@app.command()
def attach(
    number: str = typer.Argument(..., help="案卷编号"),
    files: list[str] = typer.Argument(..., help="证据文件路径或 URL"),
    note: str = typer.Option("", "--note", "-m"),
    who: str = typer.Option(None, "--actor"),
):
    """为案卷补充证据（照片、视频、链接）；本地文件记录 sha256，原文件不改动。"""
    evidence = [_evidence(f) for f in files]
    case = store().add_evidence(number, evidence, actor=actor(who), note=note)
    out.print(f"[green]✓[/] {case.number}：补充证据 {len(evidence)} 项，共 {len(case.evidence)} 项")


def _evidence(ref: str) -> Evidence:
    """A local file (must exist; hashed) or a URL."""
    if ref.startswith(("http://", "https://")):
        return Evidence(kind="link", uri=ref)
    path = Path(ref).expanduser()
    if not path.is_file():
        raise InvalidInput(f"evidence file {ref!r} does not exist (give a file path or an http(s) URL)")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    kind = "video" if path.suffix.lower() in {".mp4", ".mov", ".avi", ".mkv"} else "image" if path.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".bmp"} else "text"
    return Evidence(kind=kind, uri=str(path.resolve()), sha256=digest.hexdigest())


@app.command()
def history(number: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")):
    """显示案卷的审计记录（谁、何时、从什么状态到什么状态、说明）。"""
    case = store().get(number).public()
    print_json(case.history) if as_json else render_history(case)


@app.command()
def trace(number: str = typer.Argument(..., help="案卷编号"), full: bool = typer.Option(False, "--full", help="显示完整的提示词和回复")):
    """案件流水线的每一步，以及每次 LLM 调用的提示词、回复、token 和耗时。"""
    from agents.llm import SqlCallLog
    from agents.pipeline import Pipeline

    st = store()
    case = st.get(number)
    if not case.external_id:
        out.print(f"{number} 不是由案件流水线创建的（没有流水线记录）。")
        raise typer.Exit(1)
    try:
        result = Pipeline(st).state_of(number)
        out.print(Panel(escape("\n".join(result.state.notes)), title=f"{number} 流水线步骤（线程 {result.thread_id}）", expand=False))
    except Exception as e:  # noqa: BLE001 - a case whose thread is gone still has its LLM log
        out.print(f"[yellow]流水线状态不可用：{e}[/]")
    log = SqlCallLog(st)
    calls = log.calls_for(case.external_id)
    cost = log.cost(case.external_id)
    out.print(f"LLM 调用 {cost.calls} 次（失败 {cost.failed}），提示 {cost.prompt_tokens} tokens，生成 {cost.completion_tokens} tokens，耗时 {cost.latency_ms} ms")
    for c in calls:
        req = c.request if full else {k: v for k, v in (c.request or {}).items() if k != "messages"}
        body = f"请求：{req}\n回复：{c.response if full else (c.response or '')[:300]}" + (f"\n错误：{c.error}" if c.error else "")
        out.print(Panel(escape(body), title=f"{c.at:%H:%M:%S} {c.step} 第{c.attempt}次 {'✓' if c.ok else '✗'} {c.model or ''} {c.latency_ms}ms", expand=False))


@app.command()
def due(
    dept: str = typer.Option(None, "--dept", help="只看某个责任单位"),
    overdue_only: bool = typer.Option(False, "--overdue", help="只看已超期"),
    when: str = typer.Option(None, "--time", help="以此时间计算（默认现在）"),
    as_json: bool = typer.Option(False, "--json"),
):
    """已超期和即将超期的案卷（按工作时间计算）。"""
    rows = store().due(parse_time(when), department_id=dept, soon=not overdue_only)
    if as_json:
        return print_json([{"case": c.public().model_dump(mode="json"), "state": s, "remaining_minutes": int(r.total_seconds() // 60)} for c, s, r in rows])
    t = Table(title=f"超期预警（{len(rows)}）")
    for col in ("编号", "预警", "责任单位", "类别", "时限", "剩余工作时间"):
        t.add_column(col)
    for c, s, r in rows:
        t.add_row(c.number, f"[red]{s}[/]" if s == "已超期" else f"[yellow]{s}[/]", c.department_id or "—",
                  f"{c.code} {c.title}", fmt_time(c.deadline), fmt_span(r))
    out.print(t)


@app.command()
def nearby(
    at: str = typer.Option(..., "--at", help="纬度,经度"),
    radius: float = typer.Option(50.0, "--radius", help="半径（米）"),
    code: str = typer.Option(None, "--code", help="只看同类及相关类别（判重）；默认：全部类别"),
    days: int = typer.Option(30, "--days", help="只看最近多少天创建的（与 --code 一起用）"),
    crs: str = typer.Option("wgs84", "--crs"),
):
    """某点附近未结案的案卷（判重：同类或相关类别、一定距离和时间窗内）。"""
    p = parse_latlon(at, crs=crs)
    st = store()
    if code:
        rows = st.find_duplicates(code, p.lat, p.lon, radius_m=radius, window=timedelta(days=days))
    else:
        rows = st.nearby_open(p.lat, p.lon, radius)
    t = Table(title=f"{p} 周边 {radius:g} 米内未结案案卷（{len(rows)}）")
    for col in ("编号", "距离(米)", "状态", "类别", "创建"):
        t.add_column(col)
    for c, d in rows:
        t.add_row(c.number, f"{d:.1f}", c.status.value, f"{c.code} {c.title}", fmt_time(c.created_at))
    out.print(t)
