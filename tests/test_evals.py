"""The offline eval runner: suites, metrics, runs stored and compared, reports, ``--check``."""

from __future__ import annotations

import json
import re
import time

import pytest
import typer
from fake_openai import Reply
from typer.testing import CliRunner

from app.cli.evals import app as eval_app
from evals.check import violations
from evals.report import flips, write_compare_report, write_run_report
from evals.runner import new_run_id, run_suite
from evals.storage import EvalStore
from evals.suites import list_suites, load_suite, load_suite_file
from evals.tasks.triage import ItemOutput, compute, confusion, result_of

JB = (29.5728, 106.5372)  # 江北区: 06010 → JB-HW


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XUNJIAN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XUNJIAN_EVALS_DB", raising=False)
    monkeypatch.delenv("XUNJIAN_CITY_DATA", raising=False)
    return tmp_path / "home"


def cli(*args: str):
    main = typer.Typer()
    main.add_typer(eval_app, name="eval")
    return CliRunner().invoke(main, ["eval", *args], env={"COLUMNS": "200"})


def _item(i: int, text: str, code, urgency, dept, alternatives=()):
    lat, lon = JB
    return {"id": f"tr-{i:04d}", "source": "市民", "text": text, "address": "", "lat": lat, "lon": lon,
            "context": None, "owner": None, "style": "colloquial", "tags": ["emoji"] if i == 4 else [],
            "notes": "hand-made test item",
            "expected": {"code": code, "kind": code and "事件", "department_id": dept, "urgency": urgency,
                         "alternatives": list(alternatives), "no_owner": False, "injection": False}}


@pytest.fixture
def tiny_suite(tmp_path, city):
    """Four items with known offline answers: right, right only in top-3, abstention, wrong urgency."""
    def dept(code):
        return city.route(city.catalogue.get(code, "事件"), *JB, None, None).department_id

    rows = [
        _item(1, "人行道上堆了一大堆生活垃圾", "06010", "一般", dept("06010")),
        _item(2, "路边的垃圾桶满了，垃圾散了一地", "03005", "一般", dept("03005")),  # offline: 06042, 03005 2nd
        _item(3, "我想问一下医保报销比例是多少", None, None, None),  # not a city issue: abstain
        _item(4, "路灯不亮了，晚上黑漆漆的", "01037", "紧急", dept("01037")),  # offline says 一般
    ]
    data = tmp_path / "tiny.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    path = tmp_path / "tiny.yaml"
    path.write_text(f"name: tiny\ntask: triage\ndatasets: ['{data}']\nmetrics: [top1, top3]\n"
                    "thresholds:\n  top1: {min: 0.7, max_drop: 0.1}\n", encoding="utf-8")
    return path


# -- suites ---------------------------------------------------------------------------


def test_bundled_suites_validate():
    names = {s.name: s for s in list_suites()}
    assert {"triage", "route"} <= set(names)
    for s in names.values():
        if s.fast:
            assert not s.missing_datasets()  # the fast (CI) suites use only the project's own data
    assert names["triage"].thresholds["top1"].min is not None


