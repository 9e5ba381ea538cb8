"""``xunjian ingest --engine ray`` on real components: a Ray head on loopback
started here (2 CPUs, no dashboard), the rendered demo footage, the committed
demo detector in Ray actors, SQLite stores.

What "same" means here:

- **Ray engine vs local engine, same options** (same segment length and
  overlap): *identical*: every observation row equal field by field (ids,
  classes, codes, positions, confidences, frame counts, times, boxes; only the
  evidence paths differ, as each run writes its own output folder, and the
  evidence images are byte-identical), the same views and the same file stats
  (but the timing). Both engines run the same deterministic pieces
  (:mod:`vision.ingest`); ONNX Runtime gives bit-identical boxes with 1 or 2
  threads, and the decoder's seek lands on the exact frame.
- **Segmented vs whole file**: a video cut into segments is sampled afresh
  from each cut (the sampler keeps a frame every 2 m from where it starts), so
  the sampled frames, and with them the confidences and frame counts, differ
  a little. There "same" means the same physical issues: every observation
  with at least two frames in one run has one of the same class within
  max(3 m, its error radius) in the other, and no placed object is reported
  twice (no duplicates across the cuts).
- **Faults** (a worker killed mid-segment, the driver killed mid-batch and run
  again): identical to the reference run, so nothing is lost or duplicated.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml

from city import geo
from city.store import Store
from vision.ingest import DEFAULT_WEIGHTS, IngestOptions, ingest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported: nodes on 127.0.0.1

ROOT = Path(__file__).resolve().parents[1]
HAVE_RAY = importlib.util.find_spec("ray") is not None
NO_RAY = "Ray is not installed: pip install 'xunjian[ray]' (or the dev extra)"
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason=NO_RAY)
if not HAVE_RAY and os.environ.get("CI"):
    pytest.fail(f"CI must run the Ray engine's tests: {NO_RAY} (tests/run.sh installs the dev extra)", pytrace=False)
pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.with_suffix(".onnx").exists(), reason="demo detector weights not built")
SEG = {"segment_s": 8.0, "overlap_s": 2.0}  # 20 s → 3 segments of 6.7 s, 16 s → 2 of 8 s


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_files(demo_batch, tmp_path_factory) -> Path:
    """The demo batch plus a second video: the first 16 s of the same drive, re-encoded (other content, other sha)."""
    folder = tmp_path_factory.mktemp("two") / "batch"
    folder.mkdir()
    for name in ("patrol.mp4", "patrol.gpx", "truth.json"):
        shutil.copy(demo_batch / name, folder / name)
    shutil.copy(demo_batch / "patrol.gpx", folder / "early.gpx")
    cap = cv2.VideoCapture(str(demo_batch / "patrol.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = cv2.VideoWriter(str(folder / "early.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1280, 720))
    for _ in range(int(16 * fps)):
        ok, image = cap.read()
        assert ok
        writer.write(image)
    writer.release()
    cap.release()
    manifest = yaml.safe_load((demo_batch / "manifest.yaml").read_text(encoding="utf-8"))
    manifest["batch"] = "demo-two"
    manifest["files"].append({**manifest["files"][0], "video": "early.mp4", "track": "early.gpx"})
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    return folder


class Recorder:
    """A :class:`vision.ingest.Progress` that keeps what it heard; ``on_advance`` may act on it."""

    def __init__(self, on_advance=None):
        self.events: list[tuple] = []
        self.on_advance = on_advance

    def batch_started(self, batch_id, files):
        self.events.append(("batch", batch_id, files))

    def file_started(self, name, seconds):
        self.events.append(("started", name, round(seconds, 2)))

    def file_advanced(self, t):
        self.events.append(("advanced", t))
        if self.on_advance:
            self.on_advance(t)

    def file_finished(self, outcome):
        self.events.append(("finished", outcome.path, outcome.status, outcome.observations))

    def skeleton(self) -> list[tuple]:
        return [e for e in self.events if e[0] != "advanced"]

    def advances(self) -> dict[str, list[float]]:
        out, current = {}, None
        for e in self.events:
            if e[0] == "started":
                current = e[1]
                out[current] = []
            elif e[0] == "advanced":
                out[current].append(e[1])
        return out


def run_ingest(batch: Path, work: Path, progress=None, **options):
    work.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{work / 'x.db'}")
    report = ingest(batch, store, IngestOptions(out=work / "out", **options), progress)
    return store, report


@pytest.fixture(scope="module")
def reference(two_files, tmp_path_factory):
    """The local engine on the two-file batch, 8 s segments."""
    rec = Recorder()
    store, report = run_ingest(two_files, tmp_path_factory.mktemp("local"), rec, **SEG)
    assert [f.status for f in report.files] == ["done", "done"], report.files
    return store, report, rec


@pytest.fixture(scope="module")
def cluster():
    """A Ray head on this machine (127.0.0.1, 2 CPUs, no dashboard); its address for other drivers."""
    if not HAVE_RAY:
        pytest.skip(NO_RAY)
    import logging

    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def rows(store, batch_id: str) -> list[dict]:
    return [o.model_dump(exclude={"frame_uri", "crop_uri"}) for o in store.observations(batch_id)]


def assert_same(store, report, ref_store, ref_report) -> None:
    """Identical to the reference run: observations, views, file stats (but timing), evidence bytes."""
    got, want = rows(store, report.batch_id), rows(ref_store, ref_report.batch_id)
    assert len({o["id"] for o in got}) == len(got), "duplicate observations"
    assert [o["id"] for o in got] == [o["id"] for o in want], "observations lost or added"
    assert got == want
    assert store.views(report.batch_id) == ref_store.views(ref_report.batch_id)

    def stats(st, batch_id):
        return {f.path: ({k: v for k, v in f.stats.items() if k != "seconds"}, f.status, f.observations)
                for f in st.batch_files(batch_id)}

    assert stats(store, report.batch_id) == stats(ref_store, ref_report.batch_id)
    for a, b in zip(store.observations(report.batch_id), ref_store.observations(ref_report.batch_id), strict=True):
        assert a.frame_uri != b.frame_uri
        assert Path(a.frame_uri).read_bytes() == Path(b.frame_uri).read_bytes()
        assert Path(a.crop_uri).read_bytes() == Path(b.crop_uri).read_bytes()


# -- segments (no Ray needed) ------------------------------------------------------------------


def test_plan_segments():
    from vision.segments import Segment, plan_segments

    assert plan_segments(600, 30.0, None, 5.0) == [Segment(0, 0, None, None)]
    assert plan_segments(600, 30.0, 20.0, 5.0) == [Segment(0, 0, None, None)]  # not longer than one segment
    assert plan_segments(0, 30.0, 8.0, 5.0) == [Segment(0, 0, None, None)]  # frame count unknown
    segs = plan_segments(600, 30.0, 8.0, 2.0)
    assert segs == [Segment(0, 0, 200, 260), Segment(1, 200, 400, 460), Segment(2, 400, None, None)]
    owned = [i for s in segs for i in range(s.start, s.own_stop or 600)]
    assert owned == list(range(600))  # every frame owned once


def _tracklet(cls: int, sightings: list[tuple[float, float, float]], conf: float = 0.45):
    """A track of one class seen at (t, east m, north m) around a point in 重庆."""
    from vision.geolocate import GeoFix
    from vision.observe import Sighting, Tracklet

    tl = Tracklet(class_id=cls)
    for t, e, n in sightings:
        lat, lon = geo.destination(29.58, 106.52, 90.0, e) if e else (29.58, 106.52)
        lat, lon = geo.destination(lat, lon, 0.0, n) if n else (lat, lon)
        fix = GeoFix(lat=lat, lon=lon, error_m=2.0, range_m=10.0, method="ground-plane")
        tl.sightings.append(Sighting(t=t, conf=conf, box=np.array([100, 100, 140, 130], float), fix=fix))
        tl.votes[cls] = tl.votes.get(cls, 0.0) + conf
    tl.best_score, tl.best_jpeg, tl.best_box, tl.best_t = conf, b"jpeg", np.array([100, 100, 140, 130], float), sightings[0][0]
    return tl


def test_stitch_joins_a_track_across_the_cut():
    """A pothole seen once before the cut and once after: each half alone is one
    low-confidence frame (dropped), joined it is a two-frame track (kept), and
    its tail sighting is not counted twice. Another object far away is not joined."""
    from vision.segments import (
        FilePlan,
        Hint,
        SegmentResult,
        TrackPart,
        plan_segments,
        stitch,
    )

    plan = FilePlan("v.mp4", "0" * 64, segments=plan_segments(600, 30.0, 10.0, 2.0), duration_s=20.0, fps=30.0, frames=600)
    assert [s.own_stop for s in plan.segments] == [300, None]  # the cut at 10 s
    a = TrackPart(_tracklet(0, [(9.8, 0.0, 0.0)]), hints=[Hint(10.1, 0, *geo.destination(29.58, 106.52, 90.0, 0.4), 2.0)])
    far = TrackPart(_tracklet(0, [(9.5, 40.0, 0.0), (9.7, 40.0, 0.0)]))
    b = TrackPart(_tracklet(0, [(10.2, 0.5, 0.0)]))
    segs = [SegmentResult("v.mp4", 0, parts=[a, far]), SegmentResult("v.mp4", 1, parts=[b])]
    found = stitch(plan, segs)
    assert sorted((f.frames, round(f.first_t, 1), round(f.last_t, 1)) for f in found) == [(2, 9.5, 9.7), (2, 9.8, 10.2)]
    a.hints.clear()  # without the hint the two halves are two lone low-confidence boxes... that merge() still joins
    assert sorted(f.frames for f in stitch(plan, segs)) == [2, 2]
    b.tracklet.sightings[0].fix = b.tracklet.sightings[0].fix.model_copy(update={"lat": 29.58 + 5e-5})  # 5.5 m off
    assert sorted(f.frames for f in stitch(plan, segs)) == [2]  # neither linked nor merged: both halves dropped
    a.hints.append(Hint(10.2, 0, 29.58 + 4.6e-5, 106.52, 2.0))  # the tracker followed it past the cut
    assert sorted(f.frames for f in stitch(plan, segs)) == [2, 2]


def test_seek_lands_on_the_frame(demo_batch):
    """A segment's sampler seeks: its first frame is the very frame a sequential read gives."""
    from vision.sampling import SamplingConfig, SamplingStats, sample

    video = demo_batch / "patrol.mp4"
    cfg = SamplingConfig(every_m=None, every_s=0.01, duplicate_max=0.0)
    stats = SamplingStats()
    frames = list(sample(video, None, cfg, stats, start_index=333, stop_index=336, seek=True))
    assert [f.index for f in frames] == [333, 334, 335] and stats.read == 3 and stats.declared_frames == 3
    cap = cv2.VideoCapture(str(video))
    for _ in range(333):
        cap.grab()
    ok, image = cap.read()
    cap.release()
    assert ok and np.array_equal(frames[0].image, image)


