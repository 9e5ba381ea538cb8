"""The synthetic YOLO training set: street scenes from :mod:`vision.synth.world`
rendered from random vehicle (forward, side) and drone (nadir, oblique) poses,
written in the Ultralytics layout (images/{train,val}, labels/{train,val},
data.yaml with the class names from ``classes.yaml``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from vision.camera import Camera
from vision.synth import class_names
from vision.synth.render import Pose, render_view
from vision.synth.world import World, make_world

RENDER_SIZE = (1280, 720)
VIEW_MIX = {"forward": 0.55, "side": 0.1, "nadir": 0.25, "oblique": 0.1}
VIEWS_PER_WORLD = 5
MIN_BOX_PX = 10.0  # at RENDER_SIZE


@dataclass(frozen=True)
class View:
    kind: str
    cam: Camera
    pose: Pose


def random_view(world: World, rng: np.random.Generator, kind: str | None = None) -> View:
    """A random camera pose over the world, of the given kind or drawn from :data:`VIEW_MIX`."""
    if kind is None:
        kind = str(rng.choice(list(VIEW_MIX), p=list(VIEW_MIX.values())))
    W, H = RENDER_SIZE
    hdg = world.heading_deg
    if kind in ("forward", "side"):
        cam = Camera(W, H, float(rng.uniform(70, 100)))
        backwards = rng.random() < 0.2
        lane = int(rng.integers(0, world.lanes_per_side))
        t = world.lane_centre_t(lane) * (-1 if backwards else 1) + rng.normal(0, 0.4)
        s = float(rng.uniform(world.s_min + 8, world.s_max - 12)) if not backwards else float(rng.uniform(world.s_min + 12, world.s_max - 5))
        yaw = hdg + (180.0 if backwards else 0.0)
        if kind == "forward":
            pitch = float(rng.uniform(-20, -6))
            yaw += rng.normal(0, 4)
            height = float(rng.uniform(1.3, 2.3))
        else:
            pitch = float(rng.uniform(-35, -15))
            yaw += 90.0 * (1 if rng.random() < 0.8 else -1) * (-1 if backwards else 1) + rng.normal(0, 5)
            height = float(rng.uniform(1.5, 2.4))
        e, n = world.road_to_enu(s, t)
        return View(kind, cam, Pose(float(e), float(n), height, pitch, yaw % 360, float(rng.normal(0, 1.2))))
    cam = Camera(W, H, float(rng.uniform(70, 84)))
    s = float(rng.uniform(world.s_min + 15, world.s_max - 15))
    t = float(rng.normal(0, 3))
    if kind == "nadir":
        height, pitch = float(rng.uniform(10, 35)), -90.0
    else:
        height, pitch = float(rng.uniform(15, 40)), float(rng.uniform(-70, -40))
        # stand back so the oblique view looks at the road
        back = height / math.tan(math.radians(-pitch)) * 0.8
        yaw = float(rng.uniform(0, 360))
        s -= back * math.cos(math.radians(yaw - hdg))
        t += back * math.sin(math.radians(yaw - hdg))
        e, n = world.road_to_enu(s, t)
        return View(kind, cam, Pose(float(e), float(n), height, pitch, yaw, 0.0))
    e, n = world.road_to_enu(s, t)
    return View(kind, cam, Pose(float(e), float(n), height, pitch, float(rng.uniform(0, 360)), 0.0))


def write_yolo_labels(path: Path, boxes, width: int, height: int) -> None:
    lines = [" ".join([str(c)] + [f"{q:.6f}" for q in rest]) for c, *rest in (b.yolo(width, height) for b in boxes)]
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")


def make_dataset(out_dir: str | Path, n_images: int, seed: int = 0, *, imgsz: int = 640, val_fraction: float = 0.12,
                 views_per_world: int = VIEWS_PER_WORLD, progress: bool = False) -> Path:
    """Write ``n_images`` rendered images (``imgsz`` pixels wide) and their labels;
    returns the path of ``data.yaml``. Deterministic for a seed."""
    out = Path(out_dir)
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_val = round(n_images * val_fraction)
    world = None
    counts = np.zeros(len(class_names()), int)
    for i in range(n_images):
        if i % views_per_world == 0:
            world = make_world(int(rng.integers(2**31)), objects_per_10m=float(rng.uniform(3, 6)), s_range=(-10.0, 70.0))
        view = random_view(world, rng)
        img, boxes = render_view(world, view.cam, view.pose, effects_seed=int(rng.integers(2**31)), min_box_px=MIN_BOX_PX)
        if not boxes and rng.random() < 0.6:  # keep some pure-background images, retry the rest once
            view = random_view(world, rng)
            img, boxes = render_view(world, view.cam, view.pose, effects_seed=int(rng.integers(2**31)), min_box_px=MIN_BOX_PX)
        h = round(imgsz * img.shape[0] / img.shape[1])
        small = cv2.resize(img, (imgsz, h), interpolation=cv2.INTER_AREA)
        split = "val" if i >= n_images - n_val else "train"
        name = f"synth_{seed}_{i:05d}_{view.kind}"
        cv2.imwrite(str(out / "images" / split / f"{name}.jpg"), small, [cv2.IMWRITE_JPEG_QUALITY, 90])
        write_yolo_labels(out / "labels" / split / f"{name}.txt", boxes, img.shape[1], img.shape[0])
        for b in boxes:
            counts[b.cls_id] += 1
        if progress and i % 50 == 0:
            print(f"{i}/{n_images}", flush=True)
    data = {"path": str(out.resolve()), "train": "images/train", "val": "images/val", "names": dict(enumerate(class_names()))}
    (out / "data.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (out / "stats.yaml").write_text(yaml.safe_dump({"images": n_images, "val_images": n_val, "seed": seed, "imgsz": imgsz,
                                                     "instances": dict(zip(class_names(), counts.tolist()))}, sort_keys=False), encoding="utf-8")
    return out / "data.yaml"




def train_demo_detector(data_yaml: str | Path, out_dir: str | Path, *, model: str | Path = "yolo11n.yaml", name: str = "demo-patrol",
                        imgsz: int = 448, hours: float = 0.5, epochs: int = 60, batch: int = 16, nbs: int = 64,
                        warmup_epochs: float = 3.0, workers: int = 2, seed: int = 0) -> Path:
    """Train the demo detector on CPU for at most ``hours`` (``vision.train.train``:
    offline, no plots); returns ``best.pt``. ``model`` is ``yolo11n.yaml`` (from
    scratch: no pretrained weights exist here) or a ``.pt`` to continue from.
    ``nbs`` is Ultralytics' nominal batch: with ``nbs == batch`` the optimizer
    steps every batch instead of every ``nbs / batch`` (4x more steps per CPU hour)."""
    from vision.train import train

    return train(data_yaml, model=model, epochs=epochs, imgsz=imgsz, batch=batch, out=out_dir, name=name, seed=seed,
                 workers=workers, time=hours, nbs=nbs, warmup_epochs=warmup_epochs, cache=True, patience=1000,
                 close_mosaic=3)


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def footage_recall(weights: str | Path, *, seed: int = 0, every: int = 3, conf: float = 0.25, iou_min: float = 0.3) -> dict:
    """Run the detector on rendered frames of the demo drive and drone clip
    (every ``every``-th frame); an object counts as found when some frame has a
    same-class detection with IoU >= ``iou_min`` against its exact box.
    Returns object-level and box-level recall per view."""
    from vision.detect import load_detector
    from vision.synth.footage import (
        DRONE_ALT_M,
        DRONE_FOCAL_35MM,
        VEHICLE_CAMERA,
        demo_world,
        render_vehicle_frames,
    )

    det = load_detector(weights, conf=conf)
    w = demo_world(seed)

    def score(frames) -> dict:
        seen, found = set(), set()
        n_box = n_hit = 0
        for img, boxes in frames:
            d = det(img)
            preds = list(zip(d.xyxy.tolist(), d.class_id.tolist()))
            for b in boxes:
                seen.add(b.obj_index)
                n_box += 1
                if any(c == b.cls_id and _iou(p, (b.x1, b.y1, b.x2, b.y2)) >= iou_min for p, c in preds):
                    n_hit += 1
                    found.add(b.obj_index)
        return {"objects_visible": len(seen), "objects_found": len(found), "object_recall": round(len(found) / max(1, len(seen)), 3),
                "boxes": n_box, "box_recall": round(n_hit / max(1, n_box), 3),
                "missed": sorted(w.objects[i].cls for i in seen - found)}

    veh = ((img, boxes) for k, (_t, img, boxes, _p) in enumerate(render_vehicle_frames(w, 20.0)) if k % every == 0)
    out = {"vehicle": score(veh)}
    cam = Camera.from_focal_35mm(DRONE_FOCAL_35MM, VEHICLE_CAMERA.width, VEHICLE_CAMERA.height)

    def drone():
        for i in range(0, 240, every):
            e, n = w.road_to_enu(15.0 + 5.0 * i / 30, -3.5)
            yield render_view(w, cam, Pose(float(e), float(n), DRONE_ALT_M, -90.0, w.heading_deg))

    out["drone"] = score(drone())
    return out


def finish_demo_detector(run_best: str | Path, data_yaml: str | Path, weights_dir: str | Path, *, imgsz: int = 448,
                         card_extra: dict | None = None, runs: list[str | Path] | None = None) -> dict:
    """Copy the trained (stripped) weights to ``weights_dir/demo-patrol.pt``,
    validate them on the held-out synthetic split, write ``card.yaml``, export
    the ONNX next to them and measure recall on the demo footage."""
    import os
    import shutil

    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    from vision.synth import load_classes
    from vision.train import export_onnx

    wd = Path(weights_dir)
    wd.mkdir(parents=True, exist_ok=True)
    pt = wd / "demo-patrol.pt"
    shutil.copyfile(run_best, pt)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # ultralytics writes a (plot-free) val folder: keep it out of the tree
        res = YOLO(str(pt)).val(data=str(data_yaml), imgsz=imgsz, batch=16, device="cpu", plots=False, split="val", workers=2,
                                verbose=False, project=tmp, name="val")
    n_val = len(list((Path(data_yaml).parent / "images" / "val").glob("*.jpg")))
    metrics = {"mAP50": round(float(res.box.map50), 4), "mAP50_95": round(float(res.box.map), 4),
               "precision": round(float(res.box.mp), 4), "recall": round(float(res.box.mr), 4), "val_images": n_val,
               "per_class_mAP50": {c.name: round(float(v), 4) for c, v in zip(load_classes(), res.box.all_ap[:, 0])}}
    card = {
        "name": "demo-patrol", "version": 1, "demo_grade": True, "task": "detect", "input_size": imgsz,
        "conf": 0.25,  # calibrated on the demo drive (7 of 9 found, none wrong) and the mavic_pro SRT clip (12 of 13, one phantom)
        "classes": [{"id": c.id, "name": c.name, "label_zh": c.label_zh, "kind": c.kind, "code": c.code} for c in load_classes()],
        "weights": {"pt": "demo-patrol.pt", "onnx": "demo-patrol.onnx"},
        "metrics": metrics,
    }
    stats = yaml.safe_load((Path(data_yaml).parent / "stats.yaml").read_text(encoding="utf-8"))
    stages = []
    for run in runs or [Path(run_best).parent.parent]:
        results = Path(run) / "results.csv"
        rows = results.read_text().strip().splitlines()[1:] if results.is_file() else []
        stages.append({"run": Path(run).name, "epochs": len(rows),
                       "train_wall_min": round(float(rows[-1].split(",")[1]) / 60, 1) if rows else None})
    card["training_data"] = [{
        "name": "xunjian synthetic patrol scenes", "licence": "Apache-2.0 (generated by this project)",
        "how": f"xunjian vision synth: python -m vision.synth.dataset make DIR {stats['images']} {stats['seed']} (seed {stats['seed']})",
        "images": stats["images"], "val_images": stats["val_images"], "instances": stats["instances"],
        "stages": stages, "model": "yolo11n.yaml from scratch (no pretrained weights), CPU, imgsz 448, batch 16",
    }]
    card["licence"] = "AGPL-3.0 (Ultralytics YOLO11 architecture; trained by xunjian)"
    card["reproduce"] = (
        f"python -m vision.synth.dataset make /tmp/xj/ds {stats['images']} {stats['seed']} && "
        "python -m vision.synth.dataset train /tmp/xj/ds/data.yaml /tmp/xj/runs 0.45 && "
        "python -m vision.synth.dataset resume /tmp/xj/runs/demo-patrol/weights/last.pt /tmp/xj/ds/data.yaml /tmp/xj/runs 0.95 && "
        "python -m vision.synth.dataset finish /tmp/xj/runs/demo2/weights/best.pt /tmp/xj/ds/data.yaml vision/weights/demo-patrol "
        "/tmp/xj/runs/demo-patrol /tmp/xj/runs/demo2"
        " (CPU; each stage stops on its time budget in hours, so the epoch counts depend on the machine)")
    card.update(card_extra or {})
    (wd / "card.yaml").write_text(yaml.safe_dump(card, allow_unicode=True, sort_keys=False, default_flow_style=None), encoding="utf-8")
    export_onnx(pt, imgsz=imgsz, out=wd / "demo-patrol.onnx")  # fp32, dynamic shape: the same boxes as the .pt
    card["metrics"]["demo_footage"] = {f"conf_{c:g}": footage_recall(wd, conf=c) for c in (0.25, 0.1, 0.05)}
    (wd / "card.yaml").write_text(yaml.safe_dump(card, allow_unicode=True, sort_keys=False, default_flow_style=None), encoding="utf-8")
    return card


def main(argv: list[str] | None = None) -> None:
    """``python -m vision.synth.dataset make OUT N [SEED]`` | ``train DATA_YAML RUNS_DIR [HOURS]``
    | ``resume LAST_PT DATA_YAML RUNS_DIR [HOURS]`` | ``finish BEST_PT DATA_YAML WEIGHTS_DIR [RUN_DIR...]``."""
    import sys

    a = list(sys.argv[1:] if argv is None else argv)
    cmd = a.pop(0) if a else ""
    if cmd == "make":
        print(make_dataset(a[0], int(a[1]), int(a[2]) if len(a) > 2 else 0, progress=True))
    elif cmd == "train":  # stage 1: from scratch, Ultralytics' defaults (nbs 64, 3 warm-up epochs)
        print(train_demo_detector(a[0], a[1], hours=float(a[2]) if len(a) > 2 else 0.45))
    elif cmd == "resume":  # stage 2: continue from stage 1 with an optimizer step every batch
        print(train_demo_detector(a[1], a[2], model=a[0], name="demo2", hours=float(a[3]) if len(a) > 3 else 0.95,
                                  epochs=30, nbs=16, warmup_epochs=0.3))
    elif cmd == "finish":
        print(yaml.safe_dump(finish_demo_detector(a[0], a[1], a[2], runs=a[3:] or None), allow_unicode=True, sort_keys=False))
    else:
        raise SystemExit(main.__doc__)


if __name__ == "__main__":
    main()
