"""Statistics, the dashboard, the map and the pickers' reference data over HTTP
(a real server on loopback); a department user's view is its own department's."""

from __future__ import annotations

from datetime import datetime, timedelta

from live_server import DEPARTMENT, DISPATCHER, VIEWER
from test_api_cases import GUANYINQIAO, PAST, SHANGQINGSI, citizen, dispatched, new_case

from city.catalogue import Source
from city.lifecycle import Action


def test_every_dashboard_endpoint_needs_a_signed_in_user(live):
    with live.client() as anon:
        for path in ("/api/stats", "/api/dashboard", "/api/map/cases", "/api/map/areas", "/api/catalogue", "/api/departments"):
            r = anon.get(path)
            assert r.status_code == 401, path
            assert r.json()["detail"].startswith("需要登录")


def test_stats_as_the_cli_computes_them_scoped_for_a_department(live):
    st = live.store
    a = dispatched(live)
    st.act(a.number, Action.ACCEPT, actor="测试")
    st.act(a.number, Action.COMPLETE, actor="测试", note="已清运")
    dispatched(live, at=SHANGQINGSI)
    new_case(live, source=Source.VEHICLE, at=None)
    with live.client(VIEWER) as c:
        r = c.get("/api/stats")
        assert r.status_code == 200, r.text
        rep = r.json()
        assert rep["total"]["reported"] == 3 and rep["total"]["dispatched"] == 2 and rep["group_name"] == "责任单位"
        assert {row["key"] for row in rep["rows"]} == {"JB-HW", "YZ-HW", None}
        assert rep["total"]["handled"] == {"num": 1, "den": 2, "rate": 0.5}
        assert rep["definitions"]["on_time"]["name"]
        by_source = c.get("/api/stats", params={"by": "source"}).json()
        assert {row["key"]: row["reported"] for row in by_source["rows"]} == {"市民": 2, "车巡": 1}
        today = datetime.now(st.tz).date()
        one_day = c.get("/api/stats", params={"since": today.isoformat(), "until": today.isoformat()}).json()
        assert one_day["total"]["reported"] == 3
        assert c.get("/api/stats", params={"until": (today - timedelta(days=1)).isoformat()}).json()["total"]["reported"] == 0
        assert c.get("/api/stats", params={"since": "2026-12-01", "until": "2026-11-01"}).status_code == 422
        assert c.get("/api/stats", params={"by": "weather"}).status_code == 422
        assert c.get("/api/stats", params={"department_id": "NOPE"}).status_code == 404
    with live.client(DEPARTMENT) as c:
        mine = c.get("/api/stats").json()
        assert [row["key"] for row in mine["rows"]] == ["JB-HW"] and mine["query"]["department_id"] == "JB-HW"
        assert c.get("/api/stats", params={"department_id": "YZ-HW"}).status_code == 403


def test_the_dashboard_counts_intake_rates_overdue_and_the_review_queue(live):
    late = dispatched(live, now=PAST)  # 10 days ago, long past its time limit
    dispatched(live)
    new_case(live, source=Source.HOTLINE, at=SHANGQINGSI)
    live.services.pipeline.run(citizen("人行道井盖破了一半，很危险", at=SHANGQINGSI))  # waits for review
    # three of one code at one place: a hot spot
    for i in range(3):
        new_case(live, at=(GUANYINQIAO[0] + 0.002 + i * 1e-5, GUANYINQIAO[1]), desc=f"同一处垃圾 第{i + 1}次")
    with live.client(DISPATCHER) as c:
        d = c.get("/api/dashboard").json()
    assert set(d) >= {"period", "intake_by_source", "intake_by_day", "rates", "overdue_by_department", "hot_spots",
                      "review_waiting", "open_cases"}
    assert {s["source"]: s["count"] for s in d["intake_by_source"]} == {"市民": 6, "热线": 1}
    assert sum(x["count"] for x in d["intake_by_day"]) == 7
    local = late.created_at.astimezone(live.store.tz).date().isoformat()
    assert {"day": local, "source": "市民", "count": 1} in d["intake_by_day"]
    assert set(d["rates"]) >= {"handling_rate", "on_time_rate", "closure_rate", "dispatch_accuracy", "rework_rate",
                               "satisfaction_rate"}
    assert d["rates"]["dispatch_accuracy"] == 1.0 and d["rates"]["on_time_rate"] == 0.0 and d["rates"]["closure_rate"] == 0.0
    jb = next(x for x in d["overdue_by_department"] if x["department_id"] == "JB-HW")
    assert jb == {"department_id": "JB-HW", "name": "江北区环境卫生管理所", "overdue": 1, "due_soon": 0}
    assert d["review_waiting"] == 1 and d["open_cases"] == 7
    assert len(d["hot_spots"]) == 1 and d["hot_spots"][0]["count"] == 3 and d["hot_spots"][0]["code"] == "06010"
    assert datetime.fromisoformat(d["period"]["until"]) - datetime.fromisoformat(d["period"]["since"]) < timedelta(days=30)
    with live.client(DISPATCHER) as c:
        week = c.get("/api/dashboard", params={"days": 7}).json()
        assert sum(x["count"] for x in week["intake_by_day"]) == 6  # the case of 10 days ago is out
        assert c.get("/api/dashboard", params={"days": 0}).status_code == 422
    with live.client(DEPARTMENT) as c:
        mine = c.get("/api/dashboard").json()
    assert mine["review_waiting"] == 0 and mine["open_cases"] == 2
    assert [x["department_id"] for x in mine["overdue_by_department"]] == ["JB-HW"]
    assert {s["source"]: s["count"] for s in mine["intake_by_source"]} == {"市民": 2}


