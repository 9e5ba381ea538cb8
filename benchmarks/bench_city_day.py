#!/usr/bin/env python
"""A simulated city day: the issue observations of a day's vehicle patrols over
the sample jurisdiction through the case pipeline (offline policy), on SQLite
and on PostgreSQL, in one or several worker processes; throughput, p50/p95 per
pipeline stage, the store's size after the day, and the sizing of a city:
100 vehicles × 8 h of 1080p footage a day.

    python benchmarks/bench_city_day.py --issues 500                 # quick look, both databases (~2 min)
    python benchmarks/bench_city_day.py                              # 8,000 issues, SQLite and PostgreSQL
    python benchmarks/bench_city_day.py --db postgresql --workers 2  # two worker processes
    python benchmarks/bench_city_day.py --pg postgresql+psycopg://user:pass@host/db

What it does, per database:

1. **The day**: ``--issues`` physical issues in the 江北/渝中 sample jurisdiction
   (48 km²): 60% around 25 hot spots (markets, stations, old streets; Gaussian,
   σ 60–300 m), the rest uniform; classes in the mix a patrol vehicle's detector
   reports (暴露垃圾, 占道经营, 机动车乱停放, 非法小广告, 店外经营, 垃圾满溢, 道路破损,
   乱堆杂物, 共享单车乱象, 井盖异常 …, most frequent first). Each issue is seen by
   the vehicle patrolling its sector; ``--resight`` of them (25%) also by one or
   two other vehicles (another batch), a few metres off, later in the day: the
   same physical issue, which must become one case. Detector confidence
   0.45–0.97 (under 0.55 waits for a human, as do 橙 risks such as broken manhole
   covers). One batch per vehicle (``--vehicles``, 100), with ``--views``
   sampled-frame rows per vehicle written as ingest would (for the store size).
2. **Fresh store**: a new SQLite file, or a new PostgreSQL database next to
   ``--pg`` (its role needs CREATEDB); ``--prefill N`` first loads N synthetic
   cases of a year (bench_store.py's city) so that the day runs against a
   full table.
3. **The run**: ``--workers`` processes (spawned), each running its shard of
   every batch (``run_batch(..., shard=(i, n))``: what ``xunjian pipeline run
   --shard i/n`` does on n nodes) with ``--concurrency`` observations at a time
   (LangGraph ``Send``), batches in the order of the day. Every node of the case
   graph is timed (triage, dedupe, route, draft_record, draft_reply,
   review_gate, dispatch, plus intake), and around them the whole
   ``Pipeline.run`` (its locks, LangGraph, the checkpoint) and linking the
   observation. Throughput = observations / wall time from the start signal to
   the last worker's end (process start-up and imports excluded).
4. **Checks**: every observation linked to a case, no two cases with one
   external id, each case filed at most once; cases opened vs observations
   attached to an open case.
5. **Size**: the database after the day (PostgreSQL ``pg_database_size`` and
   ``pg_total_relation_size`` per table; SQLite the file), bytes per case and per
   view row, and what a year of such days adds.
6. **Footage** (``--footage-s``, default 20; 0 skips it): the ingest half of
   the day on synthetic footage, in this run: a rendered 1920×1080 30 fps patrol
   clip (bench_vision.py's demo street), re-encoded as H.264 like a patrol
   camera's (PyAV's libx264; ~1.4× slower to decode than OpenCV's mp4v), through
   ``xunjian ingest``'s local
   engine (2 m sampling, the ONNX demo detector, tracking, geolocation, blurred
   evidence, the store); wall time, real-time factor, and per sampled frame
   p50/p95 of decoding + sampling, detection, tracking + geolocation, and per
   observation the evidence images (faces blurred).
7. **Sizing** (printed with its assumptions): footage cores and nodes for
   ``--fleet`` vehicles × ``--hours`` a day from the real-time factor measured in
   step 6 without the evidence, plus the evidence per observation of the day
   (the rendered street has an issue every ~2.5 s of driving, a city's day one
   every few minutes, so costing it per footage second would double the
   estimate); ``--rtf`` gives a factor instead (README.md's 3.72 × real time on
   2 cores when neither), pipeline processes from this run, store growth per year.

Figures are printed (and written as JSON with ``--out``), not asserted.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing as mp
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)

DAY = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 08:00 Beijing time: the shift starts
# (code, detector class, label, share): what a patrol vehicle's detector reports, most frequent first
MIX = [
    ("06010", "garbage", "暴露垃圾", 0.20), ("09006", "street_vendor", "占道经营", 0.13),
    ("09009", "illegal_parking", "机动车乱停放", 0.12), ("07001", "small_ads", "非法小广告", 0.10),
    ("09005", "outside_business", "店外经营", 0.08), ("06042", "bin_overflow", "垃圾满溢", 0.08),
    ("06013", "pothole", "道路破损", 0.07), ("06036", "clutter", "乱堆杂物", 0.06),
    ("09011", "shared_bikes", "共享单车乱象", 0.05), ("06012", "dirty_road", "道路不洁", 0.04),
    ("09010", "bike_parking", "非机动车乱停放", 0.03), ("01023", "manhole_broken", "不明井盖异常", 0.02),
    ("01037", "streetlight", "路灯异常", 0.01), ("08004", "site_dust", "工地扬尘", 0.01),
]
STAGES = ["intake", "triage", "dedupe", "route", "draft_record", "draft_reply", "review_gate", "dispatch"]
FOOTAGE_RTF_2CORE = 3.72  # README.md "Benchmarks": `xunjian ingest`, 1920×1080 30 fps, 2 m sampling, 2 cores


# -- the day ------------------------------------------------------------------------------------


def make_day(city, n_issues: int, vehicles: int, resight: float, seed: int) -> dict:
    """Issues and their sightings, grouped into one batch per vehicle."""
    rng = np.random.default_rng(seed)
    j = city.jurisdiction
    boxes = np.array([d.shape.bounds for d in j.districts.values()])
    lon0, lat0, lon1, lat1 = boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()
    m_lat, m_lon = 111_195.0, 111_195.0 * math.cos(math.radians((lat0 + lat1) / 2))

    def inside(lat, lon) -> np.ndarray:
        return np.array([loc.district_id is not None for loc in j.locate_many(lat, lon)])

    def uniform(n):
        pts = np.empty((0, 2))
        while len(pts) < n:
            lat, lon = rng.uniform(lat0, lat1, 2 * n), rng.uniform(lon0, lon1, 2 * n)
            ok = inside(lat, lon)
            pts = np.vstack([pts, np.c_[lat[ok], lon[ok]]])
        return pts[:n]

    hot = uniform(25)
    sigma = np.exp(rng.uniform(math.log(60), math.log(300), 25))
    weight = 1 / np.arange(1, 26) ** 0.7
    weight /= weight.sum()
    pts = np.empty((0, 2))
    while len(pts) < n_issues:
        k = n_issues - len(pts)
        at_hot = rng.random(k) < 0.6
        h = rng.choice(25, size=k, p=weight)
        lat = np.where(at_hot, hot[h, 0] + rng.normal(0, 1, k) * sigma[h] / m_lat, np.nan)
        lon = np.where(at_hot, hot[h, 1] + rng.normal(0, 1, k) * sigma[h] / m_lon, np.nan)
        u = uniform(int((~at_hot).sum()))
        lat[~at_hot], lon[~at_hot] = u[:, 0], u[:, 1]
        ok = inside(lat, lon)
        pts = np.vstack([pts, np.c_[lat[ok], lon[ok]]])
    pts = pts[:n_issues]
    shares = np.array([m[3] for m in MIX])
    cls = rng.choice(len(MIX), size=n_issues, p=shares / shares.sum())
    # vehicles patrol sectors: a grid over the jurisdiction's box, one sector each
    side = math.ceil(math.sqrt(vehicles))
    sector = (np.clip(((pts[:, 0] - lat0) / (lat1 - lat0) * side).astype(int), 0, side - 1) * side
              + np.clip(((pts[:, 1] - lon0) / (lon1 - lon0) * side).astype(int), 0, side - 1)) % vehicles
    sightings = []  # (vehicle, issue, lat, lon, seconds into the shift, confidence)
    for i in range(n_issues):
        t = rng.uniform(0, 8 * 3600)
        err = rng.uniform(2, 8)
        sightings.append((int(sector[i]), i, *_jitter(rng, pts[i], err, m_lat, m_lon), t, err))
        if rng.random() < resight:
            for _ in range(rng.choice([1, 2], p=[0.75, 0.25])):
                other = int(rng.integers(0, vehicles))
                err = rng.uniform(2, 8)
                sightings.append((other, i, *_jitter(rng, pts[i], err, m_lat, m_lon), min(t + rng.uniform(600, 6 * 3600), 8 * 3600 - 1), err))
    conf = np.clip(rng.normal(0.8, 0.12, len(sightings)), 0.45, 0.97)
    return {"points": pts, "cls": cls, "sightings": sightings, "conf": conf, "vehicles": vehicles}


def _jitter(rng, p, err, m_lat, m_lon):
    d = rng.normal(0, err / 2, 2)
    return float(p[0] + d[0] / m_lat), float(p[1] + d[1] / m_lon)


def load_day(store, day: dict, views_per_vehicle: int, seed: int) -> tuple[list[str], dict[str, int], float]:
    """Write one batch per vehicle (observations + sampled-frame views), as ingest would;
    returns the batch ids in the order of the day, observation id → issue, seconds."""
    from city.observations import Batch, BatchFile, Observation, View

    rng = np.random.default_rng([seed, 7])
    t0 = time.perf_counter()
    by_vehicle: dict[int, list] = defaultdict(list)
    for k, s in enumerate(day["sightings"]):
        by_vehicle[s[0]].append((k, s))
    issue_of, order = {}, []
    for v in sorted(by_vehicle):
        bid = f"day-v{v:03d}"
        plate = f"渝A-巡{v:03d}"
        store.open_batch(Batch(id=bid, source="车巡", platform_id=plate, root=f"/footage/{bid}", created_at=DAY, updated_at=DAY))
        obs = []
        for n, (k, (_, issue, lat, lon, t, err)) in enumerate(sorted(by_vehicle[v], key=lambda x: x[1][4]), 1):
            code, name, zh, _ = MIX[day["cls"][issue]]
            kind = "事件"
            oid = f"{bid}:f:{n:05d}"
            issue_of[oid] = issue
            obs.append(Observation(
                id=oid, batch_id=bid, file="day.mp4", file_sha256="cd" * 32, source="车巡", platform_id=plate,
                class_name=name, label_zh=zh, kind=kind, code=code, confidence=float(day["conf"][k]),
                mean_confidence=float(day["conf"][k]) - 0.05, lat=lat, lon=lon, error_m=float(err), frames=int(rng.integers(3, 15)),
                first_t=t, last_t=t + 1.5, best_t=t + 0.7, seen_at=DAY + timedelta(seconds=t), box=(100, 200, 260, 330),
                frame_uri=f"/srv/xunjian/batches/{bid}/evidence/{n:05d}-frame.jpg",
                crop_uri=f"/srv/xunjian/batches/{bid}/evidence/{n:05d}-crop.jpg", model="patrol-city@3"))
        views = []
        if views_per_vehicle:
            lat, lon = obs[0].lat, obs[0].lon
            for i in range(views_per_vehicle):
                views.append(View(t=i * 0.24, utc=DAY + timedelta(seconds=i * 0.24), lat=lat + i * 1.6e-5, lon=lon, heading=0.0))
        store.finish_file(BatchFile(batch_id=bid, path="day.mp4", sha256="cd" * 32, status="done", observations=len(obs),
                                    finished_at=DAY + timedelta(hours=8)), obs, views)
        order.append((min(o.first_t for o in obs), bid))
    return [b for _, b in sorted(order)], issue_of, time.perf_counter() - t0


# -- the workers ----------------------------------------------------------------------------------


def _timed_nodes(samples: dict[str, list[float]]) -> None:
    """Wrap the case graph's nodes (before a Pipeline builds it) so each call is timed."""
    from agents import nodes

    for name in STAGES:
        fn = getattr(nodes, name)
        if getattr(fn, "_timed", False):
            continue

        def wrap(f, stage):
            @functools.wraps(f)
            def timed(*a, **kw):
                t = time.perf_counter()
                try:
                    return f(*a, **kw)
                finally:
                    samples[stage].append(time.perf_counter() - t)
            timed._timed = True
            return timed

        setattr(nodes, name, wrap(fn, name))


