"""The case pipeline's state: what enters, what each node adds.

One LangGraph thread per case; the state is checkpointed after every node, so
everything here is plain data (pydantic), never a connection or a client (those
live in :class:`agents.context.Context`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from city.cases import Evidence
from city.catalogue import Source
from city.routing import RouteDecision


class Report(BaseModel):
    """A citizen report (text, optional place and photo) or a vision observation."""

    source: Source
    text: str = Field(min_length=1, max_length=8000)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: str = ""
    context: str | None = None
    owner: str | None = None
    reporter_name: str | None = None
    reporter_phone: str | None = None
    external_id: str | None = None  # Open311 token, observation id …: the thread id and idempotency key
    detector_code: str | None = None  # a vision observation's catalogue code
    detector_confidence: float | None = Field(default=None, ge=0, le=1)
    error_m: float | None = Field(default=None, ge=0, description="position error radius (m), e.g. of a vision observation")
    batch_id: str | None = Field(default=None, description="the footage batch a vision observation came from")
    evidence: list[Evidence] = []


class Candidate(BaseModel):
    code: str
    kind: str
    name: str
    score: float


class Triage(BaseModel):
    code: str | None  # None: abstained (nothing in the catalogue fits)
    kind: str | None
    name: str | None
    confidence: float = Field(ge=0, le=1)
    urgency: str
    risk_level: str
    candidates: list[Candidate] = []
    reason: str = ""
    policy: Literal["offline", "llm", "detector"]


class Review(BaseModel):
    """Why the case waits at the review gate, and what the reviewer decided."""

    reasons: list[str] = []
    decision: Literal["approve", "edit", "reject"] | None = None
    by: str | None = None
    note: str = ""
    edits: dict = {}


class PipelineState(BaseModel):
    report: Report
    injection_flags: list[str] = []  # prompt-injection patterns found in the text (the text is data)
    triage: Triage | None = None
    duplicate_of: str | None = None  # an open case this report was attached to
    route: RouteDecision | None = None
    case_number: str | None = None
    record: dict | None = None  # the drafted 案卷 (agents.offline.RecordDraft as a dict)
    reply: dict | None = None  # the drafted acknowledgement to the citizen
    review: Review | None = None
    outcome: Literal["dispatched", "attached", "rejected", "waiting"] | None = None
    notes: list[str] = []  # what each step decided and by which policy (offline / llm / fallback)
