"""Eval task ``footage``: rendered patrol clips → ``xunjian ingest`` → observations,
scored against each clip's ground-truth issue list (``truth.json``).

Clips are rendered once by :mod:`vision.synth.footage` into
``home()/eval-cache/footage/<key>/`` (a ``.complete`` marker says it is whole) and
ingested into a throwaway SQLite store. A true issue is a placed object that is an
issue (``is_issue``) and is visible in the clip. Matching, per clip: every (issue
observation, true issue) pair with the same catalogue code within ``match_m`` is a
candidate; pairs are taken nearest first, each observation going to at most one
true issue (a true issue may take several: the duplicates).

- ``recall``: true issues with at least one observation;
- ``precision``: issue observations matched to a true issue / all issue observations;
- ``class_accuracy``: of the true issues with any issue observation within ``match_m``,
  the share whose nearest one has the right detector class;
- ``duplicate_rate``: matched observations per found true issue (1.0 is perfect);
- ``loc_error_median_m`` / ``loc_error_p90_m``: the nearest matched observation's distance;
- ``rtf``: video seconds / ingest seconds (over all clips).

Items: one per true issue (ok: found, and the nearest observation has the right class)
and one per unmatched issue observation (a false positive: ok False).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from city.errors import InvalidInput
from evals.results import Metric, Plot, ReportTable, Result, RunOptions, TaskRun

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = "vision/weights/demo-patrol/demo-patrol.onnx"

METRICS: dict[str, Metric] = {
    "recall": Metric(label="问题召回率（真实问题被发现的比例）"),
    "precision": Metric(label="问题精确率（观测对应真实问题的比例）"),
    "class_accuracy": Metric(label="类别准确率（位置命中者中类别正确的比例）"),
    "duplicate_rate": Metric(label="重复率（每个被发现问题的观测数，1 为理想）", higher_is_better=False, unit="×"),
    "loc_error_median_m": Metric(label="定位误差中位数", higher_is_better=False, unit="m"),
    "loc_error_p90_m": Metric(label="定位误差 90 分位", higher_is_better=False, unit="m"),
    "rtf": Metric(label="实时倍率（视频时长 / 处理时长）", unit="×"),
}


# -- options -----------------------------------------------------------------------------------


class ClipSpec(BaseModel):
    """One clip to render: the demo street by vehicle (``vehicle``), its re-patrol (``day2``),
    or a nadir drone clip along a real DJI SRT track (``drone_srt``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["vehicle", "day2", "drone_srt"]
    seed: int = 0
    seconds: float = Field(default=20.0, gt=0, le=120, description="vehicle/day2 only")
    layout: Literal["demo", "shuffled"] = Field(default="demo", description="vehicle: the demo placements, or shuffled by seed")
    srt: str | None = Field(default=None, description="drone_srt: the SRT (shared:NAME/... or a path)")
    fps: int = Field(default=10, ge=1, le=60, description="drone_srt only")

    @model_validator(mode="after")
    def _srt_for_drone(self):
        if (self.kind == "drone_srt") != (self.srt is not None):
            raise ValueError("srt is required for kind drone_srt, and only for it")
        return self

    @property
    def key(self) -> str:
        digest = hashlib.sha1(self.model_dump_json().encode()).hexdigest()[:8]
        return f"{self.kind}-s{self.seed}-{digest}"

    @property
    def label(self) -> str:
        return f"{Path(self.srt).stem}-s{self.seed}" if self.srt else f"{self.kind}-s{self.seed}" + ("-shuf" if self.layout == "shuffled" else "")


class FootageOptions(BaseModel):
    """The ``options:`` of a ``footage`` suite."""

    model_config = ConfigDict(extra="forbid")

    clips: list[ClipSpec] = Field(default_factory=lambda: [ClipSpec(kind="vehicle", seed=0),
                                                           ClipSpec(kind="vehicle", seed=1, layout="shuffled")],
                                  min_length=1)
    match_m: float = Field(default=3.0, gt=0)
    weights: str = DEFAULT_WEIGHTS
    backend: Literal["auto", "onnx", "ultralytics"] = "auto"
    conf: float | None = Field(default=None, gt=0, lt=1, description="detection threshold (default: the card's)")


def parse_options(raw: dict) -> FootageOptions:
    """Validate a suite's options; one clear error on bad keys or values."""
    try:
        return FootageOptions.model_validate(raw or {})
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'options'}: {err['msg']}" for err in e.errors())
        raise InvalidInput(f"footage 评测选项无效: {msgs}") from None


