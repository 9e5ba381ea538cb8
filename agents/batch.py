"""A vision batch through the case pipeline, assembled in one place:

    START → verify → plan ─Send("case", report) × N→ case → END

``verify`` first checks the cases whose places the footage covers (核查 by
re-inspection, :mod:`vision.verify`): issues seen again fail their
verification or join their open case as evidence, places seen clear pass it;
so a still-there issue never opens a duplicate. ``plan`` turns the batch's issue observations that have no case yet into
reports; LangGraph fans them out with ``Send`` and runs at most
``max_concurrency`` at a time; ``case`` runs the case pipeline
(:mod:`agents.graph`, its own checkpointed thread per observation, keyed
``obs:<observation id>`` so a re-run finds the same case) and links the
observation to the case it opened or joined.

Across processes or nodes: ``run_batch(..., shard=(i, n))`` plans only the
observations whose id hashes to shard ``i`` of ``n`` (``xunjian pipeline run
--shard i/n`` on each node), and :func:`run_batch_workers` runs ``n`` local
processes that way (``--workers n``). ``shard_by="area"`` hashes the ~1 km block
an observation lies in instead of its id, so sightings of one place go to one
worker and workers seldom wait for each other's dedupe locks. Every worker shares the store and the
checkpointer (PostgreSQL); :meth:`agents.pipeline.Pipeline.run` locks the
thread (and the dedupe cells around the report) in the database, so two workers
on the same observation, or on two sightings of one issue, never open two cases.
"""

from __future__ import annotations

import hashlib
import math
import operator
from dataclasses import dataclass
from typing import Annotated, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel

from agents.state import Report
from city import geo
from city.cases import Evidence
from city.observations import Observation


class BatchState(BaseModel):
    batch_id: str
    verify_cases: bool = True
    shard: int = 0
    shards: int = 1
    shard_by: Literal["id", "area"] = "id"
    verified: int = 0
    reports: list[Report] = []
    results: Annotated[list[dict], operator.add] = []


class CaseTask(BaseModel):
    report: Report


@dataclass
class BatchContext:
    pipeline: object  # agents.pipeline.Pipeline (not imported here to keep the graph importable alone)


def report_of(o: Observation) -> Report:
    """What a vision observation tells the case pipeline."""
    where = f"{o.lat:.6f},{o.lon:.6f}（±{o.error_m:.0f} 米）"
    text = (f"{o.source.value}{('（' + o.platform_id + '）') if o.platform_id else ''}视频识别到{o.label_zh or o.class_name}，"
            f"位置 {where}，{o.frames} 帧可见，最高置信度 {o.confidence:.2f}；检测模型 {o.model}；"
            f"视频 {o.file} 第 {o.best_t:.1f} 秒。")
    evidence = [Evidence(kind="image", uri=uri, note=note, captured_at=o.seen_at)
                for uri, note in ((o.frame_uri, "证据帧（已模糊人脸）"), (o.crop_uri, "问题特写")) if uri]
    return Report(source=o.source, text=text, lat=o.lat, lon=o.lon, external_id=f"obs:{o.id}", error_m=o.error_m, batch_id=o.batch_id,
                  detector_code=f"{o.kind.value}:{o.code}", detector_confidence=o.confidence, evidence=evidence)


def verify(state: BatchState, runtime: Runtime[BatchContext]) -> dict:
    """核查 every case the batch's footage covers; claims the observations of issues seen again."""
    if not state.verify_cases:
        return {}
    return {"verified": verify_once(runtime.context.pipeline.store, state.batch_id)}


def verify_once(store, batch_id: str) -> int:
    """:func:`vision.verify.verify_batch` under a lock in the database: with several
    shards the first one decides, the others wait and find every case decided."""
    from city.store.db import named_locks
    from vision.verify import verify_batch

    with named_locks(store.write_engine, [f"batch:verify:{batch_id}"]):
        return len(verify_batch(store, batch_id))


def shard_of(observation_id: str, shards: int) -> int:
    """The shard (0 … shards-1) an observation belongs to: a stable hash of its id."""
    if shards <= 1:
        return 0
    return int.from_bytes(hashlib.blake2b(observation_id.encode(), digest_size=8).digest(), "big") % shards


AREA_BLOCK = 5
"""An area shard's block, in dedupe cells per side (:data:`city.geo.CELL_DEG`):
5 × 5 cells, ≈ 1.1 × 1.2 km, much wider than the 50 m a dedupe looks around."""


def shard_key(o: Observation, by: Literal["id", "area"] = "id") -> str:
    """What decides an observation's shard: its id, or the block it lies in."""
    if by == "area":
        return f"area:{math.floor((o.lat + 90) / (AREA_BLOCK * geo.CELL_DEG))}:" \
               f"{math.floor((o.lon + 180) / (AREA_BLOCK * geo.CELL_DEG_LON))}"
    return o.id


