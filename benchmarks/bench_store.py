#!/usr/bin/env python
"""Store benchmarks: dedupe lookup latency at 10k … 3M cases, and case creation
throughput, on SQLite and PostgreSQL.

    python benchmarks/bench_store.py                       # both DBs, 10k,100k,1M,3M
    python benchmarks/bench_store.py --db sqlite --sizes 10000,100000
    python benchmarks/bench_store.py --db postgresql --pg-url postgresql+psycopg://xunjian:xunjian@127.0.0.1/xunjian_test

What it does, per database:

1. opens ``Store(url, city)`` on a fresh database (a SQLite file in a temporary
   folder; a new PostgreSQL database created next to ``--pg-url``'s), so the
   schema is exactly the one the Alembic migrations build;
2. grows the ``cases`` table 10k → 100k → 1M → 3M with synthetic cases (each
   size adds only the difference): executemany in chunks on SQLite, ``COPY`` on
   PostgreSQL, then ``ANALYZE``; the rows are realistic for a 40 km × 40 km city
   around 29.58,106.55 (dense hot spots and a uniform background, ~60 事件
   codes with a skewed distribution, ~70% closed, created over one year);
3. at each size, times ``Store.nearby_open(lat, lon, 50, codes, since=now-30d)``
   for random points (half at hot spots) and reports p50/p95/p99/max, lookups/s
   and the rows the index hands over vs the rows returned; also a naive
   baseline (all open cases of the codes since the date, distance in numpy, no
   cell index) on the same points, as a ratio (up to ``--baseline-max``);
   checks the results against a numpy ground truth for the first ``--verify``
   points;
4. at each size, times ``Store.create_case`` (numbering, jurisdiction lookup,
   audit row; one transaction each) and ``Store.act`` 立案 and 派遣 (routing and
   deadline), then deletes those cases again so each size holds exactly N rows;
5. prints tables, writes ``--out`` (JSON), and drops what it created unless
   ``--keep``.

Figures are printed, not asserted: these machines are shared and noisy, so
compare ratios within one run (index vs baseline), not absolute times across runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import create_engine, event, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from city import geo  # noqa: E402
from city.bundle import CityData, load_city  # noqa: E402
from city.catalogue import Kind, Source  # noqa: E402
from city.cases import NewCase  # noqa: E402
from city.lifecycle import OPEN, Action, Status  # noqa: E402
from city.store import Store  # noqa: E402

try:  # the bounding box nearby_open filters on (migration 0002's change); None before it
    from city.store import _cap_box  # noqa: E402
except ImportError:  # pragma: no cover
    _cap_box = None
from city.store.schema import CaseRow  # noqa: E402

console = Console(stderr=True)
out_console = Console(width=None if sys.stdout.isatty() else 180)

# -- the synthetic city -----------------------------------------------------------------

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # 10:00 Beijing time; "now" for the bulk rows and queries
NOW_S = int(NOW.timestamp())
YEAR_S = 365 * 86400
CENTER = (29.58, 106.55)
HALF_M = 20_000.0  # the city box is 40 km × 40 km
M_PER_DEG_LAT = 111_195.0
M_PER_DEG_LON = M_PER_DEG_LAT * np.cos(np.radians(CENTER[0]))
HOT_SHARE = 0.55  # of cases that fall at a hot spot (markets, old town, transport hubs)
N_HOT = 60
CHUNK = 50_000  # rows generated (deterministically, by chunk number) and inserted at a time
RADIUS_M = 50.0
SINCE = timedelta(days=30)

# ~60 common 事件 codes, most frequent first (暴露垃圾, 占道经营, 乱停放, 小广告 … dominate
# real 数字城管 statistics); frequencies follow a Zipf law over this order.
POPULAR_CODES = """
06010 09006 09009 07001 09005 06036 06012 09010 06042 09001 06013 01037 09011 06011 08004
06001 06014 06029 06007 08002 01002 01003 01004 06028 06027 06017 07003 06035 06034 08005
08006 06004 06030 08001 06040 09012 02017 02010 04002 03005 06050 06018 06045 07007 09022
09021 09004 06041 01001 06016 08007 08012 06009 06048 06051 03001 04013 09015 06020 02004
""".split()
ZIPF_S = 1.0

OPEN_MIX = {Status.REPORTED: 0.08, Status.FILED: 0.10, Status.DISPATCHED: 0.25, Status.IN_PROGRESS: 0.30,
            Status.HANDLED: 0.10, Status.VERIFYING: 0.09, Status.SHELVED: 0.08}
CLOSED_MIX = {Status.CLOSED: 0.45, Status.EVALUATED: 0.40, Status.NOT_FILED: 0.08, Status.VOID: 0.07}
SOURCES = [(Source.INSPECTOR, 0.55), (Source.HOTLINE, 0.20), (Source.CITIZEN, 0.12), (Source.VEHICLE, 0.10),
           (Source.DRONE, 0.03)]
WITH_DEPT = {Status.DISPATCHED, Status.IN_PROGRESS, Status.HANDLED, Status.VERIFYING, Status.CLOSED,
             Status.EVALUATED, Status.SHELVED}

COLS = ["number", "external_id", "source", "kind", "code", "title", "description", "address", "lat", "lon", "cell",
        "district_id", "street_id", "grid_id", "context", "owner", "urgency", "risk_level", "status",
        "department_id", "route_rule", "route_principle", "route_note", "deadline", "reporter_name",
        "reporter_phone", "duplicate_of", "rework_count", "rating", "created_at", "updated_at", "closed_at"]


class World:
    """The synthetic city: hot spots, code frequencies, and rows by chunk number.

    Row ``i`` is the same in every run with the same seed, whatever the sizes, so a
    database can be grown step by step and a ground truth rebuilt for any N."""

    def __init__(self, city: CityData, seed: int):
        self.city, self.seed = city, seed
        rng = np.random.default_rng([seed, 1])
        events = {e.code: e for e in city.catalogue if e.kind is Kind.EVENT}
        codes = [c for c in POPULAR_CODES if c in events]
        codes += [c for c in sorted(events) if c not in codes][: max(0, 60 - len(codes))]
        self.entries = [events[c] for c in codes]
        self._entry_cols = [(e.kind.value, e.code, e.name, e.default_priority.value, e.risk_level.value) for e in self.entries]
        self.codes = np.array(codes)
        w = 1.0 / np.arange(1, len(codes) + 1) ** ZIPF_S
        self.code_p = w / w.sum()
        # the codes a dedupe lookup asks for: the code and its related classes (as the pipeline does)
        self.query_codes = [sorted({e.code for e in city.catalogue.related(entry)}) for entry in self.entries]
        # hot spots: a third in the sample jurisdiction (渝中/江北: the dense old town), the rest in the inner 30 km
        jb = np.array([d.shape.bounds for d in city.jurisdiction.districts.values()])
        self.jbox = (jb[:, 1].min(), jb[:, 0].min(), jb[:, 3].max(), jb[:, 2].max())  # lat0, lon0, lat1, lon1
        n_in = N_HOT // 3
        lat = np.concatenate([rng.uniform(self.jbox[0], self.jbox[2], n_in),
                              CENTER[0] + rng.uniform(-15_000, 15_000, N_HOT - n_in) / M_PER_DEG_LAT])
        lon = np.concatenate([rng.uniform(self.jbox[1], self.jbox[3], n_in),
                              CENTER[1] + rng.uniform(-15_000, 15_000, N_HOT - n_in) / M_PER_DEG_LON])
        self.hot_lat, self.hot_lon = lat, lon
        self.hot_sigma = np.exp(rng.uniform(np.log(150.0), np.log(700.0), N_HOT))
        hw = 1.0 / np.arange(1, N_HOT + 1) ** 0.8
        self.hot_p = rng.permutation(hw / hw.sum())
        self.depts = [d.id for d in city.departments if not d.id.endswith("-XT")] or [d.id for d in city.departments]
        self._core: dict[int, dict[str, np.ndarray]] = {}

    def points(self, rng: np.random.Generator, n: int, hot_share: float = HOT_SHARE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n positions: a share around hot spots (Gaussian), the rest uniform over the city box."""
        hot = rng.random(n) < hot_share
        h = rng.choice(N_HOT, size=n, p=self.hot_p)
        sig = self.hot_sigma[h]
        lat_h = self.hot_lat[h] + rng.normal(0, 1, n) * sig / M_PER_DEG_LAT
        lon_h = self.hot_lon[h] + rng.normal(0, 1, n) * sig / M_PER_DEG_LON
        lat_u = CENTER[0] + rng.uniform(-HALF_M, HALF_M, n) / M_PER_DEG_LAT
        lon_u = CENTER[1] + rng.uniform(-HALF_M, HALF_M, n) / M_PER_DEG_LON
        return np.where(hot, lat_h, lat_u).round(7), np.where(hot, lon_h, lon_u).round(7), hot

    def core(self, k: int) -> dict[str, np.ndarray]:
        """The numeric columns of chunk k (rows k*CHUNK … (k+1)*CHUNK-1)."""
        if k in self._core:
            return self._core[k]
        rng = np.random.default_rng([self.seed, 2, k])
        n = CHUNK
        lat, lon, _ = self.points(rng, n)
        code_i = rng.choice(len(self.codes), size=n, p=self.code_p).astype(np.int16)
        created = NOW_S - rng.integers(60, YEAR_S, n)
        age_d = (NOW_S - created) / 86400
        # recent cases are mostly still open; ~30% open overall (挂账 and slow ones stay open for months)
        is_open = rng.random(n) < 0.24 + 0.5 * np.exp(-age_d / 45)
        st_open = rng.choice(len(OPEN_MIX), size=n, p=list(OPEN_MIX.values()))
        st_closed = rng.choice(len(CLOSED_MIX), size=n, p=list(CLOSED_MIX.values()))
        status = np.where(is_open, st_open, len(OPEN_MIX) + st_closed).astype(np.int8)
        c = {"idx": np.arange(k * n, (k + 1) * n), "lat": lat, "lon": lon, "code_i": code_i,
             "created": created, "open": is_open, "status": status, "rng_state": rng.bit_generator.state}
        self._core[k] = c
        return c

    def truth(self, n_rows: int) -> dict[str, np.ndarray]:
        """lat, lon, code index, open flag, created (epoch s) of rows 0 … n_rows-1."""
        ks = range((n_rows + CHUNK - 1) // CHUNK)
        out = {key: np.concatenate([self.core(k)[key] for k in ks])[:n_rows]
               for key in ("idx", "lat", "lon", "code_i", "open", "created")}
        return out

    def rows(self, k: int, lo: int, hi: int, dialect: str) -> list[tuple]:
        """Rows [lo, hi) of chunk k (chunk-relative offsets) as tuples in COLS order."""
        c = self.core(k)
        rng = np.random.default_rng()
        rng.bit_generator.state = c["rng_state"]  # the rest of the chunk's columns: deterministic too
        n = CHUNK
        statuses = list(OPEN_MIX) + list(CLOSED_MIX)
        status = np.array([s.value for s in statuses])[c["status"]]
        has_dept = np.isin(c["status"], [i for i, s in enumerate(statuses) if s in WITH_DEPT])
        holding = np.isin(c["status"], [i for i, s in enumerate(statuses) if s in (Status.DISPATCHED, Status.IN_PROGRESS)])
        closed = np.isin(c["status"], [i for i, s in enumerate(statuses) if s in (Status.CLOSED, Status.EVALUATED)])
        created = c["created"]
        closed_at = np.minimum(created + rng.integers(3600, 12 * 86400, n), NOW_S)
        updated = np.where(closed, closed_at, np.minimum(created + rng.integers(0, 5 * 86400, n), NOW_S))
        deadline = created + rng.integers(86400, 6 * 86400, n)
        dept = np.array(self.depts)[rng.integers(0, len(self.depts), n)]
        rating = rng.integers(1, 6, n)
        src_i = rng.choice(len(SOURCES), size=n, p=[p for _, p in SOURCES])
        sources = np.array([s.value for s, _ in SOURCES])[src_i]
        citizen = np.isin(src_i, [i for i, (s, _) in enumerate(SOURCES) if s in (Source.HOTLINE, Source.CITIZEN)])
        street_no = rng.integers(1, 400, n)
        rework = (rng.random(n) < 0.04).astype(int)

        sl = slice(lo, hi)
        lat, lon = c["lat"][sl], c["lon"][sl]
        cells = geo.cell_of(lat, lon).tolist()  # vectorised, exactly as the store computes it
        # jurisdiction ids: only points in the sample's box can fall in it; locate those
        m = len(lat)
        dist, street, grid = [None] * m, [None] * m, [None] * m
        inside = np.flatnonzero((lat >= self.jbox[0]) & (lat <= self.jbox[2]) & (lon >= self.jbox[1]) & (lon <= self.jbox[3]))
        if len(inside):
            for j, loc in zip(inside.tolist(), self.city.jurisdiction.locate_many(lat[inside], lon[inside])):
                dist[j], street[j], grid[j] = loc.district_id, loc.street_id, loc.grid_id
        city_code = self.city.settings.code

        def ts(a: np.ndarray) -> list[str]:
            s = np.datetime_as_string(a.astype("datetime64[s]").astype("datetime64[us]"), unit="us")
            return (np.char.replace(s, "T", " ") if dialect == "sqlite" else np.char.add(s, "+00")).tolist()

        day = np.datetime_as_string((created[sl] + 8 * 3600).astype("datetime64[s]"), unit="D")
        day = np.char.replace(day, "-", "").tolist()
        created_s, updated_s = ts(created[sl]), ts(updated[sl])
        closed_s, deadline_s = ts(closed_at[sl]), ts(deadline[sl])
        code_i = c["code_i"][sl].tolist()
        idx = c["idx"][sl].tolist()
        st = status[sl].tolist()
        hd, hold, cl, cit = has_dept[sl].tolist(), holding[sl].tolist(), closed[sl].tolist(), citizen[sl].tolist()
        dp, rt, src, sn, rw = dept[sl].tolist(), rating[sl].tolist(), sources[sl].tolist(), street_no[sl].tolist(), rework[sl].tolist()
        lat_l, lon_l = lat.tolist(), lon.tolist()
        out = []
        evaluated = Status.EVALUATED.value
        for j in range(m):
            kind, code, name, urgency, risk = self._entry_cols[code_i[j]]
            i = idx[j]
            addr = f"示例路{sn[j]}号附近"
            out.append((
                f"{dist[j] or city_code}-{day[j]}-B{i:07d}", None, src[j], kind, code, name,
                f"{addr}发现{name}，请尽快处置。（合成数据 #{i}）", addr, lat_l[j], lon_l[j], cells[j],
                dist[j], street[j], grid[j], None, None, urgency, risk, st[j],
                dp[j] if hd[j] else None, "bench" if hd[j] else None, "属地管理" if hd[j] else None,
                "合成数据：按属地派遣" if hd[j] else None, deadline_s[j] if hold[j] else None,
                "张先生" if cit[j] else None, f"138{i % 100_000_000:08d}" if cit[j] else None, None, rw[j],
                rt[j] if st[j] == evaluated else None, created_s[j], updated_s[j],
                closed_s[j] if cl[j] else None,
            ))
        return out


# -- databases -------------------------------------------------------------------------


@dataclass
class Target:
    dialect: str  # sqlite | postgresql
    url: str
    cleanup: callable = lambda: None
    path: Path | None = None  # the SQLite file
    info: dict = field(default_factory=dict)


def sqlite_target(workdir: Path | None, resume: bool) -> Target:
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="xunjian-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.sqlite"
    if path.exists() and not resume:
        for p in folder.glob("bench.sqlite*"):
            p.unlink()

    def cleanup():
        for p in folder.glob("bench.sqlite*"):
            p.unlink()
        if not workdir:
            shutil.rmtree(folder, ignore_errors=True)

    return Target("sqlite", f"sqlite:///{path}", cleanup, path, {"sqlite": sqlite3.sqlite_version, "file": str(path)})


def pg_target(base_url: str, dbname: str, resume: bool) -> Target:
    base = make_url(base_url)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": dbname}).first()
        if exists and not resume:
            conn.exec_driver_sql(f'DROP DATABASE "{dbname}" WITH (FORCE)')
        if not exists or not resume:
            conn.exec_driver_sql(f'CREATE DATABASE "{dbname}"')
        version = conn.execute(text("SHOW server_version")).scalar_one()
        settings = {k: conn.execute(text(f"SHOW {k}")).scalar_one() for k in ("shared_buffers", "work_mem", "random_page_cost", "effective_cache_size")}

    def cleanup():
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.dispose()

    url = base.set(database=dbname).render_as_string(hide_password=False)
    return Target("postgresql", url, cleanup, None, {"postgresql": version, "database": dbname, **settings})


def bulk_fill(t: Target, world: World, have: int, want: int, analyze: bool = True) -> float:
    """Append rows have … want-1; returns seconds."""
    t0 = time.perf_counter()
    cols = ", ".join(COLS)
    engine = create_engine(t.url)
    if t.dialect == "sqlite":
        @event.listens_for(engine, "connect")
        def _fast(dbapi_conn, _rec):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA cache_size=-1000000")  # 1 GB page cache while loading (this engine only)
            cur.execute("PRAGMA synchronous=OFF")
            cur.close()
    sql = f"INSERT INTO cases ({cols}) VALUES ({', '.join('?' * len(COLS))})"
    try:
        i = have
        while i < want:
            k, lo = divmod(i, CHUNK)
            hi = min(CHUNK, lo + want - i)
            rows = world.rows(k, lo, hi, t.dialect)
            if t.dialect == "sqlite":
                with engine.begin() as conn:
                    conn.exec_driver_sql(sql, rows)  # Core executemany
            else:
                raw = engine.raw_connection()
                try:
                    with raw.driver_connection.cursor() as cur, cur.copy(f"COPY cases ({cols}) FROM STDIN") as cp:
                        for r in rows:
                            cp.write_row(r)
                    raw.driver_connection.commit()
                finally:
                    raw.close()
            i += hi - lo
            if i == want or (i // CHUNK) % 10 == 0:
                console.print(f"  [dim]{t.dialect}: {i:,}/{want:,} rows  {time.perf_counter() - t0:6.1f} s[/dim]")
        with engine.connect() as conn:
            if t.dialect == "sqlite":
                if analyze:
                    conn.exec_driver_sql("ANALYZE")
                    conn.exec_driver_sql("PRAGMA optimize")
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:  # (autovacuum would analyze a big load by itself, later)
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM (ANALYZE) cases" if analyze else "VACUUM cases")
    finally:
        engine.dispose()
    return time.perf_counter() - t0


def store_size(t: Target, store: Store) -> dict:
    if t.dialect == "sqlite":
        con = sqlite3.connect(t.path)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
        files = sum(p.stat().st_size for p in t.path.parent.glob(t.path.name + "*"))
        return {"bytes": files, "cases_bytes": files}
    with store.read_engine.connect() as conn:
        return {"bytes": conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one(),
                "cases_bytes": conn.execute(text("SELECT pg_total_relation_size('cases')")).scalar_one()}


def count_cases(store: Store) -> int:
    with store.reading() as s:
        return s.execute(select(func.count()).select_from(CaseRow)).scalar_one()


# -- the lookups -------------------------------------------------------------------------


@dataclass
class Query:
    lat: float
    lon: float
    codes: list[str]
    hot: bool


def make_queries(world: World, n: int, seed: int) -> list[Query]:
    rng = np.random.default_rng([seed, 3])
    lat, lon, hot = world.points(rng, n, hot_share=0.5)
    code_i = rng.choice(len(world.codes), size=n, p=world.code_p)
    return [Query(float(a), float(b), world.query_codes[c], bool(h)) for a, b, c, h in zip(lat, lon, code_i, hot)]


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p)) if xs else float("nan")