# -- the Ray engine ----------------------------------------------------------------------------


@pytest.mark.ray
@needs_ray
@pytest.mark.parametrize("dispatch", ["segments", "frames"])
@pytest.mark.usefixtures("cluster")
def test_ray_engine_gives_the_local_observations(two_files, reference, tmp_path, dispatch):
    ref_store, ref_report, ref_rec = reference
    rec = Recorder()
    store, report = run_ingest(two_files, tmp_path, rec, engine="ray", dispatch=dispatch, **SEG)
    assert_same(store, report, ref_store, ref_report)
    assert [f.__dict__ | {"stats": None} for f in report.files] == [f.__dict__ | {"stats": None} for f in ref_report.files]
    assert report.files[0].stats["segments"] == 3 and report.files[1].stats["segments"] == 2
    # the same progress: files started and finished in manifest order; seconds of footage rising to the end
    assert rec.skeleton() == ref_rec.skeleton()
    advances = rec.advances()
    for name, ts in advances.items():
        assert ts == sorted(ts) and ts[-1] == {"patrol.mp4": 20.0, "early.mp4": 16.0}[name], (name, ts)
    assert len(advances["patrol.mp4"]) >= 3, advances  # heard while its segments ran, not only at the end
    # (early.mp4 ran alongside; it is reported when its turn comes, often done by then)
    # run again: everything is done already
    again = ingest(two_files, store, IngestOptions(out=tmp_path / "out", engine="ray", dispatch=dispatch, **SEG))
    assert [f.status for f in again.files] == ["skipped", "skipped"]
    assert rows(store, report.batch_id) == rows(ref_store, ref_report.batch_id)


