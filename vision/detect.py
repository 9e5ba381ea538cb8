"""Object detection on frames: :func:`load_detector` → a callable :class:`Detector`.

Two backends give the same boxes for the same weights:

- ``onnx``: onnxruntime on CPU with ultralytics' pre/postprocessing re-implemented
  in numpy (letterbox, class-aware NMS, box rescaling). It imports neither torch
  nor ultralytics, so it is the fast path for deployment.
- ``ultralytics``: ``YOLO(weights).predict(...)`` on the ``.pt`` file (needs torch).

``backend='auto'`` takes the ``.onnx`` next to the ``.pt`` when there is one.
A detector returns ``supervision.Detections`` in original-image pixels with
``data['class_name']`` (see :mod:`vision.detections`).

Matching ultralytics exactly (8.4): ``model.predict`` on a ``.pt`` letterboxes to
the *minimum rectangle* (``rect=True``: the long side to ``imgsz``, the short side
padded only up to a multiple of the stride), so a dynamic-shape ONNX export
(:func:`vision.train.export_onnx` does that) reproduces it; a fixed-shape ONNX is
letterboxed to its fixed input instead (as ultralytics does for such a file), which
equals ``model.predict(..., rect=False)`` on the ``.pt`` but can differ a lot from the
default ``model.predict``: export with ``dynamic=True``.
"""

from __future__ import annotations

import ast
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import supervision as sv

from city.errors import InvalidInput, NotFound
from vision.detections import make_detections
from vision.modelcard import ModelCard, find_card, read_card

Backend = Literal["auto", "onnx", "ultralytics"]
Raw = tuple[np.ndarray, np.ndarray, np.ndarray]  # xyxy (N,4) float32, conf (N,), class (N,) int

MAX_DET = 300  # ultralytics predict default
MAX_NMS = 30000  # ultralytics non_max_suppression: boxes into NMS at most
MAX_WH = 7680  # ultralytics: per-class box offset for class-aware NMS


@dataclass
class Detector:
    """A loaded detector: ``det(image_bgr) -> sv.Detections``; ``det.predict_batch(images)`` for several."""

    path: Path
    backend: Literal["onnx", "ultralytics"]
    names: dict[int, str]
    imgsz: int
    conf: float
    iou: float
    card: ModelCard | None
    _infer: Callable[[list[np.ndarray]], list[Raw]] = field(repr=False)
    max_det: int = MAX_DET
    fixed_shape: tuple[int, int] | None = None  # (h, w) of a fixed-shape ONNX input; None = letterbox like .pt

    def __call__(self, image_bgr: np.ndarray) -> sv.Detections:
        return self.predict_batch([image_bgr])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[sv.Detections]:
        """Detections for each image (BGR uint8 HxWx3); one ONNX run per group of equal-sized images."""
        images = [_check_image(im) for im in images]
        return [make_detections(*raw, self.names) for raw in self._infer(images)]


def _check_image(im: np.ndarray) -> np.ndarray:
    if not isinstance(im, np.ndarray) or im.ndim != 3 or im.shape[2] != 3 or min(im.shape[:2]) < 1:
        shape = getattr(im, "shape", type(im).__name__)
        raise InvalidInput(f"检测输入应为 BGR 图像数组 (高, 宽, 3)，收到 {shape}")
    return im if im.dtype == np.uint8 else np.clip(im, 0, 255).astype(np.uint8)


# -- ultralytics-equivalent pre/postprocessing (numpy) ------------------------------------


def letterbox(img: np.ndarray, new_shape: tuple[int, int], *, auto: bool, stride: int = 32) -> np.ndarray:
    """ultralytics ``LetterBox(new_shape, auto, stride)`` (centre, scale up, grey 114, INTER_LINEAR)."""
    shape = img.shape[:2]
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_unpad = max(round(shape[1] * r), 1), max(round(shape[0] * r), 1)  # (w, h)
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    dw /= 2
    dh /= 2
    if shape[::-1] != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))


