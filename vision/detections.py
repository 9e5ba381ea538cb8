"""Thin helpers around ``supervision.Detections``, the one detections type of the vision code.

Boxes are ``xyxy`` float32 (N, 4) in original-image pixels, with ``confidence``
(float32), ``class_id`` (int) and the class names in ``data['class_name']``.
The catalogue mapping of a class lives in the model card (``ModelCard.by_id``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import supervision as sv


def make_detections(
    xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray, names: Mapping[int, str]
) -> sv.Detections:
    """Build Detections with the project's dtypes and ``data['class_name']`` filled from ``names``."""
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    class_id = np.asarray(class_id).astype(int).reshape(-1)
    return sv.Detections(
        xyxy=xyxy,
        confidence=np.asarray(confidence, dtype=np.float32).reshape(-1),
        class_id=class_id,
        data={"class_name": np.array([names.get(int(c), str(int(c))) for c in class_id], dtype=object)},
    )


def empty_detections() -> sv.Detections:
    """No detections, but with the same fields as :func:`make_detections` (so merges keep them)."""
    return make_detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int), {})
