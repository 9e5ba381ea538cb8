"""The demo footage batch, rendered from one synthetic street in the sample
jurisdiction: a forward-camera patrol video (30 km/h, a 4 s stop at a light
midway) with its 1 Hz GPX track, ``manifest.yaml`` and ``truth.json`` (the
placed objects); and a short nadir drone clip with a DJI-style SRT.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import yaml

from vision.camera import (
    Camera,
    Mount,
    enu_offset,
    ground_to_pixel,
    gsd_m,
    offset_latlon,
)
from vision.synth import class_by_name, load_classes
from vision.synth.render import HAZE_M, Pose, project_boxes, render_ground, render_view
from vision.synth.world import DEFAULT_ORIGIN, World, make_world
from vision.telemetry import Track, load_track

ROAD_HEADING_DEG = 78.0
START_UTC = datetime(2026, 11, 20, 2, 0, 0, tzinfo=UTC)
BATCH_NAME = "demo-2026-11-20"
PLATFORM_ID = "渝A-巡01"
VEHICLE_CAMERA = Camera(1280, 720, 90.0)
VEHICLE_MOUNT = Mount(kind="forward", height_m=1.6, pitch_deg=-12.0, yaw_offset_deg=0.0)
DRONE_FOCAL_35MM = 24.0
DRONE_ALT_M = 22.0
LANES_PER_SIDE = 2
ROAD_HALF_M = 7.0
SIDEWALK_M = 3.5
CRUISE_MS = 30 / 3.6
STOP_LINE_S = 69.0

# (class, s metres along the road, t metres left of the centre line); the
# vehicle drives in the kerbside lane (t = -5.25) from s = 0.
DEMO_PLACEMENTS: list[tuple[str, float, float]] = [
    ("pothole", 22.0, -4.6),
    ("crack", 35.0, -2.6),
    ("manhole_broken", 48.0, -5.6),
    ("garbage", 60.0, -ROAD_HALF_M + 0.35),
    ("manhole_ok", 76.0, -4.5),
    ("bin_overflow", 82.0, -ROAD_HALF_M - 1.3),
    ("pothole", 98.0, -6.0),
    ("garbage", 112.0, -ROAD_HALF_M - 1.0),
    ("manhole_broken", 124.0, -3.8),
]


def speed_profile(seconds: float = 20.0, *, cruise_ms: float = CRUISE_MS, stop_at_s: float = 7.0,
                  brake_s: float = 2.0, stop_s: float = 4.0, accel_s: float = 2.0):
    """Distance along the road (m) as a function of time: cruise, brake to a stop
    (linearly), wait ``stop_s``, accelerate back to cruise. Returns ``s(t)``."""
    t1 = stop_at_s
    t2 = t1 + brake_s
    t3 = t2 + stop_s
    t4 = t3 + accel_s
    d1 = cruise_ms * t1
    d2 = d1 + cruise_ms * brake_s / 2
    d4 = d2 + cruise_ms * accel_s / 2

    def s_of(t):
        t = np.asarray(t, dtype=float)
        out = np.where(t <= t1, cruise_ms * t, 0.0)
        tb = np.clip(t - t1, 0, brake_s)
        out = np.where((t > t1) & (t <= t2), d1 + cruise_ms * tb - cruise_ms * tb**2 / (2 * brake_s), out)
        out = np.where((t > t2) & (t <= t3), d2, out)
        ta = np.clip(t - t3, 0, accel_s)
        out = np.where((t > t3) & (t <= t4), d2 + cruise_ms * ta**2 / (2 * accel_s), out)
        out = np.where(t > t4, d4 + cruise_ms * (t - t4), out)
        return out

    s_of.stop_span = (t2, t3)  # type: ignore[attr-defined]
    return s_of


def demo_world(seed: int = 0, placements: list[tuple[str, float, float]] | None = None,
               removed: frozenset[int] = frozenset()) -> World:
    """The demo street: 2+2 lanes heading ENE from the default origin, the demo issues
    (or ``placements``, less the ``removed`` ones) placed; the same seed gives the same street."""
    w = make_world(seed, origin=DEFAULT_ORIGIN, heading_deg=ROAD_HEADING_DEG, s_range=(-15.0, 175.0), verge_m=14.0,
                   placements=DEMO_PLACEMENTS if placements is None else placements, removed=removed, lanes_per_side=LANES_PER_SIDE, road_half_m=ROAD_HALF_M, sidewalk_m=SIDEWALK_M,
                   objects_per_10m=0.0)
    _paint_crossing(w, STOP_LINE_S)
    return w


def _paint_crossing(w: World, s0: float) -> None:
    """A stop line and a zebra crossing just past it (where the vehicle waits)."""
    c0, _ = w.road_to_px(s0, 0.0)
    _, r_top = w.road_to_px(0.0, ROAD_HALF_M - 0.3)
    _, r_bot = w.road_to_px(0.0, -ROAD_HALF_M + 0.3)
    _, r_mid = w.road_to_px(0.0, 0.0)
    lw = int(0.4 / w.res_m)
    w.raster[int(r_mid):int(r_bot), int(c0):int(c0) + lw] = (225, 225, 225)
    z0 = int(c0 + 1.5 / w.res_m)
    z1 = int(z0 + 4.0 / w.res_m)
    stripe = int(0.45 / w.res_m)
    for r in range(int(r_top), int(r_bot), 2 * stripe):
        w.raster[r:r + stripe, z0:z1] = (220, 220, 220)


def _write_gpx(path: Path, times: np.ndarray, lats: np.ndarray, lons: np.ndarray, name: str,
               start_utc: datetime = START_UTC) -> None:
    pts = []
    for t, la, lo in zip(times, lats, lons):
        stamp = (start_utc + timedelta(seconds=float(t))).strftime("%Y-%m-%dT%H:%M:%SZ")
        pts.append(f'      <trkpt lat="{la:.7f}" lon="{lo:.7f}"><ele>245.0</ele><time>{stamp}</time></trkpt>')
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="xunjian vision.synth" xmlns="http://www.topografix.com/GPX/1/1">\n'
        f"  <trk><name>{name}</name><trkseg>\n" + "\n".join(pts) + "\n  </trkseg></trk>\n</gpx>\n",
        encoding="utf-8",
    )


def _truth_records(w: World) -> list[dict]:
    out = []
    for ob in w.objects:
        c = class_by_name(ob.cls)
        out.append({"class": ob.cls, "label_zh": c.label_zh, "is_issue": c.is_issue, "code": c.code,
                    "lat": round(ob.lat, 7), "lon": round(ob.lon, 7), "s_m": round(ob.s, 2), "t_m": round(ob.t, 2)})
    return out


def _noise_pair(shape, n=6, sigma=3.0, seed=0):
    """Sensor noise as (add, subtract) uint8 frame pairs (cheap with cv2.add/subtract)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        z = rng.normal(0, sigma, (*shape, 1)).round()
        z = np.repeat(z, 3, axis=2)
        out.append((np.clip(z, 0, 255).astype(np.uint8), np.clip(-z, 0, 255).astype(np.uint8)))
    return out


