"""The HTTP API (FastAPI) and the web app: :func:`create_app` assembles them in one place.

    uvicorn --factory app.api:create_app          # or: xunjian serve

Routers, one module each: ``auth`` (sign-in, users, API keys), ``cases``
(cases, evidence, lifecycle actions, review queue, map, statistics),
``batches`` (footage uploads, batch reports), ``uploads`` (resumable
uploads), ``jobs`` (background jobs, progress over SSE), ``chat`` (the dispatch
agent, streamed), ``open311`` (GeoReport v2), and ``app.web`` (the Chinese
web UI). Background work runs in :mod:`app.api.worker`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.deps import Services
from app.api.errors import install_error_handlers


def create_app(services: Services | None = None, *, worker: bool = True, sla_every_s: float | None = None) -> FastAPI:
    """The app over ``services`` (default: the configured store and LLM).
    ``worker``: run the background worker thread in this process; ``sla_every_s``:
    also run the overdue warnings and escalation (``xunjian sla tick``) that often."""
    from app.api import auth, batches, cases, chat, dashboard, jobs, open311, uploads
    from app.api.worker import Worker
    from app.web import routes as web

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = services or Services.default()
        app.state.services = svc
        periodic = []
        if sla_every_s:
            from city import escalation

            periodic.append((sla_every_s, lambda: escalation.tick(svc.store)))
        w = Worker(svc, periodic=periodic) if worker else None
        if w:
            w.start()
        app.state.worker = w
        try:
            yield
        finally:
            if w:
                w.stop()
            if services is None:
                svc.close()

    app = FastAPI(
        title="巡检 xunjian API",
        description="城市管理巡检与派遣：案件、视频批次、调度对话、Open311 GeoReport v2。",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(auth.router)
    app.include_router(cases.router)
    app.include_router(dashboard.router)
    app.include_router(batches.router)
    app.include_router(uploads.router)
    app.include_router(jobs.router)
    app.include_router(chat.router)
    app.include_router(open311.router)
    web.mount(app)
    return app
