"""``xunjian ingest``: a batch of footage → observations in the store.

For each file of the batch (see :mod:`vision.manifest`): hash it; skip it if
the same content is already done; otherwise read its telemetry, put it on the
video's clock and check it, sample frames, detect, track and geolocate
(:mod:`vision.observe`), write blurred evidence, and record the file and its
observations in ONE transaction. A file that fails (corrupt video, telemetry
that does not cover it, coordinates swapped...) is recorded as failed with a
clear message and the batch goes on. Killing the process mid-file loses only
that file's unfinished work: the next run does it again, without duplicates.

The work of one file comes in pure pieces that an engine runs where it likes
(:mod:`vision.engines`): :func:`plan_file` (telemetry checks, the cut into
time segments, :mod:`vision.segments`), :func:`process_segment` (sample,
detect, track: no writes), :func:`file_found` (tracks stitched across the
cuts), :class:`EvidenceJob` (blurred evidence images), then :func:`file_rows`
and :func:`write_file`, the one store transaction. The ``local`` engine runs
them here, file after file; the ``ray`` engine runs segments on a Ray cluster
and writes here. Observation ids are ``<batch>:<sha256[:12]>:<n>`` with *n*
in the order of the file's finds, so a re-run or a retried task writes the
same rows again.

Outputs, besides the store: ``<out>/observations.geojson``,
``<out>/observations.json``, ``<out>/report.json`` and ``<out>/evidence/``,
where ``<out>`` defaults to ``$XUNJIAN_HOME/batches/<batch id>``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Protocol

import cv2
from pydantic import BaseModel, Field

from city import settings
from city.catalogue import Kind
from city.errors import InvalidInput, XunjianError
from city.observations import Batch, BatchFile, Observation, View, feature_collection
from vision.camera import Camera, Mount
from vision.evidence import write_evidence
from vision.manifest import (
    SOURCES,
    CameraSpec,
    FileSpec,
    Manifest,
    MountSpec,
    defaults,
    is_archive,
    load_manifest,
    sha256_file,
    unpack,
)
from vision.modelcard import ModelCard
from vision.observe import Found, TrackingConfig, geofix_for, merge, utc_at
from vision.sampling import SamplingConfig, SamplingStats, sample
from vision.segments import (
    FilePlan,
    Segment,
    SegmentObserver,
    SegmentResult,
    plan_segments,
    stitch,
    video_stats,
)

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "demo-patrol" / "demo-patrol.pt"
HEADING_ERROR_DEG = {"measured": 3.0, "derived": 15.0}
"""How far the heading may be off: from a compass/gimbal yaw, or derived from successive GPS fixes."""
RAY_SEGMENT_S = 120.0
"""The Ray engine's default segment length (the local engine keeps whole files unless told)."""


class IngestOptions(BaseModel):
    """Everything ``xunjian ingest`` can be told."""

    source: Literal["vehicle", "drone"] | None = Field(default=None, description="overrides the manifest")
    batch: str | None = Field(default=None, description="batch id (default: the manifest's, else folder name + path hash)")
    weights: Path = DEFAULT_WEIGHTS
    backend: Literal["auto", "onnx", "ultralytics"] = "auto"
    conf: float | None = Field(default=None, gt=0, lt=1, description="detection threshold (default: the model card's)")
    iou: float = Field(default=0.45, gt=0, lt=1)
    tile: Literal["auto", "never", "always"] = "auto"
    every_m: float | None = Field(default=None, gt=0)
    every_s: float | None = Field(default=None, gt=0)
    plates: bool = False
    allow_outside_china: bool = False
    force: bool = False
    out: Path | None = None
    threads: int | None = None
    engine: Literal["local", "ray"] = Field(default="local", description="local: this process; ray: a Ray cluster")
    address: str | None = Field(default=None, description="Ray cluster (host:port, 'auto'); default $RAY_ADDRESS, else a Ray instance started here")
    workers: int | None = Field(default=None, ge=1, description="Ray: detector actors (default one per CPU, or per GPU)")
    dispatch: Literal["auto", "segments", "frames"] = Field(
        default="auto", description="Ray: actors run whole segments, or tasks decode and send frames to detector actors (auto: frames when the cluster has GPUs)")
    segment_s: float | None = Field(default=None, ge=0, description=f"cut videos longer than this into segments (0: never; default {RAY_SEGMENT_S:g} s on Ray, whole files locally)")
    overlap_s: float = Field(default=5.0, ge=0, description="seconds each segment reads into the next, to link tracks across the cut")