def lat_stats(ms: list[float], total_s: float) -> dict:
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "p99_ms": pct(ms, 99), "max_ms": max(ms),
            "mean_ms": statistics.fmean(ms), "per_s": len(ms) / total_s}


def timed_lookups(store: Store, queries: list[Query], since: datetime) -> tuple[list[float], float, list]:
    results, ms = [], []
    gc.collect()
    t0 = time.perf_counter()
    for q in queries:
        a = time.perf_counter()
        res = store.nearby_open(q.lat, q.lon, RADIUS_M, codes=q.codes, since=since)
        ms.append((time.perf_counter() - a) * 1000)
        results.append(res)
    return ms, time.perf_counter() - t0, results


def naive_lookup(store: Store, q: Query, since: datetime) -> list[tuple]:
    """What one would write without the cell grid: every open case of the codes
    since the date, the distance to each in numpy, then load the hits."""
    stmt = select(CaseRow.id, CaseRow.lat, CaseRow.lon).where(
        CaseRow.status.in_([s.value for s in OPEN]), CaseRow.code.in_(q.codes), CaseRow.created_at >= since,
        CaseRow.lat.is_not(None))
    with store.reading() as s:
        rows = s.execute(stmt).all()
        if not rows:
            return []
        arr = np.array([(r[1], r[2]) for r in rows], dtype=float)
        d = geo.haversine_m(q.lat, q.lon, arr[:, 0], arr[:, 1])
        d = np.atleast_1d(d)
        hit = np.flatnonzero(d <= RADIUS_M)
        if not len(hit):
            return []
        ids = {rows[i][0]: float(d[i]) for i in hit}
        found = s.execute(select(CaseRow).where(CaseRow.id.in_(list(ids)))).scalars().all()
        out = [(store._to_case(r), ids[r.id]) for r in found]
    out.sort(key=lambda x: x[1])
    return out


