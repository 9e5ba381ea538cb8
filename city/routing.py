"""Responsibility rules (权责清单) and the router that applies them.

The rules are a table (``rules.csv``), one row per (catalogue class × area ×
location context × asset owner) → department, each with the principle it
applies and its basis:

- 责随权走 / 先属主: a 部件 goes to its owner (燃气井盖 → 燃气公司);
- 行业主管: a class goes to the department that regulates it in that area
  (a district that moved 占道经营 to 城管综合执法 says so with an area row);
- 属地管理: ``@街道`` sends it to the street office (街道办事处) of the place;
- 责任主体唯一: exactly one department is chosen; when two equally specific
  rules disagree the decision is marked ``ambiguous`` (an LLM or a human decides);
- no rule matches → 无责任主体: the district's coordination centre (区协调中心).

The most specific rule wins: an explicit ``priority`` first, then a score that
weighs asset owner and location context above the class and the class above
the area.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from city.catalogue import Catalogue, CatalogueEntry, Kind
from city.datafiles import read_csv, read_yaml, validate
from city.departments import Department, Departments
from city.errors import DataError, InvalidInput

STREET = "@街道"
COORDINATOR = "@协调"
NO_OWNER = "无责任主体"


class Vocabulary(BaseModel):
    """``routing.yaml``: the location contexts and asset owners rules may name."""

    model_config = ConfigDict(extra="forbid")
    contexts: list[str]
    owners: list[str]
    principles: dict[str, str]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    kind: str = Field(pattern=r"^(部件|事件|\*)$")
    code: str = Field(pattern=r"^(\d{5}|\d{1,4}\*|\*)$")
    area: str = Field(pattern=r"^(\d{6}|\d{9}|\*)$")  # district 区划代码, street id, or any
    context: str = "*"
    owner: str = "*"
    department: str
    principle: str
    priority: int = 0
    basis: str = ""

    @model_validator(mode="before")
    @classmethod
    def _blank_to_default(cls, data):
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if v not in (None, "")}
        return data

    def describe(self) -> str:
        parts = [f"{self.kind}" if self.kind != "*" else "任意类别"]
        parts.append(f"代码 {self.code}" if self.code != "*" else "任意代码")
        if self.area != "*":
            parts.append(f"区域 {self.area}")
        if self.context != "*":
            parts.append(f"场景 {self.context}")
        if self.owner != "*":
            parts.append(f"权属 {self.owner}")
        return " · ".join(parts)


class Place(BaseModel):
    """Where the case is, as far as routing cares."""

    district_id: str | None = None
    street_id: str | None = None
    context: str | None = None  # 道路, 小区内, 桥梁, 河道 …
    owner: str | None = None  # asset owner, for 部件 (责随权走)


class Candidate(BaseModel):
    rule_id: str
    department_id: str
    department_name: str
    principle: str
    score: int


class RouteDecision(BaseModel):
    department_id: str
    department_name: str
    principle: str
    rule_id: str | None  # None when no rule matched (无责任主体)
    rule: str = ""  # the rule in words
    basis: str = ""
    ambiguous: bool = False
    no_owner: bool = False  # 无责任主体
    candidates: list[Candidate] = []
    trail: list[str] = []  # how the decision was reached, step by step


class Router:
    def __init__(self, rules: list[Rule], vocabulary: Vocabulary, departments: Departments, city_coordinator: str):
        self.rules = rules
        self.vocabulary = vocabulary
        self.departments = departments
        self.city_coordinator = city_coordinator

    def _matches(self, rule: Rule, entry: CatalogueEntry, place: Place) -> bool:
        if rule.kind != "*" and rule.kind != entry.kind.value:
            return False
        if rule.code != "*" and not (
            rule.code == entry.code or (rule.code.endswith("*") and entry.code.startswith(rule.code[:-1]))
        ):
            return False
        if rule.area != "*" and rule.area not in (place.district_id, place.street_id):
            return False
        if rule.context != "*" and rule.context != place.context:
            return False
        return rule.owner == "*" or rule.owner == place.owner

    @staticmethod
    def _score(rule: Rule) -> int:
        return (
            (8 if rule.owner != "*" else 0)
            + (8 if rule.context != "*" else 0)
            + (4 if rule.code != "*" and not rule.code.endswith("*") else 2 if rule.code != "*" else 0)
            + (2 if len(rule.area) == 9 else 1 if rule.area != "*" else 0)
            + (1 if rule.kind != "*" else 0)
        )

    def _resolve(self, rule: Rule, place: Place) -> Department | None:
        if rule.department == STREET:
            return self.departments.street_office(place.street_id)
        if rule.department == COORDINATOR:
            return self.departments.coordinator(place.district_id)
        return self.departments.get(rule.department)

    def route(self, entry: CatalogueEntry, place: Place, exclude: frozenset[str] = frozenset()) -> RouteDecision:
        """Decide the one responsible department; ``exclude`` holds departments that
        already returned (退回) this case."""
        for value, allowed, what in ((place.context, self.vocabulary.contexts, "context"), (place.owner, self.vocabulary.owners, "owner")):
            if value is not None and value not in allowed:
                raise InvalidInput(f"unknown {what} {value!r}; expected one of: {', '.join(allowed)}")
        trail = [f"类别：{entry.label}；位置：区 {place.district_id or '未知'}，街道 {place.street_id or '未知'}"
                 + (f"；场景 {place.context}" if place.context else "") + (f"；权属 {place.owner}" if place.owner else "")]
        matched = [r for r in self.rules if self._matches(r, entry, place)]
        matched.sort(key=lambda r: (-r.priority, -self._score(r)))
        trail.append(f"权责清单匹配 {len(matched)} 条" + (f"：{', '.join(r.id for r in matched[:8])}" if matched else ""))

        candidates: list[tuple[Rule, Department]] = []
        for r in matched:
            dept = self._resolve(r, place)
            if dept is None:
                trail.append(f"{r.id}（{r.department}）在此位置无法落实到具体单位，跳过")
                continue
            if dept.id in exclude:
                trail.append(f"{r.id} → {dept.name} 已退回过本案，跳过")
                continue
            candidates.append((r, dept))

        if not candidates:
            coord = self.departments.coordinator(place.district_id) or self.departments.get(self.city_coordinator)
            trail.append(f"无匹配规则 → {NO_OWNER}，交 {coord.name} 协调（属地管理兜底）")
            return RouteDecision(
                department_id=coord.id, department_name=coord.name, principle=NO_OWNER, rule_id=None,
                no_owner=True, trail=trail,
                basis=self.vocabulary.principles.get(NO_OWNER, ""),
            )

        best_rule, best = candidates[0]
        key = (best_rule.priority, self._score(best_rule))
        rivals = [(r, d) for r, d in candidates[1:] if (r.priority, self._score(r)) == key and d.id != best.id]
        trail.append(f"选用 {best_rule.id}：{best_rule.describe()} → {best.name}（{best_rule.principle}）")
        if rivals:
            trail.append("同等优先的规则指向不同单位：" + "，".join(f"{r.id} → {d.name}" for r, d in rivals) + "；需人工或模型裁定")
        return RouteDecision(
            department_id=best.id, department_name=best.name, principle=best_rule.principle,
            rule_id=best_rule.id, rule=best_rule.describe(),
            basis=best_rule.basis or self.vocabulary.principles.get(best_rule.principle, ""),
            ambiguous=bool(rivals),
            candidates=[
                Candidate(rule_id=r.id, department_id=d.id, department_name=d.name, principle=r.principle, score=self._score(r))
                for r, d in candidates[:5]
            ],
            trail=trail,
        )


def load_router(folder: Path, catalogue: Catalogue, departments: Departments, city_coordinator: str) -> Router:
    vocab = validate(Vocabulary, read_yaml(folder / "routing.yaml"), str(folder / "routing.yaml"))
    path = folder / "rules.csv"
    rules: list[Rule] = []
    seen: set[str] = set()
    for n, row in enumerate(read_csv(path), start=2):
        where = f"{path} line {n}"
        rule = validate(Rule, row, where)
        if rule.id in seen:
            raise DataError(f"{where}: field id: duplicate rule id {rule.id}")
        seen.add(rule.id)
        if rule.code != "*" and not rule.code.endswith("*"):
            kinds = [Kind(rule.kind)] if rule.kind != "*" else list(Kind)
            if not any((k, rule.code) in catalogue for k in kinds):
                raise DataError(f"{where}: field code: {rule.kind}:{rule.code} is not in the catalogue")
        if rule.department not in (STREET, COORDINATOR) and rule.department not in departments:
            raise DataError(f"{where}: field department: unknown department {rule.department!r}")
        if rule.context != "*" and rule.context not in vocab.contexts:
            raise DataError(f"{where}: field context: {rule.context!r} is not in routing.yaml contexts")
        if rule.owner != "*" and rule.owner not in vocab.owners:
            raise DataError(f"{where}: field owner: {rule.owner!r} is not in routing.yaml owners")
        if rule.principle not in vocab.principles:
            raise DataError(f"{where}: field principle: {rule.principle!r} is not in routing.yaml principles")
        rules.append(rule)
    if city_coordinator not in departments:
        raise DataError(f"city.yaml: field coordinator: unknown department {city_coordinator!r}")
    return Router(rules, vocab, departments, city_coordinator)
