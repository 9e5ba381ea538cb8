"""The router: responsibility rules (权责清单) over the sample city, the fallback
chain 责随权走 → 行业主管/综合执法 → 属地管理 → 无责任主体, and rules validation."""

from __future__ import annotations

import csv
import io
import shutil

import pytest

from city.bundle import load_city
from city.errors import DataError, InvalidInput
from city.routing import NO_OWNER, Place, Router, Rule

JIANGBEI = (29.575, 106.53)  # 江北区 观音桥街道
JIEFANGBEI = (29.5578, 106.5751)  # 渝中区 解放碑街道
OUTSIDE = (29.6, 106.7)  # in China, in no district of the sample city


def route(city, code, where=(None, None), **kw):
    return city.route(city.catalogue.get(code), where[0], where[1], **kw)


# -- 责随权走: an asset goes to its owner ------------------------------------------------


def test_gas_cover_goes_to_the_gas_company_anywhere(city):
    for where in (JIANGBEI, JIEFANGBEI, OUTSIDE, (None, None)):
        d = route(city, "01011", where)
        assert (d.department_id, d.principle, d.rule_id) == ("CQ-RQ", "责随权走", "W014")
        assert not d.ambiguous and not d.no_owner
        assert d.department_name == city.departments.get("CQ-RQ").name
        assert d.basis and d.rule and d.trail


def test_owner_beats_the_class_rule(city):
    # 热力井盖 has no class rule; an owner says whose it is
    d = route(city, "01010", JIANGBEI, owner="燃气")
    assert (d.department_id, d.rule_id, d.principle) == ("CQ-RQ", "W018", "责随权走")
    # 污水井盖 in 江北区 is the drainage office's (W002) unless the owner is known
    assert route(city, "01002", JIANGBEI).department_id == "JB-PS"
    d = route(city, "01002", JIANGBEI, owner="燃气")
    assert (d.department_id, d.rule_id) == ("CQ-RQ", "W018")
    assert [c.department_id for c in d.candidates][:2] == ["CQ-RQ", "JB-PS"]  # the class rule stays a candidate
    assert not d.ambiguous
    assert route(city, "01002", JIEFANGBEI, owner="供水").department_id == "CQ-GS"
    assert route(city, "01002", JIEFANGBEI, owner="排水").department_id == "YZ-PS"


# -- 行业主管 and 综合执法, per area --------------------------------------------------------


def test_exposed_garbage_on_a_jiangbei_road_goes_to_sanitation(city):
    for ctx in (None, "道路"):
        d = route(city, "06010", JIANGBEI, context=ctx)
        assert (d.department_id, d.principle, d.rule_id) == ("JB-HW", "行业主管", "E001")
    assert route(city, "06010", JIEFANGBEI).department_id == "YZ-HW"


def test_street_vending_depends_on_the_district(city):
    # 渝中区 has not moved 占道经营 to 综合执法: 属地管理 → the street office of the place
    d = route(city, "09006", JIEFANGBEI)
    assert (d.department_id, d.principle, d.rule_id) == ("YZ-JFB", "属地管理", "S004")
    assert d.department_name == "渝中区解放碑街道办事处"
    # 江北区 has (S001): its 城管综合执法支队
    d = route(city, "09006", JIANGBEI)
    assert (d.department_id, d.principle, d.rule_id) == ("JB-ZF", "综合执法", "S001")


def test_context_overrides_the_class_rule(city):
    d = route(city, "06010", JIANGBEI, context="小区内")
    assert (d.department_id, d.principle, d.rule_id) == ("JB-GYQ", "属地管理", "E061")
    assert "JB-HW" in [c.department_id for c in d.candidates]
    assert route(city, "06010", JIEFANGBEI, context="小区内").department_id == "YZ-JFB"
    # an explicit priority beats specificity: 小区内私搭乱建 (E043, priority 1) over 综合执法
    d = route(city, "06001", JIANGBEI, context="小区内")
    assert (d.department_id, d.rule_id) == ("JB-GYQ", "E043")
    assert route(city, "06001", JIANGBEI).department_id == "JB-ZF"


