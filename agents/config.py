"""LLM settings: which OpenAI-compatible endpoint, which model, how patient.

Backends:

- ``offline``: no LLM; every agent uses the offline policy (the default when
  nothing is configured).
- ``local``: the embedded llama.cpp ``llama-server`` on loopback
  (``xunjian llm install`` / ``xunjian llm serve``).
- ``openai``: any OpenAI-compatible endpoint (OpenAI, DeepSeek, DashScope,
  vLLM, Ollama, a llama.cpp server you run yourself).

Presets (``XUNJIAN_LLM_PRESET=deepseek``, or ``preset: deepseek`` in the file):

============  ===================================================  ==========================  ============  =================
preset        base_url                                             model                       json_mode     API key from
============  ===================================================  ==========================  ============  =================
openai        https://api.openai.com/v1                            gpt-4o-mini                 json_schema   OPENAI_API_KEY
deepseek      https://api.deepseek.com/v1                          deepseek-chat               json_object   DEEPSEEK_API_KEY
qwen          https://dashscope.aliyuncs.com/compatible-mode/v1    qwen-plus                   json_object   DASHSCOPE_API_KEY
vllm          http://127.0.0.1:8000/v1                             (asked from /v1/models)     json_schema   none
ollama        http://127.0.0.1:11434/v1                            qwen2.5:1.5b-instruct       json_schema   none
llamacpp      http://127.0.0.1:8080/v1                             qwen2.5-coder-1.5b-instruct json_schema   none
local         (same as llamacpp, backend ``local``: the embedded model)
============  ===================================================  ==========================  ============  =================

DeepSeek and DashScope take ``response_format={"type": "json_object"}`` but not
``json_schema``, so with them the schema is written into the prompt. The small
local models get no native tool calls (``supports_tools: false``): the chat
agent uses its JSON-action mode there.

Where settings come from, strongest first: environment variables
``XUNJIAN_LLM_<FIELD>`` (``XUNJIAN_LLM_BACKEND``, ``_BASE_URL``, ``_MODEL``,
``_API_KEY``, ``_TIMEOUT_S``, ``_MAX_TOKENS``, ``_TEMPERATURE``, ``_MAX_RETRIES``,
``_HTTP_TRIES``, ``_BACKOFF_S``, ``_JSON_MODE``, ``_STRICT``, ``_SUPPORTS_TOOLS``),
then the YAML file named by ``XUNJIAN_LLM_CONFIG`` (default ``llm.yaml`` in the
data directory, if present) with the same field names in lower case, then the
preset, then the defaults below. The API key falls back to the preset's own
variable (table above; ``OPENAI_API_KEY`` when there is no preset). Without a
backend named anywhere, a base URL means ``openai``; nothing means ``offline``.

The API key is a secret: ``repr``/``str``/``model_dump_json`` mask it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from city import settings
from city.errors import DataError, InvalidInput

ENV_PREFIX = "XUNJIAN_LLM_"

PRESETS: dict[str, dict] = {
    "openai": {"backend": "openai", "base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini",
               "json_mode": "json_schema", "api_key_env": "OPENAI_API_KEY"},
    "deepseek": {"backend": "openai", "base_url": "https://api.deepseek.com/v1", "model": "deepseek-chat",
                 "json_mode": "json_object", "api_key_env": "DEEPSEEK_API_KEY"},
    "qwen": {"backend": "openai", "base_url": "https://dashscope.aliyuncs.com/compatible-mode/v1", "model": "qwen-plus",
             "json_mode": "json_object", "api_key_env": "DASHSCOPE_API_KEY"},
    "vllm": {"backend": "openai", "base_url": "http://127.0.0.1:8000/v1", "json_mode": "json_schema"},
    "ollama": {"backend": "openai", "base_url": "http://127.0.0.1:11434/v1", "model": "qwen2.5:1.5b-instruct",
               "json_mode": "json_schema", "supports_tools": False},
    "llamacpp": {"backend": "openai", "base_url": "http://127.0.0.1:8080/v1", "model": "qwen2.5-coder-1.5b-instruct",
                 "json_mode": "json_schema", "supports_tools": False},
    "local": {"backend": "local", "base_url": "http://127.0.0.1:8080/v1", "model": "qwen2.5-coder-1.5b-instruct",
              "json_mode": "json_schema", "supports_tools": False},
}


class LLMConfig(BaseModel):
    """One endpoint and how to talk to it. Build it with :meth:`load`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["offline", "local", "openai"] = "offline"
    preset: str | None = None
    base_url: str | None = None
    model: str | None = None  # None: the first model the endpoint lists (vLLM, llama.cpp)
    api_key: SecretStr | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_tokens: int = Field(512, gt=0)
    temperature: float = Field(0.1, ge=0, le=2)
    max_retries: int = Field(2, ge=0)  # re-asks after invalid output (JSON or schema)
    http_tries: int = Field(3, ge=1)  # tries per request on timeouts, connection errors, 429, 5xx
    backoff_s: float = Field(1.0, ge=0)  # first backoff delay; doubles each try
    json_mode: Literal["json_schema", "json_object"] = "json_schema"
    strict: bool = True  # json_schema strict mode (schema made strict: all fields required, no extras)
    supports_tools: bool | None = None  # None: auto (native tool calls except on the local backend)

    @property
    def enabled(self) -> bool:
        return self.backend != "offline"

    @property
    def host(self) -> str | None:
        """``host[:port]`` of the endpoint, without scheme, path or credentials (what the call log keeps)."""
        if not self.base_url:
            return None
        parts = urlsplit(self.base_url)
        return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname

    @property
    def tools(self) -> bool:
        return self.supports_tools if self.supports_tools is not None else self.backend != "local"

    def secret(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, path: str | Path | None = None) -> LLMConfig:
        """Settings from ``env`` (default ``os.environ``) over the YAML file over the preset."""
        env = os.environ if env is None else env
        path = path or env.get(ENV_PREFIX + "CONFIG") or _default_file(env)
        file = _read_file(path)
        fields = set(cls.model_fields)
        from_env = {f: env[ENV_PREFIX + f.upper()] for f in fields if env.get(ENV_PREFIX + f.upper())}
        unknown = set(file) - fields
        if unknown:
            raise DataError(f"LLM config file {path}: unknown setting(s) {sorted(unknown)}; expected some of {sorted(fields)}")

        name = from_env.get("preset") or file.get("preset")
        if name is not None and name not in PRESETS:
            raise InvalidInput(f"unknown LLM preset {name!r}; expected one of {', '.join(PRESETS)}")
        preset = dict(PRESETS.get(name, {}))
        key_env = preset.pop("api_key_env", None if name else "OPENAI_API_KEY")

        merged = {**preset, **file, **from_env}
        if not merged.get("api_key") and key_env and env.get(key_env):
            merged["api_key"] = env[key_env]
        if "backend" not in merged:
            merged["backend"] = "openai" if merged.get("base_url") else "offline"
        try:
            return cls(**merged)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise InvalidInput(f"LLM setting {where}: {err['msg']} (got {err.get('input')!r}; "
                               f"set {ENV_PREFIX}{where.upper()} or {where} in the config file)") from None


def _default_file(env: Mapping[str, str]) -> Path | None:
    path = (Path(env["XUNJIAN_HOME"]) if env.get("XUNJIAN_HOME") else settings.home()) / "llm.yaml"
    return path if path.exists() else None


def _read_file(path: str | Path | None) -> dict:
    if path is None:
        return {}
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"LLM config file {path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise DataError(f"LLM config file {path}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(f"LLM config file {path}: expected a mapping of settings (backend: ..., model: ...)")
    return data
