"""Camera geometry and box geolocation against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from city.geo import haversine_m
from vision.camera import (
    Camera,
    Mount,
    enu_offset,
    ground_to_pixel,
    gsd_m,
    horizon_v,
    offset_latlon,
    pixel_to_ground,
)
from vision.geolocate import locate_box

LAT, LON = 29.5800, 106.5250


def test_intrinsics():
    cam = Camera(1280, 720, 90.0)
    assert cam.fx == pytest.approx(640.0) and cam.fy == cam.fx
    assert (cam.cx, cam.cy) == (640.0, 360.0)
    assert Camera.from_focal_35mm(18.0, 1000, 500).hfov_deg == pytest.approx(90.0)
    assert Camera.from_focal(4.5, 6.17, 4000, 3000).hfov_deg == pytest.approx(2 * math.degrees(math.atan(6.17 / 9.0)))
    half = cam.scaled(640, 360)
    assert half.hfov_deg == 90.0 and half.fx == pytest.approx(320.0)


def test_principal_point_of_a_tilted_vehicle_camera():
    cam = Camera(1280, 720, 90.0)
    e, n, ok = pixel_to_ground(cam, cam.cx, cam.cy, height_m=1.5, pitch_deg=-10.0, yaw_deg=90.0)
    assert ok
    assert e == pytest.approx(1.5 / math.tan(math.radians(10.0)), abs=1e-9)  # 8.507 m east
    assert e == pytest.approx(8.507, abs=1e-3)
    assert n == pytest.approx(0.0, abs=1e-9)
    u, v, front = ground_to_pixel(cam, e, n, height_m=1.5, pitch_deg=-10.0, yaw_deg=90.0)
    assert front and u == pytest.approx(640.0) and v == pytest.approx(360.0)


def test_round_trip_random_points():
    rng = np.random.default_rng(1)
    cam = Camera(1920, 1080, 75.0)
    for pitch, yaw, roll, h in [(-12.0, 33.0, 0.0, 1.6), (-35.0, 250.0, 2.5, 2.2), (-90.0, 10.0, 0.0, 60.0), (-55.0, 300.0, -3.0, 40.0)]:
        e, n, ok = pixel_to_ground(cam, rng.uniform(0, cam.width, 500), rng.uniform(0, cam.height, 500), height_m=h, pitch_deg=pitch,
                                   yaw_deg=yaw, roll_deg=roll, max_range_m=1e6)
        e, n = e[ok], n[ok]
        assert len(e) > 100
        u, v, front = ground_to_pixel(cam, e, n, height_m=h, pitch_deg=pitch, yaw_deg=yaw, roll_deg=roll)
        assert front.all()
        e2, n2, ok2 = pixel_to_ground(cam, u, v, height_m=h, pitch_deg=pitch, yaw_deg=yaw, roll_deg=roll, max_range_m=1e6)
        assert ok2.all()
        assert np.max(np.hypot(e2 - e, n2 - n)) < 1e-3


def test_horizon_and_range():
    cam = Camera(1280, 720, 90.0)
    hv = horizon_v(cam, -12.0)
    assert hv == pytest.approx(360 - 640 * math.tan(math.radians(12.0)))
    _, _, ok = pixel_to_ground(cam, 640, hv - 1, height_m=1.6, pitch_deg=-12.0, yaw_deg=0.0)
    assert not ok
    _, _, ok = pixel_to_ground(cam, 640, hv + 0.5, height_m=1.6, pitch_deg=-12.0, yaw_deg=0.0, max_range_m=200)
    assert not ok  # below the horizon but far beyond 200 m
    # behind the camera: not in front
    _, _, front = ground_to_pixel(cam, 0.0, -5.0, height_m=1.6, pitch_deg=-12.0, yaw_deg=0.0)
    assert not front


def test_gsd_nadir():
    cam = Camera(4000, 3000, 84.0)
    g = gsd_m(cam, 100.0)
    assert g == pytest.approx(2 * 100 * math.tan(math.radians(42.0)) / 4000)
    e, n, ok = pixel_to_ground(cam, cam.cx + 500, cam.cy, height_m=100.0, pitch_deg=-90.0, yaw_deg=0.0)
    assert ok and e == pytest.approx(500 * g) and n == pytest.approx(0.0, abs=1e-9)


def test_enu_round_trip_and_scale():
    lat, lon = offset_latlon(LAT, LON, 300.0, -400.0)
    e, n = enu_offset(LAT, LON, lat, lon)
    assert e == pytest.approx(300.0, abs=1e-6) and n == pytest.approx(-400.0, abs=1e-6)
    assert haversine_m(LAT, LON, lat, lon) == pytest.approx(500.0, abs=0.05)


NADIR = Mount(kind="nadir", height_m=None, pitch_deg=-90.0)
DRONE_CAM = Camera(4000, 3000, 84.0)


def _box_at(u, v, half=10):
    return (u - half, v - half, u + half, v + half)


def test_nadir_centre_box_is_the_drone_position():
    fix = locate_box(DRONE_CAM, NADIR, lat=LAT, lon=LON, heading_deg=0.0, alt_m=100.0, xyxy=_box_at(2000, 1500))
    assert fix is not None and fix.method == "nadir"
    assert haversine_m(LAT, LON, fix.lat, fix.lon) < 1e-3
    assert fix.range_m < 1e-6
    assert fix.error_m >= 5.0


@pytest.mark.parametrize("heading, east, north", [(0.0, 1.0, 0.0), (90.0, 0.0, -1.0), (180.0, -1.0, 0.0), (270.0, 0.0, 1.0)])
def test_nadir_box_right_of_centre_follows_heading(heading, east, north):
    g = gsd_m(DRONE_CAM, 100.0)
    fix = locate_box(DRONE_CAM, NADIR, lat=LAT, lon=LON, heading_deg=heading, alt_m=100.0, xyxy=_box_at(2500, 1500))
    e, n = enu_offset(LAT, LON, fix.lat, fix.lon)
    assert e == pytest.approx(500 * g * east, abs=1e-3) and n == pytest.approx(500 * g * north, abs=1e-3)
    assert fix.range_m == pytest.approx(500 * g)


def test_gimbal_overrides_mount_and_heading():
    g = gsd_m(DRONE_CAM, 100.0)
    fix = locate_box(DRONE_CAM, Mount(kind="oblique", height_m=None, pitch_deg=-45.0), lat=LAT, lon=LON, heading_deg=0.0,
                     alt_m=100.0, gimbal_pitch_deg=-90.0, gimbal_yaw_deg=90.0, xyxy=_box_at(2500, 1500))
    e, n = enu_offset(LAT, LON, fix.lat, fix.lon)
    assert e == pytest.approx(0.0, abs=1e-3) and n == pytest.approx(-500 * g, abs=1e-3)
    assert fix.method == "nadir"


def test_drone_without_altitude_is_none():
    assert locate_box(DRONE_CAM, NADIR, lat=LAT, lon=LON, heading_deg=0.0, alt_m=None, xyxy=_box_at(2000, 1500)) is None


CAR = Camera(1280, 720, 90.0)
FORWARD = Mount(kind="forward", height_m=1.5, pitch_deg=-10.0)


def test_forward_uses_bottom_centre():
    # the box's bottom edge on the principal row: 8.507 m ahead (east at heading 90)
    fix = locate_box(CAR, FORWARD, lat=LAT, lon=LON, heading_deg=90.0, xyxy=(600, 300, 680, 360))
    e, n = enu_offset(LAT, LON, fix.lat, fix.lon)
    assert e == pytest.approx(8.507, abs=1e-3) and n == pytest.approx(0.0, abs=1e-6)
    assert fix.method == "ground-plane" and fix.range_m == pytest.approx(8.507, abs=1e-3)


def test_side_camera_yaw_offset():
    side_right = Mount(kind="side", height_m=1.5, pitch_deg=-10.0, yaw_offset_deg=90.0)
    fix = locate_box(CAR, side_right, lat=LAT, lon=LON, heading_deg=0.0, xyxy=(600, 300, 680, 360))
    e, n = enu_offset(LAT, LON, fix.lat, fix.lon)
    assert e == pytest.approx(8.507, abs=1e-3) and n == pytest.approx(0.0, abs=1e-6)  # heading north, looking right = east
    side_left = Mount(kind="side", height_m=1.5, pitch_deg=-10.0, yaw_offset_deg=-90.0)
    fix = locate_box(CAR, side_left, lat=LAT, lon=LON, heading_deg=0.0, xyxy=(600, 300, 680, 360))
    e, n = enu_offset(LAT, LON, fix.lat, fix.lon)
    assert e == pytest.approx(-8.507, abs=1e-3)


def test_error_grows_with_range():
    errs, ranges = [], []
    for bottom in (700, 500, 350, 300, 275, 262):
        fix = locate_box(CAR, FORWARD, lat=LAT, lon=LON, heading_deg=0.0, xyxy=(600, bottom - 30, 680, bottom))
        assert fix is not None
        errs.append(fix.error_m)
        ranges.append(fix.range_m)
    assert ranges == sorted(ranges)
    assert errs == sorted(errs) and errs[-1] > errs[0] + 1.0
    assert errs[0] >= 5.0  # never better than the GPS


def test_gps_error_is_a_floor():
    fix = locate_box(CAR, FORWARD, lat=LAT, lon=LON, heading_deg=0.0, xyxy=(600, 670, 680, 700), gps_error_m=2.0)
    assert 2.0 <= fix.error_m < 2.5


def test_above_horizon_is_none():
    hv = horizon_v(CAR, FORWARD.pitch_deg)
    assert locate_box(CAR, FORWARD, lat=LAT, lon=LON, heading_deg=0.0, xyxy=(600, hv - 60, 680, hv - 5)) is None
    # a box whose ground point is far beyond the range limit
    assert locate_box(CAR, FORWARD, lat=LAT, lon=LON, heading_deg=0.0, xyxy=(600, hv - 20, 680, hv + 0.2)) is None
