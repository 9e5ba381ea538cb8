"""Which frames of a video are worth running the detector on.

A patrol video at 30 fps repeats itself: at 30 km/h the vehicle moves 28 cm
between frames, and at a red light it does not move at all. :func:`sample`
streams a video with OpenCV and keeps a frame when the platform has moved
``every_m`` metres since the last kept frame (telemetry distance) or, if
``every_s`` is set, when that much time has passed; it then skips blurred
frames (variance of the Laplacian, looking a few frames ahead for a sharp one)
and near-duplicates of the last kept frame (mean absolute difference of small
grey thumbnails). Frames that are not kept are only ``grab()``-ed, never
converted, and nothing is buffered: memory stays flat however long the video.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, Field


class SamplingConfig(BaseModel):
    """How densely to sample (defaults suit a vehicle at city speeds)."""

    every_m: float | None = Field(default=3.0, gt=0, description="keep a frame every N metres travelled (None: off)")
    every_s: float | None = Field(default=None, gt=0, description="also keep a frame every N seconds (None: off)")
    blur_min: float = Field(default=25.0, ge=0, description="minimum variance of the Laplacian (on a 320-px-wide grey copy)")
    blur_lookahead: int = Field(default=4, ge=0, description="frames to look ahead for a sharp one before giving up")
    duplicate_max: float = Field(default=1.5, ge=0, description="a frame whose thumbnail differs from the last kept one by less (mean |Δ|, 0-255) is a duplicate")


@dataclass
class Frame:
    """One kept frame: its index and media time, the BGR image and why it was kept."""

    index: int
    t: float
    image: np.ndarray
    reason: str
    sharpness: float


@dataclass
class SamplingStats:
    """What happened to the frames of one video."""

    fps: float = 0.0
    declared_frames: int = 0
    read: int = 0
    kept: int = 0
    blurred: int = 0
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.declared_frames > 0 and self.read < 0.95 * self.declared_frames


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of a 320-px-wide grey copy (higher = sharper)."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    if w > 320:
        grey = cv2.resize(grey, (320, max(1, round(h * 320 / w))), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def thumbnail(image: np.ndarray) -> np.ndarray:
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (64, 36), interpolation=cv2.INTER_AREA).astype(np.int16)


def open_video(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise ValueError(f"{path.name}：无法作为视频打开（文件损坏或不是视频）")
    return cap


def sample(path: Path, distance_at=None, config: SamplingConfig | None = None, stats: SamplingStats | None = None,
           start_index: int = 0, stop_index: int | None = None, seek: bool = False) -> Iterator[Frame]:
    """Yield the frames of ``path`` worth detecting on.

    ``distance_at(t)`` gives the cumulative distance travelled (metres) at media
    time ``t``; without it (or with ``every_m=None``) sampling is by time only,
    so give ``every_s``. ``stats`` (optional) is filled in as the video is read.
    ``start_index`` skips that many frames first (resume inside a video): read
    and dropped, or with ``seek=True`` not read at all (the decoder seeks; frames
    keep their index and time in the whole video). ``stop_index`` stops before
    that frame. With a range (``seek`` or ``stop_index``) ``stats`` counts only
    the range's frames and no truncation note is added: the caller, who split
    the video, judges the whole file (see :mod:`vision.segments`).
    """
    cfg = config or SamplingConfig()
    if distance_at is None or cfg.every_m is None:
        if cfg.every_s is None:
            raise ValueError("没有轨迹距离时必须按时间抽帧（every_s）")
    st = stats if stats is not None else SamplingStats()
    cap = open_video(path)
    try:
        st.fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        if not st.fps or math.isnan(st.fps) or st.fps > 1000:
            st.notes.append(f"视频帧率无效（{st.fps}），按 30 fps 计")
            st.fps = 30.0
        st.declared_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ranged = seek or stop_index is not None
        i = -1
        if seek and start_index > 0:
            cap = _seek(path, cap, start_index)
            i = start_index - 1
        if ranged:
            end = st.declared_frames if stop_index is None else min(stop_index, st.declared_frames or stop_index)
            st.declared_frames = max(0, end - (start_index if seek else 0))
        last_d, last_t = -math.inf, -math.inf
        last_thumb: np.ndarray | None = None
        pending = 0  # frames still allowed to look for a sharp one
        reason = ""
        while True:
            if stop_index is not None and i + 1 >= stop_index:
                break
            if not cap.grab():
                break
            i += 1
            st.read += 1
            if i < start_index:
                continue
            t = i / st.fps
            if pending == 0:
                reason = ""
                if cfg.every_m is not None and distance_at is not None:
                    d = float(distance_at(t))
                    if d - last_d >= cfg.every_m:
                        reason = "distance"
                if not reason and cfg.every_s is not None and t - last_t >= cfg.every_s:
                    reason = "time"
                if not reason:
                    continue
                pending = cfg.blur_lookahead + 1
            ok, image = cap.retrieve()
            if not ok or image is None:
                st.notes.append(f"第 {i} 帧解码失败，已跳过")
                pending = max(pending - 1, 0)
                continue
            sharp = sharpness(image)
            if sharp < cfg.blur_min and pending > 1:
                pending -= 1
                st.blurred += 1
                continue
            pending = 0
            thumb = thumbnail(image)
            if last_thumb is not None and float(np.abs(thumb - last_thumb).mean()) < cfg.duplicate_max:
                st.duplicates += 1
                last_t = t  # wait another period before trying again
                if distance_at is not None:
                    last_d = float(distance_at(t))
                continue
            last_thumb = thumb
            last_t = t
            if distance_at is not None:
                last_d = float(distance_at(t))
            st.kept += 1
            yield Frame(index=i, t=t, image=image, reason=reason, sharpness=sharp)
    finally:
        cap.release()
    if st.truncated and not ranged:
        st.notes.append(f"视频可能被截断：声明 {st.declared_frames} 帧，只读到 {st.read} 帧（约 {st.read / st.fps:.1f} s）")


def _seek(path: Path, cap: cv2.VideoCapture, index: int) -> cv2.VideoCapture:
    """``cap`` positioned so that the next ``grab()`` reads frame ``index``: the
    decoder's seek when it lands exactly there, else read from the start."""
    if cap.set(cv2.CAP_PROP_POS_FRAMES, index) and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == index:
        return cap
    cap.release()
    cap = open_video(path)
    for _ in range(index):
        if not cap.grab():
            break
    return cap
