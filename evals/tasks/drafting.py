"""Eval task ``drafting``: the drafted 案卷 and the replies to the citizen.

Items: the labelled cases of ``evals/data/triage_route.jsonl`` (the suite's
datasets) that have a code. Each is built as the pipeline would — triaged with the
expected code, routed (the pipeline's own ``route`` node), opened in a throwaway
SQLite store and drafted (the ``draft_record`` and ``draft_reply`` nodes) — and
the closure reply is drafted for citizen sources. The drafts are checked
programmatically (:func:`check_record`, :func:`check_reply_text`).

Options (the suite's ``options:``):

- ``official_replies``: a dataset (``shared:complaints/tipdm2020_fj4_replies.jsonl``)
  of real complaints with the government's official reply; for ``official_n`` of
  them our ack reply (offline triage, route, draft) is compared with the official
  one: length ratio, the share of the official reply's politeness/format markers
  we also use, and how many of the citizen's points each reply mentions. Skipped
  with a note when the file is absent.
- ``judge``: with an LLM backend, the model grades each ack reply on a short
  rubric (``judge_score``, 0–1); offline it is None.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import prompts
from agents.llm import LLMClient, MemoryCallLog
from city.cases import mask_text
from evals.backends import backend_config
from evals.results import Metric, ReportTable, Result, RunOptions, TaskRun

METRICS: dict[str, Metric] = {
    "drafting_ok": Metric(label="案卷与回复全部检查通过"),
    "record_complete": Metric(label="案卷必填字段齐全"),
    "record_consistent": Metric(label="案卷与输入一致（地点、时间、部门、类别）"),
    "reply_ok": Metric(label="回复全部检查通过"),
    "reply_has_number": Metric(label="回复含案件编号"),
    "reply_time_limit": Metric(label="受理回复写明目录时限"),
    "reply_polite": Metric(label="回复含礼貌用语"),
    "reply_no_overpromise": Metric(label="回复无超规定承诺"),
    "reply_no_pii": Metric(label="回复无未脱敏个人信息"),
    "reply_length": Metric(label="回复长度在范围内"),
    "official_len_ratio": Metric(label="回复长度 / 官方回复长度（均值，可大于 1）"),
    "official_marker_overlap": Metric(label="官方回复礼貌/格式标记被我们覆盖的比例"),
    "point_coverage_ours": Metric(label="市民诉求要点在我们回复中的覆盖率"),
    "point_coverage_official": Metric(label="市民诉求要点在官方回复中的覆盖率（仅目录同义词与地名）"),
    "reply_dates_local": Metric(label="回复中的日期为本地日期（受理、办结）"),
    "judge_score": Metric(label="LLM 评分（0–1）"),
}

REPLY_CHECKS = ["reply_has_number", "reply_time_limit", "reply_polite", "reply_no_overpromise", "reply_no_pii",
                "reply_length"]
RECORD_FIELDS = ["number", "source", "code", "kind", "name", "description", "filing_basis", "department_id",
                 "department_name", "time_limit", "deadline_text", "urgency", "risk_level", "received_at"]
LOCATED_FIELDS = ["grid_id", "street_name", "district_name"]  # required when the report has coordinates
REPLY_MIN_CHARS = 30
POLITE_GREETING = ("您好",)
POLITE_THANKS = ("感谢", "谢谢")
#: Markers of an official reply's politeness and format (checked in both replies).
OFFICIAL_MARKERS = ["您好", "感谢", "谢谢", "支持", "理解", "经核实", "已转", "转交", "受理", "办理", "联系电话",
                    "咨询电话", "回复如下", "高度重视", "调查处理", "反映的", "现场", "编号"]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    official_replies: str | None = None  # resolved by the runner; the dataset path is looked up in opts.datasets
    official_n: int = Field(default=100, ge=0)
    judge: bool = True
    closure: bool = True


def tmp_store(city, folder: str):
    from city.store import Store

    return Store(f"sqlite:///{folder}/eval.db", city)


# -- the checks -------------------------------------------------------------------------------

_PLACE = re.compile(r"[\u4e00-\u9fff]{1,10}?(?:大道|路|街|巷|道|广场|桥|区|县|镇|乡|村|社区|小区|公园)")
_TIME = re.compile(r"\d{4}-\d{1,2}-\d{1,2}(?:\s+\d{1,2}:\d{2})?|\d{1,2}月\d{1,2}日|\d{1,2}[:：]\d{2}|[上下]午\d{1,2}点")
_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def jurisdiction_names(city) -> set[str]:
    j = city.jurisdiction
    return {a.name for group in (j.districts, j.streets, j.grids) for a in group.values()}


def _clean_places(found: list[str]) -> list[str]:
    return [p for p in found if len(p) >= 3]


def check_record(record: dict, *, text: str, address: str, located: list[str], times: list[datetime],
                 department_id: str | None, department_name: str | None, code: str | None,
                 known_places: set[str] = frozenset(), lat: float | None = None,
                 vocabulary: list[str] = ()) -> dict[str, object]:
    """The record's checks: ``complete`` (missing fields), ``places`` (invented places),
    ``times`` (invented times), ``department``, ``code``. ``located``: the names the
    jurisdiction gives the coordinates; ``times``: the case's own times."""
    need = RECORD_FIELDS + (LOCATED_FIELDS if lat is not None else []) + (["address"] if address else [])
    missing = [f for f in need if record.get(f) in (None, "", [])]
    source_text = f"{text} {address} {mask_text(address)} {' '.join(located)} {' '.join(vocabulary)}"
    written = " ".join(str(record.get(f) or "") for f in ("description", "address", "street_name", "district_name",
                                                        "grid_name"))
    invented_places = []
    for name in sorted(known_places):  # a jurisdiction name the input does not support
        if name in written and name not in source_text:
            invented_places.append(name)
    for p in _clean_places(_PLACE.findall(written)):
        # the regex grabs a few characters before the suffix: accept when its tail is in the input
        if p not in source_text and not any(p in n or n in p for n in located) and p not in invented_places \
                and not any(p[i:] in source_text for i in range(len(p) - 2)):
            invented_places.append(p)
    allowed_times = set()
    for t in times:
        if t is None:
            continue
        for f in (f"{t:%Y-%m-%d %H:%M}", f"{t:%Y-%m-%d}", f"{t.month}月{t.day}日", f"{t:%H:%M}"):
            allowed_times.add(f)
    invented_times = [m for m in _TIME.findall(str(record.get("description") or ""))
                      if m not in text and m not in allowed_times]
    if record.get("deadline_text"):
        invented_times += [m for m in _TIME.findall(record["deadline_text"]) if m not in allowed_times]
    dept_ok = record.get("department_id") == department_id and (
        department_name is None or record.get("department_name") == department_name)
    return {"missing": missing, "invented_places": invented_places, "invented_times": invented_times,
            "department_ok": dept_ok, "code_ok": code is None or record.get("code") == code}


