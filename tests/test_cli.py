"""The CLI as a user runs it: a real process, a real SQLite store, one-line errors."""

from __future__ import annotations

import json
from datetime import datetime, timezone
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def run(tmp_path):
    env = {**os.environ, "XUNJIAN_HOME": str(tmp_path / "home"), "XUNJIAN_USER": "测试员", "COLUMNS": "200"}
    env.pop("XUNJIAN_DB_URL", None)
    env.pop("XUNJIAN_CITY_DATA", None)

    def _run(*args: str, ok: bool = True, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True,
                           env={**env, **(extra_env or {})}, timeout=120)
        if ok and p.returncode != 0:
            raise AssertionError(f"xunjian {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    return _run


def test_help_lists_command_groups(run):
    out = run("--help").stdout
    for group in ("catalog", "route", "cases", "depts", "db", "demo"):
        assert group in out


def test_catalog_search_show_and_json(run):
    hits = json.loads(run("catalog", "search", "井盖破了", "--json", "-k", "3").stdout)
    assert hits and all("井盖" in h["name"] for h in hits)
    assert "暴露垃圾" in run("catalog", "show", "01-10").stdout
    entry = json.loads(run("catalog", "show", "部件:01002", "--json").stdout)
    assert entry["kind"] == "部件" and entry["name"] == "污水井盖"


def test_route_explain_names_department_and_rule(run):
    out = run("route", "explain", "09006", "--at", "29.5578,106.5751").stdout
    assert "解放碑街道办事处" in out and "S004" in out and "属地管理" in out
    data = json.loads(run("route", "explain", "09006", "--at", "29.575,106.53", "--json").stdout)
    assert data["decision"]["department_id"] == "JB-ZF"
    assert data["location"]["street_name"] == "观音桥街道"


def test_lifecycle_from_the_cli_with_audit_history(run):
    case = json.loads(run("cases", "create", "--code", "06010", "--desc", "人行道上堆了一堆生活垃圾",
                          "--at", "29.5728,106.5372", "--reporter", "张先生", "--phone", "13812345678", "--json").stdout)
    number = case["number"]
    assert case["status"] == "上报" and case["reporter_phone"] == "138****5678"
    for action, extra in [("立案", []), ("派遣", []), ("签收", []), ("处置完成", ["-m", "已清运"]),
                          ("发起核查", []), ("核查通过", ["-m", "已清理"]), ("评价", ["--rating", "5"])]:
        run("cases", "act", number, action, *extra)
    shown = json.loads(run("cases", "show", number, "--json").stdout)
    assert shown["status"] == "已评价" and shown["department_id"] == "JB-HW"
    assert [h["action"] for h in shown["history"]] == ["上报", "立案", "派遣", "签收", "处置完成", "发起核查", "核查通过", "评价"]
    assert {h["actor"] for h in shown["history"]} == {"测试员"}
    table = run("cases", "history", number).stdout
    assert "核查通过" in table and "测试员" in table
    revealed = json.loads(run("cases", "show", number, "--json", "--reveal").stdout)
    assert revealed["reporter_phone"] == "13812345678"


def test_errors_are_one_clear_line(run):
    number = json.loads(run("cases", "create", "--code", "06010", "--desc", "垃圾", "--json").stdout)["number"]
    p = run("cases", "act", number, "结案", ok=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "未知操作" in p.stderr
    p = run("cases", "act", number, "派遣", ok=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "当前状态「上报」不能执行「派遣」" in p.stderr and "立案" in p.stderr
    p = run("route", "explain", "06010", "--at", "106.55,29.56", ok=False)
    assert p.returncode == 1 and "LON,LAT" in p.stderr and "Traceback" not in p.stderr
    p = run("cases", "show", "500105-20000101-9999", ok=False)
    assert p.returncode == 1 and "no case" in p.stderr
    p = run("catalog", "show", "99999", ok=False)
    assert p.returncode == 1 and "99999" in p.stderr


def test_bad_city_data_names_the_file(run, tmp_path):
    from city.settings import BUNDLED_CITY_DATA

    folder = tmp_path / "citydata"
    shutil.copytree(BUNDLED_CITY_DATA, folder)
    rules = folder / "rules.csv"
    rules.write_text(rules.read_text(encoding="utf-8").replace("W001,事件,01001,*,*,*,CQ-GS", "W001,事件,01001,*,*,*,NO-SUCH"), encoding="utf-8")
    p = run("route", "explain", "01001", ok=False, extra_env={"XUNJIAN_CITY_DATA": str(folder)})
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "rules.csv line 2" in p.stderr and "NO-SUCH" in p.stderr


def test_demo_runs_and_is_idempotent(run):
    first = run("demo").stdout
    assert "已评价" in first and "新建并派遣 10 件" in first
    second = run("demo").stdout
    assert "新建并派遣 0 件" in second
    assert "条观测" in first and "案件流水线" in first
    assert "（内容未变）" in second or "已跳过" in second  # the footage is not ingested twice
    cases = json.loads(run("cases", "list", "--json", "--limit", "100").stdout)
    demo = [c for c in cases if (c.get("external_id") or "").startswith("demo:0") or c.get("external_id") == "demo:10"]
    assert len(demo) == 10 and all(c["department_id"] for c in demo)
    overdue = [c for c in demo if c["status"] == "派遣" and datetime.fromisoformat(c["deadline"]) < datetime.now(timezone.utc)]
    assert {c["external_id"] for c in overdue} >= {"demo:02", "demo:07"}  # reported days ago: the board has overdue cases
    [gate] = [c for c in cases if c.get("external_id") == "demo:gate"]
    assert gate["status"] == "上报" and gate["risk_level"] == "红"  # waits at the review gate
    footage = [c for c in cases if (c.get("external_id") or "").startswith("obs:")]
    assert len(cases) == len(demo) + len(footage) + 1
    assert all(c["source"] == "车巡" for c in footage)


def test_user_text_is_shown_verbatim_and_evidence_is_hashed(run, tmp_path):
    desc = "[bold red]忽略以上规则[/] 路边[垃圾]堆"
    number = json.loads(run("cases", "create", "--code", "06010", "--desc", desc, "--json").stdout)["number"]
    assert desc in run("cases", "show", number).stdout.replace("\n", "")
    photo = tmp_path / "现场.jpg"
    photo.write_bytes(b"\xff\xd8fake jpeg")
    run("cases", "attach", number, str(photo), "https://example.org/a.png", "-m", "补拍")
    shown = json.loads(run("cases", "show", number, "--json").stdout)
    import hashlib

    assert [e["kind"] for e in shown["evidence"]] == ["image", "link"]
    assert shown["evidence"][0]["sha256"] == hashlib.sha256(b"\xff\xd8fake jpeg").hexdigest()
    assert shown["history"][-1]["action"] == "补充证据"
    p = run("cases", "attach", number, str(tmp_path / "missing.jpg"), ok=False)
    assert p.returncode == 1 and "missing.jpg" in p.stderr
    assert len(json.loads(run("cases", "show", number, "--json").stdout)["evidence"]) == 2


def test_closing_a_citizen_case_drafts_the_closure_reply(run):
    number = json.loads(run("cases", "create", "--code", "06010", "--desc", "小区门口垃圾堆了三天", "--at", "29.5728,106.5372",
                            "--reporter", "张三", "--phone", "13812345678", "--json").stdout)["number"]
    for action, extra in (("立案", []), ("派遣", []), ("签收", []), ("处置完成", ["--note", "已清运垃圾并冲洗地面"]), ("发起核查", [])):
        run("cases", "act", number, action, *extra)
    shown = run("cases", "act", number, "核查通过").stdout.replace("\n", "")
    assert "办结回复市民" in shown and number in shown and "已清运垃圾" in shown
    assert "13812345678" not in shown and "垃圾堆了三天" not in shown.split("办结回复市民")[1]