def plan(state: BatchState, runtime: Runtime[BatchContext]) -> dict:
    store = runtime.context.pipeline.store
    todo = [o for o in store.observations(state.batch_id, issues_only=True)
            if not o.case_number and shard_of(shard_key(o, state.shard_by), state.shards) == state.shard]
    return {"reports": [report_of(o) for o in todo]}


def fan_out(state: BatchState) -> list[Send] | str:
    return [Send("case", CaseTask(report=r)) for r in state.reports] or "done"


def case(task: CaseTask, runtime: Runtime[BatchContext]) -> dict:
    pipeline = runtime.context.pipeline
    result = pipeline.run(task.report)
    st = result.state
    number = st.duplicate_of if st.outcome == "attached" else st.case_number
    obs_id = task.report.external_id.removeprefix("obs:")
    if number:
        pipeline.store.link_observation(obs_id, number)
    return {"results": [{"observation": obs_id, "case": number, "outcome": st.outcome,
                         "waiting": bool(result.waiting), "code": st.triage.code if st.triage else None}]}


def done(state: BatchState) -> dict:
    return {}


def build():
    g = StateGraph(BatchState, context_schema=BatchContext)
    g.add_node("verify", verify)
    g.add_node("plan", plan)
    g.add_node("case", case)
    g.add_node("done", done)
    g.add_edge(START, "verify")
    g.add_edge("verify", "plan")
    g.add_conditional_edges("plan", fan_out, ["case", "done"])
    g.add_edge("case", END)
    g.add_edge("done", END)
    return g.compile(name="batch_pipeline")


#: For LangGraph's developer tools (langgraph.json).
graph = build()


def run_batch(pipeline, batch_id: str, *, max_concurrency: int = 4, verify: bool = True,
              shard: tuple[int, int] = (0, 1), shard_by: Literal["id", "area"] = "id") -> list[dict]:
    """核查 the cases the batch covers (unless ``verify`` is False; decisions in
    ``store.verifications(batch_id=...)``), then run every issue observation of
    ``batch_id`` without a case through the case pipeline, at most
    ``max_concurrency`` at a time; returns one result per observation handled
    (empty when everything already has a case). ``shard=(i, n)``: only the
    observations of shard ``i`` of ``n`` (:func:`shard_of` of :func:`shard_key`
    by ``shard_by``: the observation's id, or its ~1 km block)."""
    i, n = shard
    if n < 1 or not 0 <= i < n:
        from city.errors import InvalidInput

        raise InvalidInput(f"shard {i}/{n}: expected 0 <= i < n")
    pipeline.store.batch(batch_id)  # NotFound with a hint for an unknown batch
    out = graph.invoke(BatchState(batch_id=batch_id, verify_cases=verify, shard=i, shards=n, shard_by=shard_by),
                       {"max_concurrency": max_concurrency}, context=BatchContext(pipeline=pipeline))
    return sorted(out["results"], key=lambda r: r["observation"])


def _worker(url: str, city_folder: str, llm_config, batch_id: str, shard: tuple[int, int], max_concurrency: int,
            shard_by: str = "id") -> list[dict]:
    """One process of :func:`run_batch_workers`: its own store, pipeline and pools."""
    from agents.context import Context
    from agents.llm import LLMClient, SqlCallLog
    from agents.pipeline import Pipeline
    from city.bundle import load_city
    from city.store import Store

    store = Store(url, load_city(city_folder))
    try:
        pipe = Pipeline(store, Context.default(store, llm=LLMClient(llm_config, log=SqlCallLog(store))))
        return run_batch(pipe, batch_id, max_concurrency=max_concurrency, verify=False, shard=shard, shard_by=shard_by)
    finally:
        store.close()


def run_batch_workers(pipeline, batch_id: str, *, workers: int, max_concurrency: int = 4, verify: bool = True,
                      shard_by: Literal["id", "area"] = "id") -> list[dict]:
    """:func:`run_batch` over ``workers`` local processes (spawned, each shard
    ``i/workers`` with ``max_concurrency`` at a time), after the 核查 done once
    here; the same results as one process. ``pipeline`` gives the store's URL and
    the LLM settings the workers use."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if workers <= 1:
        return run_batch(pipeline, batch_id, max_concurrency=max_concurrency, verify=verify)
    store = pipeline.store
    store.batch(batch_id)
    if verify:
        verify_once(store, batch_id)
    url = store.write_engine.url.render_as_string(hide_password=False)
    config = pipeline.context.llm.config
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
        futures = [ex.submit(_worker, url, str(store.city.folder), config, batch_id, (i, workers), max_concurrency, shard_by)
                   for i in range(workers)]
        results = [r for f in futures for r in f.result()]
    return sorted(results, key=lambda r: r["observation"])