def test_segments_find_what_the_whole_file_finds(demo_batch, reference, tmp_path):
    """Cut into 3 segments, the demo drive gives the same physical issues as in one piece."""
    whole_store, whole = run_ingest(demo_batch, tmp_path, segment_s=0)
    ref_store, ref_report, _ = reference
    whole_obs = whole_store.observations(whole.batch_id)
    seg_obs = ref_store.observations(ref_report.batch_id, file="patrol.mp4")
    assert whole_obs and seg_obs
    for mine, other in ((whole_obs, seg_obs), (seg_obs, whole_obs)):
        for o in mine:
            if o.frames < 2:
                continue
            near = [x for x in other if x.class_name == o.class_name
                    and geo.haversine_m(o.lat, o.lon, x.lat, x.lon) <= max(3.0, o.error_m)]
            assert near, f"{o.class_name} at {o.first_t:.1f} s ({o.frames} frames) has no counterpart"
    truth = json.loads((demo_batch / "truth.json").read_text(encoding="utf-8"))["objects"]
    for t in truth:
        near = [o for o in seg_obs if o.class_name == t["class"] and geo.haversine_m(o.lat, o.lon, t["lat"], t["lon"]) <= max(o.error_m, 3.0)]
        assert len(near) <= 1, f"{t['class']} reported {len(near)} times across the cuts"


