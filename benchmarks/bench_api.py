#!/usr/bin/env python
"""HTTP API load benchmark: requests/s and latency of the case list and of Open311
over a real uvicorn server, at 100k cases, on SQLite (and PostgreSQL with --pg).

    python benchmarks/bench_api.py                          # SQLite, 100k cases
    python benchmarks/bench_api.py --cases 20000 --requests 300
    python benchmarks/bench_api.py --pg postgresql+psycopg://xunjian:xunjian@127.0.0.1/xunjian_test

What it does, per database:

1. opens ``Store(url, city)`` on a fresh database (a SQLite file in a temporary
   folder; a new PostgreSQL database created next to ``--pg``'s) and fills
   ``cases`` with ``--cases`` synthetic rows the way benchmarks/bench_store.py
   does (its ``World``: a 40 km city, ~60 common 事件 codes, a year of cases,
   ~30% open; executemany on SQLite, COPY on PostgreSQL, then ANALYZE); adds a
   dispatcher and an Open311 API key;
2. starts the app with uvicorn in a separate process on loopback (one server
   process; rate limits off; the background worker off unless ``--worker``, so
   that the POST figures are the API's own and not the pipeline's);
3. runs each scenario with ``--concurrency`` client threads (one keep-alive
   httpx client each), ``--warmup`` untimed then ``--requests`` timed requests,
   and reports requests/s, p50/p95/p99 latency and errors;
4. compares every scenario with the baseline of the same run, ``GET
   /api/auth/me`` (a token lookup and a tiny JSON answer: what any
   authenticated request costs), as ratios of p50 and of requests/s;
5. optionally (``--process N``) runs N of the queued Open311 requests through
   the case pipeline in this process (what the worker does) and reports jobs/s.

Scenarios: ``GET /api/cases`` without filter, by status, by department, by
status and department, at deep offsets (50% … 90% of the table) and the same pages by
keyset (``after=`` the case before them), ``GET
/open311/v2/requests.json`` (one page of 50; the spec's default of up to 1000,
with a fifth of ``--requests``),
``GET /open311/v2/services.json``, and ``POST /open311/v2/requests.json``
(form-encoded, random offered service, random point in the sample jurisdiction).

Figures are printed, not asserted: the machines are shared and noisy, and the
client threads share the CPU with the server, so read the ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import httpx
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
out_console = Console(width=None if sys.stdout.isatty() else 200)

PASSWORD = "bench-password-1"
DISPATCHER = "压测调度"
BASELINE = "baseline: GET /api/auth/me"


# -- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``create_app()`` under uvicorn in a child process, over the store at ``url``."""

    def __init__(self, url: str, home: Path, *, worker: bool):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "server.log"
        env = {**os.environ, "XUNJIAN_DB_URL": url, "XUNJIAN_HOME": str(home), "XUNJIAN_RATE_LIMIT": "off",
               "XUNJIAN_RATE_LIMIT_READ": "off", "XUNJIAN_RATE_LIMIT_LOGIN": "off", "XUNJIAN_LLM_BACKEND": "offline"}
        code = ("import uvicorn; from app.api import create_app; "
                f"uvicorn.run(create_app(worker={worker}), host='127.0.0.1', port={self.port}, "
                "log_level='warning', access_log=False)")
        self._log = self.log.open("w")
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        end = time.monotonic() + 120
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/open311/v2/services.json", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# -- the load ----------------------------------------------------------------------------------


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p)) if xs else float("nan")


def run_load(base: str, headers: dict, make, *, concurrency: int, requests: int, warmup: int) -> dict:
    """``requests`` timed requests (``make(i) -> (method, path, kwargs)``) spread over
    ``concurrency`` threads after ``warmup`` untimed ones; latencies in ms."""
    counter = iter(range(10**9))
    lock = threading.Lock()
    ms: list[float] = []
    errors: dict[str, int] = {}

    def take() -> int:
        with lock:
            return next(counter)

    def worker(client: httpx.Client, limit: int, timed: bool):
        while True:
            i = take()
            if i >= limit:
                return
            method, path, kw = make(i)
            t0 = time.perf_counter()
            try:
                r = client.request(method, path, **kw)
                ok, what = r.status_code < 400, str(r.status_code)
            except httpx.HTTPError as e:
                ok, what = False, type(e).__name__
            dt = (time.perf_counter() - t0) * 1000
            with lock:
                if timed:
                    ms.append(dt)
                if not ok:
                    errors[what] = errors.get(what, 0) + 1

    clients = [httpx.Client(base_url=base, headers=headers, timeout=120) for _ in range(concurrency)]
    try:
        for phase, limit, timed in (("warmup", warmup, False), ("timed", warmup + requests, True)):
            threads = [threading.Thread(target=worker, args=(c, limit, timed)) for c in clients]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
    finally:
        for c in clients:
            c.close()
    return {"n": len(ms), "wall_s": wall, "per_s": len(ms) / wall if wall else float("nan"),
            "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "p99_ms": pct(ms, 99), "max_ms": max(ms) if ms else float("nan"),
            "mean_ms": statistics.fmean(ms) if ms else float("nan"), "errors": errors}


