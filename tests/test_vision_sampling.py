"""Frame sampling, batch manifests and archives, and evidence blurring, on real
files made here (OpenCV-written videos, a real photo of a face)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from city.errors import InvalidInput
from vision.evidence import crop_box, find_regions, write_evidence
from vision.manifest import discover, load_manifest, unpack
from vision.sampling import SamplingConfig, SamplingStats, sample, sharpness

FPS = 10


def texture(seed: int, h: int = 240, w: int = 320) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(base, (w, h), interpolation=cv2.INTER_NEAREST)


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def drive_video(tmp_path: Path, blurred: set[int] = frozenset()) -> tuple[Path, callable]:
    """60 frames: moving 1 m/frame for 20, standing for 20 (same picture), moving for 20."""
    world = texture(0, 240, 2000)
    frames, dist = [], []
    x = 0
    for i in range(60):
        if 20 <= i < 40:
            pass  # standing at a light
        elif i > 0:
            x += 20
        dist.append(x / 20.0)
        f = world[:, x:x + 320].copy()
        if i in blurred:
            f = cv2.GaussianBlur(f, (31, 31), 12)
        frames.append(f)
    path = write_video(tmp_path / "drive.avi", frames)
    return path, lambda t: float(np.interp(t, np.arange(60) / FPS, dist))


def test_distance_sampling_adds_nothing_while_standing(tmp_path):
    path, dist = drive_video(tmp_path)
    stats = SamplingStats()
    kept = list(sample(path, dist, SamplingConfig(every_m=3.0), stats))
    idx = [f.index for f in kept]
    assert stats.read == 60 and stats.fps == pytest.approx(FPS)
    assert not any(20 < i < 40 for i in idx), idx  # the stop adds no frames
    assert 12 <= len(idx) <= 15  # 39 m travelled / 3 m
    assert all(b - a >= 3 for a, b in zip(idx, idx[1:]))
    assert all(f.image.shape == (240, 320, 3) for f in kept)


def test_time_sampling_skips_duplicates_and_blur(tmp_path):
    path, _ = drive_video(tmp_path, blurred={5, 6})
    stats = SamplingStats()
    kept = list(sample(path, None, SamplingConfig(every_m=None, every_s=0.5), stats))
    idx = [f.index for f in kept]
    assert 5 not in idx and 6 not in idx and 7 in idx  # looked ahead to the first sharp frame
    assert stats.blurred == 2
    standing = [i for i in idx if 20 <= i < 40]
    assert len(standing) <= 1, idx  # one new view when it stops, then the same picture again is a duplicate
    assert stats.duplicates >= 3


def test_sharpness_orders_blur():
    img = texture(1)
    assert sharpness(img) > 10 * sharpness(cv2.GaussianBlur(img, (21, 21), 8))


def test_corrupt_and_truncated_video(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01not a video" * 1000)
    with pytest.raises(ValueError, match="junk.mp4"):
        list(sample(junk, None, SamplingConfig(every_m=None, every_s=1)))
    path, _ = drive_video(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    stats = SamplingStats()
    try:
        list(sample(cut, None, SamplingConfig(every_m=None, every_s=0.1), stats))
    except ValueError as e:  # some demuxers refuse a cut file outright: also a clear per-file error
        assert "cut.avi" in str(e)
    else:
        assert stats.truncated and "截断" in stats.notes[-1]


def test_discover_pairs_videos_with_tracks(tmp_path):
    for name in ("a.mp4", "a.gpx", "b.MOV", "B.srt", "c.jpg", "notes.txt", "orphan.csv"):
        (tmp_path / name).write_bytes(b"x")
    specs, ignored = discover(tmp_path)
    pairs = {(s.video or s.image): s.track for s in specs}
    assert pairs == {"a.mp4": "a.gpx", "b.MOV": "B.srt", "c.jpg": None}
    assert "notes.txt" in ignored and any("orphan.csv" in i for i in ignored)


def test_manifest_errors_name_the_field(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"x")
    (tmp_path / "manifest.yaml").write_text("source: car\nfiles: [{video: v.mp4}]\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="source"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.yaml").write_text("source: drone\nfiles: [{video: missing.mp4}]\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="missing.mp4"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.yaml").write_bytes("source: 车巡\n".encode("gbk"))
    with pytest.raises(InvalidInput, match="UTF-8"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.yaml").write_text("source: drone\nmount: {kind: nadir}\nfiles: [{video: v.mp4}]\n", encoding="utf-8")
    m, notes = load_manifest(tmp_path, "vehicle")
    assert m.source == "vehicle" and any("覆盖" in n for n in notes)


def test_unpack_archives_safely(tmp_path):
    good = tmp_path / "batch.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("patrol/a.mp4", b"video")
        z.writestr("patrol/a.gpx", b"<gpx/>")
    dest = unpack(good, tmp_path / "uploads")
    assert (dest / "patrol" / "a.mp4").read_bytes() == b"video"
    assert unpack(good, tmp_path / "uploads") == dest  # once
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../etc/passwd", b"x")
    with pytest.raises(InvalidInput, match="之外"):
        unpack(evil, tmp_path / "uploads")
    big = tmp_path / "big.tar"
    with tarfile.open(big, "w") as t:
        info = tarfile.TarInfo("huge.mp4")
        info.size = 4096
        t.addfile(info, io.BytesIO(b"\0" * 4096))
    with pytest.raises(InvalidInput, match="上限"):
        unpack(big, tmp_path / "uploads", max_bytes=1024)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(InvalidInput, match="损坏"):
        unpack(broken, tmp_path / "uploads")


def face_photo() -> np.ndarray:
    cbook = pytest.importorskip("matplotlib.cbook", reason="matplotlib's sample photo (a real face) is needed")
    return cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


def test_faces_are_blurred_in_evidence(tmp_path):
    img = face_photo()
    faces = find_regions(img)
    assert len(faces) >= 1
    x, y, w, h = faces[0]
    frame, crop, n = write_evidence(cv2.imencode(".jpg", img)[1].tobytes(), (x, y, x + w, y + h), "test 0.9", tmp_path, "001")
    assert n >= 1 and frame.exists() and crop.exists()
    out = cv2.imread(str(frame))
    face_before = img[y + h // 4: y + 3 * h // 4, x + w // 4: x + 3 * w // 4]
    face_after = out[y + h // 4: y + 3 * h // 4, x + w // 4: x + 3 * w // 4]
    assert sharpness(face_after) < 0.1 * sharpness(face_before)
    assert find_regions(out) == []  # no recognisable face left
    assert cv2.imread(str(crop)).shape[0] >= 96


def test_crop_is_clipped():
    img = np.zeros((100, 200, 3), np.uint8)
    assert crop_box(img, (190, 90, 199, 99)).shape[:2] == (54, 54)
