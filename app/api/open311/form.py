"""Reading the body of an Open311 POST: ``application/x-www-form-urlencoded`` (the
spec; at most :data:`FORM_MAX_BYTES`, read into memory) or ``multipart/form-data``
(:class:`MediaForm`: text fields, and at most one photo in the file field
``media``, streamed to a folder by :mod:`app.api.multipart`). Text must be UTF-8."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import Request
from python_multipart.exceptions import MultipartParseError

from app.api.multipart import FormReader, boundary_of, parse_disposition, read_multipart
from app.api.open311.formats import Open311Error

FORM_MAX_BYTES = 64 * 1024  # everything but the photo
MAX_FIELDS = 200


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.3g} MB" if n >= 1024 * 1024 else f"{n / 1024:.3g} KB"


def _not_utf8(what: str) -> Open311Error:
    return Open311Error(400, f"{what}不是合法的 UTF-8 文本：请用 UTF-8 编码提交")


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_utf8(what) from None


def _check_length(request: Request, limit: int, too_large: str) -> None:
    """400 for a Content-Length that is not a number, 413 (``too_large``) for one over ``limit``."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise Open311Error(400, "Content-Length 无效")
        if int(length) > limit:
            raise Open311Error(413, too_large)


async def _body(request: Request, limit: int, too_large: str) -> bytes:
    """The request body, refused with 413 (``too_large``) beyond ``limit`` bytes."""
    _check_length(request, limit, too_large)
    buf = bytearray()
    async for chunk in request.stream():
        buf.extend(chunk)
        if len(buf) > limit:
            raise Open311Error(413, too_large)
    return bytes(buf)


def _parse_urlencoded(body: bytes) -> list[tuple[str, str]]:
    text = _utf8(body, "请求体")
    try:
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise Open311Error(400, "请求体含有不是 UTF-8 的百分号编码：请用 UTF-8 编码提交") from None
    except ValueError as e:
        raise Open311Error(400, f"请求体不是合法的表单数据：{e}") from None


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class MediaForm(FormReader):
    """An Open311 POST as ``multipart/form-data``: text fields (at most
    :data:`MAX_FIELDS`, each at most :data:`FORM_MAX_BYTES`) and at most one photo,
    in the file field ``media`` (at most ``max_media`` bytes), written to ``folder``."""

    refusals = (Open311Error,)
    max_field = FORM_MAX_BYTES

    def __init__(self, folder: Path, max_media: int):
        super().__init__()
        self.folder, self.max_media = folder, max_media
        self.max_body = max_media + FORM_MAX_BYTES
        self._photo: tuple[Path, int] | None = None
        self._parts = 0
        self._path: Path | None = None
        self._fh = None
        self._size = 0
        self._named = False

    @property
    def too_large_message(self) -> str:
        return f"请求过大：照片最多 {_size(self.max_media)}，其余字段合计最多 {_size(FORM_MAX_BYTES)}"

    @property
    def photo(self) -> Path | None:
        """The photo's file; None without one (or for a file input left empty)."""
        return self._photo[0] if self._photo and self._photo[1] else None

    def disposition(self, raw: bytes) -> tuple[str, str | None]:
        name, filename = parse_disposition(raw.decode("utf-8", "surrogateescape"))
        if name is None:
            raise Open311Error(400, "multipart 的每一部分都要有 Content-Disposition 的 name")
        return _utf8(_raw(name), "字段名"), None if filename is None else _utf8(_raw(filename), "文件名")

    def begin_field(self, name: str) -> None:
        if len(self.fields) >= MAX_FIELDS:
            raise Open311Error(400, "表单字段过多")

    def begin_file(self, name: str | None, filename: str) -> bool:
        if name != "media":
            raise Open311Error(400, f"文件字段「{name[:32]}」不受理：照片请用字段名 media")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._path = self.folder / f"media-{self._parts}"
        self._parts += 1
        self._fh = self._path.open("xb")
        self._size, self._named = 0, bool(filename)
        return True

    def file_data(self, chunk: memoryview) -> None:
        self._size += len(chunk)
        if self._size > self.max_media:
            raise Open311Error(413, f"照片过大：最多 {_size(self.max_media)}")
        self._fh.write(chunk)

    def end_file(self) -> None:
        self.close()
        if not (self._size or self._named):  # a nameless empty part: nothing sent
            return
        if self._photo is not None:
            raise Open311Error(400, "每条诉求最多上传一张照片（字段 media）")
        self._photo = (self._path, self._size)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def field_too_long(self, name: str) -> Exception:
        return Open311Error(413, f"字段「{name[:32]}」过长")

    def field_not_utf8(self, name: str) -> Exception:
        return _not_utf8(f"字段「{name[:32]}」")

    def body_too_large(self) -> Exception:
        return Open311Error(413, self.too_large_message)

    def malformed(self, error: MultipartParseError) -> Exception:
        return Open311Error(400, f"multipart/form-data 格式错误：{type(error).__name__}")

    def incomplete(self) -> Exception:
        return Open311Error(400, "multipart/form-data 格式错误：表单没有正常结束")


async def read_form(request: Request, folder: Path, max_media: int) -> tuple[dict[str, list[str]], Path | None]:
    """(each field's values, those in the query string first; the photo's file
    under ``folder``, or None). The photo may have at most ``max_media`` bytes."""
    ctype = request.headers.get("content-type", "")
    kind = ctype.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = MediaForm(folder, max_media)
        _check_length(request, form.max_body, form.too_large_message)
        boundary = boundary_of(ctype)
        if not boundary:
            raise Open311Error(400, "multipart/form-data 缺少 boundary")
        await read_multipart(request, form, boundary)
        pairs, photo = form.fields, form.photo
    elif kind == "application/x-www-form-urlencoded":
        body = await _body(request, FORM_MAX_BYTES, f"请求体过大：最多 {_size(FORM_MAX_BYTES)}（照片请用 multipart/form-data 上传）")
        pairs, photo = _parse_urlencoded(body), None
    else:
        raise Open311Error(415, f"不支持的 Content-Type「{kind[:64] or '无'}」：请用 application/x-www-form-urlencoded，"
                                "或带照片时用 multipart/form-data（文件字段 media）")
    fields: dict[str, list[str]] = {}
    for k, v in [*request.query_params.multi_items(), *pairs]:
        fields.setdefault(k, []).append(v)
    return fields, photo