def render_vehicle_frames(w: World, seconds: float, fps: int = 30, cam: Camera = VEHICLE_CAMERA, mount: Mount = VEHICLE_MOUNT):
    """Yield ``(time_s, image, boxes, pose)`` for each frame of the patrol drive."""
    noise = _noise_pair((cam.height, cam.width), seed=w.seed)
    for i, pose in enumerate(vehicle_poses(w, seconds, fps, mount)):
        img, boxes = render_view(w, cam, pose)
        a, b = noise[i % len(noise)]
        img = cv2.subtract(cv2.add(img, a), b)
        yield i / fps, img, boxes, pose


def vehicle_poses(w: World, seconds: float, fps: int = 30, mount: Mount = VEHICLE_MOUNT) -> list[Pose]:
    """The camera pose at each frame of the patrol drive (kerbside lane)."""
    s_of = speed_profile(max(seconds, 20.0))
    t_lane = w.lane_centre_t(LANES_PER_SIDE - 1)
    poses = []
    for i in range(round(seconds * fps)):
        e, n = w.road_to_enu(float(s_of(i / fps)), t_lane)
        poses.append(Pose(float(e), float(n), float(mount.height_m), mount.pitch_deg, (w.heading_deg + mount.yaw_offset_deg) % 360))
    return poses