def ordered_numbers(url: str) -> list[str]:
    """Every case number in the list's order (newest first): where keyset pages start."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text("SELECT number FROM cases ORDER BY created_at DESC, id DESC"))]
    finally:
        engine.dispose()


def scenarios(world, n_cases: int, api_key: str, seed: int, numbers: list[str] | None = None) -> list[tuple[str, object]]:
    from app.api.open311 import load_config

    rng = np.random.default_rng([seed, 7])
    dept = world.depts[0]
    services = load_config(world.city).services
    codes = [s.code for s in services]
    with_context = {s.code for s in services if "context" in s.attributes}
    lat0, lon0, lat1, lon1 = world.jbox
    deep = rng.integers(n_cases // 2, max(n_cases // 2 + 1, int(n_cases * 0.9)), 100_000)
    pts = np.column_stack([rng.uniform(lat0, lat1, 100_000), rng.uniform(lon0, lon1, 100_000)])
    code_i = rng.integers(0, len(codes), 100_000)

    def get(path, **params):
        return lambda i: ("GET", path, {"params": params})

    def post(i):
        lat, lon = pts[i % len(pts)]
        code = codes[code_i[i % len(code_i)]]
        data = {"api_key": api_key, "service_code": code, "lat": f"{lat:.6f}", "long": f"{lon:.6f}",
                "description": f"压测上报 #{i}：路边发现问题，请尽快处理"}
        if code in with_context:
            data["attribute[context]"] = "道路"
        return ("POST", "/open311/v2/requests.json", {"data": data})

    return [
        (BASELINE, get("/api/auth/me")),
        ("GET /open311/v2/services.json", get("/open311/v2/services.json")),
        ("GET /api/cases (no filter)", get("/api/cases", limit=50)),
        ("GET /api/cases?status=派遣", get("/api/cases", status="派遣", limit=50)),
        (f"GET /api/cases?department_id={dept}", get("/api/cases", department_id=dept, limit=50)),
        ("GET /api/cases?status=处置中&department_id", get("/api/cases", status="处置中", department_id=dept, limit=50)),
        ("GET /api/cases deep offset (50–90%)",
         lambda i: ("GET", "/api/cases", {"params": {"limit": 50, "offset": int(deep[i % len(deep)])}})),
        ("GET /api/cases keyset ?after= (50–90%)",
         lambda i: ("GET", "/api/cases", {"params": {"limit": 50, "after": numbers[int(deep[i % len(deep)]) - 1]}})),
        ("GET /open311/v2/requests.json?page_size=50", get("/open311/v2/requests.json", page_size=50)),
        ("GET /open311/v2/requests.json (≤1000)", get("/open311/v2/requests.json")),  # a fifth of --requests
        ("POST /open311/v2/requests.json", post),
    ]


# -- one database ------------------------------------------------------------------------------


def seed(t, world, n: int) -> dict:
    """Fill the store; a dispatcher and an Open311 key; (seconds, key)."""
    from bench_store import bulk_fill

    from city.store import Store
    from city.users import Role, User

    store = Store(t.url, world.city)  # creates the schema (the migrations)
    try:
        fill_s = bulk_fill(t, world, 0, n)
        store.add_user(User(name=DISPATCHER, role=Role.DISPATCHER), PASSWORD)
        key = store.issue_api_key("压测客户端")
    finally:
        store.close()
    return {"fill_s": fill_s, "api_key": key}


def process_queued(url: str, city, home: Path, n: int) -> dict | None:
    """Run up to ``n`` queued Open311 jobs through the pipeline here (the worker's work)."""
    if n <= 0:
        return None
    os.environ["XUNJIAN_HOME"] = str(home)
    import app.api.open311  # noqa: F401 - registers the handler
    from app.api.deps import Services
    from app.api.worker import run_job
    from city.store import Store

    svc = Services(store=Store(url, city))
    try:
        first = svc.store.claim_job(["open311"])  # warm-up: builds the pipeline and the catalogue index
        if first is None:
            return None
        run_job(first, svc)
        ms, outcomes = [], {}
        t0 = time.perf_counter()
        for _ in range(n):
            job = svc.store.claim_job(["open311"])
            if job is None:
                break
            a = time.perf_counter()
            done = run_job(job, svc)
            ms.append((time.perf_counter() - a) * 1000)
            key = (done.result or {}).get("outcome") or done.status
            outcomes[key] = outcomes.get(key, 0) + 1
        wall = time.perf_counter() - t0
    finally:
        svc.close()
    return {"n": len(ms), "per_s": len(ms) / wall if wall else float("nan"), "p50_ms": pct(ms, 50),
            "p95_ms": pct(ms, 95), "outcomes": outcomes}


def run_db(t, world, args) -> dict:
    home = Path(tempfile.mkdtemp(prefix="xunjian-bench-api-home-"))
    try:
        console.print(f"[bold]{t.dialect}[/bold]: filling {args.cases:,} cases …")
        s = seed(t, world, args.cases)
        console.print(f"  filled in {s['fill_s']:.1f} s; starting the server …")
        server = Server(t.url, home, worker=args.worker)
        results = []
        try:
            token = httpx.post(server.url + "/api/auth/login", json={"name": DISPATCHER, "password": PASSWORD}).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            total = httpx.get(server.url + "/api/cases", params={"limit": 1}, headers=headers).json()["total"]
            if total != args.cases:
                console.print(f"[yellow]/api/cases total is {total}, expected {args.cases}[/yellow]")
            numbers = ordered_numbers(t.url)
            for name, make in scenarios(world, args.cases, s["api_key"], args.seed, numbers):
                if args.only and not any(w in name for w in args.only):
                    continue
                n = args.posts if name.startswith("POST") else args.requests // 5 if "≤1000" in name else args.requests
                r = run_load(server.url, headers, make, concurrency=args.concurrency, requests=n, warmup=args.warmup)
                r["name"] = name
                results.append(r)
                err = f", errors {r['errors']}" if r["errors"] else ""
                console.print(f"  {name}: {r['per_s']:.0f}/s, p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms{err}")
        finally:
            server.stop()
        processed = process_queued(t.url, world.city, home, args.process)
        return {"db": t.dialect, "cases": args.cases, "fill_s": s["fill_s"], "scenarios": results, "pipeline": processed}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def report(runs: list[dict], args) -> None:
    for run in runs:
        base = next((r for r in run["scenarios"] if r["name"] == BASELINE), None)
        t = Table(title=f"{run['db']}, {run['cases']:,} cases: {args.concurrency} client threads, "
                        f"{args.requests} requests per scenario ({args.posts} POSTs)")
        for col in ("scenario", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "p50 × baseline", "req/s ÷ baseline"):
            t.add_column(col, justify="left" if col == "scenario" else "right")
        for r in run["scenarios"]:
            t.add_row(r["name"], f"{r['per_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['p99_ms']:.1f}",
                      f"{r['max_ms']:.0f}", str(sum(r["errors"].values())) if r["errors"] else "0",
                      f"×{r['p50_ms'] / base['p50_ms']:.1f}" if base else "", f"{r['per_s'] / base['per_s']:.2f}" if base else "")
        out_console.print(t)
        p = run.get("pipeline")
        if p:
            out_console.print(f"{run['db']}: Open311 requests through the case pipeline (offline policy, one thread): "
                              f"{p['n']} in {p['n'] / p['per_s']:.1f} s = {p['per_s']:.1f}/s, p50 {p['p50_ms']:.0f} ms, "
                              f"p95 {p['p95_ms']:.0f} ms; outcomes {p['outcomes']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100_000, help="cases in the store (default: %(default)s)")
    ap.add_argument("--requests", type=int, default=1000, help="timed requests per GET scenario (default: %(default)s)")
    ap.add_argument("--posts", type=int, default=1000, help="timed Open311 POSTs (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=50, help="untimed requests first, per scenario (default: %(default)s)")
    ap.add_argument("--concurrency", type=int, default=8, help="client threads (default: %(default)s)")
    ap.add_argument("--process", type=int, default=200,
                    help="afterwards, run this many queued Open311 requests through the pipeline (default: %(default)s; 0: skip)")
    ap.add_argument("--worker", action="store_true", help="run the server's background worker during the load")
    ap.add_argument("--only", action="append", help="only scenarios whose name contains this (repeatable)")
    ap.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True, help="run on SQLite (default: yes)")
    ap.add_argument("--pg", metavar="URL", help="also run on PostgreSQL: a URL whose role may CREATE DATABASE")
    ap.add_argument("--pg-db", default="xunjian_bench_api", help="the database it creates and drops (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=20261124)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)

    from bench_store import World, pg_target, sqlite_target

    from city.bundle import load_city

    world = World(load_city(), args.seed)
    targets = ([lambda: sqlite_target(None, False)] if args.sqlite else []) + \
              ([lambda: pg_target(args.pg, args.pg_db, False)] if args.pg else [])
    if not targets:
        ap.error("nothing to run: give --pg or leave --sqlite on")
    runs = []
    started = time.perf_counter()
    for make in targets:
        t = make()
        try:
            runs.append(run_db(t, world, args))
        finally:
            t.cleanup()
    report(runs, args)
    out_console.print(f"run time {time.perf_counter() - started:.0f} s; {os.cpu_count()} CPUs, Python "
                      f"{platform.python_version()}; client and server share the machine")
    if args.out:
        args.out.write_text(json.dumps({"argv": sys.argv, "runs": runs}, ensure_ascii=False, indent=1, default=str))
    return 0 if all(not r["errors"] for run in runs for r in run["scenarios"]) else 1


if __name__ == "__main__":
    sys.exit(main())
