"""What every eval task produces: one :class:`Result` per item, and the task's
contract (:class:`Metric`, :class:`RunOptions`, :class:`TaskRun`, :class:`Plot`,
:class:`ReportTable`).

A task is a module under ``evals/tasks/`` (registered in
:data:`evals.tasks.TASKS`) with:

- ``METRICS: dict[str, Metric]`` — every metric it computes, with its label and direction;
- ``run(suite, opts: RunOptions) -> TaskRun`` — evaluate the items;
- ``compute(results, extra) -> dict[str, float | None]`` — the metrics (None: nothing to measure);
- optionally ``plots(results, extra) -> list[Plot]`` and ``tables(results, extra) -> list[ReportTable]``
  for the report (PR curves, confusion matrices, per-class tables …).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field


class Result(BaseModel):
    """One evaluated item: its label, what the system did, whether that was right."""

    item_id: str
    text: str = Field(default="", description="the input as shown in reports (a complaint, an image path, a clip)")
    tags: list[str] = []
    expected: dict = {}
    output: dict = {}
    ok: bool = Field(description="the item's headline correctness: flips and failure lists use it")
    flags: dict[str, bool | None] = Field(default_factory=dict, description="per-check correctness (None: not applicable)")
    badness: float = Field(default=0.0, description="orders the worst failures, highest first")
    expected_summary: str = ""
    output_summary: str = ""
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


class Metric(BaseModel):
    """A metric's label (Chinese, for reports) and which way is better."""

    model_config = ConfigDict(frozen=True)

    label: str
    higher_is_better: bool = True
    unit: str = Field(default="", description="'' for a fraction in [0, 1]; else e.g. 'm', 's', 'ms'")


Progress = Callable[[int, int, str], None]  # (done, total, item id)


class RunOptions(BaseModel):
    """How a task should run: the backend, a limit, the resolved datasets, the suite's options."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    backend: str = "offline"
    limit: int | None = None
    datasets: list[Path] = []
    options: dict[str, Any] = {}
    city: Any = None  # city.bundle.CityData
    llm_config: Any = None  # agents.config.LLMConfig override (tests: the fake server)
    progress: Progress | None = None


class TaskRun(BaseModel):
    results: list[Result]
    extra: dict = Field(default_factory=dict, description="task data the metrics/plots need beyond the items (stored with the run)")
    model: str | None = Field(default=None, description="the model measured: an LLM name, detector weights …")
    notes: list[str] = []


class Plot(NamedTuple):
    title: str
    png_base64: str


class ReportTable(NamedTuple):
    title: str
    headers: list[str]
    rows: list[list[str]]