def test_a_rule_can_send_to_the_coordinator_without_being_no_owner(city):
    # 道路上占用消防通道: S012 (@协调, priority 2) → the district's centre, by rule
    d = route(city, "09012", JIANGBEI, context="道路")
    assert (d.department_id, d.rule_id, d.principle, d.no_owner) == ("JB-XT", "S012", "属地管理", False)
    assert route(city, "09012", JIANGBEI).department_id == "JB-XF"


# -- 无责任主体 ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [OUTSIDE, (None, None)], ids=["outside", "no-position"])
@pytest.mark.parametrize("code", ["09006", "06010"])
def test_outside_every_district_goes_to_the_city_coordinator(city, code, where):
    # 09006's rules all name a district; 06010's catch-all (E060 @街道) needs a street
    d = route(city, code, where)
    assert (d.department_id, d.principle, d.no_owner, d.rule_id) == ("CQ-XT", NO_OWNER, True, None)
    assert d.candidates == [] and not d.ambiguous
    assert d.basis == city.router.vocabulary.principles[NO_OWNER]
    assert "无责任主体" in d.trail[-1]


def test_no_rule_in_a_district_goes_to_its_coordinator(city):
    # 01010 热力井盖异常: no rule names it and no catch-all covers 事件 01xxx
    assert not [r for r in city.router.rules if r.code in ("01010", "010*", "01*", "*") and r.kind in ("事件", "*")
                and r.context == "*" and r.owner == "*"]
    for where, coordinator in ((JIANGBEI, "JB-XT"), (JIEFANGBEI, "YZ-XT"), (OUTSIDE, "CQ-XT")):
        d = route(city, "01010", where)
        assert (d.department_id, d.no_owner, d.principle, d.rule_id) == (coordinator, True, NO_OWNER, None)


def test_exclude_skips_departments_that_returned_the_case(city):
    d = route(city, "06010", JIANGBEI, exclude=frozenset({"JB-HW"}))
    assert (d.department_id, d.rule_id) == ("JB-GYQ", "E060")
    assert any("已退回过本案" in line for line in d.trail)
    d = route(city, "06010", JIANGBEI, exclude=frozenset({"JB-HW", "JB-GYQ"}))
    assert (d.department_id, d.no_owner) == ("JB-XT", True)


# -- ambiguity -------------------------------------------------------------------------------


def _router(city, *rules: Rule) -> Router:
    return Router(list(rules), city.router.vocabulary, city.departments, city.settings.coordinator)


def _rule(id_, department, **kw) -> Rule:
    return Rule(id=id_, kind="事件", code="06010", area="500105", department=department, principle="行业主管", **kw)


def test_two_equally_specific_rules_are_ambiguous(city):
    entry = city.catalogue.get("06010")
    place = Place(district_id="500105", street_id="500105001")
    d = _router(city, _rule("A1", "JB-HW"), _rule("A2", "JB-SZ")).route(entry, place)
    assert d.ambiguous
    assert {c.department_id for c in d.candidates} == {"JB-HW", "JB-SZ"}
    assert {c.rule_id for c in d.candidates} == {"A1", "A2"}
    assert d.department_id in ("JB-HW", "JB-SZ")
    assert any("需人工或模型裁定" in line for line in d.trail)