def worker(url: str, batches: list[str], shard: tuple[int, int], concurrency: int, go: str, ready, shard_by: str = "id") -> dict:
    os.environ.pop("XUNJIAN_LLM_BACKEND", None)  # the offline policy
    from agents import pipeline as pipeline_mod
    from agents.batch import run_batch
    from agents.pipeline import Pipeline
    from city.store import Store

    samples: dict[str, list[float]] = defaultdict(list)
    _timed_nodes(samples)
    store = Store(url)
    pipe = Pipeline(store)
    run = pipe.run

    def timed_run(report, thread_id=None):
        t = time.perf_counter()
        try:
            return run(report, thread_id)
        finally:
            samples["Pipeline.run (all)"].append(time.perf_counter() - t)

    pipe.run = timed_run
    locks = pipeline_mod.named_locks

    @contextmanager
    def timed_locks(engine, names, **kw):
        t = time.perf_counter()
        with locks(engine, names, **kw):
            samples["locks (wait)"].append(time.perf_counter() - t)
            yield

    pipeline_mod.named_locks = timed_locks
    link = store.link_observation

    def timed_link(*a, **kw):
        t = time.perf_counter()
        try:
            return link(*a, **kw)
        finally:
            samples["link observation"].append(time.perf_counter() - t)

    store.link_observation = timed_link
    ready.set()
    while not os.path.exists(go):
        time.sleep(0.002)
    t0 = time.perf_counter()
    outcomes: dict[str, int] = defaultdict(int)
    for b in batches:
        for r in run_batch(pipe, b, verify=False, shard=shard, max_concurrency=concurrency, shard_by=shard_by):
            outcomes["waiting" if r["waiting"] else (r["outcome"] or "unclassified")] += 1
    wall = time.perf_counter() - t0
    store.close()
    return {"samples": dict(samples), "wall": wall, "outcomes": dict(outcomes), "end": time.time()}


