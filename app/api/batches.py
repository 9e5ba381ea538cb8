"""Footage batches over HTTP: uploading one (dispatchers and admins), and the reports.

* ``POST /api/batches`` — ``multipart/form-data``: ``files`` (repeatable: videos,
  JPEG stills, telemetry, ``manifest.yaml``/``.json``, or ONE .zip/.tar archive)
  and the optional fields ``source`` (vehicle|drone), ``batch`` and
  ``run_pipeline`` (default true). The body is parsed as it arrives
  (:mod:`app.api.multipart`) and each file streamed to
  ``$XUNJIAN_HOME/uploads/<upload id>/`` (never held in memory); names, types
  (extension and the first bytes), sizes (:mod:`app.api.uploads` has the
  limits), the archive's entries and the manifest are all checked before
  answering, so a bad upload is a clear 4xx and leaves nothing behind (no
  files, no job). On success: 202 with the queued ``ingest`` job
  (:mod:`app.api.ingest`; follow it with :mod:`app.api.jobs`).
* ``POST /api/batches/from-uploads`` {uploads: [...], source, batch,
  run_pipeline} — the same, from finished resumable uploads (:mod:`app.api.uploads`).
* ``GET /api/batches``, ``GET /api/batches/{id}`` (the report),
  ``GET /api/batches/{id}/observations``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from app.api.deps import CurrentUser, Manager, ServicesDep, StoreDep
from app.api.ingest import frames  # (the module registers the ingest job's handler)
from app.api.multipart import FormReader, boundary_of, read_multipart
from app.api.uploads import (
    Refused,
    check_disk,
    check_name,
    file_kind,
    finished_uploads,
    forget,
    max_batch_bytes,
    max_file_bytes,
    refusals,
    take_data,
    too_large,
    too_large_total,
    unsupported,
    uploads_root,
)
from app.api.worker import wake
from city.errors import InvalidInput, NotFound, XunjianError
from city.store.jobs import Job
from city.users import User
from vision.manifest import ACCEPTED_ZH, SNIFF_BYTES, looks_like, upload_kind

log = logging.getLogger("xunjian.batches")
router = APIRouter(prefix="/api", tags=["batches"])

MAX_FILES = 2000
BATCH_ID = re.compile(r"^[\w.\-\u4e00-\u9fff]{1,100}$")


def _new_upload() -> tuple[str, Path]:
    """A new upload's id and its (new) folder under ``$XUNJIAN_HOME/uploads/``."""
    upload_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"
    dest = uploads_root() / upload_id
    dest.mkdir(parents=True)
    return upload_id, dest


# -- the multipart upload, streamed to disk --------------------------------------------------


@dataclass
class Saved:
    name: str
    kind: str
    path: Path
    size: int = 0
    sha256: str = ""

    def public(self) -> dict:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