_DATE = re.compile(r"(\d{1,2})月(\d{1,2})日")


def reply_dates_local(text: str, times: list[datetime], tz) -> bool:
    """Every 某月某日 in the reply is the local date (``tz``) of one of the case's times."""
    allowed = {(t.astimezone(tz).month, t.astimezone(tz).day) for t in times if t is not None}
    return all((int(m), int(d)) in allowed for m, d in _DATE.findall(text))


def check_reply_text(text: str, *, kind: Literal["ack", "closure"] = "ack", number: str | None,
                     time_limit: str | None = None, reporter_name: str | None = None,
                     reporter_phone: str | None = None, max_chars: int | None = None) -> dict[str, bool | None]:
    """One flag per reply check (None: not applicable)."""
    from agents.offline import REPLY_MAX_CHARS

    text = text or ""
    max_chars = max_chars or REPLY_MAX_CHARS
    promise = [w for w in prompts.load_lexicon().promise_words if w in text]
    pii = False
    if reporter_phone and re.sub(r"\D", "", reporter_phone) in re.sub(r"\D", "", text) and reporter_phone:
        pii = True
    if reporter_name and len(reporter_name) >= 2 and reporter_name in text:
        pii = True
    without_number = text.replace(number, " ") if number else text
    if mask_text(without_number) != without_number or _ID.search(without_number):
        pii = True
    return {
        "reply_has_number": bool(number) and number in text,
        "reply_time_limit": None if kind != "ack" or time_limit is None else time_limit in text,
        "reply_polite": any(w in text for w in POLITE_GREETING) and any(w in text for w in POLITE_THANKS),
        "reply_no_overpromise": not promise,
        "reply_no_pii": not pii,
        "reply_length": REPLY_MIN_CHARS <= len(text.strip()) <= max_chars,
    }


# -- the judge ----------------------------------------------------------------------------------


class JudgeGrade(BaseModel):
    score: int = Field(ge=1, le=5, description="1 最差，5 最好")
    reason: str = Field(default="", max_length=300)


