"""核查 by re-inspection: the view geometry, the decisions on a real store
(SQLite and PostgreSQL) from stored views and observations, and the scripted
two-patrol scenario on real rendered footage through ingest and the batch
pipeline."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from city import geo
from city.cases import NewCase
from city.catalogue import Source
from city.lifecycle import Action, Status
from city.observations import Batch, BatchFile, Observation, View
from city.verification import Outcome, load_rules
from vision.camera import offset_latlon
from vision.coverage import ViewGeometry, coverage, in_view, sight
from vision.ingest import DEFAULT_WEIGHTS
from vision.verify import verify_batch

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)
ORIGIN = (29.575, 106.53)  # 江北区 观音桥街道
GEOMETRY = {"camera": {"width": 1280, "height": 720, "hfov_deg": 90.0},
            "mount": {"kind": "forward", "height_m": 1.6, "pitch_deg": -12.0, "yaw_offset_deg": 0.0},
            "gps_error_m": 5.0, "heading_error_deg": 3.0}
RULES = load_rules()


def at(east: float, north: float = 0.0) -> tuple[float, float]:
    return offset_latlon(*ORIGIN, east, north)


def view(east: float, t: float = 0.0, utc: datetime | None = None, heading: float = 90.0) -> View:
    lat, lon = at(east)
    return View(t=t, utc=utc, lat=lat, lon=lon, heading=heading)


# -- geometry -------------------------------------------------------------------------


def test_a_point_ahead_projects_to_the_image_centre_column():
    g = ViewGeometry.model_validate(GEOMETRY)
    s = sight(view(0.0), g, *at(10.0))
    assert s is not None and abs(s.u - 640) < 1
    assert abs(s.v - (360 - 640 * math.tan(math.radians(12 - math.degrees(math.atan2(1.6, 10)))))) < 0.5  # 2.9° above the axis
    assert abs(s.range_m - 10.0) < 0.01 and abs(s.px_per_m - 640 / math.hypot(10, 1.6)) < 0.1
    assert in_view(s, g, RULES)


def test_behind_far_and_sideways_points_are_not_in_view():
    g = ViewGeometry.model_validate(GEOMETRY)
    assert sight(view(0.0), g, *at(-10.0)) is None  # behind the camera
    assert not in_view(sight(view(0.0), g, *at(40.0)), g, RULES)  # beyond max_range_m (25 m)
    assert not in_view(sight(view(0.0), g, *at(5.0, -20.0)), g, RULES)  # far outside the 90° field of view
    assert sight(view(0.0, heading=None).model_copy(update={"heading": None}), g, *at(10.0)) is None  # no heading: unknown


def test_heading_error_widens_the_margin():
    sloppy = ViewGeometry.model_validate({**GEOMETRY, "heading_error_deg": 40.0})
    g = ViewGeometry.model_validate(GEOMETRY)
    point = at(10.0, -8.0)  # 39° right of the axis: inside the image, but not if the heading may be 40° off
    assert in_view(sight(view(0.0), g, *point), g, RULES)
    assert not in_view(sight(view(0.0), sloppy, *point), sloppy, RULES)


def test_nadir_drone_without_yaw_sees_its_inscribed_circle():
    g = ViewGeometry.model_validate({"camera": {"width": 1920, "height": 1080, "hfov_deg": 73.7},
                                     "mount": {"kind": "nadir", "pitch_deg": -90.0}})
    lat, lon = at(0.0)
    v = View(t=0.0, lat=lat, lon=lon, alt=30.0, pitch=-90.0)
    assert in_view(sight(v, g, *at(5.0, 5.0)), g, RULES)
    assert sight(v, g, *at(40.0)) is None


def test_coverage_counts_frames_and_the_error_circle():
    g = {"a.mp4": ViewGeometry.model_validate(GEOMETRY)}
    views = [("a.mp4", view(e)) for e in range(0, 60, 2)]
    near = coverage(views, g, *at(40.0, -2.0), 5.0, RULES)
    assert near.frames >= 8 and near.fraction == 1.0
    assert near.confidence == pytest.approx(1 - (1 - RULES.per_frame_recall) ** RULES.max_independent_frames)
    assert near.best is not None and near.best[1].lon < at(40.0)[1]
    vague = coverage(views, g, *at(40.0, -2.0), 30.0, RULES)  # a citizen's position: the circle reaches off the road
    assert vague.fraction < 1.0 and vague.confidence < near.confidence
    assert coverage(views, g, *at(-20.0), 5.0, RULES).frames == 0


# -- decisions on a real store -------------------------------------------------------------


def _case(store, east: float, north: float = -2.0, *, code="06013", source=Source.VEHICLE, handled=True, ext=None):
    lat, lon = at(east, north)
    c = store.create_case(NewCase(source=source, code=code, description="路面坑槽", lat=lat, lon=lon, external_id=ext), now=T0)
    store.act(c.number, Action.FILE, actor="值班长", now=T0)
    store.act(c.number, Action.DISPATCH, actor="值班长", now=T0)
    if handled:
        store.act(c.number, Action.ACCEPT, actor="处置员", now=T0 + timedelta(hours=1))
        store.act(c.number, Action.COMPLETE, actor="处置员", note="已修补", now=T0 + timedelta(hours=2))
    return c.number


def _obs(batch: str, n: int, east: float, north: float, conf: float, code="06013", frames=3) -> Observation:
    lat, lon = at(east, north)
    return Observation(id=f"{batch}:f00:{n:03d}", batch_id=batch, file="a.mp4", file_sha256="0" * 64, source=Source.VEHICLE,
                       class_name="pothole", label_zh="坑槽", kind="事件", code=code, confidence=conf, mean_confidence=conf,
                       lat=lat, lon=lon, error_m=3.0, frames=frames, first_t=1.0, last_t=2.0, best_t=1.5,
                       seen_at=T0 + timedelta(days=1), box=(1, 2, 3, 4), frame_uri=f"/evidence/{n}.jpg", model="test@1")


def _batch(store, tmp_path, views_from: datetime, observations=()) -> str:
    bid = "recheck-1"
    now = T0 + timedelta(days=1)
    store.open_batch(Batch(id=bid, source=Source.VEHICLE, root=str(tmp_path), created_at=now, updated_at=now))
    views = [view(e, t=e / 8, utc=views_from + timedelta(seconds=e / 8)) for e in range(0, 100, 2)]
    store.finish_file(BatchFile(batch_id=bid, path="a.mp4", sha256="0" * 64, status="done", observations=len(observations),
                                stats={"view": GEOMETRY}, finished_at=now), list(observations), views)
    return bid


def test_each_case_gets_the_right_decision_once(store, tmp_path):
    fixed = _case(store, 40.0)
    unfixed = _case(store, 60.0)
    still_open = _case(store, 80.0, handled=False)
    behind = _case(store, -30.0)  # near the route, never in front of the camera
    citizen = _case(store, 50.0, north=-6.0, code="06010", source=Source.CITIZEN)  # ±30 m: only partly in view
    other_street = _case(store, 5000.0)
    bid = _batch(store, tmp_path, T0 + timedelta(days=1), [_obs("recheck-1", 1, 60.5, -2.0, 0.7),
                                                           _obs("recheck-1", 2, 80.3, -2.2, 0.6)])
    decided = {v.case_number: v for v in verify_batch(store, bid, now=T0 + timedelta(days=1, hours=1))}

    assert decided[fixed].outcome is Outcome.PASSED and decided[fixed].confidence >= RULES.pass_min_confidence
    assert store.get(fixed).status is Status.CLOSED
    after = [e for e in store.get(fixed).evidence if e.added_by == RULES.actor]
    assert after and "未再检出" in after[0].note  # no video file here: the place and time are recorded as text
    assert [h.action for h in store.get(fixed).history][-2:] == ["发起核查", "核查通过"]

    assert decided[unfixed].outcome is Outcome.FAILED and decided[unfixed].observations == ["recheck-1:f00:001"]
    case = store.get(unfixed)
    assert case.status is Status.DISPATCHED and case.rework_count == 1
    assert any(e.uri == "/evidence/1.jpg" for e in case.evidence)
    assert store.observation("recheck-1:f00:001").case_number == unfixed

    assert decided[still_open].outcome is Outcome.STILL_THERE
    assert store.get(still_open).status is Status.DISPATCHED
    assert store.observation("recheck-1:f00:002").case_number == still_open
    assert store.get(still_open).history[-1].action == "补充证据"

    assert decided[behind].outcome is Outcome.NOT_COVERED and store.get(behind).status is Status.HANDLED
    assert decided[citizen].outcome is Outcome.HUMAN and store.get(citizen).status is Status.VERIFYING
    assert 0 < decided[citizen].coverage < 1
    assert other_street not in decided

    again = verify_batch(store, bid, now=T0 + timedelta(days=1, hours=2))
    assert again == []
    assert len(store.verifications(batch_id=bid)) == 5
    assert store.get(unfixed).rework_count == 1


def test_footage_older_than_the_handling_report_decides_nothing(store, tmp_path):
    number = _case(store, 40.0)  # reported handled at T0 + 2 h
    bid = _batch(store, tmp_path, T0 + timedelta(hours=1))  # filmed an hour before
    [v] = verify_batch(store, bid, now=T0 + timedelta(days=1))
    assert v.outcome is Outcome.NOT_COVERED and store.get(number).status is Status.HANDLED


def test_a_weak_resighting_goes_to_a_human_and_dry_run_changes_nothing(store, tmp_path):
    number = _case(store, 60.0, source=Source.INSPECTOR)
    bid = _batch(store, tmp_path, T0 + timedelta(days=1), [_obs("recheck-1", 1, 60.0, -2.0, 0.3, frames=1)])
    [preview] = verify_batch(store, bid, dry_run=True)
    assert preview.outcome is Outcome.HUMAN and store.get(number).status is Status.HANDLED
    assert store.verifications(batch_id=bid) == []
    [v] = verify_batch(store, bid)
    assert v.outcome is Outcome.HUMAN and v.status_after == Status.VERIFYING.value
    assert store.get(number).status is Status.VERIFYING  # a person decides: xunjian cases act … pass|fail


# -- the scripted scenario: two patrols of the same street a day apart --------------------------

needs_detector = pytest.mark.skipif(not DEFAULT_WEIGHTS.with_suffix(".onnx").exists(), reason="demo detector weights not built")


def _nearest(truth: list[dict], lat: float, lon: float) -> int:
    return min(range(len(truth)), key=lambda i: geo.haversine_m(lat, lon, truth[i]["lat"], truth[i]["lon"]))


@needs_detector
def test_two_patrols_close_the_loop(demo_batch, tmp_path, monkeypatch):
    from agents.batch import run_batch
    from agents.pipeline import Pipeline
    from app.cli import app
    from city.store import Store
    from vision.ingest import IngestOptions, ingest
    from vision.synth.footage import DAY2_FIXED, DAY2_NEW, DAY2_NOT_FIXED, DEMO_PLACEMENTS, make_day2_batch

    monkeypatch.setenv("XUNJIAN_HOME", str(tmp_path / "home"))
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    pipe = Pipeline(store)
    truth = json.loads((demo_batch / "truth.json").read_text(encoding="utf-8"))["objects"]

    # day 1: find, open, approve what waits at the gate
    day1 = ingest(demo_batch, store, IngestOptions(out=tmp_path / "b1"))
    run_batch(pipe, day1.batch_id)
    for r in pipe.waiting():
        pipe.resume(r.state.case_number, "approve", by="值班长")
    case_of = {_nearest(truth, o.lat, o.lon): o.case_number for o in store.observations(day1.batch_id, issues_only=True)}
    assert len(set(case_of.values())) == len(case_of) >= 5  # one case per physical issue found
    assert all(store.get(n).status is Status.DISPATCHED for n in case_of.values())

    # the departments: most repaired, one reported repaired but not, the rest still open
    reported = {i: n for i, n in case_of.items() if i in DAY2_FIXED | DAY2_NOT_FIXED}
    assert set(reported) == DAY2_FIXED | DAY2_NOT_FIXED
    for n in reported.values():
        store.act(n, Action.ACCEPT, actor="处置员")
        store.act(n, Action.COMPLETE, actor="处置员", note="已处置")
    open_left = {i: n for i, n in case_of.items() if i not in reported}
    assert open_left

    # day 2: the same street, after the work (footage newer than the reports)
    day2_dir = make_day2_batch(tmp_path / "day2", datetime.now(UTC) + timedelta(seconds=1))
    day2 = ingest(day2_dir, store, IngestOptions(out=tmp_path / "b2"))
    results = run_batch(pipe, day2.batch_id)
    decided = {v.case_number: v for v in store.verifications(batch_id=day2.batch_id)}

    for i in DAY2_FIXED:
        v = decided[reported[i]]
        assert v.outcome is Outcome.PASSED, (DEMO_PLACEMENTS[i], v)
        case = store.get(reported[i])
        assert case.status is Status.CLOSED
        frames = [e for e in case.evidence if e.added_by == RULES.actor and e.kind == "image"]
        assert frames and all(Path(e.uri).is_file() for e in frames)  # the "after" frame and crop
        assert any(e.added_by != RULES.actor and e.kind == "image" for e in case.evidence)  # the "before" ones
    for i in DAY2_NOT_FIXED:
        v = decided[reported[i]]
        assert v.outcome is Outcome.FAILED and v.observations
        case = store.get(reported[i])
        assert case.status is Status.DISPATCHED and case.rework_count == 1
        assert any(e.uri.startswith(str(tmp_path / "b2")) for e in case.evidence)  # the day-2 sighting
    for i, n in open_left.items():
        assert decided[n].outcome is Outcome.STILL_THERE
        assert store.get(n).status is Status.DISPATCHED

    # the new issue opens one new case; nothing seen again opened a duplicate
    day2_truth = json.loads((day2_dir / "truth.json").read_text(encoding="utf-8"))["objects"]
    new = day2_truth[-1]  # DAY2_NEW's object is placed last
    assert new["class"] == DAY2_NEW[0][0] and len(day2_truth) == len(DEMO_PLACEMENTS) - len(DAY2_FIXED) + len(DAY2_NEW)
    opened = [r for r in results if r["outcome"] != "attached"]
    assert len(opened) == 1 and opened[0]["case"] not in case_of.values()
    o = store.observation(opened[0]["observation"])
    assert geo.haversine_m(o.lat, o.lon, new["lat"], new["lon"]) < 3
    day2_obs = store.observations(day2.batch_id, issues_only=True)
    assert all(x.case_number for x in day2_obs)
    assert len({x.case_number for x in day2_obs}) == len(day2_obs)

    # again: nothing changes, and the CLI says so
    assert run_batch(pipe, day2.batch_id) == []
    res = CliRunner().invoke(app, ["--db", f"sqlite:///{tmp_path / 'x.db'}", "verify", "--batch", day2.batch_id])
    assert res.exit_code == 0 and "没有需要新核查的案件" in res.output
