"""The demo footage batch, rendered from one synthetic street in the sample
jurisdiction: a forward-camera patrol video (30 km/h, a 4 s stop at a light
midway) with its 1 Hz GPX track, ``manifest.yaml`` and ``truth.json`` (the
placed objects); and a short nadir drone clip with a DJI-style SRT.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import yaml

from vision.camera import Camera, Mount
from vision.synth import class_by_name
from vision.synth.render import Pose, project_boxes, render_view
from vision.synth.world import DEFAULT_ORIGIN, World, make_world

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


def demo_world(seed: int = 0) -> World:
    """The demo street: 2+2 lanes heading ENE from the default origin, the demo issues placed."""
    w = make_world(seed, origin=DEFAULT_ORIGIN, heading_deg=ROAD_HEADING_DEG, s_range=(-15.0, 175.0), verge_m=14.0,
                   placements=DEMO_PLACEMENTS, lanes_per_side=LANES_PER_SIDE, road_half_m=ROAD_HALF_M, sidewalk_m=SIDEWALK_M,
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


def _write_gpx(path: Path, times: np.ndarray, lats: np.ndarray, lons: np.ndarray, name: str) -> None:
    pts = []
    for t, la, lo in zip(times, lats, lons):
        stamp = (START_UTC + timedelta(seconds=float(t))).strftime("%Y-%m-%dT%H:%M:%SZ")
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


def make_demo_batch(out_dir: str | Path, seed: int = 0, *, seconds: float = 20.0, fps: int = 30, video: bool = True) -> Path:
    """Write the demo vehicle batch (patrol.mp4, patrol.gpx, manifest.yaml, truth.json) into ``out_dir``.
    ``video=False`` skips rendering the video (track, manifest and truth only)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    w = demo_world(seed)
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
    _write_gpx(out / "patrol.gpx", times, lats, lons, "xunjian demo patrol")
    manifest = {
        "batch": BATCH_NAME, "source": "vehicle", "platform_id": PLATFORM_ID,
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
    truth = {"batch": BATCH_NAME, "seed": seed, "video": "patrol.mp4", "fps": fps, "frames": round(seconds * fps),
             "start_utc": START_UTC.strftime("%Y-%m-%dT%H:%M:%SZ"), "stop_s": [round(stop[0], 3), round(stop[1], 3)],
             "road": {"origin_lat": w.origin_lat, "origin_lon": w.origin_lon, "heading_deg": w.heading_deg},
             "objects": records}
    (out / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")
    return out


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


if __name__ == "__main__":  # python -m vision.synth.footage OUT [SEED]
    import sys
    import time

    t0 = time.time()
    d = make_demo_batch(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(d, f"{time.time() - t0:.1f}s")
    print(make_drone_clip(Path(sys.argv[1]) / "drone"))
