"""The ``detect`` eval task: the COCO-style metric code on hand-made cases (exact
numbers), the dataset readers, and real runs on a few rendered images and on the
shared sets (skipped when ``city.settings.datasets_dir()`` lacks them)."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from city import settings
from city.errors import InvalidInput
from evals.results import RunOptions
from evals.tasks import detect

WEIGHTS = Path(detect.REPO) / detect.DEFAULT_WEIGHTS
SUITES = Path(detect.REPO) / "evals" / "suites"


def extra_for(images: list[tuple[list, list]], classes: list[str], op_conf: float = 0.25) -> dict:
    """The ``extra`` run() would store for hand-made (ground truth, detections) images."""
    thrs = detect.IOU_THRESHOLDS
    dets = {c: {"scores": [], "tp": []} for c in classes}
    n_gt = dict.fromkeys(classes, 0)
    for gt, ds in images:
        for c, (s, mask, n) in detect.score_image(gt, ds, thrs).items():
            dets[c]["scores"] += list(s)
            dets[c]["tp"] += detect._pack(mask)
            n_gt[c] += n
    return {"classes": classes, "dets": dets, "n_gt": n_gt, "iou_thresholds": thrs, "iou_match": 0.5, "op_conf": op_conf}


def metrics(images, classes=("pothole",), op_conf=0.25) -> dict:
    return detect.compute([], extra_for(images, list(classes), op_conf))


GT = [("pothole", 0, 0, 10, 10), ("pothole", 20, 20, 30, 30)]


def test_perfect_detections_score_one():
    m = metrics([(GT, [("pothole", 0.9, 0, 0, 10, 10), ("pothole", 0.8, 20, 20, 30, 30)])])
    assert m["map50"] == 1.0 and m["map50_95"] == 1.0
    assert m["precision"] == m["recall"] == m["f1"] == 1.0


def test_one_miss():
    m = metrics([(GT, [("pothole", 0.9, 0, 0, 10, 10)])])
    assert m["map50"] == pytest.approx(51 / 101)  # recall 0.5 reached at precision 1: 51 of the 101 points
    assert m["precision"] == 1.0 and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 / 3)


def test_one_false_positive_ranked_first_or_last():
    dets = [("pothole", 0.9, 0, 0, 10, 10), ("pothole", 0.8, 20, 20, 30, 30)]
    low = metrics([(GT, [*dets, ("pothole", 0.5, 50, 50, 60, 60)])])
    assert low["map50"] == 1.0  # below every true positive: the envelope keeps precision 1 up to recall 1
    assert low["precision"] == pytest.approx(2 / 3) and low["recall"] == 1.0 and low["f1"] == pytest.approx(0.8)
    high = metrics([(GT[:1], [("pothole", 0.95, 50, 50, 60, 60), ("pothole", 0.9, 0, 0, 10, 10)])])
    assert high["map50"] == pytest.approx(0.5)  # precision 1/2 at every recall point
    below_op = metrics([(GT, [*dets, ("pothole", 0.1, 50, 50, 60, 60)])])
    assert below_op["precision"] == 1.0  # under the operating threshold: not counted in P/R/F1


def test_iou_just_under_half_is_a_miss_and_a_false_positive():
    # gt 0..10 x 0..10; det 0..10 x 3.4..13.4 → inter 66, union 134: IoU 0.4925
    iou = detect.box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 3.4, 10, 13.4]]))[0, 0]
    assert 0.49 < iou < 0.5
    m = metrics([([("pothole", 0, 0, 10, 10)], [("pothole", 0.9, 0, 3.4, 10, 13.4)])])
    assert m["map50"] == 0.0 and m["map50_95"] == 0.0
    assert m["precision"] == m["recall"] == m["f1"] == 0.0


def test_map50_95_steps_and_class_mean():
    # IoU 0.72: a hit at 0.50..0.70 (5 of 10 thresholds) → AP50-95 0.5; the crack class is perfect
    m = metrics([([("pothole", 0, 0, 10, 10), ("crack", 0, 0, 5, 5)],
                  [("pothole", 0.9, 0, 0, 10, 7.2), ("crack", 0.9, 0, 0, 5, 5)])], classes=("crack", "pothole"))
    assert m["map50"] == 1.0
    assert m["map50_95"] == pytest.approx((1.0 + 0.5) / 2)


def test_greedy_matching_by_confidence():
    # two detections on one box: the more confident one takes it, the other is a duplicate (FP)
    gt = [("pothole", 0, 0, 10, 10)]
    m = metrics([(gt, [("pothole", 0.6, 0, 0, 10, 10), ("pothole", 0.9, 0, 0, 10, 9)])])
    assert m["precision"] == 0.5 and m["recall"] == 1.0
    assert m["map50"] == 1.0


def test_wrong_class_is_a_miss_and_a_false_positive():
    m = metrics([([("pothole", 0, 0, 10, 10)], [("crack", 0.9, 0, 0, 10, 10)])], classes=("crack", "pothole"))
    assert m["map50"] == 0.0  # pothole AP 0; crack has no ground truth and is left out of the mean
    assert m["precision"] == 0.0 and m["recall"] == 0.0


def test_class_without_ground_truth_is_not_averaged():
    extra = extra_for([(GT, [("pothole", 0.9, 0, 0, 10, 10), ("pothole", 0.8, 20, 20, 30, 30), ("crack", 0.9, 5, 5, 9, 9)])],
                      ["crack", "pothole"])
    pc = detect.per_class(extra)
    assert pc["crack"]["ap50"] is None and pc["crack"]["fp"] == 1
    assert detect.compute([], extra)["map50"] == 1.0
    assert detect.compute([], extra)["precision"] == pytest.approx(2 / 3)  # micro: the crack FP counts


def test_options_are_validated():
    with pytest.raises(InvalidInput, match="weigths"):
        detect.parse_options({"weigths": "x.onnx"})
    with pytest.raises(InvalidInput, match="conf"):
        detect.parse_options({"conf": 2})
    assert detect.parse_options({}).eval_conf < 0.05


def test_class_map_must_name_detector_classes():
    with pytest.raises(InvalidInput, match="pot"):
        detect._evaluated({"D40"}, ["pothole", "crack"], {"D40": "pot"})
    assert detect._evaluated({"Pothole", "tree"}, ["pothole"], None) == {"Pothole": "pothole"}


def test_readers_voc_and_yolo(tmp_path):
    voc = tmp_path / "voc"
    (voc / "annotations").mkdir(parents=True)
    (voc / "images").mkdir()
    (voc / "images" / "a.jpg").write_bytes(b"")
    (voc / "annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>100</width><height>50</height></size>"
        "<object><name>D40</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>"
        "</annotation>")
    [item] = detect.read_dataset(voc)
    assert item.pixel_boxes(100, 50) == [("D40", 1.0, 2.0, 30.0, 40.0)]
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    (yolo / "images" / "b.jpg").write_bytes(b"")
    (yolo / "labels" / "b.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    with pytest.raises(Exception, match="names"):
        detect.read_dataset(yolo)
    [item] = detect.read_dataset(yolo, ["Pothole"])
    assert item.pixel_boxes(100, 50) == [pytest.approx(("Pothole", 40.0, 15.0, 60.0, 35.0))]


def _run(suite_file: str, datasets: list[Path], limit: int | None, **override):
    cfg = yaml.safe_load((SUITES / suite_file).read_text(encoding="utf-8"))
    options = cfg.get("options", {}) | override
    suite = types.SimpleNamespace(name=cfg["name"], options=options)
    seen = []
    run = detect.run(suite, RunOptions(run_id="t", datasets=datasets, options=options, limit=limit,
                                       progress=lambda d, t, i: seen.append((d, t))))
    assert seen and seen[-1][0] == seen[-1][1] == len(run.results)
    return run


needs_weights = pytest.mark.skipif(not WEIGHTS.exists(), reason="demo detector weights not built")


@needs_weights
def test_synth_end_to_end(tmp_path, monkeypatch):
    """A few rendered images (cached under XUNJIAN_HOME), the demo detector, metrics, table and plots."""
    monkeypatch.setenv("XUNJIAN_HOME", str(tmp_path))
    run = _run("detect-synth.yaml", [], None, synth={"images": 6, "seed": 7})
    assert len(run.results) == 6 and (tmp_path / "eval-cache").is_dir()
    assert run.model == "demo-patrol@1"
    m = detect.compute(run.results, run.extra)
    assert set(m) == set(detect.METRICS)
    assert m["map50"] is not None and 0 < m["map50"] <= 1 and m["latency_ms"] > 0
    assert all(r.latency_ms > 0 and r.expected_summary.startswith("真值") for r in run.results)
    assert [t.title for t in detect.tables(run.results, run.extra)]
    assert len(detect.plots(run.results, run.extra)) == 2
    import json

    assert len(json.dumps(run.extra)) < 1_000_000


def _shared(name: str) -> Path:
    p = settings.datasets_dir() / name
    if not p.is_dir():
        pytest.skip(f"shared dataset {name} not found under {settings.datasets_dir()} (set XUNJIAN_DATASETS)")
    return p


@needs_weights
def test_rdd2022_subset():
    run = _run("detect-rdd2022.yaml", [_shared("rdd2022-china-drone")], 15)
    assert len(run.results) == 15
    assert run.extra["classes"] == ["crack", "pothole"]
    assert any("未评测" in n for n in run.notes) or not run.extra["not_evaluated"]
    assert sum(run.extra["n_gt"].values()) > 0
    m = detect.compute(run.results, run.extra)
    assert m["map50"] is not None and 0 <= m["map50"] <= 1


@needs_weights
def test_potholes_subset():
    run = _run("detect-potholes.yaml", [_shared("potholes-street")], 10)
    assert run.extra["classes"] == ["pothole"] and run.extra["n_gt"]["pothole"] > 0
    m = detect.compute(run.results, run.extra)
    assert 0 <= m["f1"] <= 1
