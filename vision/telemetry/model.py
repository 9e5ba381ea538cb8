"""Telemetry data model: :class:`TelemetryError`, :class:`Pose` (one instant),
:class:`Track` (numpy-backed fixes on a clock), and the two checks every
pipeline runs before trusting a track: :func:`align` (put it on the video's
clock and make sure it covers the video) and :func:`check_region` (swapped
lat/lon, outside China).

Conventions: ``t`` is seconds, ``lat``/``lon`` WGS-84 degrees, ``alt`` metres
above ground / take-off (never sea level: readers leave it NaN when the source
only has an elevation), angles in degrees (heading and yaw clockwise from
north in [0, 360), pitch 0 = horizon, -90 = straight down). Unknown = NaN in
arrays, ``None`` in a :class:`Pose`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from city.errors import DataError
from city.geo import haversine_m, in_china

if TYPE_CHECKING:  # pragma: no cover
    from vision.telemetry.media import MediaInfo

TOL_S = 1.0
"""How far (seconds) :meth:`Track.at` may reach outside the track's span."""

MOVING_MPS = 0.5
"""Below this speed a heading derived from motion is GPS noise: carry the last one."""


class TelemetryError(DataError, ValueError):
    """Bad or unusable telemetry; ``str()`` is one Chinese line naming the file,
    the line/field and what was expected, e.g.
    ``telemetry.srt 第 12 行 latitude: 应为 -90..90 的数字，得到 '4x.1'``."""

    def __init__(self, path, message: str, *, line: int | None = None, field: str | None = None):
        self.path = Path(path) if path is not None else None
        self.line = line
        self.field = field
        self.message = message
        where = self.path.name if self.path is not None else "遥测数据"
        if line is not None:
            where += f" 第 {line} 行"
        if field:
            where += f" {field}:"
        super().__init__(f"{where} {message}")

    def __reduce__(self):  # picklable across processes despite the keyword-only arguments
        return (_rebuild_error, (type(self), self.path, self.message, self.line, self.field))


def _rebuild_error(cls, path, message, line, field):
    return cls(path, message, line=line, field=field)


@dataclass(frozen=True)
class Pose:
    """The camera/vehicle state at one instant (see the module docstring for units)."""

    t: float
    lat: float
    lon: float
    alt: float | None = None
    heading: float | None = None
    speed: float | None = None
    pitch: float | None = None
    yaw: float | None = None
    utc: datetime | None = None


_FIELDS = ("alt", "heading", "speed", "pitch", "yaw")
_CIRCULAR = ("heading", "yaw")


def _arr(x, n: int) -> np.ndarray:
    if x is None:
        return np.full(n, np.nan)
    a = np.array(x, dtype=float).reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"array length {a.shape[0]} != {n}")
    return a


