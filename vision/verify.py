"""``xunjian verify --batch ID``: 核查 by re-inspection.

For every case near a batch's footage (handled, waiting for 核查, or still
open), taken after the reference time (the 处置完成 report; the case's
creation for open cases):

1. issue observations of the same or a related class within the error radii
   → the issue is still there: 核查不通过 (handled cases, with the new
   evidence, back to the department) or 仍存在 (open cases: the observation
   joins the case as evidence and never opens a duplicate);
2. otherwise, the place in view (:mod:`vision.coverage`) → 核查通过 with the
   "before" evidence of the case and an "after" frame from the new footage (or
   未再发现 for an open case, noted for the dispatcher);
3. otherwise 未覆盖: no decision.

A decision whose confidence is under the rules' thresholds goes to a human
(待人工核查: the case waits in 核查). Each decision is recorded once per (case,
batch) in the same transaction as its lifecycle actions: running it again
changes nothing. Rules: ``city/data/verification.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from city import geo, settings
from city.cases import Case, Evidence
from city.catalogue import Kind
from city.errors import NotFound
from city.lifecycle import Action, Status
from city.observations import Observation, View
from city.verification import Outcome, Verification, VerificationRules, load_rules
from vision.coverage import Coverage, ViewGeometry, coverage

HANDLED = frozenset({Status.HANDLED, Status.VERIFYING})
STILL_OPEN = frozenset({Status.REPORTED, Status.FILED, Status.DISPATCHED, Status.IN_PROGRESS, Status.SHELVED})


@dataclass
class _Batch:
    id: str
    root: Path
    created_at: datetime
    views: list[tuple[str, View]]
    lat: np.ndarray
    lon: np.ndarray
    utc: np.ndarray  # POSIX seconds of each view (ingest time where the footage has no clock)
    geometry: dict[str, ViewGeometry]
    observations: list[Observation]


def _load(store, batch_id: str) -> _Batch:
    batch = store.batch(batch_id)
    geometry = {f.path: ViewGeometry.model_validate(f.stats["view"]) for f in store.batch_files(batch_id)
                if f.status == "done" and "view" in f.stats}
    views = [(f, v) for f, v in store.views(batch_id) if f in geometry]
    fallback = batch.created_at.timestamp()
    return _Batch(
        id=batch_id, root=Path(batch.root), created_at=batch.created_at, views=views,
        lat=np.array([v.lat for _, v in views]), lon=np.array([v.lon for _, v in views]),
        utc=np.array([v.utc.timestamp() if v.utc else fallback for _, v in views]),
        geometry=geometry, observations=store.observations(batch_id, issues_only=True),
    )


def _candidates(store, b: _Batch, rules: VerificationRules) -> list[Case]:
    """Cases that the batch's views may have seen: within the longest view range
    plus the largest case error of some view (thinned to one per ~20 m)."""
    if not b.views:
        return []
    reach = max(rules.max_range_m.values()) + rules.max_case_error_m
    cells: set[int] = set()
    last = None
    for la, lo in zip(b.lat, b.lon):
        if last is not None and geo.haversine_m(last[0], last[1], la, lo) < 20:
            continue
        last = (la, lo)
        cells.update(geo.cells_within(float(la), float(lo), reach + 20))
    return store.cases_in_cells(sorted(cells), HANDLED | STILL_OPEN)


def _reference_time(case: Case) -> datetime:
    """Footage must be newer than this to say anything about the case."""
    if case.status in HANDLED:
        done = [h.at for h in case.history if h.action == Action.COMPLETE.value]
        if done:
            return done[-1]
    return case.created_at


def _origin(store, case: Case) -> Observation | None:
    """The observation that opened the case, for cases opened from footage."""
    if case.external_id and case.external_id.startswith("obs:"):
        try:
            return store.observation(case.external_id.removeprefix("obs:"))
        except NotFound:
            return None
    return None


def _related_codes(store, case: Case) -> set[str]:
    entry = store.city.catalogue.get(case.code, Kind(case.kind))
    return {e.code for e in store.city.catalogue.related(entry)}


def _matches(store, b: _Batch, cases: list[Case], errors: dict[str, float], refs: dict[str, datetime],
             rules: VerificationRules) -> dict[str, list[tuple[Observation, float]]]:
    """Each unclaimed issue observation → the nearest case it is a sighting of."""
    related = {c.number: _related_codes(store, c) for c in cases}
    out: dict[str, list[tuple[Observation, float]]] = {}
    for o in b.observations:
        if o.case_number and o.case_number not in related:
            continue  # it opened or joined another case already
        seen_at = (o.seen_at or b.created_at).timestamp()
        best = None
        for c in cases:
            if o.code not in related[c.number] or seen_at < refs[c.number].timestamp() or c.lat is None:
                continue
            if o.case_number and o.case_number != c.number:
                continue
            d = float(geo.haversine_m(o.lat, o.lon, c.lat, c.lon))
            if d <= max(rules.match_floor_m, errors[c.number] + o.error_m) and (best is None or d < best[1]):
                best = (c, d)
        if best:
            out.setdefault(best[0].number, []).append((o, best[1]))
    return out


def _seen_confidence(obs: list[tuple[Observation, float]]) -> float:
    """How sure a re-sighting is: its best confidence, discounted when seen in one frame only."""
    o = max((o for o, _ in obs), key=lambda o: o.confidence)
    return o.confidence if o.frames >= 2 else 0.8 * o.confidence


def _obs_evidence(obs: list[tuple[Observation, float]]) -> list[Evidence]:
    out = []
    for o, d in obs:
        when = o.seen_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if o.seen_at else "时间未知"
        for uri, what in ((o.frame_uri, "复查证据帧"), (o.crop_uri, "复查特写")):
            if uri:
                out.append(Evidence(kind="image", uri=uri, captured_at=o.seen_at,
                                    note=f"{what}：{o.label_zh or o.class_name}，置信度 {o.confidence:.2f}，相距 {d:.1f} 米，{when} UTC（观测 {o.id}）"))
    return out


def _after_evidence(b: _Batch, cov: Coverage, case: Case, out_dir: Path) -> list[Evidence]:
    """The new footage's best look at the place, with the place marked and faces blurred."""
    from vision.evidence import grab_frame, write_evidence

    file, view, s = cov.best
    geom = b.geometry[file]
    half = max(0.5 * s.px_per_m, 12)
    box = (s.u - half, s.v - half, s.u + half, s.v + half)
    note = f"复查画面（{file} 第 {view.t:.1f} 秒，距离 {s.range_m:.0f} 米）：原问题位置已标出，未再检出"
    image = grab_frame(b.root / file, view.t)
    if image is None:
        return [Evidence(kind="text", uri=f"footage:{b.id}/{file}#t={view.t:.1f}", note=note + "（原视频不可读，仅记录位置）",
                         captured_at=view.utc)]
    w, h = geom.camera.width, geom.camera.height
    box = (max(box[0], 0), max(box[1], 0), min(box[2], w - 1), min(box[3], h - 1))
    frame, crop, _ = write_evidence(image, box, f"case {case.number} site", out_dir, case.number)
    return [Evidence(kind="image", uri=str(frame), note=note, captured_at=view.utc),
            Evidence(kind="image", uri=str(crop), note="复查特写：原问题位置", captured_at=view.utc)]


