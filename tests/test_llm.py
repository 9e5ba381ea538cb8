"""The LLM client against the scripted fake server: the real ``openai`` client runs."""

from __future__ import annotations

import json
import socket

import pytest
from pydantic import BaseModel, Field
from sqlalchemy import text

from agents.config import PRESETS, LLMConfig
from agents.llm import CallRecord, LLMClient, MemoryCallLog, SqlCallLog
from city.errors import DataError, InvalidInput
from fake_openai import API_KEY, Reply


class Triage(BaseModel):
    code: str = Field(pattern=r"^\d{5}$", description="事项代码")
    confidence: float = Field(ge=0, le=1)
    reason: str


GOOD = {"code": "06010", "confidence": 0.9, "reason": "人行道上有生活垃圾"}
MESSAGES = [{"role": "system", "content": "你是城管分类员。"}, {"role": "user", "content": "人行道上堆了一堆生活垃圾"}]


class Sleeps(list):
    """Records the backoff delays instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(fake, log=None, sleep=None, **over) -> LLMClient:
    return LLMClient(fake.config(**over), log=log, sleep=sleep if sleep is not None else Sleeps())


def test_valid_structured_output_sends_the_schema(fake_llm):
    fake_llm.script(Reply.json(GOOD, prompt_tokens=42, completion_tokens=17))
    r = client(fake_llm).structured(MESSAGES, Triage, step="triage", case_ref="C1")
    assert r.ok and not r.fallback and r.error is None
    assert isinstance(r.value, Triage) and r.value.code == "06010"
    assert (r.attempts, r.prompt_tokens, r.completion_tokens, r.model) == (1, 42, 17, "fake-model")
    assert json.loads(r.raw) == GOOD and r.latency_ms >= 0
    [req] = fake_llm.requests
    assert req["model"] == "fake-model" and req["messages"] == MESSAGES
    assert req["max_tokens"] == 512 and req["temperature"] == 0.1
    fmt = req["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Triage" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert set(schema["properties"]) == {"code", "confidence", "reason"}
    assert set(schema["required"]) == {"code", "confidence", "reason"} and schema["additionalProperties"] is False
    assert schema["properties"]["code"]["pattern"] == r"^\d{5}$"


def test_invalid_json_is_retried_with_the_error(fake_llm):
    fake_llm.script(Reply.text("好的，分类如下：06010"), Reply.json(GOOD))
    r = client(fake_llm).structured(MESSAGES, Triage, step="triage")
    assert r.ok and r.value.code == "06010" and r.attempts == 2
    first, second = fake_llm.requests
    assert first["messages"] == MESSAGES
    assert second["messages"][:2] == MESSAGES
    assert second["messages"][2] == {"role": "assistant", "content": "好的，分类如下：06010"}
    retry = second["messages"][3]
    assert retry["role"] == "user" and retry["content"].startswith("上次输出无效：")
    assert "Invalid JSON" in retry["content"] and "请只输出符合 schema 的 JSON" in retry["content"]


def test_schema_invalid_until_retries_run_out_falls_back(fake_llm):
    bad = {"code": "6010", "confidence": 1.5, "reason": "x"}
    fake_llm.script(Reply.json(bad), Reply.json(bad), Reply.json(GOOD))
    r = client(fake_llm, max_retries=1).structured(MESSAGES, Triage, step="triage")
    assert not r.ok and r.fallback and r.value is None and r.attempts == 2
    assert "code" in r.error and "confidence" in r.error and r.error.startswith("invalid output")
    assert "code" in fake_llm.requests[1]["messages"][-1]["content"]  # the error went back to the model
    assert len(fake_llm.requests) == 2


def test_code_fences_and_reasoning_are_stripped(fake_llm):
    fake_llm.script(Reply.text("<think>先想想</think>\n```json\n" + json.dumps(GOOD) + "\n```"))
    r = client(fake_llm).structured(MESSAGES, Triage, step="triage")
    assert r.ok and r.value.code == "06010"


def test_5xx_is_retried_with_exponential_backoff(fake_llm):
    sleeps = Sleeps()
    fake_llm.script(Reply.error(500), Reply.error(503), Reply.json(GOOD))
    r = client(fake_llm, sleep=sleeps, backoff_s=0.5).structured(MESSAGES, Triage, step="triage")
    assert r.ok and r.attempts == 3 and sleeps == [0.5, 1.0]
    assert fake_llm.requests[0] == fake_llm.requests[2]  # the same request again, nothing appended


def test_429_is_retried_honouring_retry_after(fake_llm):
    sleeps = Sleeps()
    fake_llm.script(Reply.error(429, "rate limited", headers={"Retry-After": "2"}), Reply.json(GOOD))
    r = client(fake_llm, sleep=sleeps).structured(MESSAGES, Triage, step="triage")
    assert r.ok and r.attempts == 2 and sleeps == [2.0]


def test_http_errors_until_tries_run_out_fall_back(fake_llm):
    fake_llm.script(*[Reply.error(502)] * 3, Reply.json(GOOD))
    r = client(fake_llm).structured(MESSAGES, Triage, step="triage")
    assert r.fallback and not r.ok and r.attempts == 3 and r.error.startswith("HTTP 502")


def test_client_errors_are_not_retried(fake_llm):
    fake_llm.script(Reply.error(400, "response_format json_schema is not supported"), Reply.json(GOOD))
    r = client(fake_llm).structured(MESSAGES, Triage, step="triage")
    assert r.fallback and r.attempts == 1 and "400" in r.error and "json_schema is not supported" in r.error


def test_timeout_then_ok(fake_llm):
    fake_llm.script(Reply.json(GOOD, delay_s=1.0), Reply.json(GOOD))
    log = MemoryCallLog()
    r = client(fake_llm, log=log, timeout_s=0.2).structured(MESSAGES, Triage, step="triage", case_ref="C1")
    assert r.ok and r.attempts == 2
    assert [c.ok for c in log.calls] == [False, True] and "timeout" in log.calls[0].error


def test_all_timeouts_fall_back(fake_llm):
    fake_llm.script(*[Reply.json(GOOD, delay_s=1.0)] * 2)
    r = client(fake_llm, timeout_s=0.2, http_tries=2).structured(MESSAGES, Triage, step="triage")
    assert r.fallback and r.attempts == 2 and "timeout" in r.error


def test_malformed_reply_falls_back(fake_llm):
    fake_llm.script(Reply.malformed(), Reply.malformed('{"id": "x", "choices": []}'))
    c = client(fake_llm)
    for _ in range(2):
        r = c.structured(MESSAGES, Triage, step="triage")
        assert r.fallback and not r.ok and r.error


def test_connection_refused_falls_back(fake_llm):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    cfg = fake_llm.config(base_url=f"http://127.0.0.1:{port}/v1")
    r = LLMClient(cfg, sleep=sleeps).structured(MESSAGES, Triage, step="triage")
    assert r.fallback and r.attempts == 3 and f"cannot connect to 127.0.0.1:{port}" in r.error
    assert len(sleeps) == 2


def test_offline_backend_falls_back_without_a_request(fake_llm):
    c = LLMClient(LLMConfig(), log=MemoryCallLog())
    r = c.structured(MESSAGES, Triage, step="triage")
    assert not c.enabled and r.fallback and r.attempts == 0 and "offline" in r.error
    assert c.chat(MESSAGES, step="chat").fallback and c.log.calls == []


def test_json_object_mode_puts_the_schema_in_the_prompt(fake_llm):
    fake_llm.script(Reply.json(GOOD))
    r = client(fake_llm, json_mode="json_object").structured(MESSAGES, Triage, step="triage")
    assert r.ok
    [req] = fake_llm.requests
    assert req["response_format"] == {"type": "json_object"}
    system = req["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("你是城管分类员。")
    assert "JSON Schema" in system["content"] and '"confidence"' in system["content"]
    assert req["messages"][1:] == MESSAGES[1:]


def test_model_is_asked_from_the_server_when_not_configured(fake_llm):
    fake_llm.script(Reply.json(GOOD))
    r = client(fake_llm, model=None).structured(MESSAGES, Triage, step="triage")
    assert r.ok and fake_llm.requests[0]["model"] == "fake-model"
    assert [x.path for x in fake_llm.received] == ["/v1/models", "/v1/chat/completions"]


def test_calls_are_logged_to_the_store(fake_llm, db_url, city):
    from city.store import Store

    store = Store(db_url, city)  # a SQLite file, and a PostgreSQL schema when configured
    try:
        calls = SqlCallLog(store)
        c = client(fake_llm, log=calls)
        fake_llm.script(Reply.text("不是 JSON", prompt_tokens=10, completion_tokens=3),
                        Reply.json(GOOD, prompt_tokens=20, completion_tokens=15),
                        Reply.json(GOOD, prompt_tokens=99, completion_tokens=9),
                        Reply.text("您好，已受理。", prompt_tokens=30, completion_tokens=8))
        c.structured(MESSAGES, Triage, step="triage", case_ref="500105-20261123-0001")
        c.structured(MESSAGES, Triage, step="triage", case_ref="other")
        c.chat(MESSAGES, step="draft_reply", case_ref="500105-20261123-0001")

        trace = calls.calls_for("500105-20261123-0001")
        assert [(t.step, t.attempt, t.ok) for t in trace] == [("triage", 1, False), ("triage", 2, True), ("draft_reply", 1, True)]
        assert trace[0].call_id == trace[1].call_id != trace[2].call_id
        assert [(t.prompt_tokens, t.completion_tokens) for t in trace] == [(10, 3), (20, 15), (30, 8)]
        first = trace[0]
        assert first.backend == "openai" and first.model == "fake-model" and first.host == fake_llm.url.split("/")[2]
        assert first.request["messages"] == MESSAGES and first.request["schema"] == "Triage"
        assert first.response == "不是 JSON" and "Invalid JSON" in first.error
        assert trace[1].request["messages"][-1]["content"].startswith("上次输出无效")
        assert trace[2].response == "您好，已受理。" and "schema" not in trace[2].request
        assert all(t.latency_ms >= 0 and t.at.tzinfo is not None for t in trace)

        cost = calls.cost("500105-20261123-0001")
        assert (cost.calls, cost.failed, cost.prompt_tokens, cost.completion_tokens) == (3, 1, 60, 26)
        assert cost.latency_ms == sum(t.latency_ms for t in trace)
        assert calls.cost("nothing").calls == 0
        assert SqlCallLog(store.read_engine).calls_for("500105-20261123-0001") == trace  # or from a bare Engine
        assert trace[0].id < trace[1].id < trace[2].id

        with store.reading() as s:
            dump = json.dumps([list(r) for r in s.execute(text("SELECT * FROM llm_calls"))], default=str)
        assert API_KEY not in dump
        assert all(x.headers.get("authorization") == f"Bearer {API_KEY}" for x in fake_llm.received)  # it was sent
    finally:
        store.close()


def test_a_broken_log_does_not_break_the_call(fake_llm):
    class Broken:
        def record(self, call: CallRecord) -> None:
            raise RuntimeError("disk full")

    fake_llm.script(Reply.json(GOOD))
    assert client(fake_llm, log=Broken()).structured(MESSAGES, Triage, step="triage").ok


def test_streaming_chat_yields_the_deltas(fake_llm):
    fake_llm.script(Reply(content="您好，案件已受理。", chunks=["您好，", "案件", "已受理。"], prompt_tokens=12, completion_tokens=6))
    log = MemoryCallLog()
    stream = client(fake_llm, log=log).chat(MESSAGES, step="chat", case_ref="C1", stream=True)
    assert list(stream) == ["您好，", "案件", "已受理。"]
    r = stream.result
    assert r.ok and r.text == "您好，案件已受理。" and (r.prompt_tokens, r.completion_tokens) == (12, 6)
    assert fake_llm.requests[0]["stream"] is True
    [rec] = log.calls
    assert rec.ok and rec.response == "您好，案件已受理。" and rec.request["stream"] is True


def test_streaming_failure_falls_back(fake_llm):
    fake_llm.script(Reply.error(503), Reply.error(503), Reply.error(503))
    stream = client(fake_llm).stream(MESSAGES, step="chat")
    assert list(stream) == [] and stream.result.fallback and stream.result.attempts == 3


def test_chat_with_tools(fake_llm):
    tools = [{"type": "function", "function": {"name": "find_cases", "description": "查找案件",
                                               "parameters": {"type": "object", "properties": {"code": {"type": "string"}}}}}]
    fake_llm.script(Reply.tool("find_cases", {"code": "06010"}))
    log = MemoryCallLog()
    r = client(fake_llm, log=log).chat(MESSAGES, step="chat", tools=tools)
    assert r.ok and r.text == "" and r.tool_calls[0].name == "find_cases" and r.tool_calls[0].args() == {"code": "06010"}
    assert fake_llm.requests[0]["tools"] == tools
    assert log.calls[0].request["tools"] == ["find_cases"] and "find_cases" in log.calls[0].response
    with pytest.raises(ValueError, match="JSON-action"):
        client(fake_llm, supports_tools=False).chat(MESSAGES, step="chat", tools=tools)


# -- configuration -----------------------------------------------------------------------


def test_nothing_configured_is_offline(tmp_path):
    cfg = LLMConfig.load(env={"XUNJIAN_HOME": str(tmp_path)})
    assert cfg.backend == "offline" and not cfg.enabled


def test_precedence_env_over_file_over_preset(tmp_path):
    file = tmp_path / "llm.yaml"
    file.write_text("preset: deepseek\nmodel: deepseek-reasoner\ntimeout_s: 30\nmax_tokens: 1000\n", encoding="utf-8")
    env = {"XUNJIAN_HOME": str(tmp_path), "XUNJIAN_LLM_MAX_TOKENS": "256", "DEEPSEEK_API_KEY": "sk-deep"}
    cfg = LLMConfig.load(env=env)  # llm.yaml in the data dir is read by default
    assert cfg.preset == "deepseek" and cfg.backend == "openai"
    assert cfg.base_url == PRESETS["deepseek"]["base_url"]  # preset
    assert cfg.json_mode == "json_object"  # preset
    assert cfg.model == "deepseek-reasoner" and cfg.timeout_s == 30  # file over preset
    assert cfg.max_tokens == 256  # env over file
    assert cfg.secret() == "sk-deep"  # the preset's own key variable

    other = tmp_path / "other.yaml"
    other.write_text("model: from-file\napi_key: sk-file\n", encoding="utf-8")
    env = {"XUNJIAN_LLM_CONFIG": str(other), "XUNJIAN_LLM_PRESET": "qwen", "XUNJIAN_LLM_MODEL": "qwen-max",
           "XUNJIAN_LLM_API_KEY": "sk-env", "DASHSCOPE_API_KEY": "sk-dash"}
    cfg = LLMConfig.load(env=env)
    assert (cfg.model, cfg.secret(), cfg.base_url) == ("qwen-max", "sk-env", PRESETS["qwen"]["base_url"])
    assert LLMConfig.load(env={**env, "XUNJIAN_LLM_API_KEY": ""}).secret() == "sk-file"


def test_presets_and_inferred_backend(tmp_path):
    home = {"XUNJIAN_HOME": str(tmp_path)}
    assert set(PRESETS) >= {"openai", "deepseek", "qwen", "vllm", "ollama", "llamacpp", "local"}
    local = LLMConfig.load(env={**home, "XUNJIAN_LLM_PRESET": "local"})
    assert local.backend == "local" and local.base_url == "http://127.0.0.1:8080/v1" and not local.tools
    assert LLMConfig.load(env={**home, "XUNJIAN_LLM_PRESET": "ollama"}).model == "qwen2.5:1.5b-instruct"
    custom = LLMConfig.load(env={**home, "XUNJIAN_LLM_BASE_URL": "http://gpu-box:8000/v1", "OPENAI_API_KEY": "sk-o"})
    assert custom.backend == "openai" and custom.host == "gpu-box:8000" and custom.secret() == "sk-o"
    assert LLMConfig.load(env={**home, "XUNJIAN_LLM_PRESET": "deepseek", "OPENAI_API_KEY": "sk-o"}).api_key is None
    with pytest.raises(InvalidInput, match="unknown LLM preset 'gpt'.*deepseek"):
        LLMConfig.load(env={**home, "XUNJIAN_LLM_PRESET": "gpt"})
    with pytest.raises(InvalidInput, match="timeout_s"):
        LLMConfig.load(env={**home, "XUNJIAN_LLM_TIMEOUT_S": "soon"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: x\n", encoding="utf-8")
    with pytest.raises(DataError, match="unknown setting.*modle"):
        LLMConfig.load(env={"XUNJIAN_LLM_CONFIG": str(bad)})
    with pytest.raises(InvalidInput, match="needs a base URL"):
        LLMClient(LLMConfig(backend="openai"))


def test_the_api_key_is_never_shown(fake_llm):
    cfg = LLMConfig.load(env={"XUNJIAN_LLM_BASE_URL": fake_llm.url, "XUNJIAN_LLM_API_KEY": API_KEY,
                              "XUNJIAN_LLM_MODEL": "fake-model", "XUNJIAN_HOME": "/nonexistent"})
    c = LLMClient(cfg)
    for shown in (repr(cfg), str(cfg), cfg.model_dump_json(), repr(c), json.dumps(cfg.model_dump(), default=str)):
        assert API_KEY not in shown
    assert cfg.secret() == API_KEY


def test_a_stream_with_tools_assembles_the_tool_calls(fake_llm):
    from agents.llm import LLMClient, MemoryCallLog

    fake_llm.script(Reply.tool("find_cases", {"area": "江北区", "limit": 5}))
    log = MemoryCallLog()
    tools = [{"type": "function", "function": {"name": "find_cases", "parameters": {"type": "object", "properties": {}}}}]
    stream = LLMClient(fake_llm.config(), log=log).chat(MESSAGES, step="chat", case_ref="C1", tools=tools, stream=True)
    assert list(stream) == []  # no text, only a tool call
    res = stream.result
    assert res.ok and [c.name for c in res.tool_calls] == ["find_cases"]
    assert res.tool_calls[0].args() == {"area": "江北区", "limit": 5}
    assert fake_llm.requests[0]["tools"] == tools and fake_llm.requests[0]["stream"] is True
    call = log.calls[0]
    assert call.request["tools"] == ["find_cases"] and call.request["stream"] is True
    assert json.loads(call.response)["tool_calls"][0]["name"] == "find_cases"
