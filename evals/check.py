"""``--check``: a run's metrics against its suite's thresholds (and a reference run)."""

from __future__ import annotations

from evals.storage import RunInfo
from evals.suites import Suite
from evals.tasks import task_module


def violations(run: RunInfo, suite: Suite, against: RunInfo | None = None) -> list[str]:
    """One message per violated threshold (empty when the run passes): a metric
    below its ``min`` or above its ``max``, or worse than the same metric of
    ``against`` by more than ``max_drop`` (worse: lower, or higher for metrics
    where lower is better)."""
    metrics = task_module(suite.task).METRICS
    out = []
    for name, t in suite.thresholds.items():
        v = run.metrics.get(name)
        if v is None:
            continue
        if t.min is not None and v < t.min:
            out.append(f"{name} = {v:.3f} 低于最低要求 {t.min:.3f}（below the minimum）")
        if t.max is not None and v > t.max:
            out.append(f"{name} = {v:.3f} 高于上限 {t.max:.3f}（above the maximum）")
        if against is not None and t.max_drop is not None:
            ref = against.metrics.get(name)
            if ref is None:
                continue
            worse = (ref - v) if metrics[name].higher_is_better else (v - ref)
            if worse > t.max_drop + 1e-9:
                out.append(f"{name} = {v:.3f} 比 {against.id} 的 {ref:.3f} 变差 {worse:.3f}，超过允许的 {t.max_drop:.3f}"
                           f"（regressed more than max_drop）")
    return out
