"""Footage batches over HTTP: upload, background ingest + case pipeline, progress, reports.

Uploading (dispatchers and admins):

* ``POST /api/batches`` — ``multipart/form-data``: ``files`` (repeatable: videos,
  JPEG stills, telemetry, ``manifest.yaml``/``.json``, or ONE .zip/.tar archive)
  and the optional fields ``source`` (vehicle|drone), ``batch`` and
  ``run_pipeline`` (default true). The body is parsed as it arrives and each
  part streamed to ``$XUNJIAN_HOME/uploads/<upload id>/`` (never held in
  memory); names, types (extension and the first bytes), sizes, the archive's
  entries and the manifest are all checked before answering, so a bad upload
  is a clear 4xx and leaves nothing behind (no files, no job). On success:
  202 with the queued ``ingest`` job.
* Resumable, for large videos: ``POST /api/uploads`` {filename, size, sha256?}
  → ``PUT /api/uploads/{id}`` with ``Content-Range: bytes START-END/TOTAL``
  (a chunk that does not start at ``received`` → 409 with ``received``) →
  ``POST /api/batches/from-uploads`` {uploads: [...], source, batch,
  run_pipeline}. Upload state lives on disk (a JSON sidecar beside the data),
  so it survives a restart.

Limits (read per request): ``XUNJIAN_MAX_UPLOAD_MB`` per file (default 4096)
and ``XUNJIAN_MAX_BATCH_MB`` per request / batch (default 20480).

The ``ingest`` job (:func:`run_ingest`, run by :mod:`app.api.worker`) ingests
the upload (:func:`vision.ingest.ingest`) and runs the batch through the case
pipeline (:func:`agents.batch.run_batch`), writing its progress to the job row;
both steps are idempotent, so a re-run (a job re-queued after a crash)
duplicates nothing. Progress: ``GET /api/jobs/{id}`` (poll) or
``GET /api/jobs/{id}/events`` (Server-Sent Events). Reports: ``GET /api/batches``
and ``GET /api/batches/{id}``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import threading
import time
import unicodedata
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser
from starlette.requests import ClientDisconnect

from app.api.deps import CurrentUser, Manager, ServicesDep, StoreDep
from app.api.worker import handler, wake
from city import settings
from city.errors import InvalidInput, NotFound, XunjianError
from city.store.jobs import Job
from city.users import PermissionDenied, Role, User
from vision.manifest import (
    ACCEPTED,
    ACCEPTED_ZH,
    SNIFF_BYTES,
    looks_like,
    sha256_file,
    upload_kind,
)

log = logging.getLogger("xunjian.batches")
router = APIRouter(prefix="/api", tags=["batches"])

CHUNK_SIZE = 8 << 20
"""The chunk size suggested to resumable-upload clients (any size works)."""
MAX_FILES = 2000
MAX_FIELD_BYTES = 64 << 10
DRAIN_CAP = 256 << 20
"""After refusing an upload mid-body, read and discard at most this much more of
it so the client sees the answer rather than a broken connection."""
POLL_S = 0.3
KEEPALIVE_S = 15.0
RESUMABLE_TTL = timedelta(days=7)
BATCH_ID = re.compile(r"^[\w.\-\u4e00-\u9fff]{1,100}$")
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
FINISHED = ("done", "failed")


# -- limits and places -----------------------------------------------------------------


def _mb_env(name: str, default: float) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        mb = float(raw) if raw else default
    except ValueError:
        log.warning("%s=%r is not a number; using %s", name, raw, default)
        mb = default
    return max(int(mb * (1 << 20)), 1)


def max_file_bytes() -> int:
    """Largest single file (``XUNJIAN_MAX_UPLOAD_MB``, default 4096)."""
    return _mb_env("XUNJIAN_MAX_UPLOAD_MB", 4096)


def max_batch_bytes() -> int:
    """Largest request / batch in all (``XUNJIAN_MAX_BATCH_MB``, default 20480)."""
    return _mb_env("XUNJIAN_MAX_BATCH_MB", 20480)


def uploads_root() -> Path:
    return settings.home() / "uploads"


def resumable_root() -> Path:
    return uploads_root() / ".resumable"


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _new_upload_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


# -- refusals with a status of their own -------------------------------------------------


class Refused(Exception):
    """A request refused with ``status`` (413, 415, 409, 507…): ``{"detail", "error", **extra}``."""

    def __init__(self, status: int, detail: str, error: str, **extra):
        super().__init__(detail)
        self.status, self.detail, self.error, self.extra = status, detail, error, extra

    def response(self) -> JSONResponse:
        return JSONResponse({"detail": self.detail, "error": self.error, **self.extra}, status_code=self.status)


def _refusals(fn):
    """Turn :class:`Refused` into its JSON answer (for sync and async endpoints)."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapped_async(*a, **kw):
            try:
                return await fn(*a, **kw)
            except Refused as e:
                return e.response()
        return wrapped_async

    @functools.wraps(fn)
    def wrapped(*a, **kw):
        try:
            return fn(*a, **kw)
        except Refused as e:
            return e.response()
    return wrapped


