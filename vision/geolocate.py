"""Geolocate a detection box: intersect the ray through the box's ground point
with the flat ground (:mod:`vision.camera`) from the platform's position,
heading and mount (or drone gimbal), and estimate the error radius.

Vehicle cameras (forward/side) use the box's bottom-centre (where the object
meets the road) at the mount's height; drones (nadir/oblique) use the box
centre at the telemetry altitude.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from vision.camera import Camera, Mount, offset_latlon, pixel_to_ground

PITCH_SIGMA_DEG = 1.0
V_SIGMA_PX = 2.0
V_SIGMA_BOX_FRACTION = 0.05
ALT_SIGMA_M = 1.0
ALT_SIGMA_FRACTION = 0.03
NADIR_TOLERANCE_DEG = 5.0


class GeoFix(BaseModel):
    """Where a detection lies on the ground."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    error_m: float = Field(ge=0, description="error radius, metres (GPS, pixel, attitude and altitude errors in quadrature)")
    range_m: float = Field(ge=0, description="horizontal distance from the camera's ground point, metres")
    method: Literal["nadir", "ground-plane"]


def locate_box(cam: Camera, mount: Mount, *, lat: float, lon: float, heading_deg: float, alt_m: float | None = None,
               gimbal_pitch_deg: float | None = None, gimbal_yaw_deg: float | None = None,
               xyxy, gps_error_m: float = 5.0, max_range_m: float = 200.0) -> GeoFix | None:
    """The ground position of a box ``xyxy`` (pixels of ``cam``) seen from a
    platform at ``lat, lon`` heading ``heading_deg``; None where it cannot be
    placed (no altitude for a drone, box point at/above the horizon or beyond
    ``max_range_m``)."""
    x1, y1, x2, y2 = (float(c) for c in xyxy)
    if mount.is_drone:
        if alt_m is None or not alt_m > 0:
            return None
        height = float(alt_m)
        pitch = float(gimbal_pitch_deg) if gimbal_pitch_deg is not None else mount.pitch_deg
        yaw = float(gimbal_yaw_deg) if gimbal_yaw_deg is not None else heading_deg + mount.yaw_offset_deg
        u, v = (x1 + x2) / 2, (y1 + y2) / 2
    else:
        if mount.height_m is None or not mount.height_m > 0:
            return None
        height = float(mount.height_m)
        pitch = mount.pitch_deg
        yaw = heading_deg + mount.yaw_offset_deg
        u, v = (x1 + x2) / 2, y2
    yaw %= 360.0

    def ground(uu, vv, p=pitch, h=height):
        return pixel_to_ground(cam, uu, vv, height_m=h, pitch_deg=p, yaw_deg=yaw, max_range_m=max_range_m)

    e, n, ok = ground(u, v)
    if not ok:
        return None

    def spread(points) -> float:
        """Largest displacement among perturbed solutions; one that leaves the
        ground (above the horizon / out of range) counts as the rest of the range."""
        worst = 0.0
        for pe, pn, pok in points:
            d = math.hypot(pe - e, pn - n) if pok else max(max_range_m - math.hypot(e, n), 0.0)
            worst = max(worst, d)
        return worst

    dv = V_SIGMA_PX + V_SIGMA_BOX_FRACTION * abs(y2 - y1)
    err_px = spread([ground(u, v - dv), ground(u, v + dv)])
    err_pitch = spread([ground(u, v, pitch - PITCH_SIGMA_DEG), ground(u, v, min(pitch + PITCH_SIGMA_DEG, 90.0))])
    terms = [gps_error_m, err_px, err_pitch]
    if mount.is_drone:
        dh = ALT_SIGMA_M + ALT_SIGMA_FRACTION * height
        terms.append(spread([ground(u, v, pitch, max(height - dh, 0.1)), ground(u, v, pitch, height + dh)]))
    error = float(np.sqrt(np.sum(np.square(terms))))
    la, lo = offset_latlon(lat, lon, e, n)
    method = "nadir" if mount.is_drone and abs(pitch + 90.0) <= NADIR_TOLERANCE_DEG else "ground-plane"
    return GeoFix(lat=la, lon=lo, error_m=error, range_m=float(math.hypot(e, n)), method=method)