JUDGE_RUBRIC = (
    "你是数字城管指挥中心的质检员，为一段发给市民的受理回复打分（1–5 分）。评分要点：\n"
    "1. 礼貌得体，语气诚恳；2. 写明案件编号、承办单位、处置时限和后续流程；\n"
    "3. 不作超出规定的承诺，不泄露任何个人信息；4. 简洁清楚，无多余或编造的内容。\n"
    '只输出一个 JSON 对象：{"score": 1到5的整数, "reason": "简短理由"}'
)


def judge(llm: LLMClient, reply: str, facts: str, case_ref: str) -> float | None:
    from agents.safety import quote_as_data

    messages = [{"role": "system", "content": JUDGE_RUBRIC},
                {"role": "user", "content": f"案件事实：{facts}\n\n{quote_as_data(reply, label='待评回复')}"}]
    res = llm.structured(messages, JudgeGrade, step="judge", case_ref=case_ref)
    return (res.value.score - 1) / 4 if res.ok else None


# -- running ------------------------------------------------------------------------------------

FAKE_NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇"]


def reporter_for(i: int) -> tuple[str, str]:
    return FAKE_NAMES[i % len(FAKE_NAMES)], f"139{(20000000 + i * 7919) % 100000000:08d}"


@lru_cache(maxsize=1)
def _draft_graph():
    from langgraph.graph import END, START, StateGraph

    from agents import nodes
    from agents.context import Context
    from agents.state import PipelineState

    g = StateGraph(PipelineState, context_schema=Context)
    g.add_node("route", nodes.route)
    g.add_node("draft_record", nodes.draft_record)
    g.add_node("draft_reply", nodes.draft_reply)
    g.add_edge(START, "route")
    g.add_edge("route", "draft_record")
    g.add_edge("draft_record", "draft_reply")
    g.add_edge("draft_reply", END)
    return g.compile(name="eval_drafting")


def _items(opts: RunOptions):
    from evals.dataset import load_items

    items = []
    for p in opts.datasets:
        if p.suffix == ".jsonl" and p.name.startswith("triage_route"):
            items += [it for it in load_items(p) if it.expected.code]
    return items[: opts.limit] if opts.limit else items


