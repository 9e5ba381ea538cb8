"""Performance evaluation (``city.stats``, ``xunjian stats``) on a real store,
SQLite and PostgreSQL: a scripted week of cases with every figure worked out
by hand, period filtering, hot spots, CSV/XLSX export and the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import typer
from typer.testing import CliRunner

from app.cli import common
from app.cli import stats as stats_cli
from city import settings
from city.bundle import load_city
from city.cases import NewCase
from city.catalogue import Urgency, WorkDuration
from city.errors import DataError, InvalidInput
from city.geo import destination
from city.lifecycle import Action, Status
from city.stats import (
    GroupBy,
    StatsConfig,
    StatsQuery,
    compute,
    fmt_rate,
    hot_spots,
    load_config,
    to_csv,
    to_xlsx,
)

TZ = ZoneInfo("Asia/Shanghai")
JIANGBEI = (29.575, 106.53)  # 江北区 观音桥街道 (500105001)
HUAXINJIE = (29.57, 106.55)  # 江北区 华新街街道 (500105002)
JIEFANGBEI = (29.5578, 106.5751)  # 渝中区 解放碑街道 (500103001)
NEAR_10M = tuple(destination(*JIANGBEI, 0, 10))  # 10 m north of JIANGBEI
NEAR_20M = tuple(destination(*JIANGBEI, 90, 20))  # 20 m east
FAR_100M = tuple(destination(*JIANGBEI, 180, 100))  # 100 m south

WEEK = (datetime(2026, 11, 23, tzinfo=TZ), datetime(2026, 11, 30, tzinfo=TZ))  # Monday to Monday
AS_OF = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)


def t(day: int, hhmm: str) -> datetime:
    """A time in November 2026, Asia/Shanghai (23 = Monday)."""
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, 11, day, h, m, tzinfo=TZ)


def create(store, where, source: str, when: datetime, code: str = "06010") -> str:
    """A case of ``code`` (urgency 较急: 06010 has 4工作时) reported at ``when``."""
    new = NewCase(source=source, code=code, description="路边有垃圾堆放", lat=where[0], lon=where[1], urgency=Urgency.HIGH)
    return store.create_case(new, actor="reporter", now=when).number


def play(store, number: str, *steps) -> None:
    """Apply (action, time, keyword arguments...) steps in order."""
    for action, when, *kw in steps:
        store.act(number, action, actor="tester", now=when, **(kw[0] if kw else {}))


def dispatch(dept: str, when: datetime):
    return (Action.DISPATCH, when, {"department_id": dept})


def handle(day: int, accept: str, done: str):
    return [(Action.ACCEPT, t(day, accept)), (Action.COMPLETE, t(day, done), {"note": "已处置"})]


def verify(day: int, request: str, decided: str, ok: bool = True):
    decision = (Action.PASS, t(day, decided)) if ok else (Action.FAIL, t(day, decided), {"note": "仍有垃圾"})
    return [(Action.REQUEST_VERIFY, t(day, request)), decision]


@pytest.fixture
def week(store):
    """The scripted week; calendars: JB-HW and YZ-HW ``extended`` (08:00-20:00
    every day), JB-SZ ``standard`` (08:30-12:00, 13:30-18:00 Mon-Fri). 06010 较急:
    4工作时. Returns the store and the case numbers by letter.

    A 市民 观音桥: JB-HW 09:00 (due 13:00), done 11:00 (2.0 h), passed, rated 5.
    B 车巡 +10 m: JB-HW 09:00 (due 13:00), done 15:00 late (6.0 h), 核查不通过 15:30
      (rework due 19:30), done 18:00 (2.5 h), passed, rated 3.
    C 机巡 +20 m: JB-SZ 09:00, 退回 10:00; JB-HW 10:30 (due 14:30), done 14:00 (3.5 h), passed.
    D 热线 华新街: JB-SZ 09:00 (due 14:30), accepted, never done: overdue.
    E 采集员 华新街, Tuesday: JB-SZ 09:00 (due 14:30), 延期 1工作日 (due Wed 14:30),
      done Wed 11:00 (10.0 working hours), passed Wed 12:00, rated 4.
    F 市民 解放碑: YZ-HW 09:00 (due 13:00), done 12:00 (3.0 h), passed, rated 1.
    G 市民 解放碑: filed, not dispatched.
    H 市民 观音桥: 不予立案 (and not a hot-spot member).
    I 市民 观音桥, Sunday before: JB-HW Sun 17:00 (due Mon 09:00), untouched since: overdue in the week.
    J 市民 观音桥, the Monday after the week: filed and dispatched; counts nowhere.
    """
    mon = 23
    n = {}
    n["A"] = create(store, JIANGBEI, "市民", t(mon, "08:00"))
    play(store, n["A"], (Action.FILE, t(mon, "08:10")), dispatch("JB-HW", t(mon, "09:00")), *handle(mon, "09:30", "11:00"),
         *verify(mon, "11:10", "11:30"), (Action.EVALUATE, t(mon, "12:00"), {"rating": 5}))
    n["B"] = create(store, NEAR_10M, "车巡", t(mon, "08:00"))
    play(store, n["B"], (Action.FILE, t(mon, "08:10")), dispatch("JB-HW", t(mon, "09:00")), *handle(mon, "09:30", "15:00"),
         *verify(mon, "15:10", "15:30", ok=False), *handle(mon, "16:00", "18:00"), *verify(mon, "18:10", "18:30"),
         (Action.EVALUATE, t(mon, "19:00"), {"rating": 3}))
    n["C"] = create(store, NEAR_20M, "机巡", t(mon, "08:00"))
    play(store, n["C"], (Action.FILE, t(mon, "08:10")), dispatch("JB-SZ", t(mon, "09:00")),
         (Action.RETURN, t(mon, "10:00"), {"note": "不属于本单位职责"}), dispatch("JB-HW", t(mon, "10:30")),
         *handle(mon, "11:00", "14:00"), *verify(mon, "14:10", "14:30"))
    n["D"] = create(store, HUAXINJIE, "热线", t(mon, "08:00"))
    play(store, n["D"], (Action.FILE, t(mon, "08:10")), dispatch("JB-SZ", t(mon, "09:00")), (Action.ACCEPT, t(mon, "09:30")))
    n["E"] = create(store, HUAXINJIE, "采集员", t(24, "08:00"))
    play(store, n["E"], (Action.FILE, t(24, "08:10")), dispatch("JB-SZ", t(24, "09:00")), (Action.ACCEPT, t(24, "09:30")),
         (Action.EXTEND, t(24, "10:00"), {"note": "需协调", "extend": WorkDuration.model_validate("1工作日"), "approver": "值班长"}),
         (Action.COMPLETE, t(25, "11:00"), {"note": "已处置"}), *verify(25, "11:30", "12:00"),
         (Action.EVALUATE, t(25, "13:00"), {"rating": 4}))
    n["F"] = create(store, JIEFANGBEI, "市民", t(mon, "08:00"))
    play(store, n["F"], (Action.FILE, t(mon, "08:10")), dispatch("YZ-HW", t(mon, "09:00")), *handle(mon, "09:30", "12:00"),
         *verify(mon, "12:10", "12:30"), (Action.EVALUATE, t(mon, "13:00"), {"rating": 1}))
    n["G"] = create(store, JIEFANGBEI, "市民", t(mon, "08:00"))
    play(store, n["G"], (Action.FILE, t(mon, "08:10")))
    n["H"] = create(store, JIANGBEI, "市民", t(mon, "08:00"))
    play(store, n["H"], (Action.DECLINE, t(mon, "08:10"), {"note": "非城管问题"}))
    n["I"] = create(store, JIANGBEI, "市民", t(22, "16:00"))
    play(store, n["I"], (Action.FILE, t(22, "16:10")), dispatch("JB-HW", t(22, "17:00")))
    n["J"] = create(store, JIANGBEI, "市民", t(30, "09:00"))
    play(store, n["J"], (Action.FILE, t(30, "09:10")), dispatch("JB-HW", t(30, "09:30")))
    return store, n


def report(store, by=GroupBy.DEPARTMENT, period=WEEK, **kw):
    return compute(store, StatsQuery(since=period[0], until=period[1], by=by, **kw), now=AS_OF)


def figures(row) -> dict:
    """Every metric of a row as plain numbers: ratios as (num, den)."""
    def r(x):
        return (x.num, x.den)

    return {
        "reported": row.reported, "filed": row.filed, "closed": r(row.closed), "dispatched": row.dispatched,
        "returned": row.returned, "accuracy": r(row.dispatch_accuracy), "handled": r(row.handled),
        "on_time": r(row.on_time), "rework": r(row.rework),
        "hours": (row.handling_hours.count, row.handling_hours.total), "rating": (row.rating.count, row.rating.total),
        "satisfied": r(row.satisfied),
    }


def test_the_scripted_history_is_as_described(week, store):
    _, n = week
    assert store.get(n["E"]).deadline == t(25, "14:30")  # 14:30 Tue + 1工作日 (8 h) on standard
    assert store.get(n["I"]).deadline == t(23, "09:00")  # 3 h on Sunday evening, 1 h on Monday morning
    assert store.get(n["B"]).rework_count == 1 and store.get(n["C"]).department_id == "JB-HW"
    assert {n_: store.get(n[n_]).street_id for n_ in "ABCH"} == dict.fromkeys("ABCH", "500105001")
    assert store.get(n["D"]).status is Status.IN_PROGRESS and store.get(n["I"]).status is Status.DISPATCHED


def test_by_department_every_metric(week):
    rep = report(week[0])
    rows = {r.key: r for r in rep.rows}
    assert list(rows) == ["JB-HW", "JB-SZ", "YZ-HW", None]
    assert [r.label for r in rep.rows] == ["江北区环境卫生管理所", "江北区市政设施管理所", "渝中区环境卫生管理所", "（未派遣）"]
    assert figures(rows["JB-HW"]) == {
        "reported": 3, "filed": 3, "closed": (3, 3), "dispatched": 3, "returned": 0, "accuracy": (3, 3),
        "handled": (3, 3),
        "on_time": (3, 5),  # A, B's rework, C in time; B late; I overdue at Mon 09:00
        "rework": (1, 3), "hours": (4, 14.0),  # 2.0 + 6.0 + 2.5 + 3.5
        "rating": (2, 8.0), "satisfied": (1, 2),
    }
    assert figures(rows["JB-SZ"]) == {
        "reported": 2, "filed": 2, "closed": (1, 2), "dispatched": 3, "returned": 1, "accuracy": (2, 3),
        "handled": (1, 3), "on_time": (1, 2),  # E in time after 延期; D overdue; C returned in time: not due
        "rework": (0, 1), "hours": (1, 10.0), "rating": (1, 4.0), "satisfied": (1, 1),
    }
    assert figures(rows["YZ-HW"]) == {
        "reported": 1, "filed": 1, "closed": (1, 1), "dispatched": 1, "returned": 0, "accuracy": (1, 1),
        "handled": (1, 1), "on_time": (1, 1), "rework": (0, 1), "hours": (1, 3.0), "rating": (1, 1.0), "satisfied": (0, 1),
    }
    assert figures(rows[None]) == {
        "reported": 2, "filed": 1, "closed": (0, 1), "dispatched": 0, "returned": 0, "accuracy": (0, 0),
        "handled": (0, 0), "on_time": (0, 0), "rework": (0, 0), "hours": (0, 0.0), "rating": (0, 0.0), "satisfied": (0, 0),
    }
    total = rep.total
    assert figures(total) == {
        "reported": 8, "filed": 7, "closed": (5, 7), "dispatched": 7, "returned": 1, "accuracy": (6, 7),
        "handled": (5, 7), "on_time": (5, 8), "rework": (1, 5), "hours": (6, 27.0), "rating": (4, 13.0), "satisfied": (2, 4),
    }
    assert total.reported_by_source == {"车巡": 1, "机巡": 1, "市民": 4, "热线": 1, "采集员": 1}
    assert rows["JB-HW"].reported_by_source == {"车巡": 1, "机巡": 1, "市民": 1, "热线": 0, "采集员": 0}
    assert total.handling_hours.mean == 4.5 and total.rating.mean == 3.25 and total.on_time.rate == 5 / 8
    assert rows["JB-HW"].handling_hours.mean == 3.5 and rows["JB-SZ"].dispatch_accuracy.rate == 2 / 3
    assert rows[None].on_time.rate is None and rows[None].rating.mean is None and rows[None].handling_hours.mean is None


def test_by_district_street_and_source(week):
    store = week[0]
    rows = {r.key: r for r in report(store, GroupBy.DISTRICT).rows}
    assert [(k, r.label) for k, r in rows.items()] == [("500103", "渝中区"), ("500105", "江北区")]
    assert figures(rows["500105"]) == {
        "reported": 6, "filed": 5, "closed": (4, 5), "dispatched": 6, "returned": 1, "accuracy": (5, 6),
        "handled": (4, 6), "on_time": (4, 7), "rework": (1, 4), "hours": (5, 24.0), "rating": (3, 12.0), "satisfied": (2, 3),
    }
    assert figures(rows["500103"]) == {
        "reported": 2, "filed": 2, "closed": (1, 2), "dispatched": 1, "returned": 0, "accuracy": (1, 1),
        "handled": (1, 1), "on_time": (1, 1), "rework": (0, 1), "hours": (1, 3.0), "rating": (1, 1.0), "satisfied": (0, 1),
    }
    streets = {r.label: figures(r) for r in report(store, GroupBy.STREET).rows}
    assert list(streets) == ["解放碑街道", "观音桥街道", "华新街街道"]  # by id: 500103001, 500105001, 500105002
    assert streets["华新街街道"]["on_time"] == (1, 2) and streets["华新街街道"]["hours"] == (1, 10.0)
    assert streets["观音桥街道"]["on_time"] == (3, 5) and streets["观音桥街道"]["accuracy"] == (3, 4)
    by_source = {r.key: figures(r) for r in report(store, GroupBy.SOURCE).rows}
    assert list(by_source) == ["车巡", "机巡", "市民", "热线", "采集员"]
    assert by_source["市民"] == {
        "reported": 4, "filed": 3, "closed": (2, 3), "dispatched": 2, "returned": 0, "accuracy": (2, 2),
        "handled": (2, 2), "on_time": (2, 3), "rework": (0, 2), "hours": (2, 5.0), "rating": (2, 6.0), "satisfied": (1, 2),
    }
    assert by_source["机巡"]["accuracy"] == (1, 2) and by_source["车巡"]["rework"] == (1, 1)
    for by in GroupBy:  # the totals do not depend on the grouping
        assert figures(report(store, by).total) == figures(report(store).total)


def test_filters_attribute_events_to_the_department_that_held_the_case(week):
    store = week[0]
    rep = report(store, GroupBy.STREET, department_id="JB-SZ")
    rows = {r.label: figures(r) for r in rep.rows}
    assert rows == {
        "观音桥街道": {  # C: dispatched to JB-SZ and returned; the case itself is now JB-HW's
            "reported": 0, "filed": 0, "closed": (0, 0), "dispatched": 1, "returned": 1, "accuracy": (0, 1),
            "handled": (0, 1), "on_time": (0, 0), "rework": (0, 0), "hours": (0, 0.0), "rating": (0, 0.0), "satisfied": (0, 0)},
        "华新街街道": {  # D and E
            "reported": 2, "filed": 2, "closed": (1, 2), "dispatched": 2, "returned": 0, "accuracy": (2, 2),
            "handled": (1, 2), "on_time": (1, 2), "rework": (0, 1), "hours": (1, 10.0), "rating": (1, 4.0), "satisfied": (1, 1)},
    }
    yz = report(store, district_id="500103")
    assert [r.key for r in yz.rows] == ["YZ-HW", None]
    assert figures(yz.total)["reported"] == 2 and figures(yz.total)["on_time"] == (1, 1)
    assert [h.count for h in yz.hot_spots] == []


def test_period_filtering(week):
    store = week[0]
    tuesday = report(store, period=(t(24, "00:00"), t(25, "00:00")))
    assert [r.key for r in tuesday.rows] == ["JB-SZ"]
    assert figures(tuesday.total) == {  # E only: closed, done and due after the day
        "reported": 1, "filed": 1, "closed": (0, 1), "dispatched": 1, "returned": 0, "accuracy": (1, 1),
        "handled": (0, 1), "on_time": (0, 0), "rework": (0, 0), "hours": (0, 0.0), "rating": (0, 0.0), "satisfied": (0, 0),
    }
    assert tuesday.total.on_time.rate is None and tuesday.total.rework.rate is None and tuesday.hot_spots == []
    monday_morning = report(store, period=(t(23, "00:00"), t(23, "12:00")))
    hw = {r.key: r for r in monday_morning.rows}["JB-HW"]
    # A (done 11:00 in time), I (overdue 09:00); B's limit (13:00) has not run out by noon; C handled later
    assert figures(hw)["on_time"] == (1, 2) and figures(hw)["handled"] == (1, 3) and figures(hw)["hours"] == (1, 2.0)
    later = report(store, period=(t(30, "00:00"), t(30, "23:59")))
    assert figures(later.total)["reported"] == 1 and figures(later.total)["dispatched"] == 1  # J only
    before = report(store, period=(t(22, "00:00"), t(23, "00:00")))
    assert figures(before.total)["dispatched"] == 1 and figures(before.total)["on_time"] == (0, 0)  # I: due Monday


def test_hot_spots_in_the_week(week):
    store, n = week
    rep = report(store)
    assert len(rep.hot_spots) == 1
    spot = rep.hot_spots[0]
    assert (spot.code, spot.title, spot.count, spot.place) == ("06010", "暴露垃圾", 3, "江北区 观音桥街道")
    assert sorted(spot.cases) == sorted([n["A"], n["B"], n["C"]])  # H (不予立案), I (before) and J (after) not
    assert spot.first_at == t(23, "08:00") and spot.last_at == t(23, "08:00")
    assert report(store, department_id="JB-SZ").hot_spots == []  # the department's own cases: D and E only


def test_hot_spot_radius_count_and_code(store):
    mon = t(23, "08:00")
    near = [create(store, p, "车巡", mon + timedelta(hours=i)) for i, p in enumerate([JIANGBEI, NEAR_10M, NEAR_20M])]
    far = create(store, FAR_100M, "车巡", mon)
    other_code = [create(store, JIANGBEI, "车巡", mon, code="09006") for _ in range(2)]
    void = create(store, JIANGBEI, "市民", mon, code="09006")
    play(store, void, (Action.VOID, mon + timedelta(minutes=5), {"note": "重复上报", "duplicate_of": other_code[0]}))
    q = StatsQuery(since=WEEK[0], until=WEEK[1])
    spots = hot_spots(store, q)
    assert [(h.code, h.cases, h.centre) for h in spots] == [("06010", near, near[0])]
    assert far not in spots[0].cases and spots[0].last_at == mon + timedelta(hours=2)
    cfg = load_config(store.city)
    assert (cfg.hot_spots.radius_m, cfg.hot_spots.min_cases) == (30, 3)
    wide = cfg.hot_spots.model_copy(update={"radius_m": 150.0})
    assert [h.count for h in hot_spots(store, q, wide)] == [4]
    two = cfg.hot_spots.model_copy(update={"min_cases": 2, "exclude_statuses": []})
    assert sorted((h.code, h.count) for h in hot_spots(store, q, two)) == [("06010", 3), ("09006", 3)]


def test_config_is_validated(city):
    cfg = load_config(city)
    assert cfg.satisfaction.satisfied_min_rating == 4 and "按期处置数" in cfg.metrics["on_time"].formula
    assert cfg.metrics["dispatch_accuracy"].name == "派遣准确率"
    with pytest.raises(ValueError, match="missing metrics"):
        StatsConfig.model_validate({**cfg.model_dump(), "metrics": {"reported": {"name": "上报数", "formula": "…"}}})
    with pytest.raises(ValueError, match="min_cases"):
        StatsConfig.model_validate({**cfg.model_dump(), "hot_spots": {"radius_m": 30, "min_cases": 1}})
    with pytest.raises(ValueError, match="not after"):
        StatsQuery(since=WEEK[1], until=WEEK[0])
    with pytest.raises(ValueError, match="time zone"):
        StatsQuery(since=datetime(2026, 11, 23), until=datetime(2026, 11, 30))


def test_a_city_folder_may_bring_its_own_stats_yaml(tmp_path):
    text = (settings.BUNDLED_CITY_DATA / "stats.yaml").read_text(encoding="utf-8")

    def city_with(stats_yaml: str | None, name: str):
        folder = tmp_path / name
        shutil.copytree(settings.BUNDLED_CITY_DATA, folder)
        if stats_yaml is None:
            (folder / "stats.yaml").unlink()
        else:
            (folder / "stats.yaml").write_text(stats_yaml, encoding="utf-8")
        return load_city(folder)

    assert load_config(city_with(text.replace("min_cases: 3", "min_cases: 5"), "own")).hot_spots.min_cases == 5
    assert load_config(city_with(None, "none")).hot_spots.min_cases == 3  # the bundled file
    with pytest.raises(DataError, match=r"stats.yaml: field hot_spots.radius_m"):
        load_config(city_with(text.replace("radius_m: 30", "radius_m: -1"), "bad"))


def test_csv_and_xlsx_export(week, tmp_path):
    rep = report(week[0])
    with to_csv(rep, tmp_path / "stats.csv").open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["责任单位"] for r in rows] == ["江北区环境卫生管理所", "江北区市政设施管理所", "渝中区环境卫生管理所", "（未派遣）", "合计"]
    sz, total = rows[1], rows[-1]
    assert (sz["责任单位代码"], sz["派遣数"], sz["被退回数"], sz["派遣准确率"]) == ("JB-SZ", "3", "1", "66.7%")
    assert (sz["按期处置率"], sz["平均处置用时（工作时）"], sz["上报-热线"]) == ("50.0%", "10.00", "1")
    assert (total["上报数"], total["立案数"], total["结案率"], total["处置率"], total["按期处置率"]) == ("8", "7", "71.4%", "71.4%", "62.5%")
    assert (total["返工率"], total["平均评分"], total["满意率"], total["平均处置用时（工作时）"]) == ("20.0%", "3.25", "50.0%", "4.50")
    assert rows[3]["按期处置率"] == "—" and rows[3]["平均评分"] == "—"

    wb = openpyxl.load_workbook(to_xlsx(rep, tmp_path / "stats.xlsx"))
    assert wb.sheetnames == ["指标", "热点", "口径"]
    sheet = [list(r) for r in wb["指标"].iter_rows(values_only=True)]
    head = sheet[0]
    data = {r[0] or "合计": dict(zip(head, r)) for r in sheet[1:]}
    assert data["合计"]["派遣准确率"] == pytest.approx(6 / 7) and data["合计"]["平均处置用时（工作时）"] == 4.5
    assert data["JB-HW"]["返工率"] == pytest.approx(1 / 3) and data["JB-HW"]["应处置数"] == 5
    assert wb["指标"].cell(row=2, column=head.index("派遣准确率") + 1).number_format == "0.0%"
    assert [r[1] for r in sheet[1:]][-2:] == ["（未派遣）", "合计"] and sheet[4][head.index("按期处置率")] == "—"
    spots = list(wb["热点"].iter_rows(values_only=True))
    assert spots[1][:4] == ("06010", "暴露垃圾", 3, "江北区 观音桥街道") and week[1]["A"] in spots[1][7]
    defs = {r[0]: r[1] for r in wb["口径"].iter_rows(values_only=True) if r and r[0]}
    assert "退回" in defs["派遣准确率"] and defs["热点最少件数"] == 3


@pytest.fixture
def cli(week, monkeypatch):
    """Run ``stats`` through a throw-away Typer app against the week's store."""
    store = week[0]
    monkeypatch.setattr(common.state, "db_url", store.url)
    monkeypatch.setattr(common.state, "city_data", None)
    monkeypatch.setattr(common.out, "_width", 250)  # rich reads COLUMNS only when the console is made
    app = typer.Typer()
    app.command()(stats_cli.stats)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        return result.output

    return run


