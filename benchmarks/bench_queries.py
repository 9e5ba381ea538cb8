#!/usr/bin/env python
"""EXPLAIN (ANALYZE) of every list, filter and sort the API, the chat tools and the
statistics send, on PostgreSQL at 1M cases, with and without migration 0007's
indexes (the "before" runs in a transaction that drops them, then rolls back).

    python benchmarks/bench_queries.py                      # 1M cases, ~4 min the first time
    python benchmarks/bench_queries.py --keep               # keep the database for another run
    python benchmarks/bench_queries.py --resume --keep      # reuse it (no refill)
    python benchmarks/bench_queries.py --cases 100000 --pg postgresql+psycopg://...

What it does:

1. creates the database ``--pg-db`` next to ``--pg`` (its role needs CREATEDB),
   migrates it, fills ``cases`` with bench_store.py's synthetic city (COPY) and
   derives the audit trail from each row (上报, 立案, 派遣 with department and
   deadline, 处置完成, 核查通过, 结案, 评价, 挂账 … as the row's status implies:
   ~4 audit rows per case), then ``VACUUM (ANALYZE)``;
2. runs each scenario through the real code (``Store.list``/``count`` with the
   API's and the chat's filters, the dashboard's intake query and due counts,
   ``city.stats.compute`` and its hot spots, the Open311 list query, ``Store.due``,
   ``Pipeline.waiting``'s list …), capturing the SQL it sends;
3. EXPLAINs each captured statement with ``ANALYZE, BUFFERS`` three times (the
   best counts) with the 0007 indexes and, in a rolled-back transaction, without
   them; prints the execution times, the ratio and the plan's access paths.

Times are the server's own execution time (no network, no ORM), warm cache.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_store import NOW, World, bulk_fill, count_cases, pg_target
from rich.console import Console
from rich.table import Table
from sqlalchemy import event, func, select, text

from city.bundle import load_city
from city.cases import CaseQuery
from city.catalogue import Source
from city.lifecycle import OPEN, Status
from city.store import Store

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 200)

#: the indexes of migration 0007 (dropped for the "before" figures)
NEW_INDEXES = ["ix_cases_created_id", "ix_cases_department_created", "ix_cases_status_deadline",
               "ix_cases_district_created", "ix_cases_street_created",
               "ix_case_audit_action_at"]
DROPPED_INDEXES = {"ix_cases_created_at": "CREATE INDEX ix_cases_created_at ON cases (created_at)",
                   "ix_cases_deadline": "CREATE INDEX ix_cases_deadline ON cases (deadline)"}


def fill_audit(store: Store) -> float:
    """The audit trail each synthetic case's status implies, written by the database itself."""
    t0 = time.perf_counter()
    dept_statuses = "('派遣','处置中','处置完成','核查','结案','已评价','挂账')"
    steps = [
        ("'上报'", "NULL", "'上报'", "created_at", "'{}'", "TRUE"),
        ("'立案'", "'上报'", "'立案'", "created_at + interval '10 minutes'", "'{}'",
         "status NOT IN ('上报','不予立案','作废')"),
        ("'不予立案'", "'上报'", "'不予立案'", "created_at + interval '30 minutes'", "'{}'", "status = '不予立案'"),
        ("'作废'", "'上报'", "'作废'", "created_at + interval '30 minutes'", "'{}'", "status = '作废'"),
        ("'派遣'", "'立案'", "'派遣'", "created_at + interval '20 minutes'",
         "json_build_object('department', department_id, 'deadline', "
         "to_char(coalesce(deadline, created_at + interval '3 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS+00:00'))::text",
         f"department_id IS NOT NULL AND status IN {dept_statuses}"),
        ("'签收'", "'派遣'", "'处置中'", "created_at + interval '2 hours'", "'{}'",
         "status IN ('处置中','处置完成','核查','结案','已评价')"),
        ("'处置完成'", "'处置中'", "'处置完成'", "coalesce(closed_at, updated_at) - interval '1 hour'", "'{}'",
         "status IN ('处置完成','核查','结案','已评价')"),
        ("'核查通过'", "'核查'", "'结案'", "coalesce(closed_at, updated_at)", "'{}'", "status IN ('结案','已评价')"),
        ("'评价'", "'结案'", "'已评价'", "coalesce(closed_at, updated_at) + interval '1 hour'",
         "json_build_object('rating', rating)::text", "status = '已评价'"),
        ("'挂账'", "'派遣'", "'挂账'", "updated_at", "'{}'", "status = '挂账'"),
    ]
    with store.write_engine.connect() as conn:
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
        for action, frm, to, at, data, where in steps:
            conn.exec_driver_sql(
                "INSERT INTO case_audit (case_id, at, actor, action, from_status, to_status, note, data) "
                f"SELECT id, {at}, 'bench', {action}, {frm}, {to}, '', CAST({data} AS json) FROM cases WHERE {where}")
        conn.commit()
    with store.write_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) case_audit")
        conn.exec_driver_sql("VACUUM (ANALYZE) cases")
    return time.perf_counter() - t0


