"""Thin helpers around ``supervision.Detections``, the one detections type of the vision code.

Boxes are ``xyxy`` float32 (N, 4) in original-image pixels, with ``confidence``
(float32), ``class_id`` (int) and the class names in ``data['class_name']``.
:func:`with_card_labels` adds the catalogue mapping of a model card
(``data['label_zh']``, ``data['kind']``, ``data['code']``; None = not an issue).
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


def with_card_labels(det: sv.Detections, card) -> sv.Detections:
    """Add ``label_zh``, ``kind`` and ``code`` per detection from a :class:`vision.modelcard.ModelCard`."""
    classes = [card.by_id(int(c)) for c in det.class_id]
    det.data["label_zh"] = np.array([c.label_zh if c else "" for c in classes], dtype=object)
    det.data["kind"] = np.array([c.kind if c else None for c in classes], dtype=object)
    det.data["code"] = np.array([c.code if c else None for c in classes], dtype=object)
    return det


def issues_only(det: sv.Detections) -> sv.Detections:
    """Keep the detections that map to a catalogue code (needs :func:`with_card_labels` first)."""
    if "code" not in det.data:
        raise KeyError("issues_only needs data['code']: call with_card_labels(det, card) first")
    return det[np.array([c is not None for c in det.data["code"]], dtype=bool)]
