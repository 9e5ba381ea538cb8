"""The ``triage`` and ``route`` tasks: a citizen or patrol text → catalogue code,
urgency and department, on the team-written labelled items (``evals/data``).

Each item goes through ``agents.nodes.intake → triage → route`` (the case
pipeline's own node functions in a small LangGraph graph, without dedupe, the
store or the drafts: an eval item must never be attached as a duplicate of an
earlier one, and nothing needs writing), then the route of the *expected* code
(``route`` alone), which measures the rules apart from the triage. With an LLM
backend the nodes call it exactly as in production; its calls are logged in
memory per item (case_ref = the item's thread id) for the tokens.

An expected code of null means "not a city-management issue": the right
answer is to abstain. An expected code's ``alternatives`` count as right.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from functools import lru_cache

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

from agents import nodes
from agents.context import Context
from agents.llm import LLMClient, MemoryCallLog
from agents.state import PipelineState, Triage
from evals.backends import backend_config
from evals.dataset import TriageItem, load_items
from evals.results import Metric, Plot, ReportTable, Result, RunOptions, TaskRun

NONE_LABEL = "（无）"  # the class "not a city issue / abstained" in F1 and the confusion matrix


class ItemOutput(BaseModel):
    """What the system decided for one item."""

    code: str | None = None
    kind: str | None = None
    name: str | None = None
    confidence: float | None = None
    policy: str | None = None
    candidates: list[str] = []  # codes, best first
    urgency: str | None = None
    department_id: str | None = None  # end to end (None when triage abstained)
    no_owner: bool | None = None
    principle: str | None = None
    department_given_code: str | None = None  # the route with the expected code
    no_owner_given_code: bool | None = None
    error: str | None = None


def score(expected: dict, output: ItemOutput) -> dict[str, bool | None]:
    """The correctness flags of one output against its label (``evals.dataset.Expected`` as a dict)."""
    gold, alts = expected.get("code"), set(expected.get("alternatives") or [])

    def accepts(code: str | None) -> bool:
        return code == gold or (code is not None and code in alts)

    flags: dict[str, bool | None] = {"code_ok": accepts(output.code)}
    flags["top3_ok"] = flags["code_ok"] if gold is None else any(accepts(c) for c in output.candidates[:3])
    flags["urgency_ok"] = None if expected.get("urgency") is None else output.urgency == expected["urgency"]
    dept = expected.get("department_id")
    flags["dept_ok"] = None if dept is None else output.department_id == dept
    flags["dept_given_code_ok"] = None if dept is None else output.department_given_code == dept
    return flags


def result_of(item_id: str, text: str, tags: list[str], expected: dict, out: ItemOutput, **cost) -> Result:
    flags = score(expected, out)
    e = expected
    return Result(
        item_id=item_id, text=text, tags=tags, expected=expected, output=out.model_dump(), ok=bool(flags["code_ok"]),
        flags=flags, badness=(0 if flags["code_ok"] else 1 + (out.confidence or 0)) + (0.5 if flags["dept_ok"] is False else 0),
        expected_summary=f"类别 {e.get('code') or '（非城市管理）'}"
                         f"{'（或 ' + '/'.join(e['alternatives']) + '）' if e.get('alternatives') else ''}，"
                         f"部门 {e.get('department_id') or '—'}，{e.get('urgency') or ''}",
        output_summary=f"类别 {out.code or '（拒答）'} {out.name or ''}（{out.confidence or 0:.2f}，{out.policy}），"
                       f"候选 {', '.join(out.candidates[:3])}，部门 {out.department_id or '—'}，{out.urgency or ''}"
                       + (f"；错误：{out.error}" if out.error else ""),
        error=out.error, **cost,
    )


# -- metrics --------------------------------------------------------------------------


def _share(flags: list) -> float | None:
    return sum(bool(f) for f in flags) / len(flags) if flags else None


def gold_label(r: Result) -> str:
    return r.expected.get("code") or NONE_LABEL


def pred_label(r: Result) -> str:
    """The predicted code, counted as the gold code when it is an accepted alternative."""
    return gold_label(r) if r.flags.get("code_ok") else r.output.get("code") or NONE_LABEL


def _flag(name: str) -> Callable[[list[Result]], float | None]:
    return lambda rs: _share([r.flags[name] for r in rs if r.flags.get(name) is not None])


def macro_f1(rs: list[Result]) -> float | None:
    """F1 per code (abstention is the class :data:`NONE_LABEL`), averaged over every
    code that is expected or predicted."""
    if not rs:
        return None
    tp, fp, fn = Counter(), Counter(), Counter()
    for r in rs:
        g, p = gold_label(r), pred_label(r)
        if g == p:
            tp[g] += 1
        else:
            fp[p] += 1
            fn[g] += 1
    labels = set(tp) | set(fp) | set(fn)
    return sum(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) for c in labels) / len(labels)


def abstain_precision(rs: list[Result]) -> float | None:
    """Of the items where the system abstained, the share that are not city issues."""
    return _share([r.expected.get("code") is None for r in rs if r.output.get("code") is None])


def abstain_recall(rs: list[Result]) -> float | None:
    """Of the items that are not city issues, the share where the system abstained."""
    return _share([r.output.get("code") is None for r in rs if r.expected.get("code") is None])


def no_owner_acc(rs: list[Result]) -> float | None:
    """Of the 无责任主体 items, the share routed (given the code) as 无责任主体 to the expected coordinator."""
    return _share([bool(r.output.get("no_owner_given_code")) and bool(r.flags.get("dept_given_code_ok"))
                   for r in rs if r.expected.get("no_owner")])


FUNCTIONS: dict[str, Callable[[list[Result]], float | None]] = {
    "top1": _flag("code_ok"), "top3": _flag("top3_ok"), "macro_f1": macro_f1, "urgency_acc": _flag("urgency_ok"),
    "abstain_precision": abstain_precision, "abstain_recall": abstain_recall,
    "dept_acc": _flag("dept_ok"), "dept_acc_given_code": _flag("dept_given_code_ok"), "no_owner_acc": no_owner_acc,
}

METRICS: dict[str, Metric] = {
    "top1": Metric(label="类别准确率 top-1"), "top3": Metric(label="类别准确率 top-3"),
    "macro_f1": Metric(label="宏平均 F1（按类别）"), "urgency_acc": Metric(label="紧急程度准确率"),
    "abstain_precision": Metric(label="拒答精确率"), "abstain_recall": Metric(label="拒答召回率（非城市管理问题）"),
    "dept_acc": Metric(label="部门准确率（端到端）"), "dept_acc_given_code": Metric(label="部门准确率（给定正确类别）"),
    "no_owner_acc": Metric(label="无责任主体处理准确率"),
}


def compute(results: list[Result], extra: dict | None = None) -> dict[str, float | None]:
    """Every metric over the items."""
    return {name: fn(results) for name, fn in FUNCTIONS.items()}


def by_tag(results: list[Result], metric: str = "top1") -> dict[str, tuple[int, float | None]]:
    """(n, metric) per tag, for the breakdown tables."""
    tags = sorted({t for r in results for t in r.tags})
    return {t: (len(sub), FUNCTIONS[metric](sub)) for t in tags for sub in [[r for r in results if t in r.tags]]}


def confusion(results: list[Result], top: int = 12) -> tuple[list[str], list[list[int]]]:
    """The confusion matrix of the ``top`` most frequent expected codes (rows: expected,
    columns: predicted); every other code is pooled as ``其他``."""
    common = [c for c, _ in Counter(gold_label(r) for r in results).most_common(top)]
    labels = [*common, "其他"]

    def idx(c: str) -> int:
        return common.index(c) if c in common else len(common)

    m = [[0] * len(labels) for _ in labels]
    for r in results:
        m[idx(gold_label(r))][idx(pred_label(r))] += 1
    return labels, m


# -- report ---------------------------------------------------------------------------


def plots(results: list[Result], extra: dict | None = None) -> list[Plot]:
    from evals.plots import confusion_png

    labels, m = confusion(results)
    ascii_labels = ["none" if lab == NONE_LABEL else "other" if lab == "其他" else lab for lab in labels]
    return [Plot("混淆矩阵（最常见类别）", confusion_png(ascii_labels, m))]


def tables(results: list[Result], extra: dict | None = None) -> list[ReportTable]:
    rows = [[t, str(n), "—" if v is None else f"{v:.3f}"] for t, (n, v) in by_tag(results).items()]
    return [ReportTable("按标签（top-1）", ["标签", "条目", "top-1"], rows)] if rows else []


# -- running --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _graphs():
    """(intake → triage → route, route alone), compiled without a checkpointer."""
    g = StateGraph(PipelineState, context_schema=Context)
    g.add_node("intake", nodes.intake)
    g.add_node("triage", nodes.triage)
    g.add_node("route", nodes.route)
    g.add_edge(START, "intake")
    g.add_edge("intake", "triage")
    g.add_conditional_edges("triage", lambda s: "route" if s.triage and s.triage.code else END, ["route", END])
    g.add_edge("route", END)
    r = StateGraph(PipelineState, context_schema=Context)
    r.add_node("route", nodes.route)
    r.add_edge(START, "route")
    r.add_edge("route", END)
    return g.compile(name="eval_triage_route"), r.compile(name="eval_route")


def evaluate_item(item: TriageItem, ctx: Context, log: MemoryCallLog, run_id: str) -> Result:
    """One item through triage and route, then the route of the expected code; scored."""
    full, route_only = _graphs()
    thread = f"eval:{run_id}:{item.id}"
    exp = item.expected
    t0 = time.perf_counter()
    out = ItemOutput()
    try:
        st = PipelineState.model_validate(full.invoke(PipelineState(report=item.report()),
                                                      {"configurable": {"thread_id": thread}}, context=ctx))
        t, d = st.triage, st.route
        out = ItemOutput(code=t.code, kind=t.kind, name=t.name, confidence=t.confidence, policy=t.policy,
                         candidates=[c.code for c in t.candidates], urgency=t.urgency,
                         department_id=d and d.department_id, no_owner=d and d.no_owner, principle=d and d.principle)
        if exp.code is not None:
            entry = ctx.city.catalogue.get(exp.code, exp.kind)
            gold = Triage(code=exp.code, kind=exp.kind.value, name=entry.name, confidence=1.0, urgency=exp.urgency.value,
                          risk_level=entry.risk_level.value, policy="offline")
            given = PipelineState.model_validate(route_only.invoke(
                PipelineState(report=item.report(), triage=gold), {"configurable": {"thread_id": thread + ":given"}},
                context=ctx)).route
            out.department_given_code, out.no_owner_given_code = given.department_id, given.no_owner
    except Exception as e:  # noqa: BLE001 - one broken item must not stop the run: it scores as wrong and says why
        out.error = f"{type(e).__name__}: {e}"[:500]
    ms = (time.perf_counter() - t0) * 1000
    calls = [c for c in log.calls if c.case_ref and c.case_ref.startswith(thread)]
    return result_of(item.id, item.text, item.tags, exp.model_dump(mode="json"), out, latency_ms=round(ms, 2),
                     prompt_tokens=sum(c.prompt_tokens or 0 for c in calls),
                     completion_tokens=sum(c.completion_tokens or 0 for c in calls))


def load_suite_items(opts: RunOptions) -> list[TriageItem]:
    items = [it for p in opts.datasets for it in load_items(p)]
    return items[:opts.limit] if opts.limit else items


def run(suite, opts: RunOptions) -> TaskRun:
    """Every item (the first ``opts.limit``) on the backend."""
    from city.bundle import load_city

    items = load_suite_items(opts)
    log = MemoryCallLog()
    with backend_config(opts.backend, opts.llm_config) as cfg:
        ctx = Context(city=opts.city or load_city(), store=None, llm=LLMClient(cfg, log=log))  # no store needed
        results = []
        for n, it in enumerate(items, 1):
            results.append(evaluate_item(it, ctx, log, opts.run_id))
            if opts.progress:
                opts.progress(n, len(items), it.id)
    return TaskRun(results=results, model=cfg.model if cfg.enabled else None)