def candidate_counts(store: Store, q: Query, since: datetime) -> dict[str, int]:
    """How many rows each step of a lookup sees: in the cells with the codes (what a
    ``(cell, code)`` index range holds), of those created since the date (what the
    ``(cell, code, created_at)`` range holds: the table rows fetched), open and in
    the circle's bounding box (the rows the query returns to Python)."""
    cells = geo.cells_within(q.lat, q.lon, RADIUS_M)
    base = select(func.count()).select_from(CaseRow).where(CaseRow.cell.in_(cells), CaseRow.code.in_(q.codes))
    recent = base.where(CaseRow.created_at >= since)
    hits = recent.where(CaseRow.status.in_([st.value for st in OPEN]))
    if _cap_box is not None:
        lo, hi, lon_range = _cap_box(q.lat, q.lon, RADIUS_M)
        hits = hits.where(CaseRow.lat.between(lo, hi))
        if lon_range:
            hits = hits.where(CaseRow.lon.between(*lon_range))
    with store.reading() as s:
        return {"cell_code": s.execute(base).scalar_one(), "since": s.execute(recent).scalar_one(),
                "to_python": s.execute(hits).scalar_one()}


def truth_numbers(truth: dict, world: World, q: Query, since: datetime) -> set[int]:
    code_ok = np.isin(world.codes[truth["code_i"]], q.codes)
    m = truth["open"] & code_ok & (truth["created"] >= int(since.timestamp()))
    d = geo.haversine_m(q.lat, q.lon, truth["lat"][m], truth["lon"][m])
    return set(truth["idx"][m][np.atleast_1d(d) <= RADIUS_M].tolist())


