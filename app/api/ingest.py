"""The ``ingest`` job (run by :mod:`app.api.worker`), queued by ``POST /api/batches``
and ``POST /api/batches/from-uploads``: it ingests the uploaded batch
(:func:`vision.ingest.ingest`) and runs it through the case pipeline
(:func:`agents.batch.run_batch`), writing its progress to the job row
(:class:`JobProgress`). Both steps are idempotent, so a re-run (a job re-queued
after a crash) duplicates nothing.

Where the footage is processed is the server's setting (:func:`engine_options`:
``xunjian serve --engine ray``, or ``XUNJIAN_INGEST_ENGINE``): the local engine
in the worker thread, or a Ray cluster; the job's progress is the same either way.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import threading
import time
from pathlib import Path

from app.api.worker import handler
from city.errors import InvalidInput, XunjianError
from city.store.jobs import Job

log = logging.getLogger("xunjian.batches")

ENGINE_ENV = "XUNJIAN_INGEST_ENGINE"


def engine_options(engine: str | None = None, address: str | None = None, workers: int | None = None) -> dict:
    """The :class:`vision.ingest.IngestOptions` fields that say where the server's
    ingest jobs run: ``engine`` (default ``$XUNJIAN_INGEST_ENGINE``, else ``local``),
    and for ``ray`` the cluster ``address`` (default ``$RAY_ADDRESS``, else a Ray
    instance started for each job) and the number of detector ``workers``."""
    engine = (engine or os.environ.get(ENGINE_ENV) or "local").strip().lower()
    if engine not in ("local", "ray"):
        raise InvalidInput(f"导入引擎应为 local 或 ray，而不是 {engine!r}（--engine 或 {ENGINE_ENV}）")
    if engine == "local":
        if address or workers:
            raise InvalidInput("--ray-address/--ray-workers 只用于 --engine ray")
        return {"engine": "local"}
    try:
        import ray  # noqa: F401
    except ImportError:
        raise InvalidInput("导入引擎 ray 需要先安装 Ray：pip install 'xunjian[ray]'") from None
    if workers is not None and workers < 1:
        raise InvalidInput(f"--ray-workers 应为正整数，而不是 {workers}")
    return {"engine": "ray", **({"address": address} if address else {}), **({"workers": workers} if workers else {})}


def _emitter(progress):
    """``progress(p, force=...)`` where the worker's callback takes ``force`` (it
    throttles the rest to a few writes a second), else ``progress(p)``."""
    try:
        takes_force = "force" in inspect.signature(progress).parameters
    except (TypeError, ValueError):
        takes_force = False
    if takes_force:
        return lambda p, force=False: progress(p, force=force)
    return lambda p, force=False: progress(p)


class JobProgress:
    """:class:`vision.ingest.Progress` → the job's progress dict."""

    def __init__(self, progress, batch_id: str, media: list[str]):
        self._emit = _emitter(progress)
        self._lock = threading.Lock()
        self.state: dict = {
            "stage": "ingest", "batch": batch_id, "files_total": len(media), "files_done": 0, "current": None,
            "files": [{"path": m, "status": "pending", "observations": 0, "error": None} for m in media],
        }

    def send(self, force: bool = False) -> None:
        with self._lock:
            snapshot = copy.deepcopy(self.state)
        self._emit(snapshot, force)

    def _entry(self, path: str) -> dict:
        for f in self.state["files"]:
            if f["path"] == path:
                return f
        f = {"path": path, "status": "pending", "observations": 0, "error": None}
        self.state["files"].append(f)
        return f

    def batch_started(self, batch_id: str, files: int) -> None:
        with self._lock:
            self.state.update(batch=batch_id, files_total=files)
        self.send(force=True)

    def file_started(self, name: str, seconds: float) -> None:
        with self._lock:
            self.state["current"] = {"name": name, "seconds": round(float(seconds), 2), "t": 0.0}
            self._entry(name)["status"] = "running"
        self.send(force=True)

    def file_advanced(self, t: float) -> None:
        with self._lock:
            if self.state["current"] is not None:
                self.state["current"]["t"] = round(float(t), 2)
        self.send()

    def file_finished(self, outcome) -> None:
        with self._lock:
            e = self._entry(outcome.path)
            e.update(status=outcome.status, observations=outcome.observations, error=outcome.error)
            self.state["files_done"] += 1
            self.state["current"] = None
        self.send(force=True)

    def pipeline(self, total: int, done: int, force: bool = False) -> None:
        with self._lock:
            self.state.update(stage="pipeline", current=None, pipeline={"total": total, "done": min(done, total)})
        self.send(force=force)


