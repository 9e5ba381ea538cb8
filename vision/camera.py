"""Pinhole camera geometry: the camera model, how it is mounted, and the
flat-ground mapping between ground points and pixels (both ways), plus the
local tangent plane used to turn metres into lat/lon.

Frames and conventions
----------------------
* World: local ENU in metres, ``east, north`` relative to the point on the
  ground directly below the camera; ``up`` is the camera's height.
* Camera: OpenCV convention, x right, y down, z along the optical axis.
  Pixel ``(u, v)``: u to the right, v down, ``(0, 0)`` the top-left corner of
  the top-left pixel (so the principal point is ``(width/2, height/2)``).
* Attitude: ``yaw_deg`` is the absolute direction of the optical axis in
  degrees clockwise from north; ``pitch_deg`` its elevation (0 horizon,
  negative down, -90 straight down); ``roll_deg`` turns the image about the
  optical axis, positive = the camera's right side dips (the scene appears
  turned anticlockwise). At pitch -90 the image top points along ``yaw``.

Everything is vectorised over numpy arrays and the ground is flat (z = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from city.geo import EARTH_RADIUS_M

FRAME_WIDTH_35MM = 36.0
"""Width of a 35 mm film frame in millimetres (for 35 mm-equivalent focals)."""


@dataclass(frozen=True)
class Camera:
    """An ideal pinhole camera with square pixels and a centred principal point."""

    width: int
    height: int
    hfov_deg: float

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"bad image size {self.width}x{self.height}")
        if not 0.0 < self.hfov_deg < 180.0:
            raise ValueError(f"hfov_deg must be in (0, 180), got {self.hfov_deg}")

    @property
    def fx(self) -> float:
        return (self.width / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)

    @property
    def fy(self) -> float:
        return self.fx

    @property
    def cx(self) -> float:
        return self.width / 2.0

    @property
    def cy(self) -> float:
        return self.height / 2.0

    @property
    def vfov_deg(self) -> float:
        return math.degrees(2.0 * math.atan(self.cy / self.fy))

    @property
    def K(self) -> np.ndarray:
        """The 3x3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_focal_35mm(cls, focal_35mm: float, width: int, height: int) -> Camera:
        """From a 35 mm-equivalent focal length (36 mm wide frame)."""
        return cls.from_focal(focal_35mm, FRAME_WIDTH_35MM, width, height)

    @classmethod
    def from_focal(cls, focal_mm: float, sensor_width_mm: float, width: int, height: int) -> Camera:
        """From a true focal length and the sensor width it images across ``width`` pixels."""
        if focal_mm <= 0 or sensor_width_mm <= 0:
            raise ValueError("focal and sensor width must be positive")
        hfov = 2.0 * math.degrees(math.atan(sensor_width_mm / (2.0 * focal_mm)))
        return cls(width=int(width), height=int(height), hfov_deg=hfov)

    def scaled(self, width: int, height: int) -> Camera:
        """The same horizontal field of view at another resolution."""
        return Camera(width=int(width), height=int(height), hfov_deg=self.hfov_deg)


@dataclass(frozen=True)
class Mount:
    """How a camera sits on its platform."""

    kind: Literal["forward", "side", "nadir", "oblique"]
    height_m: float | None
    """Camera height above the road for vehicles; None for drones (from telemetry)."""
    pitch_deg: float
    """0 = horizon, negative = down, -90 = nadir (gimbal telemetry overrides it)."""
    yaw_offset_deg: float = 0.0
    """Relative to the platform heading: forward 0, side-right +90, side-left -90."""

    @property
    def is_drone(self) -> bool:
        return self.kind in ("nadir", "oblique")


# -- rotations ---------------------------------------------------------------------------


def rotation_world_to_camera(pitch_deg: float, yaw_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """The 3x3 matrix R with ``p_cam = R @ p_enu`` (rows: camera x, y, z in ENU)."""
    p, y, r = math.radians(pitch_deg), math.radians(yaw_deg), math.radians(roll_deg)
    fwd = np.array([math.sin(y) * math.cos(p), math.cos(y) * math.cos(p), math.sin(p)])
    right = np.array([math.cos(y), -math.sin(y), 0.0])
    up = np.cross(right, fwd)
    right_r = math.cos(r) * right - math.sin(r) * up
    up_r = math.cos(r) * up + math.sin(r) * right
    return np.stack([right_r, -up_r, fwd])


def ground_homography(cam: Camera, *, height_m: float, pitch_deg: float, yaw_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """The 3x3 homography taking ground ``(east, north, 1)`` to image ``(u, v, 1)``
    (up to scale; points behind the camera come out with a negative last row)."""
    R = rotation_world_to_camera(pitch_deg, yaw_deg, roll_deg)
    M = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -float(height_m)]])
    return cam.K @ R @ M