def test_suite_with_unknown_metric_is_refused(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\ntask: triage\ndatasets: [x.jsonl]\nmetrics: [accuracy]\n", encoding="utf-8")
    with pytest.raises(Exception, match="unknown metric 'accuracy'"):
        load_suite_file(p)
    with pytest.raises(Exception, match="没有评测套件"):
        load_suite("nope")


# -- metrics --------------------------------------------------------------------------


def _result(i, expected: dict, **out):
    return result_of(f"x{i}", "t", [], expected, ItemOutput(**out))


def test_metrics_on_hand_made_results():
    def exp(code, dept, alts=(), urgency="一般"):
        return {"code": code, "department_id": dept, "urgency": urgency if code else None, "alternatives": list(alts)}

    rs = [
        _result(1, exp("06010", "JB-HW"), code="06010", candidates=["06010", "06011", "06012"], urgency="一般", department_id="JB-HW"),
        _result(2, exp("06013", "JB-SZ", ["91001"]), code="91001", candidates=["91001"], urgency="紧急", department_id="JB-ZF"),
        _result(3, exp("06042", "JB-HW"), code="06010", candidates=["06010", "06042"], urgency="一般", department_id="JB-HW"),
        _result(4, exp(None, None), code=None, candidates=["01040"], urgency="一般"),
        _result(5, exp("09006", "YZ-ZF"), code=None, candidates=[], urgency="一般"),
    ]
    assert [r.ok for r in rs] == [True, True, False, True, False]  # 2: an accepted alternative
    assert [r.flags["top3_ok"] for r in rs] == [True, True, True, True, False]
    m = compute(rs)
    assert m["top1"] == pytest.approx(3 / 5)
    assert m["top3"] == pytest.approx(4 / 5)
    # F1 per label: 06010 2/3, 06013 1, 06042 0, none 2/3, 09006 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0 + 2 / 3 + 0) / 5)
    assert m["urgency_acc"] == pytest.approx(3 / 4)
    assert m["abstain_precision"] == pytest.approx(1 / 2)
    assert m["abstain_recall"] == pytest.approx(1.0)
    assert m["dept_acc"] == pytest.approx(2 / 4)
    assert m["no_owner_acc"] is None  # nothing to measure
    labels, matrix = confusion(rs, top=2)
    assert len(labels) == 3 and sum(map(sum, matrix)) == 5


def test_tiny_dataset_end_to_end(tiny_suite):
    run = run_suite(load_suite(str(tiny_suite)))
    by_id = {r.item_id: r for r in run.results}
    assert [by_id[f"tr-{i:04d}"].ok for i in (1, 2, 3, 4)] == [True, False, True, True]
    assert by_id["tr-0002"].flags["top3_ok"] and by_id["tr-0003"].output["code"] is None
    m = run.info.metrics
    assert m["top1"] == pytest.approx(3 / 4) and m["top3"] == pytest.approx(1.0)
    assert m["urgency_acc"] == pytest.approx(2 / 3)
    assert m["abstain_precision"] == 1.0 and m["abstain_recall"] == 1.0
    assert m["dept_acc_given_code"] == 1.0
    assert all(r.latency_ms > 0 and r.prompt_tokens == 0 for r in run.results)


# -- full runs and storage --------------------------------------------------------------


def test_offline_limit_run_and_storage_round_trip(tmp_path):
    suite = load_suite("route")
    run = run_suite(suite, limit=25)
    assert run.info.items == 25 and run.info.item_limit == 25 and run.info.backend == "offline"
    assert re.fullmatch(r"route-\d{8}-\d{4}-[0-9a-f]{4}", run.info.id)
    assert len(run.info.dataset_sha256) == 64 and run.info.prompt_version and run.info.rules_version
    st = EvalStore(tmp_path / "evals.db")
    st.save(run)
    back = st.get(run.info.id[:-2])  # a unique prefix resolves
    assert back.info == run.info
    assert back.results == run.results
    assert st.resolve("baseline", suite="route") == run.info.id
    assert [r.id for r in st.runs()] == [run.info.id]


def test_full_offline_triage_suite_is_fast_and_meets_its_thresholds():
    suite = load_suite("triage")
    t0 = time.perf_counter()
    run = run_suite(suite)
    elapsed = time.perf_counter() - t0
    assert run.info.items == 424
    assert elapsed < 60, f"full offline run took {elapsed:.1f} s"
    assert not [r for r in run.results if r.error]
    assert violations(run.info, suite) == []  # the bundled thresholds hold for the offline baseline
    assert violations(run.info, load_suite("route")) == []


# -- compare, reports, check --------------------------------------------------------------


def _flipped_copy(run, item_id: str):
    """The same run with one right item turned wrong (as a later, worse run)."""
    b = run.model_copy(deep=True)
    b.info.id = new_run_id(run.info.suite) + "b"
    for r in b.results:
        if r.item_id == item_id:
            r.output["code"], r.ok = "99999", False
            r.flags.update(code_ok=False, top3_ok=False)
    b.info.metrics = compute(b.results)
    return b


def test_compare_shows_flipped_items_and_check_fails_on_regression(home, tiny_suite):
    res = cli("run", str(tiny_suite), "--check")
    assert res.exit_code == 0, res.output
    assert "检查通过" in res.output
    st = EvalStore()
    a = st.get("latest")
    b = _flipped_copy(a, "tr-0001")
    st.save(b)
    worse, better = flips(a, b)
    assert [f.item_id for f in worse] == ["tr-0001"] and better == []
    res = cli("compare", a.info.id, b.info.id)
    assert res.exit_code == 0, res.output
    assert "由对变错 1 条" in res.output and "tr-0001" in res.output
    html = (home / "evals" / f"{a.info.id}-vs-{b.info.id}" / "report.html").read_text(encoding="utf-8")
    assert "tr-0001" in html and "由对变错" in html
    # top1 fell from 0.75 to 0.5: below min 0.7 and more than max_drop 0.1
    res = cli("compare", a.info.id, b.info.id, "--check")
    assert res.exit_code == 1
    assert "top1" in res.output and "低于最低要求" in res.output and "超过允许" in res.output
    res = cli("compare", b.info.id, a.info.id, "--check")  # the better direction passes
    assert res.exit_code == 0, res.output


def test_check_fails_below_the_suite_minimum(home, tiny_suite):
    strict = tiny_suite.with_name("strict.yaml")
    strict.write_text(tiny_suite.read_text(encoding="utf-8").replace("name: tiny", "name: strict")
                      .replace("min: 0.7", "min: 0.9"), encoding="utf-8")
    res = cli("run", str(strict), "--check")
    assert res.exit_code == 1
    assert "top1 = 0.750 低于最低要求 0.900" in res.output
    res = cli("run", str(strict), "--check", "--against", "baseline")
    assert res.exit_code == 1
    res = cli("run", str(strict))  # without --check the run is stored and reported, exit 0
    assert res.exit_code == 0 and "报告：" in res.output


def test_cli_list_show_and_self_contained_html(home):
    res = cli("run", "triage", "--limit", "20")
    assert res.exit_code == 0, res.output
    run_id = re.search(r"(triage-\d{8}-\d{4}-[0-9a-f]{4})", res.output).group(1)
    folder = home / "evals" / run_id
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "<img" in html and "data:image/png;base64," in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the HTML must not load anything"
    assert "最差的失败" in html
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert md.startswith(f"# 评测运行 {run_id}") and "| `top1` |" in md
    res = cli("list")
    assert res.exit_code == 0 and run_id in res.output and "route" in res.output
    res = cli("show", run_id, "--json")
    assert res.exit_code == 0 and json.loads(res.output)["run"]["items"] == 20


def test_cli_db_option(tmp_path, home):
    db = tmp_path / "other.db"
    assert cli("--db", str(db), "run", "route", "--limit", "3").exit_code == 0
    assert len(EvalStore(db).runs()) == 1
    assert EvalStore().runs() == []


def test_unknown_backend_is_refused(tiny_suite):
    with pytest.raises(Exception, match="未知后端"):
        run_suite(load_suite(str(tiny_suite)), backend="gpt")


# -- an LLM backend on the fake OpenAI-compatible server ------------------------------------


def test_openai_backend_on_the_fake_server_records_tokens(fake_llm, tiny_suite):
    choice = {"choice": 1, "code": "06010", "kind": "事件", "confidence": 0.9, "urgency": "一般", "reason": "垃圾"}
    fake_llm.script(*[Reply.json(choice)] * 40)
    run = run_suite(load_suite(str(tiny_suite)), backend="openai:fake-model", config=fake_llm.config(backoff_s=0.0))
    assert run.info.backend == "openai" and run.info.model == "fake-model"
    assert fake_llm.requests, "the LLM was never asked"
    assert run.info.prompt_tokens > 0 and run.info.completion_tokens > 0
    first = next(r for r in run.results if r.item_id == "tr-0001")
    assert first.output["code"] == "06010" and first.prompt_tokens > 0
    assert sum(r.prompt_tokens for r in run.results) == run.info.prompt_tokens
    path = write_run_report(run, folder=tiny_suite.parent / "llm-report")
    assert path.exists()


def test_compare_report_writes_markdown(tmp_path, tiny_suite):
    a = run_suite(load_suite(str(tiny_suite)))
    b = _flipped_copy(a, "tr-0004")
    path = write_compare_report(a, b, folder=tmp_path / "cmp")
    md = (tmp_path / "cmp" / "report.md").read_text(encoding="utf-8")
    assert path.exists() and "由对变错（1）" in md and "tr-0004" in md


def test_fast_suites_pass_their_checks(home):
    """The CI gate: every suite marked fast, offline, with --check."""
    res = cli("run", "--fast", "--check")
    assert res.exit_code == 0, res.output
    assert "检查通过" in res.output


def test_a_suite_without_its_shared_data_is_skipped(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XUNJIAN_DATASETS", str(tmp_path / "none"))
    p = tmp_path / "shared.yaml"
    p.write_text("name: shared-x\ntask: triage\ndatasets: ['shared:complaints/x.jsonl']\nmetrics: [top1]\n", encoding="utf-8")
    res = cli("run", str(p))
    assert res.exit_code == 0 and "跳过" in res.output and "x.jsonl" in res.output


def test_cost_from_the_price_table():
    from evals.runner import Price, cost_of

    prices = {"qwen-plus*": Price(input=0.8, output=2.0), "deepseek-chat": Price(input=2.0, output=8.0)}
    assert cost_of("openai", "qwen-plus-latest", 1_000_000, 500_000, prices) == pytest.approx(1.8)
    assert cost_of("openai", "deepseek-chat", 1000, 1000, prices) == pytest.approx(0.01)
    assert cost_of("openai", "unknown-model", 1000, 1000, prices) is None  # no price: unknown, not zero
    assert cost_of("local", "qwen2.5-coder-1.5b", 1000, 1000, prices) == 0.0
    assert cost_of("offline", None, 0, 0, prices) == 0.0


def test_an_llm_run_is_reported_beside_the_offline_baseline(home, tiny_suite, fake_llm):
    assert cli("run", str(tiny_suite)).exit_code == 0  # the offline baseline
    choice = {"choice": 1, "code": "06010", "kind": "事件", "confidence": 0.9, "urgency": "一般", "reason": "垃圾"}
    fake_llm.script(*[Reply.json(choice)] * 40)
    run = run_suite(load_suite(str(tiny_suite)), backend="openai:fake-model", config=fake_llm.config(backoff_s=0.0))
    st = EvalStore()
    st.save(run)
    base = st.get("baseline").info
    path = write_run_report(run, baseline=base)
    html = path.read_text(encoding="utf-8")
    assert f"离线基线 {base.id}" in html and "每条 tokens" in html
    md = path.with_suffix(".md").read_text(encoding="utf-8")
    assert f"| 指标 | 说明 | 本次（openai） | 离线基线 {base.id} | 阈值 |" in md