def evaluate_item(item, i: int, ctx, log: MemoryCallLog, opts: RunOptions, o: Options) -> Result:
    from agents.nodes import CITIZEN_SOURCES
    from agents.offline import draft_reply
    from agents.state import PipelineState, Triage

    city = ctx.city
    exp = item.expected
    name, phone = reporter_for(i)
    thread = f"eval:{opts.run_id}:{item.id}"
    t0 = time.perf_counter()
    out: dict = {}
    flags: dict[str, bool | None] = {}
    error = None
    try:
        entry = city.catalogue.get(exp.code, exp.kind)
        gold = Triage(code=exp.code, kind=exp.kind.value, name=entry.name, confidence=1.0, urgency=exp.urgency.value,
                      risk_level=entry.risk_level.value, policy="offline")
        report = item.report().model_copy(update={"reporter_name": name, "reporter_phone": phone, "external_id": thread})
        st = PipelineState.model_validate(_draft_graph().invoke(PipelineState(report=report, triage=gold),
                                                                {"configurable": {"thread_id": thread}}, context=ctx))
        case = ctx.store.get(st.case_number)
        loc = city.locate(item.lat, item.lon)
        located = [x for x in (loc.district_name, loc.street_name, loc.grid_name) if x]
        dept = city.departments.get(st.route.department_id) if st.route and st.route.department_id else None
        rec = check_record(st.record, text=item.text, address=item.address, located=located,
                           times=[case.created_at, case.deadline, st.record.get("deadline") and
                                  datetime.fromisoformat(st.record["deadline"])],
                           department_id=st.route.department_id if st.route else None,
                           department_name=dept.name if dept else None, code=exp.code,
                           known_places=jurisdiction_names(city), lat=item.lat,
                           vocabulary=[entry.name, *entry.synonyms, entry.major_name or ""])
        flags["record_complete"] = not rec["missing"]
        flags["record_consistent"] = not rec["invented_places"] and not rec["invented_times"] \
            and rec["department_ok"] and rec["code_ok"]
        time_limit = str(entry.time_limits[exp.urgency])
        replies = {}
        if st.reply:
            replies["ack"] = st.reply["text"]
        if o.closure and item.source in CITIZEN_SOURCES:
            replies["closure"] = draft_reply("closure", case, city, st.route, closed_at=datetime.now(UTC),
                                             result="已现场处置完毕").text
        reply_flags: dict[str, list[bool]] = {k: [] for k in REPLY_CHECKS}
        for kind, text in replies.items():
            for k, v in check_reply_text(text, kind=kind, number=case.number, time_limit=time_limit,
                                         reporter_name=name, reporter_phone=phone).items():
                if v is not None:
                    reply_flags[k].append(v)
        for k, vs in reply_flags.items():
            flags[k] = all(vs) if vs else None
        reply_checked = [flags[k] for k in REPLY_CHECKS if flags[k] is not None]
        closed_at = datetime.now(UTC)
        flags_dates = [reply_dates_local(t, [case.created_at, closed_at, st.record.get("deadline") and
                                             datetime.fromisoformat(st.record["deadline"])], ctx.store.tz)
                       for t in replies.values()]
        flags["reply_ok"] = all(reply_checked) if reply_checked else None
        # the internal record must not carry the reporter's contact either
        record_json = json.dumps(st.record, ensure_ascii=False)
        flags["record_no_contact"] = phone not in record_json
        out_dates = all(flags_dates) if flags_dates else None
        out = {"case_number": case.number, "department_id": st.route.department_id if st.route else None,
               "time_limit": time_limit, "record_missing": rec["missing"], "invented_places": rec["invented_places"],
               "invented_times": rec["invented_times"], "department_ok": rec["department_ok"],
               "replies": replies, "description": st.record.get("description"),
               "violations": (st.reply or {}).get("violations", []), "reply_dates_local": out_dates}
        if o.judge and ctx.llm.enabled and "ack" in replies:
            out["judge"] = judge(ctx.llm, replies["ack"], f"编号{case.number}，类别{entry.name}，承办单位"
                                 f"{dept.name if dept else ''}，时限{time_limit}", thread)
    except Exception as e:  # noqa: BLE001 - one broken item scores as wrong and says why
        error = f"{type(e).__name__}: {e}"[:500]
    ms = (time.perf_counter() - t0) * 1000
    checked = [v for k, v in flags.items() if v is not None]
    ok = error is None and bool(checked) and all(checked)
    failed = [k for k, v in flags.items() if v is False]
    calls = [c for c in log.calls if c.case_ref and c.case_ref.startswith(thread)]
    return Result(
        item_id=item.id, text=item.text, tags=item.tags, expected=exp.model_dump(mode="json"), output=out, ok=ok,
        flags=flags, badness=float(len(failed)) + (10.0 if error else 0.0),
        expected_summary=f"{exp.code} → {exp.department_id}；案卷齐全一致，回复合规",
        output_summary=("通过" if ok else "未通过：" + "、".join(failed)) if not error else f"出错：{error}",
        latency_ms=round(ms, 2), prompt_tokens=sum(c.prompt_tokens or 0 for c in calls),
        completion_tokens=sum(c.completion_tokens or 0 for c in calls), error=error,
    )


# -- the official replies ------------------------------------------------------------------------

_STOP = set("的了是我你您在和与及对把被有也都就还这那其之而并或等个们吗呢啊吧")
_CJK = re.compile(r"[\u4e00-\u9fff]+")


def complaint_points(text: str, official: str, catalogue) -> tuple[list[str], list[str]]:
    """(independent points, shared n-grams): the catalogue names/synonyms and place names
    found in the complaint; and 3–4 character n-grams of the complaint that the official
    reply repeats (at most 15, longest first, none inside another)."""
    indep: list[str] = []
    for e in catalogue:
        for s in (e.name, *e.synonyms):
            if len(s) >= 2 and s in text and s not in indep:
                indep.append(s)
    for p in _clean_places(_PLACE.findall(text)):
        if p not in indep:
            indep.append(p)
    shared: list[str] = []
    for n in (4, 3):
        for run in _CJK.findall(text):
            for i in range(len(run) - n + 1):
                g = run[i : i + n]
                if any(c in _STOP for c in g) or g in shared or any(g in s for s in shared + indep):
                    continue
                if g in official:
                    shared.append(g)
    return indep, shared[:15]


