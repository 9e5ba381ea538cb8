"""Scaling out on PostgreSQL: the pool settings, the pooled checkpointer, named
locks across processes, a case held at the review gate resumed by another
process, batch observations sharded over worker processes (the same cases as one
process, no duplicates when workers race), and backup/restore round trips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import PG_URL, _pg_schema_url
from sqlalchemy import create_engine, text

from agents.pipeline import Pipeline
from agents.state import Report
from city.cases import NewCase
from city.catalogue import Source
from city.errors import InvalidInput
from city.lifecycle import Status
from city.observations import Batch, BatchFile, Observation
from city.store import Store
from city.store.db import make_engines, pool_settings, with_session_options

ROOT = Path(__file__).resolve().parents[1]
NOW_ISO = "2026-11-20T02:00:00+00:00"
CLASSES = [("pothole", "坑槽", "06013"), ("garbage", "暴露垃圾", "06010"), ("bin_overflow", "垃圾满溢", "06042")]
postgres = pytest.mark.postgres


def _require_pg():
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL: XUNJIAN_TEST_PG_URL is not set")
        pytest.skip("PostgreSQL not configured: set XUNJIAN_TEST_PG_URL")


@pytest.fixture
def pg_schema():
    """A factory of fresh PostgreSQL schemas (URLs), all dropped afterwards."""
    _require_pg()
    admin = create_engine(PG_URL)
    made = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        made.append(name)
        return _pg_schema_url(PG_URL, name)

    yield make
    with admin.begin() as conn:
        for name in made:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    admin.dispose()


def _env(tmp_path: Path, **extra) -> dict:
    env = {**os.environ, "XUNJIAN_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT), **extra}
    env.pop("XUNJIAN_LLM_BACKEND", None)
    env.pop("XUNJIAN_DB_URL", None)
    return env


def _python(code: str, *args: str, env: dict, timeout: int = 180) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                         env=env, timeout=timeout, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


# -- pool settings ---------------------------------------------------------------------------


def test_pool_settings_from_the_environment(monkeypatch):
    for k in ("XUNJIAN_DB_POOL_SIZE", "XUNJIAN_DB_MAX_OVERFLOW", "XUNJIAN_DB_POOL_TIMEOUT", "XUNJIAN_DB_POOL_RECYCLE",
              "XUNJIAN_DB_STATEMENT_TIMEOUT", "XUNJIAN_DB_APPLICATION_NAME"):
        monkeypatch.delenv(k, raising=False)
    assert pool_settings() == {"pool_size": 10, "max_overflow": 30, "pool_timeout": 30, "pool_recycle": 1800,
                               "statement_timeout_ms": 0, "application_name": "xunjian"}
    monkeypatch.setenv("XUNJIAN_DB_POOL_SIZE", "4")
    monkeypatch.setenv("XUNJIAN_DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("XUNJIAN_DB_STATEMENT_TIMEOUT", "30s")
    cfg = pool_settings()
    assert (cfg["pool_size"], cfg["max_overflow"], cfg["statement_timeout_ms"]) == (4, 0, 30_000)
    read, write = make_engines("postgresql+psycopg://u:p@127.0.0.1:1/db?options=-csearch_path%3Dt_x")  # no connection made
    assert read is write and write.pool.size() == 4 and write.pool._max_overflow == 0
    assert write.url.query["options"] == "-csearch_path=t_x -c statement_timeout=30000"  # the schema stays
    assert write.url.query["application_name"] == "xunjian"
    write.dispose()
    for value, unit in (("250", 250), ("2min", 120_000), ("1h", 3_600_000), ("15ms", 15)):
        monkeypatch.setenv("XUNJIAN_DB_STATEMENT_TIMEOUT", value)
        assert pool_settings()["statement_timeout_ms"] == unit
    monkeypatch.setenv("XUNJIAN_DB_STATEMENT_TIMEOUT", "soon")
    with pytest.raises(InvalidInput, match="XUNJIAN_DB_STATEMENT_TIMEOUT"):
        pool_settings()
    monkeypatch.delenv("XUNJIAN_DB_STATEMENT_TIMEOUT")
    monkeypatch.setenv("XUNJIAN_DB_POOL_SIZE", "0")
    with pytest.raises(InvalidInput, match="at least 1"):
        pool_settings()
    monkeypatch.setenv("XUNJIAN_DB_POOL_SIZE", "many")
    with pytest.raises(InvalidInput, match="whole number"):
        pool_settings()
    # an options value the URL already has is kept as it is
    from sqlalchemy.engine import make_url

    url = make_url("postgresql+psycopg://u@h/db?options=-c statement_timeout=5")
    assert with_session_options(url, statement_timeout_ms=99).query["options"] == "-c statement_timeout=5"


def test_sqlite_engines_are_unchanged(tmp_path):
    read, write = make_engines(f"sqlite:///{tmp_path / 'x.db'}")
    assert read is not write and "statement_timeout" not in str(write.url)
    read.dispose()
    write.dispose()


@postgres
def test_statement_timeout_reaches_every_session(pg_schema, city, monkeypatch):
    from agents.context import checkpointer

    monkeypatch.setenv("XUNJIAN_DB_STATEMENT_TIMEOUT", "300ms")
    monkeypatch.setenv("XUNJIAN_DB_POOL_SIZE", "3")
    store = Store(pg_schema(), city)  # the migration lifts the timeout for itself
    try:
        with store.reading() as s:
            assert s.execute(text("SHOW statement_timeout")).scalar_one() == "300ms"
            assert s.execute(text("SELECT current_setting('application_name')")).scalar_one() == "xunjian"
        with pytest.raises(Exception, match="statement timeout"), store.reading() as s:
            s.execute(text("SELECT pg_sleep(2)"))
        saver = checkpointer(store)
        with saver.conn.connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "300ms"
            assert conn.execute("SHOW application_name").fetchone()["application_name"] == "xunjian-checkpoints"
        assert saver.conn.max_size == 3
    finally:
        store.close()


# -- the pooled checkpointer ---------------------------------------------------------------


@postgres
def test_checkpointer_is_one_pool_per_store_used_by_many_threads(pg_schema, city):
    from psycopg_pool import ConnectionPool

    from agents.context import checkpointer

    store = Store(pg_schema(), city)
    saver = checkpointer(store)
    assert isinstance(saver.conn, ConnectionPool) and checkpointer(store) is saver
    pipe = Pipeline(store)
    assert pipe.graph.checkpointer is saver
    errors, results = [], []

    def work(i: int):
        try:
            lat, lon = 29.5600 + 0.002 * (i // 4), 106.5300 + 0.002 * (i % 4)
            results.append(pipe.run(Report(source=Source.CITIZEN, text="路边垃圾堆了好几天没人清理", lat=lat, lon=lon,
                                           external_id=f"t-{i}")))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({r.state.case_number for r in results}) == 12
    assert all(pipe.state_of(r.state.case_number).state.outcome == r.state.outcome for r in results)
    store.close()
    assert saver.conn.closed  # closed with the store
    again = Store(store.url, city)
    try:
        assert checkpointer(again) is not saver and Pipeline(again).state_of(results[0].state.case_number).state.case_number
    finally:
        again.close()


# -- named locks ----------------------------------------------------------------------------

COUNTER = """
import sys, time
from pathlib import Path
from city.store.db import make_engines, named_locks
url, path = sys.argv[1], Path(sys.argv[2])
_, engine = make_engines(url)
while not Path(str(path) + ".go").exists():
    time.sleep(0.01)
