"""Coordinates: WGS-84 points, parsing what users type, GCJ-02 ("Mars
coordinates") conversion, distances, and the fixed grid of cells that the case
store keys its dedupe lookups on.

Conventions: every function here takes ``lat, lon`` in that order, in degrees,
WGS-84 unless its name says otherwise. GeoJSON and shapely use ``(lon, lat)``:
swap only at that boundary. The numeric functions accept floats or numpy
arrays (vectorised) and return floats for float input.
"""

from __future__ import annotations

import math
import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from city.errors import InvalidInput

EARTH_RADIUS_M = 6_371_008.8
"""Mean earth radius (IUGG), used by :func:`haversine_m` and the cell cover."""


class LatLon(BaseModel):
    """A WGS-84 point in degrees; ``str()`` gives ``"29.563100,106.550200"``."""

    model_config = ConfigDict(frozen=True)

    lat: float = Field(ge=-90, le=90, description="latitude 纬度, WGS-84 degrees")
    lon: float = Field(ge=-180, le=180, description="longitude 经度, WGS-84 degrees")

    def __str__(self) -> str:
        return f"{self.lat:.6f},{self.lon:.6f}"


def _out(*arrays: np.ndarray):
    """Return floats for 0-d results, arrays otherwise."""
    res = tuple(float(a) if np.ndim(a) == 0 else a for a in arrays)
    return res if len(res) > 1 else res[0]


# -- China and GCJ-02 -------------------------------------------------------------------

# The rough box the GCJ-02 transform applies in (the one every public
# implementation uses): it holds mainland China but also some neighbours.
_CHINA_LON = (72.004, 137.8347)
_CHINA_LAT = (0.8293, 55.8271)


def in_china(lat, lon):
    """True where the point lies in mainland China's rough bounding box
    (where Chinese map apps shift coordinates to GCJ-02)."""
    lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    inside = (lon >= _CHINA_LON[0]) & (lon <= _CHINA_LON[1]) & (lat >= _CHINA_LAT[0]) & (lat <= _CHINA_LAT[1])
    return bool(inside) if inside.ndim == 0 else inside


_GCJ_A = 6378245.0  # Krasovsky 1940 semi-major axis, as the transform uses it
_GCJ_EE = 0.00669342162296594323


