"""The national catalogue of 管理部件 and 管理事项 (GB/T 47678.5-2026), as data.

Three files under ``<city data>/catalogue/`` make the catalogue:

- ``national.csv``: every class of the standard (153 部件, 250 事项), keyed by
  (kind, code) because a 部件 and its "…异常" 事项 share a code, with the
  legacy GB/T 30428.2-2013 / CJ/T 214 code where one maps.
- ``defaults.yaml``: attributes per (kind, major class) for entries nobody has
  curated yet (a city overrides them).
- ``curated.yaml``: full attributes for the classes patrols and citizens meet
  most (synonyms and colloquial phrasings, priority, risk, time limits per
  urgency tier, 立案/结案条件, sources, related classes).
- ``local.yaml``: local extension classes that the national list lacks
  (e.g. 道路塌陷, 道路积水), with codes in the 9xxxx range.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from city.datafiles import read_csv, read_yaml, validate
from city.errors import DataError, NotFound


class Kind(StrEnum):
    PART = "部件"
    EVENT = "事件"


class Risk(StrEnum):
    """The city's five-colour risk grading; 绿 means no particular risk."""

    RED = "红"
    ORANGE = "橙"
    YELLOW = "黄"
    BLUE = "蓝"
    GREEN = "绿"


class Urgency(StrEnum):
    """Urgency tier of a case; each catalogue entry has a time limit per tier."""

    URGENT = "紧急"
    HIGH = "较急"
    NORMAL = "一般"


class Source(StrEnum):
    VEHICLE = "车巡"
    DRONE = "机巡"
    CITIZEN = "市民"
    HOTLINE = "热线"
    INSPECTOR = "采集员"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(工作时|工作日|小时)\s*$")


class WorkDuration(BaseModel):
    """A time limit: ``4工作时`` (working hours), ``2工作日`` (working days) or
    ``6小时`` (calendar hours, for round-the-clock emergencies)."""

    model_config = ConfigDict(frozen=True)

    value: float = Field(gt=0)
    unit: Literal["工作时", "工作日", "小时"]

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data):
        if isinstance(data, str):
            m = _DURATION.match(data)
            if not m:
                raise ValueError(f"time limit {data!r}: expected e.g. '4工作时', '2工作日' or '6小时'")
            return {"value": float(m.group(1)), "unit": m.group(2)}
        return data

    def __str__(self) -> str:
        v = int(self.value) if self.value == int(self.value) else self.value
        return f"{v}{self.unit}"


class Attributes(BaseModel):
    """The per-entry attributes a city configures (curated or defaulted)."""

    model_config = ConfigDict(extra="forbid")

    definition: str = ""
    synonyms: list[str] = []
    default_priority: Urgency = Urgency.NORMAL
    risk_level: Risk = Risk.BLUE
    time_limits: dict[Urgency, WorkDuration]
    filing_condition: str = Field(min_length=2)
    closing_condition: str = Field(min_length=2)
    sources: list[Source] = Field(min_length=1)
    related: list[str] = []

    @field_validator("time_limits")
    @classmethod
    def _all_tiers(cls, v: dict[Urgency, WorkDuration]):
        missing = [u.value for u in Urgency if u not in v]
        if missing:
            raise ValueError(f"time_limits lacks tier(s) {missing}")
        return v


class CatalogueEntry(Attributes):
    kind: Kind
    code: str = Field(pattern=r"^\d{5}$")
    name: str
    major_code: str = Field(pattern=r"^\d{2}$")
    major_name: str
    legacy_code: str | None = None
    local_extension: bool = False
    curated: bool = False
    note: str = ""  # provenance caveats, e.g. a code that is a guess

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.code}"

    @property
    def label(self) -> str:
        return f"{self.code} {self.name}（{self.kind.value}）"


class Hit(BaseModel):
    entry: CatalogueEntry
    score: float
    matched: str | None = None  # the synonym/name found verbatim in the query, if any