class Progress(Protocol):
    def batch_started(self, batch_id: str, files: int) -> None: ...
    def file_started(self, name: str, seconds: float) -> None: ...
    def file_advanced(self, t: float) -> None: ...
    def file_finished(self, outcome: FileOutcome) -> None: ...


class QuietProgress:
    def batch_started(self, batch_id, files): pass
    def file_started(self, name, seconds): pass
    def file_advanced(self, t): pass
    def file_finished(self, outcome): pass


@dataclass
class FileOutcome:
    path: str
    status: Literal["done", "failed", "skipped"]
    sha256: str | None = None
    observations: int = 0
    error: str | None = None
    stats: dict = field(default_factory=dict)


@dataclass
class BatchReport:
    batch_id: str
    root: str
    out: str
    files: list[FileOutcome]
    notes: list[str]
    model: str
    seconds: float

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "failed"]

    def as_dict(self) -> dict:
        return {"batch": self.batch_id, "root": self.root, "out": self.out, "model": self.model,
                "seconds": round(self.seconds, 2), "notes": self.notes,
                "files": [f.__dict__ for f in self.files]}


def default_batch_id(folder: Path) -> str:
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    return f"{folder.resolve().name}-{digest}"


def ingest(path: str | Path, store, options: IngestOptions | None = None, progress: Progress | None = None) -> BatchReport:
    """Ingest the batch at ``path`` (a folder or a .zip/.tar archive) into ``store``.

    ``options.engine`` says where the files are processed: ``local`` (this
    process, one file after another) or ``ray`` (segments on a Ray cluster,
    :mod:`vision.engines.ray_engine`). Both write the store here, one
    transaction per file, and give the same observations for the same options."""
    from vision.detect import load_detector
    from vision.modelcard import check_card, load_card

    opts = options or IngestOptions()
    prog = progress or QuietProgress()
    started = time.perf_counter()
    root = Path(path).expanduser()
    if not root.exists():
        raise InvalidInput(f"{root}：不存在")
    if is_archive(root):
        root = unpack(root, settings.home() / "uploads")
    elif not root.is_dir():
        raise InvalidInput(f"{root}：应为目录或 .zip/.tar 压缩包")
    manifest, notes = load_manifest(root, opts.source)
    batch_id = opts.batch or manifest.batch or default_batch_id(root)
    out = opts.out or settings.home() / "batches" / batch_id

    if opts.conf is None:  # the model card says which threshold suits its model
        opts = opts.model_copy(update={"conf": load_card(opts.weights).conf})
    detector = load_detector(opts.weights, backend=opts.backend, conf=opts.conf, iou=opts.iou, threads=opts.threads)
    check_card(detector.card, store.city.catalogue, names=detector.names)
    model = f"{detector.card.name}@{detector.card.version}"
    if detector.card.demo_grade:
        notes.append(f"检测模型 {model} 为演示级（只在合成画面上训练），不能用于真实巡检")
    segment_s = opts.segment_s if opts.segment_s is not None else (RAY_SEGMENT_S if opts.engine == "ray" else 0.0)
    ctx = BatchContext(root=root, manifest=manifest, batch_id=batch_id, opts=opts, out=out, card=detector.card,
                       model=model, segment_s=segment_s or None)

    if opts.engine == "ray":
        from vision.engines.ray_engine import RayEngine

        engine = RayEngine(ctx)  # its actors load their own detectors (fails here if they cannot)
    else:
        from vision.engines.local import LocalEngine

        engine = LocalEngine(ctx, detector)
    with engine:
        now = datetime.now(timezone.utc)
        store.open_batch(Batch(id=batch_id, source=SOURCES[manifest.source], platform_id=manifest.platform_id, root=str(root),
                               manifest=manifest.model_dump(mode="json", exclude_none=True), created_at=now, updated_at=now))
        prog.batch_started(batch_id, len(manifest.files))
        outcomes = engine.run(store, prog)

    report = BatchReport(batch_id=batch_id, root=str(root), out=str(out), files=outcomes, notes=notes, model=model,
                         seconds=time.perf_counter() - started)
    write_outputs(store, report, out)
    return report


