"""The chat thread's state: the conversation (OpenAI-format messages) and the
action waiting for the user's confirmation."""

from __future__ import annotations

import operator
from typing import Annotated

from pydantic import BaseModel


class ChatState(BaseModel):
    messages: Annotated[list[dict], operator.add] = []
    """user / assistant (with tool_calls) / tool messages, as sent to the model"""
    owner: str | None = None
    """the user who opened the thread; nobody else may continue it"""
    pending: dict | None = None
    """a PlannedAction (JSON) waiting at the confirmation interrupt"""
    rounds: int = 0
    """tool rounds in the current turn (capped)"""
