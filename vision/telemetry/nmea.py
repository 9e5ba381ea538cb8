"""NMEA 0183 logs: ``RMC`` (date, time, position, speed, course) and ``GGA``
(time, position, fix quality) from any talker (``GP`` GPS, ``GN`` multi-GNSS,
``BD``/``GB`` BeiDou, ``GL``, ``GA``). Sentences may carry a logger prefix
before the ``$``. A sentence whose ``*hh`` checksum does not match is skipped
(noted); sentences without a checksum are accepted. Fixes are merged per
UTC time of day; the date comes from ``RMC`` (or ``ZDA``) and a midnight
rollover advances it. Invalid fixes (``RMC`` status ``V``, ``GGA`` quality 0)
are dropped. ``GGA`` altitude is above sea level, so ``alt`` stays NaN.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from vision.telemetry.model import (
    TelemetryError,
    Track,
    check_latlon,
    read_text,
    summarize_skips,
)

SENTENCE = re.compile(r"\$([A-Z]{2})(RMC|GGA|ZDA)\b([^*\r\n]*)(?:\*([0-9A-Fa-f]{2}))?")
KNOT_MPS = 1852.0 / 3600.0


def looks_like_nmea(text: str) -> bool:
    """True when the text holds RMC/GGA sentences."""
    return bool(SENTENCE.search(text))


def _checksum_ok(m: re.Match) -> bool:
    if m.group(4) is None:
        return True
    body = f"{m.group(1)}{m.group(2)}{m.group(3)}"
    x = 0
    for ch in body.encode("ascii", "replace"):
        x ^= ch
    return x == int(m.group(4), 16)


def _coord(value: str, hemi: str, *, lat: bool) -> float:
    """``ddmm.mmmm`` / ``dddmm.mmmm`` + hemisphere → signed degrees (ValueError if bad)."""
    v = float(value)
    deg = int(v // 100)
    minutes = v - deg * 100
    if minutes >= 60 or v < 0:
        raise ValueError(value)
    hemi = hemi.upper()
    if hemi not in ("NS" if lat else "EW"):
        raise ValueError(hemi)
    x = deg + minutes / 60.0
    return -x if hemi in "SW" else x


def _tod(value: str) -> float:
    h, m, s = int(value[0:2]), int(value[2:4]), float(value[4:])
    if h > 23 or m > 59 or s >= 61:
        raise ValueError(value)
    return h * 3600 + m * 60 + s


def read_nmea(path, *, coord_order: str | None = None) -> Track:
    """Read an NMEA log (see the module docstring)."""
    path = Path(path)
    text, notes = read_text(path)
    epochs: dict[tuple, dict] = {}
    bad_sum, bad_fields, invalid = [], [], 0
    day: date | None = None
    last_tod, day_shift = None, 0
    for ln, line in enumerate(text.splitlines(), start=1):
        m = SENTENCE.search(line)
        if not m:
            continue
        if not _checksum_ok(m):
            bad_sum.append(f"第 {ln} 行")
            continue
        kind, f = m.group(2), m.group(3).split(",")[1:]
        try:
            if kind == "ZDA":
                day = date(int(f[3]), int(f[2]), int(f[1]))
                continue
            tod = _tod(f[0])
            if kind == "RMC":
                if len(f) > 8 and f[8]:
                    day = datetime.strptime(f[8], "%d%m%y").date()
                if f[1].upper() != "A":
                    invalid += 1
                    continue
                lat, lon = _coord(f[2], f[3], lat=True), _coord(f[4], f[5], lat=False)
                speed = float(f[6]) * KNOT_MPS if f[6] else np.nan
                course = float(f[7]) if len(f) > 7 and f[7] else np.nan
            else:  # GGA
                if not f[5] or int(f[5]) == 0:
                    invalid += 1
                    continue
                lat, lon = _coord(f[1], f[2], lat=True), _coord(f[3], f[4], lat=False)
                speed = course = np.nan
            if coord_order == "lonlat":
                lat, lon = lon, lat
            check_latlon(lat, lon, path, line=ln)
        except (ValueError, IndexError, TelemetryError):
            bad_fields.append(f"第 {ln} 行 {m.group(1)}{kind}")
            continue
        if last_tod is not None and tod < last_tod - 43200:
            day_shift += 1  # midnight rollover
        last_tod = tod
        e = epochs.setdefault((day_shift, round(tod, 3)), {"lat": lat, "lon": lon, "speed": np.nan,
                                                             "course": np.nan, "day": None})
        if kind == "RMC":
            e.update(lat=lat, lon=lon, speed=speed, course=course)
        if e["day"] is None and day is not None:
            e["day"] = day
    notes += summarize_skips("校验和错误的语句", bad_sum)
    notes += summarize_skips("字段无效的语句", bad_fields)
    if invalid:
        notes.append(f"丢弃 {invalid} 条未定位语句（RMC 状态 V 或 GGA 质量 0）")
    if not epochs:
        why = "校验和全部错误" if bad_sum else ("全部未定位" if invalid else "没有可用的 RMC/GGA 语句")
        raise TelemetryError(path, f"没有可用的 NMEA 定位（{why}）")
    keys = sorted(epochs)
    tod = np.array([k[0] * 86400 + k[1] for k in keys])
    dated = next((k for k in keys if epochs[k]["day"]), None)
    start_utc = None
    if dated is not None:
        d0 = epochs[dated]["day"] - timedelta(days=dated[0])
        start_utc = datetime(d0.year, d0.month, d0.day, tzinfo=timezone.utc) + timedelta(seconds=float(tod[0]))
    else:
        notes.append("NMEA 中没有日期（RMC/ZDA），轨迹只有相对时间")
    rows = np.array([[epochs[k]["lat"], epochs[k]["lon"], epochs[k]["speed"], epochs[k]["course"]] for k in keys])
    return Track(t=tod - tod[0], lat=rows[:, 0], lon=rows[:, 1], speed=rows[:, 2], heading=rows[:, 3],
                 start_utc=start_utc, source=path, fmt="nmea", notes=notes)
