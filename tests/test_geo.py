import math

import numpy as np
import pytest
from pydantic import ValidationError

from city.errors import InvalidInput
from city.geo import (
    CELL_DEG,
    CELL_DEG_LON,
    EARTH_RADIUS_M,
    LatLon,
    cell_of,
    cells_within,
    destination,
    gcj02_to_wgs84,
    haversine_m,
    in_china,
    parse_latlon,
    wgs84_to_gcj02,
)

# (wgs lat, wgs lon, gcj lat, gcj lon): published test vectors of the eviltransform
# library (googollee/eviltransform), which implements the same public algorithm.
REFERENCE = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]


# -- LatLon and parsing -----------------------------------------------------------------


def test_latlon_str_and_ranges():
    assert str(LatLon(lat=29.5631, lon=106.5502)) == "29.563100,106.550200"
    with pytest.raises(ValidationError):
        LatLon(lat=91, lon=0)
    with pytest.raises(ValidationError):
        LatLon(lat=0, lon=-181)
    p = LatLon(lat=1, lon=2)
    with pytest.raises(ValidationError):
        p.lat = 3  # frozen


@pytest.mark.parametrize(
    "text",
    ["29.56,106.55", "29.56, 106.55", " 29.56 ,106.55 ", "29.56，106.55", "29.56 ， 106.55", "29.56 106.55",
     "29.56\t106.55", "(29.56, 106.55)"],
)
def test_parse_good(text):
    assert parse_latlon(text) == LatLon(lat=29.56, lon=106.55)


def test_parse_outside_china_is_allowed():
    p = parse_latlon("48.8566,2.3522")  # Paris
    assert (p.lat, p.lon) == (48.8566, 2.3522)
    assert not in_china(p.lat, p.lon)
    assert in_china(29.56, 106.55)
    assert parse_latlon("-33.87, 151.21").lat == -33.87  # Sydney


@pytest.mark.parametrize("text", ["106.55,29.56", "106.55，29.56", "116.39 39.91", "-122.42,37.77"])
def test_parse_swapped_order(text):
    with pytest.raises(InvalidInput, match=r"looks like LON,LAT; expected LAT,LON \(纬度,经度\)"):
        parse_latlon(text)


@pytest.mark.parametrize("text", ["", "abc", "29.56", "29.56,106.55,7", "29.56;106.55x", "nan,106", "29.5,inf",
                                  "二九,一零六"])
def test_parse_garbage(text):
    with pytest.raises(InvalidInput, match="expected LAT,LON"):
        parse_latlon(text)


@pytest.mark.parametrize("text", ["95,200", "-91,-190", "45,181", "-45,-181"])
def test_parse_out_of_range(text):
    with pytest.raises(InvalidInput, match="out of range"):
        parse_latlon(text)


def test_parse_gcj02_input_is_converted():
    wlat, wlon, glat, glon = REFERENCE[2]
    p = parse_latlon(f"{glat},{glon}", crs="gcj02")
    assert abs(p.lat - wlat) < 1e-7 and abs(p.lon - wlon) < 1e-7
    with pytest.raises(InvalidInput, match="crs"):
        parse_latlon("29.56,106.55", crs="bd09")  # type: ignore[arg-type]


# -- GCJ-02 -----------------------------------------------------------------------------


@pytest.mark.parametrize("wlat,wlon,glat,glon", REFERENCE)
def test_wgs_to_gcj_reference(wlat, wlon, glat, glon):
    lat, lon = wgs84_to_gcj02(wlat, wlon)
    assert abs(lat - glat) < 1e-8 and abs(lon - glon) < 1e-8
    # the exact inverse recovers the WGS-84 point
    lat, lon = gcj02_to_wgs84(glat, glon)
    assert abs(lat - wlat) < 1e-8 and abs(lon - wlon) < 1e-8


@pytest.mark.parametrize("lat,lon,lo,hi", [(29.5631, 106.5502, 300, 700), (39.9087, 116.3975, 300, 700)])
def test_gcj_offset_chongqing_beijing_is_a_few_hundred_metres(lat, lon, lo, hi):
    glat, glon = wgs84_to_gcj02(lat, lon)
    assert lo < haversine_m(lat, lon, glat, glon) < hi


def test_gcj_identity_outside_china():
    assert wgs84_to_gcj02(48.8566, 2.3522) == (48.8566, 2.3522)
    assert gcj02_to_wgs84(-33.87, 151.21) == (-33.87, 151.21)