# -- the scenarios ---------------------------------------------------------------------------


def scenarios(store: Store, n: int) -> list[tuple[str, Callable[[], object]]]:
    """(name, a call of the real code) for every list/filter/sort the API, chat and stats use."""
    from agents.pipeline import Pipeline
    from app.api import dashboard
    try:
        from app.api.open311.views import OPEN_VALUES, VIEW_COLUMNS
        from app.api.open311.views import visible as _visible
    except ImportError:  # the single-module layout
        from app.api.open311 import OPEN_VALUES, VIEW_COLUMNS, _visible
    from city import stats
    from city.store.schema import CaseRow

    now = NOW
    as_of = now
    dept = "JB-HW" if "JB-HW" in store.city.departments else next(iter(store.city.departments)).id
    page = {"limit": 50}
    since30 = now - timedelta(days=30)
    q30 = stats.StatsQuery(since=since30, until=now)
    with_dept = [Status.DISPATCHED, Status.IN_PROGRESS]

    def page_of(**kw):
        q = CaseQuery(as_of=as_of, **{**page, **kw})
        return lambda: (store.list(q), store.count(q))

    def open311(**kw):
        def run():
            stmt = select(*VIEW_COLUMNS).where(_visible(), CaseRow.created_at >= now - timedelta(days=90), CaseRow.created_at < now)
            if kw.get("status") == "open":
                stmt = stmt.where(CaseRow.status.in_(OPEN_VALUES))
            if kw.get("codes"):
                stmt = stmt.where(CaseRow.code.in_(kw["codes"]))
            stmt = stmt.order_by(CaseRow.created_at.desc(), CaseRow.id.desc()).limit(50).offset(kw.get("offset", 0))
            with store.reading() as s:
                return s.execute(stmt).all()
        return run

    pipe = Pipeline(store)
    mid = store.list(CaseQuery(limit=1, offset=n // 2))[0].number
    return [
        ("API list: no filter (page 1)", page_of()),
        ("API list: no filter, offset 50% (limit/offset)", page_of(offset=n // 2)),
        ("API list: keyset page after the case at 50%", lambda: store.list(CaseQuery(limit=50), after=mid)),
        ("API list: status 派遣,处置中", page_of(status=with_dept)),
        ("API list: status 上报 (rare)", page_of(status=[Status.REPORTED])),
        ("API list: department (department user)", page_of(department_id=dept)),
        ("API list: department, offset 2000", page_of(department_id=dept, offset=2000)),
        ("API list: department + status", page_of(department_id=dept, status=with_dept)),
        ("API list: district", page_of(district_id="500105")),
        ("API list: street", page_of(street_id="500105001")),
        ("API list: code 06010", page_of(code="06010")),
        ("API list: source 市民", page_of(source=Source.CITIZEN)),
        ("API list: last 7 days", page_of(since=now - timedelta(days=7))),
        ("API list: overdue=true", page_of(overdue=True)),
        ("API list: overdue=true + department", page_of(overdue=True, department_id=dept)),
        ("API list: text q (ILIKE, rare)", page_of(text="示例路123号")),
        ("API map: located, 1000, open", page_of(limit=1000, located=True, status=sorted(OPEN))),
        ("dashboard: intake by day (30 d)", lambda: dashboard._intake(store, since30, now, None)),
        ("dashboard: intake by day, department", lambda: dashboard._intake(store, since30, now, dept)),
        ("dashboard: due counts", lambda: store.due_counts(now)),
        ("dashboard: open cases (count)", lambda: store.count(CaseQuery(status=sorted(OPEN)))),
        ("dashboard: open cases of a department", lambda: store.count(CaseQuery(status=sorted(OPEN), department_id=dept))),
        ("stats: compute 30 d (4 queries)", lambda: stats.compute(store, q30, now=now, with_hot_spots=False)),
        ("stats: compute 30 d, department", lambda: stats.compute(store, q30.model_copy(update={"department_id": dept}),
                                                                  now=now, with_hot_spots=False)),
        ("stats: hot spots 30 d", lambda: stats.hot_spots(store, q30)),
        ("open311: requests page 1 (90 d)", open311()),
        ("open311: requests open, 2 codes", open311(status="open", codes=["06010", "09006"])),
        ("chat: find_cases department (scan 1000)", page_of(department_id=dept, limit=1000)),
        ("chat: summary today (scan 1000)", page_of(since=now.replace(hour=0), limit=1000)),
        ("chat/SLA: Store.due (overdue + soon)", lambda: store.due(now)),
        ("pipeline: waiting (上报, 200)", lambda: pipe.waiting()),
    ]


def capture(store: Store, fn: Callable[[], object]) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        if re.search(r"\bFROM (cases|case_audit)\b|JOIN (cases|case_audit)\b", statement) and "pg_advisory" not in statement:
            seen.append((statement, parameters))

    event.listen(store.read_engine, "before_cursor_execute", grab)
    try:
        fn()
    finally:
        event.remove(store.read_engine, "before_cursor_execute", grab)
    return seen


def _walk(node: dict, acc: list[str]) -> None:
    kind = node.get("Node Type", "")
    if "Index" in kind or kind in ("Seq Scan", "Sort", "Incremental Sort", "Hash Join", "Nested Loop", "Merge Join"):
        name = node.get("Index Name")
        label = kind.replace(" Scan", "").replace("Index Only", "IOS").replace("Bitmap Index", "Bitmap")
        label += f" {name}" if name else (f" {node.get('Relation Name')}" if node.get("Relation Name") else "")
        if kind in ("Sort",) and node.get("Sort Method"):
            label += f" ({node['Sort Method']})"
        acc.append(label)
    for child in node.get("Plans", []):
        _walk(child, acc)


def explain(conn, statement: str, params, repeat: int = 3) -> tuple[float, str, int]:
    """(best execution ms, access paths, rows out) of one statement."""
    best, plan = float("inf"), None
    for _ in range(repeat):
        raw = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params).scalar_one()
        doc = (json.loads(raw) if isinstance(raw, str) else raw)[0]
        if doc["Execution Time"] < best:
            best, plan = doc["Execution Time"], doc
    acc: list[str] = []
    _walk(plan["Plan"], acc)
    seen, paths = set(), []
    for a in acc:
        if a not in seen:
            seen.add(a)
            paths.append(a)
    return best, ", ".join(paths[:4]), plan["Plan"].get("Actual Rows", 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", default=os.environ.get("XUNJIAN_TEST_PG_URL", "postgresql+psycopg://xunjian:xunjian@127.0.0.1/xunjian_test"))
    p.add_argument("--pg-db", default="xunjian_queries")
    p.add_argument("--cases", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--keep", action="store_true", help="keep the database")
    p.add_argument("--resume", action="store_true", help="reuse a kept database")
    p.add_argument("--only", help="run only the scenarios whose name contains this")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)

    city = load_city()
    t = pg_target(args.pg, args.pg_db, args.resume)
    store = Store(t.url, city)
    rows_out = []
    try:
        have = count_cases(store)
        if have < args.cases:
            store.close()
            fill = bulk_fill(t, World(city, args.seed), have, args.cases)
            store = Store(t.url, city)
            console.print(f"cases filled in {fill:.0f} s; audit rows …")
            with store.write_engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM case_audit")
            console.print(f"audit rows in {fill_audit(store):.0f} s")
        with store.reading() as s:
            n_audit = s.execute(text("SELECT count(*) FROM case_audit")).scalar_one()
            n_cases = s.execute(select(func.count()).select_from(text("cases"))).scalar_one()
            size = s.execute(text("SELECT pg_total_relation_size('cases'), pg_total_relation_size('case_audit')")).one()
        console.print(f"{n_cases:,} cases, {n_audit:,} audit rows; cases {size[0] / 2**20:.0f} MiB, audit {size[1] / 2**20:.0f} MiB (with indexes)")
        with store.reading() as s:
            present = set(s.execute(text("SELECT indexname FROM pg_indexes WHERE tablename IN ('cases', 'case_audit')")).scalars())
        new = [i for i in NEW_INDEXES if i in present]
        restore = {k: v for k, v in DROPPED_INDEXES.items() if k not in present}
        console.print(f"0007 indexes present: {', '.join(new) or 'none'}; re-created for 'before': {', '.join(restore) or 'none'}")
        for name, fn in scenarios(store, n_cases):
            if args.only and args.only not in name:
                continue
            wall0 = time.perf_counter()
            fn()
            wall = (time.perf_counter() - wall0) * 1000
            stmts = capture(store, fn)
            with store.read_engine.connect() as conn:
                after = [explain(conn, st, pr) for st, pr in stmts]
                conn.rollback()
                with conn.begin():  # "before": without 0007 (DDL is transactional; rolled back)
                    conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
                    for ix in new:
                        conn.exec_driver_sql(f"DROP INDEX {ix}")
                    for ddl in restore.values():
                        conn.exec_driver_sql(ddl)
                    if new or restore:
                        conn.exec_driver_sql("ANALYZE cases")
                    before = [explain(conn, st, pr) for st, pr in stmts]
                    conn.rollback()
            r = {"name": name, "statements": len(stmts), "wall_ms": wall,
                 "before_ms": sum(b[0] for b in before), "after_ms": sum(a[0] for a in after),
                 "before_each": [round(b[0], 2) for b in before], "after_each": [round(a[0], 2) for a in after],
                 "before_plan": " | ".join(b[1] for b in before), "after_plan": " | ".join(a[1] for a in after)}
            rows_out.append(r)
            console.print(f"{name}: before {r['before_each']} ms, after {r['after_each']} ms  [{r['after_plan']}]")
    finally:
        store.close()
        if not args.keep:
            t.cleanup()
    tab = Table(title=f"EXPLAIN ANALYZE at {n_cases:,} cases, {n_audit:,} audit rows (server execution ms, best of 3)")
    for col in ("query", "before ms", "after ms", "×", "plan after (plan before)"):
        tab.add_column(col, overflow="fold")

    def each(xs: list[float]) -> str:
        return " + ".join(f"{x:.1f}" for x in xs)

    for r in rows_out:
        ratio = r["before_ms"] / r["after_ms"] if r["after_ms"] else float("nan")
        tab.add_row(r["name"], each(r["before_each"]), each(r["after_each"]), f"{ratio:.1f}",
                    r["after_plan"] + ("" if r["after_plan"] == r["before_plan"] else f"  ({r['before_plan']})"))
    out.print(tab)
    if args.out:
        args.out.write_text(json.dumps({"cases": n_cases, "audit": n_audit, "results": rows_out}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