@pytest.mark.ray
@needs_ray
@pytest.mark.usefixtures("cluster")
def test_bad_files_fail_as_they_do_locally(demo_batch, tmp_path):
    """Corrupt, truncated, badly-tracked videos and a still without EXIF: each
    file fails with the local engine's message, and the batch goes on."""
    from test_vision_ingest import bad_batch

    folder = bad_batch(demo_batch, tmp_path / "bad")
    local_store, local = run_ingest(folder, tmp_path / "local", **SEG)
    ray_store, remote = run_ingest(folder, tmp_path / "ray", engine="ray", **SEG)
    assert [(f.path, f.status, f.error) for f in remote.files] == [(f.path, f.status, f.error) for f in local.files]
    assert {f.path: f.status for f in remote.files}["good.mp4"] == "done"
    assert sum(f.status == "failed" for f in remote.files) == 5
    assert [(f.path, f.status, f.error) for f in ray_store.batch_files(remote.batch_id)] == \
        [(f.path, f.status, f.error) for f in local_store.batch_files(local.batch_id)]


def _descendants(pid: int) -> list[int]:
    """This process's descendants (the Ray head it started, and the head's workers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.ray
@needs_ray
@pytest.mark.usefixtures("cluster")
def test_worker_killed_mid_segment_is_retried(two_files, reference, tmp_path):
    """SIGKILL the actor process while it is inside a segment: Ray restarts the actor
    (it loads the model again) and retries the segment; nothing lost, nothing twice."""
    killed: list[int] = []

    def kill(t):
        if killed or t < 1.0:
            return
        busy = [p for p in _descendants(os.getpid()) if _title(p).startswith("ray::IngestWorker.segment")]
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])

    store, report = run_ingest(two_files, tmp_path, Recorder(kill), engine="ray", dispatch="segments", **SEG)
    assert killed, "no worker was inside a segment to kill"
    assert [f.status for f in report.files] == ["done", "done"], report.files
    ref_store, ref_report, _ = reference
    assert_same(store, report, ref_store, ref_report)


@pytest.mark.ray
@pytest.mark.slow
@needs_ray
def test_driver_killed_mid_batch_then_rerun(cluster, two_files, reference, tmp_path):
    """``xunjian ingest --engine ray --address …`` SIGKILLed after the first file is
    written: that file stays, the second is not half-written; the re-run skips the
    first, does the second, and the batch equals the reference run."""
    env = {**os.environ, "XUNJIAN_HOME": str(tmp_path / "home"), "XUNJIAN_DB_URL": f"sqlite:///{tmp_path / 'k.db'}"}
    cmd = [sys.executable, "-m", "app.cli", "ingest", str(two_files), "--out", str(tmp_path / "out"), "--engine", "ray",
           "--address", cluster, "--workers", "1", "--segment-s", str(SEG["segment_s"]), "--overlap-s", str(SEG["overlap_s"])]
    log = tmp_path / "first-run.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    db = tmp_path / "k.db"
    deadline = time.monotonic() + 120
    done_at_kill = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(db) as conn:
                done_at_kill = conn.execute("select count(*) from batch_files").fetchone()[0]
        except sqlite3.Error:
            pass
        if done_at_kill:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed: " + log.read_text(errors="replace")[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as conn:
        files = conn.execute("select path, status from batch_files").fetchall()
        assert files == [("patrol.mp4", "done")], files
        n = conn.execute("select count(*) from observations").fetchone()[0]
        ref_store, ref_report, _ = reference
        assert n == len(ref_store.observations(ref_report.batch_id, file="patrol.mp4"))
    again = subprocess.run([*cmd, "--json"], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert [f["status"] for f in json.loads(again.stdout)["files"]] == ["skipped", "done"]
    assert_same(Store(env["XUNJIAN_DB_URL"]), ref_report, ref_store, ref_report)  # same batch id


@pytest.mark.ray
@needs_ray
def test_server_jobs_run_on_ray_with_the_local_progress(cluster, city, two_files, reference, tmp_path, monkeypatch):
    """``xunjian serve --engine ray --ray-address …``: a batch uploaded over HTTP is
    ingested on the cluster; its job's progress (SSE) has the local engine's shape
    (both files, in manifest order, footage time rising, files done one by one), and
    its observations are the local reference's."""
    from live_server import DISPATCHER, serve

    from app.api.deps import Services
    from app.api.ingest import engine_options

    monkeypatch.setenv("XUNJIAN_HOME", str(tmp_path / "home"))
    opts = engine_options("ray", cluster) | SEG
    assert opts["engine"] == "ray" and opts["address"] == cluster
    store = Store(f"sqlite:///{tmp_path / 'api.db'}", city)
    names = ("patrol.mp4", "patrol.gpx", "early.mp4", "early.gpx", "manifest.yaml")
    with serve(Services(store=store, ingest_engine=opts)) as live:
        handles = [("files", (n, (two_files / n).open("rb"))) for n in names]
        try:
            with live.client(DISPATCHER, timeout=120) as c:
                r = c.post("/api/batches", files=handles, data={"run_pipeline": "false"})
        finally:
            for _, (_, fh) in handles:
                fh.close()
        assert r.status_code == 202, r.text
        events = []
        with live.client(DISPATCHER, timeout=300) as c, c.stream("GET", f"/api/jobs/{r.json()['job']['id']}/events") as s:
            name = None
            for line in s.iter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:") and name:
                    events.append((name, json.loads(line[5:])))
                    if name == "done":
                        break
    final = events[-1][1]
    assert events[-1][0] == "done" and final["status"] == "done", final.get("error")
    assert final["result"]["engine"] == "ray" and final["result"]["errors"] == []
    progress = [d["progress"] for _, d in events if d.get("progress")]  # snapshots as the stream polled them; the last is done's
    assert [f["path"] for f in progress[0]["files"]] == ["patrol.mp4", "early.mp4"]
    done = [p["files_done"] for p in progress]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 2
    current = [(p["current"]["name"], p["current"]["t"]) for p in progress if p.get("current")]
    assert [n for n, _ in dict.fromkeys(current)][:1] == ["patrol.mp4"], current
    ts = [t for n, t in current if n == "patrol.mp4"]
    assert ts == sorted(ts) and len(set(ts)) >= 2, current  # heard while its segments ran
    assert [f["status"] for f in final["progress"]["files"]] == ["done", "done"]
    ref_store, ref_report, _ = reference
    report = SimpleNamespace(batch_id=final["result"]["batch"])
    assert report.batch_id == ref_report.batch_id == "demo-two"
    assert_same(store, report, ref_store, ref_report)
    store.close()