def frames(stats: dict) -> int:
    """Sampled frames of one file (a still counts as one)."""
    if "frames_kept" in stats:
        return int(stats["frames_kept"])
    return 1 if "width" in stats else 0


def _run_pipeline(services, batch_id: str, tracker: JobProgress) -> list[dict]:
    from agents.batch import run_batch

    store = services.store
    todo = {o.id for o in store.observations(batch_id, issues_only=True) if not o.case_number}
    total = len(todo)
    tracker.pipeline(total, 0, force=True)
    stop = threading.Event()

    def watch() -> None:  # the batch graph reports only at its end: count the observations linked so far
        while not stop.wait(0.5):
            try:
                done = sum(1 for o in store.observations(batch_id, issues_only=True) if o.id in todo and o.case_number)
                tracker.pipeline(total, done)
            except Exception:
                log.debug("pipeline progress", exc_info=True)

    watcher = threading.Thread(target=watch, name=f"progress-{batch_id}", daemon=True)
    watcher.start()
    try:
        return run_batch(services.pipeline, batch_id, verify=True)
    finally:
        stop.set()
        watcher.join(2)
        tracker.pipeline(total, total, force=True)


def _cases(results: list[dict]) -> dict:
    def pick(cond, key="case"):
        return list(dict.fromkeys(r[key] for r in results if cond(r) and r.get(key)))
    return {"opened": pick(lambda r: r["outcome"] == "dispatched"),
            "attached": pick(lambda r: r["outcome"] == "attached"),
            "waiting": pick(lambda r: r["waiting"] or r["outcome"] == "waiting"),
            "rejected": pick(lambda r: r["outcome"] == "rejected", "observation")}


@handler("ingest")
def run_ingest(job: Job, services, progress) -> dict:
    """Ingest an uploaded batch, then (``run_pipeline``) run it through the case pipeline."""
    from vision.ingest import IngestOptions, ingest
    from vision.manifest import load_manifest

    started = time.perf_counter()
    p = job.params
    root = Path(p["path"])
    if not root.is_dir():
        raise InvalidInput(f"上传的文件已不在服务器上（{root}），请重新上传")
    store = services.store
    manifest, _ = load_manifest(root, p.get("source"))
    tracker = JobProgress(progress, p["batch"], [s.media for s in manifest.files])
    tracker.send(force=True)
    opts = IngestOptions(source=p.get("source"), batch=p["batch"], **services.ingest_engine)
    report = ingest(root, store, opts, tracker)
    batch_id = report.batch_id
    results: list[dict] = []
    if p.get("run_pipeline", True):
        try:
            results = _run_pipeline(services, batch_id, tracker)
        except Exception as e:
            if not isinstance(e, XunjianError):
                log.exception("batch %s: the case pipeline failed", batch_id)
            why = str(e) if isinstance(e, XunjianError) else f"{type(e).__name__}: {e}"
            raise XunjianError(f"视频已导入批次 {batch_id}，但案件流程失败：{why}（重新运行任务即可，已完成的不会重复）") from e
    stats = {f.path: f.stats for f in store.batch_files(batch_id)}
    files = [{"path": f.path, "status": f.status, "observations": f.observations, "frames": frames(stats.get(f.path) or f.stats),
              "error": f.error} for f in report.files]
    return {
        "batch": batch_id,
        "files": files,
        "frames": sum(frames(s) for s in stats.values()),
        "observations": len(store.observations(batch_id)),
        "issues": len(store.observations(batch_id, issues_only=True)),
        "cases": _cases(results),
        "pipeline": bool(p.get("run_pipeline", True)),
        "verifications": [v.model_dump(mode="json") for v in store.verifications(batch_id=batch_id)],
        "errors": [{"file": f.path, "error": f.error} for f in report.files if f.status == "failed"],
        "notes": report.notes,
        "model": report.model,
        "engine": opts.engine,
        "seconds": round(time.perf_counter() - started, 2),
    }
