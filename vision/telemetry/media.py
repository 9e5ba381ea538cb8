"""Video container facts needed to align telemetry: :class:`MediaInfo` and
:func:`probe` (PyAV, which bundles ffmpeg, so no system ffmpeg is needed).

``start_utc`` is the container ``creation_time``. Cameras often write local
time there and label it UTC (GoPro, many Chinese dashcams): :func:`align`
detects a whole-time-zone difference. MP4/MOV files are also checked box by
box for truncation (a top-level box running past the end of the file), since
ffmpeg happily opens a cut-off file whose ``moov`` comes first.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

from vision.telemetry.model import TelemetryError

_MP4_SUFFIXES = {".mp4", ".mov", ".m4v", ".3gp", ".360", ".lrv"}


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` finds; ``start_utc`` is None when the container has no
    (or a placeholder) creation time."""

    duration_s: float
    fps: float
    frame_count: int
    width: int
    height: int
    start_utc: datetime | None
    codec: str


def _import_av(path):
    """PyAV, or a clear error when it is not installed."""
    try:
        import av
    except ImportError:
        raise TelemetryError(path, "读取视频需要 PyAV：pip install av") from None
    return av


def _check_boxes(path: Path) -> None:
    """Raise when a top-level ISO-BMFF box is cut off by the end of the file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        pos = 0
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            n, kind = struct.unpack(">I4s", head[:8])
            if n == 1 and len(head) >= 16:
                n = struct.unpack(">Q", head[8:16])[0]
            elif n == 0:  # box runs to the end of the file
                return
            if n < 8:
                raise TelemetryError(path, f"MP4 结构损坏：第 {pos} 字节处的 box 长度 {n} 无效")
            if pos + n > size:
                raise TelemetryError(
                    path,
                    f"文件被截断：{kind.decode('latin1')!r} 应到第 {pos + n} 字节，文件只有 {size} 字节",
                )
            pos += n


def _creation_time(meta: dict) -> datetime | None:
    raw = meta.get("creation_time")
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.year < 1971:  # 1904/1970 epoch placeholders
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def probe(path) -> MediaInfo:
    """Duration, frame rate/count, size, creation time and codec of a video;
    :class:`TelemetryError` when it is missing, not a video or truncated."""
    av = _import_av(path)

    path = Path(path)
    if not path.is_file():
        raise TelemetryError(path, "视频文件不存在")
    if path.stat().st_size == 0:
        raise TelemetryError(path, "视频文件为空")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise TelemetryError(path, f"不是可读取的视频文件，或文件已损坏/被截断（{getattr(e, 'strerror', None) or e}）") from None
    with container:
        video = next(iter(container.streams.video), None)
        if video is None:
            raise TelemetryError(path, "文件中没有视频流")
        ctx = video.codec_context
        rate = video.average_rate or video.guessed_rate or Fraction(0)
        fps = float(rate)
        if video.duration and video.time_base:
            duration = float(video.duration * video.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        frames = int(video.frames or round(duration * fps))
        meta = dict(container.metadata)
        start = _creation_time(meta) or _creation_time(dict(video.metadata))
        info = MediaInfo(duration_s=duration, fps=fps, frame_count=frames, width=int(ctx.width),
                         height=int(ctx.height), start_utc=start, codec=ctx.name or "")
    if path.suffix.lower() in _MP4_SUFFIXES or (container.format and "mp4" in container.format.name):
        _check_boxes(path)
    if duration <= 0 or fps <= 0 or not info.width:
        raise TelemetryError(path, f"视频参数无效（时长 {duration:g} s，帧率 {fps:g}，宽 {info.width}），文件可能损坏")
    return info
