"""GPX 1.0/1.1 tracks (``<trkpt lat lon>`` with ``<time>``; ``<rtept>`` as a
fallback). Speed and course are read from GPX 1.0 ``<speed>``/``<course>`` or
the usual extensions (``gpxtpx:speed``/``course``, ``heading``/``bearing``).
``<ele>`` is a sea-level elevation, not height above ground, so ``alt`` stays
NaN (noted). Parsed with :mod:`xml.sax` (no external entities) so every
problem names its line. Points without a time or with bad coordinates are
skipped with a note; none usable is an error.
"""

from __future__ import annotations

import re
import xml.sax
from datetime import datetime, timezone
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

_POINTS = ("trkpt", "rtept")
_CHILD = {"time": "time", "ele": "ele", "speed": "speed", "course": "heading", "heading": "heading",
          "bearing": "heading"}


class _Handler(xml.sax.ContentHandler):
    def __init__(self):
        super().__init__()
        self.points: dict[str, list[dict]] = {k: [] for k in _POINTS}
        self.cur: dict | None = None
        self.text: list[str] = []
        self.loc = None

    def setDocumentLocator(self, locator):
        self.loc = locator

    def startElement(self, name, attrs):
        local = name.rsplit(":", 1)[-1].lower()
        if local in _POINTS and self.cur is None:
            self.cur = {"kind": local, "line": self.loc.getLineNumber(), "lat": attrs.get("lat"), "lon": attrs.get("lon")}
        self.text = []

    def characters(self, content):
        self.text.append(content)

    def endElement(self, name):
        local = name.rsplit(":", 1)[-1].lower()
        if self.cur is None:
            return
        if local in _POINTS and local == self.cur["kind"]:
            self.points[local].append(self.cur)
            self.cur = None
        elif local in _CHILD and _CHILD[local] not in self.cur:
            self.cur[_CHILD[local]] = ("".join(self.text).strip(), self.loc.getLineNumber())


def _time(s: str) -> datetime:
    dt = datetime.fromisoformat(s.strip().replace("Z", "+00:00"))
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def read_gpx(path, *, coord_order: str | None = None) -> Track:
    """Read a GPX file (see the module docstring)."""
    path = Path(path)
    text, notes = read_text(path)
    handler = _Handler()
    try:
        body = re.sub(r"^(\s*<\?xml[^>]*?)encoding=[\"'][^\"']*[\"']", r'\1encoding="utf-8"', text)
        xml.sax.parseString(body.encode("utf-8"), handler)
    except xml.sax.SAXParseException as e:
        raise TelemetryError(path, f"XML 格式错误：{e.getMessage()}", line=e.getLineNumber()) from None
    pts = handler.points["trkpt"]
    if not pts and handler.points["rtept"]:
        pts = handler.points["rtept"]
        notes.append("文件没有 <trkpt>，改用路线点 <rtept>")
    if not pts:
        raise TelemetryError(path, "没有轨迹点（<trkpt>），请导出“轨迹”而不是航点/路线")
    rows, problems, has_ele = [], [], False
    for p in pts:
        ln = p["line"]
        try:
            if p["lat"] is None or p["lon"] is None:
                raise TelemetryError(path, "<trkpt> 缺少 lat/lon 属性", line=ln, field="lat")
            lat = parse_number(p["lat"], path, line=ln, field="lat", what="应为数字（纬度）")
            lon = parse_number(p["lon"], path, line=ln, field="lon", what="应为数字（经度）")
            if coord_order == "lonlat":
                lat, lon = lon, lat
            check_latlon(lat, lon, path, line=ln)
            if "time" not in p:
                raise TelemetryError(path, "轨迹点缺少 <time>", line=ln, field="time")
            try:
                t = _time(p["time"][0])
            except ValueError:
                raise TelemetryError(path, f"应为 ISO-8601 时间，得到 {p['time'][0]!r}", line=p["time"][1],
                                     field="time") from None
            extra = {}
            for k, lo, hi in (("speed", 0, 400), ("heading", -360, 720)):
                v = p.get(k)
                extra[k] = parse_number(v[0], path, line=v[1], field=k, lo=lo, hi=hi) if v and v[0] else np.nan
        except TelemetryError as e:
            problems.append(e)
            continue
        has_ele |= "ele" in p
        rows.append((t, lat, lon, extra["heading"], extra["speed"]))
    if not rows:
        raise problems[0]
    notes += summarize_skips("无效的轨迹点", [str(p) for p in problems])
    if has_ele:
        notes.append("GPX <ele> 为海拔高度，不作为离地高度使用")
    base = min(r[0] for r in rows)
    t = np.array([(r[0] - base).total_seconds() for r in rows])
    a = np.array([r[1:] for r in rows], dtype=float)
    return Track(t=t, lat=a[:, 0], lon=a[:, 1], heading=a[:, 2], speed=a[:, 3], start_utc=base,
                 source=path, fmt="gpx", notes=notes)
