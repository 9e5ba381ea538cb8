"""What a batch is: a folder (or an uploaded archive) of footage plus an
optional ``manifest.yaml`` (or ``manifest.json``) describing the platform,
camera and mounting.

Without a manifest the folder is discovered: each video is paired with the
telemetry file of the same stem (``.gpx``, ``.nmea``, ``.csv``, ``.srt``,
``.log``, or an NMEA ``.txt``), a
GoPro MP4 without one reads its own GPMF telemetry, and JPEGs are drone
stills with EXIF GPS. Defaults per source (vehicle / drone) fill in what the
manifest leaves out. Example::

    batch: demo-2026-11-20
    source: vehicle            # vehicle | drone
    platform_id: 渝A-巡01
    files:
      - video: patrol.mp4
        track: patrol.gpx
        camera: {hfov_deg: 90}
        mount: {kind: forward, height_m: 1.6, pitch_deg: -12, yaw_offset_deg: 0}
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from city.catalogue import Source
from city.errors import InvalidInput
from vision.sampling import SamplingConfig

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv"}
TRACK_SUFFIXES = {".gpx", ".nmea", ".csv", ".srt", ".log"}
PAIRED_TRACK_SUFFIXES = {".txt"}
"""Telemetry only beside a video of the same stem (NMEA logged as ``.txt``); any other ``.txt`` is ignored."""
IMAGE_SUFFIXES = {".jpg", ".jpeg"}
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MANIFEST_NAMES = ("manifest.yaml", "manifest.yml", "manifest.json")

SourceName = Literal["vehicle", "drone"]
SOURCES: dict[str, Source] = {"vehicle": Source.VEHICLE, "drone": Source.DRONE}


class CameraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hfov_deg: float | None = Field(default=None, gt=1, lt=179, description="horizontal field of view")
    focal_35mm: float | None = Field(default=None, gt=1, description="35 mm-equivalent focal length (instead of hfov)")
    width: int | None = Field(default=None, gt=0, description="only to check against the video")
    height: int | None = Field(default=None, gt=0)


class MountSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["forward", "side", "nadir", "oblique"]
    height_m: float | None = Field(default=None, gt=0, lt=500, description="camera height above the road (vehicles)")
    pitch_deg: float = Field(default=-10.0, ge=-90, le=30, description="0 = horizon, -90 = straight down")
    yaw_offset_deg: float = Field(default=0.0, ge=-180, le=180, description="relative to heading; side-right = 90")


class FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    video: str | None = None
    image: str | None = None
    track: str | None = Field(default=None, description="telemetry file; none for GoPro GPMF or images")
    camera: CameraSpec | None = None
    mount: MountSpec | None = None
    clock_offset_s: float | None = Field(default=None, description="telemetry clock minus video clock, seconds")
    coord_order: Literal["latlon", "lonlat"] | None = None

    @property
    def media(self) -> str:
        return self.video or self.image or ""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch: str | None = Field(default=None, pattern=r"^[\w.\-\u4e00-\u9fff]{1,100}$")
    source: SourceName = "vehicle"
    platform_id: str | None = None
    camera_model: str | None = None
    camera: CameraSpec | None = None
    mount: MountSpec | None = None
    sampling: SamplingConfig | None = None
    gps_error_m: float | None = Field(default=None, gt=0)
    allow_outside_china: bool = False
    files: list[FileSpec] = Field(default_factory=list)


DEFAULTS: dict[str, dict] = {
    "vehicle": {
        "camera": CameraSpec(hfov_deg=90.0),
        "mount": MountSpec(kind="forward", height_m=1.6, pitch_deg=-10.0),
        "sampling": SamplingConfig(every_m=2.0),
        "gps_error_m": 5.0,
    },
    "drone": {
        "camera": CameraSpec(focal_35mm=24.0),
        "mount": MountSpec(kind="nadir", pitch_deg=-90.0),
        "sampling": SamplingConfig(every_m=3.0, every_s=2.0),
        "gps_error_m": 3.0,
    },
}


def defaults(source: str) -> dict:
    return DEFAULTS[source]


def load_manifest(folder: Path, source: SourceName | None = None) -> tuple[Manifest, list[str]]:
    """The batch manifest of ``folder`` (read or discovered) and notes about
    files that were ignored. ``source`` overrides the manifest's."""
    notes: list[str] = []
    path = next((folder / n for n in MANIFEST_NAMES if (folder / n).is_file()), None)
    if path is not None:
        is_json = path.suffix == ".json"
        try:
            text = path.read_text(encoding="utf-8-sig")
            raw = (json.loads(text) if is_json else yaml.safe_load(text)) or {}
        except (UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as e:
            raise InvalidInput(f"{path}：不是有效的 UTF-8 {'JSON' if is_json else 'YAML'}：{e}") from None
        if not isinstance(raw, dict):
            raise InvalidInput(f"{path}：应为一个映射（batch/source/files…）")
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(f"{path}：字段 {loc}：{first['msg']}") from None
    else:
        manifest = Manifest(source=source or "vehicle")
    if source is not None and source != manifest.source:
        if path is not None:
            notes.append(f"命令行 --source {source} 覆盖了清单里的 source: {manifest.source}")
        manifest = manifest.model_copy(update={"source": source})
    if not manifest.files:
        files, ignored = discover(folder)
        manifest = manifest.model_copy(update={"files": files})
        notes += [f"已忽略 {p}（不是视频、图片或遥测文件）" for p in ignored]
    for spec in manifest.files:
        for rel in (spec.media, spec.track):
            if rel and not (folder / rel).is_file():
                raise InvalidInput(f"{path or folder}：清单里的文件 {rel} 不存在")
            if rel and (Path(rel).is_absolute() or ".." in PurePosixPath(rel).parts):
                raise InvalidInput(f"{path}：文件路径 {rel} 必须是批次目录内的相对路径")
    if not manifest.files:
        raise InvalidInput(f"{folder}：没有找到视频或图片（支持 {', '.join(sorted(VIDEO_SUFFIXES | IMAGE_SUFFIXES))}）")
    return manifest, notes


def discover(folder: Path) -> tuple[list[FileSpec], list[str]]:
    """Pair every video with the telemetry file of the same stem; list images."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    tracks: dict[tuple[Path, str], Path] = {}
    videos = {(p.parent, p.stem.lower()) for p in paths if p.suffix.lower() in VIDEO_SUFFIXES}
    for p in paths:
        suffix = p.suffix.lower()
        if suffix in TRACK_SUFFIXES or (suffix in PAIRED_TRACK_SUFFIXES and (p.parent, p.stem.lower()) in videos):
            tracks.setdefault((p.parent, p.stem.lower()), p)
    paired = set(tracks.values())
    specs: list[FileSpec] = []
    used: set[Path] = set()
    ignored: list[str] = []
    for p in paths:
        rel = p.relative_to(folder).as_posix()
        suffix = p.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            track = tracks.get((p.parent, p.stem.lower()))
            if track is not None:
                used.add(track)
            specs.append(FileSpec(video=rel, track=track.relative_to(folder).as_posix() if track else None))
        elif suffix in IMAGE_SUFFIXES:
            specs.append(FileSpec(image=rel))
        elif suffix in TRACK_SUFFIXES or p in paired or p.name in MANIFEST_NAMES:
            continue
        else:
            ignored.append(rel)
    ignored += [f"{t.relative_to(folder).as_posix()}（没有同名视频）" for t in tracks.values() if t not in used]
    return specs, ignored


def sha256_file(path: Path, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


# -- what an upload may contain ----------------------------------------------------------

UploadKind = Literal["video", "image", "track", "manifest", "archive"]
ACCEPTED: dict[str, list[str]] = {
    "video": sorted(VIDEO_SUFFIXES),
    "image": sorted(IMAGE_SUFFIXES),
    "track": sorted(TRACK_SUFFIXES | PAIRED_TRACK_SUFFIXES),
    "manifest": list(MANIFEST_NAMES),
    "archive": list(ARCHIVE_SUFFIXES),
}
"""The files a batch upload accepts, by kind (suffixes; the manifest by its exact name)."""
ACCEPTED_ZH = (f"视频 {' '.join(ACCEPTED['video'])}；图片 {' '.join(ACCEPTED['image'])}；"
               f"轨迹 {' '.join(ACCEPTED['track'])}；清单 {' / '.join(ACCEPTED['manifest'])}；"
               f"或单独一个压缩包 {' '.join(ACCEPTED['archive'])}")
SNIFF_BYTES = 512
"""How much of a file's beginning :func:`looks_like` needs."""

_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"uuid"}


