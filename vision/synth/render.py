"""Render a :class:`~vision.synth.world.World` through a pinhole camera: the
ground raster is warped into the image with the ground→image homography of
:mod:`vision.camera`, sky and buildings fill what lies above the horizon,
distance haze, blur, noise and exposure jitter are applied, and each visible
object's ground footprint is projected to an exact YOLO box.

The per-pose masks (sky, haze) and the backdrop are cached, so rendering a
video at a fixed camera attitude costs one warp and one blend per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from vision.camera import (
    Camera,
    ground_homography,
    ground_to_pixel,
    rotation_world_to_camera,
)
from vision.synth.world import World

HAZE_M = 260.0
"""Distance at which the haze covers 63% of the ground's contrast."""
FAR_CLIP_M = 400.0


@dataclass(frozen=True)
class Pose:
    """Camera position (ENU metres from the world origin, height above the ground) and attitude."""

    east: float
    north: float
    height_m: float
    pitch_deg: float
    yaw_deg: float
    roll_deg: float = 0.0


@dataclass(frozen=True)
class Box:
    """A visible object's box in pixels (x1, y1, x2, y2) and its class."""

    cls_id: int
    x1: float
    y1: float
    x2: float
    y2: float
    obj_index: int

    def yolo(self, width: int, height: int) -> tuple[int, float, float, float, float]:
        return (self.cls_id, (self.x1 + self.x2) / 2 / width, (self.y1 + self.y2) / 2 / height, (self.x2 - self.x1) / width, (self.y2 - self.y1) / height)


