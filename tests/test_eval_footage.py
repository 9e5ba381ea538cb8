"""The ``footage`` eval task: matching and metrics on a hand-made issue list (exact
numbers), the options, and real runs — a short rendered clip, and the demo clip
(the demo detector finds 6 of its 8 visible issues at the card threshold, all
within 0.7 m: checked as a sanity bound)."""

from __future__ import annotations

import itertools
import json
import math
import types
from pathlib import Path

import pytest

from city import geo
from city.errors import InvalidInput
from evals.results import RunOptions
from evals.tasks import footage

WEIGHTS = footage.REPO / footage.DEFAULT_WEIGHTS
LAT0, LON0 = 29.56, 106.55
M_PER_DEG = geo.haversine_m(LAT0, LON0, LAT0 + 1e-3, LON0) / 1e-3  # metres per degree of latitude here


def at(north_m: float) -> dict:
    return {"lat": LAT0 + north_m / M_PER_DEG, "lon": LON0}


def issue(cls: str, code: str, north_m: float) -> dict:
    return {"class": cls, "code": code, "is_issue": True, "frames_visible": [0, 10], **at(north_m)}


def obs(id_: str, cls: str, code: str, north_m: float) -> dict:
    return {"id": id_, "class_name": cls, "code": code, "confidence": 0.5, **at(north_m)}


ISSUES = [issue("pothole", "06013", 0), issue("crack", "06013", 20), issue("garbage", "06010", 40),
          issue("manhole_broken", "01023", 60)]
OBSERVATIONS = [
    obs("A", "pothole", "06013", 1.0),  # the pothole, 1 m off
    obs("B", "pothole", "06013", -2.0),  # the pothole again: a duplicate
    obs("C", "pothole", "06013", 20.5),  # the crack, right code, wrong class
    obs("D", "garbage", "06010", 45.0),  # 5 m from the garbage: outside 3 m → a false positive, garbage missed
    obs("E", "bin_overflow", "06042", 61.0),  # beside the manhole, wrong code → a false positive, manhole missed
]


def test_metrics_on_a_hand_made_clip():
    results = footage.score_clip("c", ISSUES, OBSERVATIONS, 3.0)
    assert [r.item_id for r in results] == ["c:00:pothole", "c:01:crack", "c:02:garbage", "c:03:manhole_broken", "c:fp:D", "c:fp:E"]
    assert [r.ok for r in results] == [True, False, False, False, False, False]
    assert results[0].output["observations"] == ["A", "B"] and results[1].flags["class_ok"] is False
    assert results[2].flags["class_ok"] is None  # nothing within 3 m: not located
    assert results[3].flags == {"found": False, "class_ok": False, "false_positive": False}
    m = footage.compute(results, {"video_s": 40.0, "processing_s": 20.0})
    assert m["recall"] == 0.5  # pothole and crack found (by code), garbage and manhole not
    assert m["precision"] == pytest.approx(3 / 5)  # A, B, C matched; D, E not
    assert m["class_accuracy"] == pytest.approx(1 / 3)  # located: pothole ✓, crack ✗, manhole ✗
    assert m["duplicate_rate"] == 1.5  # 3 observations for 2 found issues
    assert m["loc_error_median_m"] == pytest.approx(0.75, abs=1e-3)  # errors 1.0 and 0.5
    assert m["loc_error_p90_m"] == pytest.approx(0.95, abs=1e-3)
    assert m["rtf"] == 2.0


def test_nearest_pairs_first_and_each_observation_once():
    issues = [issue("pothole", "06013", 0), issue("pothole", "06013", 2)]
    results = footage.score_clip("c", issues, [obs("A", "pothole", "06013", 1.2)], 3.0)
    assert [r.output["matched"] for r in results] == [0, 1]  # 0.8 m from the second, 1.2 m from the first
    m = footage.compute(results, {})
    assert m["recall"] == 0.5 and m["precision"] == 1.0 and m["duplicate_rate"] == 1.0 and m["rtf"] is None


def test_nothing_to_measure():
    assert footage.compute([], {}) == dict.fromkeys(footage.METRICS)


