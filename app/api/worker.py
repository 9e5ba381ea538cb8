"""The server's background worker: one thread that runs queued jobs from the store.

Handlers register by job kind::

    @handler("ingest")
    def ingest(job: Job, services: Services, progress: Callable[[dict], None]) -> dict:
        ...   # call progress({...}) as the work goes; return the result

A handler's exception fails the job with its message (a :class:`XunjianError`'s
message as is, anything else with its type). Jobs left ``running`` by a server
that stopped are queued again at start; the work is idempotent, so re-running
one duplicates nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from city.errors import XunjianError
from city.store.jobs import Job

log = logging.getLogger("xunjian.worker")

Handler = Callable[[Job, object, Callable[[dict], None]], dict]
HANDLERS: dict[str, Handler] = {}


def handler(kind: str):
    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn
    return register


def run_job(job: Job, services) -> Job:
    """Run one claimed job to its end (done or failed)."""
    store = services.store
    fn = HANDLERS.get(job.kind)
    if fn is None:
        return store.finish_job(job.id, error=f"未知的任务类型 {job.kind}")
    last = [0.0]

    def progress(p: dict, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - last[0] >= 0.2:  # at most 5 writes a second
            last[0] = now
            store.job_progress(job.id, p)

    try:
        result = fn(job, services, progress)
    except XunjianError as e:
        log.warning("job %s failed: %s", job.id, e)
        return store.finish_job(job.id, error=str(e))
    except Exception as e:
        log.exception("job %s crashed", job.id)
        return store.finish_job(job.id, error=f"{type(e).__name__}: {e}")
    return store.finish_job(job.id, result=result)


class Worker:
    """Claims and runs jobs until stopped; :meth:`wake` after queueing one."""

    def __init__(self, services, *, idle_s: float = 1.0, periodic: list[tuple[float, Callable[[], object]]] = ()):
        """``periodic``: (every seconds, function) run between jobs, e.g. the SLA tick."""
        self.services = services
        self.idle_s = idle_s
        self.periodic = [[every, fn, 0.0] for every, fn in periodic]
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="xunjian-worker", daemon=True)

    def start(self) -> None:
        n = self.services.store.requeue_stale()
        if n:
            log.info("re-queued %d job(s) left running", n)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _due(self) -> None:
        for task in self.periodic:
            every, fn, last = task
            if time.monotonic() - last >= every:
                task[2] = time.monotonic()
                try:
                    fn()
                except Exception:
                    log.exception("periodic task %s failed", getattr(fn, "__name__", fn))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._due()
            try:
                job = self.services.store.claim_job(list(HANDLERS))
            except Exception:
                log.exception("cannot claim a job")
                job = None
            if job is None:
                self._wake.wait(self.idle_s)
                self._wake.clear()
                continue
            run_job(job, self.services)


def wake(request) -> None:
    """Wake the app's worker (if it runs in this process) after queueing a job."""
    w = getattr(request.app.state, "worker", None)
    if w:
        w.wake()
