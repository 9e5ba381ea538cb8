"""vision.train: dataset formats, VOC conversion, and a tiny train → export → ONNX-vs-.pt check.

The tiny model is trained for one epoch on synthetic 96x96 images; it learns
nothing, so its detection head is then perturbed with fixed random weights (boxes
of all sizes, confidences spread over (0, 1)) before export. That gives hundreds of
candidate boxes per frame, which is what the ONNX-path-equals-ultralytics check needs.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

os.environ["YOLO_OFFLINE"] = "1"

from vision.detect import letterbox, to_tensor
from vision.train import convert_voc, detect_format, prepare_data, read_convert_report

COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]


def make_yolo_dataset(root: Path, n: int = 16, size: int = 96, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        split = "val" if i % 4 == 0 else "train"
        img = (np.full((size, size, 3), 90) + rng.integers(0, 40, (size, size, 3))).astype(np.uint8)
        lines = []
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(0, 3))
            w, h = (int(v) for v in rng.integers(14, 40, 2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            cv2.rectangle(img, (x, y), (x + w, y + h), COLOURS[c], -1)
            lines.append(f"{c} {(x + w / 2) / size:.6f} {(y + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
        cv2.imwrite(str(root / "images" / split / f"{i:03d}.png"), img)
        (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: red, 1: green, 2: blue}\n")
    return root / "data.yaml"


def frame(h: int, w: int, seed: int) -> np.ndarray:
    """Noise with tinted rectangles: textured everywhere, so no two anchors tie on score."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3)).astype(np.float32)
    for _ in range(8):
        x, y = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        bw, bh = int(rng.integers(10, w // 3)), int(rng.integers(10, h // 3))
        img[y : y + bh, x : x + bw] = img[y : y + bh, x : x + bw] * 0.4 + np.array(COLOURS[int(rng.integers(0, 3))]) * 0.6
    return img.astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(best.pt, best.onnx, data.yaml) of a 1-epoch yolo11n with a perturbed head."""
    pytest.importorskip("ultralytics")
    pytest.importorskip("onnxruntime")
    import torch

    from vision.train import export_onnx, offline_ultralytics, train

    root = tmp_path_factory.mktemp("tiny")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(root / "ultralytics-config"))
    data = make_yolo_dataset(root / "ds")
    best = train(data, epochs=1, imgsz=64, batch=8, out=root / "runs", name="tiny", workers=0, val=False)
    with offline_ultralytics():
        from ultralytics import YOLO

        yolo = YOLO(str(best))
        net = yolo.model.float()
        calib = torch.from_numpy(to_tensor([letterbox(frame(160, 160, seed=s), (160, 160), auto=False) for s in range(8)]))
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            # batch-norm statistics from real frames: every layer's output has unit variance per channel
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.momentum = 1.0
            net.train()
            net(calib)
            net.eval()
            # final convs of the head: random 1x1 weights (logits of std ~1), classes biased towards low scores
            head = net.model[-1]
            for seq in (*head.cv2, *head.cv3):
                conv = seq[-1]
                cls = conv.out_channels == head.nc
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (0.5 if cls else 1.5) / conv.in_channels**0.5)
                conv.bias.copy_(torch.randn(conv.out_channels, generator=g) * 0.5 - (3.0 if cls else 0.0))
        yolo.save(str(best))
    onnx = export_onnx(best, imgsz=160)
    return best, onnx, data


# -- formats and VOC ------------------------------------------------------------------------


VOC_XML = """<annotation><filename>{fn}</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>"""
VOC_OBJ = "<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"


def make_voc(root: Path, layout=("Annotations", "JPEGImages")) -> Path:
    ann, img = root / layout[0], root / layout[1]
    ann.mkdir(parents=True)
    img.mkdir(parents=True)
    files = {
        "a": [("D40", (10, 20, 50, 60)), ("D00", (0, 0, 200, 10))],
        "b": [("Repair", (5, 5, 30, 30)), ("D40", (40, 40, 30, 60))],  # second box has xmax < xmin
        "c": [("D00", (150, 80, 260, 120))],  # runs past the right edge: clipped
    }
    for stem, objs in files.items():
        cv2.imwrite(str(img / f"{stem}.jpg"), np.zeros((100, 200, 3), np.uint8))
        body = "\n".join(VOC_OBJ.format(n=n, b=b) for n, b in objs)
        (ann / f"{stem}.xml").write_text(VOC_XML.format(fn=f"{stem}.jpg", w=200, h=100, objects=body))
    (ann / "broken.xml").write_text("<annotation><filename>x.jpg</filename")
    (ann / "orphan.xml").write_text(VOC_XML.format(fn="gone.jpg", w=10, h=10, objects=""))
    return root


def test_detect_format(tmp_path):
    voc = make_voc(tmp_path / "voc")
    assert detect_format(voc) == "voc"
    voc2 = make_voc(tmp_path / "voc2", layout=("annotations", "images"))
    assert detect_format(voc2) == "voc"
    data = make_yolo_dataset(tmp_path / "yolo", n=2)
    assert detect_format(data) == "yolo"
    assert detect_format(data.parent) == "yolo"
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="无法识别"):
        detect_format(tmp_path / "empty")


def test_convert_voc(tmp_path):
    src = make_voc(tmp_path / "voc")
    data_yaml = convert_voc(src, tmp_path / "out", val_fraction=0.5, seed=3)
    cfg = yaml.safe_load(data_yaml.read_text())
    assert cfg["names"] == {0: "D00", 1: "D40", 2: "Repair"}
    assert Path(cfg["path"]).is_absolute()
    images = sorted((tmp_path / "out" / "images").glob("*/*.jpg"))
    assert sorted(p.name for p in images) == ["a.jpg", "b.jpg", "c.jpg"]
    assert all(p.is_symlink() for p in images)
    labels = {p.stem: p.read_text().split("\n")[:-1] for p in (tmp_path / "out" / "labels").glob("*/*.txt")}
    assert labels["a"] == ["1 0.150000 0.400000 0.200000 0.400000", "0 0.500000 0.050000 1.000000 0.100000"]
    assert labels["b"] == ["2 0.087500 0.175000 0.125000 0.250000"]
    assert labels["c"] == ["0 0.875000 0.900000 0.250000 0.200000"]  # clipped to the image
    report = read_convert_report(tmp_path / "out")
    assert len(report["broken_xml"]) == 1 and report["missing_image"] == ["orphan.xml"]
    assert len(report["bad_box"]) == 1 and report["clipped"] == 1
    # deterministic split: a second run gives the same files in the same splits
    again = convert_voc(src, tmp_path / "out2", val_fraction=0.5, seed=3)
    split = lambda d: sorted(str(p.relative_to(d)) for p in (d / "labels").rglob("*.txt"))
    assert split(tmp_path / "out") == split(again.parent)
    # a given class list skips other classes
    convert_voc(src, tmp_path / "out3", classes=["D40"])
    assert read_convert_report(tmp_path / "out3")["other_class"] == {"D00": 2, "Repair": 1}


def test_prepare_data_makes_path_absolute(tmp_path):
    data = make_yolo_dataset(tmp_path / "yolo", n=2)
    cfg = yaml.safe_load(prepare_data(data, tmp_path / "work").read_text())
    assert cfg["path"] == str((tmp_path / "yolo").resolve())


def test_train_refuses_to_download(tmp_path):
    from vision.train import train

    with pytest.raises(Exception, match="不下载"):
        train(tmp_path, model="yolo11n.pt", epochs=1, out=tmp_path)


# -- tiny model: train, export, ONNX == ultralytics -------------------------------------------


def test_train_writes_draft_card(tiny_model):
    from vision.modelcard import load_card

    best, onnx, _ = tiny_model
    card = load_card(best)
    assert card.names == {0: "red", 1: "green", 2: "blue"}
    assert card.weights.onnx == onnx.name and onnx.is_file()


@pytest.mark.parametrize("imgsz", [160, 320])
def test_onnx_matches_ultralytics(tiny_model, imgsz):
    import supervision as sv
    from scipy.optimize import linear_sum_assignment

    from vision.detect import load_detector

    best, onnx, _ = tiny_model
    ort = load_detector(onnx, backend="onnx", conf=0.001, iou=0.45, imgsz=imgsz)
    ult = load_detector(best, backend="ultralytics", conf=0.001, iou=0.45, imgsz=imgsz)
    assert ort.backend == "onnx" and ult.backend == "ultralytics" and ort.names == ult.names
    for i, (h, w) in enumerate([(720, 1280), (1280, 720), (333, 500), (97, 301)]):
        img = frame(h, w, seed=i)
        a, b = ort(img), ult(img)
        assert len(a) == len(b) > 10, (h, w, len(a), len(b))
        # one-to-one matching (boxes clipped to the frame can coincide, or have zero width):
        # same class, IoU > 0.99 or corners within half a pixel, closest confidence
        iou = sv.box_iou_batch(a.xyxy, b.xyxy)
        close = (iou > 0.99) | (np.abs(a.xyxy[:, None] - b.xyxy[None]).max(-1) < 0.5)
        cost = ~close + (a.class_id[:, None] != b.class_id[None, :]) + np.abs(a.confidence[:, None] - b.confidence[None, :])
        rows, j = linear_sum_assignment(cost)
        assert close[rows, j].all()
        assert np.array_equal(a.class_id[rows], b.class_id[j])
        assert np.abs(a.confidence[rows] - b.confidence[j]).max() < 1e-3
        assert a.xyxy.dtype == np.float32 and list(a.data["class_name"][:1]) == [ort.names[int(a.class_id[0])]]


def test_validate(tiny_model):
    from vision.train import validate

    best, _, data = tiny_model
    m = validate(best, data, imgsz=64)
    assert set(m) >= {"mAP50", "mAP50_95", "precision", "recall", "f1", "per_class"}
    assert 0 <= m["mAP50"] <= 1


def test_bare_yolo_folder_gets_names_and_a_held_out_split(tmp_path):
    import cv2
    import numpy as np
    import yaml

    from city.errors import DataError
    from vision.train import prepare_data

    src = tmp_path / "bare"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    for i in range(40):
        cv2.imwrite(str(src / "images" / f"p{i:03d}.jpg"), np.zeros((32, 32, 3), np.uint8))
        (src / "labels" / f"p{i:03d}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match="--names"):
        prepare_data(src, tmp_path / "w0")
    cfg = yaml.safe_load(prepare_data(src, tmp_path / "w1", names=["Pothole"]).read_text(encoding="utf-8"))
    assert cfg["names"] == {0: "Pothole"}
    train = Path(cfg["train"]).read_text().split()
    val = Path(cfg["val"]).read_text().split()
    assert len(train) + len(val) == 40 and not set(train) & set(val) and 1 <= len(val) <= 12
    again = yaml.safe_load(prepare_data(src, tmp_path / "w2", names=["Pothole"]).read_text(encoding="utf-8"))
    assert Path(again["val"]).read_text().split() == val  # deterministic
