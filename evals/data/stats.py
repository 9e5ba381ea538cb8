"""Counts for evals/data/README.md: ``python evals/data/stats.py`` prints them as Markdown."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from city.bundle import load_city
from evals.dataset import HARD_PATH, MAIN_PATH, load_items


def table(title: str, counter: Counter, label=lambda k: str(k)) -> str:
    rows = [f"| {label(k)} | {n} |" for k, n in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))]
    return "\n".join([f"**{title}**", "", "| | n |", "|---|---|", *rows, ""])


def main() -> None:
    city = load_city()

    def code_label(k):
        code, kind = k
        if code is None:
            return "（非城市管理问题）"
        return f"{code} {city.catalogue.get(code, kind).name}" + ("（部件）" if kind == "部件" else "")

    for path in (MAIN_PATH, HARD_PATH):
        items = load_items(path)
        codes = Counter((it.expected.code, it.expected.kind.value if it.expected.kind else None) for it in items)
        distinct = {c for c, _ in codes if c}
        print(f"### {path.name}: {len(items)} items, {len(distinct)} distinct codes ({sum(1 for c, _ in codes if c)} kind:code pairs)\n")
        print(table("source", Counter(it.source.value for it in items)))
        print(table("style", Counter(it.style for it in items)))
        print(table("district", Counter(city.locate(it.lat, it.lon).district_name or "（无坐标）" for it in items)))
        print(table("department", Counter(it.expected.department_id or "（无）" for it in items)))
        print(table("urgency", Counter(it.expected.urgency.value if it.expected.urgency else "（无）" for it in items)))
        print(table("tags", Counter(t for it in items for t in it.tags)))
        print(table("code", codes, code_label))


if __name__ == "__main__":
    main()
