"""Stored eval runs: a SQLite file (``$XUNJIAN_HOME/evals.db``, or ``$XUNJIAN_EVALS_DB``).

Two tables, created on first use: ``eval_runs`` (one row a run: suite, backend,
versions of the data, prompts, rules and code, metrics, totals) and
``eval_items`` (one row an item: label, output, correctness flags, latency,
tokens), so any two runs can be compared item by item.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from city import settings
from city.errors import NotFound
from evals.results import Result

SCHEMA = """
CREATE TABLE IF NOT EXISTS eval_runs (
    id TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    task TEXT NOT NULL,
    created_at TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT,
    git_commit TEXT,
    dataset_sha256 TEXT NOT NULL,
    datasets TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    rules_version TEXT NOT NULL,
    metrics TEXT NOT NULL,
    items INTEGER NOT NULL,
    seconds REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL,
    item_limit INTEGER,
    suite_file TEXT,
    notes TEXT NOT NULL DEFAULT '[]',
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS eval_items (
    run_id TEXT NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
    item_id TEXT NOT NULL,
    data TEXT NOT NULL,
    ok INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, item_id)
);
CREATE INDEX IF NOT EXISTS eval_runs_suite ON eval_runs (suite, created_at);
"""


class RunInfo(BaseModel):
    """A run's header: what was measured, on what, with what result."""

    id: str
    suite: str
    task: str
    created_at: datetime
    backend: str
    model: str | None = None
    git_commit: str | None = None
    dataset_sha256: str
    datasets: list[str]
    prompt_version: str
    rules_version: str
    metrics: dict[str, float | None]
    items: int
    seconds: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None  # no price table yet: None
    item_limit: int | None = None
    suite_file: str | None = None  # the suite's YAML file, to find its thresholds again
    notes: list[str] = []


class Run(BaseModel):
    info: RunInfo
    results: list[Result]
    extra: dict = {}


def default_path() -> Path:
    return Path(os.environ.get("XUNJIAN_EVALS_DB") or settings.home() / "evals.db")


class EvalStore:
    """The runs database."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as c:
            c.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def save(self, run: Run) -> None:
        i = run.info
        row = i.model_dump(mode="json")
        row["datasets"] = json.dumps(i.datasets, ensure_ascii=False)
        row["metrics"] = json.dumps(i.metrics)
        row["notes"] = json.dumps(i.notes, ensure_ascii=False)
        row["extra"] = json.dumps(run.extra, ensure_ascii=False)
        cols = list(row)
        conn = self._conn()
        try:
            with conn:
                conn.execute(f"INSERT INTO eval_runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                             [row[c] for c in cols])
                conn.executemany(
                    "INSERT INTO eval_items (run_id, item_id, data, ok, latency_ms, tokens) VALUES (?, ?, ?, ?, ?, ?)",
                    [(i.id, r.item_id, r.model_dump_json(), int(r.ok), r.latency_ms, r.prompt_tokens + r.completion_tokens)
                     for r in run.results])
        finally:
            conn.close()

    @staticmethod
    def _info(row: sqlite3.Row) -> RunInfo:
        d = dict(row)
        d["datasets"] = json.loads(d["datasets"])
        d["metrics"] = json.loads(d["metrics"])
        d["notes"] = json.loads(d.get("notes") or "[]")
        d.pop("extra", None)
        return RunInfo.model_validate(d)

    def runs(self, suite: str | None = None, limit: int = 20) -> list[RunInfo]:
        """The latest runs first."""
        conn = self._conn()
        try:
            q = "SELECT * FROM eval_runs" + (" WHERE suite = ?" if suite else "") + " ORDER BY created_at DESC, id DESC LIMIT ?"
            return [self._info(r) for r in conn.execute(q, ([suite] if suite else []) + [limit])]
        finally:
            conn.close()

    def resolve(self, ref: str, suite: str | None = None) -> str:
        """A run id from an id, a unique id prefix, ``latest`` or ``baseline``
        (the latest offline run of ``suite``)."""
        conn = self._conn()
        try:
            if ref in ("latest", "baseline"):
                q = "SELECT id FROM eval_runs WHERE 1=1" + (" AND suite = ?" if suite else "") \
                    + (" AND backend = 'offline'" if ref == "baseline" else "") + " ORDER BY created_at DESC, id DESC LIMIT 1"
                row = conn.execute(q, [suite] if suite else []).fetchone()
                if not row:
                    raise NotFound(f"没有可用的{'基线（离线）' if ref == 'baseline' else '最近'}评测运行"
                                   + (f"（套件 {suite}）" if suite else ""))
                return row["id"]
            rows = conn.execute("SELECT id FROM eval_runs WHERE id = ? OR id LIKE ? ORDER BY id", [ref, ref + "%"]).fetchall()
        finally:
            conn.close()
        ids = [r["id"] for r in rows]
        if ref in ids:
            return ref
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise NotFound(f"没有评测运行 {ref!r}（xunjian eval list 查看）")
        raise NotFound(f"{ref!r} 不唯一：{', '.join(ids[:5])}")

    def get(self, ref: str) -> Run:
        run_id = self.resolve(ref)
        conn = self._conn()
        try:
            head = conn.execute("SELECT * FROM eval_runs WHERE id = ?", [run_id]).fetchone()
            rows = conn.execute("SELECT data FROM eval_items WHERE run_id = ? ORDER BY item_id", [run_id]).fetchall()
        finally:
            conn.close()
        return Run(info=self._info(head), results=[Result.model_validate_json(r["data"]) for r in rows],
                   extra=json.loads(head["extra"] or "{}"))
