"""Reading a ``multipart/form-data`` body as it arrives (python-multipart), for
``POST /api/batches`` (:mod:`app.api.batches`) and Open311's ``POST requests``
(:mod:`app.api.open311.form`).

:class:`FormReader` keeps the form's text fields (UTF-8, each at most
``max_field`` bytes) and hands every file part to its subclass piece by piece,
so a file is never held in memory; the subclass decides what a file part may
be and words the refusals. :func:`read_multipart` feeds it the request body; after
a refusal it reads and drops the rest of the body (:func:`drain`), so the
client sees the answer rather than a broken connection.
"""

from __future__ import annotations

import asyncio
import re

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser
from starlette.requests import ClientDisconnect

from city.errors import InvalidInput, XunjianError

DRAIN_CAP = 256 << 20
"""After refusing a body midway, read and discard at most this much more of it."""
FEED_BYTES = 1 << 20
"""The body is parsed (in a worker thread) in pieces of about this size."""


def boundary_of(content_type: str) -> str | None:
    """The ``boundary`` parameter of a Content-Type header, if any."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    return m.group(1) if m else None


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


def parse_disposition(value: str) -> tuple[str | None, str | None]:
    """(name, filename) of a part's Content-Disposition. The filename is taken as
    sent (no IE-style path stripping), so a path in it is refused, not hidden;
    a backslash anywhere in it stays (and is refused by :func:`app.api.uploads.check_name`)."""
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


def decode_header(raw: bytes) -> str:
    """A header value: UTF-8 if it is, else Latin-1 (HTTP's own)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class FormReader:
    """python-multipart callbacks for one form. Text fields land in :attr:`fields`
    (name, value) in order; a file part goes to :meth:`begin_file`,
    :meth:`file_data` and :meth:`end_file`. The refusals are :class:`InvalidInput`
    unless a subclass words them otherwise; ``refusals`` are the exceptions that
    refuse the body (:func:`read_multipart` drains it after one)."""

    max_field = 64 << 10
    """Most bytes in one text field."""
    max_body: int | None = None
    """Most bytes in the whole body (None: no limit of its own)."""
    refusals: tuple[type[BaseException], ...] = (XunjianError,)

    def __init__(self) -> None:
        self.fields: list[tuple[str, str]] = []
        self.ended = False
        self.headers: dict[bytes, bytes] = {}
        self._hf = bytearray()
        self._hv = bytearray()
        self._field: str | None = None
        self._value = bytearray()
        self._file = False

    # -- what a subclass decides ----------------------------------------------------------

    def disposition(self, raw: bytes) -> tuple[str | None, str | None]:
        """(name, filename) of a part from its raw Content-Disposition."""
        return parse_disposition(decode_header(raw))

    def begin_field(self, name: str) -> None:
        """A text field begins (refuse it here, e.g. one too many)."""

    def begin_file(self, name: str | None, filename: str) -> bool:
        """A file part begins: whether to take its data. By default none is taken."""
        return False

    def file_data(self, chunk: memoryview) -> None:
        """The next piece of the current file part."""

    def end_file(self) -> None:
        """The current file part is complete."""

    def close(self) -> None:
        """The body was refused or broke off: close what is open."""

    def field_too_long(self, name: str) -> Exception:
        return InvalidInput(f"表单字段 {name} 太长")

    def field_not_utf8(self, name: str) -> Exception:
        return InvalidInput(f"表单字段 {name} 不是 UTF-8 文本")

    def body_too_large(self) -> Exception:
        return InvalidInput("请求体太大")

    def malformed(self, error: MultipartParseError) -> Exception:
        return InvalidInput(f"multipart 表单格式错误：{error}")

    def incomplete(self) -> Exception:
        return InvalidInput("上传不完整：multipart 表单没有正常结束（连接是否中断？）")

    # -- python-multipart's callbacks ---------------------------------------------------------

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
            "on_part_data", "on_part_end", "on_end")}

    def on_part_begin(self) -> None:
        self.headers = {}
        self._field, self._value, self._file = None, bytearray(), False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hf += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hv += data[start:end]

    def on_header_end(self) -> None:
        self.headers[bytes(self._hf).strip().lower()] = bytes(self._hv).strip()
        self._hf, self._hv = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        name, filename = self.disposition(self.headers.get(b"content-disposition", b""))
        if filename is None:
            self.begin_field(name or "")
            self._field = name or ""
        else:
            self._file = self.begin_file(name, filename)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._field is not None:
            self._value += data[start:end]
            if len(self._value) > self.max_field:
                raise self.field_too_long(self._field)
        elif self._file:
            self.file_data(memoryview(data)[start:end])

    def on_part_end(self) -> None:
        if self._field is not None:
            try:
                value = bytes(self._value).decode("utf-8")
            except UnicodeDecodeError:
                raise self.field_not_utf8(self._field) from None
            self.fields.append((self._field, value))
            self._field = None
        elif self._file:
            self._file = False
            self.end_file()

    def on_end(self) -> None:
        self.ended = True


async def drain(chunks, cap: int = DRAIN_CAP) -> None:
    """Read and drop the rest of a refused body (at most ``cap`` bytes)."""
    seen = 0
    try:
        async for chunk in chunks:
            seen += len(chunk)
            if seen > cap:
                return
    except (ClientDisconnect, RuntimeError):
        return


async def read_multipart(request: Request, form: FormReader, boundary: str) -> None:
    """Feed the body of ``request`` to ``form`` as it arrives. Raises the form's
    refusals (the rest of the body drained), or :class:`ClientDisconnect`."""
    parser = MultipartParser(boundary, form.callbacks())
    chunks = request.stream().__aiter__()
    buf = bytearray()
    seen = 0
    finished = False
    try:
        try:
            async for chunk in chunks:
                seen += len(chunk)
                if form.max_body is not None and seen > form.max_body:
                    raise form.body_too_large()
                buf += chunk
                if len(buf) >= FEED_BYTES:
                    data, buf = bytes(buf), bytearray()
                    await asyncio.to_thread(parser.write, data)
            finished = True
            if buf:
                await asyncio.to_thread(parser.write, bytes(buf))
            parser.finalize()
        except MultipartParseError as e:
            raise form.malformed(e) from None
    except form.refusals:
        form.close()
        if not finished:
            await drain(chunks)
        raise
    except BaseException:
        form.close()
        raise
    if not form.ended:
        form.close()
        raise form.incomplete()
