"""Synthetic patrol scenes: a seeded street-scene generator (``world``), a
renderer of vehicle and drone views with exact YOLO boxes (``render``), the
YOLO training-set writer (``dataset``) and the demo footage batch
(``footage``). This module holds the class list, loaded from ``classes.yaml``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CLASSES_FILE = Path(__file__).with_name("classes.yaml")


class SynthClass(BaseModel):
    """One detector class and how the scene generator makes it."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(ge=0)
    name: str = Field(pattern=r"^[a-z_]+$")
    label_zh: str
    kind: Literal["事件", "部件"] | None
    code: str | None = Field(default=None, pattern=r"^\d{5}$")
    size_m: tuple[float, float]
    where: tuple[Literal["road", "sidewalk", "kerb"], ...]

    @model_validator(mode="after")
    def _check(self):
        if not 0 < self.size_m[0] <= self.size_m[1]:
            raise ValueError(f"{self.name}: bad size_m {self.size_m}")
        if (self.kind is None) != (self.code is None):
            raise ValueError(f"{self.name}: kind and code go together")
        return self

    @property
    def is_issue(self) -> bool:
        return self.code is not None


class ClassList(BaseModel):
    classes: list[SynthClass]

    @model_validator(mode="after")
    def _ids(self):
        if [c.id for c in self.classes] != list(range(len(self.classes))):
            raise ValueError("class ids must be 0..n-1 in order")
        if len({c.name for c in self.classes}) != len(self.classes):
            raise ValueError("duplicate class names")
        return self


@lru_cache(maxsize=1)
def load_classes() -> tuple[SynthClass, ...]:
    """The detector classes, in id order."""
    return tuple(ClassList.model_validate(yaml.safe_load(CLASSES_FILE.read_text(encoding="utf-8"))).classes)


def class_names() -> list[str]:
    return [c.name for c in load_classes()]


def class_by_name(name: str) -> SynthClass:
    for c in load_classes():
        if c.name == name:
            return c
    raise KeyError(name)
