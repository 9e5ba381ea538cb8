"""The Ray engine: a batch's files processed on a Ray cluster, written to the store here.

What runs where:

- **this process (the driver)** connects to the cluster (``IngestOptions.address``,
  else ``$RAY_ADDRESS``, else a Ray instance started here and stopped at the
  end), hands out the work, stitches each file's segments together
  (:func:`vision.ingest.file_found`) and writes each file to the store in one
  transaction (:func:`vision.ingest.write_file`) once all its pieces are back.
  It is the only one that touches the store: workers need neither its URL nor
  a connection.
- **workers** plan files (hash, telemetry checks, the cut into time segments),
  process segments (decode, sample, detect, track: :func:`vision.ingest.process_segment`)
  and write evidence images. They need the footage, the weights and the output
  folder at the same paths as here (a shared filesystem on a multi-node cluster).

Two ways to dispatch (``IngestOptions.dispatch``):

- ``segments`` (the default without GPUs): a pool of :class:`IngestWorker`
  actors, one per CPU (``num_cpus=1``), each loading the detector once; every
  piece of work (plan, segment, evidence) goes to the next idle actor.
- ``frames`` (the default when the cluster has GPUs): plans, segments and
  evidence are Ray tasks (``num_cpus=1``); the detector lives only in the
  actors (``num_gpus=1`` each on a GPU cluster, else one per CPU with
  ``num_cpus=0``), and segment tasks send them their sampled frames.

Faults: actors restart (``max_restarts=-1``) and retry the call they died in
(``max_task_retries``); tasks retry (``max_retries``). Pieces write nothing but
evidence images (same names, same bytes on a retry), so a retry only
recomputes; the store write of a file happens once, here, and replaces what an
earlier run left for that path. A driver killed mid-batch loses the files not
yet written (the cluster drops its actors and tasks); the next run skips the
files that are done and does the rest.

Progress: segments report the media time they reached to a
:class:`ProgressBoard` actor; the driver sums each file's segments
(:class:`vision.segments.FileMeter`) and reports through the same
:class:`vision.ingest.Progress` as the local engine, files in manifest order.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Self

import ray
from ray.exceptions import RayError, RayTaskError

from city.errors import XunjianError
from vision.ingest import (
    BatchContext,
    EvidenceJob,
    FileFound,
    FileOutcome,
    Progress,
    evidence_jobs,
    file_found,
    file_rows,
    hash_media,
    plan_file,
    process_segment,
    write_failure,
    write_file,
)
from vision.segments import FileMeter, FilePlan, Segment, SegmentResult

log = logging.getLogger(__name__)

POLL_S = 0.25
"""How often the driver looks at the progress board."""
RETRIES = 3
"""Retries of a task, or of an actor call whose actor died, before the file fails."""


@ray.remote(num_cpus=0)
class ProgressBoard:
    """Where segments say how far they got: ``(file, segment) → media time``."""

    def __init__(self):
        self.t: dict[tuple[int, int], float] = {}

    def report(self, key: tuple[int, int], t: float) -> None:
        self.t[key] = t

    def snapshot(self) -> dict[tuple[int, int], float]:
        return self.t


def _load_detector(ctx: BatchContext, threads: int | None):
    from vision.detect import load_detector

    o = ctx.opts
    device = "cuda" if ray.get_gpu_ids() else None
    return load_detector(o.weights, backend=o.backend, conf=o.conf, iou=o.iou, threads=threads, device=device)


def _plan(ctx: BatchContext, i: int) -> FilePlan:
    spec = ctx.spec(i)
    sha, error = hash_media(ctx, spec)
    if sha is None:
        return FilePlan(spec.media, None, error=error)
    return plan_file(ctx, spec, sha)


def _segment(ctx: BatchContext, i: int, plan: FilePlan, seg: Segment, detector, board) -> SegmentResult:
    def on_t(t: float) -> None:
        board.report.remote((i, seg.index), t)

    return process_segment(ctx, ctx.spec(i), plan, seg, detector, on_t)


class IngestWorker:
    """A Ray actor holding one loaded detector; it plans files, processes
    segments, writes evidence, or (``frames`` dispatch) only detects."""

    def __init__(self, ctx: BatchContext, threads: int | None):
        self.ctx = ctx
        self.detector = _load_detector(ctx, threads)

    def ready(self) -> dict:
        import os

        return {"pid": os.getpid(), "imgsz": self.detector.imgsz, "gpus": ray.get_gpu_ids()}

    def plan(self, i: int) -> FilePlan:
        return _plan(self.ctx, i)

    def segment(self, i: int, plan: FilePlan, seg: Segment, board) -> SegmentResult:
        return _segment(self.ctx, i, plan, seg, self.detector, board)

    def evidence(self, job: EvidenceJob) -> tuple[str, str]:
        return job.run()

    def detect(self, images):
        return self.detector.predict_batch(images)


_Worker = ray.remote(IngestWorker)


class RemoteDetector:
    """A detector whose model lives in an :class:`IngestWorker`: frames go there, boxes come back."""

    def __init__(self, actor, imgsz: int):
        self.actor, self.imgsz = actor, imgsz

    def __call__(self, image):
        return self.predict_batch([image])[0]

    def predict_batch(self, images):
        return ray.get(self.actor.detect.remote(list(images)))


@ray.remote(max_retries=RETRIES)
def plan_task(ctx: BatchContext, i: int) -> FilePlan:
    return _plan(ctx, i)


@ray.remote(max_retries=RETRIES)
def segment_task(ctx: BatchContext, i: int, plan: FilePlan, seg: Segment, detector, imgsz: int, board) -> SegmentResult:
    return _segment(ctx, i, plan, seg, RemoteDetector(detector, imgsz), board)


@ray.remote(max_retries=RETRIES)
def evidence_task(job: EvidenceJob) -> tuple[str, str]:
    return job.run()


# -- the driver ------------------------------------------------------------------------------


def connect(address: str | None = None) -> bool:
    """Connect to the cluster (or start a local Ray instance); True if this call did."""
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    return True


class RayEngine:
    """The cluster side of one ingest: connected (or a local Ray instance started),
    the progress board and the detector actors up and ready. Start it before the
    batch is opened, so a cluster that cannot load the model fails the ingest
    before anything is written; :meth:`close` kills the actors (and stops Ray if
    it was started here)."""

    def __init__(self, ctx: BatchContext):
        self.ctx = ctx
        self.actors: list = []
        self.board = None
        self.started_here = connect(ctx.opts.address)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        ctx = self.ctx
        t0 = time.perf_counter()
        self.board = ProgressBoard.remote()
        resources = ray.cluster_resources()
        self.cpus, gpus = max(int(resources.get("CPU", 1)), 1), int(resources.get("GPU", 0))
        dispatch = ctx.opts.dispatch
        self.dispatch = dispatch if dispatch != "auto" else ("frames" if gpus else "segments")
        n = ctx.opts.workers or gpus or self.cpus
        if self.dispatch == "segments":  # the actors do all the work: one per CPU (or GPU)
            res = {"num_cpus": 1, "num_gpus": 1} if gpus else {"num_cpus": 1}
        else:  # tasks hold the CPUs; the actors only detect
            res = {"num_cpus": 0, "num_gpus": 1} if gpus else {"num_cpus": 0}
        self.actors = [_Worker.options(**res, max_restarts=-1, max_task_retries=RETRIES).remote(ctx, ctx.opts.threads or 1)
                       for _ in range(n)]
        try:
            info = ray.get([a.ready.remote() for a in self.actors])
        except RayError as e:  # a node without the weights, or without the package
            cause = e.as_instanceof_cause() if isinstance(e, RayTaskError) else e
            raise XunjianError(f"Ray 集群上的工作进程无法加载检测模型 {ctx.opts.weights}"
                               f"（每个节点都要在同一路径上有权重并装好 xunjian）：{str(cause).splitlines()[-1][:300]}") from e
        self.imgsz = info[0]["imgsz"]
        self.startup_s = time.perf_counter() - t0
        log.info("ray engine: %s dispatch, %d detector actors ready in %.1f s", self.dispatch, n, self.startup_s)

    def run(self, store, prog: Progress) -> list[FileOutcome]:
        """Process the batch's files on the cluster; write each to ``store`` here."""
        return _Driver(self, store, prog).run()

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)
        if self.board is not None:
            ray.kill(self.board)
        self.actors, self.board = [], None
        if self.started_here:
            ray.shutdown()
            self.started_here = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(ctx: BatchContext, store, prog: Progress) -> list[FileOutcome]:
    """Start the engine, process the batch, close the engine."""
    with RayEngine(ctx) as engine:
        return engine.run(store, prog)


