"""``xunjian ingest`` end to end on real files: the rendered demo batch (a real
mp4 + GPX, the committed demo detector through ONNX Runtime), a batch full of
bad input, re-runs, and a run killed mid-video."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from city import geo
from city.store import Store
from vision.ingest import DEFAULT_WEIGHTS, IngestOptions, ingest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.with_suffix(".onnx").exists(), reason="demo detector weights not built")


@pytest.fixture(scope="session")
def demo_run(demo_batch, tmp_path_factory):
    """One ingest of the demo batch into a fresh SQLite store (shared by the read-only tests)."""
    work = tmp_path_factory.mktemp("run")
    store = Store(f"sqlite:///{work / 'x.db'}")
    report = ingest(demo_batch, store, IngestOptions(out=work / "out"))
    return store, report, work


def truth(batch: Path) -> list[dict]:
    return json.loads((batch / "truth.json").read_text(encoding="utf-8"))["objects"]


def test_one_observation_per_physical_issue(demo_batch, demo_run):
    store, report, _ = demo_run
    assert [f.status for f in report.files] == ["done"]
    obs = store.observations(report.batch_id)
    objects = [o for o in truth(demo_batch) if o["frames_visible"]]
    matched = 0
    for t in objects:
        near = [o for o in obs if o.class_name == t["class"] and geo.haversine_m(o.lat, o.lon, t["lat"], t["lon"]) <= max(o.error_m, 3.0)]
        assert len(near) <= 1, f"{t['class']} at {t['lat']},{t['lon']} reported {len(near)} times"
        matched += len(near)
    assert matched >= 0.75 * len(objects), f"found {matched} of {len(objects)} placed objects"
    for o in obs:  # nothing far from every placed object, and every error radius honest
        d = min(geo.haversine_m(o.lat, o.lon, t["lat"], t["lon"]) for t in objects)
        assert d <= max(o.error_m, 3.0), f"{o.class_name} {o.id} is {d:.1f} m from any object (±{o.error_m} m)"
        assert o.frames >= 1 and o.first_t <= o.best_t <= o.last_t
        assert o.seen_at is None or o.seen_at.year == 2026
        assert o.code in (None, "06013", "01023", "06010", "06042")
        assert o.source.value == "车巡" and o.platform_id == "渝A-巡01"


def test_evidence_and_outputs(demo_run):
    store, report, work = demo_run
    obs = store.observations(report.batch_id)
    assert obs
    for o in obs:
        frame = cv2.imread(o.frame_uri)
        crop = cv2.imread(o.crop_uri)
        assert frame is not None and crop is not None
        k = frame.shape[1] / 1280  # the evidence frame is at most 960 px wide
        x1, y1, x2, y2 = (int(v * k) for v in o.box)
        assert frame[max(y1 - 2, 0):y2 + 3, max(x1 - 2, 0):x2 + 3, 2].max() >= 250  # the red box is drawn
    geojson = json.loads((work / "out" / "observations.geojson").read_text(encoding="utf-8"))
    assert len(geojson["features"]) == len(obs)
    lon, lat = geojson["features"][0]["geometry"]["coordinates"]
    assert 106 < lon < 107 and 29 < lat < 30
    rep = json.loads((work / "out" / "report.json").read_text(encoding="utf-8"))
    stats = rep["files"][0]["stats"]
    assert stats["frames_read"] == 600 and 40 <= stats["frames_kept"] <= 75  # ~117 m at 2 m, nothing while stopped


def test_stop_at_the_light_adds_no_frames(demo_batch, tmp_path):
    from vision.sampling import SamplingConfig, sample
    from vision.telemetry import align, load_track, probe

    video = demo_batch / "patrol.mp4"
    track = align(load_track(demo_batch / "patrol.gpx"), probe(video))
    t0, t1 = json.loads((demo_batch / "truth.json").read_text(encoding="utf-8"))["stop_s"]
    kept = [f.t for f in sample(video, track.distance_at, SamplingConfig(every_m=3.0))]
    assert not [t for t in kept if t0 + 0.5 < t < t1]


def test_rerun_skips_done_files(demo_batch, demo_run, tmp_path):
    store, first, work = demo_run
    again = ingest(demo_batch, store, IngestOptions(out=work / "out"))
    assert [f.status for f in again.files] == ["skipped"]
    assert [o.id for o in store.observations(first.batch_id)] == [o.id for o in store.observations(again.batch_id)]


def bad_batch(demo_batch: Path, folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(demo_batch / "patrol.mp4", folder / "good.mp4")
    shutil.copy(demo_batch / "patrol.gpx", folder / "good.gpx")
    (folder / "notvideo.mp4").write_bytes(b"this is not a video\n" * 500)
    shutil.copy(demo_batch / "patrol.gpx", folder / "notvideo.gpx")
    data = (demo_batch / "patrol.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    shutil.copy(demo_batch / "patrol.gpx", folder / "truncated.gpx")
    # a track that stops after 8 s of a 20 s video
    gpx = (demo_batch / "patrol.gpx").read_text(encoding="utf-8")
    head, _, rest = gpx.partition("<trkpt")
    pts = ("<trkpt" + rest).split("</trkpt>")
    (folder / "short.gpx").write_text(head + "</trkpt>".join(pts[:9]) + "</trkpt></trkseg></trk></gpx>", encoding="utf-8")
    os.symlink(folder / "good.mp4", folder / "short.mp4")
    # the same drive as CSV with lat/lon swapped
    import xml.etree.ElementTree as ET

    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    root = ET.fromstring(gpx)
    rows = ["time,lat,lon"]
    for i, p in enumerate(root.iterfind(".//g:trkpt", ns)):
        rows.append(f"{i},{p.get('lon')},{p.get('lat')}")
    (folder / "swapped.csv").write_text("\n".join(rows), encoding="utf-8")
    os.symlink(folder / "good.mp4", folder / "swapped.mp4")
    # a drone still without EXIF
    cv2.imwrite(str(folder / "noexif.jpg"), np.full((64, 64, 3), 90, np.uint8))
    return folder


def test_bad_input_fails_per_file_and_the_batch_goes_on(demo_batch, tmp_path):
    folder = bad_batch(demo_batch, tmp_path / "bad")
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    report = ingest(folder, store, IngestOptions(out=tmp_path / "out"))
    by = {f.path: f for f in report.files}
    assert by["good.mp4"].status == "done" and by["good.mp4"].observations > 0
    for name, words in {
        "notvideo.mp4": ["notvideo.mp4"],
        "truncated.mp4": ["truncated.mp4"],
        "short.mp4": ["short.gpx", "覆盖"],
        "swapped.mp4": ["swapped.csv", "颠倒"],
        "noexif.jpg": ["noexif.jpg"],
    }.items():
        f = by[name]
        assert f.status == "failed", (name, f)
        for w in words:
            assert w in f.error, (name, f.error)
    files = {f.path: f for f in store.batch_files(report.batch_id)}
    assert files["swapped.mp4"].status == "failed" and "颠倒" in files["swapped.mp4"].error
    # fixing nothing and running again retries the failed ones and skips the good one
    again = ingest(folder, store, IngestOptions(out=tmp_path / "out"))
    assert {f.path: f.status for f in again.files}["good.mp4"] == "skipped"


def test_refuses_weights_whose_card_maps_to_unknown_codes(tmp_path, demo_batch):
    from vision.modelcard import ModelCardError

    wdir = tmp_path / "w"
    shutil.copytree(DEFAULT_WEIGHTS.parent, wdir)
    card = (wdir / "card.yaml").read_text(encoding="utf-8").replace("'06010'", "'99999'")
    (wdir / "card.yaml").write_text(card, encoding="utf-8")
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ModelCardError, match="99999"):
        ingest(demo_batch, store, IngestOptions(weights=wdir / DEFAULT_WEIGHTS.name))
    assert store.batches() == []


@pytest.mark.slow
def test_killed_mid_video_then_rerun_has_no_duplicates(demo_batch, demo_run, tmp_path):
    env = {**os.environ, "XUNJIAN_HOME": str(tmp_path / "home"), "XUNJIAN_DB_URL": f"sqlite:///{tmp_path / 'k.db'}"}
    cmd = [sys.executable, "-m", "app.cli", "ingest", str(demo_batch), "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    db = tmp_path / "k.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the batch row is written just before the first file starts
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("select count(*) from batches").fetchone()[0]:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    time.sleep(1.0)  # inside the video
    assert proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as conn:  # killed inside the video: nothing of it was recorded
        assert conn.execute("select count(*) from batch_files").fetchone()[0] == 0
        assert conn.execute("select count(*) from observations").fetchone()[0] == 0
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    store = Store(env["XUNJIAN_DB_URL"])
    ref_store, ref, _ = demo_run
    got = store.observations(ref.batch_id)
    assert [o.id for o in got] == [o.id for o in ref_store.observations(ref.batch_id)]
    assert len({o.id for o in got}) == len(got)


def _dms(x: float) -> tuple[float, float, float]:
    x = abs(x)
    d = int(x)
    m = int((x - d) * 60)
    return (float(d), float(m), round(((x - d) * 60 - m) * 60, 4))


def test_drone_still_with_exif_and_xmp(tmp_path, monkeypatch):
    """A nadir drone photo (EXIF GPS, DJI XMP relative altitude and gimbal
    angles) through ingest, with the detector replaced by the exact boxes of
    the render: each object placed where it is, within its error radius."""
    import dataclasses

    from PIL import Image
    from PIL.ExifTags import IFD

    import vision.detect
    from vision.camera import Camera
    from vision.synth.footage import demo_world
    from vision.synth.render import Pose, project_boxes, render_view

    w = demo_world(0)
    cam = Camera.from_focal_35mm(24.0, 1280, 720)
    e, n = w.road_to_enu(40.0, -3.5)
    heading = w.heading_deg % 360
    pose = Pose(float(e), float(n), 25.0, -90.0, heading)
    img, boxes = render_view(w, cam, pose)
    assert len(boxes) >= 2
    lat, lon = w.latlon(float(e), float(n))
    folder = tmp_path / "stills"
    folder.mkdir()
    ex = Image.Exif()
    ex.get_ifd(IFD.GPSInfo).update({1: "N", 2: _dms(lat), 3: "E", 4: _dms(lon), 5: 0, 6: 270.0})
    ex.get_ifd(IFD.Exif).update({36867: "2026:11:20 10:05:00", 41989: 24})
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/" drone-dji:RelativeAltitude="+25.00"'
           f' drone-dji:GimbalPitchDegree="-90.0" drone-dji:GimbalYawDegree="{heading:+.1f}" drone-dji:FlightYawDegree="{heading:+.1f}"/>'
           '</rdf:RDF></x:xmpmeta>').encode()
    Image.fromarray(img[:, :, ::-1]).save(folder / "DJI_0001.JPG", exif=ex, xmp=xmp, quality=92)

    def oracle(images):
        xyxy = np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes], np.float32).reshape(-1, 4)
        return [(xyxy, np.full(len(boxes), 0.9, np.float32), np.array([b.cls_id for b in boxes], int))]

    real_load = vision.detect.load_detector
    monkeypatch.setattr(vision.detect, "load_detector", lambda *a, **kw: dataclasses.replace(real_load(*a, **kw), _infer=oracle))
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    report = ingest(folder, store, IngestOptions(source="drone", tile="never", out=tmp_path / "out"))
    assert [f.status for f in report.files] == ["done"], report.files
    obs = store.observations(report.batch_id)
    truth = {b.obj_index for b in boxes}
    assert len(obs) == len(truth)
    for o in obs:
        d = min(geo.haversine_m(o.lat, o.lon, w.objects[i].lat, w.objects[i].lon) for i in truth if w.objects[i].cls == o.class_name)
        assert d <= max(o.error_m, 1.0), (o.class_name, d, o.error_m)
        assert d < 1.0  # exact boxes, exact pose: only the box centre vs the footprint centre differ
        assert o.source.value == "机巡" and o.frames == 1