def test_map_cases_are_geojson_points_with_the_list_filters(live):
    late = dispatched(live, now=PAST)
    yz = dispatched(live, at=SHANGQINGSI)
    new_case(live, at=None)  # no position: not on the map
    with live.client(VIEWER) as c:
        fc = c.get("/api/map/cases").json()
        assert fc["type"] == "FeatureCollection" and fc["total"] == 2 and len(fc["features"]) == 2
        f = fc["features"][-1]
        assert f["geometry"] == {"type": "Point", "coordinates": [GUANYINQIAO[1], GUANYINQIAO[0]]}
        assert f["properties"] == {"number": late.number, "status": "派遣", "risk_level": late.risk_level.value,
                                   "title": "暴露垃圾", "code": "06010", "overdue": True,
                                   "department_name": "江北区环境卫生管理所", "address": late.address}
        only = c.get("/api/map/cases", params={"overdue": "true"}).json()
        assert [x["properties"]["number"] for x in only["features"]] == [late.number]
        assert c.get("/api/map/cases", params={"district_id": "500103"}).json()["features"][0]["properties"]["number"] == yz.number
        assert c.get("/api/map/cases", params={"limit": 5000}).status_code == 200
        assert c.get("/api/map/cases", params={"limit": 5001}).status_code == 422
    with live.client(DEPARTMENT) as c:
        assert [x["properties"]["number"] for x in c.get("/api/map/cases").json()["features"]] == [late.number]


def test_map_areas_catalogue_and_departments(live):
    j = live.store.city.jurisdiction
    with live.client(VIEWER) as c:
        areas = c.get("/api/map/areas").json()
        assert areas["type"] == "FeatureCollection"
        levels = [f["properties"]["level"] for f in areas["features"]]
        assert levels.count("district") == len(j.districts) and levels.count("street") == len(j.streets)
        assert levels.count("grid") == len(j.grids)
        d = next(f for f in areas["features"] if f["properties"]["id"] == "500105")
        assert d["properties"] == {"level": "district", "id": "500105", "name": "江北区", "parent": d["properties"]["parent"]}
        assert d["geometry"]["type"] in ("Polygon", "MultiPolygon")
        streets = c.get("/api/map/areas", params={"level": "street"}).json()["features"]
        assert {f["properties"]["level"] for f in streets} == {"street"} and len(streets) == len(j.streets)

        hits = c.get("/api/catalogue", params={"q": "路边有暴露垃圾"}).json()
        assert hits[0]["code"] == "06010" and hits[0]["name"] == "暴露垃圾" and hits[0]["score"] > 0 and hits[0]["major"]
        assert len(c.get("/api/catalogue").json()) == 20
        assert {e["code"][:4] for e in c.get("/api/catalogue", params={"q": "0601", "limit": 50}).json()} == {"0601"}
        parts = c.get("/api/catalogue", params={"kind": "部件", "limit": 5}).json()
        assert len(parts) == 5 and {e["kind"] for e in parts} == {"部件"}
        depts = c.get("/api/departments").json()
        hw = next(x for x in depts if x["id"] == "JB-HW")
        assert hw["name"] == "江北区环境卫生管理所" and hw["type"] == "环卫" and "short" in hw
        assert len(depts) == len(list(live.store.city.departments))


def test_a_department_user_cannot_widen_its_view(live):
    with live.client(DEPARTMENT) as c:
        assert c.get("/api/map/cases", params={"department_id": "YZ-HW"}).status_code == 403
        r = c.get("/api/stats", params={"department_id": "YZ-HW"})
        assert r.status_code == 403 and "只能查看本单位" in r.json()["detail"]
        assert c.get("/api/map/cases", params={"department_id": "JB-HW"}).status_code == 200


def test_intake_by_local_day_on_both_databases(store):
    from app.api.dashboard import _intake
    from city.cases import NewCase

    tz = store.tz
    late_evening = datetime(2026, 11, 20, 23, 30, tzinfo=tz)  # 15:30 UTC: the local day is the 20th
    early = datetime(2026, 11, 21, 0, 30, tzinfo=tz)  # 16:30 UTC on the 20th: the local day is the 21st
    for t, source in ((late_evening, Source.CITIZEN), (early, Source.CITIZEN), (early, Source.HOTLINE)):
        store.create_case(NewCase(source=source, code="06010", description="路边垃圾"), now=t)
    rows = _intake(store, datetime(2026, 11, 1, tzinfo=tz), datetime(2026, 12, 1, tzinfo=tz), None)
    assert [(r.day.isoformat(), r.source, r.count) for r in rows] == [
        ("2026-11-20", "市民", 1), ("2026-11-21", "市民", 1), ("2026-11-21", "热线", 1)]
    assert _intake(store, datetime(2026, 11, 1, tzinfo=tz), datetime(2026, 12, 1, tzinfo=tz), "JB-HW") == []
