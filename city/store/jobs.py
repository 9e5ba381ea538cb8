"""The server's background jobs and the Open311 requests, in the store.

A job is queued by a request handler and claimed by a worker with a conditional
UPDATE (only one worker gets it, on SQLite as on PostgreSQL). Progress is
written as the job runs, so any process (the API's polling and SSE endpoints)
reads it. A job left ``running`` by a process that died is queued again when
the server starts (:meth:`JobStore.requeue_stale`); the work itself is
idempotent (ingest by content hash, the pipeline by external id).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import select, update

from city.errors import NotFound
from city.store.schema import JobRow, Open311RequestRow


class Job(BaseModel):
    id: str
    kind: str
    status: str
    owner: str
    params: dict
    progress: dict
    result: dict | None
    error: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


class Open311Request(BaseModel):
    token: str
    client: str
    payload: dict
    status: str
    case_number: str | None
    note: str | None
    received_at: datetime
    processed_at: datetime | None


def _job(row: JobRow) -> Job:
    return Job.model_validate(row, from_attributes=True)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class JobStore:
    """Mixed into :class:`city.store.Store`."""

    def add_job(self, kind: str, owner: str, params: dict, *, job_id: str | None = None) -> Job:
        now = _utcnow()
        row = JobRow(id=job_id or f"{kind}-{uuid.uuid4().hex[:12]}", kind=kind, status="queued", owner=owner,
                     params=params, progress={}, result=None, error=None, attempts=0, created_at=now, updated_at=now)
        with self.writing() as s:
            s.add(row)
        return _job(row)

    def job(self, job_id: str) -> Job:
        with self.reading() as s:
            row = s.get(JobRow, job_id)
        if row is None:
            raise NotFound(f"任务 {job_id} 不存在")
        return _job(row)

    def jobs(self, *, kind: str | None = None, owner: str | None = None, limit: int = 50) -> list[Job]:
        stmt = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
        if kind:
            stmt = stmt.where(JobRow.kind == kind)
        if owner:
            stmt = stmt.where(JobRow.owner == owner)
        with self.reading() as s:
            return [_job(r) for r in s.execute(stmt).scalars()]

    def claim_job(self, kinds: list[str] | None = None) -> Job | None:
        """The oldest queued job, now ``running`` and ours; None when there is none."""
        while True:
            stmt = select(JobRow.id).where(JobRow.status == "queued").order_by(JobRow.created_at).limit(1)
            if kinds:
                stmt = stmt.where(JobRow.kind.in_(kinds))
            with self.writing() as s:
                job_id = s.execute(stmt).scalar_one_or_none()
                if job_id is None:
                    return None
                won = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.status == "queued")
                                .values(status="running", attempts=JobRow.attempts + 1, updated_at=_utcnow())).rowcount
            if won:
                return self.job(job_id)

    def job_progress(self, job_id: str, progress: dict) -> None:
        with self.writing() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id).values(progress=progress, updated_at=_utcnow()))

    def finish_job(self, job_id: str, *, result: dict | None = None, error: str | None = None) -> Job:
        with self.writing() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id)
                      .values(status="failed" if error else "done", result=result, error=error, updated_at=_utcnow()))
        return self.job(job_id)

    def requeue_stale(self) -> int:
        """Queue again the jobs left running (by a server that stopped mid-job)."""
        with self.writing() as s:
            return s.execute(update(JobRow).where(JobRow.status == "running")
                             .values(status="queued", updated_at=_utcnow())).rowcount

    # -- Open311 -----------------------------------------------------------------

    def add_open311(self, client: str, payload: dict, *, token: str | None = None) -> Open311Request:
        row = Open311RequestRow(token=token or uuid.uuid4().hex, client=client, payload=payload, status="received",
                                case_number=None, note=None, received_at=_utcnow(), processed_at=None)
        with self.writing() as s:
            s.add(row)
        return Open311Request.model_validate(row, from_attributes=True)

    def open311(self, token: str) -> Open311Request:
        with self.reading() as s:
            row = s.get(Open311RequestRow, token)
        if row is None:
            raise NotFound(f"token {token} 不存在")
        return Open311Request.model_validate(row, from_attributes=True)

    def open311_pending(self) -> list[Open311Request]:
        with self.reading() as s:
            rows = s.execute(select(Open311RequestRow).where(Open311RequestRow.status == "received")
                             .order_by(Open311RequestRow.received_at)).scalars()
            return [Open311Request.model_validate(r, from_attributes=True) for r in rows]

    def open311_done(self, token: str, *, case_number: str | None, note: str | None, failed: bool = False) -> None:
        with self.writing() as s:
            s.execute(update(Open311RequestRow).where(Open311RequestRow.token == token)
                      .values(status="failed" if failed else "processed", case_number=case_number, note=note,
                              processed_at=_utcnow()))
