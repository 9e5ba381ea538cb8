"""The case store on SQLite and PostgreSQL: creation and numbering, listing,
masking, dedupe lookups, SLA queries, concurrency and migrations."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import func, inspect, select

from city.catalogue import Source, Urgency
from city.cases import CaseQuery, Evidence, NewCase, mask_name, mask_phone, mask_text
from city.errors import InvalidInput, NotFound, XunjianError
from city.lifecycle import Action, Status
from city.store import Store
from city.store.db import current_revision, head_revision, make_engines, migrate
from city.store.schema import AuditRow, Base, CaseRow, CounterRow
from crash_writer import drive, ref_deadline, ref_hours, ref_remaining

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)  # Monday
JIANGBEI = (29.575, 106.53)  # 江北区 观音桥街道
HUAXINJIE = (29.57, 106.55)  # 江北区 华新街街道
JIEFANGBEI = (29.5578, 106.5751)  # 渝中区 解放碑街道
NUMBER = re.compile(r"^(\d{6})-(\d{8})-(\d{4})$")


def new(code="06010", where=JIANGBEI, source="市民", **kw) -> NewCase:
    lat, lon = where if where else (None, None)
    return NewCase(source=source, code=code, description=kw.pop("description", "路边有垃圾堆放"), lat=lat, lon=lon, **kw)


def audit_rows(store) -> int:
    with store.reading() as s:
        return s.execute(select(func.count(AuditRow.id))).scalar_one()


# -- creation -------------------------------------------------------------------------------


def test_create_with_coordinates(store):
    case = store.create_case(new(address="建新北路 88 号", urgency=Urgency.HIGH,
                                 evidence=[Evidence(uri="file:///f/1.jpg", sha256="a" * 64,
                                                    captured_at=T0 - timedelta(minutes=5))]),
                             actor="reporter", now=T0)
    assert case.status is Status.REPORTED and case.source is Source.CITIZEN
    assert (case.district_id, case.street_id) == ("500105", "500105001")
    assert case.grid_id and case.grid_id.startswith("500105001")
    assert (case.lat, case.lon) == JIANGBEI
    assert case.title == "暴露垃圾" and case.kind.value == "事件" and case.code == "06010"
    assert case.urgency is Urgency.HIGH and case.address == "建新北路 88 号"
    assert case.created_at == case.updated_at == T0 and case.created_at.utcoffset() == timedelta(0)
    assert case.department_id is None and case.deadline is None and case.rework_count == 0
    assert [(e.uri, e.sha256, e.captured_at, e.added_by) for e in case.evidence] == [
        ("file:///f/1.jpg", "a" * 64, T0 - timedelta(minutes=5), "reporter")]
    assert store.get(case.number) == case


def test_create_without_coordinates(store, city):
    case = store.create_case(new(where=None, source="热线"), now=T0)
    assert case.lat is case.lon is case.district_id is case.street_id is case.grid_id is None
    assert case.number.startswith(f"{city.settings.code}-20261123-")  # the city code when no district
    assert case.urgency is city.catalogue.get("06010").default_priority


def test_create_rejects_bad_input(store):
    with pytest.raises(InvalidInput, match="outside China"):
        store.create_case(new(where=(40.7128, -74.006)), now=T0)  # New York
    with pytest.raises(InvalidInput, match="outside China"):
        store.create_case(new(where=(-33.86, 151.2)), now=T0)
    with pytest.raises(InvalidInput, match="both lat and lon"):
        store.create_case(NewCase(source="市民", code="06010", description="有垃圾", lat=29.5), now=T0)
    with pytest.raises(NotFound):
        store.create_case(new(code="99999"), now=T0)
    with pytest.raises(ValidationError):
        new(where=(95.0, 106.0))
    with pytest.raises(ValidationError):
        new(description="bad\x00text")
    with pytest.raises(InvalidInput, match="time zone"):
        store.create_case(new(), now=datetime(2026, 11, 23, 9, 0))
    assert store.count() == 0 and audit_rows(store) == 0


def test_naive_datetimes_are_rejected_everywhere(store):
    naive = datetime(2026, 11, 23, 9, 0)
    number = store.create_case(new(), now=T0).number
    with pytest.raises(InvalidInput):
        store.act(number, Action.FILE, actor="op", now=naive)
    with pytest.raises(InvalidInput):
        store.add_evidence(number, [Evidence(uri="file:///x.jpg")], actor="op", now=naive)
    with pytest.raises(InvalidInput):
        store.add_evidence(number, [Evidence(uri="file:///x.jpg", captured_at=naive)], actor="op", now=T0)
    with pytest.raises(InvalidInput):
        store.create_case(new(evidence=[Evidence(uri="file:///y.jpg", captured_at=naive)]), now=T0)
    with pytest.raises(InvalidInput):
        store.due(now=naive)
    for q in (CaseQuery(since=naive), CaseQuery(until=naive)):
        with pytest.raises(InvalidInput):
            store.list(q)
        with pytest.raises(InvalidInput):
            store.count(q)
    with pytest.raises(InvalidInput):
        store.nearby_open(*JIANGBEI, 100, since=naive)
    case = store.get(number)
    assert case.status is Status.REPORTED and len(case.history) == 1 and case.evidence == []
    assert store.count() == 1


def test_case_numbers_per_district_per_local_day(store, city):
    late = datetime(2026, 11, 23, 23, 30, tzinfo=TZ)  # 15:30 UTC, same local day
    after_midnight = datetime(2026, 11, 24, 0, 30, tzinfo=TZ)  # still 11-23 in UTC
    got = [
        store.create_case(new(where=JIANGBEI), now=T0).number,
        store.create_case(new(where=HUAXINJIE), now=T0).number,  # same district, another street
        store.create_case(new(where=JIEFANGBEI), now=T0).number,
        store.create_case(new(where=None), now=T0).number,
        store.create_case(new(where=JIANGBEI), now=late).number,
        store.create_case(new(where=JIANGBEI), now=after_midnight).number,
        store.create_case(new(where=JIEFANGBEI), now=after_midnight.astimezone(timezone.utc)).number,
        store.create_case(new(where=None), now=after_midnight).number,
        store.create_case(new(where=JIANGBEI), now=after_midnight).number,
    ]
    assert all(NUMBER.match(n) for n in got)
    assert got == [
        "500105-20261123-0001", "500105-20261123-0002", "500103-20261123-0001", f"{city.settings.code}-20261123-0001",
        "500105-20261123-0003", "500105-20261124-0001", "500103-20261124-0001", f"{city.settings.code}-20261124-0001",
        "500105-20261124-0002",
    ]
    with store.reading() as s:
        counters = {(c.scope, c.day): c.last for c in s.execute(select(CounterRow)).scalars()}
    assert counters == {("500105", "20261123"): 3, ("500103", "20261123"): 1, ("500000", "20261123"): 1,
                        ("500105", "20261124"): 2, ("500103", "20261124"): 1, ("500000", "20261124"): 1}


def test_create_is_idempotent_on_external_id(store):
    first = store.create_case(new(external_id="obs-0001"), actor="vision", now=T0)
    again = store.create_case(new(external_id="obs-0001", description="另一段描述", where=JIEFANGBEI),
                              actor="vision", now=T0 + timedelta(hours=1))
    assert again.number == first.number and again.description == first.description
    assert again.history == first.history
    other = store.create_case(new(external_id="obs-0002"), now=T0)
    assert other.number != first.number
    assert store.count() == 2 and audit_rows(store) == 2
    assert store.find_external("obs-0001").number == first.number
    assert store.find_external("obs-9999") is None
    with pytest.raises(NotFound):
        store.get("500105-20261123-0099")


# -- listing ---------------------------------------------------------------------------------


@pytest.fixture
def populated(store):
    """12 cases an hour apart from T0, in both districts and none, from several
    sources and codes; some dispatched."""
    plan = [  # (code, where, source)
        ("06010", JIANGBEI, "市民"), ("06010", JIEFANGBEI, "车巡"), ("09006", JIANGBEI, "机巡"),
        ("09006", JIEFANGBEI, "市民"), ("01011", None, "热线"), ("06010", HUAXINJIE, "车巡"),
        ("03005", JIANGBEI, "采集员"), ("06010", JIANGBEI, "车巡"), ("09006", JIEFANGBEI, "车巡"),
        ("01011", JIANGBEI, "市民"), ("06010", None, "机巡"), ("03005", JIEFANGBEI, "市民"),
    ]
    numbers = []
    for i, (code, where, source) in enumerate(plan):
        now = T0 + timedelta(hours=i)
        number = store.create_case(new(code=code, where=where, source=source), now=now).number
        if i % 3 == 0:
            drive(store, number, Status.DISPATCHED, now=now)
        numbers.append(number)
    return store, plan, numbers


def test_list_and_count_filters(populated):
    store, plan, numbers = populated

    def check(q: CaseQuery, expected: list[int]):
        got = [c.number for c in store.list(q)]
        assert got == [numbers[i] for i in sorted(expected, reverse=True)], q  # newest first
        assert store.count(q) == len(expected)

    check(CaseQuery(), list(range(12)))
    check(CaseQuery(status=[Status.DISPATCHED]), [0, 3, 6, 9])
    check(CaseQuery(status=[Status.REPORTED]), [i for i in range(12) if i % 3])
    check(CaseQuery(status=[Status.REPORTED, Status.DISPATCHED]), list(range(12)))
    check(CaseQuery(status=[Status.CLOSED]), [])
    dispatched = {n: store.get(n).department_id for n in numbers[::3]}
    assert dispatched == {numbers[0]: "JB-HW", numbers[3]: "YZ-JFB", numbers[6]: "JB-HW", numbers[9]: "CQ-RQ"}
    check(CaseQuery(department_id="JB-HW"), [0, 6])
    check(CaseQuery(department_id="CQ-RQ"), [9])
    check(CaseQuery(code="06010"), [0, 1, 5, 7, 10])
    check(CaseQuery(code="09006", status=[Status.REPORTED]), [2, 8])
    check(CaseQuery(source=Source.VEHICLE), [1, 5, 7, 8])
    check(CaseQuery(source=Source.CITIZEN, code="01011"), [9])
    check(CaseQuery(district_id="500105"), [0, 2, 5, 6, 7, 9])
    check(CaseQuery(district_id="500103"), [1, 3, 8, 11])
    check(CaseQuery(street_id="500105002"), [5])
    check(CaseQuery(since=T0 + timedelta(hours=3)), list(range(3, 12)))  # since is inclusive
    check(CaseQuery(until=T0 + timedelta(hours=3)), [0, 1, 2])  # until is exclusive
    check(CaseQuery(since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=5, minutes=30)), [2, 3, 4, 5])
    # the same instant in another zone
    check(CaseQuery(since=(T0 + timedelta(hours=10)).astimezone(timezone.utc)), [10, 11])
    check(CaseQuery(district_id="500105", source=Source.VEHICLE, since=T0 + timedelta(hours=6)), [7])


def test_list_paging(populated):
    store, _, numbers = populated
    pages = [store.list(CaseQuery(limit=5, offset=o)) for o in (0, 5, 10, 15)]
    assert [len(p) for p in pages] == [5, 5, 2, 0]
    assert [c.number for p in pages for c in p] == numbers[::-1]
    assert store.count(CaseQuery(limit=5, offset=10)) == 12  # counting ignores paging
    with pytest.raises(ValidationError):
        CaseQuery(limit=0)
    with pytest.raises(ValidationError):
        CaseQuery(offset=-1)
    listed = store.list(CaseQuery(limit=1))[0]
    assert listed.history == [] and listed.evidence == []  # lists are light


# -- masking -------------------------------------------------------------------------------


def test_public_view_masks_personal_data(store):
    text = "我叫李四，电话13912345678，身份证号50010319900101123X，座机023-68123456，门牌号 12 号。"
    case = store.create_case(new(reporter_name="张三丰", reporter_phone="13812345678", description=text), now=T0)
    store.act(case.number, Action.DECLINE, actor="op", note="经核实无此问题，联系人电话 13700001111", now=T0)
    raw = store.get(case.number)
    assert raw.reporter_phone == "13812345678" and raw.reporter_name == "张三丰"  # stored as given
    assert "13912345678" in raw.description
    pub = raw.public()
    assert pub.reporter_phone == "138****5678"
    assert pub.reporter_name == "张**"
    assert "139****5678" in pub.description and "13912345678" not in pub.description
    assert "我叫李*" in pub.description and "李四" not in pub.description
    assert "500103********123X" in pub.description and "19900101" not in pub.description
    assert "023-****3456" in pub.description and "68123456" not in pub.description
    assert "门牌号 12 号" in pub.description
    assert "137****1111" in pub.history[-1].note and "13700001111" not in pub.history[-1].note
    assert raw.history[-1].note.endswith("13700001111")  # public() is a copy
    assert (pub.number, pub.status, pub.code) == (raw.number, raw.status, raw.code)


def test_mask_helpers():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("138-1234-5678") == "138****5678"
    assert mask_phone("023-68123456") == "023-****3456"  # as mask_text masks landlines
    assert mask_phone(None) is None and mask_phone("") == ""
    assert mask_name("张三丰") == "张**" and mask_name("李") == "李" and mask_name(None) is None
    assert mask_text("订单号 123456789012345678901") == "订单号 123456789012345678901"  # not an ID or a phone
    assert mask_text("手机+86 15012345678。") == "手机+86 150****5678。"
    assert mask_text("电话 138 1234 5678 或 139-1234-5678") == "电话 138****5678 或 139****5678"
    assert mask_text("我叫赵丽华，联系人：王五") == "我叫赵**，联系人：王*"
    assert mask_text("我是附近居民，张先生说") == "我是附近居民，张先生说"  # no name introduced


# -- dedupe lookups ------------------------------------------------------------------------


def test_nearby_open(store):
    lat, lon = JIANGBEI
    north_30m = (lat + 30 / 111_195, lon)
    east_200m = (lat, lon + 200 / (111_195 * 0.8698))  # cos(29.575°) ≈ 0.8698
    a = store.create_case(new(where=JIANGBEI), now=T0).number
    b = store.create_case(new(where=north_30m), now=T0 + timedelta(hours=2)).number
    c = store.create_case(new(where=east_200m), now=T0 + timedelta(hours=2)).number
    d = store.create_case(new(code="03005", where=JIANGBEI), now=T0).number
    closed = store.create_case(new(where=JIANGBEI), now=T0).number
    drive(store, closed, Status.CLOSED, now=T0)
    evaluated = store.create_case(new(where=JIANGBEI), now=T0).number
    drive(store, evaluated, Status.EVALUATED, now=T0)
    void = store.create_case(new(where=north_30m), now=T0).number
    store.act(void, Action.VOID, actor="op", note="误报", now=T0)
    declined = store.create_case(new(where=JIANGBEI), now=T0).number
    store.act(declined, Action.DECLINE, actor="op", note="不属实", now=T0)
    in_progress = store.create_case(new(where=north_30m), now=T0).number
    drive(store, in_progress, Status.IN_PROGRESS, now=T0)
    store.create_case(new(where=None), now=T0)  # no position: never nearby
    store.create_case(new(where=JIEFANGBEI), now=T0)  # far away

    def near(radius, **kw):
        return [(case.number, round(dist)) for case, dist in store.nearby_open(lat, lon, radius, **kw)]

    got = near(50)
    assert [n for n, _ in got][:2] in ([a, d], [d, a])  # distance 0 first
    assert sorted(n for n, _ in got) == sorted([a, b, d, in_progress])
    assert dict(got)[b] == 30 and dict(got)[a] == 0
    assert [dist for _, dist in got] == sorted(dist for _, dist in got)  # nearest first
    assert sorted(n for n, _ in near(50, codes=["06010"])) == sorted([a, b, in_progress])
    assert [n for n, _ in near(50, codes=["03005"])] == [d]
    assert near(50, codes=["09006"]) == []
    assert sorted(n for n, _ in near(300, codes=["06010"])) == sorted([a, b, c, in_progress])
    assert dict(near(300))[c] == 200
    assert [n for n, _ in near(300, codes=["06010"], since=T0 + timedelta(hours=1))] == [b, c]
    assert near(10, codes=["06010"]) == [(a, 0)]
    assert near(5000, since=T0 + timedelta(days=1)) == []
    # the closed, evaluated, void and declined cases are never offered for dedupe
    every = {n for n, _ in near(10_000)}
    assert not every & {closed, evaluated, void, declined}


# -- SLA queries -------------------------------------------------------------------------------


def test_due_across_a_weekend_and_the_national_holiday(store, city):
    """Dispatched on Wed 2026-09-30 15:00: 10-01..07 is the 国庆 holiday (incl. a
    weekend), 10-10 (Saturday) a make-up working day. Standard-calendar cases
    stand still over the holiday; an extended-calendar crew's clock keeps running."""
    start = datetime(2026, 9, 30, 15, 0, tzinfo=TZ)

    def dispatched(code, where, **kw):
        number = store.create_case(new(code=code, where=where), now=start - timedelta(hours=1)).number
        store.act(number, Action.FILE, actor="op", now=start)
        return store.act(number, Action.DISPATCH, actor="op", now=start, **kw)

    a = dispatched("06010", JIANGBEI, department_id="JB-SZ")  # 市政所: standard
    b = dispatched("09006", JIEFANGBEI)  # 解放碑街道: standard
    c = dispatched("06010", JIANGBEI)  # 江北环卫所: extended, works through holidays
    d = dispatched("09006", JIANGBEI, department_id="JB-SZ", urgency=Urgency.HIGH)
    assert (a.department_id, b.department_id, c.department_id, d.department_id) == ("JB-SZ", "YZ-JFB", "JB-HW", "JB-SZ")
    calendars = {a.number: "standard", b.number: "standard", c.number: "extended", d.number: "standard"}
    cases = {x.number: x for x in (a, b, c, d)}
    limits = {x.number: city.catalogue.get(x.code).time_limits[x.urgency] for x in cases.values()}
    for n, case in cases.items():
        assert case.deadline == ref_deadline(calendars[n], start, limits[n])
        if calendars[n] == "standard" and limits[n].unit != "小时":
            # nothing of the holiday counts: due on or after 10-08 however short the limit
            assert case.deadline.astimezone(TZ).date() >= datetime(2026, 10, 8).date()

    def expected(now, soon=True):
        out = {}
        for n, case in cases.items():
            if now > case.deadline:
                out[n] = "已超期"
            elif soon and ref_remaining(calendars[n], now, case.deadline) < timedelta(hours=ref_hours(calendars[n], limits[n]) * 0.2):
                out[n] = "即将超期"
        return out

    checks = [datetime(2026, 10, d, h, m, tzinfo=TZ) for d, h, m in
              [(1, 9, 0), (5, 10, 0), (7, 23, 0), (8, 9, 0), (8, 14, 0), (8, 16, 0), (9, 12, 0), (9, 15, 30), (10, 11, 0),
               (12, 17, 0)]]
    for n in cases:  # and just around each deadline
        dl = cases[n].deadline.astimezone(TZ)
        checks += [dl - timedelta(minutes=30), dl, dl + timedelta(minutes=1)]
    seen = set()
    for now in checks:
        got = store.due(now=now)
        want = expected(now)
        assert {case.number: state for case, state, _ in got} == want, now
        for case, state, left in got:
            if limits[case.number].unit != "小时":
                assert left == ref_remaining(calendars[case.number], now, case.deadline), (case.number, now)
            seen.add(state)
        assert {x.number for x, _, _ in store.due(now=now, soon=False)} == {n for n, s in want.items() if s == "已超期"}
        assert {x.number for x, _, _ in store.due(now=now, department_id="JB-SZ")} == {
            n for n in want if cases[n].department_id == "JB-SZ"}
        assert [x.deadline for x, _, _ in got] == sorted(x.deadline for x, _, _ in got)
    assert seen == {"已超期", "即将超期"}

    # on the holiday only the extended crew can be late; the standard cases are not
    on_holiday = {x.number for x, s, _ in store.due(now=datetime(2026, 10, 5, 10, 0, tzinfo=TZ)) if s == "已超期"}
    assert on_holiday <= {c.number}
    # closed or returned cases are not due any more
    store.act(b.number, Action.RETURN, actor="YZ-JFB", note="不属本街道", now=datetime(2026, 10, 8, 9, 0, tzinfo=TZ))
    assert b.number not in {x.number for x, _, _ in store.due(now=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))}
    assert {x.number for x, _, _ in store.due(now=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))} == {a.number, c.number, d.number}


