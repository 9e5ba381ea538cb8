"""``xunjian serve`` as a real process, the first admin, and ``xunjian users``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from live_server import free_port
from typer.testing import CliRunner

from app.cli import app

XUNJIAN = Path(sys.executable).with_name("xunjian")


def _wait(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"xunjian serve exited: {proc.stdout.read()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError("xunjian serve did not answer")


@pytest.mark.slow
def test_serve_creates_the_first_admin_once_and_answers(tmp_path):
    port = free_port()
    env = {**os.environ, "XUNJIAN_HOME": str(tmp_path), "XUNJIAN_DB_URL": f"sqlite:///{tmp_path / 'x.db'}",
           "XUNJIAN_LLM_BACKEND": "offline", "COLUMNS": "200"}
    env.pop("XUNJIAN_ADMIN_PASSWORD", None)
    url = f"http://127.0.0.1:{port}"

    def run() -> tuple[str, str | None]:
        proc = subprocess.Popen([str(XUNJIAN), "serve", "--port", str(port), "--sla-every", "1m"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            _wait(f"{url}/api/auth/me", proc)
            login = None
            if m := re.search(r"已创建管理员 admin，密码 (\S+)（", proc.stdout.readline() + proc.stdout.readline()
                              + proc.stdout.readline() + proc.stdout.readline()):
                login = m.group(1)
            return url, login
        finally:
            proc.terminate()
            proc.wait(10)

    _, password = run()
    assert password, "the generated password is printed on the first run"
    _, again = run()
    assert again is None  # never a second admin, never the password again
    # the admin can sign in with the printed password (the store persists)
    proc = subprocess.Popen([str(XUNJIAN), "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait(f"{url}/api/auth/me", proc)
        r = httpx.post(f"{url}/api/auth/login", json={"name": "admin", "password": password})
        assert r.status_code == 200 and r.json()["user"]["role"] == "admin"
        assert httpx.get(f"{url}/openapi.json").json()["info"]["title"] == "巡检 xunjian API"
    finally:
        proc.terminate()
        proc.wait(10)


def test_first_admin_takes_the_password_from_the_environment(tmp_path, monkeypatch, city):
    from app.cli.serve import first_admin
    from city.store import Store

    monkeypatch.setenv("XUNJIAN_ADMIN_USER", "值班长")
    monkeypatch.setenv("XUNJIAN_ADMIN_PASSWORD", "from-the-env-1")
    st = Store(f"sqlite:///{tmp_path / 'a.db'}", city)
    assert first_admin(st) == ("值班长", None)
    assert first_admin(st) is None
    assert st.login("值班长", "from-the-env-1")[0].role.value == "admin"


def test_users_cli_adds_lists_keys_and_disables(tmp_path, monkeypatch):
    monkeypatch.setenv("XUNJIAN_HOME", str(tmp_path))
    monkeypatch.setenv("XUNJIAN_DB_URL", f"sqlite:///{tmp_path / 'u.db'}")
    runner = CliRunner()
    r = runner.invoke(app, ["users", "add", "环卫李四", "--role", "department", "--dept", "JB-HW", "--password", "pass-word-1"])
    assert r.exit_code == 0, r.output
    assert "环卫李四" in runner.invoke(app, ["users", "list"]).output
    bad = runner.invoke(app, ["users", "add", "某人", "--role", "boss", "--password", "pass-word-1"])
    assert bad.exit_code != 0
    key = runner.invoke(app, ["users", "key", "12345热线"])
    assert key.exit_code == 0 and "API key" in key.output
    assert runner.invoke(app, ["users", "disable", "环卫李四"]).exit_code == 0
    assert "环卫李四" not in runner.invoke(app, ["users", "list"]).output


def test_serve_engine_option_is_checked_before_anything_starts(tmp_path, monkeypatch):
    from app.api.ingest import engine_options
    from city.errors import InvalidInput

    monkeypatch.setenv("XUNJIAN_HOME", str(tmp_path))
    monkeypatch.setenv("XUNJIAN_DB_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.delenv("XUNJIAN_INGEST_ENGINE", raising=False)
    assert engine_options() == {"engine": "local"}
    monkeypatch.setenv("XUNJIAN_INGEST_ENGINE", "Spark")
    with pytest.raises(InvalidInput, match="local 或 ray.*XUNJIAN_INGEST_ENGINE"):
        engine_options()
    with pytest.raises(InvalidInput, match="只用于 --engine ray"):
        engine_options("local", "10.0.0.1:6379")
    r = CliRunner().invoke(app, ["serve", "--engine", "spark", "--port", str(free_port())])
    assert r.exit_code == 2 and "local 或 ray" in r.output
    assert not (tmp_path / "x.db").exists()  # refused before the store was opened