def _gcj_delta(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The GCJ-02 offset (dlat, dlon) in degrees at a WGS-84 point."""
    x, y = lon - 105.0, lat - 35.0
    pi = math.pi
    common = (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x)) + common
    dlat += (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x)) + common
    dlon += (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    rad = np.radians(lat)
    magic = 1.0 - _GCJ_EE * np.sin(rad) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = dlat * 180.0 / ((_GCJ_A * (1.0 - _GCJ_EE)) / (magic * sqrt_magic) * pi)
    dlon = dlon * 180.0 / (_GCJ_A / sqrt_magic * np.cos(rad) * pi)
    return dlat, dlon


def wgs84_to_gcj02(lat, lon):
    """WGS-84 → GCJ-02 (the coordinates Amap/高德, Tencent and other Chinese map
    apps show). Identity outside China. Returns ``(lat, lon)``."""
    lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    dlat, dlon = _gcj_delta(lat, lon)
    inside = np.asarray(in_china(lat, lon))
    return _out(np.where(inside, lat + dlat, lat), np.where(inside, lon + dlon, lon))


def gcj02_to_wgs84(lat, lon, tol_deg: float = 1e-10, max_iter: int = 30):
    """GCJ-02 → WGS-84, exact to ``tol_deg`` by fixed-point iteration of the
    forward transform (the usual one-step inverse is off by up to ~1 m).
    Identity outside China. Returns ``(lat, lon)``."""
    glat, glon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    wlat, wlon = glat.copy(), glon.copy()
    for _ in range(max_iter):
        flat, flon = wgs84_to_gcj02(wlat, wlon)
        elat, elon = np.asarray(flat) - glat, np.asarray(flon) - glon
        wlat, wlon = wlat - elat, wlon - elon
        if max(np.max(np.abs(elat), initial=0.0), np.max(np.abs(elon), initial=0.0)) < tol_deg:
            break
    return _out(wlat, wlon)


# -- parsing ----------------------------------------------------------------------------

_SPLIT = re.compile(r"\s*[,，]\s*|\s+")
_EXPECTED = "expected LAT,LON (纬度,经度) in decimal degrees, e.g. '29.5631,106.5502'"


def parse_latlon(text: str, crs: Literal["wgs84", "gcj02"] = "wgs84") -> LatLon:
    """Parse ``"29.56,106.55"`` (also ``"29.56, 106.55"``, ``"29.56，106.55"``,
    ``"29.56 106.55"``) into a WGS-84 :class:`LatLon`.

    ``crs="gcj02"`` says the text was copied from a Chinese map app; it is
    converted to WGS-84. Raises :class:`InvalidInput` for anything that is not
    two numbers, values out of range, and a likely LON,LAT order. Points
    outside China are accepted (see :func:`in_china`)."""
    if crs not in ("wgs84", "gcj02"):
        raise InvalidInput(f"坐标系 crs {crs!r} 不支持 (unsupported): expected 'wgs84' or 'gcj02'")
    raw = str(text).strip().strip("()[]（）【】").strip()
    parts = [p for p in _SPLIT.split(raw) if p]
    try:
        if len(parts) != 2:
            raise ValueError
        a, b = float(parts[0]), float(parts[1])
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError
    except ValueError:
        raise InvalidInput(f"坐标 {text!r} 无法解析 (not a coordinate): {_EXPECTED}") from None
    if (90 < abs(a) <= 180 and abs(b) <= 90) or (73 <= a <= 136 and 3 <= b <= 54):
        raise InvalidInput(
            f"坐标 {text!r} 经纬度顺序可能颠倒: looks like LON,LAT; expected LAT,LON (纬度,经度) — "
            f"did you mean '{parts[1]},{parts[0]}'?"
        )
    if abs(a) > 90 or abs(b) > 180:
        raise InvalidInput(
            f"坐标 {text!r} 超出范围 (out of range): latitude 纬度 must be in -90..90 and "
            f"longitude 经度 in -180..180"
        )
    if crs == "gcj02":
        a, b = gcj02_to_wgs84(a, b)
    return LatLon(lat=a, lon=b)


# -- distances --------------------------------------------------------------------------


def haversine_m(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres on a sphere of :data:`EARTH_RADIUS_M`
    (error vs. the ellipsoid < 0.5%). Vectorised over numpy arrays."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlam = np.radians(np.asarray(lon2, dtype=float) - np.asarray(lon1, dtype=float))
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlam / 2) ** 2
    return _out(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def destination(lat, lon, bearing_deg, distance_m):
    """The point ``distance_m`` from (lat, lon) along the initial bearing
    (degrees clockwise from north), on the same sphere as :func:`haversine_m`.
    Returns ``(lat, lon)`` with lon in [-180, 180)."""
    p1, l1 = np.radians(lat), np.radians(lon)
    th = np.radians(bearing_deg)
    d = np.asarray(distance_m, dtype=float) / EARTH_RADIUS_M
    p2 = np.arcsin(np.clip(np.sin(p1) * np.cos(d) + np.cos(p1) * np.sin(d) * np.cos(th), -1.0, 1.0))
    l2 = l1 + np.arctan2(np.sin(th) * np.sin(d) * np.cos(p1), np.cos(d) - np.sin(p1) * np.sin(p2))
    lon2 = (np.degrees(l2) + 180.0) % 360.0 - 180.0
    return _out(np.degrees(p2), lon2)


# -- the dedupe cell grid ---------------------------------------------------------------

CELL_DEG = 0.002
"""Cell height in degrees of latitude (≈ 222 m)."""
CELL_DEG_LON = 0.0025
"""Cell width in degrees of longitude, constant everywhere (≈ 242 m at
Chongqing, 213 m at Beijing; narrower towards the poles)."""
_NCOLS = round(360 / CELL_DEG_LON)
_NROWS = round(180 / CELL_DEG)
MAX_CELL_RADIUS_M = 10_000.0
"""Largest radius :func:`cells_within` accepts (≈ 30,000 cells at that size)."""


def _row(lat):
    return np.clip(np.floor((np.asarray(lat, dtype=float) + 90.0) / CELL_DEG), 0, _NROWS - 1).astype(np.int64)


def _col(lon):
    """Column of an unwrapped longitude; callers take it modulo ``_NCOLS``."""
    return np.floor((np.asarray(lon, dtype=float) + 180.0) / CELL_DEG_LON).astype(np.int64)


def cell_of(lat, lon):
    """The id of the grid cell holding the point: ``row * 144000 + col`` with
    ``row = floor((lat+90)/CELL_DEG)``, ``col = floor((lon+180)/CELL_DEG_LON)``
    (< 1.3e10, safe in a 64-bit column). An int, or an int64 array for arrays."""
    cell = _row(lat) * _NCOLS + _col(lon) % _NCOLS
    return int(cell) if cell.ndim == 0 else cell


def cells_within(lat: float, lon: float, radius_m: float) -> list[int]:
    """Every cell that a point within ``radius_m`` (great-circle distance) of
    (lat, lon) can fall in, sorted: the cells of the spherical cap's bounding
    box, exact at any latitude (across the antimeridian and over a pole too).
    A dedupe lookup queries ``cell IN cells_within(...)`` and then filters by
    :func:`haversine_m`."""
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidInput(f"cells_within: point ({lat}, {lon}) out of range")
    if not (0 <= radius_m <= MAX_CELL_RADIUS_M):
        raise InvalidInput(f"cells_within: radius_m must be in 0..{MAX_CELL_RADIUS_M:g} m, got {radius_m}")
    d = radius_m * (1 + 1e-9) / EARTH_RADIUS_M  # angular radius, with a hair of margin
    eps = 1e-9  # degrees, against rounding at the box edges
    dlat = math.degrees(d) + eps
    rows = range(int(_row(lat - dlat)), int(_row(lat + dlat)) + 1)
    cos_lat = math.cos(math.radians(lat))
    if lat + dlat >= 90 or lat - dlat <= -90 or math.sin(d) >= cos_lat:
        cols = range(_NCOLS)  # the cap holds a pole: every longitude
    else:
        dlon = math.degrees(math.asin(math.sin(d) / cos_lat)) + eps
        lo, hi = int(_col(lon - dlon)), int(_col(lon + dlon))
        cols = range(_NCOLS) if hi - lo + 1 >= _NCOLS else sorted({c % _NCOLS for c in range(lo, hi + 1)})
    return sorted(r * _NCOLS + c for r in rows for c in cols)
