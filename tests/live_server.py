"""A real uvicorn server on loopback for the API and browser tests.

    with serve(services) as live:
        c = live.client("王调度")          # httpx.Client, signed in as that user
        c.get("/api/cases").json()

:func:`seed_users` creates one user per role (password ``PASSWORD``): ``管理员``
(admin), ``王调度`` (dispatcher), ``环卫张三`` (department JB-HW), ``李只读`` (viewer).
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from city.users import Role, User

PASSWORD = "test-password-1"
USERS = [
    User(name="管理员", role=Role.ADMIN),
    User(name="王调度", role=Role.DISPATCHER),
    User(name="环卫张三", role=Role.DEPARTMENT, department_id="JB-HW"),
    User(name="李只读", role=Role.VIEWER),
]
ADMIN, DISPATCHER, DEPARTMENT, VIEWER = (u.name for u in USERS)


def seed_users(store) -> None:
    existing = {u.name for u in store.users()}
    for u in USERS:
        if u.name not in existing:
            store.add_user(u, PASSWORD)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Live:
    url: str
    services: object
    app: object
    _tokens: dict

    @property
    def store(self):
        return self.services.store

    def token(self, name: str) -> str:
        if name not in self._tokens:
            r = httpx.post(f"{self.url}/api/auth/login", json={"name": name, "password": PASSWORD})
            r.raise_for_status()
            self._tokens[name] = r.json()["token"]
        return self._tokens[name]

    def client(self, name: str | None = None, **kw) -> httpx.Client:
        """An HTTP client for the server, signed in as ``name`` (anonymous when None)."""
        headers = {"Authorization": f"Bearer {self.token(name)}"} if name else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kw.pop("timeout", 60), **kw)

    def wait_job(self, job_id: str, timeout: float = 300) -> dict:
        """Poll a background job until it is done or failed."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.store.job(job_id)
            if job.status in ("done", "failed"):
                return job.model_dump(mode="json")
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")


@contextmanager
def serve(services, *, worker: bool = True, users: bool = True):
    """Run the app over ``services`` on a free loopback port until the block ends."""
    from app.api import create_app

    if users:
        seed_users(services.store)
    app = create_app(services, worker=worker)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("uvicorn did not start")
    try:
        yield Live(url=f"http://127.0.0.1:{port}", services=services, app=app, _tokens={})
    finally:
        server.should_exit = True
        thread.join(10)