def _before_note(case: Case) -> str:
    before = [e.uri for e in case.evidence if e.kind == "image"][:2]
    return f"处置前证据：{'、'.join(Path(u).name for u in before)}" if before else "处置前无图片证据"


def decide(b: _Batch, case: Case, obs: list[tuple[Observation, float]], error_m: float, ref: datetime,
           rules: VerificationRules, out_dir: Path, origin: Observation | None = None) -> tuple[Verification, list[tuple[Action, str]]]:
    """The decision for one case and the lifecycle actions it takes. A re-sighting
    fails the verification when it is at least ``fail_min_confidence`` or at least
    as sure as the sighting that opened the case (``origin``): the case was
    dispatched on that much evidence."""
    status = case.status
    base = {"case_number": case.number, "batch_id": b.id, "actor": rules.actor, "status_before": status.value}
    verify_first = [(Action.REQUEST_VERIFY, f"复查批次 {b.id} 覆盖该位置")] if status is Status.HANDLED else []
    if obs:
        conf = _seen_confidence(obs)
        ids = [o.id for o, _ in obs]
        nearest = min(d for _, d in obs)
        ev = _obs_evidence(obs)
        if status in STILL_OPEN:
            note = f"复查批次 {b.id} 再次发现该问题（相距 {nearest:.1f} 米），作为证据并入本案"
            return Verification(**base, outcome=Outcome.STILL_THERE, confidence=conf, frames=sum(o.frames for o, _ in obs),
                                coverage=1.0, observations=ids, evidence=ev, note=note), []
        fail_at = min(rules.fail_min_confidence, _seen_confidence([(origin, 0.0)])) if origin else rules.fail_min_confidence
        if conf >= fail_at - 1e-9:
            note = f"复查批次 {b.id} 在原位置（相距 {nearest:.1f} 米）再次发现该问题，置信度 {conf:.2f}：核查不通过，退回责任单位返工"
            return (Verification(**base, outcome=Outcome.FAILED, confidence=conf, frames=sum(o.frames for o, _ in obs),
                                 coverage=1.0, observations=ids, evidence=ev, note=note),
                    [*verify_first, (Action.FAIL, note)])
        note = f"复查批次 {b.id} 在原位置疑似再次发现该问题（置信度 {conf:.2f} 低于 {fail_at:.2f}），请人工核查"
        return (Verification(**base, outcome=Outcome.HUMAN, confidence=conf, frames=sum(o.frames for o, _ in obs),
                             coverage=1.0, observations=ids, evidence=ev, note=note), verify_first)

    reach = max(rules.max_range_m.values()) + min(error_m, rules.max_case_error_m) + 5
    dist = geo.haversine_m(b.lat, b.lon, case.lat, case.lon)
    near = [b.views[i] for i in np.flatnonzero((dist <= reach) & (b.utc >= ref.timestamp()))]
    cov = coverage(near, b.geometry, case.lat, case.lon, error_m, rules)
    if cov.frames == 0:
        return Verification(**base, outcome=Outcome.NOT_COVERED, confidence=0.0, frames=0, coverage=cov.fraction,
                            note=f"复查批次 {b.id} 未拍到该位置（±{error_m:.0f} 米），不作判断"), []
    ev = _after_evidence(b, cov, case, out_dir)
    detail = f"{cov.frames} 帧覆盖原位置，误差圈覆盖 {cov.fraction:.0%}，置信度 {cov.confidence:.2f}"
    if status in STILL_OPEN:
        note = f"复查批次 {b.id} 未再发现该问题（{detail}），可能已处置或为误报，请调度员留意"
        return Verification(**base, outcome=Outcome.NOT_SEEN, confidence=cov.confidence, frames=cov.frames,
                            coverage=cov.fraction, evidence=ev, note=note), []
    if cov.confidence >= rules.pass_min_confidence:
        note = f"复查批次 {b.id} 未再发现该问题（{detail}）：核查通过。{_before_note(case)}"
        return (Verification(**base, outcome=Outcome.PASSED, confidence=cov.confidence, frames=cov.frames,
                             coverage=cov.fraction, evidence=ev, note=note),
                [*verify_first, (Action.PASS, note)])
    note = f"复查批次 {b.id} 未再发现该问题，但把握不足（{detail}，低于 {rules.pass_min_confidence:.2f}），请人工核查"
    return (Verification(**base, outcome=Outcome.HUMAN, confidence=cov.confidence, frames=cov.frames,
                         coverage=cov.fraction, evidence=ev, note=note), verify_first)


