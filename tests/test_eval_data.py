"""The labelled data of the triage and route eval suites (evals/data/*.jsonl) is well formed
and consistent with the city data: schema, unique ids, codes in the catalogue, departments
that exist, coordinates inside the sample city, and enough coverage."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from city.catalogue import Kind, Source, Urgency
from evals.dataset import (
    CHINA_LAT,
    CHINA_LON,
    HARD_PATH,
    MAIN_PATH,
    DatasetError,
    Expected,
    TriageItem,
    check_items,
    load_items,
)


@pytest.fixture(scope="module")
def main_items():
    return load_items(MAIN_PATH)


@pytest.fixture(scope="module")
def hard_items():
    return load_items(HARD_PATH)


@pytest.fixture(scope="module", params=["main", "hard"])
def items(request, main_items, hard_items):
    return main_items if request.param == "main" else hard_items


# -- every line parses ----------------------------------------------------------------------


@pytest.mark.parametrize("path", [MAIN_PATH, HARD_PATH], ids=lambda p: p.name)
def test_every_line_is_a_json_object(path):
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        assert line.strip(), f"{path.name} line {n}: blank line"
        assert isinstance(json.loads(line), dict), f"{path.name} line {n}: not an object"


def test_ids_are_unique_across_both_files(main_items, hard_items):
    ids = [it.id for it in main_items + hard_items]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert all(it.id.startswith("tr-") for it in main_items)
    assert all(it.id.startswith("hd-") for it in hard_items)


def test_counts(main_items, hard_items):
    assert len(main_items) >= 300
    assert len(hard_items) >= 60


# -- consistent with the city data ------------------------------------------------------------


def test_consistent_with_the_city_data(items, city):
    assert check_items(items, city) == []


def test_expected_codes_exist_in_the_catalogue(items, city):
    for it in items:
        e = it.expected
        if e.code is not None:
            entry = city.catalogue.get(e.code, e.kind)  # raises NotFound
            assert entry.code == e.code, it.id
            for alt in e.alternatives:
                city.catalogue.get(alt, e.kind)


def test_departments_exist(items, city):
    for it in items:
        if it.expected.department_id is not None:
            assert it.expected.department_id in city.departments, f"{it.id}: {it.expected.department_id}"


def test_urgency_is_a_tier(items):
    tiers = {u.value for u in Urgency}
    for it in items:
        if it.expected.code is not None:
            assert it.expected.urgency.value in tiers, it.id


def test_coordinates_inside_china_and_the_sample_city(items, city):
    for it in items:
        if it.lat is None:
            assert it.lon is None, it.id
            continue
        assert CHINA_LAT[0] <= it.lat <= CHINA_LAT[1] and CHINA_LON[0] <= it.lon <= CHINA_LON[1], it.id
        loc = city.locate(it.lat, it.lon)
        assert loc.district_id in ("500105", "500103") and loc.street_id, f"{it.id}: {it.lat},{it.lon} outside the sample city"


def test_patrol_text_carries_the_item_coordinates(items):
    for it in items:
        if it.source in (Source.VEHICLE, Source.DRONE):
            assert it.text.startswith(f"{it.source.value}（") and "视频识别到" in it.text, it.id
            assert f"{it.lat:.6f},{it.lon:.6f}" in it.text, it.id


def test_street_offices_match_the_place(items, city):
    """A street office is only expected for a place in its street (or an address naming it)."""
    for it in items:
        dept_id = it.expected.department_id
        if dept_id is None:
            continue
        dept = city.departments.get(dept_id)
        if dept.street and it.lat is not None:
            assert city.locate(it.lat, it.lon).street_id == dept.street, f"{it.id}: {dept_id} for a point elsewhere"
        if dept.district and it.lat is not None:
            assert city.locate(it.lat, it.lon).district_id == dept.district, f"{it.id}: {dept_id} in another district"


def test_no_owner_goes_to_a_coordinator(items, city):
    for it in items:
        if it.expected.no_owner:
            assert city.departments.get(it.expected.department_id).type.value.endswith("协调中心"), it.id


# -- coverage --------------------------------------------------------------------------------


def test_main_file_coverage(main_items, city):
    codes = {it.expected.code for it in main_items}
    assert len(codes) >= 40
    assert {s for s in Source} <= {it.source for it in main_items}
    districts = {city.locate(it.lat, it.lon).district_id for it in main_items if it.lat is not None}
    assert {"500105", "500103"} <= districts
    streets = {city.locate(it.lat, it.lon).street_id for it in main_items if it.lat is not None}
    assert len(streets) >= 8
    assert sum(it.lat is None for it in main_items) >= 10  # address only
    assert sum(it.expected.no_owner for it in main_items) >= 5
    assert any(it.context == "小区内" for it in main_items) and any(it.owner for it in main_items)
    common = ["06010", "06042", "06013", "01023", "09006", "09009", "07001", "91002", "01037", "04002",
              "06028", "06027", "06001", "09011", "06025", "08005", "06011"]
    counts = Counter(it.expected.code for it in main_items)
    assert all(counts[c] >= 1 for c in common), [c for c in common if not counts[c]]
    assert len({it.style for it in main_items}) >= 6


def test_hard_file_coverage(hard_items):
    tags = Counter(t for it in hard_items for t in it.tags)
    for t in ("ambiguous", "two_issues", "sarcasm", "rambling", "slang", "wrong_location", "injection", "out_of_scope"):
        assert tags[t] >= 3, t
    assert sum(it.expected.code is None for it in hard_items) >= 5
    assert all(it.expected.department_id is None for it in hard_items if it.expected.code is None)
    assert sum(it.expected.injection for it in hard_items) >= 5
    assert sum(bool(it.expected.alternatives) for it in hard_items) >= 10


def test_injection_items_are_tagged(items):
    for it in items:
        assert it.expected.injection == ("injection" in it.tags), it.id


# -- the loader's errors name the file and the line -------------------------------------------


def _good() -> dict:
    return {"id": "tr-9999", "source": "市民", "text": "路边有垃圾", "address": "", "lat": 29.576, "lon": 106.532,
            "context": None, "owner": None,
            "expected": {"code": "06010", "kind": "事件", "department_id": "JB-HW", "urgency": "一般",
                         "alternatives": [], "no_owner": False},
            "style": "colloquial", "notes": "test item"}


def _write(tmp_path, rows) -> str:
    p = tmp_path / "items.jsonl"
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return p


def test_loader_accepts_a_good_item(tmp_path, city):
    items = load_items(_write(tmp_path, [_good()]))
    assert isinstance(items[0], TriageItem) and items[0].expected.kind is Kind.EVENT
    assert check_items(items, city) == []
    assert items[0].report().text == "路边有垃圾"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(source="微信"), "field source"),
    (lambda d: d["expected"].update(urgency="特急"), "field expected.urgency"),
    (lambda d: d["expected"].update(code="6010"), "field expected.code"),
    (lambda d: d.update(lat=39.9, lon=-75.2), "not in China"),
    (lambda d: d.update(lat=106.532, lon=29.576), "field lat"),
    (lambda d: d.update(lon=None), "give both or neither"),
    (lambda d: d["expected"].update(department_id=None), "required"),
    (lambda d: d.update(style="poetic"), "field style"),
    (lambda d: d.update(extra="x"), "field extra"),
    (lambda d: d.update(tags=["weird"]), "unknown tag"),
])
def test_loader_names_file_line_and_field(tmp_path, mutate, message):
    bad = _good()
    mutate(bad)
    path = _write(tmp_path, [_good() | {"id": "tr-0001"}, bad])
    with pytest.raises(DatasetError) as err:
        load_items(path)
    assert f"{path} line 2" in str(err.value) and message in str(err.value)


def test_loader_rejects_bad_json_and_repeated_ids(tmp_path):
    with pytest.raises(DatasetError, match="line 1: not valid JSON"):
        load_items(_write(tmp_path, ["{not json"]))
    with pytest.raises(DatasetError, match="line 2: id tr-9999 repeats line 1"):
        load_items(_write(tmp_path, [_good(), _good()]))
    with pytest.raises(DatasetError, match="cannot read"):
        load_items(tmp_path / "missing.jsonl")


def test_check_items_reports_unknown_references(city):
    it = TriageItem.model_validate(_good() | {"context": "屋顶", "owner": "外星人", "lat": 29.6, "lon": 106.7})
    it.expected = Expected(code="06010", kind="部件", department_id="XX-00", urgency="一般", alternatives=["99999"])
    problems = "\n".join(check_items([it], city))
    for word in ("not in the catalogue", "alternative", "XX-00", "屋顶", "外星人", "no street"):
        assert word in problems


def test_null_code_means_no_label():
    with pytest.raises(ValueError, match="kind, department_id and urgency must be null"):
        Expected(code=None, kind=None, department_id="JB-HW", urgency=None)
    e = Expected(code=None, kind=None, department_id=None, urgency=None)
    assert e.accepts(None) and not e.accepts("06010")  # not an issue: abstaining is right
    labelled = Expected(code="06010", kind="事件", department_id="JB-HW", urgency="一般", alternatives=["06011"])
    assert labelled.accepts("06011") and labelled.accepts("06010") and not labelled.accepts(None)
