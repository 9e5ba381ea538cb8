"""Footage uploads: the limits, the refusals with a status of their own, file-name
checks, and the resumable uploads for large videos.

Limits (read per request): ``XUNJIAN_MAX_UPLOAD_MB`` per file (default 4096)
and ``XUNJIAN_MAX_BATCH_MB`` per request / batch (default 20480). A request
that breaks one is refused with :class:`Refused` (413 too large, 415 not a
type we take, 409, 422, 507 no disk space): ``{"detail", "error", **extra}``.

Resumable (dispatchers and admins): ``POST /api/uploads`` {filename, size,
sha256?} → ``PUT /api/uploads/{id}`` with ``Content-Range: bytes START-END/TOTAL``
(a chunk that does not start at ``received`` → 409 with ``received``) → the
finished uploads become a batch with ``POST /api/batches/from-uploads``
(:mod:`app.api.batches`, which takes them with :func:`finished_uploads`,
:func:`take_data` and :func:`forget`). Upload state lives on disk (a JSON
sidecar beside the data, under ``$XUNJIAN_HOME/uploads/.resumable/<id>/``), so it
survives a restart; uploads untouched for :data:`RESUMABLE_TTL` are swept.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import re
import shutil
import time
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from app.api.deps import Manager
from app.api.multipart import drain
from city import settings
from city.errors import InvalidInput, NotFound
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
router = APIRouter(prefix="/api", tags=["uploads"])

CHUNK_SIZE = 8 << 20
"""The chunk size suggested to resumable-upload clients (any size works)."""
RESUMABLE_TTL = timedelta(days=7)
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


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


# -- refusals with a status of their own -------------------------------------------------


class Refused(Exception):
    """A request refused with ``status`` (413, 415, 409, 507…): ``{"detail", "error", **extra}``."""

    def __init__(self, status: int, detail: str, error: str, **extra):
        super().__init__(detail)
        self.status, self.detail, self.error, self.extra = status, detail, error, extra

    def response(self) -> JSONResponse:
        return JSONResponse({"detail": self.detail, "error": self.error, **self.extra}, status_code=self.status)


def refusals(fn):
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


def too_large(name: str, limit: int) -> Refused:
    return Refused(413, f"文件 {name} 超过单个文件大小上限 {_human(limit)}，已拒绝，本次上传的文件均未保存", "too_large",
                   file=name, limit_bytes=limit)


def too_large_total(limit: int) -> Refused:
    return Refused(413, f"本次上传的文件合计超过上限 {_human(limit)}，已拒绝，本次上传的文件均未保存", "too_large",
                   limit_bytes=limit)


def unsupported(name: str, why: str = "不支持的文件类型") -> Refused:
    return Refused(415, f"{name}：{why}。可以上传：{ACCEPTED_ZH}", "unsupported_type", file=name, accepted=ACCEPTED)


def check_disk(need: int) -> None:
    """507 unless the uploads' disk has ``need`` bytes free (and 512 MB to spare)."""
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


def file_kind(name: str) -> str:
    """What a file is by its name (video, image, telemetry, manifest, archive…); else 415."""
    kind = upload_kind(name)
    if kind is None:
        raise unsupported(name)
    return kind


# -- resumable uploads: state on disk -----------------------------------------------------------


class NewUpload(BaseModel):
    filename: str = Field(min_length=1, max_length=255)
    size: int = Field(gt=0, description="文件总字节数")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$", description="可选：传完后校验")


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


# -- resumable uploads: what a batch takes from them ----------------------------------------------


def finished_uploads(upload_ids: list[str], user: User) -> list[dict]:
    """The uploads (each once) of one new batch, all complete and checked: their
    state (``filename``, ``kind``, ``size``, ``sha256_actual``…). 409 for one not
    complete yet, 413 when they are too large together."""
    metas = [_load_upload(u, user) for u in dict.fromkeys(upload_ids)]
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
        raise too_large_total(max_batch_bytes())
    return metas


def take_data(meta: dict, dest: Path) -> None:
    """Put an upload's data at ``dest`` (a hard link where the disk allows)."""
    src = _upload_dir(meta["upload_id"]) / "data"
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def forget(meta: dict) -> None:
    """Remove an upload (its data now belongs to a batch)."""
    shutil.rmtree(_upload_dir(meta["upload_id"]), ignore_errors=True)


# -- resumable uploads: the endpoints ----------------------------------------------------------


@router.post("/uploads", status_code=201)
@refusals
def create_upload(body: NewUpload, user: Manager) -> dict:
    """开始一个可续传的上传（大视频）：之后用 PUT 分片上传，Content-Range: bytes START-END/TOTAL。"""
    name = check_name(body.filename)
    kind = file_kind(name)
    if kind == "manifest":
        name = name.lower()
    limit = max_file_bytes()
    if body.size > limit:
        raise too_large(name, limit)
    check_disk(body.size)
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


@router.put("/uploads/{upload_id}")
@refusals
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
        await drain(chunks)
        raise InvalidInput(f"分片比 Content-Range 声明的 {want} 字节长，已丢弃这个分片")
    after = start + got
    if before < min(SNIFF_BYTES, size) <= after:
        with data.open("rb") as f:
            why = looks_like(meta["kind"], meta["filename"], f.read(SNIFF_BYTES))
        if why:
            shutil.rmtree(_upload_dir(upload_id), ignore_errors=True)
            raise unsupported(meta["filename"], why)
    if after == size:
        await asyncio.to_thread(_finish_upload, meta)
    return _upload_state(meta) | {"received": after}