# -- clips -------------------------------------------------------------------------------------


def shuffled_placements(seed: int) -> list[tuple[str, float, float]]:
    """The demo issues at permuted places along the road (each keeps its lateral offset), ±1 m jitter."""
    from vision.synth.footage import DEMO_PLACEMENTS

    rng = np.random.default_rng(seed)
    slots = rng.permutation([s for _, s, _ in DEMO_PLACEMENTS])
    return [(c, round(float(s + rng.uniform(-1, 1)), 2), t) for (c, _, t), s in zip(DEMO_PLACEMENTS, slots, strict=True)]


def resolve_path(ref: str) -> Path:
    """``shared:NAME/...`` against :func:`city.settings.datasets_dir`; a relative path against the repo."""
    from city import settings

    if ref.startswith("shared:"):
        return settings.datasets_dir() / ref.removeprefix("shared:")
    p = Path(ref).expanduser()
    return p if p.is_absolute() else REPO / p


def render_clip(spec: ClipSpec, cache: Path) -> Path:
    """The clip's batch folder, rendered on first use (``.complete`` marks a finished render)."""
    from vision.synth import footage as fx

    out = cache / spec.key
    if (out / ".complete").exists():
        return out
    if spec.kind == "vehicle":
        placements = shuffled_placements(spec.seed) if spec.layout == "shuffled" else None
        fx.make_demo_batch(out, spec.seed, seconds=spec.seconds, placements=placements, batch=f"eval-{spec.key}")
    elif spec.kind == "day2":
        fx.make_day2_batch(out, fx.START_UTC + timedelta(days=7), spec.seed, batch=f"eval-{spec.key}")
    else:
        fx.make_srt_clip(resolve_path(spec.srt or ""), out, seed=spec.seed, fps=spec.fps)
    (out / ".complete").write_text("ok\n", encoding="utf-8")
    return out


def true_issues(truth: dict) -> list[dict]:
    """The truth objects that are issues and visible in the clip (vehicle: ``frames_visible``; SRT: ``visible_s``)."""
    return [o for o in truth["objects"] if o.get("is_issue") and (o.get("frames_visible") or o.get("visible_s"))]


def video_seconds(truth: dict) -> float:
    return float(truth.get("duration_s") or truth["frames"] / truth["fps"])


# -- scoring -----------------------------------------------------------------------------------


def distance_m(a: dict, b: dict) -> float:
    from city import geo

    return float(geo.haversine_m(a["lat"], a["lon"], b["lat"], b["lon"]))


def assign(issues: list[dict], observations: list[dict], match_m: float) -> dict[int, list[tuple[int, float]]]:
    """Observation → true issue, nearest pairs first, same code within ``match_m``: issue index → [(obs index, m)]."""
    pairs = sorted((distance_m(t, o), ti, oi) for ti, t in enumerate(issues) for oi, o in enumerate(observations)
                   if o.get("code") == t.get("code") and distance_m(t, o) <= match_m)
    taken: set[int] = set()
    out: dict[int, list[tuple[int, float]]] = {i: [] for i in range(len(issues))}
    for d, ti, oi in pairs:
        if oi not in taken:
            taken.add(oi)
            out[ti].append((oi, d))
    return out