def write_outputs(store, report: BatchReport, out: Path) -> None:
    observations = store.observations(report.batch_id)
    out.mkdir(parents=True, exist_ok=True)
    (out / "observations.geojson").write_text(json.dumps(feature_collection(observations), ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "observations.json").write_text(json.dumps([o.model_dump(mode="json") for o in observations], ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=1), encoding="utf-8")


# -- the pieces of one file: engines run them (anywhere), then write the store -----------------


@dataclass
class BatchContext:
    """What every piece of a batch's work needs; picklable, so it travels to Ray workers."""

    root: Path
    manifest: Manifest
    batch_id: str
    opts: IngestOptions
    out: Path
    card: ModelCard
    model: str
    segment_s: float | None = None

    def spec(self, i: int) -> FileSpec:
        return self.manifest.files[i]


@dataclass
class EvidenceJob:
    """One observation's evidence images to write (:func:`vision.evidence.write_evidence`)."""

    jpeg: bytes
    box: tuple[float, float, float, float]
    label: str
    folder: Path
    stem: str
    plates: bool

    def run(self) -> tuple[str, str]:
        frame_path, crop_path, _ = write_evidence(self.jpeg, self.box, self.label, self.folder, self.stem, plates=self.plates)
        return str(frame_path), str(crop_path)


def error_message(rel: str, e: Exception) -> str | None:
    """The user-facing message of an error that fails one file (None: not such an error, a bug)."""
    if isinstance(e, XunjianError):
        return str(e)
    if isinstance(e, ValueError):  # TelemetryError is a ValueError with a user-facing message
        return str(e) if rel in str(e) else f"{rel}：{e}"
    if isinstance(e, cv2.error):
        return f"{rel}：OpenCV 无法处理：{e.err or e}"
    return None


def hash_media(ctx: BatchContext, spec: FileSpec) -> tuple[str | None, str | None]:
    """(sha256, None) of the file's media, or (None, why it cannot be read)."""
    rel = spec.media
    try:
        return sha256_file(ctx.root / rel), None
    except OSError as e:
        return None, f"{rel}：无法读取：{e}"


def plan_file(ctx: BatchContext, spec: FileSpec, sha: str) -> FilePlan:
    """Check the file's telemetry and settings and cut it into segments (or say why it fails)."""
    rel = spec.media
    started = time.perf_counter()
    if spec.image:
        return FilePlan(rel, sha, image=True, segments=[Segment(0, 0, None, None)], duration_s=1.0)
    try:
        vc = video_context(ctx, spec)
        fps, frames = _frame_count(vc.path)
    except (XunjianError, ValueError, cv2.error) as e:
        return FilePlan(rel, sha, error=error_message(rel, e))
    track = vc.track
    info = {"distance_m": round(float(track.distance_at(min(vc.media.duration_s, track.t1))), 1),
            "telemetry": track.fmt, "notes": list(track.notes),
            "view": view_geometry(vc.camera, vc.mount_spec, vc.gps_error_m, vc.heading_error_deg)}
    return FilePlan(rel, sha, segments=plan_segments(frames, fps, ctx.segment_s, ctx.opts.overlap_s),
                    duration_s=vc.media.duration_s, fps=fps, frames=frames, start_utc=track.start_utc, info=info,
                    seconds=time.perf_counter() - started)


def _frame_count(path: Path) -> tuple[float, int]:
    """Frame rate and count as :func:`vision.sampling.sample` reads them."""
    from vision.sampling import open_video

    cap = open_video(path)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        if not fps or math.isnan(fps) or fps > 1000:
            fps = 30.0
        return fps, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()


def process_segment(ctx: BatchContext, spec: FileSpec, plan: FilePlan, seg: Segment, detector,
                    on_t: Callable[[float], None] | None = None) -> SegmentResult:
    """Sample, detect and track one segment of a file (a still is one segment). Pure:
    nothing is written. ``on_t(t)`` hears the media time reached, about every 0.5 s.
    An error that fails the file comes back as ``result.error``."""
    started = time.perf_counter()
    try:
        run = _image_segment if spec.image else _video_segment
        result = run(ctx, spec, plan, seg, detector, on_t or (lambda t: None))
    except (XunjianError, ValueError, cv2.error) as e:
        return SegmentResult(plan.rel, seg.index, error=error_message(plan.rel, e))
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class FileFound:
    """One file's finds (tracks stitched across its segments), stats, warning and views."""

    found: list[Found]
    stats: dict
    warning: str | None
    views: list[View]
    start_utc: datetime | None


def file_found(plan: FilePlan, results: list[SegmentResult]) -> FileFound:
    """Put a file's segments together (:func:`vision.segments.stitch`)."""
    results = sorted(results, key=lambda r: r.index)
    if plan.image:
        r = results[0]
        stats, warning, found, start = dict(r.info), None, r.found or [], r.start_utc
    else:
        found = stitch(plan, results)
        (stats, warning), start = video_stats(plan, results), plan.start_utc
    stats["seconds"] = round(plan.seconds + sum(r.seconds for r in results), 2)
    return FileFound(found, stats, warning, [v for r in results for v in r.views], start)


def evidence_jobs(ctx: BatchContext, plan: FilePlan, found: list[Found]) -> list[EvidenceJob]:
    folder = ctx.out / "evidence" / f"{Path(plan.rel).stem}-{plan.sha[:8]}"
    jobs = []
    for n, f in enumerate(found, 1):
        cls = ctx.card.by_id(f.class_id)
        name = cls.name if cls else str(f.class_id)
        jobs.append(EvidenceJob(f.jpeg, f.box, f"{name} {f.conf:.2f}", folder, f"{n:03d}", ctx.opts.plates))
    return jobs


def file_rows(ctx: BatchContext, plan: FilePlan, ff: FileFound, evidence: list[tuple[str, str]]) -> tuple[BatchFile, list[Observation]]:
    """The file's ``batch_files`` record and observations (ids ``<batch>:<sha[:12]>:<n>``, n in find order)."""
    m, sha = ctx.manifest, plan.sha
    observations: list[Observation] = []
    for n, (f, (frame_uri, crop_uri)) in enumerate(zip(ff.found, evidence, strict=True), 1):
        cls = ctx.card.by_id(f.class_id)
        observations.append(Observation(
            id=f"{ctx.batch_id}:{sha[:12]}:{n:03d}", batch_id=ctx.batch_id, file=plan.rel, file_sha256=sha,
            source=SOURCES[m.source], platform_id=m.platform_id, class_name=cls.name if cls else str(f.class_id),
            label_zh=cls.label_zh if cls else "", kind=Kind(cls.kind) if cls and cls.kind else None,
            code=cls.code if cls else None, confidence=round(f.conf, 4), mean_confidence=round(f.mean_conf, 4),
            lat=round(f.lat, 7), lon=round(f.lon, 7), error_m=round(f.error_m, 1), frames=f.frames,
            first_t=round(f.first_t, 3), last_t=round(f.last_t, 3), best_t=round(f.best_t, 3),
            seen_at=utc_at(ff.start_utc, f.best_t), box=f.box, frame_uri=frame_uri, crop_uri=crop_uri, model=ctx.model,
        ))
    record = BatchFile(batch_id=ctx.batch_id, path=plan.rel, sha256=sha, status="failed" if ff.warning else "done",
                       error=ff.warning, observations=len(observations), stats=ff.stats, finished_at=datetime.now(timezone.utc))
    return record, observations


def write_file(store, record: BatchFile, observations: list[Observation], views: list[View]) -> FileOutcome:
    """The store write of one file: record, observations and views in ONE transaction,
    replacing what an earlier (killed, retried) run left for the same path."""
    store.finish_file(record, observations, views)
    return FileOutcome(record.path, record.status, record.sha256, observations=len(observations), error=record.error,
                       stats=record.stats)


def write_failure(store, ctx: BatchContext, rel: str, sha: str, message: str) -> FileOutcome:
    store.finish_file(BatchFile(batch_id=ctx.batch_id, path=rel, sha256=sha, status="failed", error=message,
                                finished_at=datetime.now(timezone.utc)))
    return FileOutcome(rel, "failed", sha, error=message)


def _settings(spec: FileSpec, manifest: Manifest, opts: IngestOptions) -> tuple[CameraSpec, MountSpec, SamplingConfig, float]:
    d = defaults(manifest.source)
    cam = spec.camera or manifest.camera or d["camera"]
    mount = spec.mount or manifest.mount or d["mount"]
    sampling = manifest.sampling or d["sampling"]
    if opts.every_m is not None or opts.every_s is not None:
        sampling = sampling.model_copy(update={k: v for k, v in (("every_m", opts.every_m), ("every_s", opts.every_s)) if v is not None})
    return cam, mount, sampling, manifest.gps_error_m or d["gps_error_m"]


def view_of(pose, t: float, utc) -> View:
    """The stored view of one detected frame (NaN telemetry fields become None)."""
    def known(v):
        return None if v is None or math.isnan(v) else round(float(v), 3)
    return View(t=round(t, 3), utc=utc, lat=round(pose.lat, 7), lon=round(pose.lon, 7), heading=known(pose.heading),
                yaw=known(pose.yaw), alt=known(pose.alt), pitch=known(pose.pitch))


def view_geometry(camera: Camera, mount: MountSpec, gps_error_m: float, heading_error_deg: float) -> dict:
    """How a file's views project onto the ground (``BatchFile.stats["view"]``), for :mod:`vision.coverage`."""
    return {"camera": {"width": camera.width, "height": camera.height, "hfov_deg": round(camera.hfov_deg, 4)},
            "mount": mount.model_dump(), "gps_error_m": gps_error_m, "heading_error_deg": heading_error_deg}


def camera_for(spec: CameraSpec, width: int, height: int, focal_35mm: float | None = None) -> Camera:
    if spec.hfov_deg:
        return Camera(width=width, height=height, hfov_deg=spec.hfov_deg)
    f35 = focal_35mm or spec.focal_35mm or 24.0
    return Camera.from_focal_35mm(f35, width, height)


def _mount(m: MountSpec) -> Mount:
    return Mount(kind=m.kind, height_m=m.height_m, pitch_deg=m.pitch_deg, yaw_offset_deg=m.yaw_offset_deg)


def _detect_fn(detector, mount: Mount, opts: IngestOptions, width: int, height: int):
    big = max(width, height) > 2.5 * detector.imgsz
    if opts.tile == "always" or (opts.tile == "auto" and mount.is_drone and big):
        from vision.slicing import sliced

        tile = max(detector.imgsz, 640)
        return lambda image: sliced(detector, image, tile=tile, overlap=0.2)
    return detector


@dataclass
class VideoContext:
    """A video with its telemetry on the video's clock, and how to look at it."""

    path: Path
    media: object
    track: object
    camera: Camera
    mount_spec: MountSpec
    mount: Mount
    sampling: SamplingConfig
    gps_error_m: float
    rate_hz: float
    heading_error_deg: float


def video_context(ctx: BatchContext, spec: FileSpec) -> VideoContext:
    """Probe the video, read its telemetry, align and check it (raises what fails the file)."""
    from vision.telemetry import align, check_region, load_track, probe

    opts, manifest = ctx.opts, ctx.manifest
    media_path = ctx.root / spec.video
    media = probe(media_path)
    if spec.track:
        track = load_track(ctx.root / spec.track, coord_order=spec.coord_order)
    else:
        track = load_track(media_path, coord_order=spec.coord_order)  # GoPro GPMF inside the MP4
    check_region(track, allow_outside_china=opts.allow_outside_china or manifest.allow_outside_china)
    track = align(track, media, offset_s=spec.clock_offset_s)
    cam_spec, mount_spec, sampling, gps_error = _settings(spec, manifest, opts)
    mount = _mount(mount_spec)
    if mount.kind in ("forward", "side") and mount.height_m is None:
        raise InvalidInput(f"{spec.video}：车载相机需要安装高度 mount.height_m")
    camera = camera_for(cam_spec, media.width, media.height)
    rate = 1.0 / sampling.every_s if sampling.every_s else 8.0 / (sampling.every_m or 3.0)
    return VideoContext(media_path, media, track, camera, mount_spec, mount, sampling, gps_error, rate,
                        HEADING_ERROR_DEG["derived" if track.heading_derived else "measured"])


def _video_segment(ctx: BatchContext, spec: FileSpec, plan: FilePlan, seg: Segment, detector, on_t) -> SegmentResult:
    vc = video_context(ctx, spec)
    track = vc.track
    observer = SegmentObserver(_detect_fn(detector, vc.mount, ctx.opts, vc.media.width, vc.media.height), vc.camera,
                               vc.mount, gps_error_m=vc.gps_error_m, sample_rate_hz=vc.rate_hz, conf=ctx.opts.conf,
                               heading_error_deg=vc.heading_error_deg, own_stop=seg.own_stop)
    stats = SamplingStats()
    if seg.start == 0 and seg.stop is None:  # the whole video
        frames = sample(vc.path, track.distance_at, vc.sampling, stats)
    else:
        frames = sample(vc.path, track.distance_at, vc.sampling, stats, start_index=seg.start, stop_index=seg.stop, seek=True)
    last_report = plan.own_seconds(seg)[0]
    views: list[View] = []
    own_counts = None  # (blurred, duplicates) when the tail began
    for frame in frames:
        pose = track.at(frame.t)
        observer.feed(frame, pose)
        if seg.owns(frame.index):
            views.append(view_of(pose, frame.t, utc_at(track.start_utc, frame.t)))
        elif own_counts is None:
            own_counts = (stats.blurred, stats.duplicates)
        if frame.t - last_report >= 0.5:
            on_t(frame.t)
            last_report = frame.t
    blurred, duplicates = own_counts or (stats.blurred, stats.duplicates)
    own_frames = seg.own_stop - seg.start if seg.own_stop is not None else stats.read
    return SegmentResult(plan.rel, seg.index, parts=observer.parts(), views=views, read=min(stats.read, own_frames),
                         kept=len(views), blurred=blurred, duplicates=duplicates, detections=observer.detections,
                         declared=stats.declared_frames, fps=stats.fps, notes=stats.notes)


def _image_segment(ctx: BatchContext, spec: FileSpec, plan: FilePlan, seg: Segment, detector, on_t) -> SegmentResult:
    from vision.telemetry import read_image_pose

    opts, manifest = ctx.opts, ctx.manifest
    path = ctx.root / spec.image
    ip = read_image_pose(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInput(f"{spec.image}：无法解码图片")
    h, w = image.shape[:2]
    cam_spec, mount_spec, _, gps_error = _settings(spec, manifest, opts)
    if not opts.allow_outside_china and not manifest.allow_outside_china:
        from city.geo import in_china

        if not in_china(ip.pose.lat, ip.pose.lon):
            if in_china(ip.pose.lon, ip.pose.lat):
                raise InvalidInput(f"{spec.image}：EXIF 经纬度像是写反了（{ip.pose.lat}, {ip.pose.lon}）")
            raise InvalidInput(f"{spec.image}：位置 {ip.pose.lat:.5f},{ip.pose.lon:.5f} 不在中国境内（境外素材请加 --allow-outside-china）")
    mount = _mount(mount_spec)
    camera = camera_for(cam_spec if (spec.camera or manifest.camera) else CameraSpec(), w, h, ip.focal_35mm)
    detect = _detect_fn(detector, mount, opts, w, h)
    dets = detect(image)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    found: list[Found] = []
    for i in range(len(dets)):
        box = dets.xyxy[i].astype(float)
        fix = geofix_for(ip.pose, camera, mount, box, gps_error)
        if fix is None:
            continue
        conf = float(dets.confidence[i])
        found.append(Found(class_id=int(dets.class_id[i]), lat=fix.lat, lon=fix.lon, error_m=fix.error_m, conf=conf,
                           mean_conf=conf, frames=1, first_t=0.0, last_t=0.0, best_t=0.0,
                           box=tuple(float(v) for v in box), jpeg=buf.tobytes()))
    on_t(1.0)
    info = {"detections": len(dets), "width": w, "height": h, "focal_35mm": ip.focal_35mm, "has_xmp": ip.has_xmp,
            "altitude_m": ip.pose.alt, "gimbal_pitch": ip.pose.pitch,
            "view": view_geometry(camera, mount_spec, gps_error, HEADING_ERROR_DEG["measured"])}
    cfg = TrackingConfig()
    return SegmentResult(plan.rel, seg.index, found=merge(found, cfg.merge_floor_m, cfg.merge_any_class_m),
                         views=[view_of(ip.pose, 0.0, ip.pose.utc)], info=info, kept=1, detections=len(dets),
                         start_utc=ip.pose.utc)