# -- databases ------------------------------------------------------------------------------------


def sqlite_size(path: Path) -> dict:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tables = {}
        try:
            for name, size in con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
                tables[name] = size
        except sqlite3.OperationalError:  # no dbstat in this build
            pass
    finally:
        con.close()
    return {"bytes": sum(p.stat().st_size for p in path.parent.glob(path.name + "*")), "objects": tables}


def pg_size(store) -> dict:
    with store.read_engine.connect() as conn:
        total = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        rows = conn.execute(text("SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                                 "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
                                 "AND n.nspname = current_schema()")).all()
    return {"bytes": total, "objects": dict(rows)}


def table_groups(objects: dict, dialect: str) -> dict[str, int]:
    """Bytes per table with its indexes (SQLite's dbstat lists indexes separately)."""
    if dialect == "postgresql":
        return dict(objects)
    from city.store.schema import Base

    out: dict[str, int] = defaultdict(int)
    owners = {ix.name: t.name for t in Base.metadata.tables.values() for ix in t.indexes}
    for name, size in objects.items():
        table = name if name in Base.metadata.tables or name.startswith("checkpoint") or name.startswith("writes") else None
        if table is None:
            table = owners.get(name) or (name.split("_autoindex_", 1)[1].rsplit("_", 1)[0] if "_autoindex_" in name else "other")
        out[table] += size
    return dict(out)


