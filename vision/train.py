"""Training, validation and ONNX export of detectors (wrapping ultralytics, imported lazily).

- :func:`detect_format` / :func:`convert_voc`: datasets in YOLO or Pascal VOC layout;
  VOC is converted to a YOLO ``data.yaml`` (images symlinked, deterministic split).
- :func:`train` → ``best.pt`` (and a draft ``card.yaml`` beside it),
  :func:`validate` → metrics dict, :func:`export_onnx` → ``.onnx`` (dynamic shape,
  matching ``.pt`` predictions; the card's ``weights.onnx`` is updated).

Everything runs offline: ultralytics is kept from downloading weights, fonts
(``Arial.ttf``, fetched by its dataset check) or the AMP-check model, and from
pip-installing packages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Literal

import yaml

from city.errors import DataError, InvalidInput, NotFound

log = logging.getLogger("xunjian.vision")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


# -- datasets ------------------------------------------------------------------------------


def _voc_dirs(root: Path) -> tuple[Path, Path] | None:
    """(annotations dir, images dir) of a VOC-layout folder, or None."""
    for ann, img in (("Annotations", "JPEGImages"), ("annotations", "images"), ("Annotations", "images")):
        if (root / ann).is_dir() and (root / img).is_dir() and any((root / ann).glob("*.xml")):
            return root / ann, root / img
    return None


def detect_format(data_path: str | Path) -> Literal["yolo", "voc"]:
    """``'yolo'`` for a data.yaml (or a folder with data.yaml, or images/ + labels/),
    ``'voc'`` for a folder with ``Annotations/*.xml`` + ``JPEGImages/`` (or ``annotations/`` + ``images/``)."""
    p = Path(data_path)
    if not p.exists():
        raise NotFound(f"数据集不存在: {p}")
    if p.is_file():
        if p.suffix in {".yaml", ".yml"}:
            return "yolo"
        raise InvalidInput(f"无法识别的数据集文件 {p}：应为 YOLO data.yaml 或数据集目录")
    if (p / "data.yaml").is_file() or ((p / "images").is_dir() and (p / "labels").is_dir()):
        return "yolo"
    if _voc_dirs(p):
        return "voc"
    raise InvalidInput(
        f"无法识别数据集 {p} 的格式：YOLO 需 data.yaml 或 images/+labels/；"
        "VOC 需 Annotations/*.xml+JPEGImages/（或 annotations/+images/）"
    )


def _split_of(stem: str, val_fraction: float, seed: int) -> str:
    h = int.from_bytes(hashlib.sha1(f"{seed}:{stem}".encode()).digest()[:8], "big") / 2**64
    return "val" if h < val_fraction else "train"


def _parse_voc(xml_file: Path) -> tuple[str | None, tuple[int, int] | None, list[tuple[str, float, float, float, float]]]:
    """(image file name, (w, h) or None, [(class, xmin, ymin, xmax, ymax)]) of one VOC xml."""
    root = ET.parse(xml_file).getroot()
    filename = (root.findtext("filename") or "").strip() or None
    size = root.find("size")
    wh = None
    if size is not None:
        with contextlib.suppress(TypeError, ValueError):
            w, h = int(float(size.findtext("width"))), int(float(size.findtext("height")))
            wh = (w, h) if w > 0 and h > 0 else None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if bb is None:
            objects.append((name, float("nan"), 0, 0, 0))
            continue
        try:
            objects.append((name, *(float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))))
        except (TypeError, ValueError):
            objects.append((name, float("nan"), 0, 0, 0))
    return filename, wh, objects


def convert_voc(
    src: str | Path,
    dst: str | Path,
    *,
    classes: list[str] | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> Path:
    """Convert a Pascal VOC folder to a YOLO dataset under ``dst``; returns ``dst/data.yaml``.

    Images are symlinked (not copied) into ``dst/images/{train,val}``; labels are
    written to ``dst/labels/{train,val}``. The split is a hash of each file's name
    (and ``seed``), so it is stable as files are added. The class list is every
    class name in the data, sorted, unless ``classes`` is given (then other classes
    are skipped). Broken xml files, missing images and invalid boxes are skipped
    and counted; ``dst/convert_report.json`` lists them and a summary is logged.
    """
    src, dst = Path(src), Path(dst)
    dirs = _voc_dirs(src)
    if dirs is None:
        raise InvalidInput(f"{src} 不是 VOC 数据集（需 Annotations/*.xml 与 JPEGImages/ 或 annotations/ 与 images/）")
    if not 0 <= val_fraction < 1:
        raise InvalidInput(f"val_fraction 应在 [0, 1) 内，收到 {val_fraction}")
    ann_dir, img_dir = dirs
    report: dict[str, Any] = {"broken_xml": [], "missing_image": [], "bad_box": [], "other_class": {}, "clipped": 0}
    parsed = []
    for xml_file in sorted(ann_dir.glob("*.xml")):
        try:
            filename, wh, objects = _parse_voc(xml_file)
        except ET.ParseError as e:
            report["broken_xml"].append(f"{xml_file.name}: {e}")
            continue
        image = img_dir / filename if filename else None
        if image is None or not image.is_file():
            image = next((p for p in img_dir.glob(f"{xml_file.stem}.*") if p.suffix.lower() in IMAGE_SUFFIXES), None)
        if image is None:
            report["missing_image"].append(xml_file.name)
            continue
        if wh is None:
            import cv2

            im = cv2.imread(str(image))
            if im is None:
                report["missing_image"].append(f"{xml_file.name}（图像无法读取）")
                continue
            wh = (im.shape[1], im.shape[0])
        parsed.append((xml_file, image, wh, objects))

    names = list(classes) if classes is not None else sorted({o[0] for *_, objs in parsed for o in objs if o[0]})
    if not names:
        raise DataError(f"VOC 数据集 {src} 中没有任何标注目标")
    index = {n: i for i, n in enumerate(names)}
    counts = {"train": 0, "val": 0}
    boxes_per_class = dict.fromkeys(names, 0)
    for split in ("train", "val"):
        for sub in ("images", "labels"):
            d = dst / sub / split
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
    for xml_file, image, (w, h), objects in parsed:
        lines = []
        for name, x1, y1, x2, y2 in objects:
            if name not in index:
                report["other_class"][name] = report["other_class"].get(name, 0) + 1
                continue
            if not (x2 > x1 and y2 > y1):  # NaN compares False too
                report["bad_box"].append(f"{xml_file.name}: {name} ({x1}, {y1}, {x2}, {y2})")
                continue
            cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                report["clipped"] += 1
            if not (cx2 > cx1 and cy2 > cy1):
                report["bad_box"].append(f"{xml_file.name}: {name} 在图像外 ({x1}, {y1}, {x2}, {y2})")
                continue
            lines.append(
                f"{index[name]} {(cx1 + cx2) / 2 / w:.6f} {(cy1 + cy2) / 2 / h:.6f} {(cx2 - cx1) / w:.6f} {(cy2 - cy1) / h:.6f}"
            )
            boxes_per_class[name] += 1
        split = _split_of(image.stem, val_fraction, seed)
        counts[split] += 1
        link = dst / "images" / split / image.name
        link.symlink_to(image.resolve())
        (dst / "labels" / split / f"{image.stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    if counts["val"] == 0 and counts["train"] > 1 and val_fraction > 0:
        log.warning("验证集为空（图像太少）：训练集兼作验证集")
    data = {
        "path": str(dst.resolve()),
        "train": "images/train",
        "val": "images/val" if counts["val"] else "images/train",
        "names": dict(enumerate(names)),
    }
    out = dst / "data.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    report.update(images=counts, boxes_per_class=boxes_per_class, source=str(src.resolve()))
    (dst / "convert_report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    skipped = len(report["broken_xml"]) + len(report["missing_image"])
    log.info(
        "VOC → YOLO: %d 张训练、%d 张验证，%d 个类别 %s", counts["train"], counts["val"], len(names), boxes_per_class
    )
    if skipped or report["bad_box"] or report["other_class"]:
        log.warning(
            "VOC 转换跳过: %d 个损坏的 xml、%d 个缺图像的标注、%d 个无效框、其他类别 %s（详见 %s）",
            len(report["broken_xml"]), len(report["missing_image"]), len(report["bad_box"]),
            report["other_class"] or "无", dst / "convert_report.json",
        )
    return out


def read_convert_report(dst: str | Path) -> dict:
    """The report :func:`convert_voc` wrote (counts and the skipped annotations)."""
    return json.loads((Path(dst) / "convert_report.json").read_text(encoding="utf-8"))


def prepare_data(data: str | Path, workdir: str | Path, *, names: list[str] | None = None, val_fraction: float = 0.15) -> Path:
    """A data.yaml ultralytics can use offline: VOC is converted into ``workdir/dataset``;
    a YOLO yaml gets its ``path`` made absolute (ultralytics would otherwise look under its
    own datasets dir) and its ``download`` key dropped. A bare ``images/`` + ``labels/``
    folder takes its class names from ``classes.txt`` or ``names``, and without an
    ``images/val`` folder gets a deterministic held-out split (hash of the file name)
    written as ``train.txt``/``val.txt`` in ``workdir``. Returns the yaml to train on."""
    data, workdir = Path(data), Path(workdir)
    fmt = detect_format(data)
    if fmt == "voc":
        return convert_voc(data, workdir / "dataset")
    workdir.mkdir(parents=True, exist_ok=True)
    yaml_file = data if data.is_file() else data / "data.yaml"
    if not yaml_file.is_file():  # images/ + labels/ without a yaml
        classes_txt = data / "classes.txt"
        if classes_txt.is_file():
            names = [n.strip() for n in classes_txt.read_text(encoding="utf-8").splitlines() if n.strip()]
        if not names:
            raise DataError(f"YOLO 数据集 {data} 缺少 data.yaml 或 classes.txt 类别表（也可用 --names 给出类别名，逗号分隔）")
        if (data / "images" / "val").is_dir():
            train_dir = "images/train" if (data / "images" / "train").is_dir() else "images"
            cfg: dict[str, Any] = {"train": train_dir, "val": "images/val"}
        else:
            images = sorted(p for p in (data / "images").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
            if not images:
                raise DataError(f"YOLO 数据集 {data}/images 里没有图片")
            held = {p for p in images if int(hashlib.sha1(p.name.encode()).hexdigest(), 16) % 1000 < val_fraction * 1000}
            (workdir / "train.txt").write_text("".join(f"{p.resolve()}\n" for p in images if p not in held), encoding="utf-8")
            (workdir / "val.txt").write_text("".join(f"{p.resolve()}\n" for p in sorted(held)), encoding="utf-8")
            cfg = {"train": str((workdir / "train.txt").resolve()), "val": str((workdir / "val.txt").resolve())}
        cfg["names"] = dict(enumerate(names))
        root = data
    else:
        try:
            cfg = yaml.safe_load(yaml_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise DataError(f"{yaml_file} 不是有效的 YAML: {e}") from e
        if "names" not in cfg or "train" not in cfg:
            raise DataError(f"{yaml_file} 缺少字段 names 或 train")
        root = yaml_file.parent
    base = Path(cfg.get("path") or ".")
    cfg["path"] = str(base if base.is_absolute() else (root / base).resolve())
    cfg.pop("download", None)
    out = workdir / "data.yaml"
    out.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


# -- ultralytics, offline -------------------------------------------------------------------


@contextlib.contextmanager
def offline_ultralytics():
    """Import ultralytics with downloads and auto-installs off, for the duration of the block.

    Sets ``YOLO_OFFLINE=1`` and ``YOLO_AUTOINSTALL=false`` (read when ultralytics is first
    imported) and stubs the font download of its dataset check and, on GPUs, the AMP check
    (which would download ``yolo26n.pt``). Yields the ``ultralytics`` module.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    try:
        import ultralytics
        import ultralytics.data.utils as data_utils
        import ultralytics.engine.trainer as trainer_mod
        from ultralytics.utils import WEIGHTS_DIR
    except ImportError as e:
        raise InvalidInput("训练/验证/导出需要安装 ultralytics（pip install ultralytics）") from e

    saved = data_utils.check_font, trainer_mod.check_amp
    data_utils.check_font = lambda *a, **k: None
    if not (WEIGHTS_DIR / "yolo26n.pt").is_file():
        trainer_mod.check_amp = lambda model: True  # cannot fetch the reference model: trust AMP on GPUs
    try:
        yield ultralytics
    finally:
        data_utils.check_font, trainer_mod.check_amp = saved


def _model_source(model: str | Path) -> str:
    p = Path(model)
    if p.suffix in {".yaml", ".yml"}:
        return str(model)  # a built-in architecture (e.g. yolo11n.yaml) or a local yaml: trained from scratch
    if p.is_file():
        return str(p)
    raise NotFound(
        f"模型文件 {model} 不存在（本项目不下载预训练权重：用 yolo11n.yaml 从头训练，或给出本地 .pt 路径）"
    )


def train(
    data: str | Path,
    *,
    model: str | Path = "yolo11n.yaml",
    epochs: int = 100,
    imgsz: int = 640,
    batch: int = 16,
    device: str = "cpu",
    out: str | Path = "runs/vision",
    name: str = "train",
    seed: int = 0,
    workers: int = 2,
    names: list[str] | None = None,
    **overrides: Any,
) -> Path:
    """Train a detector with ultralytics; returns the path of ``best.pt``.

    Args:
        data: YOLO data.yaml / folder, or a Pascal VOC folder (converted into ``out/name/dataset``).
        model: architecture yaml (from scratch, e.g. ``yolo11n.yaml``) or a local ``.pt`` to fine-tune.
            Nothing is downloaded: a bare ``yolo11n.pt`` that is not on disk is an error.
        epochs, imgsz, batch, device, seed, workers: as in ultralytics.
        out, name: the run goes to ``out/name`` (overwritten: ``exist_ok=True``); weights in ``weights/``.
        names: class names for a bare images/ + labels/ folder without data.yaml or classes.txt.
        overrides: any other ultralytics train argument (e.g. ``patience``, ``lr0``, ``mosaic``).

    Also writes a draft ``card.yaml`` next to the weights (classes without catalogue codes,
    ``demo_grade: true``) unless one exists; fill in kind/code before use.
    """
    source = _model_source(model)
    run_dir = Path(out).resolve() / name
    data_yaml = prepare_data(data, run_dir / "data", names=names)
    args: dict[str, Any] = {
        "data": str(data_yaml), "epochs": epochs, "imgsz": imgsz, "batch": batch, "device": device,
        "project": str(run_dir.parent), "name": name, "exist_ok": True, "seed": seed, "deterministic": True,
        "workers": workers, "plots": False,
        # from a yaml: random init; from a .pt: fine-tune its weights (pretrained=False would discard them)
        "pretrained": not source.endswith((".yaml", ".yml")),
    }
    if str(device) == "cpu":
        args["amp"] = False  # AMP is GPU-only; on CPU it only makes torch warn
    args.update(overrides)
    with offline_ultralytics():
        from ultralytics import YOLO

        yolo = YOLO(source, task="detect")
        yolo.train(**args)
        trainer = yolo.trainer
        best = Path(trainer.best)
        if not best.is_file():
            best = Path(trainer.last)
        metrics = {k.replace("metrics/", "").replace("(B)", ""): round(float(v), 4)
                   for k, v in (trainer.metrics or {}).items() if k.startswith("metrics/")}
        names = trainer.data["names"]
    _draft_card(best, names=names, imgsz=imgsz, metrics=metrics, data=data, model=str(model), epochs=epochs, name=name)
    return best


def _draft_card(best: Path, *, names, imgsz: int, metrics: dict, data, model: str, epochs: int, name: str) -> None:
    from vision.modelcard import ModelCard, find_card

    if find_card(best) is not None:
        return
    card = ModelCard(
        name=name,
        version=1,
        demo_grade=True,
        input_size=imgsz,
        classes=[{"id": int(i), "name": str(n), "label_zh": "", "kind": None, "code": None} for i, n in names.items()],
        weights={"pt": best.name, "onnx": None},
        metrics=metrics,
        training_data=[{"name": Path(data).name, "licence": "（待填写）", "how": str(Path(data).resolve())}],
        licence="AGPL-3.0",
        reproduce=f"xunjian vision train {data} --model {model} --epochs {epochs} --imgsz {imgsz}",
    )
    card.save(best.parent / "card.yaml")


def validate(
    weights: str | Path,
    data: str | Path,
    *,
    imgsz: int | None = None,
    split: Literal["train", "val", "test"] = "val",
    batch: int = 16,
    device: str = "cpu",
    conf: float = 0.001,
    iou: float = 0.7,
    workers: int = 2,
) -> dict[str, Any]:
    """Evaluate weights (``.pt`` or ``.onnx``) on a dataset split (ultralytics metrics at its val defaults).

    Returns ``{mAP50, mAP50_95, precision, recall, f1, per_class: {name: {precision, recall,
    mAP50, mAP50_95, instances}}, imgsz, split}``. ``imgsz`` defaults to the card's input size,
    else the weights' own.
    """
    import tempfile

    from vision.modelcard import find_card, read_card

    weights = Path(weights)
    if not weights.is_file():
        raise NotFound(f"模型权重不存在: {weights}")
    if imgsz is None and (cf := find_card(weights)) is not None:
        imgsz = read_card(cf).input_size
    with tempfile.TemporaryDirectory(prefix="xunjian-val-") as tmp, offline_ultralytics():
        from ultralytics import YOLO

        data_yaml = prepare_data(data, tmp)
        yolo = YOLO(str(weights), task="detect")
        kw = {"imgsz": imgsz} if imgsz else {}
        m = yolo.val(data=str(data_yaml), split=split, batch=batch, device=device, conf=conf, iou=iou,
                     plots=False, workers=workers, verbose=False, project=tmp, name="val", exist_ok=True, **kw)
        box = m.box
        per_class = {}
        nt = getattr(m, "nt_per_class", None)
        for k, ci in enumerate(box.ap_class_index):
            per_class[m.names[int(ci)]] = {
                "precision": float(box.p[k]), "recall": float(box.r[k]), "mAP50": float(box.ap50[k]),
                "mAP50_95": float(box.ap[k]), "instances": int(nt[int(ci)]) if nt is not None else None,
            }
        p, r = float(box.mp), float(box.mr)
        return {
            "mAP50": float(box.map50), "mAP50_95": float(box.map), "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0, "per_class": per_class,
            "imgsz": int(imgsz or yolo.overrides.get("imgsz") or 640), "split": split,
        }


def export_onnx(
    weights: str | Path,
    *,
    imgsz: int | None = None,
    out: str | Path | None = None,
    dynamic: bool = True,
    simplify: bool = True,
) -> Path:
    """Export ``.pt`` weights to ONNX for the fast detector path; returns the ``.onnx`` path.

    ``imgsz`` defaults to the card's ``input_size`` (else the training size). The export
    is dynamic-shape by default so :func:`vision.detect.load_detector` can letterbox like
    ``model.predict`` does on the ``.pt`` (minimum rectangle) and give the same boxes.
    ``out`` (a file or folder) defaults to the ``.onnx`` next to the weights. The card of
    the weights gets ``weights.onnx`` set (a card is copied next to ``out`` if it lives elsewhere).
    """
    from vision.modelcard import find_card, read_card

    weights = Path(weights)
    if not weights.is_file() or weights.suffix != ".pt":
        raise NotFound(f"要导出的 .pt 权重不存在: {weights}")
    card_file = find_card(weights)
    card = read_card(card_file) if card_file else None
    if imgsz is None and card is not None:
        imgsz = card.input_size
    with offline_ultralytics():
        from ultralytics import YOLO

        yolo = YOLO(str(weights), task="detect")
        kw: dict[str, Any] = {"imgsz": imgsz} if imgsz else {}
        if getattr(yolo.model, "end2end", False):
            # the .pt predicts with its NMS-free one-to-one head (YOLO26 with end2end set), but the
            # export would default to the one-to-many head + NMS: export the head the .pt uses ((B, 300, 6))
            kw["nms"] = False
        produced = Path(yolo.export(format="onnx", dynamic=dynamic, simplify=simplify, device="cpu", **kw))
    target = produced
    if out is not None:
        out = Path(out)
        target = out / produced.name if out.is_dir() or not out.suffix else out
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.resolve() != produced.resolve():
            shutil.move(produced, target)
    if card is not None:
        if target.parent.resolve() == card_file.parent.resolve():
            if card.weights.onnx != target.name:
                card.weights.onnx = target.name
                card.save(card_file)
        elif find_card(target) is None:
            card.weights.onnx = target.name
            card.weights.pt = os.path.relpath(weights.resolve(), target.parent.resolve())
            card.save(target.with_name(f"{target.stem}.card.yaml"))
    return target
