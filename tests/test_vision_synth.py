"""Synthetic scenes: deterministic renders, exact boxes, the demo footage batch and drone SRT."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime

import cv2
import numpy as np
import pytest
import yaml

from city.geo import haversine_m
from vision.camera import Camera, ground_to_pixel
from vision.synth import class_names, load_classes
from vision.synth.dataset import make_dataset, random_view
from vision.synth.footage import (
    VEHICLE_CAMERA,
    make_demo_batch,
    make_drone_clip,
    speed_profile,
)
from vision.synth.render import Pose, render_view
from vision.synth.world import make_world


@pytest.fixture(scope="module")
def world():
    return make_world(11, s_range=(-10.0, 40.0), objects_per_10m=5.0)


def test_class_list_from_the_data_file():
    names = class_names()
    assert names == ["pothole", "crack", "manhole_broken", "manhole_ok", "garbage", "bin_overflow"]
    assert [c.is_issue for c in load_classes()] == [True, True, True, False, True, True]


def test_world_is_deterministic(world):
    again = make_world(11, s_range=(-10.0, 40.0), objects_per_10m=5.0)
    assert np.array_equal(world.raster, again.raster)
    assert [(o.cls, o.lat, o.lon) for o in world.objects] == [(o.cls, o.lat, o.lon) for o in again.objects]
    assert len(world.objects) >= 15
    other = make_world(12, s_range=(-10.0, 40.0), objects_per_10m=5.0)
    assert not np.array_equal(world.raster[: other.raster.shape[0], : other.raster.shape[1]], other.raster[: world.raster.shape[0], : world.raster.shape[1]])


def test_render_is_deterministic(world):
    rng = np.random.default_rng(5)
    view = random_view(world, rng, "forward")
    a, boxes_a = render_view(world, view.cam, view.pose, effects_seed=9)
    b, boxes_b = render_view(world, view.cam, view.pose, effects_seed=9)
    assert np.array_equal(a, b) and boxes_a == boxes_b
    assert a.shape == (view.cam.height, view.cam.width, 3)


@pytest.mark.parametrize("kind", ["forward", "side", "nadir", "oblique"])
def test_boxes_contain_the_projected_centre(world, kind):
    rng = np.random.default_rng({"forward": 1, "side": 2, "nadir": 3, "oblique": 4}[kind])
    n_boxes = 0
    for _ in range(4):
        view = random_view(world, rng, kind)
        _, boxes = render_view(world, view.cam, view.pose)
        p = view.pose
        for b in boxes:
            ob = world.objects[b.obj_index]
            assert b.cls_id == ob.cls_id
            assert 0 <= b.x1 < b.x2 <= view.cam.width and 0 <= b.y1 < b.y2 <= view.cam.height
            assert b.x2 - b.x1 >= 8 and b.y2 - b.y1 >= 8
            u, v, front = ground_to_pixel(view.cam, ob.east - p.east, ob.north - p.north, height_m=p.height_m,
                                          pitch_deg=p.pitch_deg, yaw_deg=p.yaw_deg, roll_deg=p.roll_deg)
            assert front
            if 0 <= u < view.cam.width and 0 <= v < view.cam.height:
                assert b.x1 - 1e-6 <= u <= b.x2 + 1e-6 and b.y1 - 1e-6 <= v <= b.y2 + 1e-6
            n_boxes += 1
    assert n_boxes > 0


def test_an_object_straight_ahead_is_drawn_where_its_box_is():
    w = make_world(3, heading_deg=0.0, s_range=(-5.0, 30.0), placements=[("manhole_broken", 6.0, -1.75)], lanes_per_side=1,
                   road_half_m=3.5, objects_per_10m=0.0)
    cam = Camera(1280, 720, 90.0)
    ob = w.objects[0]
    pose = Pose(ob.east, 0.0, 1.6, -12.0, 0.0)
    img, boxes = render_view(w, cam, pose)
    assert len(boxes) == 1
    b = boxes[0]
    patch = img[int(b.y1):int(b.y2), int(b.x1):int(b.x2)].astype(float)
    # the broken cover has a near-black void: the box holds much darker pixels than the asphalt around it
    assert patch.min() < 0.5 * np.median(img[600:, :].astype(float))


def test_make_dataset_layout(tmp_path):
    data = make_dataset(tmp_path / "ds", 6, seed=1, imgsz=320, val_fraction=0.34, views_per_world=6)
    cfg = yaml.safe_load(data.read_text())
    assert cfg["names"] == dict(enumerate(class_names()))
    train = sorted((tmp_path / "ds" / "images" / "train").glob("*.jpg"))
    val = sorted((tmp_path / "ds" / "images" / "val").glob("*.jpg"))
    assert len(train) == 4 and len(val) == 2
    for img in train + val:
        lab = tmp_path / "ds" / "labels" / img.parent.name / (img.stem + ".txt")
        for line in lab.read_text().splitlines():
            c, x, y, bw, bh = line.split()
            assert 0 <= int(c) < len(class_names())
            assert all(0 <= float(q) <= 1 for q in (x, y, bw, bh))
        assert cv2.imread(str(img)).shape[1] == 320


def test_speed_profile_stops():
    s = speed_profile(20.0)
    t0, t1 = s.stop_span
    assert t1 - t0 == pytest.approx(4.0)
    assert 5.0 < t0 < 15.0
    ts = np.linspace(t0, t1, 9)
    assert np.ptp(s(ts)) == 0.0
    v = np.diff(s(np.linspace(0, 20, 2001))) / 0.01
    assert v.max() == pytest.approx(30 / 3.6, rel=1e-3) and v.min() >= 0


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    make_demo_batch(out, seed=0, video=False)
    return out


def _gpx(path):
    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    root = ET.parse(path).getroot()
    pts = root.findall(".//g:trkpt", ns)
    t = [datetime.strptime(p.find("g:time", ns).text, "%Y-%m-%dT%H:%M:%SZ") for p in pts]
    return np.array([float(p.get("lat")) for p in pts]), np.array([float(p.get("lon")) for p in pts]), t


def test_demo_manifest_and_track(batch):
    man = yaml.safe_load((batch / "manifest.yaml").read_text(encoding="utf-8"))
    assert man["batch"] == "demo-2026-11-20" and man["source"] == "vehicle" and man["platform_id"] == "渝A-巡01"
    f = man["files"][0]
    assert f["video"] == "patrol.mp4" and f["track"] == "patrol.gpx"
    assert f["camera"] == {"hfov_deg": 90, "width": 1280, "height": 720}
    assert f["mount"] == {"kind": "forward", "height_m": 1.6, "pitch_deg": -12, "yaw_offset_deg": 0}
    lat, lon, t = _gpx(batch / "patrol.gpx")
    secs = np.array([(x - t[0]).total_seconds() for x in t])
    assert t[0] == datetime(2026, 11, 20, 2, 0, 0)
    assert np.all(np.diff(secs) == 1.0) and secs[-1] >= 20.0  # 1 Hz, covers the 20 s video
    step = haversine_m(lat[:-1], lon[:-1], lat[1:], lon[1:])
    assert step.max() == pytest.approx(30 / 3.6, abs=0.05)  # 30 km/h
    truth = json.loads((batch / "truth.json").read_text(encoding="utf-8"))
    t0, t1 = truth["stop_s"]
    stopped = (secs[:-1] >= t0) & (secs[1:] <= t1)
    assert stopped.sum() >= 3 and np.all(step[stopped] < 1e-6)  # ~4 s at speed 0
    assert step[~stopped].min() > 0.5


def test_demo_truth_in_jurisdiction(batch, city):
    truth = json.loads((batch / "truth.json").read_text(encoding="utf-8"))
    objs = truth["objects"]
    assert 6 <= sum(o["is_issue"] for o in objs) <= 8
    for o in objs:
        loc = city.jurisdiction.locate(o["lat"], o["lon"])
        assert loc.found and loc.grid_id is not None, o
        assert o["frames_visible"] is not None, o  # every placed object is seen by the camera


def test_demo_video_short_clip(tmp_path):
    out = make_demo_batch(tmp_path, seed=0, seconds=2.0)
    cap = cv2.VideoCapture(str(out / "patrol.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60
    ok, frame = cap.read()
    assert ok and frame.shape == (720, 1280, 3)
    assert VEHICLE_CAMERA.width == 1280


def test_drone_clip_srt(tmp_path):
    out = make_drone_clip(tmp_path, seconds=1.0)
    cap = cv2.VideoCapture(str(out / "drone.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    text = (out / "drone.SRT").read_text(encoding="utf-8")
    starts = [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in re.findall(r"^(\d\d):(\d\d):(\d\d),(\d{3}) -->", text, re.MULTILINE)]
    assert len(starts) == 30 and np.all(np.diff(starts) > 0)
    lats = [float(x) for x in re.findall(r"\[latitude: ([-\d.]+)\]", text)]
    assert len(lats) == 30 and re.search(r"\[rel_alt: 22\.000 abs_alt: [\d.]+\]", text) and "[focal_len : 24.00]" in text
    try:
        from vision.telemetry.srt import read_srt
    except ImportError:  # the ingest's parser lives elsewhere in the tree
        return
    track = read_srt(out / "drone.SRT")
    assert len(track.t) == 30 and np.all(np.diff(track.t) > 0)


def test_exact_boxes_geolocate_to_the_truth():
    """The renderer and the geolocator agree: exact boxes of the demo drive put
    each object within its error radius of where it was placed."""
    from vision.camera import enu_offset
    from vision.geolocate import locate_box
    from vision.synth.footage import VEHICLE_MOUNT, demo_world, vehicle_poses
    from vision.synth.render import project_boxes

    w = demo_world(0)
    n = 0
    for pose in vehicle_poses(w, 20.0)[::15]:
        lat, lon = w.latlon(pose.east, pose.north)
        for b in project_boxes(w, VEHICLE_CAMERA, pose):
            if b.y2 >= VEHICLE_CAMERA.height - 1:  # bottom cut off: the ground contact point is not in view
                continue
            ob = w.objects[b.obj_index]
            fix = locate_box(VEHICLE_CAMERA, VEHICLE_MOUNT, lat=lat, lon=lon, heading_deg=w.heading_deg, xyxy=(b.x1, b.y1, b.x2, b.y2), gps_error_m=0.0)
            assert fix is not None
            e, nn = enu_offset(ob.lat, ob.lon, fix.lat, fix.lon)
            size = float(np.ptp(ob.footprint, axis=0).max())
            assert np.hypot(e, nn) <= size + 0.05  # the box bottom is the object's near edge
            assert np.hypot(e, nn) <= fix.error_m + size / 2
            n += 1
    assert n > 10