def count(store, sql: str) -> int:
    with store.read_engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


# -- one database ---------------------------------------------------------------------------------


def run_db(dialect: str, args, city, day: dict) -> dict:
    from bench_store import World, bulk_fill, pg_target, sqlite_target

    from city.store import Store

    t = sqlite_target(None, False) if dialect == "sqlite" else pg_target(args.pg, args.pg_db, False)
    console.rule(f"[bold]{dialect}: {len(day['sightings']):,} observations of {len(day['points']):,} issues, "
                 f"{args.workers} worker(s) × {args.concurrency}" + (f", sharded by {args.shard_by}" if args.workers > 1 else ""))
    try:
        store = Store(t.url, city)
        if args.prefill:
            store.close()
            console.print(f"prefill {args.prefill:,} cases …")
            bulk_fill(t, World(city, args.seed), 0, args.prefill)
            store = Store(t.url, city)
        base_cases = count(store, "SELECT count(*) FROM cases")
        size0 = sqlite_size(t.path) if dialect == "sqlite" else pg_size(store)
        batches, issue_of, load_s = load_day(store, day, args.views, args.seed)
        store.close()
        ctx = mp.get_context("spawn")
        go = Path(tempfile.mkdtemp(prefix="xj-day-")) / "go"
        with ctx.Manager() as manager, ProcessPoolExecutor(args.workers, mp_context=ctx) as ex:
            readies = [manager.Event() for _ in range(args.workers)]
            futures = [ex.submit(worker, t.url, batches, (i, args.workers), args.concurrency, str(go), readies[i], args.shard_by)
                       for i in range(args.workers)]
            for r in readies:
                r.wait(timeout=300)
            t_go = time.time()
            go.write_text("")
            results = [f.result() for f in futures]
        wall = max(r["end"] for r in results) - t_go
        shutil.rmtree(go.parent, ignore_errors=True)

        store = Store(t.url, city)
        try:
            n_obs = len(issue_of)
            cases = count(store, "SELECT count(*) FROM cases") - base_cases
            linked = count(store, "SELECT count(*) FROM observations WHERE case_number IS NOT NULL")
            dup_ext = count(store, "SELECT count(*) - count(DISTINCT external_id) FROM cases WHERE external_id IS NOT NULL")
            twice = count(store, "SELECT count(*) FROM (SELECT case_id FROM case_audit WHERE action = '立案' "
                                 "GROUP BY case_id HAVING count(*) > 1) AS x")
            views = count(store, "SELECT count(*) FROM views")
            # issues split over several cases (e.g. a sighting beyond the others' error radii) / cases holding several issues
            with store.read_engine.connect() as conn:
                links = conn.execute(text("SELECT id, case_number FROM observations")).all()
            cases_of_issue, issues_of_case = defaultdict(set), defaultdict(set)
            for oid, number in links:
                cases_of_issue[issue_of[oid]].add(number)
                issues_of_case[number].add(issue_of[oid])
            size = sqlite_size(t.path) if dialect == "sqlite" else pg_size(store)
        finally:
            store.close()
    finally:
        if not args.keep:
            t.cleanup()
    samples: dict[str, list[float]] = defaultdict(list)
    outcomes: dict[str, int] = defaultdict(int)
    for r in results:
        for k, v in r["samples"].items():
            samples[k].extend(v)
        for k, v in r["outcomes"].items():
            outcomes[k] += v
    tables0, tables1 = table_groups(size0["objects"], dialect), table_groups(size["objects"], dialect)
    grown = {k: tables1.get(k, 0) - tables0.get(k, 0) for k in tables1}
    return {
        "db": dialect, "workers": args.workers, "concurrency": args.concurrency, "prefill": args.prefill,
        "issues": len(day["points"]), "observations": n_obs, "batches": len(batches), "load_s": load_s,
        "wall_s": wall, "obs_per_s": n_obs / wall, "cases": cases, "cases_per_s": cases / wall,
        "outcomes": dict(outcomes), "linked": linked, "duplicate_external_ids": dup_ext, "filed_twice": twice,
        "issues_split": sum(1 for s in cases_of_issue.values() if len(s) > 1),
        "cases_with_several_issues": sum(1 for s in issues_of_case.values() if len(s) > 1),
        "views": views,
        "stages": {k: {"n": len(v), "p50_ms": 1000 * float(np.percentile(v, 50)), "p95_ms": 1000 * float(np.percentile(v, 95)),
                       "mean_ms": 1000 * statistics.fmean(v)} for k, v in samples.items() if v},
        "size": {"before": size0["bytes"], "after": size["bytes"], "tables_grown": grown},
    }