def score_clip(clip: str, issues: list[dict], observations: list[dict], match_m: float) -> list[Result]:
    """The Results of one clip: its true issues, then its unmatched issue observations.
    ``observations``: dicts with ``id``, ``class_name``, ``code``, ``lat``, ``lon`` (issue observations only)."""
    matched = assign(issues, observations, match_m)
    results = []
    for ti, t in enumerate(issues):
        mine = sorted(matched[ti], key=lambda x: x[1])
        near = sorted(((distance_m(t, o), o) for o in observations if distance_m(t, o) <= match_m), key=lambda x: x[0])
        nearest = near[0][1] if near else None
        class_ok = None if nearest is None else nearest["class_name"] == t["class"]
        found = bool(mine)
        d = round(mine[0][1], 3) if found else None
        ok = found and bool(class_ok)
        results.append(Result(
            item_id=f"{clip}:{ti:02d}:{t['class']}", text=f"{clip} {t['class']} @ {t['lat']:.6f},{t['lon']:.6f}",
            tags=["issue", clip], expected={"clip": clip, "class": t["class"], "code": t.get("code"), "lat": t["lat"], "lon": t["lon"]},
            output={"matched": len(mine), "distance_m": d, "nearest_class": nearest["class_name"] if nearest else None,
                    "observations": [observations[oi]["id"] for oi, _ in mine]},
            ok=ok, flags={"found": found, "class_ok": class_ok, "false_positive": False},
            badness=0.0 if ok else (1.0 if not found else 0.5) + (d or 0) / (10 * match_m),
            expected_summary=f"{t.get('label_zh') or t['class']}（{t.get('code')}）",
            output_summary=(f"发现 {len(mine)} 次，最近 {d:.1f} m，类别 {nearest['class_name'] if nearest else '—'}" if found
                            else ("未发现" if nearest is None else f"附近只有 {nearest['class_name']}（编码不符）")),
        ))
    used = {oi for v in matched.values() for oi, _ in v}
    for oi, o in enumerate(observations):
        if oi in used:
            continue
        results.append(Result(
            item_id=f"{clip}:fp:{o['id']}", text=f"{clip} 观测 {o['class_name']} @ {o['lat']:.6f},{o['lon']:.6f}",
            tags=["false_positive", clip], expected={"clip": clip},
            output={"class": o["class_name"], "code": o.get("code"), "lat": o["lat"], "lon": o["lon"], "confidence": o.get("confidence")},
            ok=False, flags={"found": None, "class_ok": None, "false_positive": True}, badness=1.0,
            expected_summary=f"{match_m:g} m 内无同编码的真实问题", output_summary=f"误报 {o['class_name']}（{o.get('code')}）",
        ))
    return results


def compute(results: list[Result], extra: dict) -> dict[str, float | None]:
    """The issue-level metrics from the items (see the module docstring); ``rtf`` from ``extra``."""
    issues = [r for r in results if "issue" in r.tags]
    fps = [r for r in results if r.flags.get("false_positive")]
    found = [r for r in issues if r.flags.get("found")]
    located = [r for r in issues if r.flags.get("class_ok") is not None]
    matched_obs = sum(r.output.get("matched", 0) for r in issues)
    errors = [r.output["distance_m"] for r in found if r.output.get("distance_m") is not None]
    video, proc = extra.get("video_s"), extra.get("processing_s")
    return {
        "recall": len(found) / len(issues) if issues else None,
        "precision": matched_obs / (matched_obs + len(fps)) if matched_obs + len(fps) else None,
        "class_accuracy": sum(bool(r.flags["class_ok"]) for r in located) / len(located) if located else None,
        "duplicate_rate": matched_obs / len(found) if found else None,
        "loc_error_median_m": float(np.median(errors)) if errors else None,
        "loc_error_p90_m": float(np.percentile(errors, 90)) if errors else None,
        "rtf": video / proc if video and proc else None,
    }


# -- running -----------------------------------------------------------------------------------


def _ingest_clip(batch: Path, o: FootageOptions, work: Path) -> tuple[list[dict], float, str, list[str]]:
    """Ingest one batch into a fresh SQLite store → (issue observations as dicts, seconds, model, notes)."""
    from city.store import Store
    from vision.ingest import IngestOptions, ingest

    store = Store(f"sqlite:///{work / 'x.db'}")
    try:
        t0 = time.perf_counter()
        report = ingest(batch, store, IngestOptions(weights=resolve_path(o.weights), backend=o.backend, conf=o.conf, out=work / "out"))
        seconds = time.perf_counter() - t0
        obs = [{"id": x.id, "class_name": x.class_name, "code": x.code, "lat": x.lat, "lon": x.lon, "confidence": x.confidence}
               for x in store.observations(report.batch_id) if x.code is not None]
    finally:
        store.close()
    failed = [f.error for f in report.failed]
    return obs, seconds, report.model, [*report.notes, *(e for e in failed if e)]


