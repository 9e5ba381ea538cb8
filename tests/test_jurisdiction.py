import copy
import json
import time

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from city.errors import DataError, NotFound
from city.geo import LatLon
from city.jurisdiction import SAMPLE_PATH, District, Grid, Location, Street, load_jurisdiction

JIANGBEI = ["观音桥街道", "华新街街道", "五里店街道", "江北城街道", "石马河街道", "大石坝街道"]
YUZHONG = ["解放碑街道", "朝天门街道", "上清寺街道", "两路口街道", "大溪沟街道"]


@pytest.fixture(scope="module")
def j():
    return load_jurisdiction(SAMPLE_PATH)


@pytest.fixture(scope="module")
def raw():
    return json.loads(SAMPLE_PATH.read_text(encoding="utf-8"))


# -- the sample data --------------------------------------------------------------------


def test_sample_is_marked_and_small(j, raw):
    assert raw["sample"] is True and "不是官方行政区划边界" in raw["note"] and "not official" in raw["note"]
    assert all(f["properties"]["sample"] is True for f in raw["features"])
    assert j.sample and "示例数据" in j.note
    assert SAMPLE_PATH.stat().st_size < 1_000_000


def test_sample_content(j):
    assert {d.id: d.name for d in j.districts.values()} == {"500105": "江北区", "500103": "渝中区"}
    assert sorted(s.name for s in j.children("500105")) == sorted(JIANGBEI)
    assert sorted(s.name for s in j.children("500103")) == sorted(YUZHONG)
    for s in j.streets.values():
        assert len(s.id) == 9 and s.id.startswith(s.parent)
        assert 4 <= len(s.shape.exterior.coords) - 1 <= 8
    for g in j.grids.values():
        assert len(g.id) == 14 and g.id.isdigit() and g.id.startswith(g.parent)
    assert len(j.grids) > 100
    # a street with more than 99 grids moves on to community 002
    assert any(g.id[9:12] == "002" for g in j.grids.values())


def test_sample_geometry_tiles_without_overlap(j):
    streets = list(j.streets.values())
    for a in range(len(streets)):
        for b in range(a + 1, len(streets)):
            assert streets[a].shape.intersection(streets[b].shape).area < 1e-12, (streets[a].name, streets[b].name)
    # grids tile their street (no gaps, no overlaps) and are 300-500 m across
    for s in streets:
        grids = j.children(s.id)
        assert sum(g.shape.area for g in grids) == pytest.approx(s.shape.area, rel=1e-4)
        assert shapely.union_all([g.shape for g in grids]).symmetric_difference(s.shape).area < 1e-4 * s.shape.area
    full = [g for g in j.grids.values() if g.shape.area > 0.9 * 0.004 * 0.0036]
    for g in full[:20]:
        minx, miny, maxx, maxy = g.shape.bounds
        c = j.centroid(g.id)
        w = (maxx - minx) * 111_320 * np.cos(np.radians(c.lat))
        assert 300 <= w <= 500 and 300 <= (maxy - miny) * 111_195 <= 500
    # a district is the union of its streets
    for d in j.districts.values():
        union = shapely.union_all([s.shape for s in j.children(d.id)])
        assert union.symmetric_difference(d.shape).area < 1e-9


# -- lookup -----------------------------------------------------------------------------


def test_locate_known_points(j):
    loc = j.locate(29.5600, 106.5500)
    assert loc.district_id == "500103" and loc.district_name == "渝中区"
    assert loc.street_name in YUZHONG and loc.grid_id.startswith(loc.street_id)

    loc = j.locate(29.5750, 106.5300)
    assert (loc.district_name, loc.street_name) == ("江北区", "观音桥街道")
    assert loc.street_id == "500105001" and loc.grid_id and loc.grid_id.startswith("500105001")
    assert loc.grid_name == j.grid(loc.grid_id).name
    assert loc.found

    loc = j.locate(0.0, -150.0)  # the Pacific
    assert loc == Location() and not loc.found
    assert all(v is None for v in loc.model_dump().values())


