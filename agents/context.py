"""What the case pipeline runs with but never checkpoints: city data, the store,
the LLM client, and the policy knobs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
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
    from city import catalogue, cases, routing

    allowed = [state.Report, state.Candidate, state.Triage, state.Review, state.PipelineState, cases.Evidence,
               routing.RouteDecision, routing.Candidate, catalogue.Source, catalogue.Kind, catalogue.Urgency, catalogue.Risk]
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


def checkpointer(store: Store):
    """A LangGraph checkpointer in the store's own database."""
    url = store.write_engine.url
    if store.dialect == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(url.database or ":memory:", check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        saver = SqliteSaver(conn, serde=_serde())
    else:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = psycopg.Connection.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        saver = PostgresSaver(conn, serde=_serde())
    saver.setup()
    return saver
