"""Running a suite: resolve its datasets, hand the items to its task
(:mod:`evals.tasks`), compute the metrics and record the versions of everything
that could change them (data, prompts, rules, code), so that any two runs can be
compared."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from city import settings
from city.bundle import CityData, load_city
from city.errors import XunjianError
from evals.backends import backend_config  # noqa: F401 - re-exported for the tasks
from evals.results import Progress, RunOptions
from evals.storage import Run, RunInfo
from evals.suites import Suite
from evals.tasks import task_module

REPO = Path(__file__).resolve().parent.parent


class MissingData(XunjianError):
    """A suite's datasets are not on this machine: the suite is skipped, not failed."""


# -- versions -------------------------------------------------------------------------


def _hash_files(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def prompt_version() -> str:
    """A short hash of ``prompts/*.yaml``."""
    folder = REPO / "prompts"
    return _hash_files(list(folder.glob("*.yaml")), folder)


def rules_version() -> str:
    """A short hash of every file of the city data (catalogue, departments, rules, jurisdiction)."""
    folder = settings.city_data_dir()
    return _hash_files([p for p in folder.rglob("*") if p.is_file()], folder)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def new_run_id(suite: str, now: datetime | None = None) -> str:
    """``triage-20261123-2215-ab12``: the suite, the local time, 4 random hex digits."""
    now = now or datetime.now()
    return f"{suite}-{now:%Y%m%d-%H%M}-{secrets.token_hex(2)}"


class Price(BaseModel):
    input: float = Field(ge=0, description="元 per million prompt tokens")
    output: float = Field(ge=0, description="元 per million completion tokens")


PRICES = Path(__file__).resolve().parent / "prices.yaml"


def load_prices(path: Path = PRICES) -> dict[str, Price]:
    from city.datafiles import read_yaml, validate

    data = read_yaml(path) or {}
    return {k: validate(Price, v, f"{path}: {k}") for k, v in data.items()}


def cost_of(backend: str, model: str | None, prompt_tokens: int, completion_tokens: int,
            prices: dict[str, Price] | None = None) -> float | None:
    """元 for the tokens: 0 offline and on the local model; from ``evals/prices.yaml``
    for an endpoint's model; None when the model has no price there."""
    if backend in ("offline", "local") or not (prompt_tokens or completion_tokens):
        return 0.0
    prices = load_prices() if prices is None else prices
    for key, p in prices.items():
        if model and (model == key or (key.endswith("*") and model.startswith(key[:-1]))):
            return round((prompt_tokens * p.input + completion_tokens * p.output) / 1e6, 4)
    return None


def run_suite(suite: Suite, *, backend: str = "offline", limit: int | None = None, city: CityData | None = None,
              config=None, progress: Progress | None = None, run_id: str | None = None) -> Run:
    """Run the suite's task on its items (the first ``limit``) with the backend; the
    result is not stored yet. :class:`MissingData` when a dataset is absent."""
    missing = suite.missing_datasets()
    if missing:
        raise MissingData(f"套件 {suite.name} 跳过：数据集不存在 {', '.join(map(str, missing))}"
                          f"（共享数据集设置 XUNJIAN_DATASETS 指向 shared/datasets）")
    task = task_module(suite.task)
    run_id = run_id or new_run_id(suite.name)
    opts = RunOptions(run_id=run_id, backend=backend, limit=limit, datasets=suite.dataset_paths(), options=suite.options,
                      city=city or load_city(), llm_config=config, progress=progress)
    created = datetime.now(UTC)
    t0 = time.perf_counter()
    out = task.run(suite, opts)
    seconds = time.perf_counter() - t0
    metrics = task.compute(out.results, out.extra)
    results = out.results
    info = RunInfo(
        id=run_id, suite=suite.name, task=suite.task, created_at=created, backend=backend.split(":")[0], model=out.model,
        git_commit=git_commit(), dataset_sha256=suite.dataset_sha256(), datasets=list(suite.datasets),
        prompt_version=prompt_version(), rules_version=rules_version(), metrics=metrics, items=len(results),
        seconds=round(seconds, 3), prompt_tokens=sum(r.prompt_tokens for r in results),
        completion_tokens=sum(r.completion_tokens for r in results), item_limit=limit,
        cost=cost_of(backend.split(":")[0], out.model, sum(r.prompt_tokens for r in results),
                     sum(r.completion_tokens for r in results)),
        suite_file=str(suite.path) if suite.path else None, notes=out.notes,
    )
    return Run(info=info, results=results, extra=out.extra)
