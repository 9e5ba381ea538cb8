"""Pose of a still photo (drone or phone JPEG): EXIF GPS via Pillow, capture
time, focal length (+35 mm equivalent), image size, and DJI's XMP fields
(``drone-dji:RelativeAltitude``, ``AbsoluteAltitude``, ``GimbalPitchDegree``,
``GimbalYawDegree``, ``FlightYawDegree``) when present.

The XMP packet is found in the raw bytes and read with a regex that accepts
both the attribute (``drone-dji:X="+1.2"``) and element forms, so no XML
library (Pillow's ``getxmp`` needs ``defusedxml``) is required. Height above
ground is only known from ``RelativeAltitude``; EXIF ``GPSAltitude`` is sea
level and is kept as ``abs_alt``. Time: EXIF GPS date/time (UTC) when present,
else ``DateTimeOriginal`` with ``OffsetTimeOriginal``, else None (noted).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from vision.telemetry.model import Pose, TelemetryError, check_latlon

_GPS_IFD, _EXIF_IFD = 0x8825, 0x8769
_XMP_START, _XMP_END = b"<x:xmpmeta", b"</x:xmpmeta>"
_DJI_FIELDS = ("RelativeAltitude", "AbsoluteAltitude", "GimbalPitchDegree", "GimbalYawDegree", "GimbalRollDegree",
               "FlightYawDegree", "FlightPitchDegree", "FlightRollDegree")


@dataclass(frozen=True)
class ImagePose:
    """Where and how a still was taken; ``pose.t`` is 0."""

    pose: Pose
    focal_mm: float | None
    focal_35mm: float | None
    width: int
    height: int
    has_xmp: bool
    abs_alt: float | None = None
    source: Path = Path("")
    notes: list[str] = field(default_factory=list)


def dji_xmp(raw: bytes) -> dict[str, float] | None:
    """DJI ``drone-dji:*`` numbers from the XMP packet in ``raw`` (None when no packet)."""
    i = raw.find(_XMP_START)
    if i < 0:
        return None
    j = raw.find(_XMP_END, i)
    packet = raw[i:j if j > 0 else len(raw)].decode("utf-8", "replace")
    out = {}
    for name in _DJI_FIELDS:
        m = re.search(rf'drone-dji:{name}\s*=\s*"([^"]*)"', packet) or re.search(
            rf"<drone-dji:{name}>([^<]*)</drone-dji:{name}>", packet)
        if m:
            try:
                out[name] = float(m.group(1).strip())
            except ValueError:
                pass
    return out


def _ratio(x) -> float:
    return float(x[0]) / float(x[1]) if isinstance(x, tuple) else float(x)


def _num(x) -> float | None:
    """A finite float from an EXIF value (rational, tuple, number) or None."""
    try:
        v = _ratio(x)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def _dms(value, ref, path, name) -> float:
    try:
        d, m, s = (_ratio(v) for v in value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise TelemetryError(path, f"EXIF GPS 值无效：{value!r}", field=name) from None
    x = d + m / 60.0 + s / 3600.0
    return -x if str(ref).strip().upper() in ("S", "W") else x


def _when(gps: dict, exif: dict, notes: list[str]) -> datetime | None:
    try:
        if 29 in gps and 7 in gps:  # GPSDateStamp, GPSTimeStamp (UTC)
            h, m, s = (_ratio(v) for v in gps[7])
            d = datetime.strptime(str(gps[29]).strip(), "%Y:%m:%d").replace(tzinfo=timezone.utc)
            return d + timedelta(hours=h, minutes=m, seconds=s)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        pass
    raw = exif.get(36867)  # DateTimeOriginal
    if not raw:
        return None
    try:
        dt = datetime.strptime(str(raw).strip(), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        notes.append(f"DateTimeOriginal 格式无效：{raw!r}")
        return None
    off = exif.get(36881)  # OffsetTimeOriginal "+08:00"
    if off and re.fullmatch(r"[+-]\d{2}:\d{2}", str(off).strip()):
        sign = -1 if str(off).strip()[0] == "-" else 1
        hh, mm = map(int, str(off).strip()[1:].split(":"))
        return dt.replace(tzinfo=timezone(sign * timedelta(hours=hh, minutes=mm))).astimezone(timezone.utc)
    notes.append(f"拍摄时间 {dt} 没有时区信息，未换算为 UTC")
    return None


def read_image_pose(path) -> ImagePose:
    """Pose of a JPEG (see the module docstring); no EXIF GPS is an error."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise TelemetryError(path, "图片文件不存在")
    try:
        with Image.open(path) as im:
            width, height = im.size
            ex = im.getexif()
            gps, exif = dict(ex.get_ifd(_GPS_IFD)), dict(ex.get_ifd(_EXIF_IFD))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as e:
        raise TelemetryError(path, f"不是可读取的图片（{e}）") from None
    except ImportError:  # ultralytics wraps Image.open and tries pi_heif on anything PIL cannot identify
        raise TelemetryError(path, "不是可读取的图片（无法识别的图片格式）") from None
    if not (gps.get(2) and gps.get(4)):
        raise TelemetryError(path, "图片没有 EXIF GPS 坐标（拍摄时未开启定位，或坐标已被删除）", field="GPSLatitude")
    lat = _dms(gps[2], gps.get(1, "N"), path, "GPSLatitude")
    lon = _dms(gps[4], gps.get(3, "E"), path, "GPSLongitude")
    check_latlon(lat, lon, path)
    notes: list[str] = []
    abs_alt = None
    if 6 in gps:
        abs_alt = _num(gps[6])
        if abs_alt is None:
            notes.append("EXIF GPSAltitude 无效")
        elif gps.get(5) in (1, b"\x01"):
            abs_alt = -abs_alt
    raw = path.read_bytes()
    xmp = dji_xmp(raw)
    x = xmp or {}
    heading = x.get("FlightYawDegree")
    if heading is None:  # GPSImgDirection: where the camera points
        heading = _num(gps.get(17))
    yaw = x["GimbalYawDegree"] if "GimbalYawDegree" in x else (heading if "FlightYawDegree" not in x else None)
    pose = Pose(t=0.0, lat=lat, lon=lon, alt=x.get("RelativeAltitude"),
                heading=None if heading is None else heading % 360.0, speed=None,
                pitch=x.get("GimbalPitchDegree"), yaw=None if yaw is None else yaw % 360.0,
                utc=_when(gps, exif, notes))
    if "AbsoluteAltitude" in x:
        abs_alt = x["AbsoluteAltitude"]
    f35 = _num(exif.get(41989))
    return ImagePose(pose=pose, focal_mm=_num(exif.get(37386)) or None, focal_35mm=f35 or None,
                     width=width, height=height, has_xmp=xmp is not None, abs_alt=abs_alt, source=path, notes=notes)
