"""Running a suite: every item through the case pipeline's own triage and route nodes.

The items go through ``agents.nodes.intake → triage → route`` (the same node
functions as the case pipeline, in a small LangGraph graph without dedupe, the
store or the drafts: an eval item must never be attached as a duplicate of an
earlier item, and nothing needs to be written). The route is also taken with the
expected code (``route`` node alone), which measures the rules apart from the
triage. With an LLM backend the nodes call it exactly as in production; its calls
are logged in memory per item (case_ref = the item's thread id) for the tokens.

Backends: ``offline`` (no LLM), ``local`` (the embedded llama.cpp model, started
for the run), ``openai:MODEL`` (the configured OpenAI-compatible endpoint,
``xunjian llm`` settings, with that model).
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from langgraph.graph import END, START, StateGraph

from agents import nodes
from agents.config import LLMConfig
from agents.context import Context, llm_endpoint
from agents.llm import LLMClient, MemoryCallLog
from agents.state import PipelineState, Triage
from city import settings
from city.bundle import CityData, load_city
from city.errors import InvalidInput
from evals.dataset import TriageItem, load_items
from evals.metrics import ItemOutput, ItemResult, compute, score
from evals.storage import Run, RunInfo
from evals.suites import Suite

REPO = Path(__file__).resolve().parent.parent

Progress = Callable[[int, int, str], None]  # (done, total, item id)


# -- versions -------------------------------------------------------------------------


def _hash_files(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def prompt_version() -> str:
    """A short hash of ``prompts/*.yaml``."""
    folder = REPO / "prompts"
    return _hash_files(list(folder.glob("*.yaml")), folder)


def rules_version() -> str:
    """A short hash of every file of the city data (catalogue, departments, rules, jurisdiction)."""
    folder = settings.city_data_dir()
    return _hash_files([p for p in folder.rglob("*") if p.is_file()], folder)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def new_run_id(suite: str, now: datetime | None = None) -> str:
    """``triage-20261123-2215-ab12``: the suite, the local time, 4 random hex digits."""
    now = now or datetime.now()
    return f"{suite}-{now:%Y%m%d-%H%M}-{secrets.token_hex(2)}"


# -- backends -------------------------------------------------------------------------


@contextmanager
def backend_config(backend: str, config: LLMConfig | None = None) -> Iterator[LLMConfig]:
    """The LLM settings for a backend name: ``offline``, ``local`` or ``openai:MODEL``.
    ``config`` overrides the configured settings (tests: the fake server)."""
    if backend == "offline":
        yield LLMConfig(backend="offline")
        return
    base = config or LLMConfig.load()
    if backend == "local":
        with llm_endpoint(base.model_copy(update={"backend": "local"}) if base.backend != "local" else base) as c:
            yield c
        return
    if backend.startswith("openai:") or backend == "openai":
        model = backend.partition(":")[2] or base.model
        c = base.model_copy(update={"backend": "openai", "model": model})
        if not c.base_url:
            raise InvalidInput("openai 后端需要接口地址：设置 XUNJIAN_LLM_BASE_URL 或 XUNJIAN_LLM_PRESET（见 xunjian llm --help）")
        yield c
        return
    raise InvalidInput(f"未知后端 {backend!r}：可用 offline、local、openai:MODEL")


# -- the graphs -----------------------------------------------------------------------


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


def evaluate_item(item: TriageItem, ctx: Context, log: MemoryCallLog, run_id: str) -> ItemResult:
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
    expected = exp.model_dump(mode="json")
    return ItemResult(item_id=item.id, text=item.text, tags=item.tags, expected=expected, output=out,
                      latency_ms=round(ms, 2), prompt_tokens=sum(c.prompt_tokens or 0 for c in calls),
                      completion_tokens=sum(c.completion_tokens or 0 for c in calls), **score(expected, out))


def load_suite_items(suite: Suite, limit: int | None = None) -> list[TriageItem]:
    items = [it for p in suite.dataset_paths() for it in load_items(p)]
    return items[:limit] if limit else items


def run_suite(suite: Suite, *, backend: str = "offline", limit: int | None = None, city: CityData | None = None,
              config: LLMConfig | None = None, progress: Progress | None = None, run_id: str | None = None) -> Run:
    """Run every item of the suite (the first ``limit``) on the backend; the result is not stored yet."""
    items = load_suite_items(suite, limit)
    city = city or load_city()
    run_id = run_id or new_run_id(suite.name)
    log = MemoryCallLog()
    created = datetime.now(UTC)
    with backend_config(backend, config) as cfg:
        ctx = Context(city=city, store=None, llm=LLMClient(cfg, log=log))  # the eval graphs never use the store
        t0 = time.perf_counter()
        results = []
        for n, it in enumerate(items, 1):
            results.append(evaluate_item(it, ctx, log, run_id))
            if progress:
                progress(n, len(items), it.id)
        seconds = time.perf_counter() - t0
    info = RunInfo(
        id=run_id, suite=suite.name, task=suite.task, created_at=created, backend=backend.split(":")[0],
        model=cfg.model if cfg.enabled else None, git_commit=git_commit(), dataset_sha256=suite.dataset_sha256(),
        datasets=[str(p) for p in suite.datasets], prompt_version=prompt_version(), rules_version=rules_version(),
        metrics=compute(results), items=len(results), seconds=round(seconds, 3),
        prompt_tokens=sum(r.prompt_tokens for r in results), completion_tokens=sum(r.completion_tokens for r in results),
        item_limit=limit, suite_file=str(suite.path) if suite.path else None,
    )
    return Run(info=info, results=results)