# -- ground <-> pixel ---------------------------------------------------------------------


def ground_to_pixel(cam: Camera, east, north, *, height_m: float, pitch_deg: float, yaw_deg: float, roll_deg: float = 0.0):
    """Project ground points to pixels.

    ``east, north``: metres relative to the ground point below the camera.
    Returns ``(u, v, in_front)``; ``u, v`` are NaN where the point is not in
    front of the camera (``in_front`` False). Pixels may fall outside the image.
    """
    e = np.asarray(east, dtype=float)
    n = np.asarray(north, dtype=float)
    e, n = np.broadcast_arrays(e, n)
    R = rotation_world_to_camera(pitch_deg, yaw_deg, roll_deg)
    pts = np.stack([e, n, np.full_like(e, -float(height_m))], axis=-1)
    pc = pts @ R.T
    z = pc[..., 2]
    in_front = z > 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(in_front, cam.fx * pc[..., 0] / z + cam.cx, np.nan)
        v = np.where(in_front, cam.fy * pc[..., 1] / z + cam.cy, np.nan)
    if u.ndim == 0:
        return float(u), float(v), bool(in_front)
    return u, v, in_front


def pixel_rays(cam: Camera, u, v, *, pitch_deg: float, yaw_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Unit-free ENU direction vectors (..., 3) of the rays through pixels ``(u, v)``."""
    u = np.asarray(u, dtype=float)
    v = np.asarray(v, dtype=float)
    u, v = np.broadcast_arrays(u, v)
    R = rotation_world_to_camera(pitch_deg, yaw_deg, roll_deg)
    dc = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1)
    return dc @ R  # R is orthonormal: R.T @ d for each row


def pixel_to_ground(cam: Camera, u, v, *, height_m: float, pitch_deg: float, yaw_deg: float, roll_deg: float = 0.0, max_range_m: float = 200.0):
    """Intersect the rays through pixels ``(u, v)`` with the flat ground.

    Returns ``(east, north, valid)`` in metres relative to the ground point
    below the camera; ``valid`` is False (and east/north NaN) at or above the
    horizon and beyond ``max_range_m`` of horizontal distance.
    """
    d = pixel_rays(cam, u, v, pitch_deg=pitch_deg, yaw_deg=yaw_deg, roll_deg=roll_deg)
    dz = d[..., 2]
    down = dz < -1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(down, float(height_m) / -dz, np.nan)
        e = t * d[..., 0]
        n = t * d[..., 1]
    rng = np.hypot(e, n)
    valid = down & (rng <= max_range_m)
    e = np.where(valid, e, np.nan)
    n = np.where(valid, n, np.nan)
    if e.ndim == 0:
        return float(e), float(n), bool(valid)
    return e, n, valid


def horizon_v(cam: Camera, pitch_deg: float) -> float:
    """Image row of the horizon for a level (roll 0) camera; <0 when above the frame."""
    return cam.cy + cam.fy * math.tan(math.radians(pitch_deg))


def gsd_m(cam: Camera, altitude_m: float) -> float:
    """Ground sampling distance (metres per pixel) at the image centre of a nadir view."""
    return 2.0 * float(altitude_m) * math.tan(math.radians(cam.hfov_deg) / 2.0) / cam.width


# -- local tangent plane ------------------------------------------------------------------


def enu_offset(lat0, lon0, lat, lon):
    """``(east, north)`` in metres of (lat, lon) from (lat0, lon0) on the local
    tangent plane (equirectangular at lat0; < 1 mm off the sphere within 1 km).
    Exact inverse of :func:`offset_latlon`."""
    lat0 = np.asarray(lat0, dtype=float)
    dlat = np.radians(np.asarray(lat, dtype=float) - lat0)
    dlon = np.radians((np.asarray(lon, dtype=float) - np.asarray(lon0, dtype=float) + 180.0) % 360.0 - 180.0)
    north = EARTH_RADIUS_M * dlat
    east = EARTH_RADIUS_M * np.cos(np.radians(lat0)) * dlon
    if np.ndim(east) == 0:
        return float(east), float(north)
    return east, north


def offset_latlon(lat0, lon0, east, north):
    """The (lat, lon) ``east, north`` metres from (lat0, lon0) on the local tangent plane."""
    lat0 = np.asarray(lat0, dtype=float)
    lat = lat0 + np.degrees(np.asarray(north, dtype=float) / EARTH_RADIUS_M)
    lon = np.asarray(lon0, dtype=float) + np.degrees(np.asarray(east, dtype=float) / (EARTH_RADIUS_M * np.cos(np.radians(lat0))))
    if np.ndim(lat) == 0:
        return float(lat), float(lon)
    return lat, lon
