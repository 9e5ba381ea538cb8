"""核查 by re-inspection: the rules (data: ``verification.yaml``) and the record
of one decision.

A later patrol batch that covers a case's place decides it (see
:mod:`vision.verify`):

- the issue seen again there (same or related class, within the error radii)
  → 核查不通过 for a case reported handled (back to the department with the new
  evidence), or new evidence ("仍存在") for a case still open;
- the place clearly in view and nothing seen → 核查通过 with before/after
  evidence (or "未再发现" for a case still open, noted for the dispatcher);
- not in view → "未覆盖": no decision;
- a decision below the confidence thresholds → 待人工核查 (the case waits in 核查).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from city import settings
from city.cases import Evidence
from city.catalogue import Source
from city.datafiles import read_yaml, validate


class Outcome(StrEnum):
    PASSED = "核查通过"
    FAILED = "核查不通过"
    HUMAN = "待人工核查"
    STILL_THERE = "仍存在"
    NOT_SEEN = "未再发现"
    NOT_COVERED = "未覆盖"


class VerificationRules(BaseModel):
    """``verification.yaml``: see the comments in the bundled file."""

    model_config = ConfigDict(extra="forbid")

    match_floor_m: float = Field(gt=0)
    case_error_m: dict[Source, float]
    max_case_error_m: float = Field(gt=0)
    margin_px: float = Field(ge=0)
    min_px_per_m: float = Field(gt=0)
    max_range_m: dict[str, float] = Field(description="by platform: vehicle, drone")
    per_frame_recall: float = Field(gt=0, lt=1)
    max_independent_frames: int = Field(ge=1)
    pass_min_confidence: float = Field(gt=0, le=1)
    fail_min_confidence: float = Field(gt=0, le=1)
    actor: str = Field(min_length=1)

    def position_error(self, source: Source) -> float:
        return self.case_error_m.get(source, self.max_case_error_m)


def load_rules(folder: Path | str | None = None) -> VerificationRules:
    """The rules in ``<city data>/verification.yaml``, else the bundled ones."""
    path = Path(folder or settings.city_data_dir()) / "verification.yaml"
    if not path.exists():
        path = settings.BUNDLED_CITY_DATA / "verification.yaml"
    return _load(path.resolve())


@lru_cache(maxsize=8)
def _load(path: Path) -> VerificationRules:
    rules = validate(VerificationRules, read_yaml(path), str(path))
    for platform in ("vehicle", "drone"):
        if platform not in rules.max_range_m:
            from city.errors import DataError

            raise DataError(f"{path}: field max_range_m: needs a range for {platform}")
    return rules


class Verification(BaseModel):
    """One 核查 decision: a batch's footage checked at one case's place."""

    case_number: str
    batch_id: str
    outcome: Outcome
    confidence: float = Field(ge=0, le=1)
    frames: int = Field(ge=0, description="sampled frames with the case's place in view")
    coverage: float = Field(default=0.0, ge=0, le=1, description="share of the case's error circle in view")
    observations: list[str] = Field(default_factory=list, description="observations of the issue seen again")
    evidence: list[Evidence] = Field(default_factory=list)
    note: str = ""
    status_before: str = ""
    status_after: str = ""
    at: datetime | None = None
    actor: str = ""
