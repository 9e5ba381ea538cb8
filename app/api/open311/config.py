"""What the city offers over Open311: ``open311.yaml`` (the services citizens may
report, the questions asked with them, the general notice), checked against the
city's catalogue and routing vocabulary, and the one jurisdiction served."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from app.api.open311.formats import Open311Error
from city.bundle import CityData
from city.catalogue import Kind, Source
from city.datafiles import read_yaml, validate
from city.errors import DataError


class Value(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64)


class AttributeDef(BaseModel):
    """A question asked with a service (a GeoReport attribute)."""

    model_config = ConfigDict(extra="forbid")
    description: str = Field(min_length=1)
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    datatype_description: str = ""
    required: bool = False
    maps_to: Literal["context", "owner"] | None = None
    values: list[Value] = []

    @field_validator("values", mode="before")
    @classmethod
    def _plain(cls, v):
        return [{"key": x, "name": x} if isinstance(x, str) else x for x in v or []]


class ServiceDef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^\d{5}$")
    attributes: list[str] = []
    notice: str | None = None


class Open311Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notice: str = Field(min_length=1)
    attributes: dict[str, AttributeDef] = {}
    services: list[ServiceDef]

    _by_code: dict[str, ServiceDef] = PrivateAttr(default_factory=dict)

    def model_post_init(self, _context) -> None:
        self._by_code = {s.code: s for s in self.services}

    def service(self, code: str) -> ServiceDef | None:
        return self._by_code.get(code)


_CONFIGS: dict[Path, Open311Config] = {}


def load_config(city: CityData) -> Open311Config:
    """``open311.yaml`` of the city, checked against its catalogue and routing vocabulary."""
    folder = Path(city.folder)
    if folder in _CONFIGS:
        return _CONFIGS[folder]
    path = folder / "open311.yaml"
    cfg = validate(Open311Config, read_yaml(path), str(path))
    vocab = {"context": city.router.vocabulary.contexts, "owner": city.router.vocabulary.owners}
    for code, a in cfg.attributes.items():
        if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", code):
            raise DataError(f"{path}: attribute {code!r}: codes are letters, digits and _")
        if a.datatype.endswith("valuelist") and not a.values:
            raise DataError(f"{path}: attribute {code}: a {a.datatype} needs values")
        if a.maps_to:
            if a.datatype != "singlevaluelist":
                raise DataError(f"{path}: attribute {code}: maps_to needs a singlevaluelist")
            bad = [v.key for v in a.values if v.key not in vocab[a.maps_to]]
            if bad:
                raise DataError(f"{path}: attribute {code}: values {bad} are not {a.maps_to}s of routing.yaml")
    seen = set()
    for s in cfg.services:
        if s.code in seen:
            raise DataError(f"{path}: service {s.code} listed twice")
        seen.add(s.code)
        if (Kind.EVENT, s.code) not in city.catalogue:
            raise DataError(f"{path}: service {s.code}: no 事件 with this code in the catalogue")
        if Source.CITIZEN not in city.catalogue.get(s.code, Kind.EVENT).sources:
            raise DataError(f"{path}: service {s.code}: the catalogue does not list 市民 among its sources")
        unknown = [a for a in s.attributes if a not in cfg.attributes]
        if unknown:
            raise DataError(f"{path}: service {s.code}: unknown attributes {unknown}")
    _CONFIGS[folder] = cfg
    return cfg


def check_jurisdiction(city: CityData, jurisdiction_id: str | None) -> None:
    """404 unless ``jurisdiction_id`` (optional) is this city's code or name."""
    if jurisdiction_id and jurisdiction_id.strip() not in (city.settings.code, city.settings.name):
        raise Open311Error(404, f"jurisdiction_id「{jurisdiction_id[:32]}」不存在：本服务只受理 {city.settings.code}（{city.settings.name}）")