def test_gcj_round_trip_vectorised():
    rng = np.random.default_rng(7)
    lat, lon = rng.uniform(18, 53, 5000), rng.uniform(74, 134, 5000)
    glat, glon = wgs84_to_gcj02(lat, lon)
    blat, blon = gcj02_to_wgs84(glat, glon)
    assert np.max(np.abs(blat - lat)) < 1e-6 and np.max(np.abs(blon - lon)) < 1e-6
    assert np.max(np.abs(blat - lat)) < 1e-9  # in fact far better
    # the one-step inverse (subtract the offset at the GCJ point) is not good enough
    one_lat = glat - (np.asarray(wgs84_to_gcj02(glat, glon)[0]) - glat)
    assert np.max(np.abs(one_lat - lat)) > 1e-6


# -- distances --------------------------------------------------------------------------


def test_haversine_known_distances():
    # one degree of meridian on the mean sphere
    assert haversine_m(0, 0, 1, 0) == pytest.approx(EARTH_RADIUS_M * math.pi / 180, rel=1e-12)
    # Rosetta Code's reference: BNA (36.12, -86.67) to LAX (33.94, -118.40) = 2887.26 km on R = 6372.8 km
    d = haversine_m(36.12, -86.67, 33.94, -118.40)
    assert d * 6372.8e3 / EARTH_RADIUS_M == pytest.approx(2887.2599506e3, abs=1)
    assert haversine_m(29.56, 106.55, 29.56, 106.55) == 0.0
    # half way round the earth
    assert haversine_m(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_M)


def test_haversine_vectorised():
    lat2 = np.array([29.56, 29.57, 30.56])
    d = haversine_m(29.56, 106.55, lat2, np.full(3, 106.55))
    assert isinstance(d, np.ndarray) and d.shape == (3,)
    assert d[0] == 0 and d[1] == pytest.approx(1111.95, abs=0.01) and d[2] == pytest.approx(111195, abs=1)
    assert isinstance(haversine_m(0, 0, 0, 1), float)


def test_destination_inverts_haversine():
    rng = np.random.default_rng(3)
    brg, dist = rng.uniform(0, 360, 1000), rng.uniform(0, 5000, 1000)
    lat, lon = destination(29.56, 106.55, brg, dist)
    assert np.allclose(haversine_m(29.56, 106.55, lat, lon), dist, atol=1e-6)
    lat, lon = destination(10, 179.9999, 90, 1000)
    assert -180 <= lon < -179.99


# -- dedupe cells -----------------------------------------------------------------------


def test_cell_of_layout():
    c = cell_of(29.56, 106.55)
    assert isinstance(c, int)
    row, col = divmod(c, round(360 / CELL_DEG_LON))
    assert row == math.floor((29.56 + 90) / CELL_DEG) and col == math.floor((106.55 + 180) / CELL_DEG_LON)
    assert cell_of(90, 180) < 2**63 and cell_of(-90, -180) == 0
    assert cell_of(0, 180) == cell_of(0, -180)  # the antimeridian wraps
    arr = cell_of(np.array([29.56, 39.9]), np.array([106.55, 116.4]))
    assert arr.dtype == np.int64 and arr[0] == c


@pytest.mark.parametrize("lat0", [0.0, 29.5631, -33.87, 45.0, 60.0, 72.5, 79.9])
@pytest.mark.parametrize("radius", [30.0, 100.0, 250.0, 1000.0])
def test_cells_within_covers_every_point_in_radius(lat0, radius):
    rng = np.random.default_rng(20240611)
    lon0 = 106.55
    for clat, clon in [(lat0, lon0), (CELL_DEG * round(lat0 / CELL_DEG), CELL_DEG_LON * round(lon0 / CELL_DEG_LON))]:
        n = 10_000
        dist = radius * np.sqrt(rng.random(n))
        dist[:500] = radius * (1 - 1e-12)  # points on the circle itself
        lat, lon = destination(clat, clon, rng.uniform(0, 360, n), dist)
        assert np.all(haversine_m(clat, clon, lat, lon) <= radius * (1 + 1e-9))
        cover = set(cells_within(clat, clon, radius))
        missing = set(cell_of(lat, lon).tolist()) - cover
        assert not missing, f"{len(missing)} cells missed at lat {clat}, r {radius}"


def test_cells_within_is_small_and_handles_edges():
    # a 100 m circle in Chongqing touches at most 2 × 2 cells (cells are ≈ 222 × 242 m)
    assert len(cells_within(29.5631, 106.5502, 100)) <= 4
    assert cells_within(29.5631, 106.5502, 0) == [cell_of(29.5631, 106.5502)]
    # across the antimeridian
    near = cells_within(0, 179.9999, 500)
    assert cell_of(0, -179.999) in near and cell_of(0, 179.999) in near
    # a cap holding a pole takes every longitude of its rows
    assert len(cells_within(89.999, 0, 500)) % round(360 / CELL_DEG_LON) == 0
    with pytest.raises(InvalidInput):
        cells_within(29.56, 106.55, -1)
    with pytest.raises(InvalidInput):
        cells_within(29.56, 106.55, 1e6)