def upload_kind(name: str) -> UploadKind | None:
    """What a file of this name is in a batch, by its name alone; None when a batch has no use for it."""
    low = name.lower()
    if low in MANIFEST_NAMES:
        return "manifest"
    if low.endswith(ARCHIVE_SUFFIXES):
        return "archive"
    suffix = PurePosixPath(low).suffix
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in TRACK_SUFFIXES | PAIRED_TRACK_SUFFIXES:
        return "track"
    return None


def looks_like(kind: UploadKind, name: str, head: bytes) -> str | None:
    """A cheap check of a file's first :data:`SNIFF_BYTES` against what its name
    says it is; None when it fits, else what is wrong (Chinese)."""
    if not head:
        return "文件是空的"
    low = name.lower()
    if kind == "video":
        if low.endswith((".mp4", ".mov")):  # ISO BMFF boxes; or an MPEG-TS stream some dashcams name .mp4
            ok = head[4:8] in _MP4_BOXES or (head[0] == 0x47 and (len(head) <= 188 or head[188] == 0x47))
        elif low.endswith(".avi"):
            ok = head[:4] == b"RIFF" and head[8:12] == b"AVI "
        else:  # .mkv
            ok = head[:4] == b"\x1a\x45\xdf\xa3"
        return None if ok else f"内容不是 {PurePosixPath(low).suffix} 视频"
    if kind == "image":
        return None if head[:3] == b"\xff\xd8\xff" else "内容不是 JPEG 图片"
    if kind == "archive":
        if low.endswith(".zip"):
            ok = head[:4] in (b"PK\x03\x04", b"PK\x05\x06")
        elif low.endswith((".tar.gz", ".tgz")):
            ok = head[:2] == b"\x1f\x8b"
        else:
            ok = head[257:262] == b"ustar"
        return None if ok else "内容不是所标的压缩包格式"
    # telemetry and manifests are text (UTF-16 only with its BOM)
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "内容不是文本（轨迹和清单应为文本文件）"
    return None


