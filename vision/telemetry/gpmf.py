"""GoPro GPMF telemetry in MP4/MOV: camera GPS (``GPS5``, HERO5–10/MAX; ``GPS9``,
HERO11+) and, for GoPro Karma drone footage, the drone's own fused position
(``GLPI``, the MAVLink GLOBAL_POSITION_INT record in the "Position" stream).

Reader choice: the ``gpmd`` track is demuxed with PyAV (``av``: maintained,
wheels bundle ffmpeg on every platform, so a plain ``pip install`` works, and
:mod:`vision.telemetry.media` needs it anyway); the payloads are decoded by the
small KLV decoder below, which follows GoPro's published GPMF spec (key, type,
size, repeat; sticky ``SCAL``/``TYPE``; complex ``?`` records). We evaluated
``py-gpmf-parser`` (pybind11 wrapper of GoPro's C gpmf-parser): it reads the
same samples, but it is a single 0.1.x release, returns silently empty arrays
for truncated or non-video files (no error to tell the user), and does not
expose the string/time keys (``GPSU``) needed for absolute time.

Timing: each payload covers ``[pts, pts + duration)`` of the media clock and
its samples are spread evenly over it (what GoPro's parser does), so the track
is on the video clock (``media_clock=True``); ``start_utc`` comes from
``GPSU`` (GPS5) or the Karma "System Time" record. Samples without a 2D/3D fix
(``GPSF`` < 2) are dropped. ``alt`` stays NaN for camera GPS (it is an
ellipsoid/sea-level height, not height above ground); Karma gives the height
above the take-off point (``relative_alt``), heading and velocity.
"""

from __future__ import annotations

import re
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from vision.telemetry.media import _import_av
from vision.telemetry.model import TelemetryError, Track

_DTYPES = {"b": "i1", "B": "u1", "s": ">i2", "S": ">u2", "l": ">i4", "L": ">u4", "j": ">i8", "J": ">u8",
           "f": ">f4", "d": ">f8", "q": ">i4", "Q": ">i8"}
_STICKY = {"SCAL", "TYPE", "GPSU", "GPSF", "GPSP", "STNM", "UNIT", "SIUN", "TSMP", "STMP"}


def _walk(buf: bytes, out: list, sticky: dict | None = None, depth: int = 0) -> None:
    """Decode one KLV level; appends ``(fourcc, value, sticky-copy)`` for data entries."""
    i, n = 0, len(buf)
    sticky = {} if sticky is None else sticky
    while i + 8 <= n:
        key = buf[i:i + 4]
        typ, size, rep = buf[i + 4], buf[i + 5], struct.unpack(">H", buf[i + 6:i + 8])[0]
        length = size * rep
        if i + 8 + length > n or not re.fullmatch(rb"[A-Z0-9a-z ]{4}", key):
            raise ValueError(f"KLV entry {key!r} at byte {i} overruns its container")
        data = buf[i + 8:i + 8 + length]
        k = key.decode("ascii")
        if typ == 0:
            if depth < 4:
                _walk(data, out, dict(sticky) if k == "STRM" else {}, depth + 1)
        else:
            val = (chr(typ), size, rep, data)
            if k in _STICKY:
                sticky[k] = val
            else:
                out.append((k, val, dict(sticky)))
        i += 8 + ((length + 3) & ~3)


def _expand(type_str: str) -> str:
    """``'f[3]L'`` → ``'fffL'`` (GPMF complex TYPE strings)."""
    return re.sub(r"(.)\[(\d+)\]", lambda m: m.group(1) * int(m.group(2)), type_str)