def test_cli_table_totals_and_hot_spots(cli, week, tmp_path):
    out = cli("--since", "2026-11-23", "--until", "2026-11-29", "--time", "2026-12-01T09:00",
              "--csv", str(tmp_path / "s.csv"), "--xlsx", str(tmp_path / "s.xlsx"))
    for header in ("责任单位", "上报数", "立案数", "结案率", "派遣数", "派遣准确率", "处置率", "按期处置率", "返工率",
                   "平均处置用时（工作时）", "平均评分", "满意率", "合计", "重复发生热点"):
        assert header in out, header
    assert "江北区市政设施管理所" in out and "（未派遣）" in out
    assert "85.7% 6/7" in out and "62.5% 5/8" in out and "66.7% 2/3" in out and "20.0% 1/5" in out and "4.5" in out
    assert "2026-11-23 00:00 至 2026-11-30 00:00" in out  # --until a date: the day included
    assert "市民 4" in out and week[1]["A"] in out
    assert (tmp_path / "s.csv").is_file() and (tmp_path / "s.xlsx").is_file() and "已保存" in out


def test_cli_json_grouping_and_filters(cli):
    data = json.loads(cli("--since", "2026-11-23", "--until", "2026-11-30T00:00", "--time", "2026-12-01T09:00",
                          "--by", "district", "--district", "江北区", "--no-hot-spots", "--json"))
    assert [r["key"] for r in data["rows"]] == ["500105"] and data["hot_spots"] == []
    assert data["total"]["on_time"] == {"num": 4, "den": 7, "rate": 4 / 7}
    assert data["definitions"]["rework"]["name"] == "返工率"
    out = cli("--since", "2026-11-23", "--until", "2026-11-29", "--time", "2026-12-01T09:00", "--dept", "江北区环境卫生管理所",
              "--no-hot-spots")
    assert "江北区环境卫生管理所" in out and "渝中区环境卫生管理所" not in out and "重复发生热点" not in out
    empty = cli("--period", "week", "--time", "2027-01-06T10:00", "--by", "source")
    assert "2027-01-04 00:00 至 2027-01-06 10:00" in empty and "—" in empty


def test_cli_period_resolution():
    now = datetime(2026, 11, 26, 15, 0, tzinfo=TZ)  # a Thursday
    assert stats_cli.resolve_period(None, None, stats_cli.Period.WEEK, now) == (t(23, "00:00"), now)
    assert stats_cli.resolve_period(None, None, stats_cli.Period.MONTH, now) == (datetime(2026, 11, 1, tzinfo=TZ), now)
    assert stats_cli.resolve_period(None, None, stats_cli.Period.TODAY, now) == (t(26, "00:00"), now)
    assert stats_cli.resolve_period(None, None, None, now) == (now - timedelta(days=30), now)
    with pytest.raises(InvalidInput, match="--period"):
        stats_cli.resolve_period("2026-11-01", None, stats_cli.Period.WEEK, now)


def test_fmt_rate():
    assert (fmt_rate(None), fmt_rate(6 / 7), fmt_rate(1.0), fmt_rate(0.0)) == ("—", "85.7%", "100.0%", "0.0%")