def _too_large(name: str, limit: int) -> Refused:
    return Refused(413, f"文件 {name} 超过单个文件大小上限 {_human(limit)}，已拒绝，本次上传的文件均未保存", "too_large",
                   file=name, limit_bytes=limit)


def _too_large_total(limit: int) -> Refused:
    return Refused(413, f"本次上传的文件合计超过上限 {_human(limit)}，已拒绝，本次上传的文件均未保存", "too_large",
                   limit_bytes=limit)


def _unsupported(name: str, why: str = "不支持的文件类型") -> Refused:
    return Refused(415, f"{name}：{why}。可以上传：{ACCEPTED_ZH}", "unsupported_type", file=name, accepted=ACCEPTED)


def _check_disk(need: int) -> None:
    root = uploads_root()
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if need + (512 << 20) > free:
        raise Refused(507, f"服务器磁盘空间不足：需要约 {_human(need)}，只剩 {_human(free)}", "insufficient_storage")


# -- file names ----------------------------------------------------------------------


_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}


def check_name(name: str) -> str:
    """An uploaded file's name, if it is a plain file name (no directories, no
    ``..``, no drive or root, no control characters); else :class:`InvalidInput`."""
    if not name or not name.strip():
        raise InvalidInput("文件名为空：每个上传的文件都要有文件名")
    if any(unicodedata.category(c) == "Cc" or c in _BIDI for c in name):
        raise InvalidInput(f"文件名 {name!r} 含控制字符，拒绝上传")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise InvalidInput(f"文件名 {name} 是绝对路径，拒绝上传：只能上传单个文件名，不能带目录")
    if ".." in re.split(r"[/\\]", name):
        raise InvalidInput(f"文件名 {name} 含上级目录 ..，拒绝上传")
    if "/" in name or "\\" in name:
        raise InvalidInput(f"文件名 {name} 含目录（/ 或 \\），拒绝上传：只能上传单个文件名；整个目录请打成 .zip 上传")
    if name.startswith("."):
        raise InvalidInput(f"文件名 {name} 以 . 开头（隐藏文件），拒绝上传")
    if name != name.strip():
        raise InvalidInput(f"文件名 {name!r} 首尾有空格，请改名后再上传")
    if len(name.encode("utf-8")) > 200:
        raise InvalidInput(f"文件名 {name[:40]}… 太长（超过 200 字节）")
    return unicodedata.normalize("NFC", name)


def _kind(name: str) -> str:
    kind = upload_kind(name)
    if kind is None:
        raise _unsupported(name)
    return kind