for _ in range(15):
    with named_locks(engine, ["counter", "another"]):
        n = int(path.read_text())
        time.sleep(0.003)
        path.write_text(str(n + 1))
"""


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=postgres)])
def test_named_locks_exclude_other_processes(dialect, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'l.db'}" if dialect == "sqlite" else request.getfixturevalue("pg_schema")()
    counter = tmp_path / "n"
    counter.write_text("0")
    env = _env(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", COUNTER, url, str(counter)], env=env, cwd=ROOT, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    time.sleep(1.0)
    Path(str(counter) + ".go").write_text("")
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    assert counter.read_text() == "45"  # no lost update: the read-modify-write never overlapped


# -- the review gate across processes ----------------------------------------------------

HOLD = """
import sys
from agents.pipeline import Pipeline
from agents.state import Report
from city.store import Store
st = Store(sys.argv[1])
r = Pipeline(st).run(Report(source="市民", text="人行道井盖破了一半，很危险", lat=29.56, lon=106.55, external_id="gate-1"))
print(r.state.case_number, bool(r.waiting))
"""

RESUME = """
import sys, time
from pathlib import Path
from agents.pipeline import Pipeline
from city.errors import InvalidInput
from city.store import Store
st = Store(sys.argv[1])
pipe = Pipeline(st)
while not Path(sys.argv[3]).exists():
    time.sleep(0.01)
