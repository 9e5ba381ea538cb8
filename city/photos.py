"""Photos that go with a lifecycle action (e.g. the department's 处置后照片):
checked with Pillow before anything changes, copied to
``$XUNJIAN_HOME/evidence/<case number>/<sha256><ext>`` (the same content once),
and removed again when the action is refused, so the store never references a
missing file and no file lies around that the store does not reference.

Used by ``xunjian cases act --photo`` and ``POST /api/cases/{number}/actions``;
Open311 checks and keeps the photos citizens send with :func:`read_photo` and
:func:`store_file` (:mod:`app.api.open311.media`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import NamedTuple

from city import settings
from city.cases import Evidence
from city.errors import InvalidInput
from city.lifecycle import Action

#: Pillow image formats accepted as photos, and the file extension of their copies.
PHOTO_FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}


class Photo(NamedTuple):
    path: Path
    sha256: str
    suffix: str
    format: str  # Pillow's name for it (JPEG, PNG…)


class NotAPhoto(Exception):
    """Why a file is not a photo: ``why`` is ``unreadable``, ``format`` (not one of
    :data:`PHOTO_FORMATS`; ``format`` says which) or ``pixels`` (``size`` has too many)."""

    def __init__(self, why: str, format: str | None = None, size: tuple[int, int] | None = None):
        super().__init__(why)
        self.why, self.format, self.size = why, format, size


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_photo(path: Path, max_pixels: int | None = None) -> Photo:
    """The image file at ``path``, if Pillow reads it, its format is one of
    :data:`PHOTO_FORMATS` and it has at most ``max_pixels``; else :class:`NotAPhoto`."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            fmt, (w, h) = im.format, im.size
            if max_pixels is not None and w * h > max_pixels:
                raise NotAPhoto("pixels", fmt, (w, h))
            im.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise NotAPhoto("unreadable") from None
    if fmt not in PHOTO_FORMATS:
        raise NotAPhoto("format", fmt)
    return Photo(path, sha256_file(path), PHOTO_FORMATS[fmt], fmt)


def check_photo(ref: str | Path, name: str | None = None) -> Photo:
    """A local image file Pillow can read, in one of :data:`PHOTO_FORMATS`;
    ``name`` is how messages call it (default: the path as given)."""
    name = name or str(ref)
    path = Path(ref).expanduser()
    if not path.is_file():
        raise InvalidInput(f"照片文件「{name}」不存在")
    try:
        return read_photo(path)
    except NotAPhoto as e:
        if e.why == "format":
            raise InvalidInput(f"「{name}」是 {e.format} 格式，不支持作为照片（支持 JPEG、PNG、WebP、BMP、GIF、TIFF）") from None
        raise InvalidInput(f"「{name}」不是可读取的图片文件（支持 JPEG、PNG、WebP、BMP、GIF、TIFF），请检查文件") from None


def check_photos(refs: list[str | Path], names: list[str] | None = None) -> list[Photo]:
    """Every photo checked, each content once."""
    photos: dict[str, Photo] = {}
    for i, ref in enumerate(refs):
        p = check_photo(ref, names[i] if names else None)
        photos.setdefault(p.sha256, p)
    return list(photos.values())


def photo_note(action: Action) -> str:
    """The evidence note of photos taken with ``action``."""
    return "处置后照片" if action is Action.COMPLETE else f"{action.value}照片"


def store_file(dest: Path, content: Path | bytes) -> bool:
    """Put ``content`` (a file's, or bytes) at ``dest`` atomically, unless a file is
    there already (named by its sha256: the same content). Whether this call wrote it."""
    if dest.is_file():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:8]}.part")  # concurrent writers of one file
    if isinstance(content, bytes):
        part.write_bytes(content)
    else:
        shutil.copyfile(content, part)
    os.replace(part, dest)
    return True


def copy_photos(number: str, photos: list[Photo], note: str) -> tuple[list[Evidence], list[Path]]:
    """Copy photos to ``$XUNJIAN_HOME/evidence/<number>/<sha256><ext>``: their evidence
    records, and the files this call created (a copy already there is reused).
    ``number`` must be a case number from the store (it names a folder)."""
    folder = settings.home() / "evidence" / number
    evidence, created = [], []
    for p in photos:
        dest = folder / f"{p.sha256}{p.suffix}"
        if store_file(dest, p.path):
            created.append(dest)
        evidence.append(Evidence(kind="image", uri=str(dest), note=note, sha256=p.sha256))
    return evidence, created


def remove_files(files: list[Path]) -> None:
    """Delete files (and their folders, where now empty)."""
    for f in files:
        f.unlink(missing_ok=True)
    for d in {f.parent for f in files}:
        try:
            d.rmdir()  # only if now empty
        except OSError:
            pass
