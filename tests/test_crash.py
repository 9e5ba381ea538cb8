"""Crash safety: a writer process killed with SIGKILL in the middle of its work
leaves a consistent store (SQLite file and PostgreSQL schema), and work goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select, text

from city.lifecycle import WITH_DEPARTMENT, Action, Status, transition
from city.store import Store
from city.store.schema import AuditRow, CaseRow, CounterRow, EvidenceRow

pytestmark = pytest.mark.slow

WRITER = Path(__file__).with_name("crash_writer.py")
ROOT = WRITER.parent.parent
CREATED = {"上报", "发现"}
NOT_A_TRANSITION = {"补充证据"}  # audited, status unchanged


def start_writer(url: str, progress: Path, log: Path, *, seed: int, ops: int = 0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with log.open("ab") as err:
        return subprocess.Popen([sys.executable, str(WRITER), url, str(progress), "--seed", str(seed), "--ops", str(ops)],
                                cwd=ROOT, env=env, stdout=err, stderr=subprocess.STDOUT)


def lines(progress: Path) -> int:
    try:
        return progress.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill_after(proc: subprocess.Popen, progress: Path, log: Path, done: int, timeout: float = 60) -> int:
    """SIGKILL the writer once ``progress`` has ``done`` more committed operations."""
    target = lines(progress) + done
    deadline = time.monotonic() + timeout
    while lines(progress) < target:
        if proc.poll() is not None:
            pytest.fail(f"writer exited early with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"writer made no progress in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    return lines(progress)


def check_invariants(url: str, city) -> dict:
    """Open the store as a new process would and check what a crash must never break."""
    store = Store(url, city)
    try:
        with store.reading() as s:
            if store.dialect == "sqlite":
                assert s.execute(text("PRAGMA integrity_check")).scalars().all() == ["ok"]
                assert s.execute(text("PRAGMA foreign_key_check")).all() == []
            cases = s.execute(select(CaseRow)).scalars().all()
            audit = s.execute(select(AuditRow).order_by(AuditRow.id)).scalars().all()
            counters = {(c.scope, c.day): c.last for c in s.execute(select(CounterRow)).scalars()}
            case_ids = {c.id for c in cases}
            orphans = [e.id for e in s.execute(select(EvidenceRow)).scalars() if e.case_id not in case_ids]
        assert orphans == []
        by_case = defaultdict(list)
        for row in audit:
            by_case[row.case_id].append(row)
        assert set(by_case) <= case_ids, "audit rows of cases that do not exist"

        for case in cases:
            chain = by_case[case.id]
            assert chain, f"{case.number} has no audit row"
            first = chain[0]
            assert first.action in CREATED and first.from_status is None and first.to_status == Status.REPORTED.value
            for prev, row in zip(chain, chain[1:]):
                assert row.action not in CREATED, f"{case.number} created twice"
                assert row.from_status == prev.to_status, f"{case.number}: broken chain at audit row {row.id}"
                if row.action in NOT_A_TRANSITION:
                    assert row.to_status == row.from_status
                else:  # the log holds only legal transitions
                    to = transition(Status(row.from_status), Action(row.action), row.note)
                    assert row.to_status == to.value, f"{case.number}: audit row {row.id} is not a legal transition"
            assert case.status == chain[-1].to_status, f"{case.number}: status {case.status} but audit says {chain[-1].to_status}"
            if Status(case.status) in WITH_DEPARTMENT:
                assert case.department_id and case.deadline, f"{case.number} is held by nobody"
            if case.status == Status.FILED.value and chain[-1].action == Action.RETURN.value:
                assert case.department_id is None
            assert case.rework_count == sum(r.action == Action.FAIL.value for r in chain)

        numbers = [c.number for c in cases]
        assert len(numbers) == len(set(numbers))
        used = defaultdict(int)
        for n in numbers:
            scope, day, seq = n.split("-")
            used[(scope, day)] = max(used[(scope, day)], int(seq))
        for key, top in used.items():
            assert counters.get(key, 0) >= top, f"counter {key} = {counters.get(key)} is behind case number {top}"
        externals = [c.external_id for c in cases if c.external_id]
        assert len(externals) == len(set(externals))
        return {"cases": len(cases), "audit": len(audit)}
    finally:
        store.close()


def test_writer_killed_mid_run_leaves_a_consistent_store(db_url, city, tmp_path):
    log = tmp_path / "writer.log"
    Store(db_url, city).close()  # migrate once, so the writers start on the same schema

    # 1. kill a writer mid-run, twice, at different points of its work
    for seed, done in ((1, 40), (2, 25)):
        progress = tmp_path / f"progress-{seed}.txt"
        proc = start_writer(db_url, progress, log, seed=seed)
        kill_after(proc, progress, log, done)
        stats = check_invariants(db_url, city)
        assert stats["cases"] > 0 and stats["audit"] >= stats["cases"]

    # 2. a new writer carries on on the same database (incl. cases left mid-lifecycle)
    before = check_invariants(db_url, city)
    progress = tmp_path / "progress-3.txt"
    proc = start_writer(db_url, progress, log, seed=3, ops=30)
    try:
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, log.read_text(errors="replace")[-3000:]
    ops = progress.read_text(encoding="utf-8").splitlines()
    assert len(ops) == 30
    after = check_invariants(db_url, city)
    # every operation wrote one audit row, except a create that gave back an existing case
    new_cases = after["cases"] - before["cases"]
    assert after["audit"] - before["audit"] == sum(not op.split()[1] == "create" for op in ops) + new_cases
