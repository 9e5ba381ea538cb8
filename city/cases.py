"""The case (案卷) as it crosses boundaries: what goes in, what comes out.

Reporter contact is stored as given and masked in every output
(:meth:`Case.public`) except where a dispatcher explicitly needs it.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from city.catalogue import Kind, Risk, Source, Urgency
from city.lifecycle import Status

_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)[ \-]?(\d{4})[ \-]?(\d{4})(?!\d)")  # 13812345678, 138 1234 5678, 138-1234-5678
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3}-?)(\d{3,4})(\d{4})(?!\d)")
_NAME = re.compile(r"(我叫|我的名字是|名叫|姓名[:：]?|(?:联系|报告|举报|投诉|反映|来电)人[:：]?)\s*([\u4e00-\u9fa5])([\u4e00-\u9fa5]{1,2})")
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[\dXx])(?![0-9A-Za-z])")


def mask_phone(phone: str | None) -> str | None:
    """``13812345678`` → ``138****5678``, ``023-68123456`` → ``023-****3456``; anything
    else keeps only its last 4 characters."""
    if not phone:
        return phone
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 11 and digits.startswith("1"):
        return f"{digits[:3]}****{digits[7:]}"
    masked = mask_text(phone)
    return masked if masked != phone else "*" * max(len(phone) - 4, 0) + phone[-4:]


def mask_name(name: str | None) -> str | None:
    """``张三丰`` → ``张**``."""
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


def mask_text(text: str) -> str:
    """Mask mobile numbers (also written with spaces or dashes), landlines, ID card
    numbers and self-introduced names (我叫张三丰 → 我叫张**) inside free text."""
    text = _NAME.sub(lambda m: f"{m.group(1)}{m.group(2)}{'*' * len(m.group(3))}", text)
    text = _ID_CARD.sub(lambda m: f"{m.group(1)}********{m.group(3)}", text)
    text = _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    return _LANDLINE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)


class Evidence(BaseModel):
    kind: str = Field(default="image", pattern=r"^(image|video|text|link)$")
    uri: str
    note: str = ""
    sha256: str | None = None
    captured_at: datetime | None = None
    added_at: datetime | None = None
    added_by: str | None = None


class NewCase(BaseModel):
    """What a reporter, a patrol or an agent provides to open a case."""

    model_config = ConfigDict(str_strip_whitespace=True)

    source: Source
    kind: Kind = Kind.EVENT
    code: str = Field(pattern=r"^\d{5}$")
    description: str = Field(min_length=2, max_length=4000)
    address: str = Field(default="", max_length=256)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    context: str | None = None  # location context for routing: 道路, 小区内, 河道 …
    owner: str | None = None  # asset owner, when known (责随权走)
    urgency: Urgency | None = None  # default: the catalogue's default priority
    risk_level: Risk | None = None  # default: the catalogue's risk level (triage may raise it)
    reporter_name: str | None = Field(default=None, max_length=64)
    reporter_phone: str | None = Field(default=None, max_length=32)
    external_id: str | None = Field(default=None, max_length=128)  # idempotency key (observation id, Open311 token …)
    evidence: list[Evidence] = []

    @field_validator("description", "address")
    @classmethod
    def _no_control_chars(cls, v: str) -> str:
        if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", v):
            raise ValueError("contains control characters")
        return v


class AuditEntry(BaseModel):
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str
    note: str = ""
    data: dict = {}


class Case(BaseModel):
    """The 案卷."""

    number: str
    source: Source
    kind: Kind
    code: str
    title: str  # the catalogue name
    description: str
    address: str
    lat: float | None
    lon: float | None
    district_id: str | None
    street_id: str | None
    grid_id: str | None
    context: str | None
    owner: str | None
    urgency: Urgency
    risk_level: Risk
    status: Status
    department_id: str | None
    route_rule: str | None
    route_principle: str | None
    route_note: str | None
    deadline: datetime | None
    reporter_name: str | None
    reporter_phone: str | None
    external_id: str | None
    duplicate_of: str | None
    rework_count: int
    rating: int | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    evidence: list[Evidence] = []
    history: list[AuditEntry] = []

    def public(self) -> Case:
        """A copy safe to show: reporter contact and personal numbers in text masked."""
        return self.model_copy(
            update={
                "reporter_name": mask_name(self.reporter_name),
                "reporter_phone": mask_phone(self.reporter_phone),
                "description": mask_text(self.description),
                "history": [h.model_copy(update={"note": mask_text(h.note)}) for h in self.history],
            }
        )


class CaseQuery(BaseModel):
    """Filters for listing cases."""

    status: list[Status] | None = None
    department_id: str | None = None
    code: str | None = None
    source: Source | None = None
    district_id: str | None = None
    street_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = Field(default=None, max_length=100, description="text in the number, description or address")
    overdue: bool | None = Field(default=None, description="True: held by a department (派遣/处置中) past its "
                                 "deadline as of ``as_of``; False: not so")
    as_of: datetime | None = Field(default=None, description="'now' for ``overdue`` (default: the current time)")
    located: bool = Field(default=False, description="only cases with a position")
    limit: int = Field(default=50, ge=1, le=5000)
    offset: int = Field(default=0, ge=0)
