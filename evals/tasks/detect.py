"""Eval task ``detect``: a detector on a labelled image set (YOLO or Pascal VOC).

The detector runs once per image at a LOW confidence (``eval_conf``) so the PR
curves are complete; the headline P/R/F1 are read at the operating threshold
(``conf``, default the model card's). Metrics are COCO-style and computed here in
numpy: per class, detections sorted by confidence are matched greedily to the
unmatched ground-truth box of highest IoU (≥ the threshold); AP is the 101-point
interpolated area under the precision envelope; mAP is the mean over the classes
that have ground truth. ``f1`` is micro over classes at IoU ``iou_match`` (as the
RDD2022 challenge scores it).

``class_map`` maps dataset class names to detector class names (several to one is
fine: D00/D10/D20 → crack). Dataset classes not in it are not evaluated; detector
classes no dataset class maps to are dropped. Without ``class_map`` a dataset class
is evaluated as the detector class of the same name (case-insensitive).

``synth: {images: N, seed: S}`` evaluates on N images rendered by
:func:`vision.synth.dataset.make_dataset` (cached under ``home()/eval-cache``).
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from city.errors import DataError, InvalidInput
from evals.results import Metric, Plot, ReportTable, Result, RunOptions, TaskRun

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = "vision/weights/demo-patrol/demo-patrol.onnx"
IOU_THRESHOLDS = [round(0.5 + 0.05 * i, 2) for i in range(10)]  # COCO 0.50:0.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}

METRICS: dict[str, Metric] = {
    "map50": Metric(label="mAP@0.5（各类平均）"),
    "map50_95": Metric(label="mAP@0.5:0.95（各类平均）"),
    "precision": Metric(label="精确率（工作阈值，IoU 0.5，各类合计）"),
    "recall": Metric(label="召回率（工作阈值，IoU 0.5，各类合计）"),
    "f1": Metric(label="F1（工作阈值，IoU 0.5，各类合计）"),
    "latency_ms": Metric(label="单张图像检测耗时", higher_is_better=False, unit="ms"),
}


# -- options -----------------------------------------------------------------------------------


class SynthOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: int = Field(default=200, ge=1, le=20000)
    seed: int = Field(default=2026, description="not 0: seed 0 rendered the demo detector's training set")
    imgsz: int = Field(default=640, ge=64)


class DetectOptions(BaseModel):
    """The ``options:`` of a ``detect`` suite."""

    model_config = ConfigDict(extra="forbid")

    weights: str = DEFAULT_WEIGHTS
    backend: Literal["auto", "onnx", "ultralytics"] = "auto"
    class_map: dict[str, str] | None = None
    names: list[str] | None = Field(default=None, description="class names of a YOLO set without data.yaml/classes.txt")
    conf: float | None = Field(default=None, gt=0, lt=1, description="operating threshold (default: the card's)")
    eval_conf: float = Field(default=0.005, gt=0, lt=1, description="threshold the detector runs at, for the PR curves")
    nms_iou: float = Field(default=0.45, gt=0, lt=1)
    iou_match: float = Field(default=0.5, gt=0, lt=1)
    max_det: int = Field(default=100, ge=1)
    max_images: int | None = Field(default=None, ge=1)
    synth: SynthOptions | None = None


def parse_options(raw: dict) -> DetectOptions:
    """Validate a suite's options; one clear error on bad keys or values."""
    try:
        return DetectOptions.model_validate(raw or {})
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'options'}: {err['msg']}" for err in e.errors())
        raise InvalidInput(f"detect 评测选项无效: {msgs}") from None


# -- datasets ----------------------------------------------------------------------------------


@dataclass
class LabelledImage:
    """One image and its ground truth: ``(class, x1, y1, x2, y2)`` in pixels, or normalised YOLO ``cx cy w h``."""

    path: Path
    boxes: list[tuple[str, float, float, float, float]] = field(default_factory=list)
    normalised: bool = False

    def pixel_boxes(self, width: int, height: int) -> list[tuple[str, float, float, float, float]]:
        if not self.normalised:
            return self.boxes
        return [(c, (x - w / 2) * width, (y - h / 2) * height, (x + w / 2) * width, (y + h / 2) * height)
                for c, x, y, w, h in self.boxes]


