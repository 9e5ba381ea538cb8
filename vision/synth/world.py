"""A seeded street scene on a local metric frame: a straight road (asphalt,
lane markings, kerbs, sidewalks, verges) drawn into a top-down ground raster,
with the detector's objects lying on the ground at known positions.

Frames: the road frame has ``s`` metres along the road from the origin and
``t`` metres to the left of the direction of travel (road centre t = 0). The
world frame is local ENU (east, north) metres from the origin, which is
anchored at ``origin_lat, origin_lon``. Raster pixel ``(col, row)`` covers
``s = s_min + (col + 0.5) * res``, ``t = t_max - (row + 0.5) * res``.
Colours are BGR (OpenCV).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from vision.camera import offset_latlon
from vision.synth import class_by_name, load_classes

DEFAULT_ORIGIN = (29.5800, 106.5250)
"""Default scene anchor (lat, lon): inside the sample jurisdiction's 观音桥街道."""

LANE_M = 3.5


@dataclass
class PlacedObject:
    """One object on the ground."""

    cls: str
    cls_id: int
    s: float
    t: float
    east: float
    north: float
    lat: float
    lon: float
    footprint: np.ndarray
    """(N, 2) ground polygon, ENU metres from the world origin."""


@dataclass
class World:
    """A generated street scene and its ground raster."""

    seed: int
    origin_lat: float
    origin_lon: float
    heading_deg: float
    """Direction of travel along the road, degrees clockwise from north."""
    s_min: float
    s_max: float
    t_max: float
    res_m: float
    road_half_m: float
    sidewalk_m: float
    lanes_per_side: int
    raster: np.ndarray
    border_bgr: tuple[int, int, int]
    objects: list[PlacedObject] = field(default_factory=list)
    style: dict = field(default_factory=dict)

    # -- frames --
    @property
    def along(self) -> np.ndarray:
        h = math.radians(self.heading_deg)
        return np.array([math.sin(h), math.cos(h)])

    @property
    def left(self) -> np.ndarray:
        h = math.radians(self.heading_deg)
        return np.array([-math.cos(h), math.sin(h)])

    def road_to_enu(self, s, t):
        s, t = np.asarray(s, dtype=float), np.asarray(t, dtype=float)
        a, l = self.along, self.left
        return s * a[0] + t * l[0], s * a[1] + t * l[1]

    def enu_to_road(self, east, north):
        east, north = np.asarray(east, dtype=float), np.asarray(north, dtype=float)
        a, l = self.along, self.left
        return east * a[0] + north * a[1], east * l[0] + north * l[1]

    def latlon(self, east, north):
        return offset_latlon(self.origin_lat, self.origin_lon, east, north)

    def raster_to_enu_matrix(self) -> np.ndarray:
        """3x3 affine taking raster ``(col, row, 1)`` (pixel-centre convention of
        cv2.warpPerspective: pixel centres at integer coordinates) to ``(east, north, 1)``."""
        r = self.res_m
        # s = s_min + (col + 0.5) r ; t = t_max - (row + 0.5) r
        S = np.array([[r, 0.0, self.s_min + 0.5 * r], [0.0, -r, self.t_max - 0.5 * r], [0.0, 0.0, 1.0]])
        a, l = self.along, self.left
        E = np.array([[a[0], l[0], 0.0], [a[1], l[1], 0.0], [0.0, 0.0, 1.0]])
        return E @ S

    def road_to_px(self, s, t):
        s, t = np.asarray(s, dtype=float), np.asarray(t, dtype=float)
        return (s - self.s_min) / self.res_m - 0.5, (self.t_max - t) / self.res_m - 0.5

    def px_to_road(self, col, row):
        col, row = np.asarray(col, dtype=float), np.asarray(row, dtype=float)
        return self.s_min + (col + 0.5) * self.res_m, self.t_max - (row + 0.5) * self.res_m

    def lane_centre_t(self, lane: int = 0) -> float:
        """``t`` of the centre of the ``lane``-th lane to the right (0 = kerbside lane... counted from the centre line)."""
        return -(lane + 0.5) * (self.road_half_m / self.lanes_per_side)


