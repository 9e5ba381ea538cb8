"""超期预警与督办 (city.escalation, ``xunjian sla``) on SQLite and PostgreSQL, with
scripted times; and ``cases act … --photo`` (处置完成 with the department's photos).

Times are Asia/Shanghai in November 2026 unless said otherwise: Monday 23rd is
T0. JB-SZ (江北区市政设施管理所) works the standard calendar: Mon-Fri
08:30-12:00 and 13:30-18:00, 1工作日 = 8工作时; 06010 暴露垃圾 (一般) has 1工作日,
较急 4工作时; 即将超期 is less than 20% of the limit left."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import typer
from PIL import Image
from sqlalchemy import func, select
from typer.testing import CliRunner

from city import escalation, settings
from city.cases import NewCase
from city.catalogue import Urgency, WorkDuration
from city.errors import DataError, IllegalTransition, InvalidInput, NotFound
from city.escalation import acknowledge, assess, load_escalation, notifications, tick
from city.lifecycle import Action, Status
from city.store import Store
from city.store.schema import AuditRow, NotificationRow

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)  # Monday
JIANGBEI = (29.575, 106.53)  # 江北区 观音桥街道
ESCALATION = ("超期预警", "督办")


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TZ)


def dispatched(store, when: datetime, dept: str | None = "JB-SZ", where=JIANGBEI, urgency: Urgency | None = None):
    """A 06010 case filed and dispatched at ``when`` (to ``dept``, or as routed)."""
    lat, lon = where if where else (None, None)
    number = store.create_case(NewCase(source="市民", code="06010", description="路边有垃圾堆放", lat=lat, lon=lon),
                               now=when - timedelta(hours=1)).number
    store.act(number, Action.FILE, actor="op", now=when)
    return store.act(number, Action.DISPATCH, actor="op", department_id=dept, urgency=urgency, now=when)


def sent(report) -> list[tuple[str, str]]:
    return sorted((s.rule, s.recipient) for s in report.sent)


def escalations(store, number: str):
    return [h for h in store.history(number) if h.action in ESCALATION]


def count(store, row) -> int:
    with store.reading() as s:
        return s.execute(select(func.count()).select_from(row)).scalar_one()


# -- the levels --------------------------------------------------------------------------------


def test_each_level_fires_once_to_its_recipients(store):
    case = dispatched(store, T0)
    assert case.deadline == at(24, 9)  # Mon 09:00 + 8 working hours
    n = case.number

    assert sent(tick(store, now=at(23, 10))) == []  # 正常
    first = tick(store, now=at(23, 17))  # 1h + 0.5h left < 1.6h
    assert sent(first) == [("即将超期预警", "JB-SZ")]
    msg = first.sent[0].message
    for part in (n, "暴露垃圾", "江北区市政设施管理所", "2026-11-24 09:00", "1小时30分钟", "即将超期"):
        assert part in msg
    for again in (at(23, 17), at(23, 17, 30), at(24, 8, 45)):
        report = tick(store, now=again)
        assert report.sent == [] and report.skipped == 1 and report.checked == 1

    overdue = tick(store, now=at(24, 9, 30))
    assert sent(overdue) == [("超期预警", "JB-SZ"), ("超期预警", "JB-XT")]  # + 江北区治理中心
    assert "超期工作时间 30分钟" in overdue.sent[0].message
    assert sent(tick(store, now=at(25, 17))) == []
    assert sent(tick(store, now=at(26, 9))) == []  # exactly 2工作日 late: not more than
    serious = tick(store, now=at(26, 9, 1))
    assert sent(serious) == [("严重超期督办", "CQ-XT")]  # the city centre
    assert serious.sent[0].action == "督办" and serious.sent[0].level == 3
    assert "2工作日" in serious.sent[0].message
    assert sent(tick(store, now=at(30, 9))) == []

    rows = escalations(store, n)
    assert [(h.action, h.from_status, h.to_status, h.actor) for h in rows] == [
        ("超期预警", "派遣", "派遣", "system"), ("超期预警", "派遣", "派遣", "system"), ("督办", "派遣", "派遣", "system")]
    assert [(h.data["rule"], h.data["level"], h.data["recipients"]) for h in rows] == [
        ("即将超期预警", 1, ["JB-SZ"]), ("超期预警", 2, ["JB-SZ", "JB-XT"]), ("严重超期督办", 3, ["CQ-XT"])]
    assert rows[1].note == overdue.sent[0].message and rows[1].at == at(24, 9, 30)
    after = store.get(n)
    assert after.status is Status.DISPATCHED and after.deadline == case.deadline  # nothing else changed
    assert count(store, NotificationRow) == 4
    assert [x.rule for x in notifications(store, recipient="JB-SZ")] == ["超期预警", "即将超期预警"]  # newest first


def test_a_late_first_tick_sends_every_level_that_applies(store):
    case = dispatched(store, T0)
    report = tick(store, now=at(27, 9))  # Friday: 3 working days late
    assert sent(report) == [("严重超期督办", "CQ-XT"), ("超期预警", "JB-SZ"), ("超期预警", "JB-XT")]
    assert [h.action for h in escalations(store, case.number)] == ["超期预警", "督办"]  # one row per rule


def test_district_coordinator_of_a_case_without_district_is_the_city_centre(store):
    nowhere = dispatched(store, T0, where=None)  # no coordinates: no district
    own = dispatched(store, T0, dept="JB-XT")  # held by the district centre itself
    report = tick(store, now=at(24, 10))
    by_case = {c.number: sorted(s.recipient for s in report.sent if s.case_number == c.number) for c in (nowhere, own)}
    assert by_case == {nowhere.number: ["CQ-XT", "JB-SZ"], own.number: ["JB-XT"]}  # each recipient once


def test_cases_no_longer_with_the_department_are_left_alone(store):
    done = dispatched(store, T0)
    store.act(done.number, Action.ACCEPT, actor="JB-SZ", now=at(23, 10))
    store.act(done.number, Action.COMPLETE, actor="JB-SZ", note="已清运", now=at(23, 16))
    returned = dispatched(store, T0)
    store.act(returned.number, Action.RETURN, actor="JB-SZ", note="不属本单位", now=at(23, 10))
    assert tick(store, now=at(26, 10)).checked == 0
    assert count(store, NotificationRow) == 0


# -- new deadlines -----------------------------------------------------------------------------


def test_extension_and_rework_start_the_warnings_afresh(store):
    n = dispatched(store, T0).number
    assert sent(tick(store, now=at(24, 9, 30))) == [("超期预警", "JB-SZ"), ("超期预警", "JB-XT")]

    # 延期 by 2工作日 from the old deadline: Thu 09:00
    extended = store.act(n, Action.EXTEND, actor="JB-SZ", note="需更换井盖", extend=WorkDuration.model_validate("2工作日"),
                         approver="李科长", now=at(24, 10))
    assert extended.deadline == at(26, 9)
    assert sent(tick(store, now=at(24, 10))) == []  # 正常 again
    warned = tick(store, now=at(25, 17))
    assert sent(warned) == [("即将超期预警", "JB-SZ")] and "2026-11-26 09:00" in warned.sent[0].message
    store.act(n, Action.ACCEPT, actor="JB-SZ", now=at(25, 17, 10))  # same deadline: nothing new
    assert sent(tick(store, now=at(25, 17, 15))) == []
    assert sent(tick(store, now=at(26, 9, 30))) == [("超期预警", "JB-SZ"), ("超期预警", "JB-XT")]

    # handled, then 核查不通过: re-dispatched with a new time limit from now (Thu 10:00 → Fri 10:00)
    store.act(n, Action.COMPLETE, actor="JB-SZ", note="已清运", now=at(26, 9, 40))
    assert tick(store, now=at(26, 9, 45)).checked == 0  # 处置完成: not the department's to do
    store.act(n, Action.REQUEST_VERIFY, actor="op", now=at(26, 9, 50))
    rework = store.act(n, Action.FAIL, actor="op", note="仍有残留", now=at(26, 10))
    assert rework.deadline == at(27, 10) and rework.status is Status.DISPATCHED
    assert sent(tick(store, now=at(27, 10, 30))) == [("超期预警", "JB-SZ"), ("超期预警", "JB-XT")]

    assert count(store, NotificationRow) == 7
    assert {r.deadline for r in notifications(store)} == {at(24, 9), at(26, 9), at(27, 10)}
    assert [h.data["deadline"] for h in escalations(store, n)] == [
        d.isoformat() for d in (at(24, 9), at(26, 9), at(26, 9), at(27, 10))]


# -- working time ------------------------------------------------------------------------------


def test_weekends_do_not_count(store):
    # due Monday 10:00: on Saturday evening 1.5 working hours are left, whatever the clock says
    monday = dispatched(store, at(27, 10))
    assert monday.deadline == at(30, 10)
    # 较急 (4工作时) from Friday 09:00: due Friday 14:30, overdue all weekend
    friday = dispatched(store, at(27, 9), urgency=Urgency.HIGH)
    assert friday.deadline == at(27, 14, 30)
    # the extended crew (江北环卫所, 08:00-20:00 every day): due Friday 13:00, its weekend counts
    crew = dispatched(store, at(27, 9), dept=None, urgency=Urgency.HIGH)
    assert crew.department_id == "JB-HW" and crew.deadline == at(27, 13)

    saturday = at(28, 20)
    state = {d.case.number: (d.state, d.remaining, d.level) for d in assess(store, now=saturday)}
    assert state[monday.number] == ("即将超期", timedelta(hours=1, minutes=30), 1)  # not overdue
    assert state[friday.number] == ("已超期", -timedelta(hours=3, minutes=30), 2)
    report = tick(store, now=saturday)
    assert {(s.case_number, s.rule) for s in report.sent} == {
        (monday.number, "即将超期预警"), (friday.number, "超期预警"), (crew.number, "超期预警")}
    # 2工作日 late: the crew on Sunday 13:00, the standard office not before Tuesday 14:30
    assert [s.case_number for s in tick(store, now=at(29, 13, 1)).sent if s.level == 3] == [crew.number]
    assert [s.case_number for s in tick(store, now=at(1, 14, 30, month=12)).sent if s.level == 3] == []
    assert [s.case_number for s in tick(store, now=at(1, 14, 31, month=12)).sent if s.level == 3] == [friday.number]


def test_the_national_holiday_does_not_count(store):
    """Dispatched 较急 on Wed 2026-09-30 13:30, due 17:30; 10-01..07 is the 国庆 holiday."""
    case = dispatched(store, at(30, 13, 30, month=9), urgency=Urgency.HIGH)
    assert case.deadline == at(30, 17, 30, month=9)
    assert sent(tick(store, now=at(30, 17, month=9))) == [("即将超期预警", "JB-SZ")]
    assert sent(tick(store, now=at(5, 10, month=10))) == [("超期预警", "JB-SZ"), ("超期预警", "JB-XT")]
    # 0.5h on 09-30, 8h on Thu 10-08, 7.5h on Fri 10-09: 2工作日 late at 10-09 17:30
    assert sent(tick(store, now=at(8, 18, month=10))) == []
    assert sent(tick(store, now=at(9, 17, 30, month=10))) == []
    assert sent(tick(store, now=at(9, 17, 31, month=10))) == [("严重超期督办", "CQ-XT")]


# -- concurrency ---------------------------------------------------------------------------------


def test_concurrent_ticks_send_each_notification_once(db_url, city):
    first = Store(db_url, city)
    numbers = [dispatched(first, T0).number for _ in range(6)]
    stores = [first] + [Store(db_url, city) for _ in range(3)]
    barrier = threading.Barrier(len(stores))
    reports, errors = [], []

    def run(st):
        try:
            barrier.wait()
            reports.append(tick(st, now=at(24, 10)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert sum(len(r.sent) for r in reports) == 12  # 6 cases × (JB-SZ, JB-XT)
        assert sum(r.skipped for r in reports) == 12 * (len(stores) - 1)
        assert count(first, NotificationRow) == 12
        with first.reading() as s:
            audit = s.execute(select(func.count()).where(AuditRow.action == "超期预警")).scalar_one()
        assert audit == 6 and all(len(escalations(first, n)) == 1 for n in numbers)
    finally:
        for st in stores:
            st.close()


# -- the rules as data -------------------------------------------------------------------------


def test_bundled_rules(city):
    rules = load_escalation(city=city)
    assert [(r.name, r.level, r.action, r.when.state, str(r.when.overdue_by or "")) for r in rules.rules] == [
        ("即将超期预警", 1, "超期预警", "即将超期", ""), ("超期预警", 2, "超期预警", "已超期", ""),
        ("严重超期督办", 3, "督办", "已超期", "2工作日")]
    assert [[x.value for x in r.recipients] for r in rules.rules] == [
        ["department"], ["department", "district_coordinator"], ["city_coordinator"]]


def test_rules_come_from_the_city_data_folder(tmp_path, monkeypatch):
    bundled = settings.BUNDLED_CITY_DATA / "escalation.yaml"
    assert escalation.escalation_path(SimpleNamespace(folder=tmp_path)) == bundled  # a folder without one
    (tmp_path / "escalation.yaml").write_text(
        "rules:\n- {name: 只报市里, level: 2, when: {state: 已超期}, recipients: [city_coordinator], message: '{number} 超期'}\n",
        encoding="utf-8")
    assert escalation.escalation_path(SimpleNamespace(folder=tmp_path)) == tmp_path / "escalation.yaml"
    monkeypatch.setenv("XUNJIAN_CITY_DATA", str(tmp_path))
    assert [r.name for r in load_escalation().rules] == ["只报市里"]


def test_custom_rules_are_applied(store):
    rules = escalation.EscalationRules.model_validate({"rules": [
        {"name": "超期一小时报市里", "level": 2, "action": "督办", "when": {"state": "已超期", "overdue_by": "1工作时"},
         "recipients": ["city_coordinator", "department"], "message": "{number} {department_id} 超期 {overdue}"}]})
    n = dispatched(store, T0).number
    assert sent(tick(store, now=at(24, 10), rules=rules)) == []  # 1 working hour late: not more than
    report = tick(store, now=at(24, 10, 1), rules=rules)
    assert sent(report) == [("超期一小时报市里", "CQ-XT"), ("超期一小时报市里", "JB-SZ")]
    assert report.sent[0].message == f"{n} JB-SZ 超期 1小时1分钟"


@pytest.mark.parametrize("rule, error", [
    ({"message": "{number} {mayor}"}, "unknown placeholder {mayor}"),
    ({"message": "{number"}, "not a valid template"),
    ({"recipients": ["mayor"]}, "recipients.0"),
    ({"recipients": ["department", "department"]}, "listed twice"),
    ({"when": {"state": "即将超期", "overdue_by": "2工作日"}}, "overdue_by goes with state 已超期"),
    ({"when": {"state": "已超期", "overdue_by": "2天"}}, "overdue_by"),
    ({"when": {"state": "超期"}}, "when.state"),
    ({"action": "撤职"}, "action"),
    ({"name": "a:b"}, "name"),
])
def test_bad_rules_name_the_file_and_field(tmp_path, rule, error):
    base = {"name": "r", "level": 1, "when": {"state": "已超期"}, "recipients": ["department"], "message": "{number}"}
    path = tmp_path / "escalation.yaml"
    path.write_text(json.dumps({"rules": [{**base, **rule}]}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match="escalation.yaml") as e:
        load_escalation(path)
    assert error in str(e.value)


def test_duplicate_rule_names_are_refused(tmp_path):
    rule = {"name": "r", "level": 1, "when": {"state": "已超期"}, "recipients": ["department"], "message": "{number}"}
    path = tmp_path / "escalation.yaml"
    path.write_text(json.dumps({"rules": [rule, {**rule, "level": 2}]}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match="used twice"):
        load_escalation(path)


# -- reading and acknowledging -------------------------------------------------------------------


def test_notifications_filter_and_acknowledge(store):
    n = dispatched(store, T0).number
    tick(store, now=at(23, 17))
    tick(store, now=at(24, 9, 30))
    assert len(notifications(store)) == 3
    assert [x.rule for x in notifications(store, recipient="JB-XT")] == ["超期预警"]
    assert len(notifications(store, case_number=n, limit=2)) == 2
    target = notifications(store, recipient="JB-SZ", unacknowledged=True)[0]
    read = acknowledge(store, target.id, "王科员", now=at(24, 10))
    assert (read.acknowledged_by, read.acknowledged_at) == ("王科员", at(24, 10))
    again = acknowledge(store, target.id, "别人", now=at(24, 11))
    assert (again.acknowledged_by, again.acknowledged_at) == ("王科员", at(24, 10))  # the first one stays
    assert [x.id for x in notifications(store, recipient="JB-SZ", unacknowledged=True)] != [target.id]
    assert len(notifications(store, unacknowledged=True)) == 2
    with pytest.raises(NotFound):
        acknowledge(store, 999_999, "王科员")
    with pytest.raises(InvalidInput):
        acknowledge(store, target.id, " ")
    with pytest.raises(InvalidInput, match="time zone"):
        tick(store, now=datetime(2026, 11, 24, 10, 0))


# -- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def cli(store, tmp_path, monkeypatch):
    """Invoke ``sla …`` / ``cases …`` on a throw-away app, against the test store."""
    from app.cli import cases as cases_cli
    from app.cli import common
    from app.cli import sla as sla_cli

    monkeypatch.setenv("XUNJIAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("XUNJIAN_CITY_DATA", raising=False)
    monkeypatch.setattr(common.state, "db_url", store.url)
    monkeypatch.setattr(common.state, "city_data", None)
    opened: list[Store] = []

    def open_store():
        opened.append(common.store())
        return opened[-1]

    monkeypatch.setattr(sla_cli, "store", open_store)
    monkeypatch.setattr(cases_cli, "store", open_store)
    app = typer.Typer()
    app.add_typer(sla_cli.app, name="sla")
    app.add_typer(cases_cli.app, name="cases")
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(app, list(args))
        if ok and result.exit_code != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.exit_code}): {result.output}") from result.exception
        return result

    yield invoke
    for st in opened:
        st.close()


def test_sla_cli(cli, store):
    n = dispatched(store, T0).number
    first = json.loads(cli("sla", "tick", "--time", "2026-11-23T17:00", "--json").stdout)
    assert [(s["rule"], s["recipient"], s["case_number"]) for s in first["sent"]] == [("即将超期预警", "JB-SZ", n)]
    table = cli("sla", "tick", "--time", "2026-11-24T09:30").stdout
    assert "本轮发送的预警/督办（2）" in table and n in table and "JB-XT 江北区治理中心" in table
    assert "发送 2 条" in table
    assert "发送 0 条，已发送过 2 条" in cli("sla", "tick", "--time", "2026-11-24T09:40").stdout

    due = json.loads(cli("sla", "due", "--time", "2026-11-24T09:40", "--json").stdout)
    assert [(d["case"]["number"], d["state"], d["remaining_minutes"], d["level"]) for d in due] == [(n, "已超期", -40, 2)]
    shown = cli("sla", "due", "--dept", "江北市政所", "--time", "2026-11-26T10:00").stdout  # by short name
    assert n in shown and "已超期" in shown and "超期 17小时" in shown
    assert "超期预警（0）" in cli("sla", "due", "--dept", "JB-HW", "--time", "2026-11-26T10:00").stdout

    unread = json.loads(cli("sla", "notifications", "--to", "JB-XT", "--unread", "--json").stdout)
    assert [(x["rule"], x["case_number"]) for x in unread] == [("超期预警", n)]
    assert "已由 王科员" in cli("sla", "ack", str(unread[0]["id"]), "--actor", "王科员").stdout
    assert json.loads(cli("sla", "notifications", "--to", "JB-XT", "--unread", "--json").stdout) == []
    listed = cli("sla", "notifications").stdout
    assert "预警/督办通知（3）" in listed and "王科员" in listed and "未签收" in listed

    watched = cli("sla", "watch", "--every", "1s", "--times", "1").stdout
    assert "每 1s 一轮" in watched and "检查到期案卷" in watched

    bad = cli("sla", "watch", "--every", "often", ok=False)
    assert isinstance(bad.exception, InvalidInput) and "--every" in str(bad.exception)
    missing = cli("sla", "ack", "424242", ok=False)
    assert isinstance(missing.exception, NotFound)


def _photo(path: Path, fmt: str = "JPEG", color=(200, 30, 30)) -> Path:
    Image.new("RGB", (32, 24), color).save(path, fmt)
    return path


def _in_progress(store) -> str:
    n = dispatched(store, T0).number
    store.act(n, Action.ACCEPT, actor="JB-SZ", now=at(23, 9, 30))
    return n


def test_complete_with_photos_copies_and_records_them(cli, store, tmp_path):
    n = _in_progress(store)
    a, b = _photo(tmp_path / "a.jpg"), _photo(tmp_path / "b.png", "PNG", (10, 120, 10))
    out = cli("cases", "act", n, "complete", "--note", "已修补", "--photo", str(a), "--photo", str(b),
              "--photo", str(a), "--actor", "维修班", "--time", "2026-11-23T10:00").stdout
    assert "处置完成" in out

    case = store.get(n)
    assert case.status is Status.HANDLED
    folder = tmp_path / "home" / "evidence" / n
    want = []
    for src, ext in ((a, ".jpg"), (b, ".png")):
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        want.append(("image", str(folder / f"{digest}{ext}"), "处置后照片", digest, "维修班"))
        assert (folder / f"{digest}{ext}").read_bytes() == src.read_bytes()
    assert [(e.kind, e.uri, e.note, e.sha256, e.added_by) for e in case.evidence] == want  # a.jpg once
    last = case.history[-1]
    assert (last.action, last.note, last.data["evidence"], last.at) == ("处置完成", "已修补", 2, at(23, 10))
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(w[1]).name for w in want)


def test_photos_that_are_not_images_are_refused_and_change_nothing(cli, store, tmp_path):
    n = _in_progress(store)
    good = _photo(tmp_path / "ok.jpg")
    fake = tmp_path / "notes.jpg"
    fake.write_text("这不是照片", encoding="utf-8")
    pdf = tmp_path / "scan.tif"
    pdf.write_bytes(b"%PDF-1.4\n")
    ppm = _photo(tmp_path / "raw.ppm", "PPM")
    for bad, needle in ((fake, f"「{fake}」不是可读取的图片文件"), (pdf, f"「{pdf}」不是可读取的图片文件"),
                        (ppm, f"「{ppm}」是 PPM 格式"), (tmp_path / "missing.jpg", "missing.jpg」不存在")):
        result = cli("cases", "act", n, "complete", "--note", "已修补", "--photo", str(good), "--photo", str(bad), ok=False)
        assert isinstance(result.exception, InvalidInput), result.output
        assert needle in str(result.exception)
    case = store.get(n)
    assert case.status is Status.IN_PROGRESS and case.evidence == [] and case.history[-1].action == "签收"
    assert not (tmp_path / "home" / "evidence" / n).exists()

    # a refused action keeps no copied photo either
    dispatched_only = dispatched(store, T0).number
    refused = cli("cases", "act", dispatched_only, "complete", "--photo", str(good), ok=False)
    assert isinstance(refused.exception, IllegalTransition)
    assert not (tmp_path / "home" / "evidence" / dispatched_only).exists()
    assert store.get(dispatched_only).evidence == []
