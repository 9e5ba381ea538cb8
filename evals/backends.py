"""Which LLM an eval run uses: ``offline`` (none), ``local`` (the embedded
llama.cpp model, started for the run) or ``openai:MODEL`` (the configured
OpenAI-compatible endpoint, ``xunjian llm`` settings, with that model)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from agents.config import LLMConfig
from agents.context import llm_endpoint
from city.errors import InvalidInput


@contextmanager
def backend_config(backend: str, config: LLMConfig | None = None) -> Iterator[LLMConfig]:
    """The LLM settings for a backend name; ``config`` overrides the configured
    settings (tests: the fake server)."""
    if backend == "offline":
        yield LLMConfig(backend="offline")
        return
    base = config or LLMConfig.load()
    if backend == "local":
        with llm_endpoint(base.model_copy(update={"backend": "local"}) if base.backend != "local" else base) as c:
            yield c
        return
    if backend.startswith("openai:") or backend == "openai":
        model = backend.partition(":")[2] or base.model
        c = base.model_copy(update={"backend": "openai", "model": model})
        if not c.base_url:
            raise InvalidInput("openai 后端需要接口地址：设置 XUNJIAN_LLM_BASE_URL 或 XUNJIAN_LLM_PRESET（见 xunjian llm --help）")
        yield c
        return
    raise InvalidInput(f"未知后端 {backend!r}：可用 offline、local、openai:MODEL")
