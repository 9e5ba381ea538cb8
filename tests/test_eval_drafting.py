"""The drafting eval task: each check on hand-made drafts, a real offline run, the shared-data part."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fake_openai import Reply

from agents.llm import LLMClient
from evals.dataset import MAIN_PATH
from evals.results import RunOptions
from evals.tasks import drafting

NUMBER = "500105-20261124-0001"
GOOD = (f"您好！您反映的江北区观音桥街道的“暴露垃圾”问题已受理，案件编号：{NUMBER}。已按职责交江北区环境卫生管理所办理，"
        "处置时限为1工作日。承办单位将到现场核实处置，感谢您对城市管理工作的支持！")


def flags(text, **kw):
    return drafting.check_reply_text(text, number=NUMBER, time_limit="1工作日", reporter_name="张伟",
                                     reporter_phone="13912345678", **kw)


def test_a_good_reply_passes_every_check():
    assert all(flags(GOOD).values())


def test_each_reply_check_fails_on_its_own_fault():
    assert flags(GOOD.replace(NUMBER, "（编号略）"))["reply_has_number"] is False
    assert flags(GOOD.replace("1工作日", "尽快"))["reply_time_limit"] is False
    assert flags(GOOD.replace("您好！", "").replace("感谢您对城市管理工作的支持！", ""))["reply_polite"] is False
    assert flags(GOOD + "我们保证马上解决。")["reply_no_overpromise"] is False
    assert flags(GOOD + "如有疑问请联系13912345678。")["reply_no_pii"] is False
    assert flags(GOOD + "张伟同志您好。")["reply_no_pii"] is False
    assert flags(GOOD + "身份证500105199001011234")["reply_no_pii"] is False
    assert flags(GOOD + "另一位市民的电话15023456789")["reply_no_pii"] is False
    assert flags(GOOD + "139****5678 已脱敏")["reply_no_pii"] is True
    assert flags("您好，感谢。" + NUMBER)["reply_length"] is False
    assert flags(GOOD * 3)["reply_length"] is False
    assert flags(GOOD, kind="closure")["reply_time_limit"] is None  # a closure reply states no limit


def test_record_checks_find_invented_places_times_and_departments(city):
    base = {f: "x" for f in drafting.RECORD_FIELDS + drafting.LOCATED_FIELDS}
    base.update(department_id="JB-HW", department_name="江北区环境卫生管理所", code="06010",
                description="市民反映：江北区 观音桥街道，暴露垃圾。原始描述：步行街垃圾很多")
    kw = {"text": "步行街垃圾很多", "address": "", "located": ["江北区", "观音桥街道"], "times": [],
              "department_id": "JB-HW", "department_name": "江北区环境卫生管理所", "code": "06010",
              "known_places": drafting.jurisdiction_names(city), "lat": 29.575, "vocabulary": ["暴露垃圾"]}
    ok = drafting.check_record(base, **kw)
    assert not ok["missing"] and not ok["invented_places"] and not ok["invented_times"] and ok["department_ok"]
    assert drafting.check_record({**base, "description": None}, **kw)["missing"] == ["description"]
    other = next(n for n in drafting.jurisdiction_names(city) if n.endswith("街道") and n != "观音桥街道")
    assert other in drafting.check_record({**base, "description": base["description"] + other}, **kw)["invented_places"]
    assert drafting.check_record({**base, "description": "建新东路垃圾"}, **kw)["invented_places"]
    assert drafting.check_record({**base, "description": "11月3日起垃圾很多"}, **kw)["invented_times"] == ["11月3日"]
    t = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    assert not drafting.check_record({**base, "description": "11月3日起垃圾很多"}, **{**kw, "times": [t]})["invented_times"]
    assert drafting.check_record({**base, "department_id": "YZ-SZ"}, **kw)["department_ok"] is False


def test_reply_dates_are_checked_in_local_time():
    from zoneinfo import ZoneInfo

    t = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # 11月24日 in Chongqing
    tz = ZoneInfo("Asia/Shanghai")
    assert drafting.reply_dates_local("您于11月24日反映的问题", [t], tz)
    assert not drafting.reply_dates_local("您于11月23日反映的问题", [t], tz)


def test_offline_run_on_a_few_items(city):
    opts = RunOptions(run_id="t", datasets=[MAIN_PATH], limit=4, city=city, options={"official_n": 0})
    run = drafting.run(None, opts)
    assert len(run.results) == 4 and all(r.error is None for r in run.results)
    m = drafting.compute(run.results, run.extra)
    assert set(m) == set(drafting.METRICS)
    assert m["record_complete"] == 1.0 and m["reply_ok"] == 1.0 and m["reply_no_pii"] == 1.0
    assert m["judge_score"] is None and m["official_len_ratio"] is None
    r = run.results[0]
    assert r.output["case_number"] in r.output["replies"]["ack"] and "closure" in r.output["replies"]
    assert drafting.tables(run.results, run.extra) is not None


def test_official_replies_skip_with_a_note_when_absent(city, tmp_path):
    opts = RunOptions(run_id="t", datasets=[MAIN_PATH], limit=1, city=city,
                      options={"official_replies": str(tmp_path / "absent.jsonl")})
    run = drafting.run(None, opts)
    assert any("不存在" in n for n in run.notes) and "official" not in run.extra


SHARED = Path(os.environ.get("XUNJIAN_DATASETS") or Path(__file__).resolve().parents[2] / "shared" / "datasets")
REPLIES = SHARED / "complaints" / "tipdm2020_fj4_replies.jsonl"


@pytest.mark.skipif(not REPLIES.exists(), reason=f"shared dataset absent: {REPLIES} (set XUNJIAN_DATASETS)")
def test_official_reply_comparison(city):
    opts = RunOptions(run_id="t", datasets=[MAIN_PATH], limit=5, city=city,
                      options={"official_replies": "shared:complaints/tipdm2020_fj4_replies.jsonl", "official_n": 5})
    run = drafting.run(None, opts)
    assert len(run.extra["official"]) == 5
    m = drafting.compute(run.results, run.extra)
    assert 0 < m["official_len_ratio"] < 5 and 0 <= m["official_marker_overlap"] <= 1


def test_complaint_points(city):
    indep, shared = drafting.complaint_points("建新北路垃圾桶满溢，臭气熏天", "关于建新北路垃圾桶满溢的问题已处理", city.catalogue)
    assert "建新北路" in indep and any("满溢" in s or "满溢" in i for s in shared for i in indep)


def test_judge_against_the_fake_server(fake_llm):
    fake_llm.script(Reply.json({"score": 5, "reason": "礼貌完整"}))
    assert drafting.judge(LLMClient(fake_llm.config()), GOOD, "编号", "C1") == 1.0


def test_run_with_the_judge_on_the_fake_server(fake_llm, city):
    fake_llm.script(*[Reply.json({"score": 4, "reason": "好"}) for _ in range(4)])
    opts = RunOptions(run_id="t", datasets=[MAIN_PATH], limit=2, city=city, backend="openai:fake-model",
                      llm_config=fake_llm.config(), options={"official_n": 0})
    run = drafting.run(None, opts)
    assert drafting.compute(run.results, run.extra)["judge_score"] == 0.75
