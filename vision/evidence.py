"""Evidence images: the best frame with its box drawn, and a crop, with people
blurred.

Faces are found with OpenCV's bundled Haar cascades (frontal and profile) and
blurred hard, on the frame and therefore on the crop; licence plates too when
``plates=True`` (OpenCV's bundled plate cascade; weak on Chinese plates, so a
better plate detector can be configured through ``plate_cascade``). The raw
footage is only ever read: evidence is a new JPEG next to the batch's output.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

FACE_CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_profileface.xml")
PLATE_CASCADE = "haarcascade_russian_plate_number.xml"


@lru_cache(maxsize=8)
def _cascade(name_or_path: str) -> cv2.CascadeClassifier:
    path = name_or_path if Path(name_or_path).is_file() else str(Path(cv2.data.haarcascades) / name_or_path)
    c = cv2.CascadeClassifier(path)
    if c.empty():
        raise FileNotFoundError(f"cannot load the OpenCV cascade {path}")
    return c


def find_regions(image: np.ndarray, *, faces: bool = True, plates: bool = False, plate_cascade: str | None = None) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of faces (and plates) in a BGR image."""
    grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    min_side = max(20, min(grey.shape) // 60)  # smaller faces are not recognisable anyway
    names = list(FACE_CASCADES) if faces else []
    if plates:
        names.append(plate_cascade or PLATE_CASCADE)
    found: list[tuple[int, int, int, int]] = []
    for name in names:
        hits = _cascade(name).detectMultiScale(grey, scaleFactor=1.2, minNeighbors=4, minSize=(min_side, min_side))
        found += [tuple(int(v) for v in r) for r in (hits if len(hits) else [])]
        if name == "haarcascade_profileface.xml":  # profiles facing the other way
            flipped = _cascade(name).detectMultiScale(cv2.flip(grey, 1), scaleFactor=1.2, minNeighbors=4, minSize=(min_side, min_side))
            w = grey.shape[1]
            found += [(w - int(x) - int(fw), int(y), int(fw), int(fh)) for x, y, fw, fh in (flipped if len(flipped) else [])]
    return found


def blur_regions(image: np.ndarray, regions, *, margin: float = 0.25) -> np.ndarray:
    """A copy of ``image`` with each (x, y, w, h) region (plus a margin) blurred
    beyond recognition (pixelate, then Gaussian)."""
    out = image.copy()
    H, W = out.shape[:2]
    for x, y, w, h in regions:
        mx, my = int(w * margin), int(h * margin)
        x1, y1, x2, y2 = max(0, x - mx), max(0, y - my), min(W, x + w + mx), min(H, y + h + my)
        if x2 <= x1 or y2 <= y1:
            continue
        roi = out[y1:y2, x1:x2]
        small = cv2.resize(roi, (max(1, (x2 - x1) // 12), max(1, (y2 - y1) // 12)), interpolation=cv2.INTER_AREA)
        roi = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
        k = max(3, ((x2 - x1) // 4) | 1)
        out[y1:y2, x1:x2] = cv2.GaussianBlur(roi, (k, k), 0)
    return out


def privacy_blur(image: np.ndarray, *, plates: bool = False, plate_cascade: str | None = None) -> tuple[np.ndarray, int]:
    """``image`` with faces (and plates) blurred, and how many regions were blurred."""
    regions = find_regions(image, faces=True, plates=plates, plate_cascade=plate_cascade)
    return (blur_regions(image, regions) if regions else image.copy()), len(regions)


def crop_box(image: np.ndarray, box, *, pad: float = 0.2, min_side: int = 96) -> np.ndarray:
    """The box grown by ``pad`` on each side (at least ``min_side`` px), clipped."""
    H, W = image.shape[:2]
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w = max((x2 - x1) * (1 + 2 * pad), min_side)
    h = max((y2 - y1) * (1 + 2 * pad), min_side)
    a, b = int(max(0, cx - w / 2)), int(max(0, cy - h / 2))
    c, d = int(min(W, cx + w / 2)), int(min(H, cy + h / 2))
    return image[b:d, a:c].copy()


def draw_box(image: np.ndarray, box, label: str) -> np.ndarray:
    out = image.copy()
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    thick = max(2, min(out.shape[:2]) // 300)
    cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 255), thick)
    scale = max(0.5, min(out.shape[:2]) / 1000)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    ty = y1 - 4 if y1 - th - 8 > 0 else y2 + th + 4
    cv2.rectangle(out, (x1, ty - th - 4), (x1 + tw + 4, ty + base), (0, 0, 255), -1)
    cv2.putText(out, label, (x1 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def write_evidence(jpeg_or_image, box, label: str, out_dir: Path, stem: str, *, plates: bool = False,
                   plate_cascade: str | None = None, max_frame_width: int = 960) -> tuple[Path, Path, int]:
    """Write ``<stem>-frame.jpg`` (the whole frame, at most ``max_frame_width``
    wide, blurred, box drawn) and ``<stem>-crop.jpg`` (the box's surroundings at
    full resolution, blurred) into ``out_dir``; returns both paths and the
    number of regions blurred. Scanning a 4K frame for faces takes seconds; the
    downscaled frame and the small crop take a fraction of that."""
    image = jpeg_or_image
    if isinstance(image, (bytes, bytearray)):
        image = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    scale = min(1.0, max_frame_width / image.shape[1])
    frame = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame, n_frame = privacy_blur(frame, plates=plates, plate_cascade=plate_cascade)
    crop, n_crop = privacy_blur(crop_box(image, box), plates=plates, plate_cascade=plate_cascade)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame_path, crop_path = out_dir / f"{stem}-frame.jpg", out_dir / f"{stem}-crop.jpg"
    cv2.imwrite(str(frame_path), draw_box(frame, [v * scale for v in box], label), [cv2.IMWRITE_JPEG_QUALITY, 88])
    cv2.imwrite(str(crop_path), crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return frame_path, crop_path, n_frame + n_crop


def grab_frame(path: Path, t: float) -> np.ndarray | None:
    """The frame at ``t`` seconds of a video (or the image itself), or None when
    the file is gone or unreadable: for evidence taken after the ingest."""
    path = Path(path)
    if not path.is_file():
        return None
    if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".dng"):
        return cv2.imread(str(path), cv2.IMREAD_COLOR)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return None
        cap.set(cv2.CAP_PROP_POS_MSEC, max(t, 0.0) * 1000.0)
        ok, image = cap.read()
        return image if ok else None
    finally:
        cap.release()