class BatchForm(FormReader):
    """The form of ``POST /api/batches``: each file part written to ``dest`` as it
    arrives, checked on the way (name, type by extension and first bytes, its size
    and the total); the fields (``source``, ``batch``, ``run_pipeline``) kept."""

    refusals = (XunjianError, Refused)

    def __init__(self, dest: Path, max_file: int, max_total: int):
        super().__init__()
        self.dest, self.max_file, self.max_total = dest, max_file, max_total
        self.saved: list[Saved] = []
        self.total = 0
        self._names: set[str] = set()
        self._cur: Saved | None = None
        self._fh = None
        self._hash = None
        self._head = bytearray()
        self._sniffed = False

    def values(self) -> dict[str, str]:
        """Each field's first value."""
        out: dict[str, str] = {}
        for name, value in self.fields:
            out.setdefault(name, value)
        return out

    def begin_file(self, name: str | None, filename: str) -> bool:
        if filename == "":  # an <input type=file> left empty
            return False
        fname = check_name(filename)
        kind = file_kind(fname)
        if kind == "manifest":
            fname = fname.lower()  # the name load_manifest looks for
        if fname.lower() in self._names:
            raise InvalidInput(f"文件名 {fname} 重复：同一批次里的文件名不能相同（不区分大小写）")
        if len(self.saved) >= MAX_FILES:
            raise InvalidInput(f"一次最多上传 {MAX_FILES} 个文件；更多文件请打成压缩包上传")
        self._names.add(fname.lower())
        self._cur = Saved(fname, kind, self.dest / fname)
        self._fh = self._cur.path.open("xb")
        self._hash = hashlib.sha256()
        self._head, self._sniffed = bytearray(), False
        return True

    def file_data(self, chunk: memoryview) -> None:
        cur = self._cur
        cur.size += len(chunk)
        self.total += len(chunk)
        if cur.size > self.max_file:
            raise too_large(cur.name, self.max_file)
        if self.total > self.max_total:
            raise too_large_total(self.max_total)
        if not self._sniffed:
            self._head += chunk[: SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES:
                self._sniff()
        self._hash.update(chunk)
        self._fh.write(chunk)

    def _sniff(self) -> None:
        self._sniffed = True
        why = looks_like(self._cur.kind, self._cur.name, bytes(self._head))
        if why:
            raise unsupported(self._cur.name, why)

    def end_file(self) -> None:
        if not self._sniffed:
            self._sniff()
        self._fh.close()
        self._fh = None
        self._cur.sha256 = self._hash.hexdigest()
        self.saved.append(self._cur)
        self._cur = None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


async def _receive_form(request: Request, dest: Path) -> BatchForm:
    ctype = request.headers.get("content-type", "")
    boundary = boundary_of(ctype)
    if not ctype.lower().startswith("multipart/form-data") or not boundary:
        raise Refused(415, "请求应为 multipart/form-data（表单字段 files 放文件）", "unsupported_media_type")
    max_file, max_total = max_file_bytes(), max_batch_bytes()
    length = request.headers.get("content-length")
    if length and length.isdigit():
        if int(length) > max_total + (1 << 20):
            raise too_large_total(max_total)
        check_disk(int(length))
    form = BatchForm(dest, max_file, max_total)
    await read_multipart(request, form, boundary)
    return form


# -- checking an upload and queueing its job -------------------------------------------------


def _bool(raw: str | None, default: bool, name: str) -> bool:
    if raw is None or raw.strip() == "":
        return default
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on", "是"):
        return True
    if v in ("0", "false", "no", "off", "否"):
        return False
    raise InvalidInput(f"{name} 应为 true 或 false，收到 {raw!r}")


def _check_source(source: str | None) -> str | None:
    if source in (None, ""):
        return None
    if source not in ("vehicle", "drone"):
        raise InvalidInput(f"source 应为 vehicle（车巡）或 drone（机巡），收到 {source!r}")
    return source


def _check_batch(batch: str | None) -> str | None:
    batch = (batch or "").strip() or None
    if batch is not None and not BATCH_ID.match(batch):
        raise InvalidInput(f"批次号 {batch!r} 只能含字母、数字、汉字、. _ -，最长 100 个字符")
    return batch


def _single_folder(root: Path) -> Path:
    """An archive of one folder (the usual zip of a batch directory): that folder."""
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    while len(entries) == 1 and entries[0].is_dir():
        root = entries[0]
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    return root


def _relative(message: str, root: Path) -> str:
    return message.replace(f"{root}/", "").replace(str(root), "批次目录")


def _check_archive_media(root: Path, archive: str) -> None:
    """The videos and images inside an unpacked archive must be what their names say."""
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        kind = upload_kind(p.name)
        if kind not in ("video", "image"):
            continue
        with p.open("rb") as f:
            head = f.read(SNIFF_BYTES)
        why = looks_like(kind, p.name, head)
        if why:
            rel = p.relative_to(root).as_posix()
            raise unsupported(f"{archive} 里的 {rel}", why)


def prepare(dest: Path, saved: list[Saved], fields: dict[str, str | None], upload_id: str) -> dict:
    """Check a received upload synchronously (fields, the one archive and its
    entries, the manifest and the files it names) and return the job's params.
    Raises :class:`InvalidInput` / :class:`Refused`; the caller removes ``dest``."""
    from vision.manifest import load_manifest, unpack

    if not saved:
        raise InvalidInput(f"没有收到文件：请用表单字段 files 上传。可以上传：{ACCEPTED_ZH}")
    source = _check_source(fields.get("source"))
    batch = _check_batch(fields.get("batch"))
    run_pipeline = _bool(fields.get("run_pipeline"), True, "run_pipeline")
    if sum(f.kind == "manifest" for f in saved) > 1:
        raise InvalidInput("一个批次只能有一个清单（manifest.yaml 或 manifest.json）")
    archives = [f for f in saved if f.kind == "archive"]
    if archives:
        if len(saved) > 1:
            raise InvalidInput(f"压缩包 {archives[0].name} 须单独上传：一次只能上传一个压缩包，且不能与其他文件一起上传")
        arc = archives[0]
        unpacked = unpack(arc.path, dest, max_bytes=max_batch_bytes())
        arc.path.unlink()
        root = _single_folder(unpacked)
        _check_archive_media(root, arc.name)
    else:
        root = dest
    try:
        manifest, notes = load_manifest(root, source)
    except InvalidInput as e:
        raise InvalidInput(_relative(str(e), root)) from None
    batch_id = batch or manifest.batch or f"upload-{upload_id}"
    return {"upload": upload_id, "path": str(root), "batch": batch_id, "source": source, "run_pipeline": run_pipeline,
            "files": [f.public() for f in saved], "media": [s.media for s in manifest.files],
            "notes": [_relative(n, root) for n in notes]}


def _accepted(job: Job, params: dict) -> JSONResponse:
    return JSONResponse({"job": job.model_dump(mode="json"), "batch": params["batch"], "batch_dir": params["path"],
                         "files": params["files"], "media": params["media"], "notes": params["notes"]}, status_code=202)


@router.post("/batches", status_code=202)
@refusals
async def upload_batch(request: Request, user: Manager, services: ServicesDep):
    """上传一个巡检批次（multipart/form-data：files 可重复；source、batch、run_pipeline 可选），排队后台导入。"""
    upload_id, dest = _new_upload()
    try:
        form = await _receive_form(request, dest)
        params = await asyncio.to_thread(prepare, dest, form.saved, form.values(), upload_id)
        job = await asyncio.to_thread(services.store.add_job, "ingest", user.name, params)
    except ClientDisconnect:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        log.info("upload %s: the client went away mid-upload; removed what had arrived", upload_id)
        return Response(status_code=400)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        raise
    wake(request)
    return _accepted(job, params)


class FromUploads(BaseModel):
    uploads: list[str] = Field(min_length=1, max_length=MAX_FILES)
    source: Literal["vehicle", "drone"] | None = None
    batch: str | None = None
    run_pipeline: bool = True


@router.post("/batches/from-uploads", status_code=202)
@refusals
def batch_from_uploads(body: FromUploads, request: Request, user: Manager, services: ServicesDep):
    """用已传完的可续传上传组成一个批次，排队后台导入（同 POST /api/batches）。"""
    metas = finished_uploads(body.uploads, user)
    upload_id, dest = _new_upload()
    try:
        saved = []
        for meta in metas:
            path = dest / meta["filename"]
            take_data(meta, path)
            saved.append(Saved(meta["filename"], meta["kind"], path, meta["size"], meta["sha256_actual"]))
        fields = {"source": body.source, "batch": body.batch, "run_pipeline": "true" if body.run_pipeline else "false"}
        params = prepare(dest, saved, fields, upload_id)
        job = services.store.add_job("ingest", user.name, params)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    for meta in metas:
        forget(meta)
    wake(request)
    return _accepted(job, params)


# -- batch reports -----------------------------------------------------------------------------------


@router.get("/batches")
def list_batches(user: CurrentUser, store: StoreDep) -> list[dict]:
    """全部批次，最新的在前：完成的文件数、观测数。"""
    return [{"id": b.id, "source": b.source.value, "platform_id": b.platform_id, "files": files, "observations": n,
             "created_at": b.created_at.isoformat(), "updated_at": b.updated_at.isoformat()}
            for b, files, n in store.batches()]


def batch_report(store, batch_id: str, user: User | None = None) -> dict:
    """What a batch gave: its files, frames, observations, the cases they opened
    or joined (those ``user`` may see) and the 核查 decisions."""
    b = store.batch(batch_id)
    files = store.batch_files(batch_id)
    observations = store.observations(batch_id)
    per_case = Counter(o.case_number for o in observations if o.case_number)
    cases, visible = [], set()
    for number in sorted(per_case):
        try:
            c = store.get(number)
        except NotFound:
            continue
        if user is not None and not user.can_see(c):
            continue
        visible.add(number)
        cases.append({"number": c.number, "status": c.status.value, "code": c.code, "title": c.title,
                      "department_id": c.department_id, "observations": per_case[number]})
    verifications = []
    for v in store.verifications(batch_id=batch_id):
        if user is None or user.manages or v.case_number in visible or user.can_see(store.get(v.case_number)):
            verifications.append(v.model_dump(mode="json"))
    return {
        "batch": b.id, "source": b.source.value, "platform_id": b.platform_id,
        "created_at": b.created_at.isoformat(), "updated_at": b.updated_at.isoformat(),
        "files": [{"path": f.path, "status": f.status, "observations": f.observations, "frames": frames(f.stats),
                   "error": f.error} for f in files],
        "frames": sum(frames(f.stats) for f in files),
        "observations": len(observations),
        "issues": sum(1 for o in observations if o.code),
        "cases": cases,
        "verifications": verifications,
        "errors": [{"file": f.path, "error": f.error} for f in files if f.status == "failed"],
    }


@router.get("/batches/{batch_id}")
def get_batch(batch_id: str, user: CurrentUser, store: StoreDep) -> dict:
    """一个批次的报告：每个文件的结果、抽帧数、观测数、关联案件及状态、核查结论、错误。"""
    return batch_report(store, batch_id, user)


@router.get("/batches/{batch_id}/observations")
def batch_observations(batch_id: str, user: CurrentUser, store: StoreDep) -> list[dict]:
    """一个批次的观测（每个物理问题一条，含位置、置信度、证据图路径、关联案件）。"""
    store.batch(batch_id)
    return [o.model_dump(mode="json") for o in store.observations(batch_id)]
