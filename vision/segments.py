"""Long videos in time segments: plan the cuts, track inside each segment, and
stitch the tracks back together across the cuts.

A video longer than ``segment_s`` is cut into equal segments (a video shorter
than one segment is one segment: exactly the whole-file pipeline). Segment
*k* owns the frames ``[start, own_stop)``; it goes on reading ``overlap_s``
seconds into the next segment's frames (its *tail*), where the tracker keeps
following the tracks it has but nothing is recorded except *hints*: where
each of its tracks was seen there. The next segment starts its sampler and
tracker fresh at the cut and owns those frames. :func:`stitch` links a track
of segment *k* to a track of segment *k+1* when a hint and one of the next
track's own sightings lie close together (in time, and on the ground by the
same rule as :func:`vision.observe.merge`), and joins their sightings, so a
track across the cut becomes one observation and no frame is counted twice.
Views (the sampled frames) are only those of each segment's own frames.

The pieces are plain data (picklable), so segments can run anywhere (a Ray
actor) and be stitched by whoever collects them (:mod:`vision.engines`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate

from city import geo
from city.observations import View
from vision.observe import (
    Found,
    Observer,
    TrackingConfig,
    Tracklet,
    geofix_for,
    merge,
)
from vision.sampling import Frame

LINK_DT_S = 1.0
"""A hint and a sighting further apart in time than this are not compared."""


@dataclass(frozen=True)
class Segment:
    """Frames ``[start, own_stop)`` are this segment's; it reads on to ``stop`` (None: the end of the video)."""

    index: int
    start: int
    own_stop: int | None
    stop: int | None

    def owns(self, frame_index: int) -> bool:
        return self.own_stop is None or frame_index < self.own_stop


def plan_segments(frames: int, fps: float, segment_s: float | None, overlap_s: float) -> list[Segment]:
    """Equal segments of at most ``segment_s`` seconds, each reading ``overlap_s`` into the next.

    One segment (the whole video) when ``segment_s`` is None, when the video is
    not longer than one segment, or when its frame count is unknown."""
    seg = round(segment_s * fps) if segment_s else 0
    if seg <= 0 or frames <= seg:
        return [Segment(0, 0, None, None)]
    n = math.ceil(frames / seg)
    cuts = [round(k * frames / n) for k in range(n + 1)]
    overlap = max(0, round(overlap_s * fps))
    out = []
    for k in range(n):
        last = k == n - 1
        out.append(Segment(k, cuts[k], None if last else cuts[k + 1], None if last else cuts[k + 1] + overlap))
    return out


@dataclass
class FilePlan:
    """One file of a batch, ready to run: its content hash, what its segments are, what its stats say already."""

    rel: str
    sha: str | None
    image: bool = False
    segments: list[Segment] = field(default_factory=list)
    duration_s: float = 1.0
    fps: float = 0.0
    frames: int = 0
    start_utc: datetime | None = None
    info: dict = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def own_seconds(self, seg: Segment) -> tuple[float, float]:
        """The media times ``[t0, t1)`` a segment owns."""
        if self.image:
            return 0.0, 1.0
        t0 = seg.start / self.fps if self.fps else 0.0
        t1 = seg.own_stop / self.fps if seg.own_stop is not None and self.fps else self.duration_s
        return t0, max(t1, t0)


@dataclass
class Hint:
    """A tracked box seen in a segment's tail (frames owned by the next segment)."""

    t: float
    class_id: int
    lat: float
    lon: float
    error_m: float


@dataclass
class TrackPart:
    """One track of one segment (its own sightings) and its hints past the cut."""

    tracklet: Tracklet
    hints: list[Hint] = field(default_factory=list)


@dataclass
class SegmentResult:
    """What one segment gave: its tracks (videos) or finds (a still), the views
    of its own frames, and its own frames' counts."""

    rel: str
    index: int
    parts: list[TrackPart] = field(default_factory=list)
    found: list[Found] | None = None
    views: list[View] = field(default_factory=list)
    read: int = 0
    kept: int = 0
    blurred: int = 0
    duplicates: int = 0
    detections: int = 0
    declared: int = 0
    fps: float = 0.0
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    start_utc: datetime | None = None
    seconds: float = 0.0
    error: str | None = None


