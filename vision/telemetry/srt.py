"""DJI subtitle telemetry (``.SRT`` written next to the video): one cue per
frame or per second; the cue start time is the media time of the fix, so the
track is on the video clock (``media_clock=True``).

Dialects handled (all seen in real files):

* keyed, Air 2S / Mavic Air 2 / Mavic 3 / Mini 3: ``[latitude: 41.42] [longitude: 2.23]``
  (also the misspelt ``longtitude``), ``[rel_alt: 1.3 abs_alt: 132.8]`` or
  ``[altitude: 117.0]``, ``[focal_len : 240]``, optional ``gb_pitch``/``gb_yaw``,
  timestamp line ``2022-08-07 13:40:40,774,808``;
* tuple, Phantom 4 RTK / Mavic Mini / Mavic Pro: ``GPS (lon, lat, sats)``
  LONGITUDE FIRST, ``HOME(lon,lat)``, ``H 85.80m`` (height above home),
  ``BAROMETER:1.9``, ``H.S 2.88m/s``, ``F.PRY (pitch°, roll°, yaw°)`` aircraft
  attitude, ``G.PRY (pitch°, roll°, yaw°)`` gimbal angles;
* tuple with metre units, Matrice 300: ``GPS(36.6146,-6.1120,0.0M) BAROMETER:0.3M``,
  which is LATITUDE FIRST (despite the dataset README; the same dialect reads
  ``GPS(37.8757,-122.3061,0.0M)`` for San Francisco Bay in other parsers' tests).

The tuple order is decided per file: the ``M``-unit dialect means lat-first,
otherwise lon-first, and a value beyond ±90 overrides either (noted).
``coord_order`` forces it. Altitude preference: ``rel_alt`` > ``H`` >
``BAROMETER``/``Hb`` > ``altitude`` (reference undocumented, noted); the third
GPS number is a satellite count or a GPS altitude and is not used. DJI
timestamps are the aircraft's local time without a zone, so ``start_utc``
stays None (the first one is noted). Broken cues are skipped with a note; no
usable cue at all raises the first problem found.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vision.telemetry.model import (
    SWAP_HINT,
    TelemetryError,
    Track,
    parse_number,
    read_text,
    summarize_skips,
)

_CUE = re.compile(r"^\s*(\d{1,2}):(\d{2}):(\d{2})[,.](\d{1,3})\s*-->\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}")
_TAG = re.compile(r"<[^>]*>")
_NUM = r"([-+]?\d+(?:\.\d+)?)"
_KEY_LAT = re.compile(r"\[\s*lat(?:itude)?\s*:\s*([^\]\s]*)", re.I)
_KEY_LON = re.compile(r"\[\s*(?:longitude|longtitude|lon|lng)\s*:\s*([^\]\s]*)", re.I)
_GPS = re.compile(r"\bGPS\s*\(([^)]*)\)")
_GPS_OPEN = re.compile(r"\bGPS\s*\(")
_GPS_M = re.compile(r"\bGPS\s*\([^)]*\d\s*M\s*\)")
_SCALARS = {
    "rel_alt": re.compile(r"rel_alt\s*:\s*" + _NUM),
    "H": re.compile(r"(?<![\w.])H\s+" + _NUM + r"\s*m\b"),
    "baro": re.compile(r"(?:BAROMETER|\bHb)\s*:\s*" + _NUM),
    "altitude": re.compile(r"\[\s*altitude\s*:\s*" + _NUM),
    "hs": re.compile(r"\bH\.S\s+" + _NUM),
    "gb_pitch": re.compile(r"gb_pitch\s*:?\s*" + _NUM),
    "gb_yaw": re.compile(r"gb_yaw\s*:?\s*" + _NUM),
    "focal_len": re.compile(r"focal_len\s*:\s*" + _NUM),
}
_PRY = {"F": re.compile(r"\bF\.PRY\s*\(([^)]*)\)"), "G": re.compile(r"\bG\.PRY\s*\(([^)]*)\)")}
_STAMP = re.compile(r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})(?:[,.](\d{1,3}))?(?:,(\d{1,3}))?")
_NUMBER = re.compile(_NUM)


class _Skip(Exception):
    """A cue that cannot be used; carries the TelemetryError describing why."""


def _cues(lines: list[str]) -> list[tuple[int, float, list[tuple[int, str]]]]:
    """(line number of the timing line, start seconds, [(line no, text)...]) per cue."""
    starts = [(i, m) for i, ln in enumerate(lines) if (m := _CUE.match(ln))]
    cues = []
    for k, (i, m) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        body = [(j + 1, _TAG.sub(" ", lines[j])) for j in range(i + 1, end)]
        while body and (not body[-1][1].strip() or body[-1][1].strip().isdigit()):
            body.pop()
        h, mi, s, ms = m.groups()
        cues.append((i + 1, int(h) * 3600 + int(mi) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000.0, body))
    return cues


def _find(rx: re.Pattern, body) -> tuple[int, re.Match] | None:
    for ln, text in body:
        if m := rx.search(text):
            return ln, m
    return None


def _tuple_order(text: str, coord_order: str | None, path: Path, notes: list[str]) -> str:
    """'latlon' or 'lonlat': how this file writes ``GPS(a, b, ...)``."""
    if coord_order:
        return coord_order
    order = "latlon" if _GPS_M.search(text) else "lonlat"
    firsts, seconds = [], []
    for m in _GPS.finditer(text):
        parts = m.group(1).split(",")
        if len(parts) >= 2:
            a, b = (_NUMBER.search(p) for p in parts[:2])
            if a and b:
                firsts.append(abs(float(a.group(1))))
                seconds.append(abs(float(b.group(1))))
    if firsts:
        f_big, s_big = max(firsts) > 90, max(seconds) > 90
        if order == "latlon" and f_big and not s_big:
            order = "lonlat"
            notes.append("GPS(...) 第一个数超过 90，按（经度, 纬度）顺序读取")
        elif order == "lonlat" and s_big and not f_big:
            order = "latlon"
            notes.append("GPS(...) 第二个数超过 90，按（纬度, 经度）顺序读取")
    if order == "latlon":
        notes.append("GPS(..., ...M) 格式（如 Matrice 300）按（纬度, 经度）顺序读取")
    return order


def _pry(body, key: str, path: Path) -> tuple[float, float]:
    """(pitch, yaw) from ``F.PRY``/``G.PRY``; NaN when absent."""
    hit = _find(_PRY[key], body)
    if not hit:
        return np.nan, np.nan
    ln, m = hit
    nums = [_NUMBER.search(p) for p in m.group(1).split(",")]
    if len(nums) != 3 or not all(nums):
        raise _Skip(TelemetryError(path, f"应为（俯仰°, 横滚°, 偏航°），得到 {m.group(0)!r}", line=ln, field=f"{key}.PRY"))
    return float(nums[0].group(1)), float(nums[2].group(1))


def _scalar(body, key: str, path: Path) -> float:
    hit = _find(_SCALARS[key], body)
    if not hit:
        return np.nan
    ln, m = hit
    return parse_number(m.group(1), path, line=ln, field=key)


def _position(body, order: str, swap: bool, path: Path, tline: int) -> tuple[float, float, str]:
    """(lat, lon, dialect) of one cue or raise _Skip."""
    lat_hit, lon_hit = _find(_KEY_LAT, body), _find(_KEY_LON, body)
    if lat_hit or lon_hit:
        if not (lat_hit and lon_hit):
            missing = "longitude" if lat_hit else "latitude"
            raise _Skip(TelemetryError(path, "字幕块缺少该字段（文件可能被截断）", line=tline, field=missing))
        (la_ln, la), (lo_ln, lo) = lat_hit, lon_hit
        lat = parse_number(la.group(1), path, line=la_ln, field="latitude", what="应为 -90..90 的数字")
        lon = parse_number(lo.group(1), path, line=lo_ln, field="longitude", what="应为 -180..180 的数字")
        if swap:
            lat, lon = lon, lat
        return lat, lon, "keyed"
    hit = _find(_GPS, body)
    if not hit:
        opened = _find(_GPS_OPEN, body)
        if opened:
            raise _Skip(TelemetryError(path, "GPS(...) 不完整（文件可能被截断）", line=opened[0], field="GPS"))
        raise _Skip(TelemetryError(path, "字幕块中没有坐标", line=tline, field="GPS"))
    ln, m = hit
    parts = m.group(1).split(",")
    if len(parts) < 2:
        raise _Skip(TelemetryError(path, f"应为 GPS(经度, 纬度, ...)，得到 {m.group(0)!r}", line=ln, field="GPS"))
    names = ("latitude", "longitude") if order == "latlon" else ("longitude", "latitude")
    vals = {n: parse_number(p.strip().rstrip("Mm"), path, line=ln, field=f"GPS {n}",
                            what=f"应为 {'-90..90' if n == 'latitude' else '-180..180'} 的数字")
            for n, p in zip(names, parts[:2])}
    return vals["latitude"], vals["longitude"], "tuple"


def read_srt(path, *, coord_order: str | None = None) -> Track:
    """Read a DJI ``.SRT`` file (see the module docstring)."""
    path = Path(path)
    text, notes = read_text(path)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cues = _cues(lines)
    if not cues:
        raise TelemetryError(path, "未找到字幕时间行（如 00:00:01,000 --> 00:00:02,000），不是 DJI SRT 文件？")
    order = _tuple_order(text, coord_order, path, notes)
    swap = coord_order == "lonlat"
    rows, problems, zeros, stamps, alt_src = [], [], 0, [], set()
    for tline, t, body in cues:
        try:
            try:
                lat, lon, _ = _position(body, order, swap, path, tline)
                if abs(lat) > 90 or abs(lon) > 180:
                    raise TelemetryError(path, f"超出范围 ({lat:g}, {lon:g})；{SWAP_HINT}", line=tline, field="GPS")
                alts = {k: _scalar(body, k, path) for k in ("rel_alt", "H", "baro", "altitude")}
                _, f_yaw = _pry(body, "F", path)
                g_pitch, g_yaw = _pry(body, "G", path)
                speed = _scalar(body, "hs", path)
                if np.isnan(g_pitch):
                    g_pitch, g_yaw = _scalar(body, "gb_pitch", path), _scalar(body, "gb_yaw", path)
            except TelemetryError as e:
                raise _Skip(e) from None
        except _Skip as s:
            problems.append(s.args[0])
            continue
        if lat == 0 and lon == 0:
            zeros += 1
            continue
        src = next((k for k, v in alts.items() if not np.isnan(v)), None)
        alt_src.add(src)
        stamp = _find(_STAMP, body)
        if stamp:
            stamps.append(stamp[1].group(0))
        rows.append((t, lat, lon, alts[src] if src else np.nan, f_yaw, speed, g_pitch, g_yaw))
    if not rows:
        if problems:
            raise problems[0]
        raise TelemetryError(path, "没有可用的 GPS 定位（坐标全为 0，飞行器可能未定位）", field="GPS")
    notes += summarize_skips("损坏的字幕块", [str(p) for p in problems])
    if zeros:
        notes.append(f"跳过 {zeros} 个坐标为 (0, 0) 的字幕块（未定位）")
    if "altitude" in alt_src:
        notes.append("高度取自 [altitude] 字段，DJI 未说明其基准（起飞点或海拔），请谨慎使用")
    if stamps:
        notes.append(f"字幕时间戳为飞行器本地时间（无时区），首帧 {stamps[0]}")
    a = np.array(rows, dtype=float)
    return Track(
        t=a[:, 0], lat=a[:, 1], lon=a[:, 2], alt=a[:, 3], heading=a[:, 4], speed=a[:, 5],
        pitch=a[:, 6], yaw=a[:, 7], start_utc=None, source=path, fmt="dji-srt", notes=notes, media_clock=True,
    )
