"""One footage file → observations: sample, detect, track, geolocate, merge.

The detector runs on the sampled frames; ByteTrack (Roboflow ``trackers``)
links its boxes from frame to frame; every tracked box is placed on the ground
(:func:`vision.geolocate.locate_box`); a track becomes ONE observation with its
best frame, and tracks of the same class whose positions agree (a track that
was lost and picked up again, or the same pothole seen again after a turn) are
merged. Nothing here writes to the store: :mod:`vision.ingest` does that.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import cv2
import numpy as np
import supervision as sv
from pydantic import BaseModel, Field

from city import geo
from vision.camera import Camera, Mount
from vision.geolocate import GeoFix, locate_box
from vision.sampling import Frame


class TrackingConfig(BaseModel):
    """How boxes become observations."""

    min_frames: int = Field(default=2, ge=1, description="frames a track needs to count…")
    single_frame_conf: float = Field(default=0.6, ge=0, le=1, description="…unless one sighting is at least this confident")
    lost_after: int = Field(default=6, ge=1, description="sampled frames a track survives unseen")
    merge_floor_m: float = Field(default=3.0, ge=0, description="tracks of one class closer than max(this, mean error/2) are one issue")
    merge_any_class_m: float = Field(default=1.5, ge=0, description="tracks of any classes closer than this are one issue (the class with most confidence wins)")
    edge_px: int = Field(default=4, ge=0, description="boxes touching the frame edge make poor evidence")


@dataclass
class Sighting:
    t: float
    conf: float
    box: np.ndarray
    fix: GeoFix | None


@dataclass
class Tracklet:
    """The sightings of one tracked object and its best evidence frame so far."""

    class_id: int
    sightings: list[Sighting] = field(default_factory=list)
    votes: dict[int, float] = field(default_factory=dict)
    best_score: float = -1.0
    best_jpeg: bytes = b""
    best_box: np.ndarray | None = None
    best_t: float = 0.0

    def add(self, s: Sighting, class_id: int, image: np.ndarray, edge_px: int) -> None:
        self.sightings.append(s)
        self.votes[class_id] = self.votes.get(class_id, 0.0) + s.conf
        h, w = image.shape[:2]
        x1, y1, x2, y2 = s.box
        on_edge = x1 <= edge_px or y1 <= edge_px or x2 >= w - edge_px or y2 >= h - edge_px
        score = s.conf * (0.5 if on_edge else 1.0) + 1e-6 * (x2 - x1) * (y2 - y1) / (w * h)
        if score > self.best_score:
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            if ok:
                self.best_score, self.best_jpeg, self.best_box, self.best_t = score, buf.tobytes(), s.box.copy(), s.t


@dataclass
class Found:
    """A physical issue found in one file, before it is written anywhere."""

    class_id: int
    lat: float
    lon: float
    error_m: float
    conf: float
    mean_conf: float
    frames: int
    first_t: float
    last_t: float
    best_t: float
    box: tuple[float, float, float, float]
    jpeg: bytes


def _known(v) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def geofix_for(pose, camera: Camera, mount: Mount, box: np.ndarray, gps_error_m: float,
               heading_error_deg: float = 3.0) -> GeoFix | None:
    """Where on the ground a box is, given the platform pose at its frame.

    ``heading_error_deg`` is how far the heading may be off (a heading derived
    from 1 Hz positions is worse than a compass or gimbal yaw); it widens the
    error radius by range × sin(error). Without any heading, a drone's nadir
    view still bounds the object: the point below the drone, with the ground
    distance to the box as extra error; a vehicle camera gives nothing."""
    heading = _known(pose.heading)
    yaw = _known(pose.yaw)
    if heading is None:
        heading = yaw
    alt, pitch = _known(pose.alt), _known(pose.pitch)
    xyxy = tuple(float(v) for v in box)
    kw = dict(lat=pose.lat, lon=pose.lon, alt_m=alt, gimbal_pitch_deg=pitch if mount.is_drone else None,
              gimbal_yaw_deg=yaw if mount.is_drone else None, xyxy=xyxy, gps_error_m=gps_error_m)
    if heading is None:
        if not mount.is_drone:
            return None
        fix = locate_box(camera, mount, heading_deg=0.0, **kw)
        if fix is None:
            return None
        return fix.model_copy(update={"lat": pose.lat, "lon": pose.lon, "error_m": fix.error_m + fix.range_m})
    fix = locate_box(camera, mount, heading_deg=heading, **kw)
    if fix is None or heading_error_deg <= 0:
        return fix
    extra = fix.range_m * math.sin(math.radians(heading_error_deg))
    return fix.model_copy(update={"error_m": math.hypot(fix.error_m, extra)})


class Observer:
    """Feed it sampled frames (with poses); :meth:`finish` returns what was found."""

    def __init__(self, detect: Callable[[np.ndarray], sv.Detections], camera: Camera, mount: Mount, *,
                 gps_error_m: float, sample_rate_hz: float, config: TrackingConfig | None = None, conf: float = 0.25,
                 heading_error_deg: float = 3.0):
        from trackers import (
            ByteTrackTracker,  # Roboflow's ByteTrack (supervision's successor)
        )

        self.detect, self.camera, self.mount, self.gps_error_m = detect, camera, mount, gps_error_m
        self.heading_error_deg = heading_error_deg
        self.cfg = config or TrackingConfig()
        self.tracker = ByteTrackTracker(
            lost_track_buffer=self.cfg.lost_after, frame_rate=max(sample_rate_hz, 0.1),
            track_activation_threshold=conf, minimum_consecutive_frames=1,
            minimum_iou_threshold=0.05, high_conf_det_threshold=conf,
        )
        self.tracklets: dict[int, Tracklet] = {}
        self.untracked: list[Tracklet] = []
        self.detections = 0

    def feed(self, frame: Frame, pose) -> None:
        dets = self.detect(frame.image)
        self.detections += len(dets)
        if len(dets) == 0:
            self.tracker.update(dets)
            return
        tracked = self.tracker.update(dets)
        for i in range(len(tracked)):
            box = tracked.xyxy[i].astype(float)
            cid = int(tracked.class_id[i]) if tracked.class_id is not None else 0
            conf = float(tracked.confidence[i]) if tracked.confidence is not None else 1.0
            tid = int(tracked.tracker_id[i]) if tracked.tracker_id is not None else -1
            s = Sighting(t=frame.t, conf=conf, box=box,
                         fix=geofix_for(pose, self.camera, self.mount, box, self.gps_error_m, self.heading_error_deg))
            if tid < 0:
                tl = Tracklet(class_id=cid)
                self.untracked.append(tl)
            else:
                tl = self.tracklets.setdefault(tid, Tracklet(class_id=cid))
            tl.add(s, cid, frame.image, self.cfg.edge_px)

    def finish(self) -> list[Found]:
        """Tracks (and lone boxes) summarised, merged by class and place, then
        kept if seen in ``min_frames`` frames or once with ``single_frame_conf``:
        a box the tracker could not link still counts when other sightings of
        the same class land at the same place."""
        found = [f for tl in [*self.tracklets.values(), *self.untracked] if (f := self._summarise(tl))]
        return [f for f in merge(found, self.cfg.merge_floor_m, self.cfg.merge_any_class_m)
                if f.frames >= self.cfg.min_frames or f.conf >= self.cfg.single_frame_conf]

    def _summarise(self, tl: Tracklet) -> Found | None:
        fixes = [s for s in tl.sightings if s.fix is not None]
        best_conf = max(s.conf for s in tl.sightings)
        if not fixes or tl.best_box is None:
            return None
        lat, lon, err = combine([(s.fix.lat, s.fix.lon, s.fix.error_m, s.conf) for s in fixes])
        confs = [s.conf for s in tl.sightings]
        class_id = max(tl.votes, key=tl.votes.get)  # a track may flicker between classes: confidence-weighted vote
        return Found(class_id=class_id, lat=lat, lon=lon, error_m=err, conf=best_conf, mean_conf=float(np.mean(confs)),
                     frames=len(tl.sightings), first_t=min(s.t for s in tl.sightings), last_t=max(s.t for s in tl.sightings),
                     best_t=tl.best_t, box=tuple(float(v) for v in tl.best_box), jpeg=tl.best_jpeg)


def combine(points: list[tuple[float, float, float, float]]) -> tuple[float, float, float]:
    """Fuse position estimates ``(lat, lon, error_m, weight)`` into one.

    Weighted by confidence / error²; the result's error is the smallest single
    error (GPS bias is shared by all sightings, so averaging does not shrink
    it) or twice the weighted spread, whichever is larger."""
    lat0, lon0 = points[0][0], points[0][1]
    east, north, w, errs = [], [], [], []
    for lat, lon, err, conf in points:
        e = geo.haversine_m(lat0, lon0, lat0, lon) * (1 if lon >= lon0 else -1)
        n = geo.haversine_m(lat0, lon0, lat, lon0) * (1 if lat >= lat0 else -1)
        east.append(e), north.append(n), w.append(conf / max(err, 0.1) ** 2), errs.append(err)
    east, north, w = np.array(east), np.array(north), np.array(w)
    w = w / w.sum()
    me, mn = float((w * east).sum()), float((w * north).sum())
    spread = float(np.sqrt((w * ((east - me) ** 2 + (north - mn) ** 2)).sum()))
    dist = math.hypot(me, mn)
    bearing = math.degrees(math.atan2(me, mn)) % 360
    lat, lon = geo.destination(lat0, lon0, bearing, dist) if dist > 0 else (lat0, lon0)
    return float(lat), float(lon), max(min(errs), 2 * spread)


def merge(found: list[Found], floor_m: float, any_class_m: float = 0.0) -> list[Found]:
    """One find per physical issue (union-find): finds of the same class within
    max(``floor_m``, mean error / 2) of each other, or of any classes within
    ``any_class_m`` (the detector hesitating between two classes of one object),
    are merged; the merged class is the one with the most confidence × frames."""
    n = len(found)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            a, b = found[i], found[j]
            d = geo.haversine_m(a.lat, a.lon, b.lat, b.lon)
            if d <= any_class_m or (a.class_id == b.class_id and d <= max(floor_m, (a.error_m + b.error_m) / 4)):
                parent[root(j)] = root(i)
    groups: dict[int, list[Found]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(found[i])
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        votes: dict[int, float] = {}
        for m in members:
            votes[m.class_id] = votes.get(m.class_id, 0.0) + m.conf * m.frames
        cls = max(votes, key=votes.get)
        lat, lon, err = combine([(m.lat, m.lon, m.error_m, m.conf * m.frames) for m in members])
        best = max((m for m in members if m.class_id == cls), key=lambda m: m.conf)
        frames = sum(m.frames for m in members)
        out.append(Found(class_id=cls, lat=lat, lon=lon, error_m=err, conf=best.conf,
                         mean_conf=sum(m.mean_conf * m.frames for m in members) / frames, frames=frames,
                         first_t=min(m.first_t for m in members), last_t=max(m.last_t for m in members),
                         best_t=best.best_t, box=best.box, jpeg=best.jpeg))
    return sorted(out, key=lambda f: (f.first_t, f.class_id))


def utc_at(start_utc, t: float):
    return start_utc + timedelta(seconds=t) if start_utc is not None else None