@lru_cache(maxsize=16)
def _backdrop(seed: int, width: int, height: int) -> np.ndarray:
    """Sky gradient over a row of buildings, ``(2*height, width)``; the horizon is row ``height``."""
    rng = np.random.default_rng(seed + 7919)
    2 * height
    top = np.array(rng.choice([(230, 190, 150), (220, 210, 200), (200, 200, 195), (240, 200, 160)]), np.float32)
    low = np.array((235, 230, 225), np.float32)
    a = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    sky = (top * (1 - a) + low * a) * np.ones((1, width, 1), np.float32)
    img = np.concatenate([sky, np.zeros((height, width, 3), np.float32)]).astype(np.uint8)
    img[height:] = (110, 112, 115)
    x = -int(rng.integers(0, 80))
    while x < width:
        bw = int(rng.integers(width // 14, width // 5))
        bh = int(rng.integers(height // 10, int(height * 0.6)))
        col = tuple(int(c) for c in np.clip(rng.normal(150, 35) + rng.normal(0, 12, 3), 60, 230))
        cv2.rectangle(img, (x, height - bh), (x + bw, height + 2), col, -1)
        win = tuple(int(c * 0.6) for c in col)
        wy = height - bh + 6
        while wy < height - 8:
            for wx in range(x + 5, x + bw - 8, 14):
                cv2.rectangle(img, (wx, wy), (wx + 6, wy + 5), win, -1)
            wy += 14
        x += bw + int(rng.integers(0, 30))
    return img


def _view_maps(cam: Camera, height_m: float, pitch_deg: float, roll_deg: float, yaw_deg: float = 0.0):
    """(is_ground bool HxW, haze alpha float32 HxW) for a camera attitude (yaw-free)."""
    R = rotation_world_to_camera(pitch_deg, yaw_deg, roll_deg)
    u = (np.arange(cam.width, dtype=np.float32) + 0.5 - cam.cx) / cam.fx
    v = (np.arange(cam.height, dtype=np.float32) + 0.5 - cam.cy) / cam.fy
    # world direction = R.T @ [u, v, 1]
    Rt = R.T.astype(np.float32)
    dx = Rt[0, 0] * u[None, :] + Rt[0, 1] * v[:, None] + Rt[0, 2]
    dy = Rt[1, 0] * u[None, :] + Rt[1, 1] * v[:, None] + Rt[1, 2]
    dz = Rt[2, 0] * u[None, :] + Rt[2, 1] * v[:, None] + Rt[2, 2]
    ground = dz < -1e-4
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.where(ground, height_m * np.hypot(dx, dy) / -dz, np.inf)
    ground &= dist < FAR_CLIP_M
    alpha = np.where(ground, 1.0 - np.exp(-dist / HAZE_M), 1.0).astype(np.float32)
    return ground, alpha


@lru_cache(maxsize=8)
def _cached_maps(cam: Camera, height_m: float, pitch_deg: float, roll_deg: float):
    return _view_maps(cam, height_m, pitch_deg, roll_deg)


@lru_cache(maxsize=8)
def _far_image(seed: int, cam: Camera, pitch_deg: float, roll_deg: float, height_m: float):
    """What lies behind the ground: the backdrop above the horizon, haze colour below;
    plus the blend weights (ground weight, far weight) for cv2.blendLinear."""
    ground, alpha = _cached_maps(cam, height_m, pitch_deg, roll_deg)
    bd = _backdrop(seed, cam.width, cam.height)
    hv = cam.cy + cam.fy * math.tan(math.radians(max(pitch_deg, -89.0)))  # horizon row (roll ignored for the backdrop)
    hv = float(np.clip(hv, -2 * cam.height, 2 * cam.height))
    off = round(cam.height - hv)
    rows = np.clip(np.arange(cam.height) + off, 0, 2 * cam.height - 1)
    far = bd[rows].copy()
    haze = np.array((200, 198, 195), np.uint8)
    far[ground] = haze
    return far, (1.0 - alpha).astype(np.float32), alpha


def render_ground(world: World, cam: Camera, pose: Pose) -> np.ndarray:
    """Warp the world's ground raster into the camera (no sky, no effects)."""
    Hg = ground_homography(cam, height_m=pose.height_m, pitch_deg=pose.pitch_deg, yaw_deg=pose.yaw_deg, roll_deg=pose.roll_deg)
    T = np.array([[1.0, 0.0, -pose.east], [0.0, 1.0, -pose.north], [0.0, 0.0, 1.0]])
    # image pixel centres are at integer + 0.5 in the camera model, integers in cv2
    C = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    M = C @ Hg @ T @ world.raster_to_enu_matrix()
    return cv2.warpPerspective(world.raster, M, (cam.width, cam.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=world.border_bgr)


def render_view(world: World, cam: Camera, pose: Pose, *, effects_seed: int | None = None, noise: np.ndarray | None = None,
                min_box_px: float = 8.0, min_visible: float = 0.5) -> tuple[np.ndarray, list[Box]]:
    """Render the view and the boxes of the objects in it.

    ``effects_seed``: None gives a clean render; an int draws blur, exposure and
    colour jitter and sensor noise from it. ``noise``: a precomputed int16 noise
    frame to add instead (for video). Boxes narrower or shorter than
    ``min_box_px`` or with less than ``min_visible`` of their area in frame are dropped.
    """
    img = render_ground(world, cam, pose)
    far, w_ground, w_far = _far_image(world.seed, cam, round(pose.pitch_deg, 6), round(pose.roll_deg, 6), round(pose.height_m, 6))
    img = cv2.blendLinear(img, far, w_ground, w_far)
    if effects_seed is not None:
        rng = np.random.default_rng(effects_seed)
        sigma = rng.uniform(0.0, 1.3)
        if sigma > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        gain = rng.uniform(0.7, 1.3) * (1 + rng.normal(0, 0.05, 3))
        bias = rng.normal(0, 8)
        img = cv2.convertScaleAbs(img.astype(np.float32) * gain.astype(np.float32) + bias)
        nz = rng.normal(0, rng.uniform(1, 7), img.shape[:2]).astype(np.float32)
        img = cv2.convertScaleAbs(img.astype(np.float32) + nz[..., None])
    elif noise is not None:
        img = cv2.add(img, noise, dtype=cv2.CV_8U) if noise.dtype == np.uint8 else np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return img, project_boxes(world, cam, pose, min_box_px=min_box_px, min_visible=min_visible)


def project_boxes(world: World, cam: Camera, pose: Pose, *, min_box_px: float = 8.0, min_visible: float = 0.5) -> list[Box]:
    """The image boxes of the world's objects seen from ``pose`` (clipped to the frame)."""
    boxes = []
    for i, ob in enumerate(world.objects):
        if math.hypot(ob.east - pose.east, ob.north - pose.north) > FAR_CLIP_M * 0.5:
            continue
        u, v, ok = ground_to_pixel(cam, ob.footprint[:, 0] - pose.east, ob.footprint[:, 1] - pose.north,
                                   height_m=pose.height_m, pitch_deg=pose.pitch_deg, yaw_deg=pose.yaw_deg, roll_deg=pose.roll_deg)
        if not np.all(ok):
            continue
        x1, x2, y1, y2 = u.min(), u.max(), v.min(), v.max()
        area = (x2 - x1) * (y2 - y1)
        cx1, cy1 = max(x1, 0.0), max(y1, 0.0)
        cx2, cy2 = min(x2, float(cam.width)), min(y2, float(cam.height))
        if cx2 - cx1 < min_box_px or cy2 - cy1 < min_box_px:
            continue
        if area <= 0 or (cx2 - cx1) * (cy2 - cy1) / area < min_visible:
            continue
        boxes.append(Box(ob.cls_id, float(cx1), float(cy1), float(cx2), float(cy2), i))
    return boxes


def noise_bank(shape: tuple[int, int], n: int = 6, sigma: float = 3.0, seed: int = 0) -> list[np.ndarray]:
    """Precomputed int16 sensor-noise frames (H, W, 1) to cycle through in a video."""
    rng = np.random.default_rng(seed)
    return [np.repeat(rng.normal(0, sigma, (*shape, 1)).round().astype(np.int16), 3, axis=2) for _ in range(n)]