def _clip_row(label: str, rs: list[Result], video_s: float, seconds: float, n_obs: int) -> dict:
    m = compute(rs, {"video_s": video_s, "processing_s": seconds})
    issues = [r for r in rs if "issue" in r.tags]
    return {"clip": label, "video_s": round(video_s, 2), "processing_s": round(seconds, 2), "issues": len(issues),
            "found": sum(bool(r.flags.get("found")) for r in issues), "observations": n_obs,
            "false_positives": sum(bool(r.flags.get("false_positive")) for r in rs),
            **{k: (round(v, 4) if v is not None else None) for k, v in m.items()}}


def run(suite, opts: RunOptions) -> TaskRun:
    """Render (once), ingest and score every clip."""
    from city import settings

    o = parse_options(opts.options or getattr(suite, "options", None) or {})
    cache = settings.home() / "eval-cache" / "footage"
    clips = o.clips[: opts.limit] if opts.limit else o.clips
    results: list[Result] = []
    rows, notes, model = [], [], None
    for k, spec in enumerate(clips):
        if spec.srt and not resolve_path(spec.srt).is_file():
            notes.append(f"跳过片段 {spec.label}：找不到 SRT {resolve_path(spec.srt)}（共享数据集不在本机）")
            continue
        batch = render_clip(spec, cache)
        truth = json.loads((batch / "truth.json").read_text(encoding="utf-8"))
        with tempfile.TemporaryDirectory(prefix="xj-eval-footage-") as tmp:
            obs, seconds, model, clip_notes = _ingest_clip(batch, o, Path(tmp))
        notes += [n if "演示级" in n else f"{spec.label}：{n}" for n in clip_notes if n not in notes]
        rs = score_clip(spec.label, true_issues(truth), obs, o.match_m)
        for r in rs:
            r.latency_ms = round(seconds * 1000 / max(len(rs), 1), 1)
        results += rs
        rows.append(_clip_row(spec.label, rs, video_seconds(truth), seconds, len(obs)))
        if opts.progress:
            opts.progress(k + 1, len(clips), spec.label)
    video = sum(r["video_s"] for r in rows)
    proc = sum(r["processing_s"] for r in rows)
    notes.append(f"匹配半径 {o.match_m:g} m；视频共 {video:.1f} s，处理 {proc:.1f} s")
    extra = {"clips": rows, "video_s": video, "processing_s": proc, "match_m": o.match_m}
    return TaskRun(results=results, extra=extra, model=model, notes=notes)


# -- report ------------------------------------------------------------------------------------


def _fmt(v, digits: int = 3) -> str:
    return "—" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def tables(results: list[Result], extra: dict) -> list[ReportTable]:
    """Per-clip figures."""
    headers = ["片段", "视频 s", "处理 s", "实时倍率", "真实问题", "发现", "观测", "误报", "召回率", "精确率", "重复率", "误差中位 m"]
    keys = ["clip", "video_s", "processing_s", "rtf", "issues", "found", "observations", "false_positives", "recall",
            "precision", "duplicate_rate", "loc_error_median_m"]
    rows = [[_fmt(c.get(k), 2) for k in keys] for c in extra.get("clips", [])]
    return [ReportTable("各片段指标", headers, rows)] if rows else []


def plots(results: list[Result], extra: dict) -> list[Plot]:
    """Histogram of the localisation error of the found issues (ASCII labels: no CJK font)."""
    errors = [r.output["distance_m"] for r in results if r.flags.get("found") and r.output.get("distance_m") is not None]
    if not errors:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(errors, bins=np.linspace(0, extra.get("match_m", 3.0), 16), color="#4472c4")
    ax.axvline(float(np.median(errors)), color="k", ls="--", label=f"median {np.median(errors):.2f} m")
    ax.set(xlabel="localisation error (m)", ylabel="issues", title=f"Localisation error, {len(errors)} found issues")
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return [Plot("定位误差分布", base64.b64encode(buf.getvalue()).decode("ascii"))]