def to_tensor(letterboxed: list[np.ndarray]) -> np.ndarray:
    """BGR uint8 HWC images (same size) → RGB float32 NCHW in [0, 1]."""
    x = np.stack(letterboxed)[..., ::-1].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x).astype(np.float32) / 255


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thres: float) -> np.ndarray:
    """Greedy NMS as torchvision's: by descending score, drop boxes with IoU > ``iou_thres``."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(iou > iou_thres)]
    return np.array(keep, dtype=np.int64)


def non_max_suppression(pred: np.ndarray, conf: float, iou: float, max_det: int = MAX_DET) -> list[np.ndarray]:
    """ultralytics ``ops.non_max_suppression`` for a raw head output (B, 4+nc, N):
    best class only, score > ``conf``, class-aware NMS, at most ``max_det``. → [(n, 6) xyxy conf cls]."""
    out = []
    for p in pred:
        p = p.T  # (N, 4+nc)
        cls_scores = p[:, 4:]
        best = cls_scores.max(1)
        p = p[best > conf]
        if not len(p):
            out.append(np.zeros((0, 6), np.float32))
            continue
        xy, wh = p[:, :2], p[:, 2:4] / 2
        box = np.concatenate([xy - wh, xy + wh], 1)
        j = p[:, 4:].argmax(1)
        score = p[np.arange(len(p)), 4 + j]
        x = np.concatenate([box, score[:, None], j[:, None].astype(np.float32)], 1)
        if len(x) > MAX_NMS:
            x = x[np.argsort(-x[:, 4], kind="stable")[:MAX_NMS]]
        keep = nms(x[:, :4] + x[:, 5:6] * MAX_WH, x[:, 4], iou)[:max_det]
        out.append(x[keep])
    return out


def scale_boxes(img1_shape: tuple[int, int], boxes: np.ndarray, img0_shape: tuple[int, int]) -> np.ndarray:
    """ultralytics ``ops.scale_boxes``: letterboxed xyxy → original image, clipped to it."""
    gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
    new_h, new_w = (max(round(x * gain), 1) for x in img0_shape[:2])
    gain_y, gain_x = new_h / img0_shape[0], new_w / img0_shape[1]
    pad_x, pad_y = round((img1_shape[1] - new_w) / 2 - 0.1), round((img1_shape[0] - new_h) / 2 - 0.1)
    boxes = boxes.copy()
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - pad_x) / np.float32(gain_x)
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - pad_y) / np.float32(gain_y)
    h, w = img0_shape[:2]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return boxes


# -- backends ------------------------------------------------------------------------------


def cpu_count() -> int:
    """CPUs this process may use (affinity-aware, unlike ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _onnx_infer(path: Path, imgsz: int | None, conf: float, iou: float, threads: int | None, max_det: int,
                device: str | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or cpu_count()
    opts.inter_op_num_threads = 1
    # spinning worker threads compete with the caller's thread on small CPUs (2 cores: 64 → 35 ms a frame)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if device and device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            index = device.partition(":")[2] or "0"
            providers = [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
        else:
            warnings.warn("onnxruntime 没有 CUDA（安装 onnxruntime-gpu，或用 --backend ultralytics）：ONNX 检测在 CPU 上运行", stacklevel=3)
    sess = ort.InferenceSession(str(path), opts, providers=providers)
    meta = sess.get_modelmeta().custom_metadata_map
    names = {int(k): str(v) for k, v in ast.literal_eval(meta["names"]).items()} if "names" in meta else {}
    stride = int(meta.get("stride", 32))
    inp = sess.get_inputs()[0]
    _, _, h, w = inp.shape
    fixed = isinstance(h, int) and isinstance(w, int)
    batch_dynamic = not isinstance(inp.shape[0], int)
    if fixed:
        if imgsz is not None and imgsz != max(h, w):
            raise InvalidInput(
                f"ONNX 模型 {path} 的输入尺寸固定为 {w}x{h}，不能以 imgsz={imgsz} 运行"
                "（以 dynamic 方式重新导出，或不指定 imgsz）"
            )
        imgsz = max(h, w)
    else:
        meta_sz = ast.literal_eval(meta["imgsz"]) if "imgsz" in meta else [640]
        imgsz = imgsz or max(meta_sz)
        imgsz = math.ceil(imgsz / stride) * stride  # ultralytics check_imgsz rounds up to the stride

    def run(images: list[np.ndarray]) -> list[Raw]:
        results: list[Raw | None] = [None] * len(images)
        same = len({im.shape for im in images}) == 1
        if fixed:
            target, auto = (h, w), False
        else:
            target, auto = (imgsz, imgsz), same  # ultralytics: minimum rectangle only for equal shapes
        groups = [[i] for i in range(len(images))] if not (batch_dynamic and same) else [list(range(len(images)))]
        for idx in groups:
            boxed = [letterbox(images[i], target, auto=auto, stride=stride) for i in idx]
            pred = sess.run(None, {inp.name: to_tensor(boxed)})[0]
            if pred.ndim == 3 and pred.shape[-1] == 6:  # end-to-end head (B, max_det, 6): xyxy conf cls
                dets = [d[d[:, 4] > conf][:max_det] for d in pred]
            else:
                dets = non_max_suppression(pred, conf, iou, max_det)
            for i, d, bimg in zip(idx, dets, boxed, strict=True):
                xyxy = scale_boxes(bimg.shape[:2], d[:, :4].astype(np.float32), images[i].shape[:2])
                results[i] = (xyxy, d[:, 4], d[:, 5].astype(int))
        return results  # type: ignore[return-value]

    return run, names, imgsz, ((h, w) if fixed else None)


def _ultralytics_infer(path: Path, imgsz: int | None, conf: float, iou: float, threads: int | None, max_det: int,
                       device: str | None = None):
    try:
        from ultralytics import YOLO
    except ImportError as e:
        raise InvalidInput(f"用 .pt 权重 {path} 检测需要安装 ultralytics（或在其旁边放置导出的 .onnx）") from e
    import torch

    if threads:
        torch.set_num_threads(threads)
    model = YOLO(str(path), task="detect")
    names = {int(k): str(v) for k, v in model.names.items()}
    imgsz = imgsz or int(model.overrides.get("imgsz") or 640)

    def run(images: list[np.ndarray]) -> list[Raw]:
        res = model.predict(images, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, device=device or "cpu", verbose=False)
        return [
            (r.boxes.xyxy.cpu().numpy().astype(np.float32), r.boxes.conf.cpu().numpy(), r.boxes.cls.cpu().numpy().astype(int))
            for r in res
        ]

    return run, names, imgsz, None


def resolve_weights(path: str | Path, backend: Backend = "auto") -> tuple[Path, Literal["onnx", "ultralytics"]]:
    """Which file and backend ``load_detector`` would use (the ``.onnx`` beside a ``.pt`` for 'auto')."""
    p = Path(path)
    if not p.exists():
        raise NotFound(f"模型权重不存在: {p}（应为 .pt 或 .onnx 文件，或含 card.yaml 的目录）")
    pt = onnx = None
    if p.is_dir():
        card_file = find_card(p)
        if card_file is not None:
            card = read_card(card_file)
            pt, onnx = card.weights_path("pt"), card.weights_path("onnx")
        pts, onnxs = sorted(p.glob("*.pt")), sorted(p.glob("*.onnx"))
        pt = pt if pt and pt.is_file() else (pts[0] if len(pts) == 1 else None)
        onnx = onnx if onnx and onnx.is_file() else (onnxs[0] if len(onnxs) == 1 else None)
        if pt is None and onnx is None:
            raise NotFound(f"目录 {p} 中没有可用的权重（.pt 或 .onnx），也没有写明 weights 的 card.yaml")
    elif p.suffix in (".pt", ".onnx"):
        fmt, other = ("pt", "onnx") if p.suffix == ".pt" else ("onnx", "pt")
        sib = p.with_suffix(f".{other}")
        card_file = find_card(p)
        if not sib.is_file() and card_file is not None:  # the card may name the other file differently
            card = read_card(card_file)
            mine, theirs = card.weights_path(fmt), card.weights_path(other)  # type: ignore[arg-type]
            if mine is not None and mine.resolve() == p.resolve() and theirs is not None:
                sib = theirs
        found = sib if sib.is_file() else None
        pt, onnx = (p, found) if fmt == "pt" else (found, p)
    else:
        raise InvalidInput(f"不支持的权重格式: {p}（应为 .pt 或 .onnx）")

    if backend == "onnx" or (backend == "auto" and onnx is not None):
        if onnx is None:
            raise NotFound(f"没有 {p} 对应的 .onnx 文件：先运行 xunjian vision export 导出")
        if pt is not None and backend == "auto" and pt.stat().st_mtime > onnx.stat().st_mtime + 1:
            warnings.warn(f"{onnx} 比 {pt} 旧，可能已过期：请重新导出", stacklevel=3)
        return onnx, "onnx"
    if backend not in ("auto", "ultralytics"):
        raise InvalidInput(f"未知的检测后端 {backend!r}（可选 auto、onnx、ultralytics）")
    if pt is None:
        raise NotFound(f"没有 {p} 对应的 .pt 权重，ultralytics 后端无法使用")
    return pt, "ultralytics"


def load_detector(
    path: str | Path,
    *,
    backend: Backend = "auto",
    conf: float = 0.25,
    iou: float = 0.45,
    imgsz: int | None = None,
    threads: int | None = None,
    max_det: int = MAX_DET,
    device: str | None = None,
) -> Detector:
    """Load a detector from weights (``.pt``/``.onnx``) or a folder holding them and a ``card.yaml``.

    Args:
        path: weights file, or a folder with ``card.yaml`` (whose ``weights`` name the files).
        backend: ``'onnx'`` (onnxruntime, no torch), ``'ultralytics'`` (the ``.pt``), or
            ``'auto'``: the ``.onnx`` next to the ``.pt`` if present, else the ``.pt``.
        conf: minimum confidence (of the best class).
        iou: IoU threshold of the class-aware NMS.
        imgsz: inference size (long side); default the card's ``input_size``, else the
            size the weights were trained/exported at. A fixed-shape ONNX fixes it.
        threads: CPU threads (onnxruntime intra-op, or torch); default all cores.
        max_det: at most this many detections per image.
        device: ``None``/``'cpu'``, or ``'cuda'``/``'cuda:N'`` for a GPU (ultralytics with a
            CUDA torch; ONNX needs ``onnxruntime-gpu``, else it warns and stays on the CPU).

    The card (``<stem>.card.yaml`` or ``card.yaml`` next to the weights) is optional
    here (``det.card`` is None without one); run :func:`vision.modelcard.check_card`
    before turning detections into cases.
    """
    if not 0 <= conf <= 1 or not 0 <= iou <= 1:
        raise InvalidInput(f"conf 与 iou 应在 0 到 1 之间，收到 conf={conf}, iou={iou}")
    file, chosen = resolve_weights(path, backend)
    card_file = find_card(Path(path)) or find_card(file)
    card = read_card(card_file) if card_file else None
    if imgsz is None and card is not None:
        imgsz = card.input_size
    make = _onnx_infer if chosen == "onnx" else _ultralytics_infer
    infer, names, imgsz, fixed_shape = make(file, imgsz, conf, iou, threads, max_det, device)
    if not names and card is not None:
        names = card.names
    return Detector(
        path=file, backend=chosen, names=names, imgsz=imgsz, conf=conf, iou=iou, card=card, _infer=infer,
        max_det=max_det, fixed_shape=fixed_shape,
    )
