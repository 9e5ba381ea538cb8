"""The dispatch agent over HTTP, streamed as server-sent events.

A thread belongs to the user who opened it. ``POST …/messages`` and
``POST …/answer`` stream with ``Accept: text/event-stream``:

- ``delta`` ``{"text"}``: a piece of the reply as the model writes it;
- ``reply`` ``{"text"}``: each complete assistant message of the turn;
- ``waiting`` ``{"plan", "text", "warnings"}``: a change planned and waiting for
  confirmation (answer with ``confirm``, ``cancel`` or ``edit`` + args);
- ``done`` ``{"thread_id", "replies", "waiting"}``: the end of the turn;
- ``error`` ``{"detail"}``: the turn failed (nothing was changed by it).

Without that header they answer the same turn as one JSON object. The turn
runs to its end in a worker thread even if the client goes away, so the
thread's state is never left half-written.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from agents.chat.session import Turn
from app.api.deps import CurrentUser, ServicesDep
from city.errors import InvalidInput, XunjianError

router = APIRouter(prefix="/api/chat", tags=["chat"])


class Message(BaseModel):
    text: str = Field(min_length=1, max_length=4000, description="你的话（或 /help 等命令）")


class Answer(BaseModel):
    decision: Literal["confirm", "cancel", "edit"]
    args: dict = Field(default_factory=dict, description="edit 时的新参数，如 {\"department\": \"JB-SZ\"}")


class Thread(BaseModel):
    thread_id: str
    mode: Literal["llm", "commands"]
    messages: list[dict] = []
    waiting: dict | None = None


def _mode(services) -> Literal["llm", "commands"]:
    cfg = services.llm_config
    return "llm" if cfg is not None and getattr(cfg, "enabled", False) else "commands"


@router.post("/threads", response_model=Thread, status_code=201)
def new_thread(user: CurrentUser, services: ServicesDep) -> Thread:
    """开一个新会话（第一个发言的人即会话所有者）。"""
    from agents.chat.session import Chat

    return Thread(thread_id=Chat.new_thread(), mode=_mode(services))


@router.get("/threads/{thread_id}", response_model=Thread)
def get_thread(thread_id: str, user: CurrentUser, services: ServicesDep) -> Thread:
    """会话的对话记录（用户与助手的消息）和等待确认的操作。"""
    chat = services.chat(user)
    chat.check_owner(thread_id)
    msgs = [{"role": m["role"], "content": m["content"]} for m in chat.state(thread_id).messages
            if m["role"] in ("user", "assistant") and m.get("content") and not m.get("tool_calls")]
    return Thread(thread_id=thread_id, mode=_mode(services), messages=msgs, waiting=chat.waiting(thread_id))


def _sse(event: str, data) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _events(run: Callable[[], Iterator[str | Turn]]) -> AsyncIterator[bytes]:
    """Run the chat turn in its own thread (LangGraph's context stays in one thread)
    and stream what it yields."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    end = object()

    def work() -> None:
        try:
            for item in run():
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except Exception as e:  # noqa: BLE001 - reported to the client as an error event
            loop.call_soon_threadsafe(queue.put_nowait, e)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, end)

    threading.Thread(target=work, name="chat-turn", daemon=True).start()
    while (item := await queue.get()) is not end:
        if isinstance(item, Turn):
            for reply in item.replies:
                yield _sse("reply", {"text": reply})
            if item.waiting:
                yield _sse("waiting", item.waiting)
            yield _sse("done", item.model_dump(mode="json"))
        elif isinstance(item, Exception):
            detail = str(item) if isinstance(item, XunjianError) else f"对话出错：{type(item).__name__}"
            yield _sse("error", {"detail": detail})
        else:
            yield _sse("delta", {"text": item})


def _respond(request: Request, run: Callable[[], Iterator[str | Turn]]):
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(_events(run), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    for item in run():
        if isinstance(item, Turn):
            return item
    raise InvalidInput("对话没有产生结果")


@router.post("/threads/{thread_id}/messages", response_model=Turn,
             responses={200: {"content": {"text/event-stream": {}}, "description": "JSON，或 SSE 流"}})
def send(thread_id: str, body: Message, request: Request, user: CurrentUser, services: ServicesDep):
    """发一句话。带 ``Accept: text/event-stream`` 时以 SSE 流式返回（delta/reply/waiting/done/error）。"""
    chat = services.chat(user)
    chat.check_owner(thread_id)  # refused before anything streams
    return _respond(request, lambda: chat.stream(thread_id, body.text))


@router.post("/threads/{thread_id}/answer", response_model=Turn,
             responses={200: {"content": {"text/event-stream": {}}, "description": "JSON，或 SSE 流"}})
def answer(thread_id: str, body: Answer, request: Request, user: CurrentUser, services: ServicesDep):
    """确认（confirm）、取消（cancel）或修改参数（edit）会话中等待确认的操作。"""
    chat = services.chat(user)
    chat.check_owner(thread_id)
    if not chat.waiting(thread_id):
        raise InvalidInput("这个会话没有等待确认的操作")
    return _respond(request, lambda: chat.stream_answer(thread_id, body.decision, body.args))