try:
    r = pipe.resume(sys.argv[2], "approve", by=sys.argv[4], note="核实属实")
    print("done", r.state.outcome)
except InvalidInput as e:
    print("refused", e)
"""


@postgres
def test_a_case_held_in_one_process_is_resumed_by_another(pg_schema, tmp_path, city):
    url = pg_schema()
    env = _env(tmp_path)
    number, waiting = _python(HOLD, url, env=env).stdout.split()
    assert waiting == "True"
    store = Store(url, city)
    try:
        assert store.get(number).status is Status.REPORTED
        # two reviewers in two more processes answer at the same moment: one wins
        go = tmp_path / "go"
        procs = [subprocess.Popen([sys.executable, "-c", RESUME, url, number, str(go), who], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for who in ("值班长甲", "值班长乙")]
        time.sleep(1.5)
        go.write_text("")
        outs = [p.communicate(timeout=180) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
        answers = sorted(o[0].split()[0] for o in outs)
        assert answers == ["done", "refused"], outs
        case = store.get(number)
        assert case.status is Status.DISPATCHED
        assert [h.action for h in case.history] == ["上报", "立案", "派遣"]  # filed and dispatched once
        assert case.history[-1].actor in ("值班长甲", "值班长乙")
        assert Pipeline(store).state_of(number).state.outcome == "dispatched"
    finally:
        store.close()


# -- batch observations over worker processes ---------------------------------------------


def _places(city, n: int) -> list[tuple[float, float]]:
    """n points of the sample jurisdiction at least ~180 m apart (no dedupe between them)."""
    out = []
    lat = 29.552
    while len(out) < n and lat < 29.59:
        lon = 106.52
        while len(out) < n and lon < 106.58:
            if city.locate(lat, lon).district_id:
                out.append((round(lat, 6), round(lon, 6)))
            lon += 0.0019
        lat += 0.0017
    assert len(out) == n
    return out


def _add_batch(store, batch_id: str, items: list[tuple[int, tuple[float, float]]]) -> None:
    from datetime import datetime

    now = datetime.fromisoformat(NOW_ISO)
    store.open_batch(Batch(id=batch_id, source="车巡", platform_id="渝A-巡01", root="/footage", created_at=now, updated_at=now))
    obs = []
    for n, (cls, (lat, lon)) in enumerate(items, 1):
        name, zh, code = CLASSES[cls % len(CLASSES)]
        obs.append(Observation(id=f"{batch_id}:f:{n:03d}", batch_id=batch_id, file="a.mp4", file_sha256="ab" * 32, source="车巡",
                               platform_id="渝A-巡01", class_name=name, label_zh=zh, kind="事件", code=code, confidence=0.9,
                               mean_confidence=0.8, lat=lat, lon=lon, error_m=4.0, frames=6, first_t=n, last_t=n + 1,
                               best_t=n + 0.5, seen_at=now, box=(1, 2, 30, 40), model="scale@1"))
    store.finish_file(BatchFile(batch_id=batch_id, path="a.mp4", sha256="ab" * 32, status="done", observations=len(obs),
                                finished_at=now), obs)


def _city_batches(store, city) -> dict[str, int]:
    """b1: 24 issues at distinct places; b2: 8 of them seen again (a few metres off) and 4 new ones.
    Returns observation id → place index."""
    places = _places(city, 28)
    b1 = [(i, places[i]) for i in range(24)]
    again = [(i, (places[i][0] + 0.00003, places[i][1] - 0.00002)) for i in range(0, 24, 3)]
    b2 = again + [(i, places[i]) for i in range(24, 28)]
    _add_batch(store, "b1", b1)
    _add_batch(store, "b2", b2)
    place_of = {f"b1:f:{n:03d}": i for n, (i, _) in enumerate(b1, 1)}
    place_of.update({f"b2:f:{n:03d}": i for n, (i, _) in enumerate(b2, 1)})
    return place_of


def _outcome(store, place_of: dict[str, int]) -> dict:
    """What a run produced, independent of case numbers and of which sighting came first."""
    case_of = {o: store.observation(o).case_number for o in place_of}
    assert all(case_of.values()), {o: c for o, c in case_of.items() if not c}
    groups: dict[str, set[int]] = {}
    for o, c in case_of.items():
        groups.setdefault(c, set()).add(place_of[o])
    cases = [store.get(c) for c in groups]
    with store.reading() as s:
        n_cases = s.execute(text("SELECT count(*) FROM cases")).scalar_one()
    return {"n_cases": n_cases,
            "partition": sorted(tuple(sorted(g)) for g in groups.values()),
            "by_place": sorted((min(groups[c.number]), c.code, c.status.value, c.department_id) for c in cases)}


@postgres
def test_workers_make_the_same_cases_as_one_process(pg_schema, tmp_path, city):
    from agents.batch import run_batch

    one_url, many_url = pg_schema(), pg_schema()
    one, many = Store(one_url, city), Store(many_url, city)
    try:
        place_of = _city_batches(one, city)
        _city_batches(many, city)
        pipe = Pipeline(one)
        for b in ("b1", "b2"):
            run_batch(pipe, b, verify=False)
        want = _outcome(one, place_of)
        assert want["n_cases"] == 28 and all(len(g) == 1 for g in want["partition"])

        env = _env(tmp_path)
        cli = [sys.executable, "-m", "app.cli", "--db", many_url, "pipeline", "run", "--no-verify", "--json"]
        res = subprocess.run([*cli, "--batch", "b1", "--workers", "3"], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
        assert res.returncode == 0, res.stderr[-3000:]
        assert len(json.loads(res.stdout)["results"]) == 24
        # b2 as two shards by area, as two nodes would run it
        for i in (0, 1):
            res = subprocess.run([*cli, "--batch", "b2", "--shard", f"{i}/2", "--shard-by", "area"], capture_output=True,
                                 text=True, env=env, timeout=300, cwd=ROOT)
            assert res.returncode == 0, res.stderr[-3000:]
        assert _outcome(many, place_of) == want
        again = subprocess.run([*cli, "--batch", "b1", "--workers", "2"], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
        assert again.returncode == 0 and json.loads(again.stdout)["results"] == []  # nothing left to do
    finally:
        one.close()
        many.close()


def test_area_shards_keep_a_place_together_and_split_every_observation_once(tmp_path, city):
    from agents.batch import shard_key, shard_of

    store = Store(f"sqlite:///{tmp_path / 's.db'}", city)
    try:
        place_of = _city_batches(store, city)
        obs = [store.observation(o) for o in place_of]
        for by in ("id", "area"):
            parts = [{o.id for o in obs if shard_of(shard_key(o, by), 3) == i} for i in range(3)]
            assert sum(map(len, parts)) == len(obs) and set().union(*parts) == set(place_of)  # each once
        area = {}
        for o in obs:  # a sighting and its re-sighting a few metres off: the same block, the same shard
            area.setdefault(place_of[o.id], set()).add(shard_key(o, "area"))
        assert all(len(keys) == 1 for keys in area.values())
        blocks = {k for keys in area.values() for k in keys}
        assert 2 <= len(blocks) < len(area)  # 28 places ~180 m apart over a few km: several places per block
    finally:
        store.close()


RACE = """
import sys, time
from pathlib import Path
from agents.batch import run_batch
from agents.pipeline import Pipeline
from city.store import Store
url, batch, go = sys.argv[1:4]
pipe = Pipeline(Store(url))
while not Path(go).exists():
    time.sleep(0.005)