# -- noise helpers -------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean unit-ish float32 noise with features ~scale_px pixels wide."""
    h, w = shape
    sh, sw = max(2, int(h / scale_px) + 2), max(2, int(w / scale_px) + 2)
    small = rng.standard_normal((sh, sw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _grain(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel grain, float32, from a tiled 256x256 block (fast for big rasters)."""
    tile = rng.standard_normal((256, 256)).astype(np.float32)
    h, w = shape
    return np.tile(tile, (h // 256 + 1, w // 256 + 1))[:h, :w]


def _blob_polygon(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, angle: float, rough: float = 0.25, n: int = 28) -> np.ndarray:
    """An irregular closed polygon (n, 2) around (cx, cy) with radii rx, ry."""
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    k = np.arange(1, 5)
    coef = rng.normal(0, rough, (4, 2)) / k[:, None]
    rad = 1.0 + (coef[:, 0:1] * np.cos(k[:, None] * th) + coef[:, 1:2] * np.sin(k[:, None] * th)).sum(0)
    rad = np.clip(rad + rng.normal(0, rough * 0.15, n), 0.35, 1.8)
    x, y = rx * rad * np.cos(th), ry * rad * np.sin(th)
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def _fill(img: np.ndarray, poly: np.ndarray, color, shift: int = 2) -> None:
    cv2.fillPoly(img, [np.round(poly * (1 << shift)).astype(np.int32)], tuple(int(c) for c in color), cv2.LINE_AA, shift)


def _jitter_color(rng, base, spread=12):
    return tuple(int(np.clip(c + rng.normal(0, spread), 0, 255)) for c in base)


# -- object painters: each draws into the raster and returns its footprint (raster px) --


def _paint_pothole(img, rng, cx, cy, size_px, asphalt):
    rx = size_px / 2
    ry = rx * rng.uniform(0.5, 1.0)
    ang = rng.uniform(0, np.pi)
    poly = _blob_polygon(rng, cx, cy, rx, ry, ang, rough=rng.uniform(0.15, 0.4))
    rim = _blob_polygon(rng, cx, cy, rx * 1.12, ry * 1.12, ang, rough=0.1)
    _fill(img, rim, _jitter_color(rng, [min(255, a * 1.25 + 10) for a in asphalt], 10))
    dark = rng.uniform(0.3, 0.55)
    _fill(img, poly, [a * dark for a in asphalt])
    if rng.random() < 0.3:  # standing water
        inner = _blob_polygon(rng, cx, cy, rx * 0.7, ry * 0.7, ang, rough=0.2)
        _fill(img, inner, _jitter_color(rng, (70, 60, 50), 10))
    # gravel speckles inside
    for _ in range(int(rng.integers(5, 30))):
        cv2.circle(img, (int(cx + (poly[rng.integers(len(poly))][0] - cx) * rng.uniform(0, 0.85)),
                         int(cy + (poly[rng.integers(len(poly))][1] - cy) * rng.uniform(0, 0.85))),
                   int(rng.integers(1, 3)), _jitter_color(rng, (120, 120, 125), 20), -1)
    return rim


def _crack_walk(rng, x, y, ang, length, step):
    pts = [(x, y)]
    n = max(2, int(length / step))
    for _ in range(n):
        ang += rng.normal(0, 0.35)
        x += step * math.cos(ang)
        y += step * math.sin(ang)
        pts.append((x, y))
    return np.array(pts)


def _paint_crack(img, rng, cx, cy, size_px, asphalt):
    color = [a * rng.uniform(0.25, 0.45) for a in asphalt]
    thick = int(rng.integers(2, 5))
    all_pts = []
    if rng.random() < 0.5:  # alligator: a net of cells
        rx, ry = size_px / 2, size_px / 2 * rng.uniform(0.4, 0.9)
        ang = rng.uniform(0, np.pi)
        n = int(rng.integers(8, 20))
        pts = rng.uniform(-1, 1, (n, 2)) * [rx, ry]
        ca, sa = math.cos(ang), math.sin(ang)
        pts = np.stack([cx + ca * pts[:, 0] - sa * pts[:, 1], cy + sa * pts[:, 0] + ca * pts[:, 1]], 1)
        for i in range(n):
            d = np.hypot(*(pts - pts[i]).T)
            for j in np.argsort(d)[1:4]:
                seg = _crack_walk(rng, *pts[i], math.atan2(*(pts[j] - pts[i])[::-1]), d[j], max(3.0, d[j] / 4))
                cv2.polylines(img, [np.round(seg).astype(np.int32)], False, _jitter_color(rng, color, 5), thick, cv2.LINE_AA)
                all_pts.append(seg)
    else:  # longitudinal/transverse crack with branches
        ang = rng.uniform(0, 2 * np.pi)
        main = _crack_walk(rng, cx - math.cos(ang) * size_px / 2, cy - math.sin(ang) * size_px / 2, ang, size_px, size_px / 20)
        cv2.polylines(img, [np.round(main).astype(np.int32)], False, color, thick + 1, cv2.LINE_AA)
        all_pts.append(main)
        for _ in range(int(rng.integers(1, 5))):
            p = main[rng.integers(len(main))]
            br = _crack_walk(rng, p[0], p[1], ang + rng.choice([-1, 1]) * rng.uniform(0.5, 1.3), size_px * rng.uniform(0.15, 0.4), size_px / 25)
            cv2.polylines(img, [np.round(br).astype(np.int32)], False, color, max(1, thick - 1), cv2.LINE_AA)
            all_pts.append(br)
    pts = np.concatenate(all_pts).astype(np.float32)
    return cv2.convexHull(pts)[:, 0, :].astype(float)


def _circle(cx, cy, r, n=32):
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(th), cy + r * np.sin(th)], 1)


def _paint_manhole(img, rng, cx, cy, size_px, asphalt, broken: bool):
    r = size_px / 2
    square = rng.random() < 0.2
    ang = rng.uniform(0, np.pi / 2)
    if square:
        c, s_ = math.cos(ang), math.sin(ang)
        q = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * r
        outer = np.stack([cx + c * q[:, 0] - s_ * q[:, 1], cy + s_ * q[:, 0] + c * q[:, 1]], 1)
        inner = np.array([cx, cy]) + (outer - np.array([cx, cy])) * 0.85
    else:
        outer = _circle(cx, cy, r)
        inner = _circle(cx, cy, r * 0.86)
    frame = _jitter_color(rng, (95, 100, 105), 15)
    metal = _jitter_color(rng, rng.choice([(70, 75, 80), (55, 65, 80), (90, 90, 90), (60, 60, 60)]), 10)
    _fill(img, outer, frame)
    _fill(img, inner, metal)
    ri = int(r * 0.86)
    pat = rng.integers(0, 3)
    line = tuple(int(m * 0.7) for m in metal)
    if pat == 0:
        for k in (0.3, 0.55, 0.75):
            cv2.circle(img, (int(cx), int(cy)), max(1, int(ri * k)), line, 2, cv2.LINE_AA)
    elif pat == 1:
        for a in np.linspace(0, np.pi, 6, endpoint=False) + ang:
            p1 = (int(cx - ri * 0.9 * math.cos(a)), int(cy - ri * 0.9 * math.sin(a)))
            p2 = (int(cx + ri * 0.9 * math.cos(a)), int(cy + ri * 0.9 * math.sin(a)))
            cv2.line(img, p1, p2, line, 2, cv2.LINE_AA)
    else:
        step = max(4, ri // 4)
        for d in range(-ri, ri + 1, step):
            cv2.line(img, (int(cx + d), int(cy - ri * 0.8)), (int(cx + d), int(cy + ri * 0.8)), line, 2)
            cv2.line(img, (int(cx - ri * 0.8), int(cy + d)), (int(cx + ri * 0.8), int(cy + d)), line, 2)
    if broken:
        mode = rng.integers(0, 3)
        void = _jitter_color(rng, (18, 18, 20), 5)
        if mode == 0:  # chunk missing: a wedge
            a0 = rng.uniform(0, 2 * np.pi)
            a1 = a0 + rng.uniform(0.8, 2.2)
            th = np.linspace(a0, a1, 12)
            wedge = np.concatenate([[[cx + rng.normal(0, ri * 0.1), cy + rng.normal(0, ri * 0.1)]],
                                    np.stack([cx + ri * np.cos(th), cy + ri * np.sin(th)], 1)])
            _fill(img, wedge, void)
        elif mode == 1:  # displaced cover: black crescent
            off = rng.uniform(0.25, 0.5) * ri
            a = rng.uniform(0, 2 * np.pi)
            _fill(img, inner, void)
            _fill(img, _circle(cx + off * math.cos(a), cy + off * math.sin(a), ri * 0.98), metal)
        else:  # missing cover: a hole with debris
            _fill(img, inner, void)
            for _ in range(int(rng.integers(2, 6))):
                p = (int(cx + rng.normal(0, ri * 0.4)), int(cy + rng.normal(0, ri * 0.4)))
                cv2.circle(img, p, int(rng.integers(2, 6)), _jitter_color(rng, (60, 60, 60), 20), -1)
        for _ in range(int(rng.integers(2, 6))):  # radiating cracks
            a = rng.uniform(0, 2 * np.pi)
            seg = _crack_walk(rng, cx, cy, a, ri * rng.uniform(0.8, 1.6), ri / 5)
            cv2.polylines(img, [np.round(seg).astype(np.int32)], False, (25, 25, 25), 2, cv2.LINE_AA)
    return outer


_BAG_COLORS = [(235, 235, 235), (30, 30, 30), (200, 120, 40), (40, 40, 180), (60, 140, 60), (60, 180, 220), (90, 130, 170), (200, 200, 120), (150, 60, 150)]


def _paint_trash(img, rng, cx, cy, rx, ry, n):
    pts = []
    for _ in range(n):
        px, py = cx + rng.normal(0, rx * 0.45), cy + rng.normal(0, ry * 0.45)
        br = rng.uniform(0.12, 0.35) * max(rx, ry)
        col = _jitter_color(rng, _BAG_COLORS[rng.integers(len(_BAG_COLORS))], 18)
        if rng.random() < 0.25:  # box / paper: a rectangle
            a = rng.uniform(0, np.pi)
            q = np.array([[-1, -0.7], [1, -0.7], [1, 0.7], [-1, 0.7]]) * br
            poly = np.stack([px + math.cos(a) * q[:, 0] - math.sin(a) * q[:, 1], py + math.sin(a) * q[:, 0] + math.cos(a) * q[:, 1]], 1)
        else:
            poly = _blob_polygon(rng, px, py, br, br * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi), rough=0.3, n=16)
        shadow = poly + br * 0.15
        _fill(img, shadow, (25, 25, 25))
        _fill(img, poly, col)
        hl = tuple(min(255, int(c * 1.3 + 25)) for c in col)  # a highlight
        cv2.circle(img, (int(px - br * 0.3), int(py - br * 0.3)), max(1, int(br * 0.25)), hl, -1, cv2.LINE_AA)
        pts.append(poly)
    return np.concatenate(pts)


def _paint_garbage(img, rng, cx, cy, size_px, asphalt):
    rx = size_px / 2
    ry = rx * rng.uniform(0.5, 1.0)
    pts = _paint_trash(img, rng, cx, cy, rx * 0.8, ry * 0.8, int(rng.integers(5, 22)))
    return cv2.convexHull(pts.astype(np.float32))[:, 0, :].astype(float)


def _paint_bin_overflow(img, rng, cx, cy, size_px, asphalt):
    bw = size_px * rng.uniform(0.35, 0.5)
    bh = bw * rng.uniform(1.0, 1.3)
    nb = int(rng.integers(1, 3))
    ang = rng.uniform(0, np.pi)
    ca, sa = math.cos(ang), math.sin(ang)
    color = _jitter_color(rng, [(40, 120, 40), (110, 110, 110), (150, 90, 30), (40, 60, 160)][rng.integers(4)], 10)
    polys = []
    for i in range(nb):
        ox = (i - (nb - 1) / 2) * bw * 1.1
        q = np.array([[-bw / 2, -bh / 2], [bw / 2, -bh / 2], [bw / 2, bh / 2], [-bw / 2, bh / 2]]) + [ox, 0]
        poly = np.stack([cx + ca * q[:, 0] - sa * q[:, 1], cy + sa * q[:, 0] + ca * q[:, 1]], 1)
        _fill(img, poly + bw * 0.12, (25, 25, 25))  # shadow
        _fill(img, poly, color)
        lid = np.array([cx, cy]) + (poly - np.array([cx, cy])) * 0.98
        cv2.polylines(img, [np.round(poly).astype(np.int32)], True, tuple(int(c * 0.6) for c in color), 3, cv2.LINE_AA)
        # a hinge line across the lid
        cv2.line(img, tuple(np.round(poly[0] * 0.8 + poly[3] * 0.2).astype(int)), tuple(np.round(poly[1] * 0.8 + poly[2] * 0.2).astype(int)), tuple(int(c * 0.7) for c in color), 2)
        polys.append(lid)
    spill_r = size_px / 2
    trash = _paint_trash(img, rng, cx, cy, spill_r * 0.75, spill_r * 0.75, int(rng.integers(8, 25)))
    top = _paint_trash(img, rng, cx, cy, bw * 0.4, bh * 0.3, int(rng.integers(2, 6)))  # heaped on the lid
    pts = np.concatenate(polys + [trash, top]).astype(np.float32)
    return cv2.convexHull(pts)[:, 0, :].astype(float)


_PAINTERS = {
    "pothole": _paint_pothole,
    "crack": _paint_crack,
    "manhole_broken": lambda img, rng, cx, cy, s, a: _paint_manhole(img, rng, cx, cy, s, a, broken=True),
    "manhole_ok": lambda img, rng, cx, cy, s, a: _paint_manhole(img, rng, cx, cy, s, a, broken=False),
    "garbage": _paint_garbage,
    "bin_overflow": _paint_bin_overflow,
}


# -- the scene -------------------------------------------------------------------------------


def _paint_ground(w: World, rng: np.random.Generator) -> None:
    """Asphalt, markings, kerbs, sidewalks, verges and distractors into ``w.raster``."""
    img = w.raster
    H, W = img.shape[:2]
    res = w.res_m
    _, t_rows = w.px_to_road(np.zeros(H), np.arange(H))
    t_abs = np.abs(t_rows)
    asphalt = np.array(w.style["asphalt"], np.float32)
    # asphalt with blotches and grain
    lum = 1.0 + 0.08 * _smooth_noise(rng, (H, W), 2.0 / res) + 0.05 * _smooth_noise(rng, (H, W), 0.3 / res) + 0.06 * _grain(rng, (H, W))
    base = np.empty((H, W, 3), np.float32)
    side = np.array(w.style["sidewalk"], np.float32)
    verge = np.array(w.style["verge"], np.float32)
    kerb = np.array(w.style["kerb"], np.float32)
    rowcol = np.empty((H, 3), np.float32)
    road = t_abs <= w.road_half_m
    is_kerb = (t_abs > w.road_half_m) & (t_abs <= w.road_half_m + 0.2)
    is_side = (t_abs > w.road_half_m + 0.2) & (t_abs <= w.road_half_m + w.sidewalk_m)
    rowcol[road] = asphalt
    rowcol[is_kerb] = kerb
    rowcol[is_side] = side
    rowcol[~(road | is_kerb | is_side)] = verge
    base[:] = rowcol[:, None, :]
    base *= lum[..., None]
    # sidewalk tiles: grid lines
    s_cols, _ = w.px_to_road(np.arange(W), np.zeros(W))
    tile = w.style["tile_m"]
    grid_c = (np.mod(s_cols, tile) < 0.02 + res)
    grid_r = (np.mod(t_abs, tile) < 0.02 + res) & is_side
    sub = base[is_side]
    sub[:, grid_c] *= 0.8
    base[is_side] = sub
    base[grid_r] *= 0.8
    # verge: green patches
    if w.style["green_verge"]:
        vmask = ~(road | is_kerb | is_side)
        g = _smooth_noise(rng, (int(vmask.sum()), W), 0.6 / res)
        base[vmask] = base[vmask] * (1 + 0.15 * g[..., None])
    np.clip(base, 0, 255, out=base)
    img[:] = base.astype(np.uint8)
    # lane markings
    def t_row(t):
        return round((w.t_max - t) / res - 0.5)
    lw = max(1, round(0.15 / res))
    yellow = (40, 190, 220)
    white = (225, 225, 225)
    if w.style["centre"] == "double_yellow":
        for dt in (-0.12, 0.12):
            r0 = t_row(dt)
            img[r0 - lw // 2: r0 + lw // 2 + 1] = yellow
    else:
        r0 = t_row(0.0)
        dash = np.mod(s_cols, 9.0) < 3.0
        img[r0 - lw // 2: r0 + lw // 2 + 1, dash] = yellow if w.style["centre"] == "dashed_yellow" else white
    lane_w = w.road_half_m / w.lanes_per_side
    dash = np.mod(s_cols + 2.0, 9.0) < 4.0
    for sign in (-1, 1):
        for k in range(1, w.lanes_per_side):
            r0 = t_row(sign * k * lane_w)
            img[r0 - lw // 2: r0 + lw // 2 + 1, dash] = white
        r0 = t_row(sign * (w.road_half_m - 0.3))
        img[r0 - lw // 2: r0 + lw // 2 + 1] = white  # edge line
    # wear on markings: darken randomly
    # distractors: stains, patches, shadows, drains
    n_dis = int(w.style["distractors_per_10m"] * (w.s_max - w.s_min) / 10)
    for _ in range(n_dis):
        kind = rng.integers(0, 4)
        s = rng.uniform(w.s_min, w.s_max)
        t = rng.uniform(-w.road_half_m - w.sidewalk_m, w.road_half_m + w.sidewalk_m)
        cx, cy = w.road_to_px(s, t)
        if kind == 0:  # oil stain: a soft dark blob
            r = rng.uniform(0.2, 0.8) / res
            x0, y0 = int(cx - 2 * r), int(cy - 2 * r)
            x1, y1 = int(cx + 2 * r), int(cy + 2 * r)
            if x0 < 0 or y0 < 0 or x1 >= W or y1 >= H:
                continue
            m = np.zeros((y1 - y0, x1 - x0), np.float32)
            _fill(m, _blob_polygon(rng, cx - x0, cy - y0, r, r * rng.uniform(0.4, 1), rng.uniform(0, 3), 0.3), (1.0,))
            m = cv2.GaussianBlur(m, (0, 0), r * 0.3)
            roi = img[y0:y1, x0:x1].astype(np.float32)
            img[y0:y1, x0:x1] = (roi * (1 - rng.uniform(0.2, 0.45) * m[..., None])).astype(np.uint8)
        elif kind == 1:  # asphalt patch: a crisp rectangle, darker or lighter
            if abs(t) > w.road_half_m:
                continue
            a, b = rng.uniform(0.5, 2.5) / res, rng.uniform(0.5, 2.0) / res
            ang = rng.uniform(-0.2, 0.2)
            q = np.array([[-a, -b], [a, -b], [a, b], [-a, b]]) / 2
            poly = np.stack([cx + math.cos(ang) * q[:, 0] - math.sin(ang) * q[:, 1], cy + math.sin(ang) * q[:, 0] + math.cos(ang) * q[:, 1]], 1)
            _fill(img, poly, _jitter_color(rng, asphalt * rng.choice([0.75, 1.2]), 6))
        elif kind == 2:  # a tree shadow on the sidewalk / road edge
            r = rng.uniform(0.8, 2.5) / res
            x0, y0 = int(cx - 1.6 * r), int(cy - 1.6 * r)
            x1, y1 = int(cx + 1.6 * r), int(cy + 1.6 * r)
            if x0 < 0 or y0 < 0 or x1 >= W or y1 >= H:
                continue
            m = np.zeros((y1 - y0, x1 - x0), np.float32)
            for _ in range(6):
                _fill(m, _blob_polygon(rng, cx - x0 + rng.normal(0, r * 0.3), cy - y0 + rng.normal(0, r * 0.3), r * 0.5, r * 0.4, rng.uniform(0, 3), 0.3), (1.0,))
            m = cv2.GaussianBlur(m, (0, 0), r * 0.08)
            roi = img[y0:y1, x0:x1].astype(np.float32)
            img[y0:y1, x0:x1] = (roi * (1 - 0.4 * m[..., None])).astype(np.uint8)
        else:  # kerb drain grate
            t = np.sign(t or 1) * (w.road_half_m - 0.25)
            cx, cy = w.road_to_px(s, t)
            a, b = 0.6 / res, 0.35 / res
            cv2.rectangle(img, (int(cx - a / 2), int(cy - b / 2)), (int(cx + a / 2), int(cy + b / 2)), (60, 62, 65), -1)
            for k in range(1, 6):
                x = int(cx - a / 2 + k * a / 6)
                cv2.line(img, (x, int(cy - b / 2)), (x, int(cy + b / 2)), (20, 20, 20), max(1, int(0.03 / res)))


def _centroid(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Area centroid of a polygon (vertex mean if degenerate)."""
    xs, ys = np.roll(x, -1), np.roll(y, -1)
    cross = x * ys - xs * y
    a = cross.sum() / 2
    if abs(a) < 1e-12:
        return float(x.mean()), float(y.mean())
    return float(((x + xs) * cross).sum() / (6 * a)), float(((y + ys) * cross).sum() / (6 * a))


def _where_t(w: World, rng, where: str, size_m: float) -> float:
    side = rng.choice([-1.0, 1.0]) if rng.random() < 0.35 else -1.0  # mostly the right side (China drives on the right)
    if where == "road":
        return float(rng.uniform(-w.road_half_m + size_m / 2 + 0.2, w.road_half_m - size_m / 2 - 0.2))
    if where == "kerb":
        return float(side * (w.road_half_m - rng.uniform(-0.1, 0.6)))
    return float(side * (w.road_half_m + 0.3 + rng.uniform(size_m / 2, max(size_m / 2 + 0.01, w.sidewalk_m - size_m / 2))))


def make_world(
    seed: int,
    *,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    heading_deg: float | None = None,
    s_range: tuple[float, float] = (-10.0, 70.0),
    res_m: float = 0.02,
    verge_m: float = 6.0,
    objects_per_10m: float = 3.0,
    placements: list[tuple[str, float, float] | tuple[str, float, float, float]] | None = None,
    removed: frozenset[int] = frozenset(),
    lanes_per_side: int | None = None,
    road_half_m: float | None = None,
    sidewalk_m: float | None = None,
) -> World:
    """Generate a street scene.

    ``placements``: explicit ``(class, s, t)`` objects (t NaN picks a place by
    the class's ``where``), optionally ``(class, s, t, size_m)`` to fix the
    object's largest ground extent (else drawn from the class's ``size_m``);
    otherwise ``objects_per_10m`` random objects of uniformly drawn classes
    over ``s_range``. ``removed``: indices of placements painted and then
    cleared again (the ground restored, as after a repair or a clean-up), so
    the other objects look exactly as they do without ``removed``.
    """
    rng = np.random.default_rng(seed)
    lanes = int(lanes_per_side or rng.integers(1, 3))
    road_half = lanes * rng.uniform(3.2, 3.75)
    sidewalk = float(rng.uniform(2.0, 4.5))
    road_half = float(road_half_m) if road_half_m is not None else float(road_half)
    sidewalk = float(sidewalk_m) if sidewalk_m is not None else sidewalk
    t_max = road_half + sidewalk + verge_m
    H = round(2 * t_max / res_m)
    Wd = round((s_range[1] - s_range[0]) / res_m)
    style = {
        "asphalt": tuple(float(v) for v in np.clip(rng.normal(95, 18) + rng.normal(0, 4, 3), 45, 160)),
        "sidewalk": _jitter_color(rng, [(150, 150, 155), (120, 130, 170), (110, 110, 140), (170, 170, 170)][rng.integers(4)], 10),
        "kerb": _jitter_color(rng, (175, 178, 180), 10),
        "verge": _jitter_color(rng, [(60, 110, 70), (70, 90, 100), (90, 100, 105)][rng.integers(3)], 10),
        "green_verge": bool(rng.random() < 0.7),
        "tile_m": float(rng.choice([0.3, 0.4, 0.5, 0.6])),
        "centre": str(rng.choice(["double_yellow", "dashed_yellow", "dashed_white"])),
        "distractors_per_10m": float(rng.uniform(1.0, 4.0)),
    }
    w = World(
        seed=seed, origin_lat=origin[0], origin_lon=origin[1],
        heading_deg=float(rng.uniform(0, 360) if heading_deg is None else heading_deg),
        s_min=s_range[0], s_max=s_range[1], t_max=t_max, res_m=res_m,
        road_half_m=road_half, sidewalk_m=sidewalk, lanes_per_side=lanes,
        raster=np.zeros((H, Wd, 3), np.uint8), border_bgr=tuple(int(c) for c in np.array(style["verge"]) * 0.8), style=style,
    )
    _paint_ground(w, rng)
    bare = w.raster.copy() if removed else None
    classes = load_classes()
    if placements is None:
        n = round(objects_per_10m * (s_range[1] - s_range[0]) / 10)
        picks = [(classes[rng.integers(len(classes))].name, float(rng.uniform(s_range[0] + 2, s_range[1] - 2)), float("nan")) for _ in range(n)]
    else:
        picks = placements
    taken: list[tuple[float, float, float]] = []
    for index, (name, s, t, *size_m) in enumerate(picks):
        c = class_by_name(name)
        size = float(size_m[0]) if size_m else float(rng.uniform(*c.size_m))
        where = str(c.where[rng.integers(len(c.where))])
        for _try in range(8):
            tt = _where_t(w, rng, where, size) if not np.isfinite(t) else t
            if all(math.hypot(s - s2, tt - t2) > (size + r2) / 2 + 0.3 for s2, t2, r2 in taken) or np.isfinite(t):
                break
            s = float(np.clip(s + rng.normal(0, 1.5), s_range[0] + 1, s_range[1] - 1))
        else:
            continue
        taken.append((s, tt, size))
        cx, cy = w.road_to_px(s, tt)
        fp_px = _PAINTERS[name](w.raster, rng, float(cx), float(cy), size / res_m, style["asphalt"])
        if index in removed:
            pad = round(0.3 / res_m)
            c0, r0 = np.floor(fp_px.min(0)).astype(int) - pad
            c1, r1 = np.ceil(fp_px.max(0)).astype(int) + pad
            r0, c0 = max(r0, 0), max(c0, 0)
            w.raster[r0:r1, c0:c1] = bare[r0:r1, c0:c1]
            continue
        # painters draw in pixel coordinates whose integer points are pixel centres
        fs, ft = w.s_min + (fp_px[:, 0] + 0.5) * res_m, w.t_max - (fp_px[:, 1] + 0.5) * res_m
        fe, fn = w.road_to_enu(fs, ft)
        # the object's position: its footprint's centroid (inside the footprint's hull)
        s, tt = _centroid(fs, ft)
        e, n = w.road_to_enu(s, tt)
        lat, lon = w.latlon(float(e), float(n))
        w.objects.append(PlacedObject(cls=name, cls_id=c.id, s=float(s), t=float(tt), east=float(e), north=float(n), lat=lat, lon=lon, footprint=np.stack([fe, fn], 1)))
    return w
