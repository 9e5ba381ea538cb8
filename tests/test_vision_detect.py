"""vision.modelcard, vision.detect (ONNX path), vision.slicing.

The ONNX path is checked three ways: against ultralytics' own letterbox / NMS /
box-scaling functions on random inputs (skipped without ultralytics); end to end on
a hand-made ONNX graph with known outputs (no torch); and, when the demo weights
exist, ONNX vs ``.pt`` on a real-size frame. The train → export → compare check on a
tiny trained model is in test_vision_train.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv
import yaml

from city.errors import InvalidInput, NotFound
from vision.detect import (
    letterbox,
    load_detector,
    non_max_suppression,
    resolve_weights,
    scale_boxes,
    to_tensor,
)
from vision.modelcard import ModelCardError, check_card, load_card
from vision.slicing import sliced, tile_windows

os.environ["YOLO_OFFLINE"] = "1"
REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "vision" / "weights" / "demo-patrol"

CARD = {
    "name": "test-card",
    "version": 1,
    "demo_grade": True,
    "task": "detect",
    "input_size": 64,
    "classes": [
        {"id": 0, "name": "pothole", "label_zh": "坑槽", "kind": "事件", "code": "06013"},
        {"id": 1, "name": "manhole_ok", "label_zh": "完好井盖", "kind": None, "code": None},
        {"id": 2, "name": "manhole_bad", "label_zh": "井盖破损", "kind": "事件", "code": "01001"},
    ],
    "weights": {"pt": None, "onnx": "m.onnx"},
    "metrics": {},
    "training_data": [{"name": "synthetic", "licence": "Apache-2.0", "how": "generated"}],
    "licence": "AGPL-3.0",
    "reproduce": "n/a",
}
NAMES = {0: "pothole", 1: "manhole_ok", 2: "manhole_bad"}


# -- model cards ------------------------------------------------------------------------------


def write_card(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "card.yaml"
    path.write_text(yaml.safe_dump({**CARD, **changes}, allow_unicode=True), encoding="utf-8")
    return path


def test_load_card_missing(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"")
    with pytest.raises(ModelCardError, match="找不到模型.*card.yaml"):
        load_card(tmp_path / "m.pt")


def test_load_card_prefers_stem_card(tmp_path):
    write_card(tmp_path)
    (tmp_path / "m.card.yaml").write_text(yaml.safe_dump({**CARD, "name": "specific"}, allow_unicode=True))
    assert load_card(tmp_path / "m.pt").name == "specific"
    assert load_card(tmp_path / "other.pt").name == "test-card"
    assert load_card(tmp_path).path == (tmp_path / "card.yaml").resolve()


def test_load_card_bad_field(tmp_path):
    classes = [dict(CARD["classes"][0], code="6013")]
    write_card(tmp_path, classes=classes)
    with pytest.raises(ModelCardError, match=r"card.yaml 字段有误: classes\.0\.code"):
        load_card(tmp_path)


def test_check_card(city, tmp_path):
    card = load_card(write_card(tmp_path / "ok"))
    check_card(card, city.catalogue, names=NAMES)  # valid: no error
    bad = [*CARD["classes"][:2], dict(CARD["classes"][2], code="99999"), {"id": 3, "name": "x", "kind": "部件", "code": "06013"}]
    card = load_card(write_card(tmp_path / "bad", classes=bad))
    with pytest.raises(ModelCardError) as e:
        check_card(card, city.catalogue, names=NAMES)
    msg = str(e.value)
    assert str(card.path) in msg and "事件:99999" in msg
    assert "部件:06013" in msg and "事件:06013" in msg  # the kind hint
    assert "模型卡有 4 个类别，权重有 3 个" in msg and "id=3" in msg
    with pytest.raises(ModelCardError, match="没有模型卡"):
        check_card(None, city.catalogue)


# -- ultralytics-equivalent pre/postprocessing --------------------------------------------------


@pytest.fixture(scope="module")
def ul():
    pytest.importorskip("ultralytics")
    import torch
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils import nms, ops

    return torch, LetterBox, nms, ops


@pytest.mark.parametrize("shape", [(720, 1280), (1280, 720), (333, 500), (97, 301), (640, 640), (1, 900)])
@pytest.mark.parametrize("auto", [True, False])
def test_letterbox_matches_ultralytics(ul, shape, auto):
    _, LetterBox, _, _ = ul
    img = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    ours = letterbox(img, (448, 448), auto=auto, stride=32)
    theirs = LetterBox((448, 448), auto=auto, stride=32)(image=img)
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)


@pytest.mark.parametrize("seed", range(4))
def test_nms_matches_ultralytics(ul, seed):
    torch, _, nms, _ = ul
    rng = np.random.default_rng(seed)
    n, nc = 3000, 4
    xy = rng.uniform(0, 448, (2, n))
    wh = rng.uniform(4, 120, (2, n))
    scores = rng.uniform(0, 1, (nc, n)) ** 3
    pred = np.concatenate([xy, wh, scores])[None].astype(np.float32)
    for conf, iou in ((0.001, 0.45), (0.25, 0.7)):
        ours = non_max_suppression(pred, conf, iou)[0]
        theirs = nms.non_max_suppression(torch.from_numpy(pred.copy()), conf, iou, max_det=300)[0].numpy()
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


def test_scale_boxes_matches_ultralytics(ul):
    torch, _, _, ops = ul
    boxes = np.random.default_rng(1).uniform(-20, 470, (50, 4)).astype(np.float32)
    boxes[:, 2:] += boxes[:, :2].clip(0)
    for img1, img0 in (((256, 448), (720, 1280)), ((448, 256), (1280, 720)), ((448, 448), (333, 500))):
        ours = scale_boxes(img1, boxes, img0)
        theirs = ops.scale_boxes(img1, torch.from_numpy(boxes.copy()), img0).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-3)


# -- ONNX path end to end on a hand-made graph -------------------------------------------------


def const_onnx(path: Path, pred: np.ndarray, *, fixed: int | None = None, names=NAMES, imgsz=64) -> Path:
    """An ONNX model whose output is ``pred`` (1, 4+nc, N) + 0 * mean(input), with ultralytics-like metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dims = [1, 3, fixed, fixed] if fixed else ["batch", 3, "height", "width"]
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["pred", "z"], ["output0"]),
    ]
    inits = [numpy_helper.from_array(pred.astype(np.float32), "pred"), numpy_helper.from_array(np.float32(0), "zero")]
    graph = helper.make_graph(nodes, "const", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in {"names": str(names), "stride": "32", "imgsz": str([imgsz, imgsz]), "task": "detect"}.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def raw(boxes_xywh, cls, score, nc=3) -> np.ndarray:
    n = len(boxes_xywh)
    scores = np.zeros((nc, n), np.float32)
    scores[cls, np.arange(n)] = score
    return np.concatenate([np.array(boxes_xywh, np.float32).T, scores])[None]


def test_load_detector_missing_file(tmp_path):
    with pytest.raises(NotFound, match="模型权重不存在"):
        load_detector(tmp_path / "nope.onnx")
    (tmp_path / "m.pt").write_bytes(b"")
    with pytest.raises(NotFound, match="导出"):
        load_detector(tmp_path / "m.pt", backend="onnx")


def test_onnx_path_end_to_end(tmp_path):
    # letterboxed 64x64 input space (square, fixed): three boxes, two overlapping of the same class
    pred = raw([[32, 32, 20, 20], [33, 32, 20, 20], [10, 10, 8, 8], [50, 50, 6, 6]], [0, 0, 1, 2], [0.9, 0.8, 0.6, 0.1])
    path = const_onnx(tmp_path / "m.onnx", pred, fixed=64)
    write_card(tmp_path)
    det = load_detector(tmp_path / "m.onnx", conf=0.25)
    assert det.backend == "onnx" and det.imgsz == 64 and det.names == NAMES and det.card.name == "test-card"
    assert det.fixed_shape == (64, 64)
    img = np.zeros((200, 400, 3), np.uint8)  # gain 64/400 = 0.16, letterbox 64x32 padded by 16 top/bottom
    out = det(img)
    assert list(out.class_id) == [0, 1] and list(out.data["class_name"]) == ["pothole", "manhole_ok"]
    np.testing.assert_allclose(out.xyxy[0], [137.5, 37.5, 262.5, 162.5])
    np.testing.assert_allclose(out.confidence, [0.9, 0.6], rtol=1e-6)
    assert out.xyxy.dtype == np.float32
    assert [len(d) for d in det.predict_batch([img, img[:50]])] == [2, 2]
    with pytest.raises(InvalidInput, match="固定"):
        load_detector(path, imgsz=128)
    with pytest.raises(InvalidInput, match="BGR"):
        det(np.zeros((10, 10), np.uint8))


def test_onnx_path_dynamic_shape_and_no_torch(tmp_path):
    pred = raw([[32, 20, 20, 20]], [2], [0.7])
    path = const_onnx(tmp_path / "m.onnx", pred, imgsz=64)
    det = load_detector(path, conf=0.25)
    assert det.imgsz == 64
    out = det(np.zeros((200, 400, 3), np.uint8))  # dynamic: minimum rectangle 64x32, no padding
    np.testing.assert_allclose(out.xyxy[0], [137.5, 62.5, 262.5, 187.5])
    code = (
        "import sys, numpy as np; from vision.detect import load_detector; "
        f"d = load_detector({str(path)!r}); d(np.zeros((50, 80, 3), np.uint8)); "
        "bad = [m for m in ('torch', 'ultralytics') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_auto_backend_prefers_onnx(tmp_path):
    const_onnx(tmp_path / "m.onnx", raw([[1, 1, 1, 1]], [0], [0.9]))
    (tmp_path / "m.pt").write_bytes(b"")
    os.utime(tmp_path / "m.pt", (1, 1))
    assert resolve_weights(tmp_path / "m.pt") == (tmp_path / "m.onnx", "onnx")
    assert resolve_weights(tmp_path / "m.pt", "ultralytics") == (tmp_path / "m.pt", "ultralytics")
    write_card(tmp_path)
    assert resolve_weights(tmp_path)[1] == "onnx"


# -- slicing ---------------------------------------------------------------------------------


def colour_detector(image: np.ndarray) -> sv.Detections:
    """Boxes around connected red regions (a stand-in detector that cuts objects at tile edges)."""
    mask = ((image[..., 2] > 200) & (image[..., 1] < 50)).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:]], np.float32).reshape(-1, 4)
    return sv.Detections(xyxy=boxes, confidence=np.full(len(boxes), 0.9, np.float32), class_id=np.zeros(len(boxes), int),
                         data={"class_name": np.array(["red"] * len(boxes), dtype=object)})