def test_same_department_twice_or_a_priority_is_not_ambiguous(city):
    entry = city.catalogue.get("06010")
    place = Place(district_id="500105", street_id="500105001")
    assert not _router(city, _rule("A1", "JB-HW"), _rule("A2", "JB-HW")).route(entry, place).ambiguous
    d = _router(city, _rule("A1", "JB-HW"), _rule("A2", "JB-SZ", priority=1)).route(entry, place)
    assert (d.ambiguous, d.department_id, d.rule_id) == (False, "JB-SZ", "A2")
    # more specific (a context) wins without ambiguity
    d = _router(city, _rule("A1", "JB-HW"), _rule("A2", "JB-SZ", context="道路")).route(
        entry, place.model_copy(update={"context": "道路"}))
    assert (d.ambiguous, d.department_id) == (False, "JB-SZ")
    # a rival that cannot be resolved here (@街道 with no street) is not a rival
    d = _router(city, _rule("A1", "JB-HW"), _rule("A2", "@街道")).route(entry, Place(district_id="500105"))
    assert (d.ambiguous, d.department_id) == (False, "JB-HW")


# -- unknown vocabulary ------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "word"), [({"context": "屋顶"}, "context"), ({"owner": "隔壁老王"}, "owner"),
                                          ({"context": ""}, "context")])
def test_unknown_context_or_owner_is_invalid_input(city, kw, word):
    with pytest.raises(InvalidInput, match=f"unknown {word}"):
        route(city, "06010", JIANGBEI, **kw)


def test_every_sample_rule_is_reachable_data(city):
    """Each rule of the sample names a department that exists (or @街道/@协调), and the
    router resolves every 事件 class in both districts without error."""
    for r in city.router.rules:
        assert r.department in ("@街道", "@协调") or r.department in city.departments
    for entry in city.catalogue:
        for where in (JIANGBEI, JIEFANGBEI):
            d = city.route(entry, *where)
            assert d.department_id in city.departments


# -- rules.csv validation -------------------------------------------------------------------


@pytest.fixture
def data_copy(tmp_path, city):
    folder = tmp_path / "citydata"
    shutil.copytree(city.folder, folder)
    return folder


def _edit_rules(folder, line_no: int, **changes) -> None:
    """Change fields of the rule on ``line_no`` (1 = the header) of rules.csv."""
    path = folder / "rules.csv"
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    header = next(csv.reader([lines[0]]))
    row = dict(zip(header, next(csv.reader([lines[line_no - 1]]))))
    row.update(changes)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([row[h] for h in header])
    lines[line_no - 1] = out.getvalue()
    path.write_text("".join(lines), encoding="utf-8")


def test_copy_loads_like_the_original(data_copy, city):
    copy = load_city(data_copy)
    assert copy is not city and copy.folder == data_copy.resolve()
    assert [r.id for r in copy.router.rules] == [r.id for r in city.router.rules]


@pytest.mark.parametrize(("changes", "field", "says"), [
    ({"code": "01999"}, "code", "not in the catalogue"),
    ({"department": "JB-NOPE"}, "department", "unknown department"),
    ({"context": "屋顶"}, "context", "not in routing.yaml contexts"),
    ({"owner": "隔壁"}, "owner", "not in routing.yaml owners"),
    ({"principle": "谁看见谁负责"}, "principle", "not in routing.yaml principles"),
    ({"id": "W001"}, "id", "duplicate rule id"),
    ({"code": "6010"}, "code", ""),
    ({"area": "5001"}, "area", ""),
    ({"kind": "物件"}, "kind", ""),
    ({"priority": "high"}, "priority", ""),
], ids=["unknown-code", "unknown-department", "bad-context", "bad-owner", "bad-principle", "duplicate-id",
        "code-pattern", "area-pattern", "kind", "priority"])
def test_broken_rules_name_file_line_and_field(data_copy, changes, field, says):
    line = 10  # W009
    _edit_rules(data_copy, line, **changes)
    with pytest.raises(DataError) as err:
        load_city(data_copy)
    msg = str(err.value)
    assert str(data_copy / "rules.csv") in msg
    assert f"line {line}" in msg
    assert f"field {field}" in msg
    assert says in msg


def test_unknown_city_coordinator_is_a_data_error(data_copy):
    path = data_copy / "city.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("coordinator: CQ-XT", "coordinator: CQ-NONE"), encoding="utf-8")
    with pytest.raises(DataError, match="coordinator"):
        load_city(data_copy)
