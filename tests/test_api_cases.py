"""Cases over HTTP (a real server on loopback): the list and its filters, one case
with its evidence files, lifecycle actions (JSON and with photos), the reply
draft, the review gate; roles, refusals that write nothing, 401 without sign-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from live_server import ADMIN, DEPARTMENT, DISPATCHER, VIEWER
from PIL import Image

from agents.state import Report
from city.cases import Evidence, NewCase
from city.catalogue import Source
from city.lifecycle import Action, Status
from city.observations import Batch, BatchFile, Observation

GUANYINQIAO = (29.5751, 106.5301)  # 江北区 观音桥街道: 暴露垃圾 → JB-HW
SHANGQINGSI = (29.5600, 106.5500)  # 渝中区 上清寺街道: 暴露垃圾 → YZ-HW
PAST = datetime.now(UTC) - timedelta(days=10)


def new_case(live, desc="人行道上有一堆暴露垃圾", at=GUANYINQIAO, source=Source.CITIZEN, code="06010", now=None, **kw):
    return live.store.create_case(NewCase(source=source, code=code, description=desc, address=kw.pop("address", "示例路 1 号"),
                                          lat=at and at[0], lon=at and at[1], **kw), actor="测试", now=now)


def dispatched(live, now=None, **kw):
    c = new_case(live, now=now, **kw)
    live.store.act(c.number, Action.FILE, actor="测试", now=now)
    return live.store.act(c.number, Action.DISPATCH, actor="测试", now=now)


def jpeg(path: Path, color=(200, 30, 30), size=(64, 48)) -> Path:
    Image.new("RGB", size, color).save(path, "JPEG")
    return path


def citizen(text: str, at=GUANYINQIAO, **kw) -> Report:
    return Report(source=kw.pop("source", Source.CITIZEN), text=text, lat=at[0], lon=at[1], address="示例路 8 号", **kw)


def test_every_case_endpoint_needs_a_signed_in_user(live):
    c = new_case(live)
    n = c.number
    calls = [("GET", "/api/cases"), ("GET", f"/api/cases/{n}"), ("GET", f"/api/cases/{n}/evidence/0"),
             ("POST", f"/api/cases/{n}/actions"), ("PUT", f"/api/cases/{n}/reply"), ("GET", "/api/review"),
             ("POST", f"/api/review/{n}")]
    with live.client() as anon:
        for method, path in calls:
            r = anon.request(method, path, json={"action": "立案", "text": "x", "decision": "approve"})
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["detail"].startswith("需要登录")
    assert live.store.get(n).status is Status.REPORTED


def test_list_filters_paging_and_masked_summaries(live):
    old = dispatched(live, desc="很久以前的垃圾，联系电话 13812345678", now=PAST)  # its deadline has passed: overdue
    patrol = new_case(live, desc="车巡发现路面坑槽", source=Source.VEHICLE, code="06013", at=SHANGQINGSI, address="中山四路")
    long = new_case(live, desc="垃圾" * 100)
    nowhere = new_case(live, desc="热线反映：占道堆放杂物", source=Source.HOTLINE, at=None)
    with live.client(VIEWER) as c:
        page = c.get("/api/cases").json()
        assert page["total"] == 4 and page["limit"] == 50 and page["offset"] == 0
        assert [i["number"] for i in page["items"]] == [nowhere.number, long.number, patrol.number, old.number]  # newest first
        first = page["items"][-1]
        assert first["description"] == "很久以前的垃圾，联系电话 138****5678"
        assert first["overdue"] is True and first["department_id"] == "JB-HW" and first["department_name"] == "江北区环境卫生管理所"
        assert set(first) >= {"number", "status", "source", "kind", "code", "title", "address", "lat", "lon", "district_id",
                              "street_id", "grid_id", "urgency", "risk_level", "deadline", "created_at", "updated_at"}
        assert len(page["items"][1]["description"]) == 120 and page["items"][1]["description"].endswith("…")

        def numbers(**params):
            r = c.get("/api/cases", params=params)
            assert r.status_code == 200, r.text
            return {i["number"] for i in r.json()["items"]}

        assert numbers(status="派遣") == {old.number}
        assert numbers(status=["派遣", "上报"]) == numbers(status="派遣,上报") == {old.number, patrol.number, long.number, nowhere.number}
        assert numbers(source="车巡") == {patrol.number}
        assert numbers(code="06013") == {patrol.number}
        assert numbers(department_id="JB-HW") == {old.number}
        assert numbers(district_id="500103") == numbers(street_id="500103003") == {patrol.number}
        assert numbers(overdue="true") == {old.number}
        assert old.number not in numbers(overdue="false") and len(numbers(overdue="false")) == 3
        assert numbers(q="坑槽") == numbers(q="中山四路") == numbers(q=patrol.number) == {patrol.number}
        assert numbers(q="100%") == set()  # LIKE wildcards are literal
        assert numbers(until=PAST.date().isoformat()) == {old.number}  # a date: that day included
        assert old.number not in numbers(since=(PAST + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))  # no zone: city time
        two = c.get("/api/cases", params={"limit": 2, "offset": 2}).json()
        assert two["total"] == 4 and [i["number"] for i in two["items"]] == [patrol.number, old.number]
        first2 = c.get("/api/cases", params={"limit": 2}).json()  # keyset pages: next_after → after
        assert first2["next_after"] == long.number
        keyed = c.get("/api/cases", params={"limit": 2, "after": first2["next_after"]}).json()
        assert keyed["items"] == two["items"] and keyed["total"] == 4 and keyed["next_after"] == old.number
        last = c.get("/api/cases", params={"limit": 2, "after": old.number}).json()
        assert last["items"] == [] and last["next_after"] is None
        assert c.get("/api/cases", params={"after": patrol.number, "source": "热线"}).json()["items"] == []  # filters hold
        gone = c.get("/api/cases", params={"after": "NO-SUCH-1"})
        assert gone.status_code == 404 and "after" in gone.json()["detail"]
        assert c.get("/api/cases", params={"limit": 501}).status_code == 422
        bad = c.get("/api/cases", params={"status": "结束"})
        assert bad.status_code == 422 and "未知状态" in bad.json()["detail"]
        assert c.get("/api/cases", params={"since": "昨天"}).json()["detail"].startswith("时间「昨天」无法识别")


def test_a_department_user_sees_only_its_own_cases(live):
    mine = dispatched(live)
    theirs = dispatched(live, at=SHANGQINGSI)
    new_case(live)  # not dispatched: no department holds it
    with live.client(DEPARTMENT) as c:
        page = c.get("/api/cases").json()
        assert page["total"] == 1 and [i["number"] for i in page["items"]] == [mine.number]
        assert c.get("/api/cases", params={"department_id": "JB-HW"}).json()["total"] == 1
        other = c.get("/api/cases", params={"department_id": "YZ-HW"})
        assert other.status_code == 403 and "只能查看本单位" in other.json()["detail"]
        r = c.get(f"/api/cases/{theirs.number}")
        assert r.status_code == 403 and theirs.number in r.json()["detail"] and r.json()["error"] == "forbidden"
        assert c.get(f"/api/cases/{theirs.number}/evidence/0").status_code == 403
        detail = c.get(f"/api/cases/{mine.number}").json()
        assert detail["allowed_actions"] == ["签收", "退回"]
    with live.client(DISPATCHER) as c:
        assert c.get("/api/cases").json()["total"] == 3
        assert c.get(f"/api/cases/{mine.number}").json()["allowed_actions"] == ["签收", "退回", "延期", "挂账", "作废"]
        assert c.get("/api/cases/500105-20000101-0001").status_code == 404
    with live.client(VIEWER) as c:
        assert c.get(f"/api/cases/{mine.number}").json()["allowed_actions"] == []


def test_detail_of_a_pipeline_case_has_routing_triage_record_and_reply(live):
    run = live.services.pipeline.run(citizen("人行道上堆了一大堆生活垃圾，没人清理，我的电话13812345678"))
    number = run.state.case_number
    with live.client(DISPATCHER) as c:
        d = c.get(f"/api/cases/{number}").json()
    assert d["case"]["status"] == "派遣" and d["department_name"] == "江北区环境卫生管理所" and d["overdue"] is False
    assert "13812345678" not in str(d) and "138****5678" in d["case"]["description"]
    assert d["routing"]["rule"] == "E001" and d["routing"]["department_id"] == "JB-HW" and d["routing"]["principle"]
    assert d["triage"]["code"] == "06010" and d["triage"]["policy"] == "offline" and d["triage"]["candidates"]
    assert d["record"]["number"] == number and d["record"]["department_name"] == "江北区环境卫生管理所"
    assert number in d["reply"]["text"] and d["reply"]["edited_by"] is None
    assert d["waiting"] is None
    assert [h["action"] for h in d["case"]["history"]] == ["上报", "立案", "派遣"]
    # a case the pipeline did not make has no triage, record or reply
    with live.client(VIEWER) as c:
        plain = c.get(f"/api/cases/{new_case(live).number}").json()
    assert plain["triage"] is None and plain["record"] is None and plain["reply"] is None and plain["routing"]["rule"] is None


def test_evidence_files_are_served_only_when_the_case_references_them(live, tmp_path):
    photo = jpeg(tmp_path / "现场.jpg")
    gone = jpeg(tmp_path / "gone.jpg")
    secret = tmp_path / "secret.txt"
    secret.write_text("not evidence", encoding="utf-8")
    case = new_case(live, evidence=[
        Evidence(kind="image", uri=str(photo), note="现场照片 13812345678"),
        Evidence(kind="link", uri="https://example.org/a.jpg"),
        Evidence(kind="text", uri=str(secret)),
        Evidence(kind="image", uri=str(secret)),  # claims to be an image: still not served
        Evidence(kind="image", uri=str(gone)),
    ])
    gone.unlink()
    n = case.number
    with live.client(VIEWER) as c:
        ev = c.get(f"/api/cases/{n}").json()["case"]["evidence"]
        assert [e["url"] for e in ev] == [f"/api/cases/{n}/evidence/0", None, None, None, None]
        assert ev[0]["note"] == "现场照片 138****5678" and ev[0]["box"] is None
        r = c.get(f"/api/cases/{n}/evidence/0")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content == photo.read_bytes()
        assert r.headers["x-content-type-options"] == "nosniff"
        for i in (1, 2, 3, 5, -1):
            assert c.get(f"/api/cases/{n}/evidence/{i}").status_code == 404, i
        assert "已不存在" in c.get(f"/api/cases/{n}/evidence/4").json()["detail"]
        assert c.get(f"/api/cases/{n}/evidence/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
        assert c.get("/api/cases/nope/evidence/0").status_code == 404


def test_an_observation_case_carries_the_detection_box(live, tmp_path):
    frame = jpeg(tmp_path / "001-frame.jpg", size=(960, 540))
    now = datetime.now(UTC)
    st = live.store
    st.open_batch(Batch(id="b1", source="车巡", root=str(tmp_path), created_at=now, updated_at=now))
    o = Observation(id="b1:abababababab:001", batch_id="b1", file="a.mp4", file_sha256="ab" * 32, source="车巡",
                    class_name="garbage", label_zh="暴露垃圾", kind="事件", code="06010", confidence=0.9, mean_confidence=0.8,
                    lat=GUANYINQIAO[0], lon=GUANYINQIAO[1], error_m=4, frames=3, first_t=1, last_t=2, best_t=1.5,
                    box=(192, 108, 384, 324), frame_uri=str(frame), model="demo@1")
    st.finish_file(BatchFile(batch_id="b1", path="a.mp4", sha256="ab" * 32, status="done", observations=1, finished_at=now,
                             stats={"view": {"camera": {"width": 1920, "height": 1080}}}), [o])
    case = new_case(live, source=Source.VEHICLE, external_id=f"obs:{o.id}",
                    evidence=[Evidence(kind="image", uri=str(frame), note="证据帧（已模糊人脸）")])
    with live.client(VIEWER) as c:
        ev = c.get(f"/api/cases/{case.number}").json()["case"]["evidence"][0]
    assert ev["box"] == [0.1, 0.1, 0.2, 0.3] and ev["url"].endswith("/evidence/0")


def test_a_case_walks_the_lifecycle_with_every_row_under_the_users_name(live, tmp_path):
    n = new_case(live).number
    with live.client(DISPATCHER) as c:
        assert c.post(f"/api/cases/{n}/actions", json={"action": "file", "note": "核实属实"}).json()["case"]["status"] == "立案"
        d = c.post(f"/api/cases/{n}/actions", json={"action": "派遣", "department_id": "JB-HW", "urgency": "较急"}).json()
        assert d["case"]["status"] == "派遣" and d["routing"]["rule"] == "manual" and d["case"]["urgency"] == "较急"
    after = jpeg(tmp_path / "after.jpg", color=(20, 160, 40))
    with live.client(DEPARTMENT) as c:
        assert c.post(f"/api/cases/{n}/actions", json={"action": "签收"}).json()["allowed_actions"] == ["退回", "处置完成"]
        with after.open("rb") as f:
            r = c.post(f"/api/cases/{n}/actions", data={"action": "处置完成", "note": "已清运"},
                       files=[("photos", ("after.jpg", f, "image/jpeg"))])
        assert r.status_code == 200, r.text
        d = r.json()
    ev = d["case"]["evidence"][-1]
    assert d["case"]["status"] == "处置完成" and ev["note"] == "处置后照片" and ev["added_by"] == DEPARTMENT
    stored = Path(ev["uri"])
    assert stored.read_bytes() == after.read_bytes() and stored.parent.name == n
    with live.client(VIEWER) as c:
        assert c.get(ev["url"]).content == after.read_bytes()
    with live.client(ADMIN) as c:
        for body in ({"action": "发起核查"}, {"action": "核查通过", "note": "现场已清理"}, {"action": "评价", "rating": 5}):
            r = c.post(f"/api/cases/{n}/actions", json=body)
            assert r.status_code == 200, r.text
        assert r.json()["case"]["status"] == "已评价" and r.json()["allowed_actions"] == []
    hist = live.store.get(n).history
    assert [(h.action, h.actor) for h in hist] == [
        ("上报", "测试"), ("立案", DISPATCHER), ("派遣", DISPATCHER), ("签收", DEPARTMENT), ("处置完成", DEPARTMENT),
        ("发起核查", ADMIN), ("核查通过", ADMIN), ("评价", ADMIN)]
    assert hist[4].note == "已清运" and hist[4].data["evidence"] == 1 and hist[1].data["via"] == "api"


def test_extend_void_as_duplicate_return_and_routing(live):
    keep, dup, other = dispatched(live), dispatched(live), dispatched(live, at=SHANGQINGSI)
    with live.client(DISPATCHER) as c:
        d = c.post(f"/api/cases/{keep.number}/actions", json={"action": "extend", "extend": "2工作日", "note": "雨天"}).json()
        row = d["case"]["history"][-1]
        assert row["action"] == "延期" and row["data"]["approver"] == DISPATCHER and d["case"]["deadline"] > keep.deadline.isoformat()
        d = c.post(f"/api/cases/{dup.number}/actions", json={"action": "作废", "note": "重复", "duplicate_of": keep.number}).json()
        assert d["case"]["status"] == "作废" and d["case"]["duplicate_of"] == keep.number
    with live.client(DEPARTMENT) as c:
        r = c.post(f"/api/cases/{keep.number}/actions", json={"action": "退回", "note": "不属于本单位"})
        assert r.status_code == 200 and r.json()["case"]["status"] == "立案"
        assert c.get(f"/api/cases/{keep.number}").status_code == 403  # no longer its case
    with live.client(DISPATCHER) as c:
        d = c.post(f"/api/cases/{keep.number}/actions", json={"action": "派遣"}).json()  # routed, excluding who returned it
        assert d["case"]["department_id"] not in (None, "JB-HW") and d["routing"]["rule"]
        assert c.post(f"/api/cases/{other.number}/actions", json={"action": "签收"}).json()["case"]["status"] == "处置中"


def test_refused_actions_write_nothing(live, tmp_path):
    mine, theirs, fresh, working = dispatched(live), dispatched(live, at=SHANGQINGSI), new_case(live), dispatched(live)
    live.store.act(working.number, Action.ACCEPT, actor=DEPARTMENT)
    filed = live.store.act(new_case(live).number, Action.FILE, actor="测试")
    photo = jpeg(tmp_path / "p.jpg")
    cases = (mine, theirs, fresh, working, filed)
    before = {c.number: len(live.store.get(c.number).history) for c in cases}

    def refused(user, number, status, want, **kw):
        with live.client(user) as c:
            r = c.post(f"/api/cases/{number}/actions", **kw)
        assert r.status_code == status, r.text
        assert want in r.json()["detail"], r.json()
        return r.json()

    refused(VIEWER, mine.number, 403, "只读用户", json={"action": "签收"})
    refused(DEPARTMENT, theirs.number, 403, "只能查看本单位", json={"action": "签收"})
    refused(DEPARTMENT, mine.number, 403, "不是责任单位操作", json={"action": "挂账", "note": "等待"})
    refused(DEPARTMENT, mine.number, 403, "不能指定单位、紧急程度", json={"action": "签收", "urgency": "紧急"})
    refused(DEPARTMENT, mine.number, 422, "「退回」须写明原因/说明（note）", json={"action": "退回"})
    assert refused(DISPATCHER, fresh.number, 409, "当前状态「上报」不能执行「签收」", json={"action": "签收"})["error"] == "illegal_transition"
    refused(DISPATCHER, fresh.number, 422, "未知操作「飞走」", json={"action": "飞走"})
    refused(DISPATCHER, mine.number, 422, "延期须给出延长的时间", json={"action": "延期", "note": "雨天"})
    refused(DISPATCHER, mine.number, 422, "无法识别", json={"action": "延期", "note": "雨天", "extend": "两天"})
    refused(DISPATCHER, mine.number, 422, "department_id 只用于「派遣」", json={"action": "挂账", "note": "x", "department_id": "JB-HW"})
    refused(DISPATCHER, filed.number, 404, "责任单位「NOPE」不存在", json={"action": "派遣", "department_id": "NOPE"})
    refused(DISPATCHER, mine.number, 422, "不能是自己的重复", json={"action": "作废", "note": "x", "duplicate_of": mine.number})
    refused(DISPATCHER, mine.number, 422, "rating", json={"action": "评价", "rating": 9})
    refused(DISPATCHER, mine.number, 422, "合法的 JSON", content=b"{nope", headers={"content-type": "application/json"})
    refused(DISPATCHER, mine.number, 422, "须为 JSON", content=b"action=x", headers={"content-type": "text/plain"})
    # photos: checked before anything is copied; none kept when the action is refused
    with photo.open("rb") as f:
        refused(DEPARTMENT, working.number, 422, "处置完成须写明处置情况", data={"action": "处置完成"},
                files=[("photos", ("p.jpg", f, "image/jpeg"))])
        f.seek(0)
        refused(DEPARTMENT, mine.number, 409, "不能执行「处置完成」", data={"action": "处置完成", "note": "好了"},
                files=[("photos", ("p.jpg", f, "image/jpeg"))])
    refused(DISPATCHER, mine.number, 422, "「notes.txt」不是可读取的图片文件", data={"action": "签收"},
            files=[("photos", ("notes.txt", b"hello", "text/plain"))])
    assert not (tmp_path / "home" / "evidence").exists() or not any((tmp_path / "home" / "evidence").rglob("*.*"))
    assert {c.number: len(live.store.get(c.number).history) for c in cases} == before
    assert live.store.get(mine.number).status is Status.DISPATCHED


def test_the_reply_draft_is_edited_by_a_manager_and_audited(live):
    run = live.services.pipeline.run(citizen("小区门口的垃圾桶满了，垃圾堆在路边"))
    n = run.state.case_number
    patrol = new_case(live, source=Source.VEHICLE, at=SHANGQINGSI)
    with live.client(DISPATCHER) as c:
        r = c.put(f"/api/cases/{n}/reply", json={"text": "  您反映的问题已派环卫所处理。  "})
        assert r.status_code == 200 and r.json()["text"] == "您反映的问题已派环卫所处理。" and r.json()["edited_by"] == DISPATCHER
        d = c.get(f"/api/cases/{n}").json()
        assert d["reply"]["text"] == "您反映的问题已派环卫所处理。" and d["reply"]["edited_by"] == DISPATCHER
        row = d["case"]["history"][-1]
        assert row["action"] == "修改回复稿" and row["from_status"] == row["to_status"] == "派遣" and d["case"]["status"] == "派遣"
        assert c.put(f"/api/cases/{n}/reply", json={"text": ""}).status_code == 422
        assert "没有回复市民的草稿" in c.put(f"/api/cases/{patrol.number}/reply", json={"text": "好"}).json()["detail"]
    for user in (DEPARTMENT, VIEWER):
        with live.client(user) as c:
            assert c.put(f"/api/cases/{n}/reply", json={"text": "改一下"}).status_code == 403
    assert len(live.store.get(n).history) == 4


def test_the_review_queue_approve_edit_and_reject(live):
    pipe = live.services.pipeline
    held = [pipe.run(citizen(text, at=at)).state.case_number for text, at in [
        ("人行道井盖破了一半，很危险，电话13812345678", SHANGQINGSI),
        ("井盖没了，有人差点掉下去", (29.5700, 106.5500)),
        ("路上井盖松动，车压过去哐哐响", (29.5800, 106.5500))]]
    with live.client(VIEWER) as c:
        queue = c.get("/api/review").json()
    assert [q["number"] for q in queue] == held
    first = queue[0]
    assert "风险等级为橙" in first["reasons"] and "138****5678" in first["text"] and "13812345678" not in first["text"]
    assert first["code"] and first["name"] and first["kind"] and first["risk_level"] == "橙" and first["created_at"]
    with live.client(DEPARTMENT) as c:
        assert c.get("/api/review").status_code == 403
        assert c.post(f"/api/review/{held[0]}", json={"decision": "approve"}).status_code == 403
    with live.client(VIEWER) as c:
        assert c.post(f"/api/review/{held[0]}", json={"decision": "approve"}).status_code == 403
    with live.client(DISPATCHER) as c:
        d = c.get(f"/api/cases/{held[0]}").json()
        assert d["waiting"]["reasons"] == first["reasons"] and d["waiting"]["department_name"]
        assert d["allowed_actions"] == []  # decided in the review queue, not by lifecycle actions
        assert d["areas"]["district"] and d["areas"]["street"]
        bypass = c.post(f"/api/cases/{held[0]}/actions", json={"action": "立案"})
        assert bypass.status_code == 409 and "审核关口" in bypass.json()["detail"]
        assert c.post(f"/api/review/{held[2]}", json={"decision": "reject"}).json()["detail"] == "驳回须写明原因（note）"
        assert c.post(f"/api/review/{held[0]}", json={"decision": "approve", "urgency": "紧急"}).status_code == 422
        assert c.post(f"/api/review/{held[1]}", json={"decision": "edit"}).status_code == 422
        assert c.post(f"/api/review/{held[0]}", json={"decision": "maybe"}).status_code == 422
        a = c.post(f"/api/review/{held[0]}", json={"decision": "approve", "note": "属实"}).json()
        assert a["case"]["status"] == "派遣" and a["waiting"] is None and a["case"]["history"][-1]["actor"] == DISPATCHER
        e = c.post(f"/api/review/{held[1]}", json={"decision": "edit", "department_id": "YZ-PS", "urgency": "紧急"}).json()
        assert e["case"]["department_id"] == "YZ-PS" and e["case"]["urgency"] == "紧急" and e["routing"]["rule"] == "manual"
        r = c.post(f"/api/review/{held[2]}", json={"decision": "reject", "note": "现场核实井盖完好"}).json()
        assert r["case"]["status"] == "不予立案" and r["case"]["history"][-1]["actor"] == DISPATCHER
        again = c.post(f"/api/review/{held[0]}", json={"decision": "approve"})
        assert again.status_code == 409 and "不在审核关口等待" in again.json()["detail"]
        assert c.post(f"/api/review/{new_case(live).number}", json={"decision": "approve"}).status_code == 409
        assert c.get("/api/review").json() == []


@pytest.mark.parametrize("path", ["/api/cases", "/api/review"])
def test_a_bad_token_is_401(live, path):
    assert httpx.get(live.url + path, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_store_text_overdue_and_located_filters_and_note_rows(store):
    """The store additions behind the API, on SQLite and PostgreSQL."""
    from city.cases import CaseQuery

    def make(desc, at=GUANYINQIAO, now=None, dispatch=False, address="示例路 1 号"):
        c = store.create_case(NewCase(source=Source.CITIZEN, code="06010", description=desc, address=address,
                                      lat=at and at[0], lon=at and at[1]), actor="测试", now=now)
        if dispatch:
            store.act(c.number, Action.FILE, actor="测试", now=now)
            c = store.act(c.number, Action.DISPATCH, actor="测试", now=now)
        return c

    late = make("很久以前的垃圾", now=PAST, dispatch=True)
    fresh = make("新的垃圾 100% 满了", dispatch=True)
    nowhere = make("没有坐标的 Garbage", at=None, address="解放碑步行街")

    def numbers(**kw):
        q = CaseQuery(**kw)
        found = [c.number for c in store.list(q)]
        assert store.count(q) == len(found)
        return set(found)

    assert numbers(overdue=True) == {late.number}
    assert numbers(overdue=False) == {fresh.number, nowhere.number}
    assert numbers(overdue=True, as_of=PAST - timedelta(days=1)) == set()
    assert numbers(text="100%") == {fresh.number} and numbers(text="0%") == {fresh.number} and numbers(text="_") == set()
    assert numbers(text="garbage") == numbers(text="解放碑") == {nowhere.number}  # any case, address too
    assert numbers(text=late.number) == {late.number}
    assert numbers(located=True) == {late.number, fresh.number}

    case = store.annotate(fresh.number, "修改回复稿", actor="王调度", data={"text": "已派环卫所"})
    row = case.history[-1]
    assert (row.action, row.actor, row.from_status, row.to_status, row.data) == ("修改回复稿", "王调度", "派遣", "派遣", {"text": "已派环卫所"})
    assert case.status is Status.DISPATCHED and case.updated_at > fresh.updated_at
    for bad in ("派遣", "调整紧急程度", ""):
        with pytest.raises(Exception, match="note-only"):
            store.annotate(fresh.number, bad, actor="王调度")
    assert store.due_counts() == {"JB-HW": {"已超期": 1, "即将超期": 0}}
    assert store.due_counts(department_id="YZ-HW") == {}
