"""Running the case pipeline: one report in, a case out (or waiting at the review
gate); resume a waiting case in this or any later process."""

from __future__ import annotations

import uuid

from langgraph.types import Command
from pydantic import BaseModel

from agents.context import Context, checkpointer
from agents.graph import build
from agents.state import PipelineState, Report
from city import geo
from city.cases import CaseQuery
from city.errors import InvalidInput, NotFound
from city.lifecycle import Status
from city.store import Store
from city.store.db import named_locks


class RunResult(BaseModel):
    thread_id: str
    state: PipelineState
    waiting: dict | None = None  # the review gate's question, when the case waits for a human


class Pipeline:
    """The compiled graph with a checkpointer in the store's database."""

    def __init__(self, store: Store, context: Context | None = None, *, durability: str = "exit"):
        """``durability``: when LangGraph writes checkpoints: ``"sync"`` after every
        node, ``"async"`` after every node in the background, ``"exit"`` (default)
        only when the run ends or stops at the review gate (fastest; a crash
        mid-run re-runs the case from the start, and the store's steps are
        idempotent per case)."""
        self.store = store
        self.durability = durability
        self.context = context or Context.default(store)
        self.graph = build(checkpointer(store))

    def _result(self, thread_id: str) -> RunResult:
        snap = self.graph.get_state({"configurable": {"thread_id": thread_id}})
        if not snap.values:
            raise NotFound(f"no pipeline thread {thread_id!r}")
        state = PipelineState.model_validate(snap.values)
        waiting = snap.interrupts[0].value if snap.interrupts else None
        if waiting:
            state = state.model_copy(update={"outcome": "waiting"})
        return RunResult(thread_id=thread_id, state=state, waiting=waiting)

    def run(self, report: Report, thread_id: str | None = None) -> RunResult:
        """Send one report through the graph. The same ``external_id`` (or thread id)
        twice gives the same case back instead of a second one."""
        thread_id = thread_id or report.external_id or f"rep-{uuid.uuid4().hex[:16]}"
        config = {"configurable": {"thread_id": thread_id}}
        with self._claim(thread_id, report):
            if self.graph.get_state(config).values:
                return self._result(thread_id)
            self.graph.invoke(PipelineState(report=report), config, context=self.context, durability=self.durability)
        return self._result(thread_id)

    def _claim(self, thread_id: str, report: Report | None = None):
        """Locks held while a thread runs, in the database, so that workers in other
        threads or processes (or on other nodes) never run the same thread at
        once: the second waits, then finds the first one's checkpoint. A report
        with a position also locks the dedupe cells around it (``cells_within`` of
        the dedupe radius): two sightings of one issue run one after the other, so
        the second finds the first's case instead of opening its own."""
        names = [f"pipeline:thread:{thread_id}"]
        if report is not None and report.lat is not None and report.lon is not None:
            names += [f"pipeline:cell:{c}" for c in geo.cells_within(report.lat, report.lon, self.context.dedupe_radius_m)]
        return named_locks(self.store.write_engine, names)

    def resume(self, case_number: str, decision: str, *, by: str, note: str = "", edits: dict | None = None) -> RunResult:
        """Answer the review gate of a waiting case: approve, edit (department_id,
        urgency) or reject."""
        if decision not in ("approve", "edit", "reject"):
            raise InvalidInput(f"decision must be approve, edit or reject, not {decision!r}")
        thread_id = self.thread_of(case_number)
        current = self._result(thread_id)
        if not current.waiting:
            raise InvalidInput(f"{case_number} is not waiting for review (outcome: {current.state.outcome})")
        if decision == "reject" and not note:
            raise InvalidInput("rejecting a case needs a reason (--note)")
        if edits and edits.get("department_id"):
            self.store.city.departments.get(edits["department_id"])  # refuse unknown departments early
        with self._claim(thread_id):
            current = self._result(thread_id)
            if not current.waiting:  # answered meanwhile by someone else
                raise InvalidInput(f"{case_number} is not waiting for review (outcome: {current.state.outcome})")
            self.graph.invoke(Command(resume={"decision": decision, "by": by, "note": note, "edits": edits or {}}),
                              {"configurable": {"thread_id": thread_id}}, context=self.context)
        return self._result(thread_id)

    def thread_of(self, case_number: str) -> str:
        case = self.store.get(case_number)
        if not case.external_id:
            raise NotFound(f"{case_number} was not created by the pipeline")
        return case.external_id

    def state_of(self, case_number: str) -> RunResult:
        return self._result(self.thread_of(case_number))

    def waiting(self, limit: int = 200) -> list[RunResult]:
        """Cases held at the review gate, oldest first."""
        out = []
        for case in reversed(self.store.list(CaseQuery(status=[Status.REPORTED], limit=limit))):
            if case.external_id:
                try:
                    r = self._result(case.external_id)
                except NotFound:
                    continue
                if r.waiting:
                    out.append(r)
        return out
