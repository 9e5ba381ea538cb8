"""Prompt templates, one YAML file per agent role, and the small loader for them.

Each ``<role>.yaml`` is validated by :class:`PromptTemplate`: ``role`` (must equal
the file name), ``version`` (an integer, bumped on any change of meaning),
``description``, the ``system`` and ``user`` messages for an LLM, and for the
drafting roles ``outputs``: named templates the offline policy renders without
any LLM (``record.yaml`` → ``offline``; ``reply.yaml`` → ``ack``, ``closure``).
All of them are Jinja2 templates rendered with ``StrictUndefined`` (a missing
variable is an error, never an empty string) in a sandbox; values are plain
data (citizen text inside a variable is never evaluated as a template).

The templates name no department and no catalogue class: candidates, rules,
departments and time limits come from ``city/`` data through variables.

Two more data files live here: ``lexicon.yaml`` (danger words that raise
urgency, promise words a reply must not use) and ``injection.yaml``
(prompt-injection patterns for :mod:`agents.safety`).

API::

    load_prompt("triage")                # -> PromptTemplate (cached, validated)
    render("triage", "user", **vars)     # -> str
    version("triage")                    # -> "triage@1+1a2b3c4d" (for eval runs)
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

from city.datafiles import read_yaml, validate
from city.errors import DataError

PROMPTS_DIR = Path(__file__).parent
ROLES = ("triage", "route", "record", "reply")

_env = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


class PromptTemplate(BaseModel):
    """One role's prompt file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str = Field(pattern=r"^[a-z][a-z_]*$")
    version: int = Field(ge=1)
    description: str = Field(min_length=4)
    system: str = Field(min_length=10)
    user: str = Field(min_length=2)
    outputs: dict[str, str] = {}

    @field_validator("system", "user")
    @classmethod
    def _compiles(cls, v: str) -> str:
        _compile(v)
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs_compile(cls, v: dict[str, str]) -> dict[str, str]:
        for name, text in v.items():
            if not re.fullmatch(r"[a-z][a-z_]*", name):
                raise ValueError(f"output name {name!r}: expected lower-case letters and _")
            if not text or not text.strip():
                raise ValueError(f"output {name!r} is empty")
            try:
                _compile(text)
            except ValueError as e:
                raise ValueError(f"output {name!r}: {e}") from None
        return v

    def parts(self) -> list[str]:
        return ["system", "user", *self.outputs]

    def source(self, part: str) -> str:
        if part in ("system", "user"):
            return getattr(self, part)
        if part in self.outputs:
            return self.outputs[part]
        raise KeyError(f"prompt {self.role!r} has no part {part!r}; parts: {', '.join(self.parts())}")


def _compile(text: str) -> jinja2.Template:
    try:
        return _env.from_string(text)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"Jinja2 syntax error on line {e.lineno}: {e.message}") from None


class _Loaded:
    """A validated template, its compiled parts and its version string."""

    def __init__(self, template: PromptTemplate, raw: bytes):
        self.template = template
        self.version = f"{template.role}@{template.version}+{hashlib.sha256(raw).hexdigest()[:8]}"
        self.compiled = {p: _env.from_string(template.source(p)) for p in template.parts()}


@lru_cache(maxsize=32)
def _load(path: Path) -> _Loaded:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with role, version, description, system, user")
    template = validate(PromptTemplate, data, str(path))
    if template.role != path.stem:
        raise DataError(f"{path}: field role: {template.role!r} does not match the file name {path.stem!r}")
    return _Loaded(template, path.read_bytes())


def _path(role: str, folder: Path | str | None) -> Path:
    if not re.fullmatch(r"[a-z][a-z_]*", role):
        raise DataError(f"prompt role {role!r}: expected lower-case letters and _")
    return Path(folder or PROMPTS_DIR).resolve() / f"{role}.yaml"


def load_prompt(role: str, folder: Path | str | None = None) -> PromptTemplate:
    """The validated template of ``role`` (``triage``, ``route``, ``record``, ``reply``)."""
    return _load(_path(role, folder)).template


def version(role: str, folder: Path | str | None = None) -> str:
    """``role@version+sha8`` (sha256 of the file): identifies the exact prompt in eval runs."""
    return _load(_path(role, folder)).version


def versions(folder: Path | str | None = None) -> dict[str, str]:
    return {r: version(r, folder) for r in ROLES}


def render(role: str, part: str, /, folder: Path | str | None = None, **variables) -> str:
    """Render ``part`` (``system``, ``user`` or an output name) of ``role``'s template.

    A variable the template uses but the caller did not give raises
    :class:`~city.errors.DataError` naming the role, the part and the variable."""
    loaded = _load(_path(role, folder))
    try:
        tpl = loaded.compiled[part]
    except KeyError:
        raise DataError(
            f"prompt {role!r} has no part {part!r}; parts: {', '.join(loaded.template.parts())}"
        ) from None
    try:
        return tpl.render(**variables).strip()
    except jinja2.UndefinedError as e:
        raise DataError(f"prompt {loaded.version} part {part!r}: {e.message}") from None


def messages(role: str, /, folder: Path | str | None = None, **variables) -> list[dict[str, str]]:
    """The chat messages (system + user) for an OpenAI-compatible call."""
    return [
        {"role": "system", "content": render(role, "system", folder=folder, **variables)},
        {"role": "user", "content": render(role, "user", folder=folder, **variables)},
    ]


# -- the lexicon ------------------------------------------------------------------------


class DangerGroup(BaseModel):
    """Words that make a report more urgent (and possibly riskier) than its class's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    words: list[str] = Field(min_length=1)
    urgency: str = Field(pattern=r"^(紧急|较急|一般)$")
    risk_at_least: str | None = Field(default=None, pattern=r"^(红|橙|黄|蓝|绿)$")
    # only applies when the chosen class is itself at least this risky (e.g. 小孩 near an
    # open manhole is urgent; 小孩 in a noise complaint is not)
    min_entry_risk: str | None = Field(default=None, pattern=r"^(红|橙|黄|蓝|绿)$")


class Lexicon(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    danger: list[DangerGroup] = Field(min_length=1)
    negations: list[str] = []
    promise_words: list[str] = Field(min_length=1)


@lru_cache(maxsize=4)
def load_lexicon(path: Path | str | None = None) -> Lexicon:
    p = Path(path or PROMPTS_DIR / "lexicon.yaml")
    return validate(Lexicon, read_yaml(p), str(p))
