"""From boxes to observations: ByteTrack linking, fusing positions, and merging
finds that are one physical issue."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from city import geo
from vision.camera import Camera, Mount
from vision.observe import Found, Observer, combine, geofix_for, merge
from vision.sampling import Frame
from vision.telemetry import Pose

LAT, LON = 29.5800, 106.5250


def found(cls: int, north_m: float, east_m: float = 0.0, conf: float = 0.8, frames: int = 3, err: float = 5.0) -> Found:
    lat, lon = geo.destination(LAT, LON, 0.0, north_m)
    lat, lon = geo.destination(lat, lon, 90.0, east_m)
    return Found(class_id=cls, lat=lat, lon=lon, error_m=err, conf=conf, mean_conf=conf, frames=frames, first_t=north_m,
                 last_t=north_m + 1, best_t=north_m + 0.5, box=(0, 0, 1, 1), jpeg=b"")


def test_combine_is_the_weighted_middle():
    a, b = found(0, 0.0), found(0, 2.0)
    lat, lon, err = combine([(a.lat, a.lon, 5.0, 1.0), (b.lat, b.lon, 5.0, 1.0)])
    assert geo.haversine_m(lat, lon, *geo.destination(LAT, LON, 0.0, 1.0)) < 0.01
    assert err == pytest.approx(5.0)  # the GPS error is shared: averaging does not shrink it
    lat, lon, err = combine([(a.lat, a.lon, 1.0, 1.0), (b.lat, b.lon, 1.0, 1.0)])
    assert err == pytest.approx(2.0, abs=0.01)  # twice the spread when that is larger


def test_merge_one_issue_per_place():
    out = merge([found(0, 0.0), found(0, 2.0), found(0, 30.0)], floor_m=3.0)
    assert [f.frames for f in out] == [6, 3]
    # the detector hesitating between two classes of one object: the more confident class wins
    out = merge([found(0, 0.0, conf=0.3, frames=2), found(2, 0.8, conf=0.7, frames=4)], floor_m=3.0, any_class_m=1.5)
    assert len(out) == 1 and out[0].class_id == 2 and out[0].frames == 6
    # two different issues side by side stay two
    assert len(merge([found(0, 0.0), found(2, 4.0)], floor_m=3.0, any_class_m=1.5)) == 2


def box_of_static_object(i: int, cam: Camera) -> np.ndarray:
    """The box of an object on the road 15 m ahead of the start and 1 m to the
    right, seen from the vehicle after i metres east (bottom-centre = contact point)."""
    from vision.camera import ground_to_pixel

    u, v, ok = ground_to_pixel(cam, 15.0 - i, -1.0, height_m=1.6, pitch_deg=-12.0, yaw_deg=90.0)
    assert ok
    w = 40 + 6 * i
    return np.array([[u - w / 2, v - w / 2, u + w / 2, v]], np.float32)


def test_observer_tracks_one_object_over_frames():
    cam = Camera(1280, 720, 90.0)
    mount = Mount(kind="forward", height_m=1.6, pitch_deg=-12.0)
    calls = {"i": 0}

    def detect(image):
        i = calls["i"]
        calls["i"] += 1
        if i in (3, 4):  # missed twice
            return sv.Detections.empty()
        return sv.Detections(xyxy=box_of_static_object(i, cam), confidence=np.array([0.7], np.float32), class_id=np.array([1]))

    obs = Observer(detect, cam, mount, gps_error_m=5.0, sample_rate_hz=3.0, conf=0.3)
    for i in range(10):
        lat, lon = geo.destination(LAT, LON, 90.0, 1.0 * i)
        pose = Pose(t=i / 3, lat=lat, lon=lon, alt=None, heading=90.0, speed=3.0, pitch=None, yaw=None, utc=None)
        obs.feed(Frame(index=i, t=i / 3, image=np.full((720, 1280, 3), 100, np.uint8), reason="distance", sharpness=100.0), pose)
    [f] = obs.finish()  # one object, however the tracker split it
    assert f.class_id == 1 and f.frames == 8 and f.first_t == 0 and f.last_t == pytest.approx(3.0)
    lat, lon = geo.destination(*geo.destination(LAT, LON, 90.0, 15.0), 180.0, 1.0)
    assert geo.haversine_m(f.lat, f.lon, lat, lon) < 0.2
    assert f.error_m >= 5.0 and f.jpeg[:2] == b"\xff\xd8"


def test_no_heading():
    cam = Camera(1280, 720, 90.0)
    box = np.array([600.0, 300.0, 700.0, 400.0])
    pose = Pose(t=0, lat=LAT, lon=LON, alt=30.0, heading=None, speed=0.0, pitch=-90.0, yaw=None, utc=None)
    assert geofix_for(pose, cam, Mount(kind="forward", height_m=1.6, pitch_deg=-12.0), box, 5.0) is None
    fix = geofix_for(pose, cam, Mount(kind="nadir", height_m=None, pitch_deg=-90.0), box, 3.0)
    assert (fix.lat, fix.lon) == (LAT, LON) and fix.error_m > 3.0 + fix.range_m - 0.01  # below the drone, widened
    with_heading = geofix_for(pose.__class__(**{**pose.__dict__, "heading": 0.0}), cam, Mount(kind="nadir", height_m=None, pitch_deg=-90.0), box, 3.0,
                              heading_error_deg=15.0)
    assert with_heading.error_m > geofix_for(pose.__class__(**{**pose.__dict__, "heading": 0.0}), cam,
                                             Mount(kind="nadir", height_m=None, pitch_deg=-90.0), box, 3.0, heading_error_deg=0).error_m