def test_tile_windows_cover_frame():
    wins = tile_windows(1920, 1080, tile=640, overlap=0.2)
    assert all(x1 - x0 == 640 and y1 - y0 == 640 for x0, y0, x1, y1 in wins)
    assert max(x1 for *_, x1, _ in wins) == 1920 and max(y1 for *_, y1 in wins) == 1080
    assert tile_windows(500, 300, tile=640) == [(0, 0, 500, 300)]


@pytest.mark.parametrize("full_frame", [False, True])
@pytest.mark.parametrize("box", [(500, 100, 560, 160), (450, 300, 700, 380), (1000, 500, 1100, 620)])
def test_object_straddling_a_seam_comes_back_once(full_frame, box):
    img = np.zeros((1080, 1920, 3), np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = (0, 0, 255)
    img[900:950, 1700:1760] = (0, 0, 255)  # a second object, away from seams
    out = sliced(colour_detector, img, tile=640, overlap=0.2, full_frame=full_frame)
    assert len(out) == 2, out.xyxy
    got = out.xyxy[np.argmin(out.xyxy[:, 0])]
    np.testing.assert_allclose(got, box)
    assert list(out.data["class_name"]) == ["red", "red"]


# -- the demo weights, when present --------------------------------------------------------------


@pytest.mark.skipif(not (DEMO / "demo-patrol.pt").is_file() or not (DEMO / "demo-patrol.onnx").is_file(),
                    reason="demo-patrol weights not built (vision/weights/demo-patrol/demo-patrol.{pt,onnx})")
def test_demo_weights_onnx_matches_pt(city):
    pytest.importorskip("ultralytics")
    from scipy.optimize import linear_sum_assignment
    from ultralytics import YOLO

    det = load_detector(DEMO / "demo-patrol.pt", backend="onnx", conf=0.05)
    check_card(det.card, city.catalogue, names=det.names)
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8), (0, 0), 2)
    for _ in range(12):
        x, y = int(rng.integers(0, 1200)), int(rng.integers(0, 650))
        cv2.circle(img, (x, y), int(rng.integers(10, 60)), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    a = det(img)
    # a fixed-shape export is letterboxed to its full input: the .pt equivalent is rect=False
    ref = YOLO(str(DEMO / "demo-patrol.pt")).predict(
        img, imgsz=det.imgsz, conf=0.05, iou=0.45, rect=det.fixed_shape is None, device="cpu", verbose=False
    )[0].boxes
    bx, bc, bk = ref.xyxy.numpy(), ref.conf.numpy(), ref.cls.numpy().astype(int)
    assert len(a) == len(bx)
    if len(a):
        iou = sv.box_iou_batch(a.xyxy, bx)
        close = (iou > 0.99) | (np.abs(a.xyxy[:, None] - bx[None]).max(-1) < 0.5)
        r, j = linear_sum_assignment(~close + (a.class_id[:, None] != bk[None, :]) + np.abs(a.confidence[:, None] - bc[None]))
        assert close[r, j].all() and np.array_equal(a.class_id[r], bk[j])
        assert np.abs(a.confidence[r] - bc[j]).max() < 1e-3


def test_to_tensor_layout():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 255  # blue in BGR
    t = to_tensor([img])
    assert t.shape == (1, 3, 2, 3) and t.dtype == np.float32
    assert t[0, 2].max() == 1.0 and t[0, 0].max() == 0.0  # RGB order: blue is channel 2
