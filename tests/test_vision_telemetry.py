"""vision.telemetry: readers (GPX, NMEA, CSV, DJI SRT, GoPro GPMF, EXIF), the
Track model (interpolation, distance, gaps), align/check_region, media probe.

Real samples are read from ``$XUNJIAN_DATASETS`` (default ``../shared/datasets``
next to the repository) and skipped with a message when absent; broken
variants are made from them in ``tmp_path``. Small fixtures are written inline
(重庆 around 29.56N 106.55E).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from datetime import datetime, timedelta, timezone
from functools import reduce
from pathlib import Path

import numpy as np
import pytest

from city.geo import destination, haversine_m
from vision.telemetry import (
    MediaInfo,
    TelemetryError,
    Track,
    align,
    check_region,
    load_track,
    probe,
    read_image_pose,
)

DATASETS = Path(os.environ.get("XUNJIAN_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
SRT_DIR = DATASETS / "dji-srt"
GOPRO_DIR = DATASETS / "gopro-gpmf"
CQ = (29.5630, 106.5502)  # 重庆 解放碑附近
UTC = timezone.utc


def _sample(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"共享样本不存在：{path}（设置 XUNJIAN_DATASETS 指向 shared/datasets）")
    return path


def _media(duration: float, start: datetime | None = None) -> MediaInfo:
    return MediaInfo(duration_s=duration, fps=30.0, frame_count=int(duration * 30), width=1920, height=1080,
                     start_utc=start, codec="h264")


# -- fixture writers -------------------------------------------------------------------


def _walk(n: int, step_m: float = 10.0, dt: float = 1.0, bearing: float = 0.0, start=CQ):
    """n fixes ``step_m`` apart along ``bearing`` every ``dt`` seconds."""
    pts = [start]
    for _ in range(n - 1):
        pts.append(tuple(destination(*pts[-1], bearing, step_m)))
    return [(i * dt, la, lo) for i, (la, lo) in enumerate(pts)]


def write_gpx(path: Path, fixes, t0=datetime(2024, 5, 1, 2, 0, 0, tzinfo=UTC), swap=False, extra="") -> Path:
    pts = []
    for t, la, lo in fixes:
        a, b = (lo, la) if swap else (la, lo)
        ts = (t0 + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        pts.append(f'      <trkpt lat="{a:.7f}" lon="{b:.7f}"><ele>250.0</ele><time>{ts}</time></trkpt>')
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">\n'
        f"  <trk><name>巡检</name><trkseg>\n{extra}" + "\n".join(pts) + "\n  </trkseg></trk>\n</gpx>\n",
        encoding="utf-8",
    )
    return path


def _nmea(body: str, checksum: int | None = None) -> str:
    cs = reduce(lambda a, c: a ^ ord(c), body, 0) if checksum is None else checksum
    return f"${body}*{cs:02X}"


def _ddmm(x: float, pos: str, neg: str, width: int) -> tuple[str, str]:
    d = int(abs(x))
    return f"{d:0{width}d}{(abs(x) - d) * 60:07.4f}", pos if x >= 0 else neg


def write_nmea(path: Path, fixes, day="010524", bad_checksum_at=(), talker="GN") -> Path:
    lines = []
    for i, (t, la, lo) in enumerate(fixes):
        hh = f"{2 + int(t // 3600):02d}{int(t % 3600 // 60):02d}{t % 60:05.2f}"
        lat, ns = _ddmm(la, "N", "S", 2)
        lon, ew = _ddmm(lo, "E", "W", 3)
        cs = 0 if i in bad_checksum_at else None
        lines.append(_nmea(f"{talker}RMC,{hh},A,{lat},{ns},{lon},{ew},19.44,0.0,{day},,,A", cs))
        lines.append(_nmea(f"{talker}GGA,{hh},{lat},{ns},{lon},{ew},1,12,0.8,250.0,M,-30.0,M,,", cs))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory) -> Path:
    """A 2 s, 10 fps MPEG-4 clip with ``moov`` first (faststart) and a creation time."""
    av = pytest.importorskip("av")
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        c.metadata["creation_time"] = "2024-05-01T02:00:00.000000Z"
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


# -- real DJI SRT samples ----------------------------------------------------------------

# file: (fixes, t0, lat, lon, alt, extra checks on the first pose)
SRT_EXPECTED = {
    "air2s.srt": (17, 0.0, 41.424724, 2.234156, 117.0, {}),
    "mavic_air2.srt": (25, 0.0, 41.420684, 2.162162, 27.3, {}),
    "matrice_300.srt": (381, 0.0, 36.6146, -6.1120, 0.3, {}),
    "mavic_mini.SRT": (117, 0.0, 48.0771, -121.7458, 200.7, {}),
    "mavic_pro.SRT": (468, 1.0, -20.2533, 149.0251, 1.9, {}),
    "p4_rtk.SRT": (55, 0.0, -34.237922, -58.851745, 85.8, {"pitch": -24.4, "heading": 110.1, "yaw": 110.4}),
}


@pytest.mark.parametrize("name", sorted(SRT_EXPECTED))
def test_real_dji_srt(name):
    n, t0, lat, lon, alt, extra = SRT_EXPECTED[name]
    tr = load_track(_sample(SRT_DIR / name))
    assert (tr.fmt, len(tr), tr.media_clock) == ("dji-srt", n, True)
    p = tr.at(tr.t0)
    assert tr.t0 == t0
    assert (p.lat, p.lon) == pytest.approx((lat, lon), abs=1e-9)
    assert p.alt == pytest.approx(alt)
    for k, v in extra.items():
        assert getattr(p, k) == pytest.approx(v), k
    check_region(tr, allow_outside_china=True)  # no false "swapped" alarm
    with pytest.raises(TelemetryError, match="境外"):
        check_region(tr)


def test_real_srt_details():
    p4 = load_track(_sample(SRT_DIR / "p4_rtk.SRT"))
    assert p4.speed[:2].tolist() == [0.0, 2.88]  # H.S
    assert not p4.heading_derived and p4.duration == 54.0
    m300 = load_track(SRT_DIR / "matrice_300.srt")
    assert any("纬度, 经度" in n for n in m300.notes)
    forced = load_track(SRT_DIR / "matrice_300.srt", coord_order="lonlat")
    assert (forced.lat[0], forced.lon[0]) == (-6.1120, 36.6146)
    air = load_track(SRT_DIR / "air2s.srt")
    assert air.at(0.2).heading == pytest.approx(279, abs=5)  # flying west, derived from motion
    assert any("本地时间" in n for n in air.notes) and air.start_utc is None


def _p4_text() -> str:
    return _sample(SRT_DIR / "p4_rtk.SRT").read_text(encoding="utf-8")


def test_srt_truncated_keeps_the_rest(tmp_path):
    text = _p4_text()
    cut = text.index("GPS (", len(text) // 2) + 12  # cut inside a GPS tuple
    f = tmp_path / "cut.SRT"
    f.write_text(text[:cut], encoding="utf-8")
    tr = load_track(f)
    assert 20 < len(tr) < 55
    assert any("损坏的字幕块" in n and "GPS" in n for n in tr.notes)


def test_srt_garbled_line_is_skipped_with_line_number(tmp_path):
    lines = _p4_text().split("\n")
    lines[10] = lines[10].replace("-34.237873", "-3x.2378")  # third cue's GPS line
    f = tmp_path / "garbled.SRT"
    f.write_text("\n".join(lines), encoding="utf-8")
    tr = load_track(f)
    assert len(tr) == 54
    assert any("第 11 行" in n and "'-3x.2378'" in n for n in tr.notes)


def test_srt_nothing_usable_raises_first_problem(tmp_path):
    f = tmp_path / "telemetry.srt"
    f.write_text("1\n00:00:00,000 --> 00:00:01,000\n[latitude: 4x.1] [longitude: 106.5]\n", encoding="utf-8")
    with pytest.raises(TelemetryError) as e:
        load_track(f)
    assert str(e.value) == "telemetry.srt 第 3 行 latitude: 应为 -90..90 的数字，得到 '4x.1'"
    assert (e.value.line, e.value.field, e.value.path.name) == (3, "latitude", "telemetry.srt")
    again = pickle.loads(pickle.dumps(e.value))
    assert (str(again), again.line, again.field) == (str(e.value), 3, "latitude")


def test_srt_deleted_lines_and_bad_bytes(tmp_path):
    lines = _p4_text().split("\n")
    del lines[5:7]  # second cue's number and timing line: its text merges into the first cue
    del lines[20]
    f = tmp_path / "holes.SRT"
    f.write_bytes("\n".join(lines).encode("utf-8").replace(b"ISO 100", b"ISO \xff\xfe100", 3))
    tr = load_track(f)
    assert 50 <= len(tr) <= 54
    assert tr.lat[0] == pytest.approx(-34.237922)
    assert any("非 UTF-8" in n for n in tr.notes)


def test_srt_empty_and_not_srt(tmp_path):
    empty = tmp_path / "empty.srt"
    empty.write_bytes(b"")
    with pytest.raises(TelemetryError, match="empty.srt 文件为空"):
        load_track(empty)
    other = tmp_path / "notes.srt"
    other.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello 你好\n", encoding="utf-8")
    with pytest.raises(TelemetryError, match="没有坐标"):
        load_track(other)


def test_srt_zero_fix_and_misspelt_longitude(tmp_path):
    f = tmp_path / "m.srt"
    f.write_text(
        "1\n00:00:00,000 --> 00:00:00,033\n[latitude: 0.000000] [longitude: 0.000000] [rel_alt: 0.0 abs_alt: 250.0]\n\n"
        "2\n00:00:00,033 --> 00:00:00,066\n[latitude: 29.563] [longtitude: 106.5502] [rel_alt: 1.3 abs_alt: 251.3]"
        " [gb_yaw : -10.0 gb_pitch : -45.5 gb_roll : 0.0]\n",
        encoding="utf-8",
    )
    tr = load_track(f)
    assert len(tr) == 1 and any("(0, 0)" in n for n in tr.notes)
    p = tr.at(0.033)
    assert (p.lat, p.lon, p.alt, p.pitch, p.yaw) == (29.563, 106.5502, 1.3, -45.5, 350.0)
    check_region(tr)


# -- GoPro GPMF and media probe ----------------------------------------------------------


def test_gopro_gps5_max_heromode():
    tr = load_track(_sample(GOPRO_DIR / "max-heromode.mp4"))
    assert (tr.fmt, len(tr), tr.media_clock) == ("gpmf", 191, True)
    assert 17.0 < (len(tr) - 1) / tr.duration < 19.0  # ~18 Hz
    assert 0.0 <= tr.t0 < 0.1 and 10.3 < tr.t1 < 10.6
    # the container's own location tag is +33.1268-117.3273
    assert np.all(np.abs(tr.lat - 33.1268) < 0.001) and np.all(np.abs(tr.lon + 117.3273) < 0.001)
    assert 0.3 < np.nanmedian(tr.speed) < 2.0  # walking
    assert tr.start_utc == datetime(2019, 11, 18, 23, 45, 14, tzinfo=UTC)  # GPSU
    assert np.isnan(tr.alt).all()  # GPS altitude is not height above ground
    assert 5 < tr.distance()[-1] < 30


def test_gopro_karma_uses_drone_position():
    tr = load_track(_sample(GOPRO_DIR / "karma.mp4"))
    assert len(tr) == 47 and any("GLPI" in n for n in tr.notes)
    p = tr.at(1.0)
    assert (p.lat, p.lon) == pytest.approx((33.1254, -117.3311), abs=0.001)
    assert 0 < p.alt < 20 and 300 < p.heading < 360 and p.speed is not None
    media = probe(GOPRO_DIR / "karma.mp4")
    assert abs((tr.start_utc - media.start_utc).total_seconds()) < 2  # System Time vs creation_time


def test_probe_real_videos():
    m = probe(_sample(GOPRO_DIR / "max-heromode.mp4"))
    assert (m.width, m.height, m.frame_count, m.codec) == (848, 480, 315, "h264")
    assert m.fps == pytest.approx(29.97, abs=0.01) and m.duration_s == pytest.approx(10.51, abs=0.01)
    assert m.start_utc == datetime(2019, 11, 18, 15, 45, 32, tzinfo=UTC)
    k = probe(GOPRO_DIR / "karma.mp4")
    assert (k.width, k.height, k.frame_count) == (854, 480, 362) and k.duration_s == pytest.approx(12.08, abs=0.01)
    tr = align(load_track(GOPRO_DIR / "max-heromode.mp4"), m)  # media clock: kept, covers the clip
    assert tr.t0 < 0.1


def test_truncated_and_non_video(tmp_path, tiny_video):
    m = probe(tiny_video)
    assert (m.duration_s, m.fps, m.frame_count, m.width) == (2.0, 10.0, 20, 64)
    assert m.start_utc == datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(tiny_video.read_bytes()[:-300])
    with pytest.raises(TelemetryError, match="被截断"):
        probe(cut)
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    with pytest.raises(TelemetryError, match="junk.mp4 不是可读取的视频文件"):
        probe(junk)
    with pytest.raises(TelemetryError, match="GPMF"):
        load_track(tiny_video)  # an mp4 without GoPro telemetry
    if (GOPRO_DIR / "max-heromode.mp4").is_file():
        half = tmp_path / "half.mp4"  # GoPro writes moov last: a cut file has no index at all
        half.write_bytes((GOPRO_DIR / "max-heromode.mp4").read_bytes()[:2_000_000])
        with pytest.raises(TelemetryError, match="half.mp4"):
            probe(half)
        with pytest.raises(TelemetryError, match="half.mp4"):
            load_track(half)


# -- GPX / NMEA / CSV readers ------------------------------------------------------------


def test_gpx_track_in_chongqing(tmp_path):
    f = write_gpx(tmp_path / "a.gpx", _walk(11, step_m=10.0, bearing=90.0))
    tr = load_track(f)
    assert (tr.fmt, len(tr), tr.start_utc) == ("gpx", 11, datetime(2024, 5, 1, 2, 0, tzinfo=UTC))
    assert tr.distance()[-1] == pytest.approx(100.0, abs=0.01)
    p = tr.at(2.5)
    assert p.speed == pytest.approx(10.0, rel=1e-3) and p.heading == pytest.approx(90.0, abs=0.1)
    assert p.alt is None and any("<ele>" in n for n in tr.notes)
    assert p.utc == datetime(2024, 5, 1, 2, 0, 2, 500000, tzinfo=UTC)
    check_region(tr)


def test_gpx_errors(tmp_path):
    no_pts = write_gpx(tmp_path / "empty.gpx", [])
    with pytest.raises(TelemetryError, match="没有轨迹点"):
        load_track(no_pts)
    swapped = write_gpx(tmp_path / "swap.gpx", _walk(3), swap=True)
    with pytest.raises(TelemetryError, match="coord_order: lonlat") as e:
        load_track(swapped)
    assert e.value.line == 4
    assert load_track(swapped, coord_order="lonlat").lat[0] == pytest.approx(CQ[0])
    broken = tmp_path / "broken.gpx"
    broken.write_text('<gpx>\n<trk><trkseg>\n<trkpt lat="29.5" lon="106.5"><time>x</time>\n</gpx>')
    with pytest.raises(TelemetryError, match="XML 格式错误") as e:
        load_track(broken)
    assert e.value.line == 4
    bad = write_gpx(tmp_path / "bad.gpx", _walk(3),
                    extra='      <trkpt lat="abc" lon="106.5"><time>2024-05-01T01:59:00Z</time></trkpt>\n')
    tr = load_track(bad)
    assert len(tr) == 3 and any("'abc'" in n and "第 4 行" in n for n in tr.notes)


def test_nmea_with_bad_checksums(tmp_path):
    f = write_nmea(tmp_path / "drive.nmea", _walk(6, step_m=10.0, bearing=0.0), bad_checksum_at=(2,))
    tr = load_track(f)
    assert (tr.fmt, len(tr)) == ("nmea", 5)
    assert tr.start_utc == datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    assert (tr.lat[0], tr.lon[0]) == pytest.approx(CQ, abs=1e-6)
    assert tr.speed[0] == pytest.approx(10.0, abs=0.01)  # 19.44 kn
    assert any("校验和错误" in n and "第 5 行" in n for n in tr.notes)
    log = tmp_path / "gps.log"  # sniffed by content, with a logger prefix
    log.write_text("".join(f"12:00:0{i} > {ln}\n" for i, ln in enumerate(f.read_text().splitlines())))
    assert len(load_track(log)) == 5
    all_bad = write_nmea(tmp_path / "bad.nmea", _walk(3), bad_checksum_at=(0, 1, 2))
    with pytest.raises(TelemetryError, match="校验和全部错误"):
        load_track(all_bad)
    txt = tmp_path / "readme.txt"
    txt.write_text("just text\n")
    with pytest.raises(TelemetryError, match="无法识别轨迹格式"):
        load_track(txt)


def test_csv_variants(tmp_path):
    rows = _walk(5, step_m=5.0, bearing=180.0)
    f = tmp_path / "secs.csv"
    f.write_text("t,latitude,longitude,heading,speed,alt\n" +
                 "".join(f"{t},{la},{lo},180,5,1.5\n" for t, la, lo in rows))
    tr = load_track(f)
    assert (len(tr), tr.start_utc, tr.at(1.0).heading, tr.at(1.0).alt) == (5, None, 180.0, 1.5)
    iso = tmp_path / "iso.csv"
    iso.write_text("timestamp,lon,lat\n" + "".join(
        f"2024-05-01 10:00:0{int(t)},{lo},{la}\n" for t, la, lo in rows))  # lon first, named
    tr = load_track(iso)
    assert tr.lat[0] == pytest.approx(CQ[0]) and tr.start_utc == datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    assert any("北京时间" in n for n in tr.notes)
    unnamed = tmp_path / "swapped.csv"  # labels say lat,lon but the values are lon,lat
    unnamed.write_text("time,lat,lon\n" + "".join(f"{t},{lo},{la}\n" for t, la, lo in rows))
    with pytest.raises(TelemetryError, match="经纬度可能颠倒"):
        load_track(unnamed)
    assert load_track(unnamed, coord_order="lonlat").lon[0] == pytest.approx(CQ[1])
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(("时间,纬度,经度\n" + "".join(f"{t},{la},{lo}\n" for t, la, lo in rows)).encode("gb18030"))
    assert len(load_track(gbk)) == 5


def test_csv_errors(tmp_path):
    miss = tmp_path / "miss.csv"
    miss.write_text("time,lat\n0,29.5\n")
    with pytest.raises(TelemetryError, match="缺少列 lon") as e:
        load_track(miss)
    assert (e.value.line, e.value.field) == (1, "lon")
    bad = tmp_path / "bad.csv"
    bad.write_text("time,lat,lon\n0,29.56,106.55\n1,29.5x,106.55\n2,29.5602,106.55\n")
    tr = load_track(bad)
    assert len(tr) == 2 and any("第 3 行" in n and "'29.5x'" in n for n in tr.notes)
    only_bad = tmp_path / "only_bad.csv"
    only_bad.write_text("time,lat,lon\n0,north,106.55\n")
    with pytest.raises(TelemetryError, match=r"only_bad.csv 第 2 行 lat: 应为数字（纬度），得到 'north'"):
        load_track(only_bad)
    kml = tmp_path / "x.kml"
    kml.write_text("<kml/>")
    with pytest.raises(TelemetryError, match="不支持的轨迹文件类型"):
        load_track(kml)
    with pytest.raises(TelemetryError, match="文件不存在"):
        load_track(tmp_path / "nope.gpx")


# -- Track model -----------------------------------------------------------------------


def _track(t, lat, lon, **kw) -> Track:
    return Track(t=t, lat=lat, lon=lon, source=Path("t.csv"), fmt="csv", **kw)


def test_interpolation_known_cases():
    tr = _track([0, 10], [29.0, 29.1], [106.0, 106.2], heading=[359.0, 1.0], alt=[10.0, 20.0], pitch=[-90, -30])
    p = tr.at(5.0)
    assert (p.lat, p.lon, p.alt, p.pitch) == pytest.approx((29.05, 106.1, 15.0, -60.0))
    assert p.heading == pytest.approx(0.0, abs=1e-9) or p.heading == pytest.approx(360.0)
    assert tr.at(2.5).heading == pytest.approx(359.5)
    poses = tr.at(np.array([0.0, 10.0, 10.5]))
    assert [q.lat for q in poses] == pytest.approx([29.0, 29.1, 29.1])  # clamped within tolerance
    arrays = tr.sample(np.array([2.5, 5.0]))
    assert arrays["lat"] == pytest.approx([29.025, 29.05]) and arrays["heading"][0] == pytest.approx(359.5)
    with pytest.raises(TelemetryError, match="超出轨迹范围"):
        tr.at(11.5)
    with pytest.raises(TelemetryError):
        tr.at(-1.2)


def test_track_sorting_dedupe_and_immutability():
    tr = _track([2, 0, 1, 1], [29.2, 29.0, 29.1, 29.15], [106.0] * 4)
    assert tr.t.tolist() == [0, 1, 2] and tr.lat.tolist() == [29.0, 29.1, 29.2]
    with pytest.raises(ValueError):
        tr.lat[0] = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        tr.fmt = "gpx"


def test_heading_derived_and_carried_over():
    fixes = _walk(6, step_m=10.0, bearing=45.0) + [(6.0 + i, *_walk(6, 10.0, bearing=45.0)[-1][1:]) for i in range(3)]
    t, la, lo = map(np.array, zip(*fixes))
    tr = _track(t, la, lo)
    assert tr.heading_derived
    assert tr.at(2.0).heading == pytest.approx(45.0, abs=0.1) and tr.at(2.0).speed == pytest.approx(10.0, rel=1e-3)
    assert tr.at(8.0).speed == pytest.approx(0.0) and tr.at(8.0).heading == pytest.approx(45.0, abs=0.1)
    still = _track([0, 1, 2], [29.5] * 3, [106.5] * 3)
    assert still.at(1.0).heading is None


def test_distance_gaps_covers_shift():
    fixes = _walk(4, step_m=100.0, bearing=0.0)
    t = np.array([0.0, 1.0, 5.0, 6.0])
    tr = _track(t, [f[1] for f in fixes], [f[2] for f in fixes], start_utc=datetime(2024, 5, 1, tzinfo=UTC))
    d = tr.distance()
    assert d[-1] == pytest.approx(300.0, abs=0.01)
    assert d[1] == pytest.approx(haversine_m(fixes[0][1], fixes[0][2], fixes[1][1], fixes[1][2]))
    assert tr.distance_at(3.0) == pytest.approx(150.0, abs=0.01)
    assert tr.distance_at(np.array([0.5, 5.5])) == pytest.approx([50.0, 250.0], abs=0.01)
    assert tr.gaps(2.0) == [(1.0, 5.0)] and tr.gaps(5.0) == []
    assert tr.covers(0.0, 6.5) and not tr.covers(0.0, 7.5)
    s = tr.shifted(2.0)
    assert s.t0 == -2.0 and s.start_utc == datetime(2024, 5, 1, 0, 0, 2, tzinfo=UTC)
    assert s.at(3.0).utc == tr.at(5.0).utc


# -- align / check_region ----------------------------------------------------------------


def test_align_partial_cover_raises(tmp_path):
    f = tmp_path / "part.csv"
    f.write_text("time,lat,lon\n" + "".join(f"{t},{la},{lo}\n" for t, la, lo in _walk(42, dt=1.0)).replace(
        "41.0,", "41.2,"))
    tr = load_track(f)
    with pytest.raises(TelemetryError, match="轨迹只覆盖视频 0.0–41.2 s，视频长 60.0 s"):
        align(tr, _media(60.0))
    ok = align(tr, _media(41.0))
    assert any("假定轨迹起点" in n for n in ok.notes)


def test_align_absolute_clock_offset_and_timezone(tmp_path):
    f = write_gpx(tmp_path / "a.gpx", _walk(31, step_m=5.0))  # 02:00:00–02:00:30 UTC
    tr = load_track(f)
    start = datetime(2024, 5, 1, 2, 0, 5, tzinfo=UTC)  # video starts 5 s into the track
    a = align(tr, _media(20.0, start))
    assert a.t0 == pytest.approx(-5.0) and any("时钟偏移" in n for n in a.notes)
    assert a.at(0.0).lat == pytest.approx(tr.at(5.0).lat)
    local_as_utc = start + timedelta(hours=8)  # camera wrote Beijing time labelled as UTC
    b = align(tr, _media(20.0, local_as_utc))
    assert b.t0 == pytest.approx(-5.0) and any("时区" in n for n in b.notes)
    c = align(tr, _media(20.0, start), offset_s=10.0)  # manifest wins
    assert c.t0 == pytest.approx(-10.0) and any("清单" in n for n in c.notes)
    with pytest.raises(TelemetryError, match="完全不重叠"):
        align(tr, _media(20.0, start + timedelta(minutes=3)))


def test_align_reports_gaps(tmp_path):
    fixes = [f for f in _walk(20) if not 5 < f[0] < 10]
    f = tmp_path / "gap.csv"
    f.write_text("time,lat,lon\n" + "".join(f"{t},{la},{lo}\n" for t, la, lo in fixes))
    a = align(load_track(f), _media(19.0))
    assert any("5.0–10.0 s 之间缺失 5.0 s" in n for n in a.notes)


def test_check_region(tmp_path):
    cq = _track([0, 1], [CQ[0], CQ[0] + 1e-4], [CQ[1], CQ[1]])
    check_region(cq)
    bcn = _track([0, 1], [41.42, 41.43], [2.23, 2.24])
    with pytest.raises(TelemetryError, match="--allow-outside-china"):
        check_region(bcn)
    check_region(bcn, allow_outside_china=True)
    kashgar_swapped = _track([0, 1], [75.99, 75.99], [39.47, 39.48])  # 喀什, written lon,lat
    with pytest.raises(TelemetryError, match="coord_order: lonlat"):
        check_region(kashgar_swapped, allow_outside_china=True)
    nonsense = _track([0], [106.55], [29.56])
    with pytest.raises(TelemetryError, match="超出 -90..90"):
        check_region(nonsense)


# -- still images ----------------------------------------------------------------------


def _jpeg(path: Path, *, gps: bool = True, xmp: bool = True, exif: bool = True) -> Path:
    from PIL import Image
    from PIL.ExifTags import IFD

    im = Image.new("RGB", (64, 48), "gray")
    kw = {}
    if exif:
        ex = Image.Exif()
        if gps:
            ex.get_ifd(IFD.GPSInfo).update({1: "N", 2: (29.0, 33.0, 46.8), 3: "E", 4: (106.0, 33.0, 0.72),
                                            5: 0, 6: 300.5, 29: "2024:05:01", 7: (2.0, 3.0, 4.0)})
        ex.get_ifd(IFD.Exif).update({36867: "2024:05:01 10:03:04", 37386: 4.5, 41989: 24})
        kw["exif"] = ex
    if xmp:  # Pillow writes the APP1 XMP segment itself
        kw["xmp"] = (
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/" drone-dji:AbsoluteAltitude="+330.2"'
            b' drone-dji:RelativeAltitude="+50.20" drone-dji:GimbalPitchDegree="-90.0" drone-dji:GimbalYawDegree="+12.5"'
            b' drone-dji:FlightYawDegree="-170.0"/></rdf:RDF></x:xmpmeta>'
        )
    im.save(path, **kw)
    return path


def test_image_pose_with_dji_xmp(tmp_path):
    ip = read_image_pose(_jpeg(tmp_path / "DJI_0001.JPG"))
    p = ip.pose
    assert (p.lat, p.lon) == pytest.approx(CQ, abs=1e-6)
    assert (p.alt, p.pitch, p.yaw, p.heading) == (50.2, -90.0, 12.5, 190.0)
    assert (ip.focal_mm, ip.focal_35mm, ip.width, ip.height, ip.has_xmp, ip.abs_alt) == (4.5, 24.0, 64, 48, True, 330.2)
    assert p.utc == datetime(2024, 5, 1, 2, 3, 4, tzinfo=UTC)
    plain = read_image_pose(_jpeg(tmp_path / "phone.jpg", xmp=False))
    assert (plain.has_xmp, plain.pose.alt, plain.pose.pitch, plain.abs_alt) == (False, None, None, 300.5)
    tr = load_track(tmp_path / "phone.jpg")
    assert (tr.fmt, len(tr)) == ("exif", 1)


def test_image_without_gps_is_an_error(tmp_path):
    for name, kw in (("no_exif.jpg", {"exif": False, "xmp": False}), ("no_gps.jpg", {"gps": False})):
        with pytest.raises(TelemetryError, match=f"{name} GPSLatitude: 图片没有 EXIF GPS 坐标"):
            read_image_pose(_jpeg(tmp_path / name, **kw))
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    with pytest.raises(TelemetryError, match="fake.jpg 不是可读取的图片"):
        read_image_pose(fake)
