"""Running the dispatch chat: one user's turns on a thread, persisted in the
store's checkpointer (a thread resumes in any process by its id), with the
confirmation of planned changes as LangGraph interrupts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
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

    def __init__(self, store, user: User, llm=None, *, pipeline=None, clock: datetime | None = None):
        from agents.llm import LLMClient, SqlCallLog

        self.store = store
        self.context = ChatContext(store=store, llm=llm or LLMClient(log=SqlCallLog(store)), user=user,
                                   pipeline=pipeline, clock=clock)
        self.graph = build(checkpointer(store))

    @staticmethod
    def new_thread() -> str:
        return f"chat-{uuid.uuid4().hex[:12]}"

    def _config(self, thread_id: str) -> dict:
        return {"configurable": {"thread_id": thread_id}}

    def state(self, thread_id: str) -> ChatState:
        snap = self.graph.get_state(self._config(thread_id))
        return ChatState.model_validate(snap.values) if snap.values else ChatState()

    def _check_owner(self, thread_id: str) -> None:
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
        self._check_owner(thread_id)
        if self.waiting(thread_id):
            self.answer(thread_id, "cancel")
        before = len(self.state(thread_id).messages)
        for event in self.graph.stream({"messages": [{"role": "user", "content": text}]}, self._config(thread_id),
                                       context=self.context, stream_mode="custom"):
            if on_delta and isinstance(event, dict) and event.get("delta"):
                on_delta(event["delta"])
        return self.turn_since(thread_id, before)

    def answer(self, thread_id: str, decision: str, args: dict | None = None) -> Turn:
        """Confirm, cancel or edit (new arguments) the change waiting on the thread."""
        if decision not in ("confirm", "cancel", "edit"):
            raise ValueError(f"decision must be confirm, cancel or edit, got {decision!r}")
        self._check_owner(thread_id)
        before = len(self.state(thread_id).messages)
        self.graph.invoke(Command(resume={"decision": decision, "args": args or {}}), self._config(thread_id),
                          context=self.context)
        return self.turn_since(thread_id, before)
