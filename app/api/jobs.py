"""Background jobs over HTTP (the queue run by :mod:`app.api.worker`): their list,
one job (poll), and its progress as Server-Sent Events.

* ``GET /api/jobs`` — recent jobs (dispatchers and admins see all, others their own).
* ``GET /api/jobs/{id}`` — status, progress, result.
* ``GET /api/jobs/{id}/events`` — a ``progress`` event at each change, a ``done``
  event at the end (a comment line every :data:`KEEPALIVE_S` while nothing changes).
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from app.api.deps import CurrentUser, StoreDep
from city.errors import NotFound
from city.store.jobs import Job
from city.users import PermissionDenied, User

router = APIRouter(prefix="/api", tags=["jobs"])

POLL_S = 0.3
KEEPALIVE_S = 15.0
FINISHED = ("done", "failed")


def _may_see_job(job: Job, user: User) -> None:
    if job.owner != user.name and not user.manages:
        raise PermissionDenied(f"{user.label} 不能查看别人的任务 {job.id}")


@router.get("/jobs")
def list_jobs(user: CurrentUser, store: StoreDep, kind: str | None = None,
              limit: int = Query(default=50, ge=1, le=500)) -> list[Job]:
    """最近的后台任务（调度员、管理员看全部，其他人看自己的）。"""
    return store.jobs(kind=kind, owner=None if user.manages else user.name, limit=limit)


@router.get("/jobs/{job_id}")
def get_job(job_id: str, user: CurrentUser, store: StoreDep) -> Job:
    """一个后台任务：状态、进度、结果。"""
    job = store.job(job_id)
    _may_see_job(job, user)
    return job


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


@router.get("/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request, user: CurrentUser, store: StoreDep) -> StreamingResponse:
    """任务进度推送（Server-Sent Events）：每次变化一个 progress 事件，结束时一个 done 事件。"""
    job = await asyncio.to_thread(store.job, job_id)
    _may_see_job(job, user)

    async def events():
        last = None
        quiet_since = time.monotonic()
        yield "retry: 2000\n\n"
        while True:
            try:
                job = await asyncio.to_thread(store.job, job_id)
            except NotFound as e:
                yield _sse("error", json.dumps({"detail": str(e), "error": "not_found"}, ensure_ascii=False))
                return
            data = job.model_dump_json()
            if job.status in FINISHED:
                yield _sse("done", data)
                return
            now = time.monotonic()
            if data != last:
                last, quiet_since = data, now
                yield _sse("progress", data)
            elif now - quiet_since >= KEEPALIVE_S:
                quiet_since = now
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
