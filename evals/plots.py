"""Plots for the reports: PNG (matplotlib, Agg backend) as base64, for ``data:``
URIs, so an HTML report is one self-contained file. Labels are ASCII (codes,
metric names): the machine may have no CJK font."""

from __future__ import annotations

import base64
import io


def plt():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def png(fig) -> str:
    """The figure as base64 PNG (and closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def metrics_png(series: dict[str, dict[str, float | None]], names: list[str]) -> str:
    """Grouped bars of fraction metrics: one group a metric, one bar a run."""
    p = plt()
    fig, ax = p.subplots(figsize=(max(6, len(names) * 0.9), 3.2))
    w = 0.8 / max(len(series), 1)
    for k, (label, metrics) in enumerate(series.items()):
        xs = [i + k * w for i in range(len(names))]
        ax.bar(xs, [metrics.get(m) or 0 for m in names], width=w, label=label)
    ax.set_xticks([i + w * (len(series) - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return png(fig)


def confusion_png(labels: list[str], m: list[list[int]]) -> str:
    p = plt()
    fig, ax = p.subplots(figsize=(6, 5))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    top = max(map(max, m)) if m else 0
    for i, row in enumerate(m):
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=6, color="white" if v > top / 2 else "black")
    return png(fig)


def histogram_png(values: list[float], xlabel: str, ylabel: str = "items", bins: int = 30) -> str:
    p = plt()
    fig, ax = p.subplots(figsize=(5, 2.6))
    ax.hist(values, bins=bins)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return png(fig)