def _split_params(value: str) -> list[str]:
    """``a; b="x;y"; c`` → ``['a', 'b="x;y"', 'c']`` (semicolons inside quotes kept)."""
    out, cur, quoted, escaped = [], [], False, False
    for ch in value:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            cur.append(ch)
            escaped = True
        elif ch == '"':
            cur.append(ch)
            quoted = not quoted
        elif ch == ";" and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _disposition(value: str) -> tuple[str | None, str | None]:
    """(name, filename) of a part's Content-Disposition. The filename is taken as
    sent (no IE-style path stripping), so a path in it is refused, not hidden;
    a backslash anywhere in it stays (and is refused by :func:`check_name`)."""
    params: dict[str, str] = {}
    for seg in _split_params(value)[1:]:
        key, sep, val = seg.partition("=")
        key = key.strip().lower()
        if not sep or "*" in key:  # RFC 7578 forbids filename*=; the plain parameter is authoritative
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
            if key != "filename":
                val = re.sub(r"\\(.)", r"\1", val)
        params[key] = val
    return params.get("name"), params.get("filename")


def _decode_header(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# -- the streamed multipart body --------------------------------------------------------


@dataclass
class Saved:
    name: str
    kind: str
    path: Path
    size: int = 0
    sha256: str = ""

    def public(self) -> dict:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


class _Form:
    """python-multipart callbacks: file parts written to ``dest`` as they arrive
    (checked: name, type, first bytes, size), form fields kept (small)."""

    def __init__(self, dest: Path, max_file: int, max_total: int):
        self.dest, self.max_file, self.max_total = dest, max_file, max_total
        self.saved: list[Saved] = []
        self.fields: dict[str, str] = {}
        self.total = 0
        self.ended = False
        self._names: set[str] = set()
        self._headers: dict[bytes, bytes] = {}
        self._hf = bytearray()
        self._hv = bytearray()
        self._field: str | None = None
        self._value = bytearray()
        self._skip = False
        self._cur: Saved | None = None
        self._fh = None
        self._hash = None
        self._head = bytearray()
        self._sniffed = False

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
            "on_part_data", "on_part_end", "on_end")}

    def on_part_begin(self) -> None:
        self._headers = {}
        self._field, self._value, self._skip, self._cur = None, bytearray(), False, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hf += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hv += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._hf).strip().lower()] = bytes(self._hv).strip()
        self._hf, self._hv = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        name, filename = _disposition(_decode_header(self._headers.get(b"content-disposition", b"")))
        if filename is None:
            self._field = name or ""
            return
        if filename == "":  # an <input type=file> left empty
            self._skip = True
            return
        fname = check_name(filename)
        kind = _kind(fname)
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

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._field is not None:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise InvalidInput(f"表单字段 {self._field} 太长")
            return
        if self._cur is None:
            return
        chunk = memoryview(data)[start:end]
        cur = self._cur
        cur.size += len(chunk)
        self.total += len(chunk)
        if cur.size > self.max_file:
            raise _too_large(cur.name, self.max_file)
        if self.total > self.max_total:
            raise _too_large_total(self.max_total)
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
            raise _unsupported(self._cur.name, why)

    def on_part_end(self) -> None:
        if self._field is not None:
            try:
                value = bytes(self._value).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"表单字段 {self._field} 不是 UTF-8 文本") from None
            self.fields.setdefault(self._field, value)
            self._field = None
            return
        if self._cur is None:
            return
        if not self._sniffed:
            self._sniff()
        self._fh.close()
        self._fh = None
        self._cur.sha256 = self._hash.hexdigest()
        self.saved.append(self._cur)
        self._cur = None

    def on_end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


async def _drain(chunks, cap: int = DRAIN_CAP) -> None:
    """Read and drop the rest of a refused body (at most ``cap`` bytes)."""
    seen = 0
    try:
        async for chunk in chunks:
            seen += len(chunk)
            if seen > cap:
                return
    except (ClientDisconnect, RuntimeError):
        return


