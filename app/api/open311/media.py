"""Photos citizens send with a request: checked (:func:`city.photos.read_photo`,
in Open311's words), the original kept as the case's evidence under
``$XUNJIAN_HOME/evidence/open311/``, and a public copy without EXIF (no GPS or
device data) under ``$XUNJIAN_HOME/open311/public/``, the only one served."""

from __future__ import annotations

import io
from pathlib import Path

from app.api.open311.formats import Open311Error
from city import settings
from city.photos import NotAPhoto, Photo, read_photo, store_file

MAX_PIXELS = 50_000_000
PUBLIC_MAX_SIDE = 2048  # the public copy of a photo is at most this wide/high


def media_dirs() -> tuple[Path, Path]:
    """(originals: the cases' evidence, public copies without metadata)."""
    home = settings.home()
    return home / "evidence" / "open311", home / "open311" / "public"


def check_media(path: Path) -> Photo:
    """An image Pillow can read, in one of :data:`city.photos.PHOTO_FORMATS`, not absurdly large."""
    try:
        return read_photo(path, MAX_PIXELS)
    except NotAPhoto as e:
        if e.why == "pixels":
            w, h = e.size
            raise Open311Error(400, f"照片像素过多（{w}×{h}）：最多 {MAX_PIXELS // 1_000_000} 百万像素") from None
        if e.why == "format":
            raise Open311Error(400, f"media 是 {e.format} 格式，不支持（支持 JPEG、PNG、WebP、BMP、GIF、TIFF）") from None
        raise Open311Error(400, "media 不是可读取的图片（支持 JPEG、PNG、WebP、BMP、GIF、TIFF）") from None


def save_photo(photo: Photo) -> tuple[Path, list[Path]]:
    """The original under ``evidence/open311/<sha256><ext>`` and a public JPEG without
    EXIF (orientation applied, at most 2048 px) under ``open311/public/<sha256>.jpg``:
    (the original's path, the files this call created)."""
    from PIL import Image, ImageOps

    originals, public = media_dirs()
    dest, pub = originals / f"{photo.sha256}{photo.suffix}", public / f"{photo.sha256}.jpg"
    created = []
    if not pub.is_file():
        with Image.open(photo.path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((PUBLIC_MAX_SIDE, PUBLIC_MAX_SIDE))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
        if store_file(pub, buf.getvalue()):
            created.append(pub)
    if store_file(dest, photo.path):
        created.append(dest)
    return dest, created
