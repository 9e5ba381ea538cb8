"""Was a place in view? The ground seen by a batch's sampled frames.

Every frame that went through the detector is stored as a :class:`View`
(position, heading, and for drones altitude and gimbal) and every file keeps
its camera and mount (:class:`ViewGeometry`). :func:`sight` projects a ground
point into one view; :func:`coverage` says how well a set of views looked at
a place with a given error radius, which is what lets 核查 tell "the issue is
gone" from "nobody looked".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from city.observations import View
from city.verification import VerificationRules
from vision.camera import Camera, enu_offset, ground_to_pixel, offset_latlon
from vision.manifest import MountSpec

NADIR_TOLERANCE_DEG = 5.0


class CameraGeometry(BaseModel):
    width: int
    height: int
    hfov_deg: float


class ViewGeometry(BaseModel):
    """How one file's views project onto the ground (``BatchFile.stats["view"]``)."""

    camera: CameraGeometry
    mount: MountSpec
    gps_error_m: float = 5.0
    heading_error_deg: float = 3.0

    @property
    def platform(self) -> str:
        return "drone" if self.mount.kind in ("nadir", "oblique") else "vehicle"

    def cam(self) -> Camera:
        return Camera(self.camera.width, self.camera.height, self.camera.hfov_deg)


@dataclass(frozen=True)
class Sight:
    """Where a ground point appears in one view."""

    u: float
    v: float
    range_m: float
    px_per_m: float


def _pointing(view: View, geom: ViewGeometry) -> tuple[float, float, float] | None:
    """(camera height, pitch, yaw) of a view, or None when unknown."""
    m = geom.mount
    if geom.platform == "drone":
        if view.alt is None or view.alt <= 0:
            return None
        pitch = view.pitch if view.pitch is not None else m.pitch_deg
        yaw = view.yaw if view.yaw is not None else (view.heading + m.yaw_offset_deg if view.heading is not None else None)
        if yaw is None:
            if abs(pitch + 90.0) > NADIR_TOLERANCE_DEG:
                return None
            yaw = math.nan  # straight down: the footprint's inscribed circle does not depend on yaw
        return view.alt, pitch, yaw
    if view.heading is None or m.height_m is None:
        return None
    return m.height_m, m.pitch_deg, view.heading + m.yaw_offset_deg


def sight(view: View, geom: ViewGeometry, lat: float, lon: float) -> Sight | None:
    """The pixel (u, v) where the ground point (lat, lon) appears in ``view``,
    its ground range and the image scale there; None when it is behind the
    camera or the view's pointing is unknown."""
    pointing = _pointing(view, geom)
    if pointing is None:
        return None
    height, pitch, yaw = pointing
    cam = geom.cam()
    east, north = enu_offset(view.lat, view.lon, lat, lon)
    rng = math.hypot(east, north)
    px_per_m = cam.fx / math.sqrt(rng * rng + height * height)
    if math.isnan(yaw):  # nadir without a yaw: inside the inscribed circle, position in the frame unknown
        half = height * math.tan(math.radians(min(cam.hfov_deg, cam.vfov_deg)) / 2)
        return Sight(cam.cx, cam.cy, rng, px_per_m) if rng <= half else None
    u, v, in_front = ground_to_pixel(cam, east, north, height_m=height, pitch_deg=pitch, yaw_deg=yaw % 360)
    if not in_front:
        return None
    return Sight(float(u), float(v), rng, px_per_m)


def in_view(s: Sight | None, geom: ViewGeometry, rules: VerificationRules) -> bool:
    """Is a sighted point well inside the frame, near enough and imaged large enough
    for the detector to have found an issue there? The margin widens with the
    heading's possible error (the point may really be that far sideways)."""
    if s is None:
        return False
    cam = geom.cam()
    margin = max(rules.margin_px, cam.fx * math.tan(math.radians(geom.heading_error_deg)))
    return (margin <= s.u <= cam.width - margin and rules.margin_px <= s.v <= cam.height - rules.margin_px
            and s.range_m <= rules.max_range_m[geom.platform] and s.px_per_m >= rules.min_px_per_m)


@dataclass
class Coverage:
    """How a set of views looked at a place."""

    frames: int
    """views with the place's centre in view"""
    fraction: float
    """share of the error circle's sample points in view in at least one frame"""
    confidence: float
    """chance that an issue there would have been detected"""
    best: tuple[str, View, Sight] | None
    """the (file, view, sight) with the largest image scale, for the "after" evidence"""


def circle_points(lat: float, lon: float, radius_m: float, n: int = 8) -> list[tuple[float, float]]:
    """The centre and ``n`` points on the circle of ``radius_m`` around it."""
    pts = [(lat, lon)]
    for k in range(n if radius_m > 0 else 0):
        a = 2 * math.pi * k / n
        pts.append(offset_latlon(lat, lon, radius_m * math.sin(a), radius_m * math.cos(a)))
    return pts


def coverage(views: list[tuple[str, View]], geometry: dict[str, ViewGeometry], lat: float, lon: float,
             error_m: float, rules: VerificationRules, recall: float | None = None) -> Coverage:
    """How well ``views`` (file, view) looked at (lat, lon) ± ``error_m``.

    confidence = fraction × (1 − (1 − recall)^n), n = frames with the centre in
    view, capped at ``rules.max_independent_frames``."""
    pts = circle_points(lat, lon, min(error_m, rules.max_case_error_m))
    seen = np.zeros(len(pts), bool)
    frames = 0
    best: tuple[str, View, Sight] | None = None
    for file, view in views:
        geom = geometry.get(file)
        if geom is None:
            continue
        for i, (la, lo) in enumerate(pts):
            if seen[i] and i:
                continue
            s = sight(view, geom, la, lo)
            if not in_view(s, geom, rules):
                continue
            seen[i] = True
            if i == 0:
                frames += 1
                if best is None or s.px_per_m > best[2].px_per_m:
                    best = (file, view, s)
    fraction = float(seen.mean())
    p = recall if recall is not None else rules.per_frame_recall
    confidence = fraction * (1 - (1 - p) ** min(frames, rules.max_independent_frames))
    return Coverage(frames=frames, fraction=fraction, confidence=float(confidence), best=best)
