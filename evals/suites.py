"""Eval suites as data: ``evals/suites/*.yaml``, validated by :class:`Suite`.

A suite names its task (a module of :mod:`evals.tasks`), its datasets (paths
relative to ``evals/``, absolute, or ``shared:NAME/...`` in the shared real
datasets, ``XUNJIAN_DATASETS``), the metrics its report leads with, the
thresholds ``--check`` enforces, and the task's options::

    name: triage
    task: triage
    datasets: [data/triage_route.jsonl]
    metrics: [top1, top3, macro_f1]
    thresholds:
      top1: {min: 0.80, max_drop: 0.02}
    options: {}

``min``/``max`` bound a metric absolutely; ``max_drop`` bounds how much worse
(in the metric's own direction) it may get than the run it is checked against.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from city import settings
from city.errors import InvalidInput, NotFound

#: Options that choose what is measured, not what it is measured on (kept out of the dataset hash).
MODEL_OPTIONS = frozenset({"weights", "backend", "conf", "judge"})
EVALS_DIR = Path(__file__).resolve().parent
SUITES_DIR = EVALS_DIR / "suites"


class Threshold(BaseModel):
    """``min``/``max``: the metric may not go below/above this; ``max_drop``: nor get
    worse by more than this than the run it is checked against (``--against``)."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None
    max_drop: float | None = Field(default=None, ge=0)


class Suite(BaseModel):
    """One eval suite (a YAML file under ``evals/suites``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = ""
    task: str
    datasets: list[str] = []
    metrics: list[str] = Field(min_length=1)
    thresholds: dict[str, Threshold] = {}
    options: dict[str, Any] = {}
    fast: bool = Field(default=False, description="quick enough for CI (`xunjian eval run --all --fast --check`)")
    folder: Path = Field(default=EVALS_DIR, exclude=True)  # datasets are relative to this
    path: Path | None = Field(default=None, exclude=True)  # the YAML file it was read from

    @model_validator(mode="after")
    def _known_task_and_metrics(self):
        from evals.tasks import TASKS, task_module

        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        known = task_module(self.task).METRICS
        for m in [*self.metrics, *self.thresholds]:
            if m not in known:
                raise ValueError(f"unknown metric {m!r} for task {self.task}; known: {sorted(known)}")
        return self

    def dataset_paths(self) -> list[Path]:
        """The datasets as paths; ``shared:`` ones under the shared datasets folder."""
        out = []
        for d in self.datasets:
            if d.startswith("shared:"):
                out.append(settings.datasets_dir() / d.removeprefix("shared:"))
            else:
                p = Path(d)
                out.append(p if p.is_absolute() else self.folder / p)
        return out

    def missing_datasets(self) -> list[Path]:
        return [p for p in self.dataset_paths() if not p.exists()]

    def dataset_sha256(self) -> str:
        """One hash over the datasets (file bytes; a folder's file names and sizes), in
        order, with the options: the dataset version of a run."""
        data_options = {k: v for k, v in self.options.items() if k not in MODEL_OPTIONS}
        h = hashlib.sha256(json.dumps(data_options, sort_keys=True, default=str).encode())
        for p in self.dataset_paths():
            if p.is_dir():
                for f in sorted(x for x in p.rglob("*") if x.is_file()):
                    h.update(f"{f.relative_to(p)}\0{f.stat().st_size}\0".encode())
            elif p.exists():
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