def make_demo_batch(out_dir: str | Path, seed: int = 0, *, seconds: float = 20.0, fps: int = 30, video: bool = True,
                    start_utc: datetime = START_UTC, placements: list[tuple[str, float, float]] | None = None,
                    removed: frozenset[int] = frozenset(), batch: str = BATCH_NAME) -> Path:
    """Write the demo vehicle batch (patrol.mp4, patrol.gpx, manifest.yaml, truth.json) into ``out_dir``.
    ``video=False`` skips rendering the video (track, manifest and truth only).
    ``start_utc``, ``placements`` and ``batch`` make a later patrol of the same
    street (see :func:`make_day2_batch`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    w = demo_world(seed, placements, removed)
    cam = VEHICLE_CAMERA
    seen: dict[int, list[int]] = {}
    for k, pose in enumerate(vehicle_poses(w, seconds, fps)):
        for b in project_boxes(w, cam, pose):
            seen.setdefault(b.obj_index, []).append(k)
    if video:
        writer = cv2.VideoWriter(str(out / "patrol.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (cam.width, cam.height))
        if not writer.isOpened():
            raise RuntimeError("cv2.VideoWriter could not open an mp4v writer")
        for _t, img, _boxes, _pose in render_vehicle_frames(w, seconds, fps):
            writer.write(img)
        writer.release()
    # the track: 1 Hz, covering the video with a second to spare
    s_of = speed_profile(max(seconds, 20.0) + 2)
    times = np.arange(0, math.ceil(seconds) + 2, dtype=float)
    e, n = w.road_to_enu(s_of(times), np.full_like(times, w.lane_centre_t(LANES_PER_SIDE - 1)))
    lats, lons = w.latlon(e, n)
    _write_gpx(out / "patrol.gpx", times, lats, lons, "xunjian demo patrol", start_utc)
    manifest = {
        "batch": batch, "source": "vehicle", "platform_id": PLATFORM_ID,
        "files": [{"video": "patrol.mp4", "track": "patrol.gpx",
                   "camera": {"hfov_deg": cam.hfov_deg, "width": cam.width, "height": cam.height},
                   "mount": {"kind": VEHICLE_MOUNT.kind, "height_m": VEHICLE_MOUNT.height_m, "pitch_deg": VEHICLE_MOUNT.pitch_deg,
                             "yaw_offset_deg": VEHICLE_MOUNT.yaw_offset_deg}}],
    }
    (out / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False, default_flow_style=None), encoding="utf-8")
    stop = s_of.stop_span
    records = _truth_records(w)
    for i, r in enumerate(records):
        fr = seen.get(i, [])
        r["frames_visible"] = [min(fr), max(fr)] if fr else None
    truth = {"batch": batch, "seed": seed, "video": "patrol.mp4", "fps": fps, "frames": round(seconds * fps),
             "start_utc": start_utc.strftime("%Y-%m-%dT%H:%M:%SZ"), "stop_s": [round(stop[0], 3), round(stop[1], 3)],
             "road": {"origin_lat": w.origin_lat, "origin_lon": w.origin_lon, "heading_deg": w.heading_deg},
             "objects": records}
    (out / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")
    return out


DAY2_NEW: list[tuple[str, float, float]] = [("bin_overflow", 30.0, -ROAD_HALF_M - 1.3)]
"""Issues that appeared after the first patrol."""
DAY2_FIXED = frozenset({0, 1, 3, 5})
"""Indices into :data:`DEMO_PLACEMENTS` of the issues repaired or cleaned up
before the second patrol: the first pothole and the crack, the garbage at
60 m, the overflowing bin. The broken manhole at 48 m is still broken."""
DAY2_NOT_FIXED = frozenset({2})
"""The broken manhole at 48 m: reported repaired in the demo, still broken on the second patrol."""


def make_day2_batch(out_dir: str | Path, start_utc: datetime, seed: int = 0, *, video: bool = True,
                    batch: str | None = None) -> Path:
    """The demo street patrolled again after the departments' work
    (:data:`DAY2_FIXED` gone, :data:`DAY2_NEW` appeared), starting at ``start_utc``."""
    name = batch or f"demo-{start_utc.astimezone(timezone(timedelta(hours=8))):%Y-%m-%d}-recheck"
    return make_demo_batch(out_dir, seed, video=video, start_utc=start_utc, placements=DEMO_PLACEMENTS + DAY2_NEW,
                           removed=DAY2_FIXED, batch=name)


def _srt_time(t: float) -> str:
    ms = round(t * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def make_drone_clip(out_dir: str | Path, srt_path: str | Path | None = None, *, seed: int = 0, seconds: float = 8.0, fps: int = 30,
                    alt_m: float = DRONE_ALT_M, speed_ms: float = 5.0, start_s: float = 15.0, width: int = 1280, height: int = 720,
                    write_manifest: bool = True) -> Path:
    """A nadir drone clip over the demo street (``drone.mp4``) and its DJI SRT
    (one cue per frame; default ``out_dir/drone.SRT``), flying along the road at
    ``alt_m``; plus ``manifest.yaml`` (source: drone) and ``truth.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    srt = Path(srt_path) if srt_path is not None else out / "drone.SRT"
    w = demo_world(seed)
    cam = Camera.from_focal_35mm(DRONE_FOCAL_35MM, width, height)
    writer = cv2.VideoWriter(str(out / "drone.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (cam.width, cam.height))
    noise = _noise_pair((cam.height, cam.width), seed=seed + 1)
    cues = []
    local = START_UTC.astimezone(timezone(timedelta(hours=8))).replace(tzinfo=None) + timedelta(minutes=5)
    n_frames = round(seconds * fps)
    t_over = -ROAD_HALF_M / 2
    for i in range(n_frames):
        t = i / fps
        s = start_s + speed_ms * t
        e, n = w.road_to_enu(s, t_over)
        pose = Pose(float(e), float(n), alt_m, -90.0, w.heading_deg % 360)
        img, _ = render_view(w, cam, pose)
        a, b = noise[i % len(noise)]
        writer.write(cv2.subtract(cv2.add(img, a), b))
        lat, lon = w.latlon(float(e), float(n))
        stamp = (local + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        cues.append(
            f"{i + 1}\n{_srt_time(t)} --> {_srt_time(t + 1 / fps)}\n"
            f'<font size="28">FrameCnt: {i + 1}, DiffTime: {round(1000 / fps)}ms\n{stamp}\n'
            f"[iso: 100] [shutter: 1/1000.0] [fnum: 1.7] [ev: 0] [color_md : default] [focal_len : {DRONE_FOCAL_35MM:.2f}] "
            f"[dzoom_ratio: 1.00], [latitude: {lat:.6f}] [longitude: {lon:.6f}] "
            f"[rel_alt: {alt_m:.3f} abs_alt: {alt_m + 245.0:.3f}] [ct: 5500] </font>\n"
        )
    writer.release()
    srt.write_text("\n".join(cues), encoding="utf-8")
    if write_manifest:
        manifest = {"batch": BATCH_NAME + "-drone", "source": "drone", "platform_id": "渝A-无人机01",
                    "files": [{"video": "drone.mp4", "track": srt.name if srt.parent == out else str(srt),
                               "camera": {"focal_35mm": DRONE_FOCAL_35MM, "width": cam.width, "height": cam.height},
                               "mount": {"kind": "nadir", "height_m": None, "pitch_deg": -90.0, "yaw_offset_deg": 0.0}}]}
        (out / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False, default_flow_style=None), encoding="utf-8")
        (out / "truth.json").write_text(json.dumps({"video": "drone.mp4", "fps": fps, "frames": n_frames, "alt_m": alt_m,
                                                     "objects": _truth_records(w)}, ensure_ascii=False, indent=1), encoding="utf-8")
    return out


# -- a drone clip that follows a real DJI SRT ---------------------------------------------------

SRT_MIN_RENDER_ALT_M = 3.0
"""Rendering floor for the camera height (take-off/landing heights are ~0 or below)."""
SRT_SPACING_M = 12.0
"""Minimum distance between two placed objects."""
SRT_MIN_OBJECT_PX = 32.0
"""Smallest object extent, in frame pixels, at the height it is placed under."""
SRT_MARGIN_M = 20.0
"""Ground painted around the placed objects."""
SRT_RES_M = 0.03
SRT_PLACEMENT_HZ = 2
"""Rate at which the flight is scanned for places (fixed, so the world does not depend on the clip's fps)."""


@dataclass
class SrtScene:
    """A world under a real SRT track and the camera pose of every video frame.

    Frame ``i`` is at media time ``t[i] = i / fps`` and uses ``track.at(t[i])``
    exactly as :mod:`vision.ingest` reads it: position → ENU from the world
    origin, gimbal yaw if the SRT has one else the (motion) heading, gimbal
    pitch if present else -90 (nadir); the height is the track's, floored at
    :data:`SRT_MIN_RENDER_ALT_M` for rendering only."""

    track: Track
    world: World
    cam: Camera
    focal_35mm: float
    fps: int
    t: np.ndarray
    east: np.ndarray
    north: np.ndarray
    alt: np.ndarray
    """Track altitude (NaN = unknown), not floored."""
    yaw: np.ndarray
    pitch: np.ndarray

    @property
    def n_frames(self) -> int:
        return len(self.t)

    def pose(self, i: int) -> Pose:
        alt = self.alt[i] if np.isfinite(self.alt[i]) else SRT_MIN_RENDER_ALT_M
        yaw = self.yaw[i] if np.isfinite(self.yaw[i]) else 0.0
        return Pose(float(self.east[i]), float(self.north[i]), float(max(alt, SRT_MIN_RENDER_ALT_M)), float(self.pitch[i]), float(yaw))


def srt_frame_poses(track: Track, fps: int) -> dict[str, np.ndarray]:
    """Media time, lat, lon, alt, yaw and pitch of every frame of a video that
    spans the SRT (frames at ``i / fps`` from 0 to the last fix)."""
    t = np.arange(round(track.t1 * fps) + 1) / fps
    s = track.sample(t)
    yaw = np.where(np.isfinite(s["yaw"]), s["yaw"], s["heading"])  # what geofix_for/locate_box use
    pitch = np.where(np.isfinite(s["pitch"]), s["pitch"], -90.0)
    return {"t": t, "lat": s["lat"], "lon": s["lon"], "alt": s["alt"], "yaw": yaw, "pitch": pitch}


def _pick_class(rng: np.random.Generator, need_m: float, used: list[str]) -> tuple[str, float] | None:
    """The least ``used`` class (ties at random) that can be ``need_m`` wide, and its size."""
    fits = [c for c in load_classes() if c.size_m[1] >= need_m]
    if not fits:
        return None
    counts = np.array([used.count(c.name) for c in fits]) + rng.uniform(0, 0.5, len(fits))
    c = fits[int(np.argmin(counts))]
    return c.name, float(rng.uniform(max(c.size_m[0], need_m), c.size_m[1]))


def _place_under_track(rng, east, north, alt, cam: Camera, *, min_alt_m: float, max_alt_m: float, n_objects: int) -> list[tuple[str, float, float, float]]:
    """``(class, east, north, size_m)`` of up to ``n_objects`` objects near the
    ground track where it is between ``min_alt_m`` and ``max_alt_m`` high,
    lowest passes first, ``SRT_SPACING_M`` apart, and away from where the
    camera is below :data:`SRT_MIN_RENDER_ALT_M` (rendered higher than the SRT says)."""
    low = np.isfinite(alt) & (alt < SRT_MIN_RENDER_ALT_M)
    low_pts = np.stack([east[low], north[low]], 1)
    clear_m = SRT_MIN_RENDER_ALT_M * math.hypot(cam.cx, cam.cy) / cam.fx + 2.0  # the view's reach there + an object's half-size
    ok = np.nonzero(np.isfinite(alt) & (alt >= min_alt_m) & (alt <= max_alt_m))[0]
    order = ok[np.argsort(alt[ok] + rng.uniform(0, 8, len(ok)))]
    placed: list[tuple[str, float, float, float]] = []
    for i in order:
        if len(placed) >= n_objects:
            break
        r = 0.15 * alt[i] * math.sqrt(rng.random())
        a = rng.uniform(0, 2 * np.pi)
        e, n = east[i] + r * math.cos(a), north[i] + r * math.sin(a)
        if any(math.hypot(e - pe, n - pn) < SRT_SPACING_M for _, pe, pn, _ in placed):
            continue
        if len(low_pts) and np.hypot(low_pts[:, 0] - e, low_pts[:, 1] - n).min() < clear_m:
            continue
        pick = _pick_class(rng, SRT_MIN_OBJECT_PX * gsd_m(cam, alt[i]), [p[0] for p in placed])
        if pick is not None:
            placed.append((pick[0], float(e), float(n), pick[1]))
    return placed


def srt_scene(srt_path: str | Path, *, seed: int = 0, fps: int = 10, width: int = 960, height: int = 540, focal_35mm: float = DRONE_FOCAL_35MM,
              max_alt_m: float = 45.0, min_alt_m: float = 8.0, n_objects: int = 16) -> SrtScene:
    """The scene of :func:`make_srt_clip`: issue objects on a wide paved area
    under the low (``min_alt_m``–``max_alt_m``) parts of the SRT's flight."""
    track = load_track(srt_path)
    f = srt_frame_poses(track, fps)
    cam = Camera.from_focal_35mm(focal_35mm, width, height)
    rng = np.random.default_rng(seed)
    lat0, lon0 = float(track.lat[0]), float(track.lon[0])
    g = srt_frame_poses(track, SRT_PLACEMENT_HZ)
    e0, n0 = enu_offset(lat0, lon0, g["lat"], g["lon"])
    placed = _place_under_track(rng, e0, n0, g["alt"], cam, min_alt_m=min_alt_m, max_alt_m=max_alt_m, n_objects=n_objects)
    if not placed:
        raise ValueError(f"{Path(srt_path).name}: no part of the flight is {min_alt_m:g}–{max_alt_m:g} m high")
    pe, pn = np.array([p[1] for p in placed]), np.array([p[2] for p in placed])
    # the world: a paved area (an east-heading road as wide as needed) around the objects
    ce, cn = (pe.min() + pe.max()) / 2, (pn.min() + pn.max()) / 2
    half_e = (pe.max() - pe.min()) / 2 + SRT_MARGIN_M
    half_n = (pn.max() - pn.min()) / 2 + SRT_MARGIN_M
    origin = offset_latlon(lat0, lon0, ce, cn)
    w = make_world(seed, origin=origin, heading_deg=90.0, s_range=(-half_e, half_e), res_m=SRT_RES_M, verge_m=1.0,
                   objects_per_10m=0.0, placements=[(c, e - ce, n - cn, size) for c, e, n, size in placed],
                   lanes_per_side=max(1, round(half_n / 3.5)), road_half_m=half_n, sidewalk_m=2.0)
    east, north = enu_offset(w.origin_lat, w.origin_lon, f["lat"], f["lon"])
    return SrtScene(track=track, world=w, cam=cam, focal_35mm=focal_35mm, fps=fps, t=f["t"], east=np.asarray(east), north=np.asarray(north),
                    alt=f["alt"], yaw=f["yaw"], pitch=f["pitch"])


def _sees_world(scene: SrtScene, pose: Pose) -> bool:
    """Whether the view from ``pose`` can reach the world's raster (always, when it sees the horizon)."""
    w, cam = scene.world, scene.cam
    edge_deg = 90.0 + pose.pitch_deg + math.degrees(math.atan(math.hypot(cam.cx, cam.cy) / cam.fx))
    if edge_deg >= 85.0:
        return True
    reach = pose.height_m * math.tan(math.radians(edge_deg))
    s, t = w.enu_to_road(pose.east, pose.north)
    ds = max(w.s_min - s, 0.0, s - w.s_max)
    dt = max(abs(float(t)) - w.t_max, 0.0)
    return math.hypot(ds, dt) <= reach


def render_srt_frame(scene: SrtScene, i: int) -> np.ndarray:
    """Frame ``i`` without sensor noise: the ground (or, out of its reach, the
    border colour) under a uniform haze veil for the camera height."""
    w, cam, pose = scene.world, scene.cam, scene.pose(i)
    if _sees_world(scene, pose):
        img = render_ground(w, cam, pose)
    else:
        img = np.full((cam.height, cam.width, 3), w.border_bgr, np.uint8)
    veil = 1.0 - math.exp(-pose.height_m / HAZE_M)
    return cv2.addWeighted(img, 1.0 - veil, np.full_like(img, 198), veil, 0.0)


def _visibility(scene: SrtScene) -> list[dict]:
    """Per object: the media-time intervals in which its centre is in frame, and
    the lowest camera height it is seen from."""
    w, cam = scene.world, scene.cam
    seen = np.zeros((len(w.objects), scene.n_frames), bool)
    for i in range(scene.n_frames):
        p = scene.pose(i)
        u, v, ok = ground_to_pixel(cam, np.array([o.east for o in w.objects]) - p.east, np.array([o.north for o in w.objects]) - p.north,
                                   height_m=p.height_m, pitch_deg=p.pitch_deg, yaw_deg=p.yaw_deg)
        seen[:, i] = ok & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
    out = []
    for row in seen:
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
        spans = [[round(float(scene.t[a]), 2), round(float(scene.t[b - 1]), 2)] for a, b in zip(edges[::2], edges[1::2])]
        alts = scene.alt[row]
        out.append({"visible_s": spans, "min_alt_m": round(float(np.nanmin(alts)), 1) if np.isfinite(alts).any() else None})
    return out


def write_srt_clip(scene: SrtScene, srt_path: str | Path, out_dir: str | Path) -> Path:
    """Render ``scene`` into ``out_dir``: ``drone.mp4``, the SRT copied as
    ``drone.SRT``, ``manifest.yaml`` (source: drone) and ``truth.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cam, w = scene.cam, scene.world
    writer = cv2.VideoWriter(str(out / "drone.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), scene.fps, (cam.width, cam.height))
    if not writer.isOpened():
        raise RuntimeError("cv2.VideoWriter could not open an mp4v writer")
    noise = _noise_pair((cam.height, cam.width), seed=w.seed + 1)
    for i in range(scene.n_frames):
        a, b = noise[i % len(noise)]
        writer.write(cv2.subtract(cv2.add(render_srt_frame(scene, i), a), b))
    writer.release()
    shutil.copyfile(srt_path, out / "drone.SRT")
    manifest = {"batch": f"srt-{Path(srt_path).stem}", "source": "drone", "platform_id": "渝A-无人机01", "allow_outside_china": True,
                "files": [{"video": "drone.mp4", "track": "drone.SRT",
                           "camera": {"focal_35mm": float(scene.focal_35mm), "width": cam.width, "height": cam.height},
                           "mount": {"kind": "nadir", "pitch_deg": -90.0}}]}
    (out / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False, default_flow_style=None), encoding="utf-8")
    records = [{k: v for k, v in r.items() if k not in ("s_m", "t_m")} | {"size_m": round(float(np.ptp(o.footprint, axis=0).max()), 2)} | vis
               for r, o, vis in zip(_truth_records(w), w.objects, _visibility(scene))]
    truth = {"video": "drone.mp4", "srt": Path(srt_path).name, "fps": scene.fps, "frames": scene.n_frames,
             "duration_s": round(scene.n_frames / scene.fps, 3), "origin": [w.origin_lat, w.origin_lon], "objects": records}
    (out / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")
    return out


def make_srt_clip(srt_path: str | Path, out_dir: str | Path, *, seed: int = 0, fps: int = 10, width: int = 960, height: int = 540,
                  focal_35mm: float = DRONE_FOCAL_35MM, max_alt_m: float = 45.0, min_alt_m: float = 8.0, n_objects: int = 16) -> Path:
    """A nadir drone clip whose camera follows a real DJI SRT frame by frame
    (see :class:`SrtScene`), over issue objects placed on the ground under the
    low parts of the flight; written by :func:`write_srt_clip`."""
    scene = srt_scene(srt_path, seed=seed, fps=fps, width=width, height=height, focal_35mm=focal_35mm,
                      max_alt_m=max_alt_m, min_alt_m=min_alt_m, n_objects=n_objects)
    return write_srt_clip(scene, srt_path, out_dir)


if __name__ == "__main__":  # python -m vision.synth.footage OUT [SEED]
    import sys
    import time

    t0 = time.time()
    d = make_demo_batch(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(d, f"{time.time() - t0:.1f}s")
    print(make_drone_clip(Path(sys.argv[1]) / "drone"))