def explain(t: Target, store: Store, q: Query, since: datetime) -> list[str]:
    """The plan of the query ``nearby_open`` really sends (captured from the engine)."""
    seen: list[tuple] = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(store.read_engine, "before_cursor_execute", grab)
    try:
        store.nearby_open(q.lat, q.lon, RADIUS_M, codes=q.codes, since=since)
    finally:
        event.remove(store.read_engine, "before_cursor_execute", grab)
    statement, params = next((s, p) for s, p in seen if "FROM cases" in s and "cell" in s)
    with store.read_engine.connect() as conn:
        if t.dialect == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            return [str(r[-1]) for r in rows]
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).all()
        return [r[0] for r in rows]


# -- creation ------------------------------------------------------------------------


def bench_create(store: Store, world: World, n: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, 4])
    j = world.jbox
    lat = rng.uniform(j[0], j[2], n).round(6)
    lon = rng.uniform(j[1], j[3], n).round(6)
    code_i = rng.choice(len(world.codes), size=n, p=world.code_p)
    with store.reading() as s:
        max_id = s.execute(select(func.max(CaseRow.id))).scalar_one() or 0
    news = [NewCase(source=Source.INSPECTOR, code=world.codes[c], lat=float(a), lon=float(b),
                    description=f"巡查发现{world.entries[c].name}（基准测试）", address="示例路1号")
            for a, b, c in zip(lat, lon, code_i)]
    out = {"n": n}
    numbers = []
    gc.collect()
    for label, fn in (
        ("create", lambda i: numbers.append(store.create_case(news[i], actor="bench").number)),
        ("file", lambda i: store.act(numbers[i], Action.FILE, actor="bench")),
        ("dispatch", lambda i: store.act(numbers[i], Action.DISPATCH, actor="bench")),
    ):
        ms = []
        t0 = time.perf_counter()
        for i in range(n):
            a = time.perf_counter()
            fn(i)
            ms.append((time.perf_counter() - a) * 1000)
        out[label] = lat_stats(ms, time.perf_counter() - t0)
    # take them out again, so the store holds exactly the bulk rows for the next size
    with store.writing() as s:
        for table in ("case_audit", "case_evidence"):
            s.execute(text(f"DELETE FROM {table} WHERE case_id > :m"), {"m": max_id})
        s.execute(text("DELETE FROM cases WHERE id > :m"), {"m": max_id})
    return out


