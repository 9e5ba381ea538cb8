"""The local engine: each file of the batch in this process, in manifest order."""

from __future__ import annotations

from typing import Self

from vision.ingest import (
    BatchContext,
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
from vision.manifest import FileSpec
from vision.segments import FileMeter


class LocalEngine:
    """Runs the pieces of :mod:`vision.ingest` here with one loaded detector."""

    def __init__(self, ctx: BatchContext, detector):
        self.ctx, self.detector = ctx, detector

    def run(self, store, prog: Progress) -> list[FileOutcome]:
        outcomes: list[FileOutcome] = []
        for spec in self.ctx.manifest.files:
            outcome = ingest_file(self.ctx, spec, self.detector, store, prog)
            outcomes.append(outcome)
            prog.file_finished(outcome)
        return outcomes

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ingest_file(ctx: BatchContext, spec: FileSpec, detector, store, prog: Progress) -> FileOutcome:
    rel = spec.media
    sha, error = hash_media(ctx, spec)
    if sha is None:
        return FileOutcome(rel, "failed", error=error)
    if not ctx.opts.force and (done := store.done_file(ctx.batch_id, rel, sha)) is not None:
        return FileOutcome(rel, "skipped", sha, observations=done.observations, stats=done.stats)
    plan = plan_file(ctx, spec, sha)
    if plan.error:
        return write_failure(store, ctx, rel, sha, plan.error)
    prog.file_started(rel, plan.duration_s)
    meter = FileMeter(plan)
    results = []
    for seg in plan.segments:
        r = process_segment(ctx, spec, plan, seg, detector, on_t=lambda t, k=seg.index: prog.file_advanced(meter.update(k, t)))
        if r.error:
            return write_failure(store, ctx, rel, sha, r.error)
        results.append(r)
    prog.file_advanced(plan.duration_s)
    ff = file_found(plan, results)
    evidence = [job.run() for job in evidence_jobs(ctx, plan, ff.found)]
    return write_file(store, *file_rows(ctx, plan, ff, evidence), ff.views)
