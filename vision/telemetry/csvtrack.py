"""CSV tracks exported by phones, dashcams and loggers: a header row naming
``time, lat, lon`` and optionally ``heading, speed, alt, pitch, yaw`` (common
English and Chinese aliases accepted, e.g. ``latitude``/``纬度``,
``timestamp``/``t``/``时间``, ``course``/``航向``; ``speed_kmh`` is converted).
Delimiter ``,`` ``;`` or tab; UTF-8 or GB18030 (Excel) text.

Time is either seconds from the start (numbers: no absolute time) or absolute
(ISO-8601 or ``YYYY-MM-DD HH:MM:SS[.fff]``, also ``/`` dates); absolute times
without a zone are taken as Beijing time (UTC+8) and noted. ``alt`` is taken as
height above ground as given. Rows with a bad value are skipped with a note
(the first problem is raised when no row is usable); a missing column is an
error naming the columns found.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from vision.telemetry.model import (
    TelemetryError,
    Track,
    check_latlon,
    parse_number,
    read_text,
    summarize_skips,
)

BEIJING = timezone(timedelta(hours=8))

ALIASES = {
    "time": ("time", "t", "timestamp", "datetime", "date_time", "utc", "time_s", "seconds", "sec", "时间", "时间戳"),
    "lat": ("lat", "latitude", "纬度", "lat_deg", "gps_lat"),
    "lon": ("lon", "lng", "long", "longitude", "经度", "lon_deg", "gps_lon", "gps_lng"),
    "heading": ("heading", "course", "bearing", "direction", "航向", "方向", "heading_deg"),
    "speed": ("speed", "speed_mps", "speed_m_s", "velocity", "速度"),
    "speed_kmh": ("speed_kmh", "speed_km_h", "kmh", "速度_kmh", "速度(km/h)"),
    "alt": ("alt", "altitude", "height", "rel_alt", "高度", "alt_m"),
    "pitch": ("pitch", "gimbal_pitch", "camera_pitch", "俯仰"),
    "yaw": ("yaw", "gimbal_yaw", "camera_yaw", "偏航"),
}
_LOOKUP = {alias: key for key, names in ALIASES.items() for alias in names}
_RANGES = {"heading": (-360, 720), "speed": (0, 400), "speed_kmh": (0, 1500), "alt": (-1000, 20000),
           "pitch": (-180, 180), "yaw": (-360, 720)}


def _norm(name: str) -> str:
    return re.sub(r"\s+", "_", name.strip().strip('"').lower())


def parse_time(value: str) -> tuple[float | datetime, bool]:
    """(seconds, False) or (aware datetime, whether it had no zone); ``ValueError`` otherwise."""
    v = value.strip()
    try:
        return float(v), False
    except ValueError:
        pass
    dt = datetime.fromisoformat(v.replace("/", "-").replace("Z", "+00:00"))
    return (dt.replace(tzinfo=BEIJING), True) if dt.tzinfo is None else (dt, False)


def read_csv(path, *, coord_order: str | None = None) -> Track:
    """Read a CSV track (see the module docstring)."""
    path = Path(path)
    text, notes = read_text(path, fallback_gb18030=True)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "")
    first = text.lstrip("\n").split("\n", 1)[0]
    delim = max(",;\t", key=first.count)
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delim))
    except csv.Error as e:
        raise TelemetryError(path, f"CSV 格式错误（{e}）") from None
    skip = 0
    while rows and not any(c.strip() for c in rows[0]):
        rows.pop(0)
        skip += 1
    if not rows:
        raise TelemetryError(path, "文件为空")
    header = [_norm(h) for h in rows[0]]
    cols = {}
    for i, h in enumerate(header):
        key = _LOOKUP.get(h) or _LOOKUP.get(re.sub(r"[(\[].*$", "", h).strip("_"))
        if key and key not in cols:
            cols[key] = i
    missing = [k for k in ("time", "lat", "lon") if k not in cols]
    if missing:
        raise TelemetryError(path, f"缺少列 {', '.join(missing)}；表头为 {rows[0]}（需要 time, lat, lon，可选 heading, speed, alt）",
                             line=1 + skip, field=missing[0])
    swap = coord_order == "lonlat"
    times, data, problems, naive = [], [], [], False
    for ln, row in enumerate(rows[1:], start=2 + skip):
        if not any(c.strip() for c in row):
            continue
        try:
            if len(row) <= max(cols.values()):
                raise TelemetryError(path, f"应有 {len(header)} 列，得到 {len(row)} 列", line=ln)
            cell = {k: row[i].strip() for k, i in cols.items()}
            try:
                tv, was_naive = parse_time(cell["time"])
            except ValueError:
                raise TelemetryError(path, f"应为秒数或 ISO-8601 时间，得到 {cell['time']!r}", line=ln, field="time") from None
            naive |= was_naive
            lat = parse_number(cell["lat"], path, line=ln, field="lat", what="应为数字（纬度）")
            lon = parse_number(cell["lon"], path, line=ln, field="lon", what="应为数字（经度）")
            if swap:
                lat, lon = lon, lat
            check_latlon(lat, lon, path, line=ln)
            vals = {}
            for k in ("alt", "heading", "speed", "speed_kmh", "pitch", "yaw"):
                raw = cell.get(k, "")
                vals[k] = parse_number(raw, path, line=ln, field=k, lo=_RANGES[k][0], hi=_RANGES[k][1]) if raw else np.nan
        except TelemetryError as e:
            problems.append(e)
            continue
        if np.isnan(vals["speed"]) and not np.isnan(vals["speed_kmh"]):
            vals["speed"] = vals["speed_kmh"] / 3.6
        times.append(tv)
        data.append((lat, lon, vals["alt"], vals["heading"], vals["speed"], vals["pitch"], vals["yaw"]))
    if not data:
        if problems:
            raise problems[0]
        raise TelemetryError(path, "没有数据行（只有表头）")
    kinds = {isinstance(x, datetime) for x in times}
    if len(kinds) > 1:
        raise TelemetryError(path, "time 列混用了秒数和日期时间，请统一格式", field="time")
    start_utc = None
    if isinstance(times[0], datetime):
        base = min(times)
        start_utc = base.astimezone(timezone.utc)
        t = np.array([(x - base).total_seconds() for x in times])
        if naive:
            notes.append("time 列没有时区，按北京时间 (UTC+8) 解释")
    else:
        t = np.array(times, dtype=float)
    notes += summarize_skips("无效的数据行", [str(p) for p in problems])
    a = np.array(data, dtype=float)
    return Track(t=t, lat=a[:, 0], lon=a[:, 1], alt=a[:, 2], heading=a[:, 3], speed=a[:, 4], pitch=a[:, 5],
                 yaw=a[:, 6], start_utc=start_utc, source=path, fmt="csv", notes=notes)