# -- the run -----------------------------------------------------------------------------


def run_db(t: Target, world: World, sizes: list[int], args, city: CityData) -> list[dict]:
    store = Store(t.url, city)  # creates (migrates) the schema
    results = []
    queries = make_queries(world, args.lookups + args.warmup, args.seed)
    warm, timed = queries[: args.warmup], queries[args.warmup:]
    since = NOW - SINCE
    try:
        have = count_cases(store)
        if have > sizes[0]:
            raise SystemExit(f"{t.dialect}: the database already holds {have:,} cases, more than {sizes[0]:,}")
        for n in sizes:
            r: dict = {"db": t.dialect, "size": n}
            size_t0 = time.perf_counter()
            console.rule(f"[bold]{t.dialect} · {n:,} cases")
            store.close()
            r["fill_s"] = bulk_fill(t, world, have, n, not args.no_analyze) if n > have else 0.0
            r["fill_rows"] = n - have
            # a fresh Store, as after a restart: SQLite connections keep the statistics
            # (sqlite_stat1) they read when they opened, so older ones plan with stale ones
            store = Store(t.url, city)
            have = count_cases(store)
            assert have == n, (have, n)
            r.update(store_size(t, store))
            # lookups: warm up, then time
            timed_lookups(store, warm, since)
            ms, total, res = timed_lookups(store, timed, since)
            r["lookup"] = lat_stats(ms, total)
            r["lookup_hot"] = lat_stats([m for m, q in zip(ms, timed) if q.hot], total) if any(q.hot for q in timed) else None
            r["lookup_uniform"] = lat_stats([m for m, q in zip(ms, timed) if not q.hot], total)
            counts = [candidate_counts(store, q, since) for q in timed]
            returned = [len(x) for x in res]
            r["rows"] = {f"{k}_{agg.__name__}": agg(c[k] for c in counts) for k in counts[0] for agg in (statistics.fmean, max)}
            r["rows"].update(returned_fmean=statistics.fmean(returned), returned_max=max(returned),
                             with_hit=sum(1 for x in returned if x) / len(returned))
            # ground truth
            truth = world.truth(n)
            bad = 0
            for q, got in zip(timed[: args.verify], res[: args.verify]):
                want = truth_numbers(truth, world, q, since)
                if {int(c.number.rsplit("-B", 1)[1]) for c, _ in got} != want:
                    bad += 1
            r["verified"], r["verify_failures"] = min(args.verify, len(timed)), bad
            if bad:
                console.print(f"[red]{bad} lookups differ from the ground truth[/red]")
            # naive baseline on the same points
            if n <= args.baseline_max:
                bq = timed[: args.baseline_lookups]
                base_ms, diff = [], 0
                t0 = time.perf_counter()
                for q, want in zip(bq, res):
                    a = time.perf_counter()
                    got = naive_lookup(store, q, since)
                    base_ms.append((time.perf_counter() - a) * 1000)
                    if [c.number for c, _ in got] != [c.number for c, _ in want]:
                        diff += 1
                r["baseline"] = lat_stats(base_ms, time.perf_counter() - t0)
                r["baseline"]["differs"] = diff
                idx_ms = ms[: len(bq)]
                r["baseline"]["ratio_p50"] = pct(base_ms, 50) / pct(idx_ms, 50)
                r["baseline"]["ratio_mean"] = statistics.fmean(base_ms) / statistics.fmean(idx_ms)
            # the plan, at the worst point
            worst = max(range(len(timed)), key=lambda i: (counts[i]["since"], counts[i]["cell_code"]))
            r["plan_point"] = {"lat": timed[worst].lat, "lon": timed[worst].lon, "codes": timed[worst].codes, **counts[worst]}
            r["plan"] = explain(t, store, timed[worst], since)
            # creation
            if args.creates:
                r["create"] = bench_create(store, world, args.creates, args.seed + n)
            r["size_s"] = time.perf_counter() - size_t0
            results.append(r)
            print_size(r)
    finally:
        store.close()
    return results