def _numbers(val, sticky) -> np.ndarray:
    """A (repeat, elements) float array from one entry, scaled by its ``SCAL``."""
    typ, size, rep, data = val
    if typ == "?":
        tstr = _expand(sticky["TYPE"][3].rstrip(b"\0").decode("ascii"))
        dt = np.dtype([(f"f{j}", _DTYPES[c]) for j, c in enumerate(tstr)])
        arr = np.frombuffer(data, dtype=dt, count=rep)
        a = np.stack([arr[f].astype(float) for f in dt.names], axis=1)
    else:
        dt = np.dtype(_DTYPES[typ])
        a = np.frombuffer(data, dtype=dt, count=rep * size // dt.itemsize).astype(float).reshape(rep, -1)
        if typ in "qQ":
            a /= 2.0 ** (16 if typ == "q" else 32)
    if "SCAL" in sticky:
        st, _, srep, sdata = sticky["SCAL"]
        scal = np.frombuffer(sdata, dtype=_DTYPES[st], count=srep).astype(float)
        scal[scal == 0] = 1.0
        a = a / (scal if len(scal) == a.shape[1] else scal[0])
    return a


def _gpsu(val) -> datetime | None:
    s = val[3].decode("ascii", "replace").strip("\0 ")
    try:
        return datetime.strptime(s, "%y%m%d%H%M%S.%f").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _payloads(path: Path):
    """``(t_in, t_out, bytes)`` per GPMF payload, on the video's clock."""
    av = _import_av(path)

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise TelemetryError(path, f"不是可读取的视频文件，或文件已损坏/被截断（{getattr(e, 'strerror', None) or e}）") from None
    with container:
        streams = [s for s in container.streams if s.type == "data"]
        met = [s for s in streams if "MET" in s.metadata.get("handler_name", "")] or streams
        video = next(iter(container.streams.video), None)
        v0 = float(video.start_time * video.time_base) if video is not None and video.start_time else 0.0
        out = []
        try:
            for s in met:
                for p in container.demux(s):
                    if p.size and p.pts is not None:
                        t_in = float(p.pts * p.time_base) - v0
                        out.append((t_in, t_in + float((p.duration or 0) * p.time_base), bytes(p)))
                if out and out[0][2][:4] == b"DEVC":
                    break
                out = []
        except av.error.FFmpegError as e:
            raise TelemetryError(path, f"GPMF 数据轨读取失败，文件可能损坏或被截断（{e}）") from None
    if not out:
        raise TelemetryError(path, "视频中没有 GoPro GPMF 遥测数据轨（gpmd），无法读取 GPS")
    return out


def _spread(t_in: float, t_out: float, n: int) -> np.ndarray:
    return t_in + (t_out - t_in) * np.arange(n) / max(n, 1)


def read_gpmf(path) -> Track:
    """GPS track of a GoPro video (see the module docstring)."""
    path = Path(path)
    return track_from_payloads(path, _payloads(path))


def track_from_payloads(path: Path, payloads: list[tuple[float, float, bytes]]) -> Track:
    """The track from ``(t_in, t_out, payload bytes)`` tuples (see :func:`read_gpmf`)."""
    gps, karma, syst, notes, bad = [], [], [], [], 0
    start_utc = None
    for t_in, t_out, buf in payloads:
        entries: list = []
        try:
            _walk(buf, entries)
        except (ValueError, KeyError, struct.error) as e:
            bad += 1
            if bad == 1:
                notes.append(f"跳过损坏的 GPMF 数据块（{t_in:.1f} s 处：{e}）")
            continue
        for key, val, sticky in entries:
            try:
                if key in ("GPS5", "GPS9"):
                    a = _numbers(val, sticky)
                    t = _spread(t_in, t_out, len(a))
                    if key == "GPS9":
                        ok = a[:, 8] >= 2
                    else:
                        fix = _numbers(sticky["GPSF"], {})[0, 0] if "GPSF" in sticky else 3
                        ok = np.full(len(a), fix >= 2)
                        if start_utc is None and "GPSU" in sticky and ok.any():
                            u = _gpsu(sticky["GPSU"])
                            start_utc = u - timedelta(seconds=t_in) if u else None
                    gps.append(np.column_stack([t, a[:, :5], ok]))
                elif key == "GLPI":
                    karma.append((t_in, _numbers(val, sticky)))
                elif key == "SYST":
                    syst.append(_numbers(val, sticky))
            except (KeyError, ValueError, UnicodeDecodeError) as e:
                bad += 1
                notes.append(f"无法解码 {key}（{t_in:.1f} s 处：{e}）")
    if gps:
        return _camera_track(path, np.concatenate(gps), start_utc, notes)
    if karma:
        return _karma_track(path, karma, syst, notes)
    raise TelemetryError(path, "GPMF 中没有 GPS 数据（未找到 GPS5/GPS9，也不是 Karma 无人机的 GLPI 位置记录）")


def _valid(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Finite, in range and not the (0, 0) placeholder of a receiver without a fix."""
    with np.errstate(invalid="ignore"):
        return (np.abs(lat) <= 90) & (np.abs(lon) <= 180) & ~((lat == 0) & (lon == 0))


def _camera_track(path: Path, a: np.ndarray, start_utc, notes: list[str]) -> Track:
    ok = (a[:, 6] > 0) & _valid(a[:, 1], a[:, 2])
    if (~ok).any():
        notes.append(f"丢弃 {int((~ok).sum())} 个未定位或无效（GPSF<2、坐标为 0 或超出范围）的 GPS 样本")
    a = a[ok]
    if not len(a):
        raise TelemetryError(path, "GPMF 中的 GPS 样本全部未定位（GPSF<2），相机可能未搜到卫星")
    if start_utc is None:
        notes.append("GPMF 中没有 GPSU 时间，轨迹无绝对时间")
    return Track(t=a[:, 0], lat=a[:, 1], lon=a[:, 2], speed=a[:, 4], start_utc=start_utc,
                 source=path, fmt="gpmf", notes=notes, media_clock=True)


def _karma_track(path: Path, karma, syst, notes: list[str]) -> Track:
    """GLPI columns: time_boot s, lat, lon, alt MSL m, relative alt m, vx, vy, vz m/s, hdg deg."""
    karma = [(t_in, rec) for t_in, rec in karma if len(rec) and rec.shape[1] >= 9]
    if karma:
        offset = float(np.median([t_in - rec[0, 0] for t_in, rec in karma]))  # media time = boot time + offset
        a = np.concatenate([rec for _, rec in karma])
        a = a[_valid(a[:, 1], a[:, 2]) & np.isfinite(a[:, 0])]
    if not karma or not len(a):
        raise TelemetryError(path, "Karma 位置记录（GLPI）没有有效坐标，无人机未定位或数据损坏")
    hdg = np.where(a[:, 8] >= 655.35, np.nan, a[:, 8])
    start_utc = None
    try:
        boot, unix = sorted(syst[0][0][:2])  # (time since boot, unix time), seconds
        if 1e9 < unix < 4e9:
            start_utc = datetime.fromtimestamp(unix - boot - offset, tz=timezone.utc)
    except (IndexError, ValueError, OverflowError, OSError):
        pass
    if start_utc is None:
        notes.append("Karma 记录中没有有效的系统时间（SYST），轨迹无绝对时间")
    notes.append("GoPro Karma 视频：相机 GPS5 不存在，位置取自无人机飞控记录 GLPI（高度为相对起飞点）")
    return Track(t=a[:, 0] + offset, lat=a[:, 1], lon=a[:, 2], alt=a[:, 4], heading=hdg,
                 speed=np.hypot(a[:, 5], a[:, 6]), start_utc=start_utc, source=path, fmt="gpmf",
                 notes=notes, media_clock=True)