async def _receive_form(request: Request, dest: Path) -> _Form:
    ctype = request.headers.get("content-type", "")
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not ctype.lower().startswith("multipart/form-data") or not m:
        raise Refused(415, "请求应为 multipart/form-data（表单字段 files 放文件）", "unsupported_media_type")
    max_file, max_total = max_file_bytes(), max_batch_bytes()
    length = request.headers.get("content-length")
    if length and length.isdigit():
        if int(length) > max_total + (1 << 20):
            raise _too_large_total(max_total)
        _check_disk(int(length))
    form = _Form(dest, max_file, max_total)
    parser = MultipartParser(m.group(1), form.callbacks())
    chunks = request.stream().__aiter__()
    buf = bytearray()
    finished = False
    try:
        async for chunk in chunks:
            buf += chunk
            if len(buf) >= 1 << 20:
                data, buf = bytes(buf), bytearray()
                await asyncio.to_thread(parser.write, data)
        finished = True
        if buf:
            await asyncio.to_thread(parser.write, bytes(buf))
        parser.finalize()
    except MultipartParseError as e:
        form.close()
        if not finished:
            await _drain(chunks)
        raise InvalidInput(f"multipart 表单格式错误：{e}") from None
    except (XunjianError, Refused):
        form.close()
        if not finished:
            await _drain(chunks)
        raise
    except BaseException:
        form.close()
        raise
    if not form.ended:
        raise InvalidInput("上传不完整：multipart 表单没有正常结束（连接是否中断？）")
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
            raise _unsupported(f"{archive} 里的 {rel}", why)


def prepare(dest: Path, saved: list[Saved], fields: dict[str, str], upload_id: str) -> dict:
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
@_refusals
async def upload_batch(request: Request, user: Manager, services: ServicesDep):
    """上传一个巡检批次（multipart/form-data：files 可重复；source、batch、run_pipeline 可选），排队后台导入。"""
    upload_id = _new_upload_id()
    dest = uploads_root() / upload_id
    dest.mkdir(parents=True)
    try:
        form = await _receive_form(request, dest)
        params = await asyncio.to_thread(prepare, dest, form.saved, form.fields, upload_id)
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


# -- resumable uploads --------------------------------------------------------------------------


class NewUpload(BaseModel):
    filename: str = Field(min_length=1, max_length=255)
    size: int = Field(gt=0, description="文件总字节数")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$", description="可选：传完后校验")


class FromUploads(BaseModel):
    uploads: list[str] = Field(min_length=1, max_length=MAX_FILES)
    source: Literal["vehicle", "drone"] | None = None
    batch: str | None = None
    run_pipeline: bool = True


def _upload_dir(upload_id: str) -> Path:
    if not UPLOAD_ID.match(upload_id):
        raise NotFound(f"上传 {upload_id} 不存在")
    return resumable_root() / upload_id


def _meta_path(d: Path) -> Path:
    return d / "upload.json"


def _load_upload(upload_id: str, user: User) -> dict:
    d = _upload_dir(upload_id)
    try:
        meta = json.loads(_meta_path(d).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NotFound(f"上传 {upload_id} 不存在（或已用于批次、已取消、已过期）") from None
    if meta["owner"] != user.name and user.role is not Role.ADMIN:
        raise PermissionDenied(f"{user.label} 不能使用别人的上传 {upload_id}")
    return meta


def _save_meta(meta: dict) -> None:
    d = _upload_dir(meta["upload_id"])
    tmp = d / "upload.json.tmp"
    tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, _meta_path(d))


def _received(upload_id: str) -> int:
    try:
        return (_upload_dir(upload_id) / "data").stat().st_size
    except FileNotFoundError:
        return 0


def _upload_state(meta: dict) -> dict:
    received = _received(meta["upload_id"])
    return {"upload_id": meta["upload_id"], "filename": meta["filename"], "size": meta["size"], "received": received,
            "complete": received == meta["size"], "chunk_size": CHUNK_SIZE,
            "created_at": meta["created_at"]}


def _sweep() -> None:
    """Forget resumable uploads untouched for :data:`RESUMABLE_TTL`."""
    root = resumable_root()
    if not root.is_dir():
        return
    old = time.time() - RESUMABLE_TTL.total_seconds()
    for d in root.iterdir():
        try:
            newest = max(p.stat().st_mtime for p in [d, *d.iterdir()])
        except (OSError, ValueError):
            continue
        if newest < old:
            shutil.rmtree(d, ignore_errors=True)


