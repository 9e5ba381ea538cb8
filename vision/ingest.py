"""``xunjian ingest``: a batch of footage → observations in the store.

For each file of the batch (see :mod:`vision.manifest`): hash it; skip it if
the same content is already done; otherwise read its telemetry, put it on the
video's clock and check it, sample frames, detect, track and geolocate
(:mod:`vision.observe`), write blurred evidence, and record the file and its
observations in ONE transaction. A file that fails (corrupt video, telemetry
that does not cover it, coordinates swapped...) is recorded as failed with a
clear message and the batch goes on. Killing the process mid-file loses only
that file's unfinished work: the next run does it again, without duplicates.

Outputs, besides the store: ``<out>/observations.geojson``,
``<out>/observations.json``, ``<out>/report.json`` and ``<out>/evidence/``,
where ``<out>`` defaults to ``$XUNJIAN_HOME/batches/<batch id>``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
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
from vision.observe import Found, Observer, TrackingConfig, geofix_for, merge, utc_at
from vision.sampling import SamplingConfig, SamplingStats, sample

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "demo-patrol" / "demo-patrol.pt"
HEADING_ERROR_DEG = {"measured": 3.0, "derived": 15.0}
"""How far the heading may be off: from a compass/gimbal yaw, or derived from successive GPS fixes."""


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
    """Ingest the batch at ``path`` (a folder or a .zip/.tar archive) into ``store``."""
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

    now = datetime.now(timezone.utc)
    store.open_batch(Batch(id=batch_id, source=SOURCES[manifest.source], platform_id=manifest.platform_id, root=str(root),
                           manifest=manifest.model_dump(mode="json", exclude_none=True), created_at=now, updated_at=now))
    prog.batch_started(batch_id, len(manifest.files))
    outcomes: list[FileOutcome] = []
    for spec in manifest.files:
        outcome = _one_file(root, spec, manifest, batch_id, detector, model, store, opts, prog, out)
        outcomes.append(outcome)
        prog.file_finished(outcome)

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


def _one_file(root: Path, spec: FileSpec, manifest: Manifest, batch_id: str, detector, model: str, store,
              opts: IngestOptions, prog: Progress, out: Path) -> FileOutcome:
    rel = spec.media
    media_path = root / rel
    try:
        sha = sha256_file(media_path)
    except OSError as e:
        return FileOutcome(rel, "failed", error=f"{rel}：无法读取：{e}")
    if not opts.force and (done := store.done_file(batch_id, rel, sha)) is not None:
        return FileOutcome(rel, "skipped", sha, observations=done.observations, stats=done.stats)
    started = time.perf_counter()
    try:
        found, frame_utc, stats, warning, views = (_image if spec.image else _video)(root, spec, manifest, detector, opts, prog)
    except XunjianError as e:
        return _failed(store, batch_id, rel, sha, str(e))
    except ValueError as e:  # TelemetryError is a ValueError with a user-facing message
        return _failed(store, batch_id, rel, sha, str(e) if rel in str(e) else f"{rel}：{e}")
    except cv2.error as e:
        return _failed(store, batch_id, rel, sha, f"{rel}：OpenCV 无法处理：{e.err or e}")
    stats["seconds"] = round(time.perf_counter() - started, 2)

    card = detector.card
    evidence_dir = out / "evidence" / f"{Path(rel).stem}-{sha[:8]}"
    observations: list[Observation] = []
    for n, f in enumerate(found, 1):
        cls = card.by_id(f.class_id)
        name = cls.name if cls else str(f.class_id)
        frame_path, crop_path, _ = write_evidence(f.jpeg, f.box, f"{name} {f.conf:.2f}", evidence_dir, f"{n:03d}", plates=opts.plates)
        observations.append(Observation(
            id=f"{batch_id}:{sha[:12]}:{n:03d}", batch_id=batch_id, file=rel, file_sha256=sha,
            source=SOURCES[manifest.source], platform_id=manifest.platform_id, class_name=name,
            label_zh=cls.label_zh if cls else "", kind=Kind(cls.kind) if cls and cls.kind else None,
            code=cls.code if cls else None, confidence=round(f.conf, 4), mean_confidence=round(f.mean_conf, 4),
            lat=round(f.lat, 7), lon=round(f.lon, 7), error_m=round(f.error_m, 1), frames=f.frames,
            first_t=round(f.first_t, 3), last_t=round(f.last_t, 3), best_t=round(f.best_t, 3),
            seen_at=utc_at(frame_utc, f.best_t), box=f.box, frame_uri=str(frame_path), crop_uri=str(crop_path), model=model,
        ))
    status = "failed" if warning else "done"
    record = BatchFile(batch_id=batch_id, path=rel, sha256=sha, status=status, error=warning, observations=len(observations),
                       stats=stats, finished_at=datetime.now(timezone.utc))
    store.finish_file(record, observations, views)
    return FileOutcome(rel, status, sha, observations=len(observations), error=warning, stats=stats)


def _failed(store, batch_id: str, rel: str, sha: str, message: str) -> FileOutcome:
    store.finish_file(BatchFile(batch_id=batch_id, path=rel, sha256=sha, status="failed", error=message,
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


def _video(root: Path, spec: FileSpec, manifest: Manifest, detector, opts: IngestOptions, prog: Progress):
    from vision.telemetry import align, check_region, load_track, probe

    media_path = root / spec.video
    media = probe(media_path)
    if spec.track:
        track = load_track(root / spec.track, coord_order=spec.coord_order)
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
    observer = Observer(_detect_fn(detector, mount, opts, media.width, media.height), camera, mount,
                        gps_error_m=gps_error, sample_rate_hz=rate, conf=opts.conf,
                        heading_error_deg=HEADING_ERROR_DEG["derived" if track.heading_derived else "measured"])
    stats = SamplingStats()
    prog.file_started(spec.video, media.duration_s)
    last_report = 0.0
    views: list[View] = []
    for frame in sample(media_path, track.distance_at, sampling, stats):
        pose = track.at(frame.t)
        observer.feed(frame, pose)
        views.append(view_of(pose, frame.t, utc_at(track.start_utc, frame.t)))
        if frame.t - last_report >= 0.5:
            prog.file_advanced(frame.t)
            last_report = frame.t
    prog.file_advanced(media.duration_s)
    found = observer.finish()
    info = {
        "fps": round(stats.fps, 3), "frames_read": stats.read, "frames_kept": stats.kept, "blurred": stats.blurred,
        "duplicates": stats.duplicates, "detections": observer.detections, "duration_s": round(media.duration_s, 2),
        "distance_m": round(float(track.distance_at(min(media.duration_s, track.t1))), 1),
        "telemetry": track.fmt, "notes": [*track.notes, *stats.notes],
        "view": view_geometry(camera, mount_spec, gps_error, observer.heading_error_deg),
    }
    warning = stats.notes[-1] if stats.truncated else None
    return found, track.start_utc, info, warning, views


def _image(root: Path, spec: FileSpec, manifest: Manifest, detector, opts: IngestOptions, prog: Progress):
    from vision.telemetry import read_image_pose

    path = root / spec.image
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
    prog.file_started(spec.image, 1.0)
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
    prog.file_advanced(1.0)
    info = {"detections": len(dets), "width": w, "height": h, "focal_35mm": ip.focal_35mm, "has_xmp": ip.has_xmp,
            "altitude_m": ip.pose.alt, "gimbal_pitch": ip.pose.pitch,
            "view": view_geometry(camera, mount_spec, gps_error, HEADING_ERROR_DEG["measured"])}
    cfg = TrackingConfig()
    views = [view_of(ip.pose, 0.0, ip.pose.utc)]
    return merge(found, cfg.merge_floor_m, cfg.merge_any_class_m), ip.pose.utc, info, None, views

