#!/usr/bin/env python
"""Vision benchmarks: how fast a 1080p patrol video goes through ``xunjian
ingest`` on this machine, against a naive every-frame ``model.predict`` loop on
the same file with the same weights, in the same run; and whether peak memory
stays flat as the video gets longer.

    python benchmarks/bench_vision.py                     # 20 s 1080p clip, ~4 min on 2 cores
    python benchmarks/bench_vision.py --seconds 20 --naive-seconds 6 --out vision.json

What it does:

1. renders a 1920x1080, 30 fps forward-camera patrol clip (the demo street:
   30 km/h cruise with a 4 s stop at a light) with its 1 Hz GPX track, into a
   temporary batch folder (mp4v, since pip OpenCV has no H.264 encoder);
2. decode only: reads every frame with OpenCV (``grab`` + ``retrieve``), and
   ``grab`` alone (what the sampler does for frames it skips);
3. ``xunjian ingest`` on that batch (distance sampling every 2 m, ONNX Runtime
   detector, tracking, geolocation, evidence, store writes) in a fresh SQLite
   store: wall time, frames decoded/s, frames detected/s, real-time factor
   (seconds of footage per second of wall time);
4. the naive baseline: every frame through Ultralytics ``YOLO(weights.pt)
   .predict`` for the first ``--naive-seconds`` of the same file (the rate is
   per frame, so the real-time factor extrapolates), and the same loop on the
   ONNX detector, so the gain from sampling and from ONNX show separately;
5. peak memory: ingests a short and a long clip (``--mem-seconds``) in child
   processes and prints each one's peak RSS (``VmHWM``).

Figures are printed (and written to ``--out`` as JSON), never asserted: the
machine is shared and noisy, so read the ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(highlight=False)
WEIGHTS = ROOT / "vision" / "weights" / "demo-patrol" / "demo-patrol.pt"


def make_clip(folder: Path, seconds: float, width: int = 1920, height: int = 1080, fps: int = 30) -> Path:
    """A patrol batch with a ``seconds``-long clip at ``width``x``height``."""
    import yaml

    from vision.camera import Camera
    from vision.synth.footage import demo_world, make_demo_batch, render_vehicle_frames

    make_demo_batch(folder, video=False, seconds=seconds)  # track, manifest, truth
    cam = Camera(width, height, 90.0)
    writer = cv2.VideoWriter(str(folder / "patrol.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for _t, img, _b, _p in render_vehicle_frames(demo_world(0), seconds, fps, cam=cam):
        writer.write(img)
    writer.release()
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text(encoding="utf-8"))
    manifest["batch"] = f"bench-{int(seconds)}s-{height}p"
    manifest["files"][0]["camera"] = {"hfov_deg": 90.0, "width": width, "height": height}
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    return folder


def decode_rates(video: Path) -> dict:
    cap = cv2.VideoCapture(str(video))
    n, t0 = 0, time.perf_counter()
    while cap.grab():
        cap.retrieve()
        n += 1
    full = n / (time.perf_counter() - t0)
    cap.release()
    cap = cv2.VideoCapture(str(video))
    m, t0 = 0, time.perf_counter()
    while cap.grab():
        m += 1
    grab = m / (time.perf_counter() - t0)
    cap.release()
    return {"frames": n, "decode_fps": round(full, 1), "grab_fps": round(grab, 1)}


def run_ingest(folder: Path, workdir: Path, weights: Path) -> dict:
    os.environ["XUNJIAN_HOME"] = str(workdir / "home")
    from city.store import Store
    from vision.ingest import IngestOptions, ingest

    store = Store(f"sqlite:///{workdir / 'bench.db'}")
    t0 = time.perf_counter()
    report = ingest(folder, store, IngestOptions(weights=weights, force=True))
    wall = time.perf_counter() - t0
    f = report.files[0]
    if f.status != "done":
        raise SystemExit(f"ingest failed: {f.error}")
    s = f.stats
    return {"wall_s": round(wall, 2), "duration_s": s["duration_s"], "frames_read": s["frames_read"],
            "frames_detected": s["frames_kept"], "observations": f.observations,
            "decoded_fps": round(s["frames_read"] / wall, 1), "detected_fps": round(s["frames_kept"] / wall, 2),
            "rtf": round(s["duration_s"] / wall, 2)}


def naive_loop(video: Path, seconds: float, predict) -> dict:
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    limit = int(seconds * fps)
    n, t0 = 0, time.perf_counter()
    while n < limit and cap.grab():
        ok, img = cap.retrieve()
        predict(img)
        n += 1
    wall = time.perf_counter() - t0
    cap.release()
    per_frame = wall / n
    return {"frames": n, "wall_s": round(wall, 2), "fps": round(n / wall, 2), "rtf": round(1.0 / (per_frame * fps), 3)}


def child_peak_rss(folder: Path, workdir: Path, weights: Path) -> dict:
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across execve, so a
    # child of this (large, rendering) process would report the parent's peak.
    code = (
        "import json,sys; sys.path.insert(0, %r); from benchmarks.bench_vision import run_ingest; from pathlib import Path;"
        "r = run_ingest(Path(%r), Path(%r), Path(%r));"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1];"
        "r['peak_rss_mb'] = int(hwm) / 1024; print(json.dumps(r))" % (str(ROOT), str(folder), str(workdir), str(weights))
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the 1080p clip")
    ap.add_argument("--naive-seconds", type=float, default=6.0, help="seconds of the clip the every-frame loops run on")
    ap.add_argument("--mem-seconds", default="10,40", help="short,long clip lengths for the memory check (0 to skip)")
    ap.add_argument("--weights", type=Path, default=WEIGHTS)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "opencv": cv2.__version__}}

    with tempfile.TemporaryDirectory(prefix="xj-bench-") as tmp:
        tmp = Path(tmp)
        console.print(f"rendering a {args.seconds:.0f} s 1920x1080 clip…")
        t0 = time.perf_counter()
        batch = make_clip(tmp / "batch", args.seconds)
        video = batch / "patrol.mp4"
        console.print(f"  {time.perf_counter() - t0:.0f} s, {video.stat().st_size / 2**20:.0f} MiB")

        results["decode"] = decode_rates(video)
        console.print(f"decode: {results['decode']}")
        results["ingest"] = run_ingest(batch, tmp / "w1", args.weights)
        console.print(f"ingest: {results['ingest']}")

        from vision.detect import load_detector

        onnx = load_detector(args.weights, backend="onnx", conf=0.35, threads=args.threads)
        results["naive_onnx"] = naive_loop(video, args.naive_seconds, onnx)
        console.print(f"naive every-frame ONNX: {results['naive_onnx']}")
        try:
            from ultralytics import YOLO
        except ImportError:
            console.print("[yellow]ultralytics not installed (pip install 'xunjian[train]'): naive .pt loop skipped[/]")
        else:
            model = YOLO(str(args.weights), task="detect")
            imgsz = onnx.imgsz
            results["naive_pt"] = naive_loop(video, args.naive_seconds,
                                             lambda im: model.predict(im, imgsz=imgsz, conf=0.35, verbose=False, device="cpu"))
            console.print(f"naive every-frame model.predict: {results['naive_pt']}")

        mem = [float(x) for x in args.mem_seconds.split(",") if float(x) > 0]
        results["memory"] = []
        for secs in mem:
            folder = make_clip(tmp / f"mem{int(secs)}", secs)
            r = child_peak_rss(folder, tmp / f"wm{int(secs)}", args.weights)
            results["memory"].append({"seconds": secs, "peak_rss_mb": round(r["peak_rss_mb"], 1), "frames_read": r["frames_read"]})
            console.print(f"memory {secs:.0f} s clip: {results['memory'][-1]}")

    ing = results["ingest"]
    t = Table(title=f"1080p patrol video, {ing['duration_s']:.0f} s at 30 fps, {os.cpu_count()} cores")
    for c in ("pipeline", "frames decoded/s", "frames detected/s", "real-time factor", "vs naive .pt"):
        t.add_column(c)
    base = results.get("naive_pt", results["naive_onnx"])["rtf"]
    t.add_row("decode only (grab+retrieve)", str(results["decode"]["decode_fps"]), "—", f"{results['decode']['decode_fps'] / 30:.2f}", "")
    t.add_row("xunjian ingest (2 m sampling, ONNX)", str(ing["decoded_fps"]), str(ing["detected_fps"]), f"{ing['rtf']:.2f}", f"{ing['rtf'] / base:.1f}×")
    t.add_row("naive every frame, ONNX", str(results["naive_onnx"]["fps"]), str(results["naive_onnx"]["fps"]), f"{results['naive_onnx']['rtf']:.3f}",
              f"{results['naive_onnx']['rtf'] / base:.1f}×")
    if "naive_pt" in results:
        p = results["naive_pt"]
        t.add_row("naive every frame, model.predict (.pt)", str(p["fps"]), str(p["fps"]), f"{p['rtf']:.3f}", "1.0×")
    console.print(t)
    if results["memory"]:
        m = Table(title="peak memory (child process RSS)")
        m.add_column("clip")
        m.add_column("frames")
        m.add_column("peak RSS MiB")
        for r in results["memory"]:
            m.add_row(f"{r['seconds']:.0f} s", str(r["frames_read"]), str(r["peak_rss_mb"]))
        console.print(m)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