def test_locate_is_consistent_and_fast(j):
    rng = np.random.default_rng(11)
    lats, lons = rng.uniform(29.54, 29.61, 5000), rng.uniform(106.49, 106.61, 5000)
    single = [j.locate(a, b) for a, b in zip(lats, lons)]
    best = float("inf")
    for _ in range(3):  # best of three, so a busy machine does not fail the test
        t = time.perf_counter()
        for a, b in zip(lats[:2000], lons[:2000]):
            j.locate(a, b)
        best = min(best, time.perf_counter() - t)
    assert 2000 / best > 20_000, f"{2000 / best:.0f} lookups/s"
    assert j.locate_many(lats, lons) == single
    for loc, a, b in zip(single[:500], lats, lons):
        if loc.grid_id:
            assert j.grid(loc.grid_id).shape.covers(shapely.Point(b, a))
            assert j.street(loc.street_id).parent == loc.district_id
        else:  # outside every street: also outside every district of the sample
            assert loc == Location()


def test_lookups_and_centroid(j):
    assert isinstance(j.district("500105"), District)
    assert isinstance(j.street("500105001"), Street)
    assert isinstance(j.area("50010500100101"), Grid)
    for bad in (lambda: j.street("500105999"), lambda: j.district("nope"), lambda: j.grid("1"), lambda: j.area("x")):
        with pytest.raises(NotFound):
            bad()
    c = j.centroid("500105001")
    assert isinstance(c, LatLon)
    assert j.locate(c.lat, c.lon).street_id == "500105001"
    assert j.street("500105001").wkt.startswith("POLYGON")


# -- validation -------------------------------------------------------------------------


def _write(tmp_path, data) -> object:
    path = tmp_path / "broken.geojson"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _feature(data, id_):
    return next(f for f in data["features"] if f["properties"]["id"] == id_)


def test_broken_copies_name_file_and_feature(tmp_path, raw):
    cases = []

    d = copy.deepcopy(raw)  # duplicate id
    dup = copy.deepcopy(_feature(d, "50010500100102"))
    dup["properties"]["name"] = "重复网格"
    d["features"].append(dup)
    cases.append((d, "50010500100102", "duplicate id"))

    d = copy.deepcopy(raw)  # parent missing
    _feature(d, "500103002")["properties"]["parent"] = "500199"
    cases.append((d, "500103002", "parent '500199' not found"))

    d = copy.deepcopy(raw)  # parent of the wrong level: a grid under a district
    _feature(d, "50010300100101")["properties"]["parent"] = "500103"
    cases.append((d, "50010300100101", "is a district; a grid needs a street"))

    d = copy.deepcopy(raw)  # self-intersecting (bow-tie) polygon
    _feature(d, "500103003")["geometry"] = {
        "type": "Polygon",
        "coordinates": [[[106.54, 29.5665], [106.555, 29.557], [106.555, 29.5675], [106.54, 29.557], [106.54, 29.5665]]],
    }
    cases.append((d, "500103003", "invalid polygon"))

    d = copy.deepcopy(raw)  # a grid moved out of its street
    g = _feature(d, "50010500100101")
    geom = shapely.affinity.translate(shape(g["geometry"]), yoff=0.0016)
    g["geometry"] = shapely.geometry.mapping(geom)
    cases.append((d, "50010500100101", "not inside its street 500105001"))

    d = copy.deepcopy(raw)  # lat/lon swapped in the GeoJSON
    g = _feature(d, "500103005")
    g["geometry"]["coordinates"] = [[[y, x] for x, y in ring] for ring in g["geometry"]["coordinates"]]
    cases.append((d, "500103005", r"\[lon, lat\]"))

    d = copy.deepcopy(raw)  # unknown level
    _feature(d, "500105006")["properties"]["level"] = "community"
    cases.append((d, "500105006", "field level"))

    d = copy.deepcopy(raw)  # a point is not an area
    _feature(d, "500105005")["geometry"] = {"type": "Point", "coordinates": [106.5, 29.6]}
    cases.append((d, "500105005", "Polygon or MultiPolygon"))

    for data, fid, msg in cases:
        path = _write(tmp_path, data)
        with pytest.raises(DataError, match=msg) as e:
            load_jurisdiction(path)
        assert str(path) in str(e.value) and fid in str(e.value), str(e.value)


def test_grid_a_hair_outside_is_tolerated(tmp_path, raw):
    d = copy.deepcopy(raw)
    g = _feature(d, "50010500100101")
    g["geometry"] = shapely.geometry.mapping(shapely.affinity.translate(shape(g["geometry"]), xoff=-2e-6))
    assert load_jurisdiction(_write(tmp_path, d)).grid("50010500100101")


def test_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_jurisdiction(tmp_path / "none.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not valid UTF-8 JSON"):
        load_jurisdiction(bad)
    bad.write_text('{"type": "Feature"}', encoding="utf-8")
    with pytest.raises(DataError, match="FeatureCollection"):
        load_jurisdiction(bad)