def read_voc(root: Path) -> list[LabelledImage]:
    """A Pascal VOC folder (via :mod:`vision.train`'s reader); invalid boxes are dropped."""
    from vision.train import _parse_voc, _voc_dirs

    ann_dir, img_dir = _voc_dirs(root)  # type: ignore[misc]
    items = []
    for xml in sorted(ann_dir.glob("*.xml")):
        filename, _wh, objects = _parse_voc(xml)
        image = img_dir / filename if filename else None
        if image is None or not image.is_file():
            image = next((p for p in img_dir.glob(f"{xml.stem}.*") if p.suffix.lower() in IMAGE_SUFFIXES), None)
        if image is None:
            continue
        boxes = [(n, x1, y1, x2, y2) for n, x1, y1, x2, y2 in objects if n and x2 > x1 and y2 > y1]
        items.append(LabelledImage(image, boxes))
    return items


def _label_file(image: Path) -> Path:
    parts = list(image.parts)
    i = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:i], "labels", *parts[i + 1:]).with_suffix(".txt")


def _yolo_images(cfg: dict, root: Path) -> list[Path]:
    """Every image the data.yaml's train/val/test entries list (folders or .txt lists), deduplicated."""
    base = Path(cfg.get("path") or root)
    base = base if base.is_absolute() else root / base
    out: list[Path] = []
    for key in ("train", "val", "test"):
        for entry in ([cfg[key]] if isinstance(cfg.get(key), str) else cfg.get(key) or []):
            p = Path(entry) if Path(entry).is_absolute() else base / entry
            if p.is_dir():
                out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
            elif p.suffix == ".txt" and p.is_file():
                out += [Path(s.strip()) for s in p.read_text(encoding="utf-8").splitlines() if s.strip()]
    return list(dict.fromkeys(out))