def test_true_issues_need_visibility_and_is_issue():
    truth = {"objects": [issue("pothole", "06013", 0), {**issue("pothole", "06013", 5), "frames_visible": None},
                         {**issue("manhole_ok", None, 9), "is_issue": False},
                         {"class": "crack", "code": "06013", "is_issue": True, "visible_s": [[1.0, 2.0]], **at(3)}]}
    assert [o["class"] for o in footage.true_issues(truth)] == ["pothole", "crack"]


def test_options_are_validated():
    with pytest.raises(InvalidInput, match="clips"):
        footage.parse_options({"clips": [{"kind": "bicycle"}]})
    with pytest.raises(InvalidInput, match="srt"):
        footage.parse_options({"clips": [{"kind": "drone_srt"}]})
    with pytest.raises(InvalidInput, match="match_radius"):
        footage.parse_options({"match_radius": 3})
    assert len(footage.parse_options({}).clips) == 2


def test_shuffled_layout_moves_the_issues():
    from vision.synth.footage import DEMO_PLACEMENTS

    a, b = footage.shuffled_placements(1), footage.shuffled_placements(1)
    assert a == b and sorted(c for c, *_ in a) == sorted(c for c, *_ in DEMO_PLACEMENTS)
    assert [s for _, s, _ in a] != [s for _, s, _ in DEMO_PLACEMENTS]
    slots = sorted(s for _, s, _ in a)
    assert min(y - x for x, y in itertools.pairwise(slots)) > 3.0  # never two within a match radius


def run_suite(options: dict) -> footage.TaskRun:
    suite = types.SimpleNamespace(name="footage", options=options)
    seen = []
    out = footage.run(suite, RunOptions(run_id="t", options=options, progress=lambda d, t, i: seen.append(i)))
    assert len(seen) == len(options["clips"])
    return out


needs_weights = pytest.mark.skipif(not WEIGHTS.exists(), reason="demo detector weights not built")


@needs_weights
def test_short_clip_end_to_end(tmp_path, monkeypatch):
    """6 s of the demo drive (before the stop at the light): rendered into the cache once, ingested, scored."""
    monkeypatch.setenv("XUNJIAN_HOME", str(tmp_path))
    out = run_suite({"clips": [{"kind": "vehicle", "seed": 0, "seconds": 6}]})
    [row] = out.extra["clips"]
    assert row["video_s"] == 6.0 and row["issues"] >= 3 and row["processing_s"] > 0
    assert list((tmp_path / "eval-cache" / "footage").glob("*/.complete"))
    m = footage.compute(out.results, out.extra)
    assert set(m) == set(footage.METRICS) and m["rtf"] > 0
    assert m["recall"] is not None and 0 <= m["recall"] <= 1
    assert out.model == "demo-patrol@1"
    assert footage.tables(out.results, out.extra)[0].rows[0][0] == "vehicle-s0"
    json.dumps(out.extra)


@needs_weights
def test_demo_clip_end_to_end(tmp_path, monkeypatch, demo_batch):
    """The 20 s demo clip (the session's rendered batch, linked into the cache instead of rendered again)."""
    monkeypatch.setenv("XUNJIAN_HOME", str(tmp_path))
    spec = footage.ClipSpec(kind="vehicle", seed=0)
    cached = tmp_path / "eval-cache" / "footage" / spec.key
    cached.mkdir(parents=True)
    for f in Path(demo_batch).iterdir():
        (cached / f.name).symlink_to(f)
    (cached / ".complete").write_text("ok\n")
    out = run_suite({"clips": [spec.model_dump()]})
    m = footage.compute(out.results, out.extra)
    issues = [r for r in out.results if "issue" in r.tags]
    assert len(issues) == 8
    assert m["recall"] >= 5 / 8, m
    assert m["loc_error_p90_m"] <= 1.5, m
    assert m["precision"] >= 0.5 and m["duplicate_rate"] <= 1.5, m
    assert not math.isnan(m["rtf"]) and m["rtf"] > 0
    assert len(footage.plots(out.results, out.extra)) == 1
