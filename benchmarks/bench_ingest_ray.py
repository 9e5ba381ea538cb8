#!/usr/bin/env python
"""Ray engine vs local engine: the same footage through ``xunjian ingest`` with
``engine="local"`` and ``engine="ray"`` in the same run, on this machine.

    python benchmarks/bench_ingest_ray.py                      # ~3.5 min on 2 cores
    python benchmarks/bench_ingest_ray.py --repeat 2 --out ray.json   # ~6 min

What it does:

1. renders ``--clips`` demo patrol clips (1280x720, 30 fps, the demo street
   with different textures per seed, a GPX each) into one batch folder
   (**files**), and one ``--long-seconds`` clip into another (**long**);
2. **files**: the local engine, then the Ray engine with ``segments``
   dispatch (actors run whole segments) and with ``frames`` dispatch (tasks
   decode and track, detector actors only detect); the clips are shorter than
   the Ray default segment (120 s), so each file is one piece;
3. **long**: the local engine on the whole file and cut into ``--segment-s``
   segments, and the Ray engine (both dispatches) with the same segments, so
   one video runs on all CPUs;
4. **startup**: ``ray.init`` of a local head (``--cpus`` CPUs, no dashboard),
   the detector actors' start (process, imports, model load), and one run that
   starts and stops its own Ray instance, as ``xunjian ingest --engine ray``
   does (the other Ray runs use the head started in 4, as on a cluster);
5. checks that each Ray run gave exactly the local run's observations (same
   segments), and prints wall time, real-time factor (seconds of footage per
   second of wall time) and the ratio Ray wall / local wall (< 1: Ray is
   faster; its overhead when > 1).

Every run uses a fresh SQLite store and output folder; with ``--repeat N``
each configuration runs N times and the best wall time counts. Figures are
printed (and written to ``--out`` as JSON), never asserted: the machine is
shared and noisy, so read the ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(highlight=False, width=150)


def make_batch(folder: Path, clips: int, seconds: float) -> Path:
    import yaml

    from vision.synth.footage import make_demo_batch

    folder.mkdir(parents=True)
    files = []
    for k in range(clips):
        one = make_demo_batch(folder.parent / f"render{k}", seed=k, seconds=seconds)
        shutil.move(one / "patrol.mp4", folder / f"clip{k}.mp4")
        shutil.move(one / "patrol.gpx", folder / f"clip{k}.gpx")
        spec = yaml.safe_load((one / "manifest.yaml").read_text(encoding="utf-8"))["files"][0]
        files.append({**spec, "video": f"clip{k}.mp4", "track": f"clip{k}.gpx"})
        shutil.rmtree(one)
    manifest = {"batch": "bench-ray", "source": "vehicle", "platform_id": "渝A-巡01", "files": files}
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    return folder


REPEAT = 1


def run(batch: Path, work: Path, **options) -> dict:
    """The best wall time of ``REPEAT`` runs, each into a fresh store and output folder."""
    from city.store import Store
    from vision.ingest import IngestOptions, ingest

    walls = []
    for k in range(REPEAT):
        w = work / f"run{k}"
        w.mkdir(parents=True)
        store = Store(f"sqlite:///{w / 'x.db'}")
        t0 = time.perf_counter()
        report = ingest(batch, store, IngestOptions(out=w / "out", **options))
        walls.append(time.perf_counter() - t0)
        if k < REPEAT - 1:
            store.close()
    wall = min(walls)
    bad = [f for f in report.files if f.status != "done"]
    if bad:
        raise SystemExit(f"ingest failed: {bad}")
    footage = sum(f.stats["duration_s"] for f in report.files)
    rows = [o.model_dump(exclude={"frame_uri", "crop_uri"}) for o in store.observations(report.batch_id)]
    store.close()
    return {"wall_s": round(wall, 2), "footage_s": round(footage, 1), "rtf": round(footage / wall, 2),
            "observations": len(rows), "_rows": rows}


def actor_startup(cpus: int) -> float:
    """Seconds until ``cpus`` detector actors are up (process, imports, model loaded)."""
    import ray

    from vision.engines.ray_engine import _Worker
    from vision.ingest import DEFAULT_WEIGHTS, BatchContext, IngestOptions
    from vision.manifest import Manifest
    from vision.modelcard import load_card

    card = load_card(DEFAULT_WEIGHTS)
    ctx = BatchContext(root=Path("."), manifest=Manifest(), batch_id="x", opts=IngestOptions(conf=card.conf),
                       out=Path("."), card=card, model="x")
    t0 = time.perf_counter()
    actors = [_Worker.options(num_cpus=1).remote(ctx, 1) for _ in range(cpus)]
    ray.get([a.ready.remote() for a in actors])
    seconds = time.perf_counter() - t0
    for a in actors:
        ray.kill(a)
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=4, help="clips in the 'files' batch")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each of those clips")
    ap.add_argument("--long-seconds", type=float, default=60.0, help="length of the one 'long' clip (0: skip)")
    ap.add_argument("--segment-s", type=float, default=20.0, help="segment length for the long clip")
    ap.add_argument("--overlap-s", type=float, default=5.0, help="segment overlap for the long clip")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray head")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each configuration; the best wall time counts")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    global REPEAT
    REPEAT = args.repeat
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # the head on 127.0.0.1
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "repeat": args.repeat,
                     "runs": {}}
    runs = results["runs"]

    def record(name: str, batch: Path, work: Path, **options) -> None:
        runs[name] = run(batch, work, **options)
        console.print(f"  {name}: {runs[name]['wall_s']} s")

    with tempfile.TemporaryDirectory(prefix="xj-bench-ray-") as tmp:
        tmp = Path(tmp)
        os.environ["XUNJIAN_HOME"] = str(tmp / "home")
        console.print(f"rendering {args.clips} × {args.seconds:.0f} s and 1 × {args.long_seconds:.0f} s 1280x720 clips…")
        t0 = time.perf_counter()
        files = make_batch(tmp / "files" / "batch", args.clips, args.seconds)
        long = make_batch(tmp / "long" / "batch", 1, args.long_seconds) if args.long_seconds else None
        console.print(f"  {time.perf_counter() - t0:.0f} s")

        import ray

        results["machine"]["ray"] = ray.__version__
        cut = {"segment_s": args.segment_s, "overlap_s": args.overlap_s}
        record("files: local", files, tmp / "l1")
        if long:
            record("long: local, whole file", long, tmp / "l2", segment_s=0)
            record("long: local, segments", long, tmp / "l3", **cut)

        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        results["ray_init_s"] = round(time.perf_counter() - t0, 2)
        results["actors_ready_s"] = round(actor_startup(args.cpus), 2)
        console.print(f"ray.init {results['ray_init_s']} s, {args.cpus} detector actors ready {results['actors_ready_s']} s")
        for dispatch in ("segments", "frames"):
            record(f"files: ray, {dispatch} dispatch", files, tmp / f"r1{dispatch}", engine="ray", dispatch=dispatch)
            if long:
                record(f"long: ray, {dispatch} dispatch", long, tmp / f"r2{dispatch}", engine="ray", dispatch=dispatch, **cut)
        t0 = time.perf_counter()
        ray.shutdown()
        results["ray_shutdown_s"] = round(time.perf_counter() - t0, 2)
        record("files: ray, own Ray instance", files, tmp / "r3", engine="ray")

    t = Table(title=f"files: {args.clips} × {args.seconds:.0f} s, long: 1 × {args.long_seconds:.0f} s in {args.segment_s:g} s "
                    f"segments ({args.overlap_s:g} s overlap); 720p patrol clips, {args.cpus} CPUs; "
                    f"ray.init {results['ray_init_s']} s and actors {results['actors_ready_s']} s only in 'own Ray instance'")
    for c in ("run", "wall s", "real-time factor", "observations", "vs local", "same as local"):
        t.add_column(c)
    bases = {"files: local": "files: local", "long: local, whole file": "long: local, whole file",
             "long: local, segments": "long: local, whole file"}
    for name, r in runs.items():
        base_name = bases.get(name, "long: local, segments" if name.startswith("long") else "files: local")
        base = runs[base_name]
        r["vs"], r["ratio"] = base_name, round(r["wall_s"] / base["wall_s"], 2)
        r["same_as_vs"] = r["_rows"] == base["_rows"]  # segments vs whole file: not expected (other frames sampled)
        shown = base_name != name and name != "long: local, segments"
        t.add_row(name, f"{r['wall_s']:.1f}", f"{r['rtf']:.2f}", str(r["observations"]),
                  "" if base_name == name else f"×{r['ratio']:.2f}", ("yes" if r["same_as_vs"] else "NO") if shown else "")
    console.print(t)
    console.print("vs local: wall / the local run of the same footage with the same segments "
                  "('long: local, segments' against the whole file); < 1 is faster.")
    for r in runs.values():
        r.pop("_rows")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
