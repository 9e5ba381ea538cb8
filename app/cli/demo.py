"""``xunjian demo``: the sample city end to end on the embedded defaults.

Opens (or reuses) the default store, reports a dozen realistic issues from
patrols and citizens in the sample districts, routes and dispatches them by
the responsibility rules, walks one case through the whole loop
(发现 → 立案 → 派遣 → 处置 → 核查 → 结案 → 评价) and prints the board.
Then the footage half: renders the demo patrol batch (a forward-camera video
with its GPX track, once, into the data dir), ingests it with the bundled
demo detector, printing one observation per physical issue, and sends the
issue observations through the case pipeline (offline policy by default).
Then the loop is closed: the duty officer approves the cases held at the
review gate, the departments report most of them handled (one falsely), the
same street is patrolled again, and that batch verifies them: the repaired
ones pass and close with before/after frames, the one still broken goes back
for rework, the one still open gets the new sighting as evidence, and a new
issue opens a new case. Last, the rates (``xunjian stats``).
Idempotent: a second run finds the same cases and files and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.table import Table

from app.cli.cases import render_case, render_history
from app.cli.common import fmt_time, out, store
from city.cases import CaseQuery, NewCase
from city.catalogue import Source
from city.lifecycle import Action, Status

# (external id, source, code, description, address, lat, lon, context, reporter, phone)
SAMPLES = [
    ("demo:01", Source.VEHICLE, "01002", "车巡发现污水井盖破损缺角，位于机动车道内", "建新北路与观音桥步行街交叉口东侧", 29.5752, 106.5311, "道路", None, None),
    ("demo:02", Source.VEHICLE, "06010", "人行道绿化带旁堆放生活垃圾约2平方米", "建新东路88号门前", 29.5728, 106.5372, "人行道", None, None),
    ("demo:03", Source.DRONE, "06011", "无人机巡查发现空地堆积建筑渣土，面积约50平方米", "五里店立交东北侧空地", 29.5905, 106.5672, None, None, None),
    ("demo:04", Source.CITIZEN, "09006", "小区门口有人摆摊卖水果，占了半条人行道", "华新街街道某小区北门", 29.5668, 106.5431, "人行道", "张先生", "13812345678"),
    ("demo:05", Source.HOTLINE, "06028", "楼下烧烤店每天半夜还很吵，影响休息", "大石坝街道某路口", 29.5948, 106.5252, None, "李女士", "13987654321"),
    ("demo:06", Source.VEHICLE, "06013", "车行道路面坑槽，直径约60厘米，深约8厘米", "江北城大街中段", 29.5703, 106.5752, "道路", None, None),
    ("demo:07", Source.VEHICLE, "06042", "垃圾桶满溢，周边散落垃圾", "两路口某公交站旁", 29.5555, 106.5442, "人行道", None, None),
    ("demo:08", Source.CITIZEN, "09006", "路边有人占道卖菜", "解放碑某街口", 29.5578, 106.5751, "道路", "王女士", "13700001111"),
    ("demo:09", Source.DRONE, "06025", "河面有大片漂浮垃圾，塑料瓶和泡沫", "嘉陵江大溪沟段近岸", 29.5655, 106.5502, "河道", None, None),
    ("demo:10", Source.VEHICLE, "01011", "燃气井盖松动，车辆经过有响声", "石马河某路段", 29.6015, 106.5102, "道路", None, None),
]

#: Samples reported this many days before the first demo run, so the board has overdue cases.
AGE_DAYS = {"demo:02": 4, "demo:06": 6, "demo:07": 3}

#: A citizen report that waits at the review gate (high risk: a human approves dispatch).
GATE_REPORT = ("demo:gate", "市民来电：建新北路人行道地面塌陷出一个坑，约一米宽，旁边有行人经过，很危险", 29.5741, 106.5329,
               "建新北路中段人行道")


def demo() -> None:
    """演示：在示例城市里上报、路由、派遣一批问题，并把一件案卷走完全流程。"""
    st = store()
    out.print(f"[b]巡检 xunjian 演示[/b]  数据库：{st.write_engine.url.render_as_string()}  城市：{st.city.settings.name}")
    created = 0
    now = datetime.now(UTC)
    for ext, source, code, desc, address, lat, lon, context, name, phone in SAMPLES:
        if st.find_external(ext):
            continue
        when = now - timedelta(days=AGE_DAYS.get(ext, 0))  # some were reported days ago: overdue by now
        case = st.create_case(NewCase(source=source, code=code, description=desc, address=address, lat=lat, lon=lon,
                                      context=context, reporter_name=name, reporter_phone=phone, external_id=ext),
                              actor="demo", now=when)
        st.act(case.number, Action.FILE, actor="值班长（演示）", note="符合立案条件", now=when)
        st.act(case.number, Action.DISPATCH, actor="值班长（演示）", now=when)
        created += 1
    out.print(f"新建并派遣 {created} 件（已存在的跳过）。")

    first = st.find_external("demo:01")
    if first.status is Status.DISPATCHED:
        who = first.department_id
        st.act(first.number, Action.ACCEPT, actor=f"{who} 处置员")
        st.act(first.number, Action.COMPLETE, actor=f"{who} 处置员", note="已更换同规格球墨铸铁井盖，设置警示后恢复通行")
        st.act(first.number, Action.REQUEST_VERIFY, actor="值班长（演示）")
        st.act(first.number, Action.PASS, actor="监督员（演示）", note="现场核查：井盖完好、与路面平顺")
        st.act(first.number, Action.EVALUATE, actor="值班长（演示）", note="按时处置", rating=5)
    case = st.get(first.number)
    out.rule("一件案卷的完整流程")
    render_case(case.public())
    render_history(case.public())

    out.rule("案卷看板")
    rows = st.list(CaseQuery(limit=20))
    t = Table()
    for col in ("编号", "状态", "类别", "来源", "责任单位", "依据", "时限"):
        t.add_column(col, overflow="fold")
    for c in rows:
        dept = st.city.departments.by_id.get(c.department_id)
        t.add_row(c.number, c.status.value, f"{c.code} {c.title}", c.source.value, dept.label if dept else "—",
                  f"{c.route_principle or ''} {c.route_rule or ''}", fmt_time(c.deadline))
    out.print(t)
    batch_id = footage(st)
    close_the_loop(st, batch_id)
    waiting_at_the_gate(st)
    out.print("下一步：[b]xunjian cases list[/b]、[b]xunjian cases show 编号[/b]、[b]xunjian route explain 09006 --at 29.5578,106.5751[/b]、"
              "[b]xunjian observations list --batch demo-2026-11-20[/b]、[b]xunjian stats[/b]、[b]xunjian sla due[/b]、[b]xunjian chat[/b]（/help）；"
              "网页：[b]xunjian serve[/b]（http://127.0.0.1:8000/）")


def waiting_at_the_gate(st) -> None:
    """One citizen report left at the review gate, for the review queue (xunjian review list, the web app)."""
    from agents.pipeline import Pipeline
    from agents.state import Report

    ext, text, lat, lon, address = GATE_REPORT
    result = Pipeline(st).run(Report(source=Source.CITIZEN, text=text, lat=lat, lon=lon, address=address, external_id=ext))
    if result.waiting:
        out.print(f"市民来电 {result.state.case_number} 在审核关口等待人工确认（{'；'.join(result.waiting['reasons'])}）："
                  f"[b]xunjian review list[/b]")


def footage(st) -> str:
    """Render (once) and ingest the demo patrol batch; print its observations; returns the batch id."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from app.cli.vision import RichProgress
    from city import settings
    from vision.ingest import IngestOptions, ingest
    from vision.synth.footage import make_demo_batch

    out.rule("巡检视频：抽帧 → 检测 → 跟踪 → 定位 → 观测")
    folder = settings.home() / "demo" / "patrol-batch"
    if not (folder / ".complete").exists():
        out.print(f"渲染演示巡检视频（合成街景，20 秒，1280×720，含 GPX 轨迹）到 {folder} …")
        make_demo_batch(folder)
        (folder / ".complete").touch()
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=out) as p:
        report = ingest(folder, st, IngestOptions(), RichProgress(p))
    for note in report.notes:
        out.print(f"[yellow]注意[/]：{note}")
    obs = st.observations(report.batch_id)
    t = Table(title=f"批次 {report.batch_id}：{len(obs)} 条观测（每个物理问题一条）")
    for col in ("类别", "代码", "置信度", "帧数", "位置（WGS-84）", "误差", "证据图"):
        t.add_column(col, overflow="fold")
    for o in obs:
        t.add_row(o.label_zh or o.class_name, o.code or "—（非问题）", f"{o.confidence:.2f}", str(o.frames),
                  f"{o.lat:.6f},{o.lon:.6f}", f"±{o.error_m:.0f} m", Path(o.frame_uri).name if o.frame_uri else "—")
    out.print(t)
    if obs and obs[0].frame_uri:
        out.print(f"证据图（已模糊人脸）在 {Path(obs[0].frame_uri).parent}")

    from agents.batch import run_batch
    from agents.pipeline import Pipeline

    results = run_batch(Pipeline(st), report.batch_id)
    linked = [o for o in st.observations(report.batch_id, issues_only=True) if o.case_number]
    out.print(f"案件流水线：本次处理 {len(results)} 条问题观测，累计 {len(linked)} 条已立案或并入已有案件"
              f"（{', '.join(sorted({o.case_number for o in linked})) or '—'}）。")
    return report.batch_id


