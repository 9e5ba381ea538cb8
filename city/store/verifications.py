"""The store's half for 核查 by re-inspection: candidate cases near a batch's
views, and one decision per (case, batch) recorded in ONE transaction with the
lifecycle actions it takes, the evidence it attaches and the observations it
claims, so a verification run killed midway and run again decides each case
exactly once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from city.cases import Case
from city.errors import InvalidInput
from city.lifecycle import Action, Status
from city.store.schema import AuditRow, CaseRow, ObservationRow, VerificationRow
from city.verification import Outcome, Verification


def _verification(row: VerificationRow, number: str) -> Verification:
    return Verification(case_number=number, batch_id=row.batch_id, outcome=Outcome(row.outcome), confidence=row.confidence,
                        frames=row.frames, coverage=row.coverage, observations=row.observations, evidence=row.evidence, note=row.note,
                        status_before=row.status_before, status_after=row.status_after, at=row.at, actor=row.actor)


class VerificationStore:
    """Mixed into :class:`city.store.Store` (needs ``reading``/``writing``/``_act``)."""

    def cases_in_cells(self, cells: list[int], statuses: frozenset[Status]) -> list[Case]:
        """Cases with a position in any of ``cells`` and a status in ``statuses``."""
        out: list[Case] = []
        with self.reading() as s:
            for i in range(0, len(cells), 500):
                stmt = select(CaseRow).where(CaseRow.cell.in_(cells[i:i + 500]), CaseRow.status.in_([st.value for st in statuses]))
                out += [self._to_case(r) for r in s.scalars(stmt)]
        return sorted(out, key=lambda c: c.number)

    def verifications(self, *, batch_id: str | None = None, case_number: str | None = None) -> list[Verification]:
        """Recorded decisions, oldest first."""
        with self.reading() as s:
            stmt = select(VerificationRow, CaseRow.number).join(CaseRow, CaseRow.id == VerificationRow.case_id)
            if batch_id:
                stmt = stmt.where(VerificationRow.batch_id == batch_id)
            if case_number:
                stmt = stmt.where(CaseRow.number == case_number)
            return [_verification(r, n) for r, n in s.execute(stmt.order_by(VerificationRow.id)).all()]

    def record_verification(self, v: Verification, actions: list[tuple[Action, str]], *, now: datetime) -> Verification:
        """Record ``v`` and apply ``actions`` (each with its note; ``v.evidence``
        goes with the last one, or as 补充证据 when there is none) and claim
        ``v.observations`` for the case, all in one transaction. A decision
        already recorded for the same case and batch is returned unchanged."""
        if not v.actor:
            raise InvalidInput("a verification needs an actor")
        with self.writing() as s:
            row = self._row(s, v.case_number, lock=True)
            existing = s.scalars(select(VerificationRow).where(VerificationRow.case_id == row.id,
                                                                VerificationRow.batch_id == v.batch_id)).first()
            if existing is not None:
                return _verification(existing, v.case_number)
            before = row.status
            data = {"batch": v.batch_id, "outcome": v.outcome.value, "confidence": round(v.confidence, 3), "frames": v.frames}
            for i, (action, note) in enumerate(actions):
                last = i == len(actions) - 1
                self._act(s, v.case_number, action, actor=v.actor, note=note, evidence=v.evidence if last else None,
                          data=data, now=now)
            if not actions and v.evidence:
                for ev in v.evidence:
                    s.add(self._evidence_row(row.id, ev, v.actor, now))
                s.add(AuditRow(case_id=row.id, at=now, actor=v.actor, action="补充证据", from_status=row.status,
                               to_status=row.status, note=v.note, data={**data, "count": len(v.evidence)}))
                row.updated_at = now
            for obs_id in v.observations:
                obs = s.get(ObservationRow, obs_id)
                if obs is not None:
                    obs.case_number = v.case_number
            stored = VerificationRow(case_id=row.id, batch_id=v.batch_id, outcome=v.outcome.value, confidence=v.confidence,
                                     frames=v.frames, coverage=v.coverage, observations=list(v.observations),
                                     evidence=[e.model_dump(mode="json") for e in v.evidence], note=v.note,
                                     status_before=before, status_after=row.status, at=now, actor=v.actor)
            s.add(stored)
            s.flush()
            return _verification(stored, v.case_number)
