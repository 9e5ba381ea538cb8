"""The eval tasks, one module each (see :mod:`evals.results` for the contract)."""

from __future__ import annotations

import importlib
from types import ModuleType

#: task name → module (imported when used).
TASKS = {
    "triage": "evals.tasks.triage",
    "route": "evals.tasks.triage",  # the same items and metrics, led by the department ones
    "detect": "evals.tasks.detect",
    "footage": "evals.tasks.footage",
    "drafting": "evals.tasks.drafting",
    "safety": "evals.tasks.safety",
    "complaints": "evals.tasks.complaints",
}


def task_module(name: str) -> ModuleType:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name])
