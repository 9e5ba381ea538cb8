"""The store's half for footage: batches, their files and the observations.

A file's observations and its ``batch_files`` row are written in ONE
transaction (:meth:`ObservationStore.finish_file`), replacing whatever an
earlier run left for that path, so a batch killed mid-file and run again ends
with exactly one set of observations per file.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select

from city import geo
from city.errors import NotFound
from city.observations import Batch, BatchFile, Observation, View
from city.store.schema import BatchFileRow, BatchRow, ObservationRow, ViewRow

_OBS_FIELDS = [c for c in Observation.model_fields if c != "box"]


def _obs(row: ObservationRow) -> Observation:
    data = {f: getattr(row, f) for f in _OBS_FIELDS}
    return Observation(**data, box=tuple(row.box))


class ObservationStore:
    """Mixed into :class:`city.store.Store` (needs its ``reading``/``writing``)."""

    def open_batch(self, batch: Batch) -> Batch:
        """Create the batch, or refresh its manifest if it exists; returns what is stored."""
        with self.writing() as s:
            row = s.get(BatchRow, batch.id)
            if row is None:
                row = BatchRow(**batch.model_dump(mode="python"))
                row.source = batch.source.value
                s.add(row)
            else:
                row.manifest, row.updated_at, row.root = batch.manifest, batch.updated_at, batch.root
            s.flush()
            return self._batch(row)

    @staticmethod
    def _batch(row: BatchRow) -> Batch:
        return Batch(id=row.id, source=row.source, platform_id=row.platform_id, root=row.root,
                     manifest=row.manifest, created_at=row.created_at, updated_at=row.updated_at)

    def batch(self, batch_id: str) -> Batch:
        with self.reading() as s:
            row = s.get(BatchRow, batch_id)
            if row is None:
                raise NotFound(f"没有批次 {batch_id}（xunjian observations batches 列出全部批次）")
            return self._batch(row)

    def batches(self) -> list[tuple[Batch, int, int]]:
        """Every batch with its (files done, observations) counts, newest first."""
        with self.reading() as s:
            rows = s.scalars(select(BatchRow).order_by(BatchRow.updated_at.desc())).all()
            files = dict(s.execute(select(BatchFileRow.batch_id, func.count()).where(BatchFileRow.status == "done")
                                   .group_by(BatchFileRow.batch_id)).all())
            obs = dict(s.execute(select(ObservationRow.batch_id, func.count()).group_by(ObservationRow.batch_id)).all())
            return [(self._batch(r), files.get(r.id, 0), obs.get(r.id, 0)) for r in rows]

    def batch_files(self, batch_id: str) -> list[BatchFile]:
        with self.reading() as s:
            rows = s.scalars(select(BatchFileRow).where(BatchFileRow.batch_id == batch_id).order_by(BatchFileRow.path)).all()
            return [BatchFile(**{c: getattr(r, c) for c in BatchFile.model_fields}) for r in rows]

    def done_file(self, batch_id: str, path: str, sha256: str) -> BatchFile | None:
        """The finished record of this exact file content, if any (a re-run skips it)."""
        with self.reading() as s:
            r = s.get(BatchFileRow, (batch_id, path))
            if r is None or r.status != "done" or r.sha256 != sha256:
                return None
            return BatchFile(**{c: getattr(r, c) for c in BatchFile.model_fields})

    def finish_file(self, record: BatchFile, observations: list[Observation] = (), views: list[View] = ()) -> None:
        """Record a file as done (with its observations and the views its frames
        gave) or failed, atomically, replacing what an earlier run stored for the
        same path."""
        with self.writing() as s:
            s.execute(delete(ObservationRow).where(ObservationRow.batch_id == record.batch_id, ObservationRow.file == record.path))
            s.execute(delete(ViewRow).where(ViewRow.batch_id == record.batch_id, ViewRow.file == record.path))
            if views:
                cells = geo.cell_of([v.lat for v in views], [v.lon for v in views])
                s.execute(ViewRow.__table__.insert(), [
                    {"batch_id": record.batch_id, "file": record.path, "cell": int(c), **v.model_dump()}
                    for v, c in zip(views, cells)])
            s.merge(BatchFileRow(**record.model_dump(mode="python")))
            for o in observations:
                data = o.model_dump(mode="python")
                data["source"] = o.source.value
                data["kind"] = o.kind.value if o.kind else None
                data["box"] = [round(float(v), 1) for v in o.box]
                s.add(ObservationRow(**data, cell=int(geo.cell_of(o.lat, o.lon))))

    def observations(self, batch_id: str | None = None, *, code: str | None = None, file: str | None = None,
                     issues_only: bool = False, limit: int | None = None) -> list[Observation]:
        with self.reading() as s:
            stmt = select(ObservationRow)
            if batch_id:
                stmt = stmt.where(ObservationRow.batch_id == batch_id)
            if code:
                stmt = stmt.where(ObservationRow.code == code)
            if file:
                stmt = stmt.where(ObservationRow.file == file)
            if issues_only:
                stmt = stmt.where(ObservationRow.code.is_not(None))
            stmt = stmt.order_by(ObservationRow.file, ObservationRow.first_t, ObservationRow.id)
            if limit:
                stmt = stmt.limit(limit)
            return [_obs(r) for r in s.scalars(stmt).all()]

    def views(self, batch_id: str, *, cells: list[int] | None = None) -> list[tuple[str, View]]:
        """The (file, view) pairs of a batch, optionally only those in ``cells``, in file and time order."""
        with self.reading() as s:
            stmt = select(ViewRow).where(ViewRow.batch_id == batch_id)
            if cells is not None:
                stmt = stmt.where(ViewRow.cell.in_(cells))
            rows = s.scalars(stmt.order_by(ViewRow.file, ViewRow.t)).all()
            return [(r.file, View(t=r.t, utc=r.utc, lat=r.lat, lon=r.lon, heading=r.heading, yaw=r.yaw, alt=r.alt,
                                  pitch=r.pitch)) for r in rows]

    def observation(self, obs_id: str) -> Observation:
        with self.reading() as s:
            r = s.get(ObservationRow, obs_id)
            if r is None:
                raise NotFound(f"没有观测 {obs_id}")
            return _obs(r)

    def link_observation(self, obs_id: str, case_number: str) -> None:
        """Note the case an observation opened or joined."""
        with self.writing() as s:
            r = s.get(ObservationRow, obs_id)
            if r is None:
                raise NotFound(f"没有观测 {obs_id}")
            r.case_number = case_number