@dataclass
class _File:
    i: int
    rel: str
    plan: FilePlan | None = None
    meter: FileMeter | None = None
    results: dict[int, SegmentResult] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)  # segments back
    found: FileFound | None = None
    evidence: dict[int, tuple[str, str]] = field(default_factory=dict)
    outcome: FileOutcome | None = None
    processed: bool = False  # planned, not done before: it runs (the local engine would report file_started)
    started: bool = False  # file_started reported
    written: bool = False  # all its segments ran and it was written (done, or failed with a warning)
    reported_t: float = -1.0


class _Driver:
    """One batch through a :class:`RayEngine`: hands out the pieces, collects them, writes files."""

    PRIORITY = ("evidence", "plan", "segment")  # finish files first; plans unblock segments

    def __init__(self, engine: RayEngine, store, prog: Progress):
        self.engine, self.ctx, self.store, self.prog = engine, engine.ctx, store, prog
        self.files = [_File(i, s.media) for i, s in enumerate(self.ctx.manifest.files)]
        self.queues: dict[str, deque] = {k: deque() for k in self.PRIORITY}
        self.pending: dict = {}  # ref → (kind, file index, key, slot)
        self.cursor = 0  # the next file to report finished, in manifest order
        self.turn = 0
        self.ctx_ref = ray.put(self.ctx)
        self.board, self.actors = engine.board, engine.actors
        # a slot is an idle actor (segments), or room for one more task (frames)
        self.idle: deque = deque(self.actors) if engine.dispatch == "segments" else deque(range(engine.cpus))

    # -- scheduling

    def _submit(self) -> None:
        while self.idle:
            kind = next((k for k in self.PRIORITY if self.queues[k]), None)
            if kind is None:
                return
            i, key, args = self.queues[kind].popleft()
            if self.files[i].outcome is not None:  # the file failed meanwhile
                continue
            slot = self.idle.popleft()
            if self.engine.dispatch == "segments":
                ref = getattr(slot, kind).remote(*args, *((self.board,) if kind == "segment" else ()))
            elif kind == "plan":
                ref = plan_task.remote(self.ctx_ref, *args)
            elif kind == "segment":
                self.turn += 1
                detector = self.actors[self.turn % len(self.actors)]  # round robin
                ref = segment_task.remote(self.ctx_ref, *args, detector, self.engine.imgsz, self.board)
            else:
                ref = evidence_task.remote(*args)
            self.pending[ref] = (kind, i, key, slot)

    def run(self) -> list[FileOutcome]:
        for f in self.files:
            self.queues["plan"].append((f.i, None, (f.i,)))
        last_poll = 0.0
        while self.cursor < len(self.files):
            self._submit()
            if self.pending:
                ready, rest = ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
                if ready and rest:  # and whatever else is done already
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready += more
                for ref in ready:
                    kind, i, key, slot = self.pending.pop(ref)
                    self.idle.append(slot)
                    self._done(kind, i, key, ref)
            elif not any(self.queues.values()):
                self._report()
                if self.cursor < len(self.files):
                    raise RuntimeError(f"ray engine: nothing left to run, but {self.files[self.cursor].rel} is not finished")
            if time.perf_counter() - last_poll >= POLL_S:
                last_poll = time.perf_counter()
                self._poll()
            self._report()
        return [f.outcome for f in self.files]

    # -- results

    def _done(self, kind: str, i: int, key, ref) -> None:
        f = self.files[i]
        try:
            value = ray.get(ref)
        except RayTaskError as e:  # an exception in our code: a bug, as it would be locally
            raise e.as_instanceof_cause() from None
        except RayError as e:  # a worker or node that kept dying
            if f.outcome is None:
                message = f"{f.rel}：集群处理失败（{type(e).__name__}，已重试 {RETRIES} 次）：{str(e).splitlines()[0][:300]}"
                f.outcome = write_failure(self.store, self.ctx, f.rel, f.plan.sha, message) if f.plan and f.plan.sha else \
                    FileOutcome(f.rel, "failed", error=message)
            return
        if f.outcome is not None:
            return
        if kind == "plan":
            self._planned(f, value)
        elif kind == "segment":
            self._segment_done(f, value)
        else:
            f.evidence[key] = value
            if len(f.evidence) == len(f.found.found):
                self._write(f)

    def _planned(self, f: _File, plan: FilePlan) -> None:
        f.plan = plan
        if plan.sha is None:
            f.outcome = FileOutcome(f.rel, "failed", error=plan.error)
            return
        if not self.ctx.opts.force and (done := self.store.done_file(self.ctx.batch_id, f.rel, plan.sha)) is not None:
            f.outcome = FileOutcome(f.rel, "skipped", plan.sha, observations=done.observations, stats=done.stats)
            return
        if plan.error:
            f.outcome = write_failure(self.store, self.ctx, f.rel, plan.sha, plan.error)
            return
        f.processed = True
        f.meter = FileMeter(plan)
        for seg in plan.segments:
            self.queues["segment"].append((f.i, seg.index, (f.i, plan, seg)))

    def _segment_done(self, f: _File, r: SegmentResult) -> None:
        if r.error:
            f.outcome = write_failure(self.store, self.ctx, f.rel, f.plan.sha, r.error)
            return
        f.results[r.index] = r
        f.finished.add(r.index)
        f.meter.update(r.index, f.plan.own_seconds(f.plan.segments[r.index])[1])
        if len(f.results) < len(f.plan.segments):
            return
        f.found = file_found(f.plan, list(f.results.values()))
        f.results.clear()  # the finds hold what is needed
        jobs = evidence_jobs(self.ctx, f.plan, f.found.found)
        if not jobs:
            self._write(f)
        for n, job in enumerate(jobs):
            self.queues["evidence"].append((f.i, n, (job,)))

    def _write(self, f: _File) -> None:
        evidence = [f.evidence[n] for n in range(len(f.found.found))]
        f.outcome = write_file(self.store, *file_rows(self.ctx, f.plan, f.found, evidence), f.found.views)
        f.found, f.written = None, True

    # -- progress, reported as the local engine does: file after file

    def _poll(self) -> None:
        try:
            snapshot = ray.get(self.board.snapshot.remote(), timeout=5)
        except RayError:
            return
        for (i, k), t in snapshot.items():
            f = self.files[i]
            if f.meter is not None and f.outcome is None and k not in f.finished:
                f.meter.update(k, t)

    def _report(self) -> None:
        while self.cursor < len(self.files):
            f = self.files[self.cursor]
            if f.processed and not f.started:
                self.prog.file_started(f.rel, f.plan.duration_s)
                f.started = True
            if f.outcome is not None:
                if f.written and f.reported_t != f.plan.duration_s:  # as the local engine: all segments ran
                    self.prog.file_advanced(f.plan.duration_s)
                self.prog.file_finished(f.outcome)
                self.cursor += 1
                continue
            if f.started and f.meter is not None and f.meter.total != f.reported_t:
                f.reported_t = f.meter.total
                self.prog.file_advanced(f.reported_t)
            return