# -- concurrency -------------------------------------------------------------------------------


def _run_threads(n, fn):
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def worker(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_concurrent_creates_get_unique_consecutive_numbers(store):
    threads, each = 8, 4

    def work(i):
        return [store.create_case(new(description=f"并发 {i}-{k}"), actor=f"t{i}", now=T0).number for k in range(each)]

    numbers = [n for batch in _run_threads(threads, work) for n in batch]
    assert len(set(numbers)) == threads * each
    seqs = sorted(int(NUMBER.match(n).group(3)) for n in numbers)
    assert seqs == list(range(1, threads * each + 1))
    assert {NUMBER.match(n).group(1, 2) for n in numbers} == {("500105", "20261123")}
    assert store.count() == threads * each and audit_rows(store) == threads * each


def test_concurrent_creates_with_one_external_id_make_one_case(store):
    cases = _run_threads(6, lambda i: store.create_case(new(external_id="obs-42"), actor=f"t{i}", now=T0))
    assert len({c.number for c in cases}) == 1
    assert store.count() == 1 and audit_rows(store) == 1
    after = store.create_case(new(), now=T0).number  # a rolled-back attempt does not use up a number
    assert after.endswith("-0002")


# -- migrations --------------------------------------------------------------------------------


def test_migrated_schema_matches_the_models(store):
    with store.write_engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diffs == []
    tables = set(inspect(store.write_engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_migrate_twice_is_a_no_op(db_url, city):
    read, write = make_engines(db_url)
    try:
        assert current_revision(write) is None
        assert migrate(write) is True
        assert current_revision(write) == head_revision(write)
        assert migrate(write) is False
        assert current_revision(write) == head_revision(write)
    finally:
        read.dispose()
        write.dispose()
    first = Store(db_url, city)
    number = first.create_case(new(), now=T0).number
    first.close()
    second = Store(db_url, city)  # opening again migrates nothing and keeps the data
    try:
        assert migrate(second.write_engine) is False
        assert second.get(number).number == number and second.count() == 1
    finally:
        second.close()


def test_bad_urls(tmp_path, city):
    with pytest.raises(InvalidInput, match="not a SQLAlchemy URL"):
        Store("not a url", city)
    with pytest.raises(XunjianError, match="cannot open the store"):
        Store("postgresql+psycopg://nobody:x@127.0.0.1:1/none?connect_timeout=2", city)


def test_store_rows_round_trip_times_as_utc(store):
    number = store.create_case(new(), now=datetime(2026, 11, 23, 23, 59, 59, 123456, tzinfo=TZ)).number
    with store.reading() as s:
        row = s.execute(select(CaseRow).where(CaseRow.number == number)).scalar_one()
    assert row.created_at == datetime(2026, 11, 23, 15, 59, 59, 123456, tzinfo=timezone.utc)
    assert row.created_at.tzinfo is timezone.utc


def test_act_many_is_one_transaction(store):
    case = store.create_case(new(), now=T0)
    store.act(case.number, Action.FILE, actor="op", now=T0)
    store.act(case.number, Action.DISPATCH, actor="op", now=T0)
    before = store.get(case.number)
    with pytest.raises(NotFound):  # 退回 is fine, then 派遣 to an unknown department fails: neither happens
        store.act_many(case.number, [{"action": Action.RETURN, "note": "改派"},
                                     {"action": Action.DISPATCH, "department_id": "NO-SUCH"}], actor="调度员", now=T0)
    after = store.get(case.number)
    assert after.status is before.status and len(after.history) == len(before.history)
    done = store.act_many(case.number, [{"urgency": Urgency.URGENT, "note": "有人摔倒"},
                                        {"action": Action.RETURN, "note": "改派"},
                                        {"action": Action.DISPATCH, "department_id": "JB-SZ"}],
                          actor="调度员", data={"via": "chat"}, now=T0 + timedelta(hours=1))
    assert done.status is Status.DISPATCHED and done.department_id == "JB-SZ" and done.urgency is Urgency.URGENT
    assert [h.action for h in done.history[-3:]] == ["调整紧急程度", "退回", "派遣"]
    assert all(h.actor == "调度员" and h.data.get("via") == "chat" for h in done.history[-3:])