print(len(run_batch(pipe, batch, verify=False, max_concurrency=4)))
"""


@postgres
def test_racing_workers_open_one_case_per_issue(pg_schema, tmp_path, city):
    """Three processes each run the whole of b1 while a fourth runs b2 (which sees
    a third of b1's issues again), all at once: every issue gets exactly one case."""
    url = pg_schema()
    store = Store(url, city)
    try:
        place_of = _city_batches(store, city)
        env = _env(tmp_path)
        go = tmp_path / "go"
        procs = [subprocess.Popen([sys.executable, "-c", RACE, url, b, str(go)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for b in ("b1", "b1", "b1", "b2")]
        time.sleep(2.0)  # all started (imports done), waiting for the signal
        go.write_text("")
        outs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
        got = _outcome(store, place_of)
        assert got["n_cases"] == 28, got
        assert all(len(g) == 1 for g in got["partition"]) and len(got["partition"]) == 28
        with store.reading() as s:
            dup = s.execute(text("SELECT count(*) - count(DISTINCT external_id) FROM cases")).scalar_one()
            filed = s.execute(text("SELECT case_id, count(*) FROM case_audit WHERE action = '立案' GROUP BY case_id "
                                   "HAVING count(*) > 1")).all()
        assert dup == 0 and filed == []  # one case per thread, each filed once
    finally:
        store.close()


# -- backup and restore --------------------------------------------------------------------


def test_backup_restore_round_trip(db_url, tmp_path, city, monkeypatch):
    """Cases, audit rows, checkpoints (a case waiting at the review gate) and the
    evidence files survive ``xunjian db backup`` → disaster → ``xunjian db restore``."""
    home = tmp_path / "home"
    monkeypatch.setenv("XUNJIAN_HOME", str(home))
    env = _env(tmp_path)
    store = Store(db_url, city)
    pipe = Pipeline(store)
    done = pipe.run(Report(source=Source.CITIZEN, text="路边垃圾堆了好几天没人清理", lat=29.5751, lon=106.5301, external_id="r-1"))
    held = pipe.run(Report(source=Source.CITIZEN, text="人行道井盖破了一半，很危险", lat=29.56, lon=106.55, external_id="r-2"))
    assert held.waiting and done.state.outcome == "dispatched"
    (home / "evidence" / done.state.case_number).mkdir(parents=True)
    (home / "evidence" / done.state.case_number / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    (home / "cache").mkdir()
    (home / "cache" / "big.npy").write_bytes(b"0" * 100)
    before = {n: store.get(n) for n in (done.state.case_number, held.state.case_number)}
    store.close()

    cli = [sys.executable, "-m", "app.cli", "--db", db_url, "db"]
    dest = tmp_path / "backup"
    res = subprocess.run([*cli, "backup", str(dest), "--json"], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads(res.stdout)
    assert manifest["counts"]["cases"] == 2 and manifest["counts"]["case_audit"] == 4 and manifest["counts"]["checkpoints"] >= 2
    assert "evidence" in manifest["files"]["top"] and "cache" in manifest["files"]["skipped"]

    # the disaster: the database and the files are gone
    if db_url.startswith("sqlite"):
        for p in tmp_path.glob("store.db*"):
            p.unlink()
    else:
        schema = db_url.rsplit("search_path%3D", 1)[1]
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
    import shutil

    shutil.rmtree(home)

    res = subprocess.run([*cli, "restore", str(dest), "--json"], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["restored"]["cases"] == 2
    assert (home / "evidence" / done.state.case_number / "a.jpg").read_bytes() == b"\xff\xd8jpeg"
    assert not (home / "cache").exists()
    store = Store(db_url, city)
    try:
        for n, case in before.items():
            assert store.get(n) == case  # every field, the evidence and the audit history
        pipe = Pipeline(store)
        assert pipe.state_of(done.state.case_number).state.outcome == "dispatched"
        assert [w.state.case_number for w in pipe.waiting()] == [held.state.case_number]  # the checkpoint came back
        r = pipe.resume(held.state.case_number, "approve", by="值班长", note="恢复后审核")
        assert r.state.outcome == "dispatched" and store.get(held.state.case_number).status is Status.DISPATCHED
        # the sequences came back too: new rows do not collide with restored ones
        assert store.create_case(NewCase(source="市民", code="06010", description="又一处垃圾", lat=29.5752, lon=106.5311)).number
    finally:
        store.close()
    # a store that holds cases is not overwritten without --force
    res = subprocess.run([*cli, "restore", str(dest)], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert res.returncode != 0 and "--force" in (res.stdout + res.stderr)
    res = subprocess.run([*cli, "restore", str(dest), "--force", "--no-files", "--json"], capture_output=True, text=True,
                         env=env, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["restored"]["cases"] == 2


# -- keyset pages and deep offsets ----------------------------------------------------------


def test_keyset_and_deep_offset_pages_equal_offset_paging(store, monkeypatch):
    """``Store.list(after=number)`` and the ids-first path for deep offsets give
    exactly the pages of plain LIMIT/OFFSET, ties on created_at included."""
    from datetime import datetime, timedelta, timezone

    from city.cases import CaseQuery
    from city.errors import NotFound

    t0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
    places = [(29.5751, 106.5301), (29.5578, 106.5751), (29.57, 106.55)]
    for i in range(23):  # three cases share each instant: the id breaks the tie
        lat, lon = places[i % 3]
        store.create_case(NewCase(source="市民" if i % 2 else "热线", code="06010", description=f"垃圾 {i}", lat=lat, lon=lon),
                          now=t0 + timedelta(minutes=i // 3))
    q = CaseQuery(limit=100)
    everything = [c.number for c in store.list(q)]
    assert len(everything) == 23
    pages, after = [], None
    while True:
        page = store.list(CaseQuery(limit=5), after=after)
        if not page:
            break
        pages.append([c.number for c in page])
        after = page[-1].number
    assert [n for p in pages for n in p] == everything and [len(p) for p in pages] == [5, 5, 5, 5, 3]
    citizen = [c.number for c in store.list(CaseQuery(source=Source.CITIZEN, limit=100))]
    assert [c.number for c in store.list(CaseQuery(source=Source.CITIZEN, limit=100), after=citizen[3])] == citizen[4:]
    monkeypatch.setattr(Store, "DEEP_OFFSET", 2)  # the ids-first path from offset 2 on
    for offset in (0, 2, 7, 20, 23):
        assert [c.number for c in store.list(CaseQuery(limit=4, offset=offset))] == everything[offset:offset + 4]
    assert [c.number for c in store.list(CaseQuery(limit=4, offset=3), after=everything[5])] == everything[9:13]
    assert store.count(CaseQuery(source=Source.CITIZEN)) == len(citizen) == 11
    with pytest.raises(NotFound):
        store.list(CaseQuery(), after="nope")