# -- footage --------------------------------------------------------------------------------------


def to_h264(video: Path, fps: int = 30) -> bool:
    """Re-encode ``video`` in place as H.264 (libx264 ``veryfast``, CRF 23, ~6 Mbit/s at
    1080p: what patrol cameras record), with PyAV's FFmpeg; False when it has no libx264."""
    import av
    import cv2

    tmp = video.with_suffix(".h264.mp4")
    try:
        out = av.open(str(tmp), "w")
        stream = out.add_stream("libx264", rate=fps)
    except Exception:  # no encoder in this build
        return False
    cap = cv2.VideoCapture(str(video))
    stream.width, stream.height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    stream.pix_fmt, stream.options = "yuv420p", {"preset": "veryfast", "crf": "23"}
    while True:
        ok, image = cap.read()
        if not ok:
            break
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    cap.release()
    tmp.replace(video)
    return True


def footage(seconds: float) -> dict:
    """Render ``seconds`` of 1080p30 patrol footage and ingest it here (local engine),
    timing each sampled frame's decoding + sampling, detection and the rest."""
    from bench_vision import make_clip

    import vision.ingest as ingest_mod
    from city.store import Store
    from vision.detect import Detector
    from vision.ingest import IngestOptions, ingest
    from vision.segments import SegmentObserver

    work = Path(tempfile.mkdtemp(prefix="xunjian-cityday-footage-"))
    samples: dict[str, list[float]] = defaultdict(list)
    sample, predict, feed, evidence = ingest_mod.sample, Detector.predict_batch, SegmentObserver.feed, ingest_mod.write_evidence

    def timed_sample(*a, **kw):
        it = sample(*a, **kw)
        while True:
            t = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                return
            samples["decode + sample"].append(time.perf_counter() - t)
            yield frame

    def timed_predict(self, images):
        t = time.perf_counter()
        try:
            return predict(self, images)
        finally:
            samples["detect"].append(time.perf_counter() - t)

    def timed_feed(self, frame, pose):
        n = len(samples["detect"])
        t = time.perf_counter()
        try:
            return feed(self, frame, pose)
        finally:
            spent = time.perf_counter() - t - sum(samples["detect"][n:])
            samples["track + geolocate"].append(spent)

    def timed_evidence(*a, **kw):
        t = time.perf_counter()
        try:
            return evidence(*a, **kw)
        finally:
            samples["evidence (per observation)"].append(time.perf_counter() - t)

    home = os.environ.get("XUNJIAN_HOME")
    try:
        console.print(f"rendering {seconds:g} s of 1920×1080 30 fps patrol footage …")
        t0 = time.perf_counter()
        folder = make_clip(work / "batch", seconds)
        codec = "h264" if to_h264(folder / "patrol.mp4") else "mp4v"
        render_s = time.perf_counter() - t0
        os.environ["XUNJIAN_HOME"] = str(work / "home")
        ingest_mod.sample, Detector.predict_batch, SegmentObserver.feed = timed_sample, timed_predict, timed_feed
        ingest_mod.write_evidence = timed_evidence
        folder_bytes = (folder / "patrol.mp4").stat().st_size
        store = Store(f"sqlite:///{work / 'footage.db'}")
        t0 = time.perf_counter()
        rep = ingest(folder, store, IngestOptions(force=True))
        wall = time.perf_counter() - t0
        store.close()
    finally:
        ingest_mod.sample, Detector.predict_batch, SegmentObserver.feed = sample, predict, feed
        ingest_mod.write_evidence = evidence
        if home is None:
            os.environ.pop("XUNJIAN_HOME", None)
        else:
            os.environ["XUNJIAN_HOME"] = home
        shutil.rmtree(work, ignore_errors=True)
    f = rep.files[0]
    if f.status != "done":
        raise SystemExit(f"footage ingest failed: {f.error}")
    st = f.stats
    evidence_s = float(sum(samples.get("evidence (per observation)", [])))
    return {"seconds": st["duration_s"], "codec": codec, "mbit_s": (folder_bytes * 8 / 1e6) / st["duration_s"],
            "render_s": render_s, "wall_s": wall, "rtf": st["duration_s"] / wall,
            "evidence_s": evidence_s, "rtf_without_evidence": st["duration_s"] / (wall - evidence_s),
            "cores": len(os.sched_getaffinity(0)), "frames_read": st["frames_read"], "frames_detected": st["frames_kept"],
            "observations": f.observations,
            "stages": {k: {"n": len(v), "p50_ms": 1000 * float(np.percentile(v, 50)), "p95_ms": 1000 * float(np.percentile(v, 95)),
                           "mean_ms": 1000 * statistics.fmean(v), "total_s": float(sum(v))} for k, v in samples.items() if v}}


