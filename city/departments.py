"""Departments (责任单位) and the city's own settings, loaded from
``departments.yaml`` and ``city.yaml``.

A department has a type (城管执法, 环卫, 市政设施 …), the district or street it
serves (none for city-wide utilities), a contact and the name of its working
calendar in ``calendars.yaml``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from city.datafiles import read_yaml, validate
from city.errors import DataError, NotFound


class DeptType(StrEnum):
    ENFORCEMENT = "城管执法"
    SANITATION = "环卫"
    MUNICIPAL = "市政设施"
    GREENING = "园林绿化"
    TRAFFIC_POLICE = "交巡警"
    CONSTRUCTION = "住建"
    WATER_AFFAIRS = "水务"
    DRAINAGE = "排水"
    WATER_SUPPLY = "供水"
    GAS = "燃气"
    POWER = "电力"
    TELECOM = "通信"
    ECOLOGY = "生态环境"
    MARKET = "市场监管"
    PUBLIC_SECURITY = "公安"
    FIRE = "消防"
    TRANSPORT = "交通"
    STREET = "街道"
    COORDINATOR = "区协调中心"
    CITY_COORDINATOR = "市协调中心"
    OTHER = "其他"


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: str = ""
    person: str = ""
    email: str = ""


class Department(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")
    name: str
    short: str = ""
    type: DeptType
    district: str | None = None  # 区划代码 of the district it serves; None = city-wide
    street: str | None = None  # street id, for 街道办事处 / 镇政府
    calendar: str = "standard"
    contact: Contact = Contact()

    @property
    def label(self) -> str:
        return self.short or self.name


class CitySettings(BaseModel):
    """``city.yaml``: the city this installation serves."""

    model_config = ConfigDict(extra="forbid")

    name: str
    code: str = Field(pattern=r"^\d{6}$")  # 区划代码 of the city
    sample: bool = False
    coordinator: str  # the city-level coordination department (no district matched)
    note: str = ""


class Departments:
    def __init__(self, items: list[Department]):
        self.by_id: dict[str, Department] = {}
        for d in items:
            if d.id in self.by_id:
                raise DataError(f"departments: duplicate id {d.id}")
            self.by_id[d.id] = d

    def __iter__(self):
        return iter(self.by_id.values())

    def __contains__(self, dept_id: str) -> bool:
        return dept_id in self.by_id

    def get(self, ref: str) -> Department:
        """By id, or by exact full or short name."""
        if ref in self.by_id:
            return self.by_id[ref]
        for d in self.by_id.values():
            if ref in (d.name, d.short):
                return d
        raise NotFound(f"no department {ref!r} (see `xunjian depts list`)")

    def street_office(self, street_id: str | None) -> Department | None:
        return next((d for d in self if d.type is DeptType.STREET and d.street == street_id), None) if street_id else None

    def coordinator(self, district_id: str | None) -> Department | None:
        return next((d for d in self if d.type is DeptType.COORDINATOR and d.district == district_id), None)


def load_departments(path: Path) -> Departments:
    rows = read_yaml(path)
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a list of departments")
    return Departments([validate(Department, r, f"{path} entry {i + 1} ({r.get('id') if isinstance(r, dict) else r})") for i, r in enumerate(rows)])


def load_city_settings(path: Path) -> CitySettings:
    return validate(CitySettings, read_yaml(path), str(path))