def unpack(archive: Path, into: Path, *, max_bytes: int = 50 << 30) -> Path:
    """Extract an uploaded archive (zip/tar) into ``into/<sha256[:16]>`` once and
    return that folder. Refuses entries that escape the folder, links, and
    archives that would expand beyond ``max_bytes``."""
    digest = sha256_file(archive)[:16]
    dest = into / digest
    if (dest / ".complete").exists():
        return dest
    tmp = into / f".{digest}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                infos = [i for i in z.infolist() if not i.is_dir()]
                _check_members(archive, [(i.filename, i.file_size) for i in infos], max_bytes)
                for i in infos:
                    z.extract(i, tmp)
        else:
            with tarfile.open(archive) as t:
                members = t.getmembers()
                bad = [m.name for m in members if not (m.isfile() or m.isdir())]
                if bad:
                    raise InvalidInput(f"{archive.name}：压缩包含有链接或特殊文件 {bad[0]}，拒绝解压")
                files = [m for m in members if m.isfile()]
                _check_members(archive, [(m.name, m.size) for m in files], max_bytes)
                t.extractall(tmp, members=files, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InvalidInput(f"{archive.name}：压缩包损坏或无法读取：{e}") from None
    except InvalidInput:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".complete").touch()
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _check_members(archive: Path, members: list[tuple[str, int]], max_bytes: int) -> None:
    total = 0
    for name, size in members:
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise InvalidInput(f"{archive.name}：压缩包里的 {name} 指向批次目录之外，拒绝解压")
        total += size
    if total > max_bytes:
        raise InvalidInput(f"{archive.name}：解压后共 {total / 2**30:.1f} GiB，超过上限 {max_bytes / 2**30:.0f} GiB")
