"""Engines, transactions and migrations for SQLite and PostgreSQL.

SQLite gets WAL, foreign keys, a busy timeout, and two engines on the same
file: writes start with ``BEGIN IMMEDIATE`` (so a read-then-write transaction
never fails on a lock upgrade), reads with a plain deferred ``BEGIN``.
PostgreSQL gets one pooled engine; writers lock the rows they change.

The PostgreSQL pool is sized for a server process (the API answers sync
endpoints from a thread pool of 40, plus its worker thread and chat) and set
by environment variables, read when an engine is made (docs/scale.md):

====================================  ========  ==============================================
``XUNJIAN_DB_POOL_SIZE``              10        connections kept open per process
``XUNJIAN_DB_MAX_OVERFLOW``           30        extra connections under load (closed when returned)
``XUNJIAN_DB_POOL_TIMEOUT``           30        seconds to wait for a free connection
``XUNJIAN_DB_POOL_RECYCLE``           1800      seconds before a connection is replaced (-1: never)
``XUNJIAN_DB_STATEMENT_TIMEOUT``      0 (off)   ``statement_timeout`` of every session: ms, or
                                                ``30s``/``2min`` (migrations lift it)
``XUNJIAN_DB_APPLICATION_NAME``       xunjian   the name ``pg_stat_activity`` shows
====================================  ========  ==============================================

The LangGraph checkpointer's own psycopg pool (:func:`agents.context.checkpointer`)
takes the same pool size as its maximum.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: SQLite locks are then per process only
    fcntl = None

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
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
    pool = pool_settings()
    parsed = with_session_options(parsed, statement_timeout_ms=pool["statement_timeout_ms"],
                                  application_name=pool["application_name"])
    try:
        engine = create_engine(parsed, pool_pre_ping=True, pool_use_lifo=True, pool_size=pool["pool_size"],
                               max_overflow=pool["max_overflow"], pool_timeout=pool["pool_timeout"],
                               pool_recycle=pool["pool_recycle"])
    except NoSuchModuleError as e:
        raise InvalidInput(f"no driver for {parsed.drivername}: {e} (pip install 'xunjian[postgres]')") from None
    return engine, engine


POOL_DEFAULTS = {"pool_size": 10, "max_overflow": 30, "pool_timeout": 30, "pool_recycle": 1800}


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise InvalidInput(f"{name}={raw!r} must be at least {minimum}")
    return value


def _duration_ms(name: str) -> int:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return 0
    m = re.fullmatch(r"(\d+)\s*(ms|s|min|h)?", raw)
    if not m:
        raise InvalidInput(f"{name}={raw!r}: give milliseconds (30000) or a duration (30s, 2min, 1h)")
    return int(m.group(1)) * {"ms": 1, None: 1, "s": 1000, "min": 60_000, "h": 3_600_000}[m.group(2)]


def pool_settings() -> dict:
    """The PostgreSQL pool and session settings from the environment (see the module doc)."""
    return {
        "pool_size": _env_int("XUNJIAN_DB_POOL_SIZE", POOL_DEFAULTS["pool_size"], 1),
        "max_overflow": _env_int("XUNJIAN_DB_MAX_OVERFLOW", POOL_DEFAULTS["max_overflow"], 0),
        "pool_timeout": _env_int("XUNJIAN_DB_POOL_TIMEOUT", POOL_DEFAULTS["pool_timeout"], 1),
        "pool_recycle": _env_int("XUNJIAN_DB_POOL_RECYCLE", POOL_DEFAULTS["pool_recycle"], -1),
        "statement_timeout_ms": _duration_ms("XUNJIAN_DB_STATEMENT_TIMEOUT"),
        "application_name": os.environ.get("XUNJIAN_DB_APPLICATION_NAME", "").strip() or "xunjian",
    }


def with_session_options(url, *, statement_timeout_ms: int = 0, application_name: str | None = None):
    """``url`` with libpq options added to the ones it already has (a test's
    ``options=-csearch_path=...`` stays): the statement timeout and the application
    name, unless the URL sets them itself."""
    options = url.query.get("options") or ""
    if isinstance(options, tuple):
        options = " ".join(options)
    if statement_timeout_ms and "statement_timeout" not in options:
        options = f"{options} -c statement_timeout={statement_timeout_ms}".strip()
    update = {"options": options} if options else {}
    if application_name and "application_name" not in url.query:
        update["application_name"] = application_name
    return url.update_query_dict(update) if update else url


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
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")  # building an index on millions of rows takes a while
        if MigrationContext.configure(conn).get_current_revision() == head:
            return False
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return True


# -- named locks across processes ----------------------------------------------------------

_LOCK_SLOTS = 1 << 20  # SQLite: byte offsets in the lock file
_thread_locks: dict[tuple[str, int], list] = {}  # (file, key) → [RLock, users]
_thread_locks_guard = threading.Lock()
_lock_files: dict[str, int] = {}  # one descriptor per lock file and process, never closed: closing any
# descriptor of a file drops every fcntl lock the process holds on it


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (a PostgreSQL advisory lock key)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def named_locks(engine: Engine, names: Iterable[str], *, poll: float | None = None) -> Iterator[None]:
    """Hold exclusive locks on ``names`` while the block runs, against every thread
    and process that uses the same database (e.g. two pipeline workers on the same
    observation, or on two sightings of one issue). Locks are taken in one global
    order, so holders of overlapping sets never deadlock; a dead process's locks
    are released by the database (PostgreSQL: session advisory locks on one pooled
    connection in autocommit) or by the kernel (SQLite: ``fcntl`` byte-range locks
    on the file ``<db>.locks`` next to the database, plus a thread lock per key,
    since ``fcntl`` locks belong to the process).

    ``poll`` (seconds, PostgreSQL): wait by trying again every ``poll`` seconds
    instead of in a blocked statement. Use it where the holder may run
    ``CREATE INDEX CONCURRENTLY``, which waits for every open statement,
    the blocked ``pg_advisory_lock`` of a waiter included (a deadlock the
    server cannot see: its other half is in the holder's client)."""
    keys = sorted({lock_key(n) for n in names})
    if not keys:
        yield
        return
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            try:
                if poll:
                    while not all(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": k}).scalar_one() for k in keys):
                        conn.execute(text("SELECT pg_advisory_unlock_all()"))
                        time.sleep(poll)
                else:  # one round trip: the sorted subquery takes them in order
                    conn.execute(text("SELECT count(pg_advisory_lock(k)) FROM "
                                      "(SELECT unnest(CAST(:ks AS bigint[])) AS k ORDER BY 1) AS s"), {"ks": keys})
                yield
            finally:
                if not conn.invalidated:
                    conn.execute(text("SELECT pg_advisory_unlock_all()"))  # this connection holds nothing else
        return
    path = engine.url.database
    path = None if not path or path == ":memory:" else str(Path(path).expanduser().resolve()) + ".locks"
    slots = sorted({k % _LOCK_SLOTS for k in keys})
    held: list[tuple[tuple[str, int], list]] = []
    fd = None
    if path and fcntl:
        with _thread_locks_guard:
            fd = _lock_files.get(path)
            if fd is None:
                fd = _lock_files[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for slot in slots:
            ident = (path or "", slot)
            with _thread_locks_guard:
                entry = _thread_locks.setdefault(ident, [threading.Lock(), 0])
                entry[1] += 1
            entry[0].acquire()
            held.append((ident, entry))
            if fd is not None:
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, slot)
        yield
    finally:
        for ident, entry in reversed(held):
            if fd is not None:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, ident[1])
            entry[0].release()
            with _thread_locks_guard:
                entry[1] -= 1
                if not entry[1]:
                    _thread_locks.pop(ident, None)
