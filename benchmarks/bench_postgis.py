#!/usr/bin/env python
"""Does PostGIS pay off for the dedupe lookup? The store's grid (``cell`` in the
``(cell, code, created_at)`` index, plus the circle's bounding box) against a
PostGIS ``geography`` column with a GiST index and ``ST_DWithin``, on the same
rows, the same points, the same server.

    python benchmarks/bench_postgis.py                     # 1M cases (fills xunjian_postgis), ~3 min
    python benchmarks/bench_postgis.py --pg-db xunjian_queries --resume --keep   # a database bench_queries.py kept

Needs the PostGIS extension on the server (Debian: ``apt-get install
postgresql-15-postgis-3``) and a role that may ``CREATE EXTENSION postgis``
(a superuser, or the database owner where postgis is trusted); the script does
it as the URL's role or, with ``--superuser-url``, as another.

What it measures (one client thread, psycopg directly, so that both sides pay
the same round trip and no ORM): for ``--lookups`` points drawn like
bench_store.py's (half at hot spots), the query ``nearby_open`` sends (cells,
open statuses, codes, since, bounding box) and three PostGIS variants:

- ``gist``: ``ST_DWithin(geog, point, 50)`` + the same status/code/date filters,
  GiST index on ``geog`` (all cases);
- ``gist_open``: the same, partial GiST index on open cases only;
- ``btree_gist``: one GiST index on ``(geog, code, created_at)`` (btree_gist);

then reports p50/p95/p99, that every variant returns the same case ids as the
grid query, the index sizes, and the time to add the column and build each index.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np
import psycopg
from bench_store import (
    NOW,
    RADIUS_M,
    SINCE,
    World,
    bulk_fill,
    count_cases,
    make_queries,
    pg_target,
)
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from city import geo
from city.bundle import load_city
from city.lifecycle import OPEN
from city.store import Store, _cap_box

console = Console(stderr=True)
OPEN_VALUES = sorted(s.value for s in OPEN)

GRID_SQL = """SELECT id FROM cases WHERE cell = ANY(%(cells)s) AND status = ANY(%(open)s) AND code = ANY(%(codes)s)
AND created_at >= %(since)s AND lat BETWEEN %(lat0)s AND %(lat1)s AND lon BETWEEN %(lon0)s AND %(lon1)s"""
GIS_SQL = """SELECT id FROM cases WHERE ST_DWithin(geog, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography, %(r)s)
AND status = ANY(%(open)s) AND code = ANY(%(codes)s) AND created_at >= %(since)s"""


def pct(xs, p):
    return float(np.percentile(np.asarray(xs), p))


def timed(conn, sql: str, params: list[dict]) -> tuple[list[float], list[set[int]]]:
    ms, out = [], []
    with conn.cursor() as cur:
        for p in params[:200]:  # warm up
            cur.execute(sql, p)
            cur.fetchall()
        for p in params:
            a = time.perf_counter()
            cur.execute(sql, p)
            rows = cur.fetchall()
            ms.append((time.perf_counter() - a) * 1000)
            out.append({r[0] for r in rows})
    return ms, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default=os.environ.get("XUNJIAN_TEST_PG_URL", "postgresql+psycopg://xunjian:xunjian@127.0.0.1/xunjian_test"))
    ap.add_argument("--pg-db", default="xunjian_postgis")
    ap.add_argument("--superuser-url", help="a URL (any database on the server) of a role that may CREATE EXTENSION postgis")
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)

    city = load_city()
    world = World(city, args.seed)
    t = pg_target(args.pg, args.pg_db, args.resume)
    store = Store(t.url, city)
    have = count_cases(store)
    store.close()
    if have < args.cases:
        bulk_fill(t, world, have, args.cases)
    dsn = make_url(t.url).set(drivername="postgresql").render_as_string(hide_password=False)
    if args.superuser_url:
        su = make_url(args.superuser_url).set(drivername="postgresql", database=args.pg_db).render_as_string(hide_password=False)
        with psycopg.connect(su, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            c.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    build: dict[str, float] = {}
    sizes: dict[str, int] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET statement_timeout = 0")
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
            n = conn.execute("SELECT count(*) FROM cases").fetchone()[0]
            a = time.perf_counter()
            conn.execute("ALTER TABLE cases ADD COLUMN IF NOT EXISTS geog geography(Point, 4326)")
            conn.execute("UPDATE cases SET geog = ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography WHERE geog IS NULL AND lat IS NOT NULL")
            conn.execute("VACUUM (ANALYZE) cases")
            build["add column + fill + vacuum"] = time.perf_counter() - a
            for name, ddl in (
                ("grid (existing)", None),
                ("gist", "CREATE INDEX IF NOT EXISTS ix_cases_geog ON cases USING gist (geog)"),
                ("gist_open", "CREATE INDEX IF NOT EXISTS ix_cases_geog_open ON cases USING gist (geog) WHERE status IN ({})".format(
                    ", ".join(f"'{v}'" for v in OPEN_VALUES))),
                ("btree_gist", "CREATE INDEX IF NOT EXISTS ix_cases_geog_code_created ON cases USING gist (geog, code, created_at)"),
            ):
                if ddl:
                    a = time.perf_counter()
                    conn.execute(ddl)
                    build[name] = time.perf_counter() - a
            conn.execute("ANALYZE cases")
            for ix in ("ix_cases_cell_code_created", "ix_cases_geog", "ix_cases_geog_open", "ix_cases_geog_code_created"):
                sizes[ix] = conn.execute("SELECT pg_relation_size(%s::regclass)", (ix,)).fetchone()[0]

            queries = make_queries(world, args.lookups, args.seed)
            since = NOW - SINCE
            params = []
            for q in queries:
                lat0, lat1, lon_r = _cap_box(q.lat, q.lon, RADIUS_M)
                lon0, lon1 = lon_r
                params.append({"cells": geo.cells_within(q.lat, q.lon, RADIUS_M), "open": OPEN_VALUES, "codes": q.codes,
                               "since": since, "lat0": lat0, "lat1": lat1, "lon0": lon0, "lon1": lon1,
                               "lat": q.lat, "lon": q.lon, "r": RADIUS_M})
            results = {}
            grid_ms, grid_sets = timed(conn, GRID_SQL, params)
            # the grid query returns the box; the circle is checked in Python (as nearby_open does)
            truth = []
            with conn.cursor() as cur:
                for p, ids in zip(params, grid_sets):
                    if not ids:
                        truth.append(set())
                        continue
                    cur.execute("SELECT id, lat, lon FROM cases WHERE id = ANY(%s)", (list(ids),))
                    truth.append({i for i, la, lo in cur.fetchall() if geo.haversine_m(p["lat"], p["lon"], la, lo) <= RADIUS_M})
            results["grid: cell + box (nearby_open)"] = (grid_ms, 0)
            plans = {}
            for label, keep in (("gist", ["ix_cases_geog"]), ("gist_open", ["ix_cases_geog_open"]),
                                ("btree_gist", ["ix_cases_geog_code_created"])):
                others = [ix for ix in ("ix_cases_geog", "ix_cases_geog_open", "ix_cases_geog_code_created", "ix_cases_cell_code_created")
                          if ix not in keep]
                with conn.transaction():
                    conn.execute("SET LOCAL lock_timeout = '10s'")
                    for ix in others:  # so that the planner can only take this variant's index
                        conn.execute(f"DROP INDEX {ix}")
                    ms, sets = timed(conn, GIS_SQL, params)
                    plans[label] = "\n".join(r[0] for r in conn.execute("EXPLAIN " + GIS_SQL, params[0]).fetchall()[:4])
                    differ = sum(1 for a, b in zip(sets, truth) if a != b)
                    results[f"PostGIS {label}: ST_DWithin"] = (ms, differ)
                    raise psycopg.Rollback()  # the dropped indexes come back
    finally:
        if not args.keep:
            t.cleanup()
        else:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for ix in ("ix_cases_geog", "ix_cases_geog_open", "ix_cases_geog_code_created"):
                    conn.execute(f"DROP INDEX IF EXISTS {ix}")
                conn.execute("ALTER TABLE cases DROP COLUMN IF EXISTS geog")
    tab = Table(title=f"dedupe lookup at {n:,} cases, {args.lookups} points (r = {RADIUS_M:g} m, codes, since now − {SINCE.days} d), "
                      "client-side ms incl. round trip")
    for col in ("query", "p50", "p95", "p99", "mean", "differ from grid+haversine"):
        tab.add_column(col)
    for label, (ms, differ) in results.items():
        tab.add_row(label, f"{pct(ms, 50):.3f}", f"{pct(ms, 95):.3f}", f"{pct(ms, 99):.3f}", f"{statistics.fmean(ms):.3f}", str(differ))
    Console().print(tab)
    Console().print("index sizes MiB: " + ", ".join(f"{k} {v / 2**20:.1f}" for k, v in sizes.items()))
    Console().print("build s: " + ", ".join(f"{k} {v:.1f}" for k, v in build.items()))
    for k, v in plans.items():
        Console().print(f"[dim]{k}:\n{v}[/dim]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