def bearing_deg(lat1, lon1, lat2, lon2):
    """Initial great-circle bearing from point 1 to point 2, degrees in [0, 360)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(np.asarray(lon2, dtype=float) - lon1)
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return np.degrees(np.arctan2(y, x)) % 360.0


def _window_ends(t: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
    """For each fix, the first and last fix within ±``half`` seconds (at least one neighbour)."""
    n = len(t)
    i0 = np.searchsorted(t, t - half, side="left")
    i1 = np.searchsorted(t, t + half, side="right") - 1
    idx = np.arange(n)
    i0 = np.minimum(i0, np.maximum(idx - 1, 0))
    i1 = np.maximum(i1, np.minimum(idx + 1, n - 1))
    return i0, i1


def _motion(t, lat, lon, speed):
    """(speed, heading) derived from positions over a ~1 s window; heading is
    only trusted while moving faster than :data:`MOVING_MPS`, else carried over."""
    n = len(t)
    if n < 2:
        return np.full(n, np.nan), np.full(n, np.nan)
    i0, i1 = _window_ends(t, 0.5)
    dt = t[i1] - t[i0]
    d = haversine_m(lat[i0], lon[i0], lat[i1], lon[i1])
    with np.errstate(invalid="ignore", divide="ignore"):
        derived = np.where(dt > 0, d / dt, np.nan)
    spd = np.where(np.isfinite(speed), speed, derived)
    brg = bearing_deg(lat[i0], lon[i0], lat[i1], lon[i1])
    moving = (spd > MOVING_MPS) & (d > 0)
    heading = np.where(moving, brg, np.nan)
    # carry the last moving heading forward
    last = np.where(moving, np.arange(n), -1)
    last = np.maximum.accumulate(last)
    heading = np.where(last >= 0, heading[np.maximum(last, 0)], np.nan)
    return derived, heading


@dataclass(frozen=True, eq=False)
class Track:
    """Fixes sorted by ``t`` (duplicates of ``t`` removed, first kept), numpy
    float64 arrays, NaN = unknown; read-only. ``media_clock`` is True when ``t``
    already is the video's clock (SRT cue times, GPMF), so :func:`align` leaves
    it alone unless given an explicit offset."""

    t: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    alt: np.ndarray | None = None
    heading: np.ndarray | None = None
    speed: np.ndarray | None = None
    pitch: np.ndarray | None = None
    yaw: np.ndarray | None = None
    start_utc: datetime | None = None
    source: Path = Path("")
    fmt: str = ""
    notes: list[str] = field(default_factory=list)
    media_clock: bool = False
    heading_derived: bool = False

    def __post_init__(self):
        t = np.array(self.t, dtype=float).reshape(-1)
        n = len(t)
        cols = {"t": t, "lat": _arr(self.lat, n), "lon": _arr(self.lon, n)}
        cols.update({k: _arr(getattr(self, k), n) for k in _FIELDS})
        for k in _CIRCULAR:
            cols[k] = cols[k] % 360.0
        if n and not (np.isfinite(t).all() and np.isfinite(cols["lat"]).all() and np.isfinite(cols["lon"]).all()):
            raise TelemetryError(self.source, "轨迹含有非有限的时间或坐标")
        order = np.argsort(t, kind="stable")
        keep = order[np.concatenate(([True], np.diff(t[order]) > 0))] if n else order
        cols = {k: v[keep] for k, v in cols.items()}
        derived = self.heading_derived
        if n >= 2 and not derived and np.isnan(cols["heading"]).all():
            spd, hdg = _motion(cols["t"], cols["lat"], cols["lon"], cols["speed"])
            cols["heading"] = hdg
            if np.isnan(cols["speed"]).all():
                cols["speed"] = spd
            derived = True
        for k, v in cols.items():
            v.flags.writeable = False
            object.__setattr__(self, k, v)
        object.__setattr__(self, "heading_derived", derived)
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "notes", list(self.notes))

    # -- basic properties ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.t)

    @property
    def t0(self) -> float:
        return float(self.t[0])

    @property
    def t1(self) -> float:
        return float(self.t[-1])

    @property
    def duration(self) -> float:
        return self.t1 - self.t0 if len(self) else 0.0

    def replace(self, **changes) -> Track:
        """A copy with some attributes changed (the arrays are re-validated)."""
        return dataclasses.replace(self, **changes)

    def with_notes(self, *notes: str) -> Track:
        return self.replace(notes=[*self.notes, *notes])

    # -- sampling --------------------------------------------------------------------
    def _interp(self, name: str, q: np.ndarray) -> np.ndarray:
        v = getattr(self, name)
        if name in _CIRCULAR:
            r = np.radians(v)
            s, c = np.interp(q, self.t, np.sin(r)), np.interp(q, self.t, np.cos(r))
            out = np.degrees(np.arctan2(s, c)) % 360.0
            return np.where(np.hypot(s, c) < 1e-9, np.nan, out)
        return np.interp(q, self.t, v)

    def at(self, t: float | np.ndarray) -> Pose | list[Pose]:
        """Interpolated pose(s); raises :class:`TelemetryError` outside
        ``[t0 - 1 s, t1 + 1 s]`` (values are clamped to the ends within that)."""
        scalar = np.ndim(t) == 0
        q = np.atleast_1d(np.asarray(t, dtype=float))
        if not len(self):
            raise TelemetryError(self.source, "轨迹为空")
        bad = ~np.isfinite(q) | (q < self.t0 - TOL_S) | (q > self.t1 + TOL_S)
        if bad.any():
            raise TelemetryError(
                self.source, f"时间 {q[bad][0]:.3f} s 超出轨迹范围 {self.t0:.3f}–{self.t1:.3f} s（容差 {TOL_S:g} s）"
            )
        lat, lon = np.interp(q, self.t, self.lat), np.interp(q, self.t, self.lon)
        vals = {k: self._interp(k, q) for k in _FIELDS}
        poses = []
        for i, ti in enumerate(q):
            extra = {k: (None if math.isnan(vals[k][i]) else float(vals[k][i])) for k in _FIELDS}
            utc = self.start_utc + timedelta(seconds=float(ti)) if self.start_utc else None
            poses.append(Pose(t=float(ti), lat=float(lat[i]), lon=float(lon[i]), utc=utc, **extra))
        return poses[0] if scalar else poses

    def sample(self, t) -> dict[str, np.ndarray]:
        """Vectorised :meth:`at`: ``{"t", "lat", "lon", "alt", "heading", "speed",
        "pitch", "yaw"}`` arrays (NaN = unknown), same range check."""
        q = np.atleast_1d(np.asarray(t, dtype=float))
        if len(q):
            self.at(np.array([q.min(), q.max()]))  # range check (raises)
        out = {"t": q, "lat": np.interp(q, self.t, self.lat), "lon": np.interp(q, self.t, self.lon)}
        out.update({k: self._interp(k, q) for k in _FIELDS})
        return out

    def distance(self) -> np.ndarray:
        """Cumulative metres along the track at each fix (haversine)."""
        if len(self) < 2:
            return np.zeros(len(self))
        step = haversine_m(self.lat[:-1], self.lon[:-1], self.lat[1:], self.lon[1:])
        return np.concatenate(([0.0], np.cumsum(step)))

    def distance_at(self, t):
        """Cumulative distance interpolated at ``t`` (float in, float out)."""
        d = np.interp(np.asarray(t, dtype=float), self.t, self.distance())
        return float(d) if np.ndim(d) == 0 else d

    def gaps(self, max_gap_s: float = 2.0) -> list[tuple[float, float]]:
        """``(start, end)`` of every interval between consecutive fixes longer than ``max_gap_s``."""
        i = np.nonzero(np.diff(self.t) > max_gap_s)[0]
        return [(float(self.t[k]), float(self.t[k + 1])) for k in i]

    def covers(self, t0: float, t1: float, tol: float = TOL_S) -> bool:
        """True when the track's span reaches ``[t0, t1]`` within ``tol`` (gaps are
        reported separately by :meth:`gaps`)."""
        return bool(len(self)) and self.t0 <= t0 + tol and self.t1 >= t1 - tol

    def shifted(self, offset_s: float) -> Track:
        """The same fixes with ``t' = t - offset_s`` (``start_utc`` moves so that
        absolute times stay the same)."""
        start = self.start_utc + timedelta(seconds=offset_s) if self.start_utc else None
        return self.replace(t=self.t - offset_s, start_utc=start)


# -- alignment and sanity checks ---------------------------------------------------------


def _fmt_s(x: float) -> str:
    return f"{x:.1f}"


def _tz_residual(d: float) -> float | None:
    """If ``d`` seconds is a whole time-zone offset (quarter hours, up to 14 h) plus
    a small remainder, the remainder; else None."""
    q = round(d / 900.0)
    if q == 0 or abs(q) > 56:
        return None
    r = d - q * 900.0
    return r if abs(r) < 300.0 else None


def align(track: Track, media: MediaInfo, *, offset_s: float | None = None) -> Track:
    """Put ``track`` on the video's clock (0 = first frame) and check it covers
    the whole video. Priority: explicit ``offset_s`` (track time ``offset_s`` is
    the first frame); a track already on the media clock (SRT/GPMF) stays; both
    absolute start times known → their difference (a difference of whole time
    zones, e.g. a camera writing Beijing time as UTC, is detected and noted);
    otherwise the track is assumed to start at the first frame (noted)."""
    notes: list[str] = []
    if offset_s is not None:
        out = track.shifted(offset_s)
        notes.append(f"按清单给定的时间偏移 {offset_s:g} s 对齐轨迹")
    elif track.media_clock:
        out = track
    elif track.start_utc is not None and media.start_utc is not None:
        d = (media.start_utc - track.start_utc).total_seconds()
        out = track.shifted(d)
        if not out.covers(0.0, media.duration_s):
            r = _tz_residual(d)
            if r is not None and track.shifted(r).covers(0.0, media.duration_s):
                notes.append(
                    f"视频 creation_time 与轨迹时间相差 {d / 3600:.2f} 小时，按时区标注错误处理（整时区差已扣除）"
                )
                d = r
                out = track.shifted(d)
        notes.append(f"时钟偏移：视频首帧对应轨迹时间 {d:.2f} s")
    else:
        out = track.shifted(track.t0)
        notes.append("缺少绝对时间（视频或轨迹），假定轨迹起点即视频首帧")
    for a, b in out.gaps(2.0):
        notes.append(f"轨迹在 {_fmt_s(a)}–{_fmt_s(b)} s 之间缺失 {b - a:.1f} s")
    out = out.with_notes(*notes)
    dur = float(media.duration_s)
    if not out.covers(0.0, dur):
        lo, hi = max(out.t0, 0.0), min(out.t1, dur)
        if len(out) == 0 or hi <= lo:
            span = f"轨迹时间 {_fmt_s(out.t0)}–{_fmt_s(out.t1)} s 与视频 0–{_fmt_s(dur)} s 完全不重叠"
        else:
            span = f"轨迹只覆盖视频 {_fmt_s(lo)}–{_fmt_s(hi)} s，视频长 {_fmt_s(dur)} s"
        raise TelemetryError(track.source, f"{span}；请检查时间偏移（清单 offset_s）或换用完整的轨迹文件")
    return out


def check_region(track: Track, *, allow_outside_china: bool = False) -> None:
    """Raise :class:`TelemetryError` when lat/lon look swapped (|lat| > 90, or
    swapping them puts the track in China while as given it is not), or when
    fixes lie outside China and ``allow_outside_china`` is False."""
    lat, lon = np.asarray(track.lat), np.asarray(track.lon)
    if not len(lat):
        raise TelemetryError(track.source, "轨迹为空")
    hint = "经纬度可能颠倒：请在清单中设置 coord_order: lonlat（或 latlon），或检查列顺序"
    if (np.abs(lat) > 90).any():
        raise TelemetryError(track.source, f"纬度 {lat[np.abs(lat) > 90][0]:g} 超出 -90..90；{hint}", field="lat")
    inside = np.asarray(in_china(lat, lon))
    swapped = np.asarray(in_china(lon, lat)) & (np.abs(lon) <= 90)
    if inside.mean() < 0.5 and swapped.mean() >= 0.5:
        raise TelemetryError(
            track.source, f"按给定顺序轨迹在中国境外（首点 {lat[0]:.5f},{lon[0]:.5f}），交换后在中国境内；{hint}"
        )
    if not allow_outside_china and not inside.all():
        k = int(np.argmin(inside))
        raise TelemetryError(
            track.source,
            f"{int((~inside).sum())} 个定位点在中国境外（如 t={track.t[k]:.1f} s: {lat[k]:.5f},{lon[k]:.5f}）；"
            "如确为境外数据，请使用 --allow-outside-china",
        )


def utc(dt: datetime) -> datetime:
    """``dt`` as an aware UTC datetime (naive = already UTC)."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


