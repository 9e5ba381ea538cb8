"""What the case pipeline runs with but never checkpoints: city data, the store,
the LLM client, and the policy knobs."""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

from agents.config import LLMConfig
from agents.llm import LLMClient, SqlCallLog
from city.bundle import CityData
from city.store import Store


@dataclass
class Context:
    city: CityData
    store: Store
    llm: LLMClient
    actor: str = "pipeline"
    review_below: float = 0.55  # triage confidence under this waits for a human
    trust_retrieval_above: float = 0.9  # an LLM may not overrule a retrieval match this confident
    review_risks: tuple[str, ...] = ("红", "橙")  # risk levels a human approves before dispatch
    require_approval: bool = False  # policy: every case waits for a human
    dedupe_radius_m: float = 50.0
    dedupe_window_days: int = 30
    notes: list[str] = field(default_factory=list)

    @classmethod
    def default(cls, store: Store, llm: LLMClient | None = None, **kw) -> Context:
        """The store's city, and an LLM client configured from env/config (offline
        when nothing is configured) whose calls are logged in the store."""
        return cls(city=store.city, store=store, llm=llm or LLMClient(log=SqlCallLog(store)), **kw)


@contextmanager
def llm_endpoint(config: LLMConfig | None = None) -> Iterator[LLMConfig]:
    """The LLM settings to use, with the embedded model running when the backend is
    ``local``: a server already started by ``xunjian llm serve`` is used as it is;
    otherwise one is started here and stopped when the block ends."""
    config = config or LLMConfig.load()
    if config.backend != "local":
        yield config
        return
    from agents import local_model

    running = local_model.running_server()
    if running and running.get("health") == "ok":
        yield config.model_copy(update={"base_url": running["base_url"], "model": running.get("model") or config.model})
        return
    with local_model.start_server() as srv:
        yield config.model_copy(update={"base_url": srv.base_url, "model": srv.model})


def _serde():
    """Checkpoints hold our own pydantic models and enums: allow exactly those."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from agents import state
    from city import cases, catalogue, routing

    allowed = [state.Report, state.Candidate, state.Triage, state.Review, state.PipelineState, cases.Evidence,
               routing.RouteDecision, routing.Candidate, catalogue.Source, catalogue.Kind, catalogue.Urgency, catalogue.Risk]
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


def checkpointer(store: Store):
    """A LangGraph checkpointer in the store's own database.

    SQLite: a :class:`SqliteSaver` on its own connection, per call (as always).
    PostgreSQL: one :class:`PostgresSaver` per store and process on a
    ``psycopg_pool.ConnectionPool`` (at most ``XUNJIAN_DB_POOL_SIZE`` connections,
    default 10), so the threads of a server or of a batch fan-out checkpoint in
    parallel instead of queueing on one connection; any process on the same
    database can resume any thread. The pool closes when the store is closed or
    garbage-collected."""
    if store.dialect == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        url = store.write_engine.url
        conn = sqlite3.connect(url.database or ":memory:", check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        saver = SqliteSaver(conn, serde=_serde())
        saver.setup()
        return saver
    with _savers_guard:
        saver = _pg_savers.get(store)
        if saver is None or saver.conn.closed:
            saver = _pg_savers[store] = _pooled_postgres_saver(store)
    return saver


_pg_savers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_savers_guard = threading.Lock()


def _pooled_postgres_saver(store: Store):
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.conninfo import make_conninfo
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    from city.store.db import named_locks, pool_settings, with_session_options

    class PooledPostgresSaver(PostgresSaver):
        """PostgresSaver takes one lock around every call, which a single connection
        needs; with a pool every call has a connection of its own, so no lock."""

        def __init__(self, pool: ConnectionPool, serde):
            super().__init__(pool, serde=serde)
            self.lock = nullcontext()

    cfg = pool_settings()
    url = store.write_engine.url.set(query={k: v for k, v in store.write_engine.url.query.items() if k != "application_name"})
    url = with_session_options(url, statement_timeout_ms=cfg["statement_timeout_ms"],
                               application_name=f"{cfg['application_name']}-checkpoints")
    # keyword arguments, not a URI: libpq does not read "+" in a URI as a space (options="-c a=1 -c b=2")
    params = {**url.translate_connect_args(username="user", database="dbname"),
              **{k: " ".join(v) if isinstance(v, tuple) else v for k, v in url.query.items()}}
    pool = ConnectionPool(make_conninfo("", **params), min_size=1, max_size=cfg["pool_size"],
                          timeout=cfg["pool_timeout"], max_lifetime=cfg["pool_recycle"] if cfg["pool_recycle"] > 0 else 3600,
                          kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
                          check=ConnectionPool.check_connection, name="xunjian-checkpoints", open=True)
    saver = PooledPostgresSaver(pool, _serde())
    try:
        if not _checkpoint_tables_current(saver):
            # several workers may start at once; setup() runs CREATE INDEX CONCURRENTLY, so wait by polling
            with named_locks(store.write_engine, ["langgraph-checkpoint-setup"], poll=0.05):
                saver.setup()
    except BaseException:
        pool.close()
        raise
    weakref.finalize(store, pool.close)
    _close_with(store, pool)
    return saver


def _checkpoint_tables_current(saver) -> bool:
    """True when LangGraph's checkpoint tables are already at its newest migration."""
    import psycopg

    try:
        with saver.conn.connection() as conn:
            row = conn.execute("SELECT max(v) AS v FROM checkpoint_migrations").fetchone()
    except psycopg.errors.UndefinedTable:
        return False
    return row is not None and row["v"] == len(saver.MIGRATIONS) - 1


def _close_with(store: Store, pool) -> None:
    """Close the checkpoint pool when ``store.close()`` disposes of the engines."""
    from sqlalchemy import event

    def closing(*_args):
        pool.close()

    event.listen(store.write_engine, "engine_disposed", closing)
