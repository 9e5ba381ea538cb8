"""The complaints eval task: sampling, metrics on hand-made results, an offline run, the shared data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fake_openai import Reply

from evals.results import Result, RunOptions
from evals.tasks import complaints

SHARED = Path(os.environ.get("XUNJIAN_DATASETS") or Path(__file__).resolve().parents[2] / "shared" / "datasets")
FILES = sorted((SHARED / "complaints").glob("*.jsonl")) if (SHARED / "complaints").exists() else []


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


TEXTS = ["观音桥步行街垃圾堆了一地没人清理", "建新北路井盖丢了，很危险", "我想咨询一下社保卡怎么补办",
         "小区门口占道经营，晚上烧烤油烟很大", "孩子上学的学区划分不合理"]


def test_sampling_takes_an_even_share_of_each_file(tmp_path):
    a = write(tmp_path / "a.jsonl", [{"id": f"a{i}", "title": "", "text": f"文本{i}"} for i in range(10)])
    b = write(tmp_path / "tipdm2020_fj2_x.jsonl", [{"id": f"b{i}", "text": f"文本{i}", "label": "城乡建设"} for i in range(3)])
    rows = complaints.load_texts([a, b], 7)
    assert len(rows) == 7 and sum(r["file"] == "a.jsonl" for r in rows) == 4
    assert {r["label"] for r in rows if r["file"] == "a.jsonl"} == {None}  # labels only from the TipDM sample
    assert rows[0]["id"] == "b0" and [r["id"] for r in rows if r["file"] == "a.jsonl"] == ["a0", "a2", "a5", "a7"]


def test_metrics_on_hand_made_results():
    def res(code, conf, inj=False, agree=None, label=None):
        return Result(item_id="x", ok=code is not None, expected={"label": label},
                      output={"code": code, "confidence": conf},
                      flags={"covered": code is not None, "injection": inj, "agree": agree})

    m = complaints.compute([res("06010", 0.9, agree=True, label="城乡建设"), res(None, 0.2, agree=False, label="教育文体"),
                            res("01002", 0.7, inj=True, agree=True)], {})
    assert m["coverage"] == pytest.approx(2 / 3) and m["abstention_rate"] == pytest.approx(1 / 3)
    assert m["mean_confidence"] == pytest.approx(0.8) and m["injection_flag_rate"] == pytest.approx(1 / 3)
    assert m["agreement"] == pytest.approx(2 / 3)
    assert m["coverage_city_labels"] == 1.0 and m["coverage_other_labels"] == 0.0


def test_offline_run_on_hand_made_complaints(tmp_path, city):
    data = write(tmp_path / "c.jsonl", [{"id": f"c{i}", "text": t} for i, t in enumerate(TEXTS)])
    run = complaints.run(None, RunOptions(run_id="t", datasets=[data, tmp_path / "absent.jsonl"], city=city))
    assert len(run.results) == 5 and any("不存在" in n for n in run.notes)
    m = complaints.compute(run.results, run.extra)
    assert 0.4 <= m["coverage"] <= 1.0 and m["agreement"] is None and m["injection_flag_rate"] == 0.0
    codes = {r.item_id: r.output["code"] for r in run.results}
    assert codes["c0"] is not None and codes["c2"] is None
    assert complaints.tables(run.results, run.extra)[0].rows


def test_llm_backend_compared_with_offline(tmp_path, city, fake_llm):
    fake_llm.script(*[Reply.json({"choice": 0, "code": "none", "confidence": 0.5, "urgency": "一般", "reason": "都不符合"})
                      for _ in range(5)])
    data = write(tmp_path / "c.jsonl", [{"id": f"c{i}", "text": t} for i, t in enumerate(TEXTS[:2])])
    run = complaints.run(None, RunOptions(run_id="t", datasets=[data], city=city, backend="openai:fake-model",
                                          llm_config=fake_llm.config(), options={"compare_backend": "offline"}))
    m = complaints.compute(run.results, run.extra)
    assert m["agreement"] is not None and all("compare" in r.output for r in run.results)


@pytest.mark.skipif(not FILES, reason=f"shared complaints datasets absent under {SHARED} (set XUNJIAN_DATASETS)")
def test_shared_complaints_offline(city):
    run = complaints.run(None, RunOptions(run_id="t", datasets=FILES, city=city, limit=30))
    m = complaints.compute(run.results, run.extra)
    assert len(run.results) == 30 and 0.2 <= m["coverage"] <= 1.0 and m["injection_flag_rate"] <= 0.1