@router.post("/uploads", status_code=201)
@_refusals
def create_upload(body: NewUpload, user: Manager) -> dict:
    """开始一个可续传的上传（大视频）：之后用 PUT 分片上传，Content-Range: bytes START-END/TOTAL。"""
    name = check_name(body.filename)
    kind = _kind(name)
    if kind == "manifest":
        name = name.lower()
    limit = max_file_bytes()
    if body.size > limit:
        raise _too_large(name, limit)
    _check_disk(body.size)
    _sweep()
    upload_id = uuid.uuid4().hex
    d = _upload_dir(upload_id)
    d.mkdir(parents=True)
    (d / "data").touch()
    meta = {"upload_id": upload_id, "filename": name, "kind": kind, "size": body.size,
            "sha256": body.sha256.lower() if body.sha256 else None, "sha256_actual": None, "owner": user.name,
            "created_at": datetime.now(UTC).isoformat()}
    _save_meta(meta)
    return _upload_state(meta)


@router.get("/uploads")
def list_uploads(user: Manager) -> list[dict]:
    """我未用完的可续传上传（刷新页面后可继续）。"""
    root = resumable_root()
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            meta = json.loads(_meta_path(d).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("owner") == user.name:
            out.append(_upload_state(meta))
    return sorted(out, key=lambda u: u["created_at"])


@router.get("/uploads/{upload_id}")
def get_upload(upload_id: str, user: Manager) -> dict:
    """上传进度：已收到的字节数（从这里续传）。"""
    return _upload_state(_load_upload(upload_id, user))


@router.delete("/uploads/{upload_id}", status_code=204)
def delete_upload(upload_id: str, user: Manager) -> Response:
    """取消一个可续传的上传，删除已收到的数据。"""
    _load_upload(upload_id, user)
    shutil.rmtree(_upload_dir(upload_id), ignore_errors=True)
    return Response(status_code=204)


_busy: set[str] = set()
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def _finish_upload(meta: dict) -> None:
    """The last byte is in: hash it, check the client's sha256 (a mismatch empties the upload)."""
    d = _upload_dir(meta["upload_id"])
    actual = sha256_file(d / "data")
    if meta.get("sha256") and actual != meta["sha256"]:
        (d / "data").write_bytes(b"")
        raise Refused(422, f"{meta['filename']} 传完后校验和不符（应为 {meta['sha256'][:12]}…，收到 {actual[:12]}…）："
                      "数据已清空，请从头重新上传", "checksum_mismatch", received=0)
    meta["sha256_actual"] = actual
    _save_meta(meta)


@router.put("/uploads/{upload_id}")
@_refusals
async def put_chunk(upload_id: str, request: Request, user: Manager) -> dict:
    """上传一个分片：请求体是字节，Content-Range: bytes START-END/TOTAL；START 必须等于已收到的字节数。"""
    meta = await asyncio.to_thread(_load_upload, upload_id, user)
    m = _CONTENT_RANGE.match(request.headers.get("content-range", "").strip())
    if not m:
        raise InvalidInput("分片需要请求头 Content-Range: bytes START-END/TOTAL")
    start, end, total = (int(g) for g in m.groups())
    size = meta["size"]
    if total != size:
        raise InvalidInput(f"Content-Range 的总长 {total} 与创建上传时声明的 {size} 字节不符")
    if end < start or end >= size:
        raise InvalidInput(f"Content-Range bytes {start}-{end}/{total} 无效")
    if upload_id in _busy:
        raise Refused(409, "这个上传正在接收另一个分片，请稍后重试", "busy", received=_received(upload_id))
    _busy.add(upload_id)
    try:
        return await _receive_chunk(meta, request, start, end)
    finally:
        _busy.discard(upload_id)


async def _receive_chunk(meta: dict, request: Request, start: int, end: int) -> dict:
    upload_id, size = meta["upload_id"], meta["size"]
    data = _upload_dir(upload_id) / "data"
    before = data.stat().st_size
    if start != before:
        raise Refused(409, f"分片应从第 {before} 字节开始（收到的分片从 {start} 开始）：请从 received 处续传",
                      "offset_mismatch", received=before)
    want = end - start + 1
    got = 0
    overflow = False
    chunks = request.stream().__aiter__()
    fh = await asyncio.to_thread(data.open, "r+b")
    try:
        fh.seek(start)
        buf = bytearray()
        try:
            async for chunk in chunks:
                if got + len(buf) + len(chunk) > want:
                    overflow = True
                    break
                buf += chunk
                if len(buf) >= 1 << 20:
                    await asyncio.to_thread(fh.write, bytes(buf))
                    got += len(buf)
                    buf = bytearray()
        finally:  # a dropped connection keeps what arrived: the client resumes from there
            if buf and not overflow:
                await asyncio.to_thread(fh.write, bytes(buf))
                got += len(buf)
            if overflow:
                fh.truncate(start)
    except ClientDisconnect:
        log.info("upload %s: chunk interrupted after %d of %d bytes", upload_id, got, want)
        return {"upload_id": upload_id, "received": start + got, "size": size, "complete": False}
    finally:
        fh.close()
    if overflow:
        await _drain(chunks)
        raise InvalidInput(f"分片比 Content-Range 声明的 {want} 字节长，已丢弃这个分片")
    after = start + got
    if before < min(SNIFF_BYTES, size) <= after:
        with data.open("rb") as f:
            why = looks_like(meta["kind"], meta["filename"], f.read(SNIFF_BYTES))
        if why:
            shutil.rmtree(_upload_dir(upload_id), ignore_errors=True)
            raise _unsupported(meta["filename"], why)
    if after == size:
        await asyncio.to_thread(_finish_upload, meta)
    return _upload_state(meta) | {"received": after}


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


@router.post("/batches/from-uploads", status_code=202)
@_refusals
def batch_from_uploads(body: FromUploads, request: Request, user: Manager, services: ServicesDep):
    """用已传完的可续传上传组成一个批次，排队后台导入（同 POST /api/batches）。"""
    metas = [_load_upload(u, user) for u in dict.fromkeys(body.uploads)]
    names: set[str] = set()
    total = 0
    for meta in metas:
        received = _received(meta["upload_id"])
        if received != meta["size"]:
            raise Refused(409, f"{meta['filename']} 还没有传完：已收到 {received}/{meta['size']} 字节", "incomplete",
                          upload_id=meta["upload_id"], received=received)
        if not meta.get("sha256_actual"):
            _finish_upload(meta)
        if meta["filename"].lower() in names:
            raise InvalidInput(f"文件名 {meta['filename']} 重复：同一批次里的文件名不能相同")
        names.add(meta["filename"].lower())
        total += meta["size"]
    if total > max_batch_bytes():
        raise _too_large_total(max_batch_bytes())
    upload_id = _new_upload_id()
    dest = uploads_root() / upload_id
    dest.mkdir(parents=True)
    try:
        saved = []
        for meta in metas:
            path = dest / meta["filename"]
            _link(_upload_dir(meta["upload_id"]) / "data", path)
            saved.append(Saved(meta["filename"], meta["kind"], path, meta["size"], meta["sha256_actual"]))
        fields = {"source": body.source, "batch": body.batch, "run_pipeline": "true" if body.run_pipeline else "false"}
        params = prepare(dest, saved, fields, upload_id)
        job = services.store.add_job("ingest", user.name, params)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    for meta in metas:
        shutil.rmtree(_upload_dir(meta["upload_id"]), ignore_errors=True)
    wake(request)
    return _accepted(job, params)


# -- the ingest job ---------------------------------------------------------------------------


def _emitter(progress):
    """``progress(p, force=...)`` where the worker's callback takes ``force`` (it
    throttles the rest to a few writes a second), else ``progress(p)``."""
    try:
        takes_force = "force" in inspect.signature(progress).parameters
    except (TypeError, ValueError):
        takes_force = False
    if takes_force:
        return lambda p, force=False: progress(p, force=force)
    return lambda p, force=False: progress(p)


class JobProgress:
    """:class:`vision.ingest.Progress` → the job's progress dict."""

    def __init__(self, progress, batch_id: str, media: list[str]):
        self._emit = _emitter(progress)
        self._lock = threading.Lock()
        self.state: dict = {
            "stage": "ingest", "batch": batch_id, "files_total": len(media), "files_done": 0, "current": None,
            "files": [{"path": m, "status": "pending", "observations": 0, "error": None} for m in media],
        }

    def send(self, force: bool = False) -> None:
        with self._lock:
            snapshot = copy.deepcopy(self.state)
        self._emit(snapshot, force)

    def _entry(self, path: str) -> dict:
        for f in self.state["files"]:
            if f["path"] == path:
                return f
        f = {"path": path, "status": "pending", "observations": 0, "error": None}
        self.state["files"].append(f)
        return f

    def batch_started(self, batch_id: str, files: int) -> None:
        with self._lock:
            self.state.update(batch=batch_id, files_total=files)
        self.send(force=True)

    def file_started(self, name: str, seconds: float) -> None:
        with self._lock:
            self.state["current"] = {"name": name, "seconds": round(float(seconds), 2), "t": 0.0}
            self._entry(name)["status"] = "running"
        self.send(force=True)

    def file_advanced(self, t: float) -> None:
        with self._lock:
            if self.state["current"] is not None:
                self.state["current"]["t"] = round(float(t), 2)
        self.send()

    def file_finished(self, outcome) -> None:
        with self._lock:
            e = self._entry(outcome.path)
            e.update(status=outcome.status, observations=outcome.observations, error=outcome.error)
            self.state["files_done"] += 1
            self.state["current"] = None
        self.send(force=True)

    def pipeline(self, total: int, done: int, force: bool = False) -> None:
        with self._lock:
            self.state.update(stage="pipeline", current=None, pipeline={"total": total, "done": min(done, total)})
        self.send(force=force)


def _frames(stats: dict) -> int:
    """Sampled frames of one file (a still counts as one)."""
    if "frames_kept" in stats:
        return int(stats["frames_kept"])
    return 1 if "width" in stats else 0


def _run_pipeline(services, batch_id: str, tracker: JobProgress) -> list[dict]:
    from agents.batch import run_batch

    store = services.store
    todo = {o.id for o in store.observations(batch_id, issues_only=True) if not o.case_number}
    total = len(todo)
    tracker.pipeline(total, 0, force=True)
    stop = threading.Event()

    def watch() -> None:  # the batch graph reports only at its end: count the observations linked so far
        while not stop.wait(0.5):
            try:
                done = sum(1 for o in store.observations(batch_id, issues_only=True) if o.id in todo and o.case_number)
                tracker.pipeline(total, done)
            except Exception:
                log.debug("pipeline progress", exc_info=True)

    watcher = threading.Thread(target=watch, name=f"progress-{batch_id}", daemon=True)
    watcher.start()
    try:
        return run_batch(services.pipeline, batch_id, verify=True)
    finally:
        stop.set()
        watcher.join(2)
        tracker.pipeline(total, total, force=True)


def _cases(results: list[dict]) -> dict:
    def pick(cond, key="case"):
        return list(dict.fromkeys(r[key] for r in results if cond(r) and r.get(key)))
    return {"opened": pick(lambda r: r["outcome"] == "dispatched"),
            "attached": pick(lambda r: r["outcome"] == "attached"),
            "waiting": pick(lambda r: r["waiting"] or r["outcome"] == "waiting"),
            "rejected": pick(lambda r: r["outcome"] == "rejected", "observation")}


@handler("ingest")
def run_ingest(job: Job, services, progress) -> dict:
    """Ingest an uploaded batch, then (``run_pipeline``) run it through the case pipeline."""
    from vision.ingest import IngestOptions, ingest
    from vision.manifest import load_manifest

    started = time.perf_counter()
    p = job.params
    root = Path(p["path"])
    if not root.is_dir():
        raise InvalidInput(f"上传的文件已不在服务器上（{root}），请重新上传")
    store = services.store
    manifest, _ = load_manifest(root, p.get("source"))
    tracker = JobProgress(progress, p["batch"], [s.media for s in manifest.files])
    tracker.send(force=True)
    report = ingest(root, store, IngestOptions(source=p.get("source"), batch=p["batch"]), tracker)
    batch_id = report.batch_id
    results: list[dict] = []
    if p.get("run_pipeline", True):
        try:
            results = _run_pipeline(services, batch_id, tracker)
        except Exception as e:
            if not isinstance(e, XunjianError):
                log.exception("batch %s: the case pipeline failed", batch_id)
            why = str(e) if isinstance(e, XunjianError) else f"{type(e).__name__}: {e}"
            raise XunjianError(f"视频已导入批次 {batch_id}，但案件流程失败：{why}（重新运行任务即可，已完成的不会重复）") from e
    stats = {f.path: f.stats for f in store.batch_files(batch_id)}
    files = [{"path": f.path, "status": f.status, "observations": f.observations, "frames": _frames(stats.get(f.path) or f.stats),
              "error": f.error} for f in report.files]
    return {
        "batch": batch_id,
        "files": files,
        "frames": sum(_frames(s) for s in stats.values()),
        "observations": len(store.observations(batch_id)),
        "issues": len(store.observations(batch_id, issues_only=True)),
        "cases": _cases(results),
        "pipeline": bool(p.get("run_pipeline", True)),
        "verifications": [v.model_dump(mode="json") for v in store.verifications(batch_id=batch_id)],
        "errors": [{"file": f.path, "error": f.error} for f in report.files if f.status == "failed"],
        "notes": report.notes,
        "model": report.model,
        "seconds": round(time.perf_counter() - started, 2),
    }


# -- jobs ----------------------------------------------------------------------------------------


def _may_see_job(job: Job, user: User) -> None:
    if job.owner != user.name and not user.manages:
        raise PermissionDenied(f"{user.label} 不能查看别人的任务 {job.id}")


@router.get("/jobs")
def list_jobs(user: CurrentUser, store: StoreDep, kind: str | None = None,
              limit: int = Query(default=50, ge=1, le=500)) -> list[Job]:
    """最近的后台任务（调度员、管理员看全部，其他人看自己的）。"""
    return store.jobs(kind=kind, owner=None if user.manages else user.name, limit=limit)


@router.get("/jobs/{job_id}")
def get_job(job_id: str, user: CurrentUser, store: StoreDep) -> Job:
    """一个后台任务：状态、进度、结果。"""
    job = store.job(job_id)
    _may_see_job(job, user)
    return job


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


@router.get("/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request, user: CurrentUser, store: StoreDep) -> StreamingResponse:
    """任务进度推送（Server-Sent Events）：每次变化一个 progress 事件，结束时一个 done 事件。"""
    job = await asyncio.to_thread(store.job, job_id)
    _may_see_job(job, user)

    async def events():
        last = None
        quiet_since = time.monotonic()
        yield "retry: 2000\n\n"
        while True:
            try:
                job = await asyncio.to_thread(store.job, job_id)
            except NotFound as e:
                yield _sse("error", json.dumps({"detail": str(e), "error": "not_found"}, ensure_ascii=False))
                return
            data = job.model_dump_json()
            if job.status in FINISHED:
                yield _sse("done", data)
                return
            now = time.monotonic()
            if data != last:
                last, quiet_since = data, now
                yield _sse("progress", data)
            elif now - quiet_since >= KEEPALIVE_S:
                quiet_since = now
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


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
        "files": [{"path": f.path, "status": f.status, "observations": f.observations, "frames": _frames(f.stats),
                   "error": f.error} for f in files],
        "frames": sum(_frames(f.stats) for f in files),
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
