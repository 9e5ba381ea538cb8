"""Shared fixtures: the sample city, and a fresh store on SQLite and on PostgreSQL.

PostgreSQL tests need a real server: set ``XUNJIAN_TEST_PG_URL`` (``.ci/run``
installs and starts one, e.g. ``postgresql+psycopg://xunjian:xunjian@127.0.0.1/xunjian_test``).
Each test gets its own schema, dropped afterwards. Without the variable the
PostgreSQL half is skipped with a message, except under CI where it fails.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

from city.bundle import load_city
from fake_openai import fake_llm  # noqa: F401 - the scripted OpenAI-compatible server (tests/ is on sys.path)

PG_URL = os.environ.get("XUNJIAN_TEST_PG_URL")


@pytest.fixture(scope="session")
def city():
    return load_city()


@pytest.fixture(scope="session")
def demo_batch(tmp_path_factory):
    """The rendered demo patrol batch (20 s of 720p video, GPX, manifest, truth), once per session."""
    from vision.synth.footage import make_demo_batch

    return make_demo_batch(tmp_path_factory.mktemp("demo") / "batch", seed=0)


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL: XUNJIAN_TEST_PG_URL is not set")
        pytest.skip("PostgreSQL not configured: set XUNJIAN_TEST_PG_URL=postgresql+psycopg://USER:PASS@127.0.0.1/DB")
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(PG_URL, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(db_url, city):
    from city.store import Store

    st = Store(db_url, city)
    yield st
    st.close()


@pytest.fixture
def live(tmp_path, city, monkeypatch):
    """The API on a real uvicorn server on loopback, over a fresh SQLite store, offline
    LLM, one user per role (see ``tests/live_server.py``)."""
    from app.api.deps import Services
    from city.store import Store
    from live_server import serve

    monkeypatch.setenv("XUNJIAN_HOME", str(tmp_path / "home"))
    store = Store(f"sqlite:///{tmp_path / 'api.db'}", city)
    services = Services(store=store)
    with serve(services) as server:
        yield server
    store.close()
