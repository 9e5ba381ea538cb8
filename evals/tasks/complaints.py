"""Eval task ``complaints``: real citizen complaints without our labels.

The suite's datasets are the shared ``complaints/*.jsonl`` files (TipDM 2020,
Fuzhou 12345; read-only reference data, never copied into the repository). For up
to ``max_items`` texts (taken in turn from each file) the pipeline's own
``intake → triage`` nodes run offline and, when the backend is an LLM, on that
backend too; what can be measured without labels: ``coverage`` (a code was
given), ``abstention_rate``, ``mean_confidence``, ``injection_flag_rate`` and,
with ``compare_backend: offline`` on an LLM backend, ``agreement`` (same code).

``tipdm2020_fj2_sample_labelled.jsonl`` carries TipDM's first-level labels
(城乡建设, 环境保护, 交通运输, 劳动和社会保障, 教育文体, 卫生计生, 商贸旅游). They
are not our catalogue and say nothing about the right code; the honest use is
the coverage per label (city-management labels should be covered far more often
than 教育文体 or 卫生计生), reported as a table and two coverage metrics.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agents.llm import LLMClient, MemoryCallLog
from evals.backends import backend_config
from evals.results import Metric, ReportTable, Result, RunOptions, TaskRun

METRICS: dict[str, Metric] = {
    "coverage": Metric(label="给出类别的比例"),
    "abstention_rate": Metric(label="拒答（未能归类）比例", higher_is_better=False),
    "mean_confidence": Metric(label="平均置信度（已归类）"),
    "injection_flag_rate": Metric(label="被标记为注入的比例（真实投诉，应接近 0）", higher_is_better=False),
    "agreement": Metric(label="与对照后端类别一致率"),
    "coverage_city_labels": Metric(label="覆盖率：TipDM 城乡建设/环境保护/交通运输"),
    "coverage_other_labels": Metric(label="覆盖率：TipDM 其他一级标签（非城市管理为主）", higher_is_better=False),
}

CITY_LABELS = {"城乡建设", "环境保护", "交通运输"}
LABELLED_PREFIX = "tipdm2020_fj2"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_items: int = Field(default=500, ge=1)
    compare_backend: str | None = None  # e.g. "offline" while opts.backend is an LLM
    max_chars: int = Field(default=2000, ge=50)


@lru_cache(maxsize=1)
def _graph():
    from langgraph.graph import END, START, StateGraph

    from agents import nodes
    from agents.context import Context
    from agents.state import PipelineState

    g = StateGraph(PipelineState, context_schema=Context)
    g.add_node("intake", nodes.intake)
    g.add_node("triage", nodes.triage)
    g.add_edge(START, "intake")
    g.add_edge("intake", "triage")
    g.add_edge("triage", END)
    return g.compile(name="eval_complaints")


def load_texts(paths: list[Path], max_items: int, max_chars: int = 2000) -> list[dict]:
    """Up to ``max_items`` complaints, an equal share from each file, evenly spaced through
    it (the files are sorted by label or date): {id, text, label, file}. Labels are kept
    only from the TipDM labelled sample (the others' ``label`` is a channel: 投诉/咨询)."""
    per_file = []
    for p in paths:
        rows = []
        with p.open(encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                d = json.loads(line)
                text = "。".join(x for x in (d.get("title"), d.get("text")) if x).strip()
                if text:
                    label = d.get("label") if p.name.startswith(LABELLED_PREFIX) else None
                    rows.append({"id": str(d.get("id")), "text": text[:max_chars], "label": label, "file": p.name})
        per_file.append(rows)
    out = []
    left, files_left = max_items, len(per_file)
    for rows in sorted(per_file, key=len):  # small files first: what they cannot use goes to the others
        k = min(len(rows), left // files_left if files_left else 0)
        out += [rows[int(j * len(rows) / k)] for j in range(k)] if k else []
        left -= k
        files_left -= 1
    return out


def _triage(text: str, ctx, thread: str) -> dict:
    from agents.state import PipelineState, Report
    from city.catalogue import Source

    st = PipelineState.model_validate(_graph().invoke(PipelineState(report=Report(source=Source.CITIZEN, text=text)),
                                                      {"configurable": {"thread_id": thread}}, context=ctx))
    t = st.triage
    return {"code": t.code, "name": t.name, "confidence": t.confidence, "policy": t.policy,
            "injection_flags": st.injection_flags}


def run(suite, opts: RunOptions) -> TaskRun:
    from agents.context import Context
    from city.bundle import load_city

    o = Options.model_validate(opts.options or {})
    city = opts.city or load_city()
    paths = [p for p in opts.datasets if p.suffix == ".jsonl"]
    notes = []
    missing = [p for p in paths if not p.exists()]
    if missing:
        notes.append("数据文件不存在，已跳过：" + "、".join(str(p) for p in missing))
    paths = [p for p in paths if p.exists()]
    n = min(o.max_items, opts.limit) if opts.limit else o.max_items
    rows = load_texts(paths, n, o.max_chars)
    compare = o.compare_backend if o.compare_backend and o.compare_backend != opts.backend else None
    log = MemoryCallLog()
    results = []
    with backend_config(opts.backend, opts.llm_config) as cfg:
        ctx = Context(city=city, store=None, llm=LLMClient(cfg, log=log))
        cmp_ctx = None
        if compare:
            if compare != "offline":
                notes.append(f"compare_backend {compare!r}：只支持 offline，已忽略")
            else:
                from agents.config import LLMConfig

                cmp_ctx = Context(city=city, store=None, llm=LLMClient(LLMConfig(backend="offline")))
        for i, row in enumerate(rows, 1):
            thread = f"eval:{opts.run_id}:{row['id']}"
            t0 = time.perf_counter()
            error, out = None, {}
            try:
                out = _triage(row["text"], ctx, thread)
                if cmp_ctx is not None:
                    out["compare"] = _triage(row["text"], cmp_ctx, thread + ":cmp")
            except Exception as e:  # noqa: BLE001 - one broken item must not stop the run
                error = f"{type(e).__name__}: {e}"[:500]
            ms = (time.perf_counter() - t0) * 1000
            calls = [c for c in log.calls if c.case_ref and c.case_ref.startswith(thread)]
            agree = None if "compare" not in out else out["compare"]["code"] == out["code"]
            flags = {"covered": out.get("code") is not None if not error else None,
                     "injection": bool(out.get("injection_flags")) if not error else None, "agree": agree}
            results.append(Result(
                item_id=row["id"], text=row["text"][:500], tags=[row["file"].removesuffix(".jsonl"),
                                                                 *([f"label:{row['label']}"] if row["label"] else [])],
                expected={"label": row["label"]}, output=out, ok=error is None and out.get("code") is not None,
                flags=flags, badness=1.0 - (out.get("confidence") or 0.0) if not error else 10.0,
                expected_summary=f"（无类别标签）{row['label'] or ''}",
                output_summary=f"出错：{error}" if error else
                f"{out.get('code') or '未能归类'} {out.get('name') or ''}（{out.get('confidence', 0):.2f}）",
                latency_ms=round(ms, 2), prompt_tokens=sum(c.prompt_tokens or 0 for c in calls),
                completion_tokens=sum(c.completion_tokens or 0 for c in calls), error=error))
            if opts.progress:
                opts.progress(i, len(rows), row["id"])
        model = cfg.model if cfg.enabled else None
    if not rows:
        notes.append("没有可用的投诉文本（共享数据集不存在？）")
    return TaskRun(results=results, model=model, notes=notes, extra={"files": [p.name for p in paths]})


def _share(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return sum(bool(v) for v in vals) / len(vals) if vals else None


def compute(results: list[Result], extra: dict) -> dict[str, float | None]:
    ok = [r for r in results if not r.error]
    covered = [r.flags.get("covered") for r in ok]
    confs = [r.output.get("confidence") for r in ok if r.output.get("code")]
    labelled = [r for r in ok if r.expected.get("label")]
    return {
        "coverage": _share(covered),
        "abstention_rate": None if not ok else 1 - _share(covered),
        "mean_confidence": sum(confs) / len(confs) if confs else None,
        "injection_flag_rate": _share([r.flags.get("injection") for r in ok]),
        "agreement": _share([r.flags.get("agree") for r in ok]),
        "coverage_city_labels": _share([r.flags.get("covered") for r in labelled if r.expected["label"] in CITY_LABELS]),
        "coverage_other_labels": _share([r.flags.get("covered") for r in labelled
                                         if r.expected["label"] not in CITY_LABELS]),
    }


def tables(results: list[Result], extra: dict) -> list[ReportTable]:
    ok = [r for r in results if not r.error]
    counts = Counter((r.output.get("code"), r.output.get("name")) for r in ok if r.output.get("code"))
    out = [ReportTable("预测最多的类别", ["编码", "名称", "条数", "占比"],
                       [[c, n or "", str(k), f"{k / len(ok):.1%}"] for (c, n), k in counts.most_common(15)])] if ok else []
    by_label: dict[str, list[Result]] = {}
    for r in ok:
        if r.expected.get("label"):
            by_label.setdefault(r.expected["label"], []).append(r)
    if by_label:
        out.append(ReportTable("按原数据集一级标签的覆盖率", ["标签", "条数", "覆盖率"],
                               [[lab, str(len(rs)), f"{_share([r.flags.get('covered') for r in rs]):.1%}"]
                                for lab, rs in sorted(by_label.items(), key=lambda x: -len(x[1]))]))
    by_file: dict[str, list[Result]] = {}
    for r in ok:
        by_file.setdefault(r.tags[0] if r.tags else "?", []).append(r)
    out.append(ReportTable("按文件", ["文件", "条数", "覆盖率", "注入标记"],
                           [[f, str(len(rs)), f"{_share([r.flags.get('covered') for r in rs]):.1%}",
                             str(sum(bool(r.flags.get("injection")) for r in rs))] for f, rs in by_file.items()]))
    return out