def print_size(r: dict) -> None:
    lk, rw = r["lookup"], r["rows"]
    msg = (f"{r['db']} {r['size']:,} ({r['size_s']:.0f} s): fill {r['fill_s']:.1f} s, {r['bytes'] / 2**20:.0f} MiB; lookup p50 {lk['p50_ms']:.2f} "
           f"p95 {lk['p95_ms']:.2f} p99 {lk['p99_ms']:.2f} max {lk['max_ms']:.2f} ms, {lk['per_s']:.0f}/s; "
           f"rows: cell·code {rw['cell_code_fmean']:.1f} (max {rw['cell_code_max']}), since {rw['since_fmean']:.1f} "
           f"(max {rw['since_max']}), to Python {rw['to_python_fmean']:.2f} (max {rw['to_python_max']}), "
           f"returned {rw['returned_fmean']:.2f} (max {rw['returned_max']})")
    if "baseline" in r:
        msg += f"; naive p50 {r['baseline']['p50_ms']:.2f} ms (×{r['baseline']['ratio_p50']:.1f})"
    if "create" in r:
        c = r["create"]
        msg += f"; create {c['create']['per_s']:.0f}/s, 立案 {c['file']['per_s']:.0f}/s, 派遣 {c['dispatch']['per_s']:.0f}/s"
    console.print(msg)


