"""Engines, transactions and migrations for SQLite and PostgreSQL.

SQLite gets WAL, foreign keys, a busy timeout, and two engines on the same
file: writes start with ``BEGIN IMMEDIATE`` (so a read-then-write transaction
never fails on a lock upgrade), reads with a plain deferred ``BEGIN``.
PostgreSQL gets one pooled engine; writers lock the rows they change.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from city.errors import InvalidInput

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engines(url: str) -> tuple[Engine, Engine]:
    """(read engine, write engine) for ``url``; the same engine twice on PostgreSQL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(f"database URL {url!r} is not a SQLAlchemy URL (e.g. sqlite:///path.db, postgresql+psycopg://user@host/db)") from None
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return _sqlite_engine(parsed, "BEGIN"), _sqlite_engine(parsed, "BEGIN IMMEDIATE")
    try:
        engine = create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
    except NoSuchModuleError as e:
        raise InvalidInput(f"no driver for {parsed.drivername}: {e} (pip install 'xunjian[postgres]')") from None
    return engine, engine


def _sqlite_engine(url, begin: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let us issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql(begin)

    return engine


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def migrate(engine: Engine) -> bool:
    """Bring the schema to the newest migration; True if anything ran.

    Safe when several processes start at once: the migration runs in one
    transaction under a lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock
    on PostgreSQL) and re-checks the revision once it holds it."""
    head = head_revision(engine)
    if current_revision(engine) == head:
        return False
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(472100)")
        if MigrationContext.configure(conn).get_current_revision() == head:
            return False
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return True
