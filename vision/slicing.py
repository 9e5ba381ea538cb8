"""Sliced (tiled) inference for large frames, e.g. 4K drone footage: :func:`sliced`.

The frame is cut into overlapping square tiles (edge tiles shifted inwards so every
tile is full size), the detector runs on each tile (and optionally on the whole
frame, for objects larger than a tile), boxes are shifted back to frame pixels, and
boxes of one object seen by several tiles are merged: class-aware non-max *merge*
by intersection-over-smaller, so a box cut at a tile edge is absorbed into the
whole box from a neighbouring tile, and two halves of an object that straddles
a seam become their union.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import supervision as sv

from city.errors import InvalidInput
from vision.detections import empty_detections


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def tile_windows(width: int, height: int, *, tile: int = 640, overlap: float = 0.2) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) windows of at most ``tile`` pixels that cover the frame, overlapping by
    at least ``overlap`` of a tile; the last row/column is aligned to the frame's edge."""
    if tile < 32 or not 0 <= overlap < 1:
        raise InvalidInput(f"切片参数无效: tile={tile}（至少 32）, overlap={overlap}（应在 [0, 1) 内）")
    step = max(1, round(tile * (1 - overlap)))
    return [
        (x, y, min(x + tile, width), min(y + tile, height))
        for y in _starts(height, tile, step)
        for x in _starts(width, tile, step)
    ]


def merge_overlapping(det: sv.Detections, *, iou: float = 0.5, how: Literal["nmm", "nms"] = "nmm") -> sv.Detections:
    """Merge (``nmm``: union box) or suppress (``nms``) same-class boxes whose intersection over
    the smaller box exceeds ``iou``."""
    if len(det) < 2:
        return det
    if how == "nmm":
        return det.with_nmm(threshold=iou, overlap_metric=sv.OverlapMetric.IOS)
    if how == "nms":
        return det.with_nms(threshold=iou, overlap_metric=sv.OverlapMetric.IOS)
    raise InvalidInput(f"未知的合并方式 {how!r}（可选 nmm、nms）")


def sliced(
    detector: Callable[[np.ndarray], sv.Detections],
    image: np.ndarray,
    *,
    tile: int = 640,
    overlap: float = 0.2,
    iou: float = 0.5,
    full_frame: bool = True,
    merge: Literal["nmm", "nms"] = "nmm",
) -> sv.Detections:
    """Detections on a large frame from tiles of ``tile`` pixels overlapping by ``overlap``.

    Args:
        detector: a :class:`vision.detect.Detector` (its ``predict_batch`` is used when present)
            or any callable ``image_bgr -> sv.Detections``.
        image: BGR frame (H, W, 3).
        tile, overlap: tile size in pixels and overlap fraction between neighbouring tiles.
        iou: intersection-over-smaller above which same-class boxes are one object.
        full_frame: also run on the whole frame (finds objects bigger than a tile).
        merge: ``nmm`` (union of the boxes, area-weighted confidence) or ``nms`` (keep the best).

    A frame no larger than one tile is just ``detector(image)``.
    """
    h, w = image.shape[:2]
    windows = tile_windows(w, h, tile=tile, overlap=overlap)
    if len(windows) == 1:
        return detector(image)
    crops = [image[y0:y1, x0:x1] for x0, y0, x1, y1 in windows]
    batch = getattr(detector, "predict_batch", None)
    results = batch(crops) if batch is not None else [detector(c) for c in crops]
    parts = []
    for (x0, y0, _, _), d in zip(windows, results, strict=True):
        if len(d):
            d = d[np.ones(len(d), dtype=bool)]  # a copy: do not move the caller's boxes
            d.xyxy = d.xyxy + np.array([x0, y0, x0, y0], dtype=d.xyxy.dtype)
            parts.append(d)
    if full_frame:
        parts.append(detector(image))
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_detections()
    return merge_overlapping(sv.Detections.merge(parts), iou=iou, how=merge)