def compare_official(rows: list[dict], city, n: int) -> list[dict]:
    from agents.offline import handle_report

    out = []
    now = datetime.now(UTC)
    for i, row in enumerate(rows[:n]):
        text = f"{row.get('title') or ''}。{row.get('text') or ''}"[:8000]
        official = row.get("reply") or ""
        if not official.strip():
            continue
        number = f"{city.settings.code}-{now:%Y%m%d}-{i + 1:04d}"
        res = handle_report(text, city, number=number, received_at=now)
        ours = res.reply.text if res.reply else ""
        indep, shared = complaint_points(text, official, city.catalogue)
        points = indep + shared
        off_markers = [m for m in OFFICIAL_MARKERS if m in official]
        out.append({
            "id": row.get("id"), "len_ours": len(ours), "len_official": len(official),
            "markers_official": off_markers, "markers_shared": [m for m in off_markers if m in ours],
            "points": points, "covered_ours": [p for p in points if p in ours],
            "points_indep": indep, "covered_official": [p for p in indep if p in official],
            "code": res.triage.code,
        })
    return out


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _official_path(opts: RunOptions, o: Options) -> Path | None:
    name = Path(o.official_replies).name if o.official_replies else None
    if not name:
        return None
    for p in opts.datasets:
        if p.name == name:
            return p
    p = Path(o.official_replies)
    if o.official_replies.startswith("shared:"):
        from city import settings

        p = settings.datasets_dir() / o.official_replies.removeprefix("shared:")
    return p


def run(suite, opts: RunOptions) -> TaskRun:
    from agents.context import Context
    from city.bundle import load_city

    o = Options.model_validate(opts.options or {})
    city = opts.city or load_city()
    items = _items(opts)
    notes, extra = [], {}
    log = MemoryCallLog()
    results = []
    with backend_config(opts.backend, opts.llm_config) as cfg, tempfile.TemporaryDirectory() as tmp:
        store = tmp_store(city, tmp)
        try:
            ctx = Context(city=city, store=store, llm=LLMClient(cfg, log=log), dedupe_window_days=0)
            for n, it in enumerate(items, 1):
                results.append(evaluate_item(it, n, ctx, log, opts, o))
                if opts.progress:
                    opts.progress(n, len(items), it.id)
        finally:
            store.close()
        model = cfg.model if cfg.enabled else None
    if not (o.judge and cfg.enabled):
        notes.append("judge_score：离线后端不打分")
    path = _official_path(opts, o)
    if path is None:
        notes.append("未配置 official_replies：跳过与官方回复的对比")
    elif not path.exists():
        notes.append(f"官方回复数据 {path} 不存在：跳过与官方回复的对比")
    elif o.official_n:
        n = o.official_n if not opts.limit else min(o.official_n, opts.limit)
        extra["official"] = compare_official(_read_jsonl(path), city, n)
        notes.append(f"与官方回复对比：{len(extra['official'])} 条（{path.name}）")
    return TaskRun(results=results, extra=extra, model=model, notes=notes)


# -- metrics, tables ---------------------------------------------------------------------------


def _share(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return sum(bool(v) for v in vals) / len(vals) if vals else None


def _mean(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def compute(results: list[Result], extra: dict) -> dict[str, float | None]:
    m: dict[str, float | None] = {"drafting_ok": _share([r.ok for r in results])}
    for k in ["record_complete", "record_consistent", "reply_ok", *REPLY_CHECKS]:
        m[k] = _share([r.flags.get(k) for r in results])
    off = (extra or {}).get("official") or []
    m["official_len_ratio"] = _mean([d["len_ours"] / d["len_official"] for d in off if d["len_official"]])
    m["official_marker_overlap"] = _mean([len(d["markers_shared"]) / len(d["markers_official"])
                                         for d in off if d["markers_official"]])
    m["point_coverage_ours"] = _mean([len(d["covered_ours"]) / len(d["points"]) for d in off if d["points"]])
    m["point_coverage_official"] = _mean([len(d["covered_official"]) / len(d["points_indep"])
                                         for d in off if d["points_indep"]])
    m["reply_dates_local"] = _share([r.output.get("reply_dates_local") for r in results])
    m["judge_score"] = _mean([r.output.get("judge") for r in results])
    return m


def tables(results: list[Result], extra: dict) -> list[ReportTable]:
    out = []
    fails: dict[str, int] = {}
    for r in results:
        for k, v in r.flags.items():
            if v is False:
                fails[k] = fails.get(k, 0) + 1
    if fails:
        out.append(ReportTable("未通过的检查", ["检查", "条数"], [[k, str(v)] for k, v in sorted(fails.items())]))
    off = (extra or {}).get("official") or []
    if off:
        counts = {mk: [0, 0] for mk in OFFICIAL_MARKERS}
        for d in off:
            for mk in d["markers_official"]:
                counts[mk][0] += 1
                counts[mk][1] += mk in d["markers_shared"]
        out.append(ReportTable("官方回复标记", ["标记", "官方回复中", "我们也有"],
                               [[mk, str(a), str(b)] for mk, (a, b) in counts.items() if a]))
    return out