def close_the_loop(st, batch_id: str) -> None:
    """Approve, handle, patrol again, verify: 派遣 → 处置 → 核查 → 结案 on the demo street."""
    import json

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from agents.batch import run_batch
    from agents.pipeline import Pipeline
    from app.cli.verify import render_verifications
    from city import geo, settings
    from vision.ingest import IngestOptions, ingest
    from vision.synth.footage import DAY2_FIXED, DAY2_NOT_FIXED, make_day2_batch

    out.rule("闭环：审核 → 处置 → 复查核查 → 结案")
    pipe = Pipeline(st)
    for r in pipe.waiting():
        if (r.thread_id or "").startswith(f"obs:{batch_id}:"):
            pipe.resume(r.state.case_number, "approve", by="值班长（演示）", note="视频证据清楚，同意立案派遣")
            out.print(f"审核通过 {r.state.case_number}（{'；'.join(r.waiting.get('reasons', []))}）")

    # the departments report DAY2_FIXED repaired (they are) and DAY2_NOT_FIXED (it is not);
    # the last pothole is still being worked on
    truth = json.loads((settings.home() / "demo" / "patrol-batch" / "truth.json").read_text(encoding="utf-8"))["objects"]
    reported = DAY2_FIXED | DAY2_NOT_FIXED
    for o in st.observations(batch_id, issues_only=True):
        near = min(range(len(truth)), key=lambda i: geo.haversine_m(o.lat, o.lon, truth[i]["lat"], truth[i]["lon"]))
        if near not in reported or not o.case_number:
            continue
        case = st.get(o.case_number)
        if any(h.action == Action.COMPLETE.value for h in case.history):
            continue  # reported once already (a second demo run)
        who = f"{case.department_id} 处置员"
        if case.status is Status.DISPATCHED:
            st.act(case.number, Action.ACCEPT, actor=who)
        if st.get(case.number).status is Status.IN_PROGRESS:
            note = "井盖已更换" if o.class_name == "manhole_broken" else f"{o.label_zh}已处置"
            st.act(case.number, Action.COMPLETE, actor=who, note=note)
            out.print(f"{who} 报告 {case.number}（{o.label_zh}）处置完成：{note}")

    folder = settings.home() / "demo" / "patrol-day2"
    if not (folder / ".complete").exists():
        out.print(f"渲染复查巡检视频（同一街道，处置之后）到 {folder} …")
        make_day2_batch(folder, datetime.now(UTC))
        (folder / ".complete").touch()
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=out) as p:
        from app.cli.vision import RichProgress

        report = ingest(folder, st, IngestOptions(), RichProgress(p))
    run_batch(pipe, report.batch_id)
    render_verifications(st.verifications(batch_id=report.batch_id), f"复查批次 {report.batch_id} 的核查结果")
    opened = sorted({o.case_number for o in st.observations(report.batch_id, issues_only=True)
                     if o.case_number and st.get(o.case_number).external_id == f"obs:{o.id}"})
    out.print(f"复查批次新发现并立案 {len(opened)} 件：{', '.join(opened) or '—'}。"
              "核查依据与前后对比图见 [b]xunjian cases show 编号[/b]。")

    from app.cli.stats import render
    from city.stats import StatsQuery, compute

    now = datetime.now(UTC)
    render(compute(st, StatsQuery(since=now - timedelta(days=30), until=now), now=now), hot_spots=False)