def report(results: list[dict]) -> None:
    t = Table(title=f"dedupe lookup: Store.nearby_open(r={RADIUS_M:g} m, codes, since=now-30d)", show_lines=False)
    for col in ("db", "cases", "p50 ms", "p95 ms", "p99 ms", "max ms", "lookups/s", "hot p99",
                "rows cell·code\navg / max", "… since\navg / max", "… to Python\navg / max", "returned\navg / max",
                "naive p50 ms", "naive/index"):
        t.add_column(col, justify="right")
    for r in results:
        lk, rw, b = r["lookup"], r["rows"], r.get("baseline")
        t.add_row(r["db"], f"{r['size']:,}", f"{lk['p50_ms']:.2f}", f"{lk['p95_ms']:.2f}", f"{lk['p99_ms']:.2f}",
                  f"{lk['max_ms']:.2f}", f"{lk['per_s']:.0f}", f"{r['lookup_hot']['p99_ms']:.2f}" if r.get("lookup_hot") else "",
                  *(f"{rw[k + '_fmean']:.1f} / {rw[k + '_max']}" for k in ("cell_code", "since", "to_python", "returned")),
                  f"{b['p50_ms']:.2f}" if b else "", f"×{b['ratio_p50']:.1f}" if b else "")
    out_console.print(t)
    t = Table(title="store size and case creation (one transaction each)")
    for col in ("db", "cases", "fill s", "fill rows/s", "on disk MiB", "cases table MiB", "create/s", "create p50 ms",
                "立案/s", "派遣/s", "派遣 p50 ms"):
        t.add_column(col, justify="right")
    for r in results:
        c = r.get("create")
        t.add_row(r["db"], f"{r['size']:,}", f"{r['fill_s']:.1f}", f"{r['fill_rows'] / r['fill_s']:.0f}" if r["fill_s"] else "",
                  f"{r['bytes'] / 2**20:.1f}", f"{r['cases_bytes'] / 2**20:.1f}",
                  *( [f"{c['create']['per_s']:.0f}", f"{c['create']['p50_ms']:.2f}", f"{c['file']['per_s']:.0f}",
                      f"{c['dispatch']['per_s']:.0f}", f"{c['dispatch']['p50_ms']:.2f}"] if c else [""] * 5))
    out_console.print(t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000,3000000", help="case counts, ascending (default: %(default)s)")
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--pg-url", default=os.environ.get("XUNJIAN_TEST_PG_URL", "postgresql+psycopg://xunjian:xunjian@127.0.0.1/xunjian_test"),
                   help="a PostgreSQL URL whose role may CREATE DATABASE; the benchmark uses its own database next to it")
    p.add_argument("--pg-db", default="xunjian_bench", help="the database it creates and drops (default: %(default)s)")
    p.add_argument("--workdir", type=Path, help="folder for the SQLite file (default: a temporary folder)")
    p.add_argument("--lookups", type=int, default=2000, help="timed lookups per size (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=200, help="untimed lookups first (default: %(default)s)")
    p.add_argument("--baseline-max", type=int, default=3_000_000, help="run the naive baseline up to this size (default: %(default)s)")
    p.add_argument("--baseline-lookups", type=int, default=200, help="naive lookups per size (default: %(default)s)")
    p.add_argument("--verify", type=int, default=200, help="lookups checked against a numpy ground truth (default: %(default)s)")
    p.add_argument("--creates", type=int, default=1000, help="cases created (and filed, dispatched) per size; 0: skip (default: %(default)s)")
    p.add_argument("--no-analyze", action="store_true", help="skip ANALYZE after loading (the plan without statistics)")
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the databases (and --resume them later)")
    p.add_argument("--resume", action="store_true", help="grow an existing benchmark database (SQLite: in --workdir) instead of starting afresh")
    args = p.parse_args(argv)
    sizes = sorted({int(float(s)) for s in args.sizes.split(",") if s.strip()})
    if not sizes or sizes[0] <= 0:
        p.error("--sizes needs positive numbers")

    city = load_city()
    world = World(city, args.seed)
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    started = time.perf_counter()
    meta = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
            "sizes": sizes, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                        "platform": platform.platform(), "sqlite": sqlite3.sqlite_version},
            "now": NOW.isoformat(), "radius_m": RADIUS_M, "since_days": SINCE.days, "codes": len(world.codes)}
    results, runs = [], {}
    for db in dbs:
        try:
            t = sqlite_target(args.workdir, args.resume) if db == "sqlite" else pg_target(args.pg_url, args.pg_db, args.resume)
        except OperationalError as e:
            if args.db != "both":
                raise SystemExit(f"cannot reach PostgreSQL at {make_url(args.pg_url).render_as_string()}: {e.orig}") from None
            console.print(f"[yellow]skipping PostgreSQL: cannot reach {make_url(args.pg_url).render_as_string()} ({e.orig})[/yellow]")
            continue
        meta.setdefault("databases", {})[db] = t.info
        t0 = time.perf_counter()
        try:
            results += run_db(t, world, sizes, args, city)
        finally:
            runs[db] = time.perf_counter() - t0
            if not args.keep:
                t.cleanup()
            else:
                console.print(f"kept {t.dialect}: {t.path or t.info.get('database')}")
    meta["run_s"] = {**runs, "total": time.perf_counter() - started}
    report(results)
    out_console.print("run time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in meta["run_s"].items()))
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "results": results}, ensure_ascii=False, indent=1, default=str))
        out_console.print(f"wrote {args.out}")
    return 0 if all(not r.get("verify_failures") and not r.get("baseline", {}).get("differs") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