def read_yolo(root: Path, names: list[str] | None) -> list[LabelledImage]:
    """A YOLO set: ``data.yaml`` (names + splits), or ``images/`` + ``labels/`` with ``classes.txt`` or ``names``."""
    yaml_file = root if root.is_file() else root / "data.yaml"
    if yaml_file.is_file():
        cfg = yaml.safe_load(yaml_file.read_text(encoding="utf-8")) or {}
        raw = cfg.get("names") or {}
        class_names = dict(enumerate(raw)) if isinstance(raw, list) else {int(k): str(v) for k, v in raw.items()}
        images = _yolo_images(cfg, yaml_file.parent)
    else:
        if (root / "classes.txt").is_file():
            names = [n.strip() for n in (root / "classes.txt").read_text(encoding="utf-8").splitlines() if n.strip()]
        if not names:
            raise DataError(f"YOLO 数据集 {root} 缺少 data.yaml 或 classes.txt：在套件 options 中用 names 给出类别名")
        class_names = dict(enumerate(names))
        images = sorted(q for q in (root / "images").rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
    items = []
    for image in images:
        label = _label_file(image)
        rows = [r.split() for r in label.read_text(encoding="utf-8").splitlines()] if label.is_file() else []
        boxes = [(class_names.get(int(r[0]), r[0]), *map(float, r[1:5])) for r in rows if len(r) >= 5]
        items.append(LabelledImage(image, boxes, normalised=True))  # type: ignore[arg-type]
    return items


def read_dataset(path: Path, names: list[str] | None = None) -> list[LabelledImage]:
    """The labelled images of a YOLO or VOC dataset (format as :func:`vision.train.detect_format`)."""
    from vision.train import detect_format

    return read_voc(path) if detect_format(path) == "voc" else read_yolo(path, names)


def synth_dataset(spec: SynthOptions) -> Path:
    """Render (once) the synthetic set into ``home()/eval-cache/detect-synth-…``; returns its data.yaml."""
    from city import settings
    from vision.synth.dataset import make_dataset

    out = settings.home() / "eval-cache" / f"detect-synth-{spec.images}-{spec.seed}-{spec.imgsz}"
    if not (out / ".complete").exists():
        make_dataset(out, spec.images, spec.seed, imgsz=spec.imgsz)
        (out / ".complete").write_text("ok\n", encoding="utf-8")
    return out / "data.yaml"


# -- matching and AP ---------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_class(gt: np.ndarray, det: np.ndarray, scores: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """COCO greedy matching of one class in one image: → (n_det, n_thr) bool, True where the
    detection is a true positive at that IoU threshold (in the order given)."""
    tp = np.zeros((len(det), len(thresholds)), bool)
    if not len(det) or not len(gt):
        return tp
    ious = box_iou(det, gt)
    order = np.argsort(-np.asarray(scores), kind="stable")
    for t, thr in enumerate(thresholds):
        taken = np.zeros(len(gt), bool)
        for d in order:
            cand = np.where(taken, -1.0, ious[d])
            g = int(np.argmax(cand))
            if cand[g] >= thr:
                taken[g] = True
                tp[d, t] = True
    return tp


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float | None:
    """COCO 101-point interpolated AP of one class at one IoU threshold (None without ground truth)."""
    if n_gt == 0:
        return None
    if not len(scores):
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(tp, bool)[order]
    tpc, fpc = np.cumsum(hits), np.cumsum(~hits)
    recall = tpc / n_gt
    precision = np.maximum.accumulate((tpc / (tpc + fpc))[::-1])[::-1]  # the envelope
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


def pr_curve(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) as the threshold sweeps down the detections' confidences."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(tp, bool)[order]
    tpc, fpc = np.cumsum(hits), np.cumsum(~hits)
    return tpc / max(n_gt, 1), tpc / np.maximum(tpc + fpc, 1)


def score_image(gt: list[tuple], dets: list[tuple], thresholds: list[float]) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Per class: (scores, tp mask (n_det, n_thr), n_gt) for one image.
    ``gt``: (class, x1, y1, x2, y2); ``dets``: (class, score, x1, y1, x2, y2)."""
    out = {}
    for c in {g[0] for g in gt} | {d[0] for d in dets}:
        g = np.array([b[1:] for b in gt if b[0] == c], float).reshape(-1, 4)
        ds = [d for d in dets if d[0] == c]
        s = np.array([d[1] for d in ds], float)
        boxes = np.array([d[2:] for d in ds], float).reshape(-1, 4)
        out[c] = (s, match_class(g, boxes, s, thresholds), len(g))
    return out


def _pack(tp: np.ndarray) -> list[int]:
    """TP masks → one int per detection (bit t: TP at threshold t), for a compact ``extra``."""
    return [int(sum(1 << t for t in np.flatnonzero(row))) for row in tp]


def _unpack(bits: list[int], n_thr: int) -> np.ndarray:
    b = np.asarray(bits, dtype=np.int64).reshape(-1, 1)
    return (b >> np.arange(n_thr)) & 1 == 1


# -- the metrics -------------------------------------------------------------------------------


def per_class(extra: dict) -> dict[str, dict]:
    """AP50, AP50-95 and P/R/F1 at the operating threshold for every evaluated class."""
    thrs = extra["iou_thresholds"]
    t50, tm = thrs.index(0.5), thrs.index(extra["iou_match"])
    op = extra["op_conf"]
    out = {}
    for c in extra["classes"]:
        d = extra["dets"].get(c, {"scores": [], "tp": []})
        n_gt = extra["n_gt"].get(c, 0)
        s, tp = np.asarray(d["scores"], float), _unpack(d["tp"], len(thrs))
        aps = [average_precision(s, tp[:, i], n_gt) for i in range(10)]
        keep = s >= op
        hits, n_det = int(tp[keep, tm].sum()), int(keep.sum())
        out[c] = {"n_gt": n_gt, "n_det": n_det, "tp": hits, "fp": n_det - hits, "fn": n_gt - hits,
                  "precision": hits / n_det if n_det else None, "recall": hits / n_gt if n_gt else None,
                  "ap50": aps[t50], "ap50_95": None if n_gt == 0 else float(np.mean(aps))}
        p, r = out[c]["precision"], out[c]["recall"]
        out[c]["f1"] = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else (0.0 if n_gt else None)
    return out


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def compute(results: list[Result], extra: dict) -> dict[str, float | None]:
    """mAP over the classes with ground truth; micro P/R/F1 at the operating threshold; mean latency."""
    if not extra.get("classes"):
        return dict.fromkeys(METRICS)
    pc = per_class(extra)
    tp, fp, fn = (sum(v[k] for v in pc.values()) for k in ("tp", "fp", "fn"))
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    lat = [x.latency_ms for x in results if x.error is None]
    return {"map50": _mean([v["ap50"] for v in pc.values()]), "map50_95": _mean([v["ap50_95"] for v in pc.values()]),
            "precision": p, "recall": r, "f1": f1, "latency_ms": float(np.mean(lat)) if lat else None}


# -- running -----------------------------------------------------------------------------------


def _resolve_weights(weights: str) -> Path:
    p = Path(weights).expanduser()
    return p if p.is_absolute() else REPO / p


def _evaluated(dataset_classes: set[str], detector_names: list[str], class_map: dict[str, str] | None) -> dict[str, str]:
    """dataset class → detector class, for the classes that are evaluated."""
    if class_map is not None:
        unknown = sorted(set(class_map.values()) - set(detector_names))
        if unknown:
            raise InvalidInput(f"class_map 指向检测模型没有的类别 {unknown}；模型类别: {detector_names}")
        return {k: v for k, v in class_map.items()}
    lower = {n.lower(): n for n in detector_names}
    return {c: lower[c.lower()] for c in dataset_classes if c.lower() in lower}


def _items(o: DetectOptions, opts: RunOptions) -> tuple[list[LabelledImage], list[str]]:
    paths = list(opts.datasets)
    notes = []
    if o.synth is not None:
        paths.append(synth_dataset(o.synth).parent)
        notes.append(f"合成数据集：{o.synth.images} 张（seed {o.synth.seed}，vision.synth.dataset 渲染）")
    if not paths:
        raise InvalidInput("detect 评测需要 datasets 或 options.synth")
    items = [it for p in paths for it in read_dataset(Path(p), o.names)]
    cap = min(x for x in (o.max_images, opts.limit, len(items)) if x is not None)
    if cap < len(items):
        notes.append(f"只评测前 {cap} 张图像（共 {len(items)} 张）")
    return items[:cap], notes


def _summaries(counts: dict[str, int]) -> str:
    return "、".join(f"{c}×{n}" for c, n in sorted(counts.items())) or "无"


def _result(item: LabelledImage, gt: list, dets: list, scored: dict, op: float, t_match: int, ms: float, root: Path) -> Result:
    """One image's Result: ok when every box is found at the operating threshold and nothing else is."""
    tp = fp = 0
    for s, mask, _n in scored.values():
        keep = s >= op
        tp += int(mask[keep, t_match].sum())
        fp += int(keep.sum() - mask[keep, t_match].sum())
    fn = len(gt) - tp
    gt_counts: dict[str, int] = {}
    for g in gt:
        gt_counts[g[0]] = gt_counts.get(g[0], 0) + 1
    det_counts: dict[str, int] = {}
    for d in dets:
        if d[1] >= op:
            det_counts[d[0]] = det_counts.get(d[0], 0) + 1
    try:
        text = str(item.path.relative_to(root))
    except ValueError:
        text = item.path.name
    return Result(
        item_id=item.path.stem, text=text, expected={"boxes": gt_counts}, output={"boxes": det_counts, "tp": tp, "fp": fp, "fn": fn},
        ok=fn == 0 and fp == 0, flags={"all_found": fn == 0, "no_false_positive": fp == 0},
        badness=float(fn + fp), expected_summary=f"真值 {len(gt)} 个目标：{_summaries(gt_counts)}",
        output_summary=f"检出 {tp + fp} 个（命中 {tp}，误检 {fp}，漏检 {fn}）：{_summaries(det_counts)}", latency_ms=round(ms, 2),
    )


def run(suite, opts: RunOptions) -> TaskRun:
    """Detect on every labelled image; one Result per image, the matched detections in ``extra``."""
    import cv2

    from vision.detect import load_detector

    o = parse_options(opts.options or getattr(suite, "options", None) or {})
    items, notes = _items(o, opts)
    det = load_detector(_resolve_weights(o.weights), backend=o.backend, conf=o.eval_conf, iou=o.nms_iou, max_det=o.max_det)
    op = o.conf if o.conf is not None else (det.card.conf if det.card else 0.25)
    names = list(det.names.values())
    mapping = _evaluated({b[0] for it in items for b in it.boxes}, names, o.class_map)
    classes = sorted(set(mapping.values()))
    thrs = IOU_THRESHOLDS + ([o.iou_match] if o.iou_match not in IOU_THRESHOLDS else [])
    t_match = thrs.index(o.iou_match)
    dets_all: dict[str, dict] = {c: {"scores": [], "tp": []} for c in classes}
    n_gt = dict.fromkeys(classes, 0)
    skipped: dict[str, int] = {}
    results: list[Result] = []
    started = time.perf_counter()
    for k, item in enumerate(items):
        img = cv2.imread(str(item.path))
        if img is None:
            results.append(Result(item_id=item.path.stem, text=item.path.name, ok=False, badness=1.0, error="图像无法读取"))
            continue
        gt = []
        for c, *box in item.pixel_boxes(img.shape[1], img.shape[0]):
            if c in mapping:
                gt.append((mapping[c], *box))
            else:
                skipped[c] = skipped.get(c, 0) + 1
        t0 = time.perf_counter()
        d = det(img)
        ms = (time.perf_counter() - t0) * 1000
        dets = [(str(n), float(s), *map(float, b)) for n, s, b in zip(d.data["class_name"], d.confidence, d.xyxy) if n in classes]
        scored = score_image(gt, dets, thrs)
        for c, (s, mask, n) in scored.items():
            dets_all[c]["scores"] += [round(float(x), 5) for x in s]
            dets_all[c]["tp"] += _pack(mask)
            n_gt[c] += n
        results.append(_result(item, gt, dets, scored, op, t_match, ms, item.path.parents[1]))
        if opts.progress:
            opts.progress(k + 1, len(items), item.path.stem)
    seconds = time.perf_counter() - started
    if skipped:
        notes.append(f"未评测的数据集类别（不在 class_map 中）：{_summaries(skipped)}")
    notes.append(f"检测器在 conf={o.eval_conf} 下运行以得到完整 PR 曲线；P/R/F1 取工作阈值 conf={op}、IoU≥{o.iou_match}")
    if det.card is not None and det.card.demo_grade:
        notes.append(f"检测模型 {det.card.name} 为演示级（只在合成画面上训练），在真实数据上的数字仅供参考")
    lat = [r.latency_ms for r in results if r.error is None]
    notes.append(f"{len(results)} 张图像共 {seconds:.1f} s；检测耗时每张平均 {np.mean(lat) if lat else 0:.1f} ms（{det.backend}）")
    extra = {"classes": classes, "class_map": mapping, "n_gt": n_gt, "dets": dets_all, "iou_thresholds": thrs,
             "iou_match": o.iou_match, "op_conf": op, "eval_conf": o.eval_conf, "seconds": round(seconds, 2),
             "images": len(results), "not_evaluated": skipped, "backend": det.backend}
    model = f"{det.card.name}@{det.card.version}" if det.card else str(det.path)
    return TaskRun(results=results, extra=extra, model=model, notes=notes)


# -- report ------------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def tables(results: list[Result], extra: dict) -> list[ReportTable]:
    """Per-class AP and P/R/F1 at the operating threshold."""
    if not extra.get("classes"):
        return []
    rows = [[c, str(v["n_gt"]), str(v["n_det"]), _fmt(v["precision"]), _fmt(v["recall"]), _fmt(v["f1"]),
             _fmt(v["ap50"]), _fmt(v["ap50_95"])] for c, v in per_class(extra).items()]
    src = {}
    for k, v in extra.get("class_map", {}).items():
        src.setdefault(v, []).append(k)
    rows = [[r[0] + (f"（{'/'.join(sorted(src[r[0]]))}）" if src.get(r[0], [r[0]]) != [r[0]] else ""), *r[1:]] for r in rows]
    title = f"各类别指标（工作阈值 conf={extra['op_conf']}，IoU≥{extra['iou_match']}）"
    return [ReportTable(title, ["类别", "真值框", "检出框", "精确率", "召回率", "F1", "AP50", "AP50-95"], rows)]


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(results: list[Result], extra: dict) -> list[Plot]:
    """PR curves per class (IoU 0.5) and per-class P/R/F1 bars (ASCII labels: no CJK font)."""
    if not extra.get("classes"):
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thrs, pc = extra["iou_thresholds"], per_class(extra)
    t50 = thrs.index(0.5)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for c in extra["classes"]:
        d, n = extra["dets"].get(c, {"scores": [], "tp": []}), extra["n_gt"].get(c, 0)
        if n == 0:
            continue
        rec, prec = pr_curve(np.asarray(d["scores"]), _unpack(d["tp"], len(thrs))[:, t50], n)
        ax.plot(np.r_[0, rec], np.r_[1, prec], label=f"{c} AP50={pc[c]['ap50']:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="PR curves (IoU 0.5)")
    ax.legend(fontsize=8)
    curves = Plot("PR 曲线（IoU 0.5）", _png(fig))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(pc)), 4))
    x = np.arange(len(pc))
    for i, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * 0.27, [pc[c][key] or 0 for c in pc], 0.27, label=key)
    ax.set_xticks(x, list(pc), rotation=20)
    ax.set(ylim=(0, 1), title=f"per-class P/R/F1 at conf {extra['op_conf']}")
    ax.legend(fontsize=8)
    return [curves, Plot("各类别 P/R/F1（工作阈值）", _png(fig))]
