"""Running the dispatch chat: one user's turns on a thread, persisted in the
store's checkpointer (a thread resumes in any process by its id), with the
confirmation of planned changes as LangGraph interrupts."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

from langgraph.types import Command
from pydantic import BaseModel

from agents.chat.graph import ChatContext, build
from agents.chat.state import ChatState
from city.users import PermissionDenied, User
from agents.context import checkpointer


class Turn(BaseModel):
    thread_id: str
    replies: list[str]
    """what the assistant said in this turn"""
    waiting: dict | None = None
    """the planned change waiting for confirm / cancel / edit (``plan``, ``text``, ``warnings``)"""


class Chat:
    """The chat graph with a checkpointer in the store's database, for one user."""

    def __init__(self, store, user: User, llm=None, *, pipeline=None, clock: datetime | None = None, graph=None):
        """``graph``: a compiled chat graph to share (:func:`compiled`), e.g. one per
        server process; default: a new one with its own checkpointer connection."""
        from agents.llm import LLMClient, SqlCallLog

        self.store = store
        self.context = ChatContext(store=store, llm=llm or LLMClient(log=SqlCallLog(store)), user=user,
                                   pipeline=pipeline, clock=clock)
        self.graph = graph or compiled(store)

    @staticmethod
    def new_thread() -> str:
        return f"chat-{uuid.uuid4().hex[:12]}"

    def _config(self, thread_id: str) -> dict:
        return {"configurable": {"thread_id": thread_id}}

    def state(self, thread_id: str) -> ChatState:
        snap = self.graph.get_state(self._config(thread_id))
        return ChatState.model_validate(snap.values) if snap.values else ChatState()

    def check_owner(self, thread_id: str) -> None:
        """A thread belongs to the user who opened it: nobody else writes to it."""
        owner = self.state(thread_id).owner
        user = self.context.user
        if owner and owner != user.name:
            raise PermissionDenied(f"会话属于 {owner}，{user.label} 不能继续")

    def waiting(self, thread_id: str) -> dict | None:
        snap = self.graph.get_state(self._config(thread_id))
        return snap.interrupts[0].value if snap.interrupts else None

    def turn_since(self, thread_id: str, before: int) -> Turn:
        msgs = self.state(thread_id).messages[before:]
        replies = [m["content"] for m in msgs if m["role"] == "assistant" and m.get("content") and not m.get("tool_calls")]
        return Turn(thread_id=thread_id, replies=replies, waiting=self.waiting(thread_id))

    def send(self, thread_id: str, text: str, on_delta: Callable[[str], None] | None = None) -> Turn:
        """One user message; ``on_delta`` gets the reply's text as the model writes it
        (endpoints with native tool calls). A change still waiting for confirmation
        is cancelled first."""
        return _drain(self.stream(thread_id, text), on_delta)

    def answer(self, thread_id: str, decision: str, args: dict | None = None,
               on_delta: Callable[[str], None] | None = None) -> Turn:
        """Confirm, cancel or edit (new arguments) the change waiting on the thread."""
        return _drain(self.stream_answer(thread_id, decision, args), on_delta)

    def stream(self, thread_id: str, text: str) -> Iterator[str | Turn]:
        """:meth:`send` as a generator: the reply's text pieces as they come, then the :class:`Turn`."""
        self.check_owner(thread_id)
        if self.waiting(thread_id):
            self.answer(thread_id, "cancel")
        before = len(self.state(thread_id).messages)
        yield from self._run({"messages": [{"role": "user", "content": text}]}, thread_id)
        yield self.turn_since(thread_id, before)

    def stream_answer(self, thread_id: str, decision: str, args: dict | None = None) -> Iterator[str | Turn]:
        """:meth:`answer` as a generator, like :meth:`stream`."""
        if decision not in ("confirm", "cancel", "edit"):
            raise ValueError(f"decision must be confirm, cancel or edit, got {decision!r}")
        self.check_owner(thread_id)
        before = len(self.state(thread_id).messages)
        yield from self._run(Command(resume={"decision": decision, "args": args or {}}), thread_id)
        yield self.turn_since(thread_id, before)

    def _run(self, graph_input, thread_id: str) -> Iterator[str]:
        for event in self.graph.stream(graph_input, self._config(thread_id), context=self.context, stream_mode="custom"):
            if isinstance(event, dict) and event.get("delta"):
                yield event["delta"]


def compiled(store):
    """The chat graph with a checkpointer in ``store``'s database."""
    return build(checkpointer(store))


def _drain(events: Iterator[str | Turn], on_delta: Callable[[str], None] | None) -> Turn:
    for e in events:
        if isinstance(e, Turn):
            return e
        if on_delta:
            on_delta(e)
    raise RuntimeError("the chat stream ended without a turn")
