"""A scripted fake OpenAI-compatible server on loopback, so tests run the real ``openai`` client.

    def test_retry(fake_llm):
        fake_llm.script(Reply.status(500), Reply.json({"code": "06010"}))
        client = LLMClient(fake_llm.config())
        ...
        assert len(fake_llm.requests) == 2

``POST /v1/chat/completions`` answers with the next scripted :class:`Reply`, in
order (JSON or ``stream: true`` server-sent events ending in ``data: [DONE]``);
with the script used up it answers HTTP 500 "script exhausted". ``GET
/v1/models`` lists the one model. Every request is kept in ``received``
(``requests``: the chat-completion bodies).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.config import LLMConfig

API_KEY = "sk-fake-0123456789abcdef"


@dataclass
class Reply:
    """One scripted answer. Build with the class methods."""

    content: str | None = None
    tool_calls: list[dict] | None = None  # [{"name": ..., "arguments": {...}}]
    status: int = 200
    delay_s: float = 0.0  # wait before answering (longer than the client's timeout: a timeout)
    raw_body: str | None = None  # sent as is instead of a completion (malformed replies)
    headers: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int | None = None  # default: characters of the prompt
    completion_tokens: int | None = None  # default: characters of the content
    chunks: list[str] | None = None  # stream deltas (default: the content in 4-character pieces)

    @classmethod
    def json(cls, obj: Any, **kw) -> Reply:
        return cls(content=json.dumps(obj, ensure_ascii=False), **kw)

    @classmethod
    def text(cls, text: str, **kw) -> Reply:
        return cls(content=text, **kw)

    @classmethod
    def tool(cls, name: str, arguments: dict, **kw) -> Reply:
        return cls(tool_calls=[{"name": name, "arguments": arguments}], **kw)

    @classmethod
    def error(cls, status: int, message: str = "scripted error", **kw) -> Reply:
        body = json.dumps({"error": {"message": message, "type": "server_error", "code": status}})
        return cls(status=status, raw_body=body, **kw)

    @classmethod
    def malformed(cls, body: str = '{"id": "x", "choices": [') -> Reply:
        return cls(raw_body=body)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any


class FakeLLM:
    """The server; ``url`` is its base URL (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, model: str = "fake-model"):
        self.model = model
        self.received: list[Received] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-openai", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def requests(self) -> list[dict]:
        """The bodies of the chat-completion requests, in order."""
        return [r.body for r in self.received if r.path.endswith("/chat/completions")]

    def script(self, *replies: Reply) -> FakeLLM:
        with self._lock:
            self._script.extend(replies)
        return self

    def config(self, **over) -> LLMConfig:
        """A config pointing at this server, with short timeouts and backoff."""
        base = {"backend": "openai", "base_url": self.url, "model": self.model, "api_key": API_KEY,
                "timeout_s": 5.0, "backoff_s": 0.01}
        return LLMConfig(**{**base, **over})

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else Reply.error(500, "fake_openai: script exhausted")


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-openai/1"

    def log_message(self, *args) -> None:  # quiet
        pass

    @property
    def fake(self) -> FakeLLM:
        return self.server.fake

    def do_GET(self) -> None:  # noqa: N802
        self._keep("GET", None)
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": self.fake.model, "object": "model", "created": 0, "owned_by": "fake"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self._keep("POST", body)
        if self.path.rstrip("/") != "/v1/chat/completions" or not isinstance(body, dict):
            self._send_json(404 if isinstance(body, dict) else 400, {"error": {"message": "unexpected request"}})
            return
        reply = self.fake._next()
        if reply.delay_s:
            self.fake._stopping.wait(reply.delay_s)
        try:
            if reply.raw_body is not None or reply.status != 200:
                self._send(reply.status, reply.raw_body or "", "application/json", reply.headers)
            elif body.get("stream"):
                self._stream(body, reply)
            else:
                self._send_json(200, self._completion(body, reply), reply.headers)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    # -- answers ---------------------------------------------------------------------

    def _keep(self, method: str, body: Any) -> None:
        with self.fake._lock:
            self.fake.received.append(Received(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body))

    def _usage(self, body: dict, reply: Reply) -> dict:
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = sum(len(m.get("content") or "") for m in body.get("messages", []) if isinstance(m.get("content"), str))
        completion = reply.completion_tokens if reply.completion_tokens is not None else len(reply.content or "")
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _tool_calls(self, reply: Reply) -> list[dict]:
        return [{"id": f"call_{i}", "type": "function",
                 "function": {"name": t["name"], "arguments": t["arguments"] if isinstance(t["arguments"], str)
                              else json.dumps(t["arguments"], ensure_ascii=False)}}
                for i, t in enumerate(reply.tool_calls or [])]

    def _completion(self, body: dict, reply: Reply) -> dict:
        message = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply)
        return {"id": f"chatcmpl-fake-{len(self.fake.received)}", "object": "chat.completion", "created": int(time.time()),
                "model": self.fake.model, "usage": self._usage(body, reply),
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if reply.tool_calls else "stop"}]}

    def _stream(self, body: dict, reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        base = {"id": f"chatcmpl-fake-{len(self.fake.received)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.fake.model}

        def event(choices: list[dict], **extra) -> None:
            self.wfile.write(f"data: {json.dumps({**base, 'choices': choices, **extra}, ensure_ascii=False)}\n\n".encode())
            self.wfile.flush()

        text = reply.content or ""
        pieces = reply.chunks if reply.chunks is not None else [text[i:i + 4] for i in range(0, len(text), 4)]
        event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for piece in pieces:
            event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        if reply.tool_calls:
            calls = [{"index": i, **c} for i, c in enumerate(self._tool_calls(reply))]
            event([{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}])
        event([{"index": 0, "delta": {}, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}])
        if (body.get("stream_options") or {}).get("include_usage"):
            event([], usage=self._usage(body, reply))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False), "application/json", headers or {})

    def _send(self, status: int, text: str, content_type: str, headers: dict[str, str]) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_llm():
    """A running :class:`FakeLLM` with an empty script."""
    fake = FakeLLM()
    try:
        yield fake
    finally:
        fake.close()
