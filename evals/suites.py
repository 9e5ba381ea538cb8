"""Eval suites as data: ``evals/suites/*.yaml``, validated by :class:`Suite`.

A suite names its datasets (paths relative to ``evals/``, or absolute), its task
(``triage`` or ``route``: which metrics matter), the metrics its report leads with
and the thresholds ``--check`` enforces::

    name: triage
    task: triage
    datasets: [data/triage_route.jsonl]
    metrics: [top1, top3, macro_f1]
    thresholds:
      top1: {min: 0.80, max_drop: 0.02}
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from city.errors import InvalidInput, NotFound

EVALS_DIR = Path(__file__).resolve().parent
SUITES_DIR = EVALS_DIR / "suites"


class Threshold(BaseModel):
    """``min``: the metric may not fall below this; ``max_drop``: nor fall more than
    this below the run it is checked against (``--against``)."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = Field(default=None, ge=0, le=1)
    max_drop: float | None = Field(default=None, ge=0, le=1)


class Suite(BaseModel):
    """One eval suite (a YAML file under ``evals/suites``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = ""
    task: Literal["triage", "route"]
    datasets: list[str] = Field(min_length=1)
    metrics: list[str] = Field(min_length=1)
    thresholds: dict[str, Threshold] = {}
    folder: Path = Field(default=EVALS_DIR, exclude=True)  # datasets are relative to this
    path: Path | None = Field(default=None, exclude=True)  # the YAML file it was read from

    @model_validator(mode="after")
    def _known_metrics(self):
        from evals.metrics import METRICS

        for m in [*self.metrics, *self.thresholds]:
            if m not in METRICS:
                raise ValueError(f"unknown metric {m!r}; known: {sorted(METRICS)}")
        return self

    def dataset_paths(self) -> list[Path]:
        return [p if p.is_absolute() else self.folder / p for p in map(Path, self.datasets)]

    def dataset_sha256(self) -> str:
        """One hash over the datasets' bytes, in order: the dataset version of a run."""
        h = hashlib.sha256()
        for p in self.dataset_paths():
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
        return h.hexdigest()


def load_suite_file(path: Path | str) -> Suite:
    """Read and validate one suite file; errors name the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise NotFound(f"评测套件文件无法读取 {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise InvalidInput(f"{path}: YAML 格式错误: {e}") from None
    try:
        return Suite.model_validate({**data, "folder": path.parent.parent if path.parent.name == "suites" else path.parent,
                                     "path": path.resolve()})
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(suite)"
        raise InvalidInput(f"{path}: 字段 {loc}: {err['msg']}") from None


def list_suites(folder: Path = SUITES_DIR) -> list[Suite]:
    return [load_suite_file(p) for p in sorted(folder.glob("*.yaml"))]


def load_suite(name_or_path: str, folder: Path = SUITES_DIR, *, file: str | None = None) -> Suite:
    """A suite by name (``triage``) or by the path of its YAML file; ``file`` (a
    run's recorded suite file) is tried first when it still exists."""
    if file and Path(file).exists():
        return load_suite_file(file)
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_suite_file(p)
    path = folder / f"{name_or_path}.yaml"
    if not path.exists():
        names = ", ".join(s.stem for s in sorted(folder.glob("*.yaml")))
        raise NotFound(f"没有评测套件 {name_or_path!r}（可用：{names}）")
    return load_suite_file(path)