def report_footage(f: dict) -> None:
    tab = Table(title=f"footage: {f['seconds']:.0f} s of 1080p30 {f['codec']} ({f['mbit_s']:.1f} Mbit/s) through `xunjian ingest` "
                      f"(local engine, {f['cores']} cores): "
                      f"{f['frames_read']:,} frames decoded, {f['frames_detected']:,} sampled and detected")
    for c in ("stage (per sampled frame)", "calls", "p50 ms", "p95 ms", "mean ms", "share of wall"):
        tab.add_column(c, justify="right")
    for k, v in f["stages"].items():
        tab.add_row(k, f"{v['n']:,}", f"{v['p50_ms']:.1f}", f"{v['p95_ms']:.1f}", f"{v['mean_ms']:.1f}",
                    f"{v['total_s'] / f['wall_s']:.0%}")
    rest = f["wall_s"] - sum(v["total_s"] for v in f["stages"].values())
    tab.add_row("the rest (per file: hashing, probing, model load, store write)", "1", "", "", f"{rest * 1000:.0f}",
                f"{rest / f['wall_s']:.0%}")
    out.print(tab)
    out.print(f"  wall {f['wall_s']:.1f} s (render {f['render_s']:.0f} s, not counted): [bold]real-time factor {f['rtf']:.2f}[/] "
              f"({f['frames_read'] / f['wall_s']:.0f} frames decoded/s, {f['frames_detected'] / f['wall_s']:.1f} detected/s), "
              f"{f['observations']} observations; without the evidence (face blur runs per observation, not per "
              f"footage second) {f['rtf_without_evidence']:.2f}")


# -- report ---------------------------------------------------------------------------------------


