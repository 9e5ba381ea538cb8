#!/usr/bin/env python
"""Case pipeline benchmarks: cases/s through the LangGraph graph on the offline
policy, and, with the embedded model installed, seconds and tokens per case
per node.

    python benchmarks/bench_pipeline.py                    # offline only, ~1 min
    python benchmarks/bench_pipeline.py --local 10         # + 10 reports through the local model

What it does:

1. builds ``--cases`` realistic citizen reports (phrasings from the project's
   own lexicon, places spread over the sample jurisdiction) and sends them
   through ``Pipeline.run`` on a fresh SQLite store, once per checkpoint
   durability (``sync`` — a checkpoint after every node, the baseline — and
   ``exit``, the default), printing cases/s and the ratio;
2. runs the same number of vision observations through the batch graph
   (``agents.batch``: ``Send`` fan-out, ``max_concurrency`` 4);
3. with ``--local N``: starts the embedded llama-server (``xunjian llm
   install`` first), sends N reports, and reads the ``llm_calls`` table:
   seconds, prompt and completion tokens per case for each node.

Figures are printed, not asserted; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(highlight=False)
TEXTS = [
    "人行道上井盖破了一半，晚上走路很危险", "路边垃圾堆了好几天没人清理，味道很大", "小区门口有人摆摊卖水果，占了半条人行道",
    "马路中间有个大坑，车开过去颠得厉害", "公交站旁边垃圾桶满了溢出来", "路灯坏了一个星期了，晚上一片黑",
    "楼下烧烤店每天半夜还很吵", "绿化带里有人倒了很多建筑垃圾", "河面上漂着很多塑料瓶和泡沫", "共享单车乱停把盲道堵了",
]


def reports(n: int, seed: int = 0):
    from agents.state import Report
    from city.catalogue import Source

    rng = random.Random(seed)
    return [Report(source=Source.CITIZEN, text=rng.choice(TEXTS) + f"（第{i}号）", lat=29.56 + rng.random() * 0.035,
                   lon=106.52 + rng.random() * 0.05, external_id=f"bench-{seed}-{i}") for i in range(n)]


def offline_rate(n: int, durability: str, workdir: Path) -> float:
    from agents.pipeline import Pipeline
    from city.store import Store

    store = Store(f"sqlite:///{workdir / f'{durability}.db'}")
    pipe = Pipeline(store, durability=durability)
    pipe.run(reports(1, seed=99)[0])  # warm up (imports, caches)
    batch = reports(n)
    t0 = time.perf_counter()
    for r in batch:
        pipe.run(r)
    return n / (time.perf_counter() - t0)


def batch_rate(n: int, workdir: Path) -> float:
    from agents.batch import run_batch
    from agents.pipeline import Pipeline
    from city.observations import Batch, BatchFile, Observation
    from city.store import Store

    store = Store(f"sqlite:///{workdir / 'batch.db'}")
    now = datetime.now(timezone.utc)
    store.open_batch(Batch(id="bench", source="车巡", root="/bench", created_at=now, updated_at=now))
    rng = random.Random(1)
    classes = [("pothole", "坑槽", "06013"), ("garbage", "暴露垃圾", "06010"), ("bin_overflow", "垃圾满溢", "06042")]
    obs = []
    for i in range(n):
        name, zh, code = rng.choice(classes)
        obs.append(Observation(id=f"bench:f:{i:05d}", batch_id="bench", file="a.mp4", file_sha256="0" * 64, source="车巡",
                               class_name=name, label_zh=zh, kind="事件", code=code, confidence=0.9, mean_confidence=0.8,
                               lat=29.56 + rng.random() * 0.035, lon=106.52 + rng.random() * 0.05, error_m=4.0, frames=5,
                               first_t=i, last_t=i + 1, best_t=i + 0.5, box=(0, 0, 10, 10), model="bench@1"))
    store.finish_file(BatchFile(batch_id="bench", path="a.mp4", sha256="0" * 64, status="done", finished_at=now), obs)
    pipe = Pipeline(store)
    t0 = time.perf_counter()
    results = run_batch(pipe, "bench", max_concurrency=4)
    assert len(results) == n
    return n / (time.perf_counter() - t0)


def local_model(n: int, workdir: Path) -> None:
    from sqlalchemy import func, select

    from agents.config import LLMConfig
    from agents.context import Context, llm_endpoint
    from agents.llm import LLMClient, SqlCallLog
    from agents.pipeline import Pipeline
    from city.store import Store
    from city.store.schema import LlmCallRow

    os.environ["XUNJIAN_LLM_BACKEND"] = "local"
    store = Store(f"sqlite:///{workdir / 'local.db'}")
    with llm_endpoint(LLMConfig.load()) as config:
        pipe = Pipeline(store, Context.default(store, llm=LLMClient(config, log=SqlCallLog(store))))
        t0 = time.perf_counter()
        for r in reports(n, seed=7):
            pipe.run(r)
        wall = time.perf_counter() - t0
    with store.reading() as s:
        rows = s.execute(select(LlmCallRow.step, func.count(), func.sum(LlmCallRow.latency_ms), func.sum(LlmCallRow.prompt_tokens),
                                func.sum(LlmCallRow.completion_tokens)).group_by(LlmCallRow.step)).all()
    t = Table(title=f"local model: {n} reports, {wall / n:.1f} s per case")
    for c in ("node", "calls", "s/case", "prompt tokens/case", "completion tokens/case"):
        t.add_column(c)
    total_prompt = 0
    for step, calls, ms, pt, ct in rows:
        total_prompt += pt or 0
        t.add_row(step, str(calls), f"{(ms or 0) / 1000 / n:.2f}", f"{(pt or 0) / n:.0f}", f"{(ct or 0) / n:.0f}")
    console.print(t)
    console.print(f"prompt tokens per case, all nodes: {total_prompt / n:.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--local", type=int, default=0, help="reports to send through the embedded model (0: skip)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xj-bench-") as tmp:
        os.environ["XUNJIAN_HOME"] = tmp
        work = Path(tmp)
        sync = offline_rate(args.cases, "sync", work)
        exit_ = offline_rate(args.cases, "exit", work)
        batch = batch_rate(args.cases, work)
        t = Table(title=f"offline policy, {args.cases} cases, {os.cpu_count()} cores")
        for c in ("how", "cases/s", "vs sync"):
            t.add_column(c)
        t.add_row("Pipeline.run, checkpoint after every node (sync)", f"{sync:.1f}", "1.0×")
        t.add_row("Pipeline.run, checkpoint at exit/interrupt (default)", f"{exit_:.1f}", f"{exit_ / sync:.1f}×")
        t.add_row("batch graph (Send fan-out, max_concurrency 4)", f"{batch:.1f}", f"{batch / sync:.1f}×")
        console.print(t)
        if args.local:
            local_model(args.local, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