# -- helpers shared by the readers ------------------------------------------------------


def read_text(path, *, fallback_gb18030: bool = False) -> tuple[str, list[str]]:
    """The file's text and notes. Missing/empty files raise; bytes that are not
    UTF-8 are replaced (noted), or, with ``fallback_gb18030``, the whole file is
    read as GB18030 when that decodes cleanly (common for CSVs saved by Excel)."""
    p = Path(path)
    if not p.is_file():
        raise TelemetryError(p, "文件不存在或不是普通文件")
    raw = p.read_bytes()
    if not raw.strip():
        raise TelemetryError(p, "文件为空")
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as e:
        first_bad = raw[: e.start].count(b"\n") + 1
    if fallback_gb18030:
        try:
            return raw.decode("gb18030"), ["文件不是 UTF-8，已按 GB18030 编码读取"]
        except UnicodeDecodeError:
            pass
    text = raw.decode("utf-8-sig", errors="replace")
    n = text.count("\ufffd")
    return text, [f"文件含 {n} 处非 UTF-8 字节（首处在第 {first_bad} 行），已替换为 �"]


def parse_number(value, path, *, line: int | None = None, field: str, lo: float | None = None,
                 hi: float | None = None, what: str | None = None) -> float:
    """``float(value)`` within ``[lo, hi]`` or a :class:`TelemetryError` naming the field."""
    rng = f"{lo:g}..{hi:g} 的" if lo is not None and hi is not None else ""
    expect = what or f"应为 {rng}数字"
    try:
        x = float(str(value).strip())
    except (TypeError, ValueError):
        raise TelemetryError(path, f"{expect}，得到 {str(value).strip()!r}", line=line, field=field) from None
    if not math.isfinite(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
        raise TelemetryError(path, f"{expect}，得到 {str(value).strip()!r}", line=line, field=field)
    return x


SWAP_HINT = "经纬度可能颠倒：请设置 coord_order: lonlat（或 latlon）"


def check_latlon(lat: float, lon: float, path, *, line: int | None = None) -> None:
    """Range check of one fix, with the swap hint when latitude is beyond ±90."""
    if abs(lat) > 90:
        raise TelemetryError(path, f"应为 -90..90，得到 {lat:g}；{SWAP_HINT}", line=line, field="latitude")
    if abs(lon) > 180:
        raise TelemetryError(path, f"应为 -180..180，得到 {lon:g}", line=line, field="longitude")


def summarize_skips(label: str, skipped: list[str], limit: int = 3) -> list[str]:
    """One note for a list of skipped-item descriptions (the first few spelled out)."""
    if not skipped:
        return []
    more = f" 等（共 {len(skipped)} 处）" if len(skipped) > limit else ""
    return [f"跳过{label}：" + "；".join(skipped[:limit]) + more]