def report(runs: list[dict], args) -> None:
    for r in runs:
        tab = Table(title=f"{r['db']}: {r['observations']:,} observations ({r['issues']:,} issues, {r['batches']} vehicle batches), "
                          f"{r['workers']} process(es) × concurrency {r['concurrency']}"
                          + (f", store prefilled with {r['prefill']:,} cases" if r["prefill"] else ""))
        for c in ("stage", "calls", "p50 ms", "p95 ms", "mean ms"):
            tab.add_column(c, justify="right")
        for k in [*STAGES, "locks (wait)", "Pipeline.run (all)", "link observation"]:
            s = r["stages"].get(k)
            if s:
                tab.add_row(k, f"{s['n']:,}", f"{s['p50_ms']:.2f}", f"{s['p95_ms']:.2f}", f"{s['mean_ms']:.2f}")
        out.print(tab)
        o = r["outcomes"]
        out.print(f"  wall {r['wall_s']:.1f} s: [bold]{r['obs_per_s']:.1f} observations/s[/], {r['cases_per_s']:.1f} cases opened/s; "
                  f"{r['cases']:,} cases for {r['issues']:,} issues; outcomes: "
                  + ", ".join(f"{k} {v:,}" for k, v in sorted(o.items(), key=lambda x: -x[1])))
        out.print(f"  checks: {r['linked']:,}/{r['observations']:,} observations linked, {r['duplicate_external_ids']} duplicate "
                  f"external ids, {r['filed_twice']} cases filed twice; {r['issues_split']} issues split over 2+ cases, "
                  f"{r['cases_with_several_issues']} cases holding 2+ nearby issues (dedupe, 50 m, related classes)")
        grown = r["size"]["tables_grown"]
        main = ["cases", "case_audit", "case_evidence", "observations", "views", "batches", "batch_files",
                "checkpoints", "checkpoint_blobs", "checkpoint_writes", "llm_calls"]
        out.print(f"  store: {r['size']['before'] / 2**20:.1f} → {r['size']['after'] / 2**20:.1f} MiB; grown (with indexes): "
                  + ", ".join(f"{k} {grown[k] / 2**20:.2f}" for k in main if grown.get(k)) + " MiB; "
                  f"load (batches, observations, {r['views']:,} views) {r['load_s']:.1f} s")
    if args.footage_run:
        report_footage(args.footage_run)
    sizing(runs, args)