def verify_batch(store, batch_id: str, *, rules: VerificationRules | None = None, dry_run: bool = False,
                 now: datetime | None = None, out: Path | None = None) -> list[Verification]:
    """Decide every case the batch's footage can speak for; returns the decisions
    made now (recorded unless ``dry_run``; cases already decided for this batch
    are skipped)."""
    rules = rules or load_rules(store.city.folder)
    b = _load(store, batch_id)
    out_dir = (out or settings.home() / "batches" / batch_id) / "verify"
    done = {v.case_number for v in store.verifications(batch_id=batch_id)}
    cases = [store.get(c.number) for c in _candidates(store, b, rules)
             if c.number not in done and c.lat is not None and not (c.external_id or "").startswith(f"obs:{batch_id}:")]
    refs = {c.number: _reference_time(c) for c in cases}
    origins = {c.number: _origin(store, c) for c in cases}
    errors = {c.number: origins[c.number].error_m if origins[c.number] else rules.position_error(c.source) for c in cases}
    matches = _matches(store, b, cases, errors, refs, rules)
    decisions = []
    for case in cases:
        v, actions = decide(b, case, matches.get(case.number, []), errors[case.number], refs[case.number],
                            rules, out_dir, origins[case.number])
        if not dry_run:
            v = store.record_verification(v, actions, now=now or datetime.now(UTC))
        decisions.append(v)
    return decisions