class Catalogue:
    """All entries, keyed by (kind, code), with lookup and text search."""

    def __init__(self, entries: list[CatalogueEntry]):
        self.entries: dict[tuple[Kind, str], CatalogueEntry] = {}
        for e in entries:
            if (e.kind, e.code) in self.entries:
                raise DataError(f"catalogue: duplicate entry {e.key}")
            self.entries[(e.kind, e.code)] = e
        self._legacy = {e.legacy_code: e for e in entries if e.legacy_code and e.kind is Kind.EVENT}

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries.values())

    def __contains__(self, key: tuple[Kind, str]) -> bool:
        return key in self.entries

    def _find(self, ref: str) -> CatalogueEntry | None:
        ref = ref.strip()
        if ":" in ref:
            kind, _, code = ref.partition(":")
            try:
                return self.entries.get((Kind(kind.strip()), code.strip()))
            except ValueError:
                return None
        if re.fullmatch(r"\d{2}-?\d{2}", ref):  # a GB/T 30428.2-2013 code, e.g. 01-10
            return self._legacy.get(ref.replace("-", ""))
        # a bare code: the 事件 (what a case is about) before the 部件 (the object)
        return self.entries.get((Kind.EVENT, ref)) or self.entries.get((Kind.PART, ref))

    def get(self, ref: str, kind: Kind | str | None = None) -> CatalogueEntry:
        """Look up ``06010``, ``事件:06010``, ``部件:01002`` or a legacy code ``01-10``."""
        entry = self._find(f"{Kind(kind).value}:{ref}" if kind else ref)
        if entry is None:
            raise NotFound(f"catalogue: no entry {ref!r}{f' of kind {kind}' if kind else ''}")
        return entry

    def related(self, entry: CatalogueEntry) -> list[CatalogueEntry]:
        """The entry, its same-code twin (部件 ↔ 事件) and the classes it names as related."""
        out = [entry]
        twin = self.entries.get((Kind.PART if entry.kind is Kind.EVENT else Kind.EVENT, entry.code))
        for e in [twin, *(self._find(r) for r in entry.related)]:
            if e is not None and e not in out:
                out.append(e)
        return out

    # -- search ---------------------------------------------------------------------

    @cached_property
    def _index(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        docs = [
            " ".join([e.name, e.name, *e.synonyms, e.definition, e.major_name])
            for e in self.entries.values()
        ]
        vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
        return vec, vec.fit_transform(docs), list(self.entries.values())

    def search(self, query: str, k: int = 10, kind: Kind | str | None = None) -> list[Hit]:
        """Rank entries for a free-text description: character n-gram TF-IDF over
        names, synonyms and definitions, plus a bonus when a name or synonym
        occurs verbatim in the text."""
        query = query.strip()
        if not query:
            return []
        vec, matrix, entries = self._index
        scores = (matrix @ vec.transform([query]).T).toarray().ravel()
        hits = []
        for i, e in enumerate(entries):
            if kind and e.kind != Kind(kind):
                continue
            matched = max(
                (s for s in [e.name, *e.synonyms] if len(s) >= 2 and s in query), key=len, default=None
            )
            bonus = 0.3 + 0.05 * min(len(matched), 6) if matched else 0.0
            score = float(scores[i]) + bonus
            if score > 0:
                hits.append(Hit(entry=e, score=round(score, 4), matched=matched))
        hits.sort(key=lambda h: (-h.score, h.entry.kind != Kind.EVENT, h.entry.code))
        return hits[:k]


# -- loading ------------------------------------------------------------------------


class _Default(Attributes):
    kind: Kind
    major: str = Field(pattern=r"^(\d{2}|\*)$")


class _Curated(Attributes):
    kind: Kind
    code: str = Field(pattern=r"^\d{5}$")
    name: str | None = None  # if given, must equal the national name (a guard against typos)


def load_catalogue(folder: Path) -> Catalogue:
    defaults: dict[tuple[Kind, str], dict] = {}
    for i, row in enumerate(read_yaml(folder / "defaults.yaml")):
        d = validate(_Default, row, f"{folder / 'defaults.yaml'} entry {i + 1}")
        defaults[(d.kind, d.major)] = d.model_dump(exclude={"kind", "major"})

    curated: dict[tuple[Kind, str], _Curated] = {}
    for i, row in enumerate(read_yaml(folder / "curated.yaml")):
        c = validate(_Curated, row, f"{folder / 'curated.yaml'} entry {i + 1} ({row.get('code') if isinstance(row, dict) else row})")
        if (c.kind, c.code) in curated:
            raise DataError(f"{folder / 'curated.yaml'}: {c.kind.value}:{c.code} curated twice")
        curated[(c.kind, c.code)] = c

    entries: list[CatalogueEntry] = []
    path = folder / "national.csv"
    rows = read_csv(path)
    for n, row in enumerate(rows, start=2):
        where = f"{path} line {n}"
        try:
            kind = Kind(row["kind"])
        except (KeyError, ValueError):
            raise DataError(f"{where}: field kind: expected 部件 or 事件, got {row.get('kind')!r}") from None
        base = defaults.get((kind, row.get("major_code", ""))) or defaults.get((kind, "*"))
        if base is None:
            raise DataError(f"{folder / 'defaults.yaml'}: no defaults for {kind.value} major {row.get('major_code')!r}")
        attrs = dict(base)
        c = curated.pop((kind, row.get("code", "")), None)
        if c is not None:
            if c.name and c.name != row["name"]:
                raise DataError(
                    f"{folder / 'curated.yaml'}: {kind.value}:{c.code} is named {c.name!r} but the national list says {row['name']!r}"
                )
            attrs = c.model_dump(exclude={"kind", "code", "name"})
        attrs.update(
            kind=kind,
            code=row.get("code"),
            name=row.get("name"),
            major_code=row.get("major_code"),
            major_name=row.get("major_name"),
            legacy_code=row.get("legacy_code") or None,
            curated=c is not None,
            note=row.get("note") or "",
        )
        attrs["filing_condition"] = attrs["filing_condition"].replace("{name}", row.get("name", ""))
        attrs["closing_condition"] = attrs["closing_condition"].replace("{name}", row.get("name", ""))
        entries.append(validate(CatalogueEntry, attrs, where))
    if curated:
        raise DataError(f"{folder / 'curated.yaml'}: codes not in the national list: {sorted(k[1] for k in curated)}")

    local = folder / "local.yaml"
    if local.exists():
        for i, row in enumerate(read_yaml(local)):
            e = validate(CatalogueEntry, {**row, "local_extension": True, "curated": True}, f"{local} entry {i + 1}")
            entries.append(e)
    catalogue = Catalogue(entries)
    for e in entries:
        for ref in e.related:
            if catalogue._find(ref) is None:
                where = folder / ("local.yaml" if e.local_extension else "curated.yaml")
                raise DataError(f"{where}: {e.key}: field related: unknown code {ref!r}")
    return catalogue