class SegmentObserver(Observer):
    """:class:`vision.observe.Observer` for one segment: frames from ``own_stop``
    on only feed the tracker and leave :class:`Hint` s for :func:`stitch`. With
    ``own_stop=None`` it is exactly the whole-file Observer."""

    def __init__(self, *args, own_stop: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.own_stop = own_stop
        self.hints: dict[int, list[Hint]] = {}

    def feed(self, frame: Frame, pose) -> None:
        if self.own_stop is None or frame.index < self.own_stop:
            super().feed(frame, pose)
            return
        dets = self.detect(frame.image)
        tracked = self.tracker.update(dets)
        if len(dets) == 0:
            return
        for i in range(len(tracked)):
            tid = int(tracked.tracker_id[i]) if tracked.tracker_id is not None else -1
            if tid not in self.tracklets:  # only tracks with sightings of its own can be linked
                continue
            fix = geofix_for(pose, self.camera, self.mount, tracked.xyxy[i].astype(float), self.gps_error_m,
                             self.heading_error_deg)
            if fix is not None:
                cid = int(tracked.class_id[i]) if tracked.class_id is not None else 0
                self.hints.setdefault(tid, []).append(Hint(frame.t, cid, fix.lat, fix.lon, fix.error_m))

    def parts(self) -> list[TrackPart]:
        """Tracks, then lone boxes, in the order :meth:`Observer.finish` takes them."""
        return ([TrackPart(tl, self.hints.get(tid, [])) for tid, tl in self.tracklets.items()]
                + [TrackPart(tl) for tl in self.untracked])


def summarise(tl: Tracklet) -> Found | None:
    """A track as one find (:meth:`Observer._summarise`, which uses no observer state)."""
    return Observer._summarise(None, tl)  # type: ignore[arg-type]


def _winner(tl: Tracklet) -> int:
    return max(tl.votes, key=tl.votes.get) if tl.votes else tl.class_id


def _linked(x: TrackPart, y: TrackPart, cut_t: float, end_t: float, cfg: TrackingConfig) -> bool:
    """A hint of ``x`` (past the cut) and an own sighting of ``y`` in the overlap are
    the same object: close in time, and close on the ground as :func:`merge` judges."""
    cls_y = _winner(y.tracklet)
    head = [s for s in y.tracklet.sightings if s.fix is not None and cut_t - 1e-6 <= s.t <= end_t + 1e-6]
    for h in x.hints:
        for s in head:
            if abs(h.t - s.t) > LINK_DT_S:
                continue
            d = geo.haversine_m(h.lat, h.lon, s.fix.lat, s.fix.lon)
            if d <= cfg.merge_any_class_m or (h.class_id == cls_y and d <= max(cfg.merge_floor_m, (h.error_m + s.fix.error_m) / 4)):
                return True
    return False


def _join(parts: list[TrackPart]) -> Tracklet:
    """One track from linked parts (in segment order): all sightings, summed votes, the best frame."""
    if len(parts) == 1:
        return parts[0].tracklet
    first = parts[0].tracklet
    tl = Tracklet(class_id=first.class_id)
    for p in parts:
        t = p.tracklet
        tl.sightings.extend(t.sightings)
        for c, v in t.votes.items():
            tl.votes[c] = tl.votes.get(c, 0.0) + v
        if t.best_score > tl.best_score:
            tl.best_score, tl.best_jpeg, tl.best_box, tl.best_t = t.best_score, t.best_jpeg, t.best_box, t.best_t
    return tl


def stitch(plan: FilePlan, results: list[SegmentResult], cfg: TrackingConfig | None = None) -> list[Found]:
    """The file's finds from its segments' tracks: tracks linked across each cut are
    joined, then summarised, merged and filtered as :meth:`Observer.finish` does."""
    cfg = cfg or TrackingConfig()
    results = sorted(results, key=lambda r: r.index)
    parts = [p for r in results for p in r.parts]
    first = list(accumulate([len(r.parts) for r in results], initial=0))
    parent = list(range(len(parts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k in range(len(results) - 1):
        seg = plan.segments[results[k].index]
        if seg.own_stop is None or seg.stop is None:
            continue
        cut_t, end_t = seg.own_stop / plan.fps, seg.stop / plan.fps
        for i in range(first[k], first[k + 1]):
            if not parts[i].hints:
                continue
            for j in range(first[k + 1], first[k + 2]):
                if _linked(parts[i], parts[j], cut_t, end_t, cfg):
                    a, b = root(i), root(j)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    groups: dict[int, list[TrackPart]] = {}
    for i, p in enumerate(parts):
        groups.setdefault(root(i), []).append(p)
    found = [f for members in groups.values() if (f := summarise(_join(members)))]
    return [f for f in merge(found, cfg.merge_floor_m, cfg.merge_any_class_m)
            if f.frames >= cfg.min_frames or f.conf >= cfg.single_frame_conf]


def truncation_note(declared: int, read: int, fps: float) -> str:
    """The note :func:`vision.sampling.sample` writes for a truncated video."""
    return f"视频可能被截断：声明 {declared} 帧，只读到 {read} 帧（约 {read / fps:.1f} s）"


def video_stats(plan: FilePlan, results: list[SegmentResult]) -> tuple[dict, str | None]:
    """A segmented video's stats (as the whole-file pipeline writes them) and its
    warning (a truncated video), from its segments' own frames."""
    results = sorted(results, key=lambda r: r.index)
    read = sum(r.read for r in results)
    notes = list(plan.info.get("notes", []))
    for r in results:
        notes += [n for n in r.notes if n not in notes]
    fps = results[0].fps if results else plan.fps
    warning = None
    if plan.frames > 0 and read < 0.95 * plan.frames:
        warning = truncation_note(plan.frames, read, fps)
        if warning not in notes:  # a whole-file segment's sampler wrote it already
            notes.append(warning)
    info = {
        "fps": round(fps, 3), "frames_read": read, "frames_kept": sum(r.kept for r in results),
        "blurred": sum(r.blurred for r in results), "duplicates": sum(r.duplicates for r in results),
        "detections": sum(r.detections for r in results), "duration_s": round(plan.duration_s, 2),
        **{k: v for k, v in plan.info.items() if k not in ("notes", "view")},
        "notes": notes, "view": plan.info.get("view"),
    }
    if len(results) > 1:
        info["segments"] = len(results)
    return info, warning


class FileMeter:
    """Seconds of one file's footage done, summed over its segments (each counts
    only its own frames, so a tail is not counted twice and a retried segment
    starting again counts from its start again)."""

    def __init__(self, plan: FilePlan):
        self.plan = plan
        self.done: dict[int, float] = {}

    def update(self, index: int, t: float) -> float:
        t0, t1 = self.plan.own_seconds(self.plan.segments[index])
        self.done[index] = min(max(t - t0, 0.0), t1 - t0)
        return self.total

    @property
    def total(self) -> float:
        return sum(self.done.values())
