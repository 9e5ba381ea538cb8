"""The labelled items of the triage and route eval suites (``evals/data/*.jsonl``).

One JSON object per line (see ``evals/data/README.md``)::

    {"id": "tr-0001", "source": "市民", "text": "...", "address": "...", "lat": 29.57, "lon": 106.53,
     "context": null, "owner": null,
     "expected": {"code": "06010", "kind": "事件", "department_id": "JB-HW", "urgency": "一般",
                  "alternatives": [], "no_owner": false, "injection": false},
     "style": "colloquial", "tags": [], "notes": "why this label"}

:func:`load_items` reads a file into :class:`TriageItem` records and stops at the
first bad line with a :class:`DatasetError` naming the file and the line;
:func:`check_items` cross-checks the records against the city data (codes,
departments, contexts, owners, coordinates inside the jurisdiction).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from city.catalogue import Kind, Source, Urgency
from city.errors import XunjianError

if TYPE_CHECKING:
    from agents.state import Report
    from city.bundle import CityData

DATA_DIR = Path(__file__).resolve().parent / "data"
MAIN_PATH = DATA_DIR / "triage_route.jsonl"
HARD_PATH = DATA_DIR / "triage_route_hard.jsonl"

Style = Literal["colloquial", "formal", "dialect", "typo", "mixed", "vague", "observation"]

#: Tags the hard file uses to say what makes an item hard (an eval may break its score down by them).
TAGS = frozenset({
    "ambiguous", "two_issues", "sarcasm", "rambling", "slang", "wrong_location", "injection",
    "out_of_scope", "no_location", "context_in_text", "owner_in_text", "urgency_raised",
    "urgency_lowered", "foreign_language", "part", "no_owner", "patrol", "emoji",
})

#: China's bounding box (lat, lon), generous: a coordinate outside it is certainly a mistake.
CHINA_LAT = (18.0, 54.0)
CHINA_LON = (73.0, 135.5)


class DatasetError(XunjianError):
    """A dataset file is missing or a line of it is malformed (names the file and line)."""


class Expected(BaseModel):
    """The label: what a competent dispatcher following the city's rules would decide.

    ``code`` null means "not a city-management issue" (then kind, department and
    urgency are null too); ``alternatives`` are other codes a reviewer would accept
    (same kind); ``no_owner`` is the router's 无责任主体 outcome (the district's
    coordination centre gets the case); ``injection`` marks text that tries to
    instruct the system."""

    model_config = ConfigDict(extra="forbid")

    code: str | None = Field(pattern=r"^\d{5}$")
    kind: Kind | None
    department_id: str | None = Field(min_length=1)
    urgency: Urgency | None
    alternatives: list[str] = []
    no_owner: bool = False
    injection: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        if self.code is None:
            if self.kind is not None or self.department_id is not None or self.urgency is not None:
                raise ValueError("code is null (not a city-management issue): kind, department_id and urgency must be null too")
            if self.alternatives or self.no_owner:
                raise ValueError("code is null: alternatives must be empty and no_owner false")
        elif self.kind is None or self.department_id is None or self.urgency is None:
            raise ValueError("code is set: kind, department_id and urgency are required")
        for a in self.alternatives:
            if not (len(a) == 5 and a.isdigit()):
                raise ValueError(f"alternative {a!r}: expected a 5-digit code")
            if a == self.code:
                raise ValueError(f"alternative {a} repeats the expected code")
        if len(set(self.alternatives)) != len(self.alternatives):
            raise ValueError("alternatives repeat a code")
        return self

    def accepts(self, code: str | None) -> bool:
        """Whether a predicted code counts as right (the code or an alternative)."""
        return code == self.code or (code is not None and code in self.alternatives)


class TriageItem(BaseModel):
    """One labelled report: the input the pipeline gets, and the expected outcome."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^(tr|hd)-\d{4}$")
    source: Source
    text: str = Field(min_length=1, max_length=8000)
    address: str = ""
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    context: str | None = None
    owner: str | None = None
    expected: Expected
    style: Style
    tags: list[str] = []
    notes: str = Field(min_length=4)

    @model_validator(mode="after")
    def _check(self):
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon: give both or neither")
        if self.lat is not None and not (CHINA_LAT[0] <= self.lat <= CHINA_LAT[1] and CHINA_LON[0] <= self.lon <= CHINA_LON[1]):
            raise ValueError(f"coordinates {self.lat},{self.lon} are not in China (lat, lon order?)")
        unknown = sorted(set(self.tags) - TAGS)
        if unknown:
            raise ValueError(f"unknown tag(s) {unknown}; expected some of {sorted(TAGS)}")
        return self

    def report(self) -> Report:
        """The pipeline's input for this item (the label is not in it)."""
        from agents.state import Report

        return Report(source=self.source, text=self.text, lat=self.lat, lon=self.lon, address=self.address,
                      context=self.context, owner=self.owner, external_id=f"eval:{self.id}")


def load_items(path: Path | str) -> list[TriageItem]:
    """Every line of a JSONL file as a :class:`TriageItem`; blank lines are skipped.
    Raises :class:`DatasetError` ("<file> line <n>: …") at the first bad line or a repeated id."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from None
    items: list[TriageItem] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{where}: not valid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(data, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(data).__name__}")
        try:
            item = TriageItem.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "(item)"
            raise DatasetError(f"{where} ({data.get('id', '?')}): field {loc}: {err['msg']}") from None
        if item.id in seen:
            raise DatasetError(f"{where}: id {item.id} repeats line {seen[item.id]}")
        seen[item.id] = n
        items.append(item)
    return items


def check_items(items: list[TriageItem], city: CityData) -> list[str]:
    """What is inconsistent with the city data, one message per problem (empty when fine):
    unknown code, kind, alternative, department, context or owner; coordinates outside
    the city's jurisdiction."""
    problems: list[str] = []
    contexts = set(city.router.vocabulary.contexts)
    owners = set(city.router.vocabulary.owners)
    for it in items:
        e = it.expected
        if e.code is not None:
            if (e.kind, e.code) not in city.catalogue:
                problems.append(f"{it.id}: expected {e.kind.value}:{e.code} is not in the catalogue")
            for a in e.alternatives:
                if (e.kind, a) not in city.catalogue:
                    problems.append(f"{it.id}: alternative {e.kind.value}:{a} is not in the catalogue")
            if e.department_id not in city.departments:
                problems.append(f"{it.id}: department {e.department_id!r} does not exist")
        if it.context is not None and it.context not in contexts:
            problems.append(f"{it.id}: context {it.context!r} is not one of {sorted(contexts)}")
        if it.owner is not None and it.owner not in owners:
            problems.append(f"{it.id}: owner {it.owner!r} is not one of {sorted(owners)}")
        if it.lat is not None:
            loc = city.locate(it.lat, it.lon)
            if loc.street_id is None:
                problems.append(f"{it.id}: {it.lat},{it.lon} is in no street of the sample city")
    return problems
