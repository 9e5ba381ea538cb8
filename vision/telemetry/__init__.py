"""GPS/pose telemetry for patrol footage: read a track from GPX, NMEA, CSV,
DJI SRT or GoPro GPMF (:func:`load_track`), a still photo's pose from EXIF/XMP
(:func:`read_image_pose`), probe a video (:func:`probe`), put the track on the
video clock (:func:`align`) and sanity-check where it is (:func:`check_region`).

Every reader raises :class:`TelemetryError` (one Chinese line naming the file,
line and field) on bad input, and records what it skipped or assumed in
``Track.notes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from vision.telemetry.exif import ImagePose, read_image_pose
from vision.telemetry.media import MediaInfo, probe
from vision.telemetry.model import Pose, TelemetryError, Track, align, check_region

__all__ = ["ImagePose", "MediaInfo", "Pose", "TelemetryError", "Track", "align", "check_region", "load_track",
           "probe", "read_image_pose", "FORMATS"]

FORMATS = ("gpx", "nmea", "csv", "dji-srt", "gpmf", "exif")
_SUFFIX = {".gpx": "gpx", ".nmea": "nmea", ".csv": "csv", ".srt": "dji-srt", ".mp4": "gpmf", ".mov": "gpmf",
           ".360": "gpmf", ".jpg": "exif", ".jpeg": "exif"}
_SNIFF = (".log", ".txt", ".nmea")


def _sniff(path: Path) -> str:
    from vision.telemetry.model import read_text
    from vision.telemetry.nmea import looks_like_nmea

    text, _ = read_text(path)
    if looks_like_nmea(text):
        return "nmea"
    if "-->" in text and ("GPS" in text or "latitude" in text):
        return "dji-srt"
    raise TelemetryError(path, "无法识别轨迹格式：既不是 NMEA（$GPRMC/$GNGGA 等）也不是 DJI SRT；请用 fmt 指定")


def _image_track(path: Path) -> Track:
    ip = read_image_pose(path)
    p = ip.pose
    nan = float("nan")
    return Track(t=[0.0], lat=[p.lat], lon=[p.lon], alt=[nan if p.alt is None else p.alt],
                 heading=[nan if p.heading is None else p.heading], pitch=[nan if p.pitch is None else p.pitch],
                 yaw=[nan if p.yaw is None else p.yaw], start_utc=p.utc, source=path, fmt="exif", notes=ip.notes)


def load_track(path, *, fmt: str | None = None, coord_order: Literal["latlon", "lonlat"] | None = None) -> Track:
    """Read a track, choosing the reader by ``fmt`` or the file suffix
    (``.log``/``.txt`` are sniffed). ``coord_order`` overrides how the two
    coordinates are read: for tuple formats (DJI ``GPS(a, b)``) the order
    they are written in; for named fields (CSV/GPX/keyed SRT) ``'lonlat'``
    means the file's lat/lon labels are swapped."""
    path = Path(path)
    if coord_order not in (None, "latlon", "lonlat"):
        raise TelemetryError(path, f"coord_order 应为 latlon 或 lonlat，得到 {coord_order!r}", field="coord_order")
    if not path.is_file():
        raise TelemetryError(path, "文件不存在或不是普通文件")
    if fmt == "srt":
        fmt = "dji-srt"
    if fmt is None:
        suffix = path.suffix.lower()
        fmt = _sniff(path) if suffix in _SNIFF else _SUFFIX.get(suffix)
        if fmt is None:
            raise TelemetryError(path, f"不支持的轨迹文件类型 {path.suffix!r}（支持 {', '.join(sorted(_SUFFIX))}、.log、.txt）")
    if fmt not in FORMATS:
        raise TelemetryError(path, f"fmt 应为 {', '.join(FORMATS)} 之一，得到 {fmt!r}", field="fmt")
    if fmt == "gpx":
        from vision.telemetry.gpx import read_gpx

        return read_gpx(path, coord_order=coord_order)
    if fmt == "nmea":
        from vision.telemetry.nmea import read_nmea

        return read_nmea(path, coord_order=coord_order)
    if fmt == "csv":
        from vision.telemetry.csvtrack import read_csv

        return read_csv(path, coord_order=coord_order)
    if fmt == "dji-srt":
        from vision.telemetry.srt import read_srt

        return read_srt(path, coord_order=coord_order)
    if fmt == "gpmf":
        from vision.telemetry.gpmf import read_gpmf

        return read_gpmf(path)
    return _image_track(path)
