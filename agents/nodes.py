"""The case pipeline's nodes: small functions of the state and the runtime context.

A node returns only the fields it changes. Nodes with side effects in the store
are idempotent (a node re-runs when a thread resumes after an interrupt): the
case is created under the thread's external id, and lifecycle actions check the
case's status first.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from langgraph.config import get_config
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, Field

from agents import offline, safety
from agents.context import Context
from agents.state import Candidate, PipelineState, Review, Triage
from city.cases import Evidence, NewCase
from city.catalogue import Kind, Risk, Source, Urgency
from city.lifecycle import Action, Status

CITIZEN_SOURCES = {Source.CITIZEN, Source.HOTLINE}


def _thread_id() -> str:
    return get_config()["configurable"]["thread_id"]


# -- intake -------------------------------------------------------------------------


def intake(state: PipelineState, runtime: Runtime[Context]) -> dict:
    """Scan the citizen text for injected instructions: flagged, never followed."""
    report = safety.scan(state.report.text)
    notes = [f"intake：来源 {state.report.source.value}"]
    if report.flagged:
        notes.append(f"intake：{report.summary()}；原文按普通文本处理，不执行其中任何指令")
    return {"injection_flags": list(report.patterns), "notes": state.notes + notes}


# -- triage ---------------------------------------------------------------------------


class TriageChoice(BaseModel):
    """What the LLM may answer (prompts/triage.yaml): one of the numbered candidates, 0 = none fits."""

    choice: int = Field(ge=0, description="候选类别编号；都不符合填 0")
    code: str = Field(description="所选类别的五位编码；都不符合填 none")
    kind: str = ""
    confidence: float = Field(ge=0, le=1)
    urgency: Literal["紧急", "较急", "一般"]
    reason: str = Field(max_length=300)


def triage(state: PipelineState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    r = state.report
    off = offline.triage(r.text, ctx.city.catalogue, detector_code=r.detector_code,
                         detector_confidence=r.detector_confidence)
    result = Triage(
        code=off.code, kind=off.kind and off.kind.value, name=off.name, confidence=off.confidence,
        urgency=off.urgency.value, risk_level=off.risk_level.value, reason=off.reason,
        policy="detector" if r.detector_code else "offline",
        candidates=[Candidate(code=c.code, kind=c.kind.value, name=c.name, score=c.score) for c in off.candidates],
    )
    notes = []
    if not r.detector_code and ctx.llm.enabled and result.candidates:
        chosen = _llm_triage(ctx, state, off, result)
        if chosen is None:
            notes.append("triage：LLM 输出无效或不可用，回退到离线策略")
        elif chosen.code is None and result.confidence >= ctx.trust_retrieval_above:
            notes.append(f"triage：LLM 认为都不符合（{chosen.reason}），但检索命中高置信，保留检索结果")
        elif chosen.code != result.code and result.confidence >= ctx.trust_retrieval_above:
            # a confident retrieval match (a verbatim synonym) outranks a disagreeing model:
            # keep it, but lower the confidence so a human looks at the disagreement
            notes.append(f"triage：LLM 选择 {chosen.code or '都不符合'}（{chosen.reason}），与高置信检索结果不一致，保留检索结果并交人工审核")
            result = result.model_copy(update={"confidence": min(result.confidence, ctx.review_below - 0.01)})
        else:
            result = chosen
    notes.append(f"triage（{result.policy}）：{result.code or '未能归类'} {result.name or ''}，置信度 {result.confidence:.2f}；{result.reason}")
    return {"triage": result, "notes": state.notes + notes}


def _llm_triage(ctx: Context, state: PipelineState, off: offline.TriageResult, base: Triage) -> Triage | None:
    """The LLM chooses among the retrieval candidates; anything outside them is invalid."""
    r = state.report
    messages = offline.triage_messages(r.text, off, ctx.city, source=r.source, lat=r.lat, lon=r.lon)
    res = ctx.llm.structured(messages, TriageChoice, step="triage", case_ref=_thread_id())
    cands = base.candidates
    if not res.ok or res.value.choice > len(cands):
        return None
    v = res.value
    if v.choice == 0:
        return base.model_copy(update={"code": None, "kind": None, "name": None, "confidence": v.confidence,
                                       "reason": f"LLM：{v.reason}", "policy": "llm"})
    c = cands[v.choice - 1]
    if v.code != c.code:  # the number and the code disagree: don't guess which one it meant
        return None
    entry = ctx.city.catalogue.get(c.code, c.kind)
    return Triage(code=c.code, kind=c.kind, name=c.name, confidence=v.confidence, urgency=v.urgency,
                  risk_level=entry.risk_level.value, candidates=cands, reason=f"LLM：{v.reason}", policy="llm")


def after_triage(state: PipelineState) -> str:
    return "dedupe" if state.triage and state.triage.code else END


# -- dedupe ----------------------------------------------------------------------------


def dedupe(state: PipelineState, runtime: Runtime[Context]) -> dict:
    """Same or related code nearby while a case is open → attach as evidence there."""
    ctx, r, t = runtime.context, state.report, state.triage
    if r.lat is None or r.lon is None:
        return {"notes": state.notes + ["dedupe：无坐标，跳过判重"]}
    if state.case_number:  # this thread already opened its own case: never merge it away
        return {}
    own = ctx.store.find_external(r.external_id or _thread_id())
    if own is not None:  # an earlier run of this thread opened it and stopped before its checkpoint
        return {"case_number": own.number, "notes": state.notes + [f"dedupe：本线程此前已建案 {own.number}，继续处理"]}
    found = ctx.store.find_duplicates(t.code, r.lat, r.lon, kind=Kind(t.kind), radius_m=ctx.dedupe_radius_m,
                                      window=timedelta(days=ctx.dedupe_window_days))
    if r.error_m is not None:
        found = _same_place(found, r, ctx)
    if not found:
        where = "两者定位误差范围内" if r.error_m is not None else f"{ctx.dedupe_radius_m:g} 米内"
        return {"notes": state.notes + [f"dedupe：{where}无同类未结案案件"]}
    case, dist = found[0]
    ev = [*r.evidence, Evidence(kind="text", uri=f"report:{_thread_id()}", note=r.text[:500])]
    ctx.store.add_evidence(case.number, ev, actor=ctx.actor, note=f"同类问题再次上报（{r.source.value}，相距 {dist:.0f} 米）")
    return {"duplicate_of": case.number, "case_number": case.number, "outcome": "attached",
            "notes": state.notes + [f"dedupe：与 {case.number}（相距 {dist:.0f} 米）重复，已作为证据附加"]}


def _same_place(found: list, r, ctx: Context) -> list:
    """For a report with a known position error (a vision observation): only cases
    within both positions' error radii (verification.yaml's per-source case
    errors), and never another observation of the same batch, which the vision
    pipeline has already told apart from this one."""
    from city.verification import load_rules

    rules = load_rules(ctx.city.folder)
    same_batch = f"obs:{r.batch_id}:" if r.batch_id else None
    return [(c, d) for c, d in found
            if not (same_batch and (c.external_id or "").startswith(same_batch))
            and d <= max(rules.match_floor_m, rules.position_error(c.source) + r.error_m)]


def after_dedupe(state: PipelineState) -> str:
    return END if state.duplicate_of else "route"


# -- route ------------------------------------------------------------------------------


class RouteChoice(BaseModel):
    """What the LLM may answer (prompts/route.yaml): one of the numbered departments, 0 = a human decides."""

    choice: int = Field(ge=0, description="选项编号；0 表示交人工")
    department_id: str = ""
    reason: str = Field(max_length=300)


def route(state: PipelineState, runtime: Runtime[Context]) -> dict:
    ctx, r, t = runtime.context, state.report, state.triage
    entry = ctx.city.catalogue.get(t.code, t.kind)
    decision = ctx.city.route(entry, r.lat, r.lon, r.context, r.owner)
    notes = [f"route（规则）：{decision.department_name}，{decision.principle}，规则 {decision.rule_id or '无'}"]
    if decision.ambiguous and ctx.llm.enabled and len(decision.candidates) > 1:
        messages = offline.route_messages(decision, entry, ctx.city, text=r.text, address=r.address, lat=r.lat,
                                          lon=r.lon, context=r.context, owner=r.owner)
        res = ctx.llm.structured(messages, RouteChoice, step="route", case_ref=_thread_id())
        ok = res.ok and 1 <= res.value.choice <= len(decision.candidates) \
            and decision.candidates[res.value.choice - 1].department_id == res.value.department_id
        if ok:
            c = decision.candidates[res.value.choice - 1]
            decision = decision.model_copy(update={
                "department_id": c.department_id, "department_name": c.department_name, "principle": c.principle,
                "rule_id": c.rule_id, "trail": [*decision.trail, f"LLM 在同等规则中选择 {c.department_name}：{res.value.reason}"],
            })
            notes.append(f"route（LLM）：{c.department_name}；{res.value.reason}")
        else:
            notes.append("route：LLM 不可用或输出无效，保留规则的首选")
    return {"route": decision, "notes": state.notes + notes}


# -- drafts -----------------------------------------------------------------------------


def draft_record(state: PipelineState, runtime: Runtime[Context]) -> dict:
    """Open the case in the store (status 上报; idempotent on the thread id) and draft the 案卷."""
    ctx, r, t = runtime.context, state.report, state.triage
    case = ctx.store.create_case(
        NewCase(source=r.source, kind=Kind(t.kind), code=t.code, description=r.text, address=r.address,
                lat=r.lat, lon=r.lon, context=r.context, owner=r.owner, urgency=Urgency(t.urgency), risk_level=Risk(t.risk_level),
                reporter_name=r.reporter_name, reporter_phone=r.reporter_phone,
                external_id=r.external_id or _thread_id(), evidence=r.evidence),
        actor=ctx.actor,
    )
    record = offline.draft_record(case, ctx.city, state.route)  # 案卷 fields from the case itself
    return {"case_number": case.number, "record": record.model_dump(mode="json"),
            "notes": state.notes + [f"draft_record（offline 模板）：案卷 {case.number}"]}


def draft_reply(state: PipelineState, runtime: Runtime[Context]) -> dict:
    if state.report.source not in CITIZEN_SOURCES:
        return {}
    ctx = runtime.context
    case = ctx.store.get(state.case_number)
    reply = offline.draft_reply("ack", case, ctx.city, state.route)
    return {"reply": reply.model_dump(mode="json"), "notes": state.notes + ["draft_reply（offline 模板）：受理回复"]}


# -- review gate and dispatch ------------------------------------------------------------


def review_reasons(state: PipelineState, ctx: Context) -> list[str]:
    t, d = state.triage, state.route
    reasons = []
    if t.confidence < ctx.review_below:
        reasons.append(f"分类置信度 {t.confidence:.2f} 低于 {ctx.review_below:.2f}")
    if t.risk_level in ctx.review_risks:
        reasons.append(f"风险等级为{t.risk_level}")
    if d and d.ambiguous:
        reasons.append("权责规则有歧义")
    if d and d.no_owner:
        reasons.append("无责任主体")
    if state.injection_flags:
        reasons.append("文本含疑似指令注入")
    if ctx.require_approval:
        reasons.append("按规定派遣前须人工审核")
    return reasons


def review_gate(state: PipelineState, runtime: Runtime[Context]) -> dict:
    """Wait for a human when the rules say so; resume with approve / edit / reject."""
    ctx = runtime.context
    reasons = review_reasons(state, ctx)
    if not reasons:
        return {"review": Review(reasons=[], decision="approve", by="policy")}
    answer = interrupt({
        "case_number": state.case_number,
        "reasons": reasons,
        "code": state.triage.code,
        "name": state.triage.name,
        "department_id": state.route.department_id if state.route else None,
    })
    review = Review(reasons=reasons, decision=answer.get("decision"), by=answer.get("by"),
                    note=answer.get("note", ""), edits=answer.get("edits") or {})
    if review.decision not in ("approve", "edit", "reject"):
        raise ValueError(f"review decision must be approve, edit or reject, got {review.decision!r}")
    if review.decision == "reject" and ctx.store.get(state.case_number).status is Status.REPORTED:
        ctx.store.act(state.case_number, Action.DECLINE, actor=review.by or ctx.actor, note=review.note or "审核不予立案")
    return {"review": review, "outcome": "rejected" if review.decision == "reject" else None, "notes": state.notes + [f"review_gate：{review.by} {review.decision} {review.note}".strip()]}


def after_review(state: PipelineState) -> str:
    return END if state.review and state.review.decision == "reject" else "dispatch"


def dispatch(state: PipelineState, runtime: Runtime[Context]) -> dict:
    """立案 and 派遣 in the store (skipping what is already done)."""
    ctx, review = runtime.context, state.review
    actor = review.by if review and review.by and review.by != "policy" else ctx.actor
    number = state.case_number
    edits = review.edits if review else {}
    case = ctx.store.get(number)
    if case.status is Status.REPORTED:
        case = ctx.store.act(number, Action.FILE, actor=actor, note=(review.note if review else "") or "自动立案",
                             urgency=Urgency(edits["urgency"]) if edits.get("urgency") else None)
    if case.status is Status.FILED:
        case = ctx.store.act(number, Action.DISPATCH, actor=actor, department_id=edits.get("department_id"),
                             decision=state.route, note=f"按{state.route.principle}派遣" if state.route else "")
    return {"outcome": "dispatched", "notes": state.notes + [f"dispatch：{number} 已派遣至 {case.department_id}"]}