def sizing(runs: list[dict], args) -> None:
    """The city: footage cores, pipeline processes, store growth."""
    footage_h = args.fleet * args.hours
    measured = args.footage_run
    pg = [r for r in runs if r["db"] == "postgresql"] or runs
    best = max(pg, key=lambda r: r["obs_per_s"])
    obs_day = args.issues_per_day * (best["observations"] / best["issues"])
    evidence_core_h = 0.0
    if args.rtf is not None:
        rtf, cores, said = args.rtf, 2, f"given real-time factor {args.rtf:g} on 2 cores, evidence included"
    elif measured:
        # the measured clip is dense with issues (one per ~2.5 s of driving, a city's day one per ~4.6 min):
        # its evidence (face blur) is costed per observation, the rest per footage second
        rtf, cores = measured["rtf_without_evidence"], measured["cores"]
        per_obs_core_s = cores * measured["evidence_s"] / max(measured["observations"], 1)
        evidence_core_h = obs_day * per_obs_core_s / 3600
        said = (f"real-time factor {rtf:.2f} measured above on {cores} cores without the evidence, plus "
                f"{per_obs_core_s:.2f} core-s of evidence per observation × {obs_day:,.0f} = {evidence_core_h:.1f} core-h")
    else:
        rtf, cores, said = FOOTAGE_RTF_2CORE, 2, f"README.md's real-time factor {FOOTAGE_RTF_2CORE:g} on 2 cores, evidence included"
    core_h_per_footage_h = cores / rtf
    core_h = footage_h * core_h_per_footage_h + evidence_core_h
    km = args.fleet * args.hours * args.speed
    sampled = km * 1000 / args.sample_m
    decoded = footage_h * 3600 * args.fps
    out.rule("[bold]a city: sizing")
    lines = [
        f"fleet: {args.fleet} vehicles × {args.hours:g} h/day of 1080p{args.fps:g} = {footage_h:,.0f} h of footage/day; "
        f"at {args.speed:g} km/h average {km:,.0f} km/day",
        f"frames: {decoded / 1e6:,.1f} M decoded/day (every frame), {sampled / 1e6:,.1f} M sampled and detected at one per "
        f"{args.sample_m:g} m (→ {sampled / 1e6:,.1f} M view rows/day)",
        f"footage: {said}; {core_h_per_footage_h:.3f} core-h per footage hour (decoding, 2 m sampling, ONNX detection, "
        f"tracking) → {core_h:,.0f} core-h/day in all",
    ]
    for window in (24, 16, 8):
        cores = core_h / window / args.utilization
        lines.append(f"  within {window:>2} h: {cores:,.0f} cores at {args.utilization:.0%} use = "
                     f"{math.ceil(cores / args.node_cores)} nodes of {args.node_cores} cores")
    per_proc = best["obs_per_s"] / best["workers"]
    lines.append(f"pipeline: {args.issues_per_day:,} issues/day → {obs_day:,.0f} observations/day; measured {best['obs_per_s']:.1f} obs/s "
                 f"with {best['workers']} process(es) on {best['db']} ({per_proc:.1f} per process, this 2-core machine) → "
                 f"{obs_day / best['obs_per_s'] / 60:.1f} min/day of pipeline work; to clear the day's observations within "
                 f"{args.drain_min:g} min of the last upload: {math.ceil(obs_day / (args.drain_min * 60) / per_proc)} process(es)")
    r0 = best
    grown = r0["size"]["tables_grown"]
    case_tables = ["cases", "case_audit", "case_evidence", "case_counters", "checkpoints", "checkpoint_blobs", "checkpoint_writes",
                   "checkpoint_migrations", "observations", "batch_files", "batches", "llm_calls", "verifications", "notifications"]
    per_case = sum(grown.get(k, 0) for k in case_tables) / max(r0["cases"], 1)
    per_view = grown.get("views", 0) / max(r0["views"], 1)
    cases_day = args.issues_per_day * (r0["cases"] / r0["issues"])
    year_cases = cases_day * 365 * per_case
    year_views = sampled * 365 * per_view
    lines += [
        f"store: {per_case / 1024:.1f} KiB per case opened (case, audit, evidence rows, observations, checkpoints, with indexes), "
        f"{per_view:.0f} B per view row ({r0['db']})",
        f"  a year: {cases_day * 365 / 1e6:.2f} M cases → {year_cases / 2**30:.1f} GiB; {sampled * 365 / 1e9:.2f} G view rows → "
        f"{year_views / 2**40:.2f} TiB; checkpoints of finished threads can be pruned, views of old batches archived",
        "assumptions: every frame is decoded and one per "
        f"{args.sample_m:g} m detected, so that cost scales with video hours, the evidence's with observations; the "
        "per-file overhead of the short clip (hashing, model load) is counted as footage time (conservative); per-core scaling is linear "
        "(work is per file and per segment, docs/scale.md 'Footage on a Ray cluster'); nodes are CPU-only; "
        f"{args.issues_per_day:,} issues/day for the city; pipeline figures are the offline policy (an LLM adds its own servers)",
    ]
    for line in lines:
        out.print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--issues", type=int, default=8000, help="physical issues seen in the day (default %(default)s)")
    ap.add_argument("--vehicles", type=int, default=100, help="patrol vehicles = batches (default %(default)s)")
    ap.add_argument("--resight", type=float, default=0.25, help="share of issues seen again by another vehicle")
    ap.add_argument("--views", type=int, default=2000, help="view rows written per vehicle batch (size per row; 0: none)")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--pg", default=os.environ.get("XUNJIAN_TEST_PG_URL", "postgresql+psycopg://xunjian:xunjian@127.0.0.1/xunjian_test"))
    ap.add_argument("--pg-db", default="xunjian_cityday")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (default %(default)s)")
    ap.add_argument("--shard-by", choices=["id", "area"], default="id", help="how workers split a batch (default %(default)s)")
    ap.add_argument("--concurrency", type=int, default=4, help="observations at a time per process (default %(default)s)")
    ap.add_argument("--footage-s", type=float, default=20.0, help="seconds of 1080p footage to render and ingest (0: skip)")
    ap.add_argument("--prefill", type=int, default=0, help="synthetic cases in the store before the day")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--keep", action="store_true", help="keep the databases")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    g = ap.add_argument_group("sizing")
    g.add_argument("--fleet", type=int, default=100)
    g.add_argument("--hours", type=float, default=8.0)
    g.add_argument("--fps", type=float, default=30.0)
    g.add_argument("--speed", type=float, default=25.0, help="average km/h over the shift, stops included")
    g.add_argument("--sample-m", type=float, default=2.0, help="metres between sampled frames (the ingest default)")
    g.add_argument("--rtf", type=float, help="footage real-time factor on 2 cores (default: measured with --footage-s)")
    g.add_argument("--node-cores", type=int, default=16)
    g.add_argument("--utilization", type=float, default=0.8)
    g.add_argument("--issues-per-day", type=int, default=8000)
    g.add_argument("--drain-min", type=float, default=30.0, help="minutes to clear the day's observations")
    args = ap.parse_args(argv)

    from city.bundle import load_city

    os.environ.setdefault("XUNJIAN_HOME", tempfile.mkdtemp(prefix="xj-day-home-"))
    city = load_city()
    t0 = time.perf_counter()
    day = make_day(city, args.issues, args.vehicles, args.resight, args.seed)
    console.print(f"the day: {len(day['points']):,} issues, {len(day['sightings']):,} sightings in {args.vehicles} batches "
                  f"({time.perf_counter() - t0:.1f} s to make)")
    args.footage_run = footage(args.footage_s) if args.footage_s > 0 else None
    runs = []
    for dialect in (["sqlite", "postgresql"] if args.db == "both" else [args.db]):
        try:
            runs.append(run_db(dialect, args, city, day))
        except Exception as e:  # an unreachable server with --db both
            if args.db != "both" or dialect == "sqlite":
                raise
            console.print(f"[yellow]{dialect} skipped: {e}[/]")
    report(runs, args)
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "runs": runs, "footage": args.footage_run}, ensure_ascii=False, indent=1,
                                       default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
