"""The LLM client: one OpenAI-compatible endpoint, structured outputs, every call logged.

    client = LLMClient(LLMConfig.load(), log=SqlCallLog(store))
    r = client.structured(messages, Triage, step="triage", case_ref=case.number)
    if r.fallback:
        ...  # the offline policy decides this step; r.error says why

- :meth:`LLMClient.structured` sends the pydantic model's JSON schema as
  ``response_format`` (``json_schema``; or ``json_object`` with the schema written
  into the prompt), validates the reply, re-asks with the validation error up to
  ``max_retries`` times, and retries timeouts, connection errors, 429 and 5xx with
  exponential backoff up to ``http_tries`` times per request. When it all fails
  the result has ``ok=False, fallback=True`` and the error: model and transport
  failures never raise, so one bad reply never stops a batch.
- :meth:`LLMClient.chat` is free text (optionally with native tool calls);
  :meth:`LLMClient.stream` yields the text deltas as they come.
- Every attempt (a retried call has several) becomes one :class:`CallRecord`
  given to the :class:`CallLog`; :class:`SqlCallLog` writes table ``llm_calls``
  and reads back a case's calls (``xunjian cases trace``) and its cost.
  A failing log never fails the call. The API key is never logged.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, Generic, Protocol, TypeVar

import openai
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from agents.config import LLMConfig
from city.errors import InvalidInput
from city.store.schema import LlmCallRow

log = logging.getLogger("xunjian.llm")

T = TypeVar("T", bound=BaseModel)

RETRY_NOTE = "上次输出无效：{error}\n请只输出符合 schema 的 JSON，不要输出其他文字。"
SCHEMA_NOTE = "只输出一个 JSON 对象（json），符合下面的 JSON Schema，不要输出其他文字：\n{schema}"
RETRYABLE_STATUS = {408, 409, 429}


# -- results and call records ---------------------------------------------------------


class LLMResult(BaseModel):
    ok: bool = False
    raw: str | None = None  # the last reply's text
    error: str | None = None
    fallback: bool = False  # True: use the offline policy for this step
    attempts: int = 0
    prompt_tokens: int = 0  # summed over the attempts
    completion_tokens: int = 0
    latency_ms: int = 0
    model: str | None = None
    call_id: str | None = None


class StructuredResult(LLMResult, Generic[T]):
    value: T | None = None


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str  # JSON text as the model wrote it; may be invalid

    def args(self) -> dict:
        return json.loads(self.arguments or "{}")


class ChatResult(LLMResult):
    tool_calls: list[ToolCall] = []

    @property
    def text(self) -> str:
        return self.raw or ""


class CallRecord(BaseModel):
    """One request to the endpoint, as logged (a row of ``llm_calls``)."""

    id: int | None = None  # set once stored
    at: datetime
    call_id: str
    step: str
    case_ref: str | None = None
    backend: str
    model: str | None = None
    host: str | None = None
    attempt: int
    ok: bool
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: int
    request: dict  # messages, schema name, tools, parameters
    response: str | None = None


class CostSummary(BaseModel):
    case_ref: str | None
    calls: int = 0  # requests sent (attempts)
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0

    @classmethod
    def of(cls, case_ref: str | None, calls: list[CallRecord]) -> CostSummary:
        return cls(case_ref=case_ref, calls=len(calls), failed=sum(not c.ok for c in calls),
                   prompt_tokens=sum(c.prompt_tokens or 0 for c in calls),
                   completion_tokens=sum(c.completion_tokens or 0 for c in calls),
                   latency_ms=sum(c.latency_ms for c in calls))


class CallLog(Protocol):
    def record(self, call: CallRecord) -> None: ...


class MemoryCallLog:
    """Keeps the records in a list (tests, one-off runs)."""

    def __init__(self) -> None:
        self.calls: list[CallRecord] = []

    def record(self, call: CallRecord) -> None:
        self.calls.append(call)

    def calls_for(self, case_ref: str) -> list[CallRecord]:
        return [c for c in self.calls if c.case_ref == case_ref]

    def cost(self, case_ref: str) -> CostSummary:
        return CostSummary.of(case_ref, self.calls_for(case_ref))


class SqlCallLog:
    """Writes each record to ``llm_calls``. Give it a :class:`city.store.Store` (its
    write transactions are used), an Engine or a sessionmaker of a migrated database."""

    def __init__(self, target: Any):
        if hasattr(target, "writing") and hasattr(target, "reading"):  # a city.store.Store
            self._write, self._read = target.writing, target.reading
        else:
            make = sessionmaker(target) if isinstance(target, Engine) else target
            self._write = self._read = make.begin

    def record(self, call: CallRecord) -> None:
        with self._write() as s:
            s.add(LlmCallRow(**call.model_dump(exclude={"id"})))

    def calls_for(self, case_ref: str) -> list[CallRecord]:
        """Every request made for a case, in the order they were made."""
        with self._read() as s:
            rows = s.execute(select(LlmCallRow).where(LlmCallRow.case_ref == case_ref).order_by(LlmCallRow.id)).scalars()
            return [CallRecord.model_validate(r, from_attributes=True) for r in rows]

    def cost(self, case_ref: str) -> CostSummary:
        return CostSummary.of(case_ref, self.calls_for(case_ref))


# -- the client ----------------------------------------------------------------------------


class _Reply(BaseModel):
    text: str | None = None
    tool_calls: list[ToolCall] = []
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    latency_ms: int = 0


class ChatStream:
    """Iterate for the text deltas; ``result`` is the :class:`ChatResult` once the iteration ends."""

    def __init__(self, gen: Iterator[str]):
        self._gen = gen
        self.result: ChatResult | None = None

    def __iter__(self) -> Iterator[str]:
        self.result = yield from self._gen


class LLMClient:
    """The one way the agents talk to a model. ``sleep`` is for tests."""

    def __init__(self, config: LLMConfig | None = None, *, log: CallLog | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.config = config or LLMConfig.load()
        self.log = log
        self._sleep = sleep
        self._model = self.config.model
        self._sdk: openai.OpenAI | None = None
        if self.config.enabled:
            if not self.config.base_url:
                raise InvalidInput(f"LLM backend {self.config.backend!r} needs a base URL: "
                                   "set XUNJIAN_LLM_BASE_URL or XUNJIAN_LLM_PRESET")
            self._sdk = openai.OpenAI(base_url=self.config.base_url, api_key=self.config.secret() or "no-key",
                                      timeout=self.config.timeout_s, max_retries=0)

    def __repr__(self) -> str:
        return f"LLMClient({self.config!r})"

    @property
    def enabled(self) -> bool:
        return self._sdk is not None

    @property
    def supports_tools(self) -> bool:
        return self.config.tools

    # -- public calls ------------------------------------------------------------------

    def structured(self, messages: list[dict], schema: type[T], *, step: str,
                   case_ref: str | None = None) -> StructuredResult[T]:
        """Ask for one ``schema`` object; see the module docstring."""
        name = re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64]
        messages = list(messages)
        if self.config.json_mode == "json_schema":
            js, strict = _schema(schema, self.config.strict)
            params = {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": js, "strict": strict}}}
        else:
            params = {"response_format": {"type": "json_object"}}
            messages = _with_system_note(messages, SCHEMA_NOTE.format(
                schema=json.dumps(schema.model_json_schema(), ensure_ascii=False)))
        res, value = self._run(messages, params, {"schema": name}, step, case_ref,
                               validate=lambda text: schema.model_validate_json(_json_text(text)))
        return StructuredResult[schema](**res.model_dump(exclude={"tool_calls"}), value=value)

    def chat(self, messages: list[dict], *, step: str, case_ref: str | None = None,
             tools: list[dict] | None = None, stream: bool = False) -> ChatResult | ChatStream:
        """Free text, or the model's tool calls. With ``stream=True`` see :meth:`stream`."""
        if tools and not self.supports_tools:
            raise ValueError("this endpoint has no native tool calls (supports_tools=false); use the JSON-action mode")
        if stream:
            return self.stream(messages, step=step, case_ref=case_ref, tools=tools)
        params = {"tools": tools} if tools else {}
        meta = {"tools": [t.get("function", {}).get("name") for t in tools]} if tools else {}
        res, _ = self._run(list(messages), params, meta, step, case_ref)
        return res

    def stream(self, messages: list[dict], *, step: str, case_ref: str | None = None,
               tools: list[dict] | None = None) -> ChatStream:
        """Text deltas as the model writes them; ``.result`` (a ChatResult, with the
        tool calls the model made when ``tools`` were offered) at the end."""
        return ChatStream(self._stream(list(messages), step, case_ref, tools))

    # -- the loop ------------------------------------------------------------------------

    def _run(self, messages: list[dict], params: dict, meta: dict, step: str, case_ref: str | None,
             validate: Callable[[str], BaseModel] | None = None) -> tuple[ChatResult, BaseModel | None]:
        res = ChatResult(call_id=uuid.uuid4().hex, model=self._model)
        if not self.enabled:
            res.fallback, res.error = True, "offline: no LLM configured"
            return res, None
        http_failures = invalid = 0
        while True:
            res.attempts += 1
            reply = self._once(messages, params)
            res.prompt_tokens += reply.prompt_tokens or 0
            res.completion_tokens += reply.completion_tokens or 0
            res.latency_ms += reply.latency_ms
            res.raw, res.tool_calls, res.model = reply.text, reply.tool_calls, reply.model or res.model
            value, error = None, reply.error
            if error is None and validate is not None:
                try:
                    value = validate(reply.text or "")
                except ValidationError as e:
                    error = f"invalid output: {_brief(e)}"
            self._record(res, reply, messages, params, meta, step, case_ref, error)
            if error is None:
                res.ok = True
                return res, value
            res.error = error
            if reply.error and reply.retryable and http_failures + 1 < self.config.http_tries:
                http_failures += 1
                self._sleep(self._delay(http_failures, reply.retry_after))
            elif not reply.error and invalid < self.config.max_retries:
                invalid += 1
                messages = [*messages, {"role": "assistant", "content": reply.text or ""},
                            {"role": "user", "content": RETRY_NOTE.format(error=error.removeprefix("invalid output: "))}]
            else:
                res.fallback = True
                return res, None

    def _delay(self, n: int, retry_after: float | None) -> float:
        delay = self.config.backoff_s * 2 ** (n - 1)
        return max(delay, min(retry_after, 30.0)) if retry_after else delay

    def _model_name(self) -> str:
        if self._model is None:  # vLLM / llama.cpp: the model the server has loaded
            self._model = self._sdk.models.list().data[0].id
        return self._model

    def _create(self, messages: list[dict], params: dict, **extra):
        return self._sdk.chat.completions.create(model=self._model_name(), messages=messages,
                                                 max_tokens=self.config.max_tokens,
                                                 temperature=self.config.temperature, **params, **extra)

    def _once(self, messages: list[dict], params: dict) -> _Reply:
        t0 = time.perf_counter()
        try:
            resp = self._create(messages, params)
            msg = resp.choices[0].message
            reply = _Reply(text=msg.content, model=resp.model,
                           tool_calls=[ToolCall(id=t.id or f"call_{i}", name=t.function.name,
                                                arguments=t.function.arguments or "")
                                       for i, t in enumerate(msg.tool_calls or [])],
                           prompt_tokens=resp.usage and resp.usage.prompt_tokens,
                           completion_tokens=resp.usage and resp.usage.completion_tokens)
        except (openai.OpenAIError, AttributeError, IndexError, TypeError, ValueError) as e:  # ValueError: body not JSON
            reply = self._failure(e)
        reply.latency_ms = round((time.perf_counter() - t0) * 1000)
        return reply

    def _failure(self, e: Exception) -> _Reply:
        """What went wrong with a request, in one line, and whether trying again may help."""
        if isinstance(e, openai.APIStatusError):
            after = e.response.headers.get("retry-after")
            return _Reply(error=f"HTTP {e.status_code} from {self.config.host}: {_short(e.message)}",
                          retryable=e.status_code in RETRYABLE_STATUS or e.status_code >= 500,
                          retry_after=float(after) if after and after.replace(".", "", 1).isdigit() else None)
        if isinstance(e, openai.APITimeoutError):
            return _Reply(error=f"timeout: no reply from {self.config.host} within {self.config.timeout_s:g}s", retryable=True)
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e
            why = _short(str(cause) or type(cause).__name__)
            return _Reply(error=f"cannot connect to {self.config.host}: {why}", retryable=True)
        return _Reply(error=f"malformed reply from {self.config.host}: {type(e).__name__}: {_short(str(e))}")

    def _stream(self, messages: list[dict], step: str, case_ref: str | None,
                tools: list[dict] | None = None) -> Iterator[str]:
        res = ChatResult(call_id=uuid.uuid4().hex, model=self._model)
        params = {"tools": tools} if tools else {}
        meta = {"stream": True, **({"tools": [t.get("function", {}).get("name") for t in tools]} if tools else {})}
        if not self.enabled:
            res.fallback, res.error = True, "offline: no LLM configured"
            return res
        for n in range(1, self.config.http_tries + 1):
            res.attempts = n
            t0 = time.perf_counter()
            try:
                chunks = self._create(messages, params, stream=True, stream_options={"include_usage": True})
                break
            except openai.OpenAIError as e:
                reply = self._failure(e)
                reply.latency_ms = round((time.perf_counter() - t0) * 1000)
                res.latency_ms += reply.latency_ms
                self._record(res, reply, messages, params, meta, step, case_ref, reply.error)
                if not reply.retryable or n == self.config.http_tries:
                    res.error, res.fallback = reply.error, True
                    return res
                self._sleep(self._delay(n, reply.retry_after))
        reply, parts, calls = _Reply(), [], {}
        try:
            for chunk in chunks:
                reply.model = chunk.model or reply.model
                if chunk.usage:
                    reply.prompt_tokens, reply.completion_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                d = chunk.choices[0].delta if chunk.choices else None
                for tc in (d.tool_calls or []) if d else []:  # tool calls arrive in pieces: assemble them
                    acc = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    acc["id"] = tc.id or acc["id"]
                    if tc.function:
                        acc["name"] += tc.function.name or ""
                        acc["arguments"] += tc.function.arguments or ""
                if d and d.content:
                    parts.append(d.content)
                    yield d.content
        except GeneratorExit:
            reply.error = "stream stopped by the caller"
            raise
        except Exception as e:  # noqa: BLE001 - whatever breaks a stream mid-way is a transport failure
            reply.error = f"stream broke: {type(e).__name__}: {_short(str(e))}"
        finally:  # also when the caller stops early
            reply.text = "".join(parts)
            reply.tool_calls = [ToolCall(id=c["id"] or f"call-{i}", name=c["name"], arguments=c["arguments"])
                                for i, c in sorted(calls.items())]
            res.tool_calls = reply.tool_calls
            reply.latency_ms = round((time.perf_counter() - t0) * 1000)
            res.raw, res.model, res.error, res.ok = reply.text, reply.model or res.model, reply.error, reply.error is None
            res.prompt_tokens, res.completion_tokens = reply.prompt_tokens or 0, reply.completion_tokens or 0
            res.latency_ms += reply.latency_ms
            res.fallback = not res.ok
            self._record(res, reply, messages, params, meta, step, case_ref, reply.error)
        return res

    # -- logging ---------------------------------------------------------------------------

    def _record(self, res: ChatResult, reply: _Reply, messages: list[dict], params: dict, meta: dict,
                step: str, case_ref: str | None, error: str | None) -> None:
        if self.log is None:
            return
        try:
            response = reply.text
            if reply.tool_calls:
                response = json.dumps({"content": reply.text, "tool_calls": [t.model_dump() for t in reply.tool_calls]},
                                      ensure_ascii=False)
            request = {"messages": messages, **meta, "max_tokens": self.config.max_tokens,
                       "temperature": self.config.temperature}
            if "response_format" in params:
                request["response_format"] = params["response_format"]["type"]
            self.log.record(CallRecord(
                at=datetime.now(timezone.utc), call_id=res.call_id, step=step, case_ref=case_ref,
                backend=self.config.backend, model=reply.model or self._model, host=self.config.host,
                attempt=res.attempts, ok=error is None, error=error, prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens, latency_ms=reply.latency_ms,
                request=json.loads(json.dumps(request, ensure_ascii=False, default=str)), response=response))
        except Exception:  # noqa: BLE001 - a broken log must not break the call
            log.warning("could not log an LLM call (step %s, case %s)", step, case_ref, exc_info=True)


# -- helpers -----------------------------------------------------------------------------


def _schema(schema: type[BaseModel], strict: bool) -> tuple[dict, bool]:
    """The JSON schema to send; strict mode needs every field required and no extras."""
    if strict:
        try:
            from openai.lib._pydantic import to_strict_json_schema

            return to_strict_json_schema(schema), True
        except Exception:  # noqa: BLE001 - an SDK without it, or a schema it cannot make strict
            pass
    return schema.model_json_schema(), False


def _with_system_note(messages: list[dict], note: str) -> list[dict]:
    if messages and messages[0].get("role") == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{note}"}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


_THINK = re.compile(r"<think>.*?</think>", re.S)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def _json_text(text: str) -> str:
    """The JSON in a reply, without reasoning tags or a Markdown code fence around it."""
    text = _THINK.sub("", text).strip()
    m = _FENCE.match(text)
    return m.group(1) if m else text


def _brief(e: ValidationError, limit: int = 600) -> str:
    parts = [f"{'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}" for err in e.errors(include_url=False)[:5]]
    return _short("; ".join(parts), limit)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
