"""Per-item results and the metrics computed from them.

Every metric is a function of the list of :class:`ItemResult` and returns a
fraction in [0, 1], or ``None`` when it has nothing to measure (no item of that
kind). ``expected.code`` null means "not a city-management issue": the right
answer is to abstain (predict no code).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from pydantic import BaseModel

NONE_LABEL = "（无）"  # the class "not a city issue / abstained" in F1 and the confusion matrix


class ItemOutput(BaseModel):
    """What the system decided for one item."""

    code: str | None = None
    kind: str | None = None
    name: str | None = None
    confidence: float | None = None
    policy: str | None = None
    candidates: list[str] = []  # codes, best first
    urgency: str | None = None
    department_id: str | None = None  # end to end (None when triage abstained)
    no_owner: bool | None = None
    principle: str | None = None
    department_given_code: str | None = None  # the route with the expected code
    no_owner_given_code: bool | None = None
    error: str | None = None


class ItemResult(BaseModel):
    """One item of a run: its label, the output, the correctness flags, the cost."""

    item_id: str
    text: str
    tags: list[str] = []
    expected: dict  # evals.dataset.Expected as JSON
    output: ItemOutput
    code_ok: bool
    top3_ok: bool
    urgency_ok: bool | None = None  # None: no expected urgency (out of scope)
    dept_ok: bool | None = None  # None: no expected department
    dept_given_code_ok: bool | None = None
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def gold_label(self) -> str:
        return self.expected.get("code") or NONE_LABEL

    @property
    def pred_label(self) -> str:
        """The predicted code, counted as the gold code when it is an accepted alternative."""
        if self.code_ok:
            return self.gold_label
        return self.output.code or NONE_LABEL


def score(expected: dict, output: ItemOutput) -> dict:
    """The correctness flags of one output against its label (``evals.dataset.Expected`` as a dict)."""
    gold, alts = expected.get("code"), set(expected.get("alternatives") or [])

    def accepts(code: str | None) -> bool:
        return code == gold or (code is not None and code in alts)

    flags = {"code_ok": accepts(output.code)}
    flags["top3_ok"] = flags["code_ok"] if gold is None else any(accepts(c) for c in output.candidates[:3])
    flags["urgency_ok"] = None if expected.get("urgency") is None else output.urgency == expected["urgency"]
    dept = expected.get("department_id")
    flags["dept_ok"] = None if dept is None else output.department_id == dept
    flags["dept_given_code_ok"] = None if dept is None else output.department_given_code == dept
    return flags


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def top1(items: list[ItemResult]) -> float | None:
    return _share([i.code_ok for i in items])


def top3(items: list[ItemResult]) -> float | None:
    return _share([i.top3_ok for i in items])


def macro_f1(items: list[ItemResult]) -> float | None:
    """F1 per code (abstention is the class :data:`NONE_LABEL`), averaged over every
    code that is expected or predicted."""
    if not items:
        return None
    tp, fp, fn = Counter(), Counter(), Counter()
    for i in items:
        g, p = i.gold_label, i.pred_label
        if g == p:
            tp[g] += 1
        else:
            fp[p] += 1
            fn[g] += 1
    labels = set(tp) | set(fp) | set(fn)
    return sum(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) for c in labels) / len(labels)


def urgency_acc(items: list[ItemResult]) -> float | None:
    return _share([i.urgency_ok for i in items if i.urgency_ok is not None])


def abstain_precision(items: list[ItemResult]) -> float | None:
    """Of the items where the system abstained, the share that are not city issues."""
    return _share([i.expected.get("code") is None for i in items if i.output.code is None])


def abstain_recall(items: list[ItemResult]) -> float | None:
    """Of the items that are not city issues, the share where the system abstained."""
    return _share([i.output.code is None for i in items if i.expected.get("code") is None])


def dept_acc(items: list[ItemResult]) -> float | None:
    """End to end: the department after the system's own triage (abstaining counts as wrong)."""
    return _share([i.dept_ok for i in items if i.dept_ok is not None])


def dept_acc_given_code(items: list[ItemResult]) -> float | None:
    """The department when routing the expected code: the rules and the router alone."""
    return _share([i.dept_given_code_ok for i in items if i.dept_given_code_ok is not None])


def no_owner_acc(items: list[ItemResult]) -> float | None:
    """Of the 无责任主体 items, the share routed (given the code) as 无责任主体 to the expected coordinator."""
    return _share([bool(i.output.no_owner_given_code) and bool(i.dept_given_code_ok)
                   for i in items if i.expected.get("no_owner")])


METRICS: dict[str, Callable[[list[ItemResult]], float | None]] = {
    "top1": top1, "top3": top3, "macro_f1": macro_f1, "urgency_acc": urgency_acc,
    "abstain_precision": abstain_precision, "abstain_recall": abstain_recall,
    "dept_acc": dept_acc, "dept_acc_given_code": dept_acc_given_code, "no_owner_acc": no_owner_acc,
}

#: What each metric means, for reports.
LABELS = {
    "top1": "类别准确率 top-1", "top3": "类别准确率 top-3", "macro_f1": "宏平均 F1（按类别）",
    "urgency_acc": "紧急程度准确率", "abstain_precision": "拒答精确率", "abstain_recall": "拒答召回率（非城市管理问题）",
    "dept_acc": "部门准确率（端到端）", "dept_acc_given_code": "部门准确率（给定正确类别）",
    "no_owner_acc": "无责任主体处理准确率",
}


def compute(items: list[ItemResult]) -> dict[str, float | None]:
    """Every metric over the items."""
    return {name: fn(items) for name, fn in METRICS.items()}


def by_tag(items: list[ItemResult], metric: str = "top1") -> dict[str, tuple[int, float | None]]:
    """(n, metric) per tag, for the breakdown tables."""
    tags = sorted({t for i in items for t in i.tags})
    return {t: (len(sub), METRICS[metric](sub)) for t in tags for sub in [[i for i in items if t in i.tags]]}


def confusion(items: list[ItemResult], top: int = 12) -> tuple[list[str], list[list[int]]]:
    """The confusion matrix of the ``top`` most frequent expected codes (rows: expected,
    columns: predicted); every other code is pooled as ``其他``."""
    common = [c for c, _ in Counter(i.gold_label for i in items).most_common(top)]
    labels = [*common, "其他"]

    def idx(c: str) -> int:
        return common.index(c) if c in common else len(common)

    m = [[0] * len(labels) for _ in labels]
    for i in items:
        m[idx(i.gold_label)][idx(i.pred_label)] += 1
    return labels, m
