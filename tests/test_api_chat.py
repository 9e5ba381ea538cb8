"""The dispatch agent over HTTP: streamed turns (SSE), confirmation, ownership,
roles, and the command mode without an LLM, on a real uvicorn server with the
scripted fake OpenAI-compatible endpoint."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fake_openai import Reply
from live_server import DEPARTMENT, DISPATCHER, VIEWER, serve

from app.api.deps import Services
from city.cases import NewCase
from city.lifecycle import Action, Status
from city.store import Store

JIANGBEI = (29.575, 106.53)


@pytest.fixture
def server(tmp_path, city, fake_llm, monkeypatch):
    monkeypatch.setenv("XUNJIAN_HOME", str(tmp_path / "home"))
    store = Store(f"sqlite:///{tmp_path / 'chat.db'}", city)
    with serve(Services(store=store, llm_config=fake_llm.config())) as live:
        yield live
    store.close()


def overdue_case(store, code="06010", days=10) -> str:
    """A case dispatched ``days`` ago to the department the rules pick (环卫所 for 06010): overdue now."""
    when = datetime.now(UTC) - timedelta(days=days)
    c = store.create_case(NewCase(source="车巡", code=code, description="人行道旁堆放生活垃圾", lat=JIANGBEI[0],
                                  lon=JIANGBEI[1]), now=when)
    store.act(c.number, Action.FILE, actor="op", now=when)
    store.act(c.number, Action.DISPATCH, actor="op", now=when)
    return c.number


def sse(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def stream(client: httpx.Client, path: str, body: dict) -> list[tuple[str, dict]]:
    with client.stream("POST", path, json=body, headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return sse(r)


def test_find_overdue_reassign_after_confirming_and_see_the_audit_row(server, fake_llm):
    """The issue's done-when, over the API: a department's overdue cases, a reassignment
    confirmed by the user, the audit row under the user's name; the answer streams."""
    number = overdue_case(server.store)
    fake_llm.script(
        Reply.tool("find_cases", {"department": "JB-HW", "due": "overdue"}),
        Reply(content=f"江北环卫所有 1 件已超期：{number}。", chunks=["江北环卫所有 1 件", "已超期：", f"{number}。"]),
        Reply.tool("reassign", {"number": number, "department": "JB-ZF", "reason": "占道堆物归执法"}),
        Reply.text("已改派。"),
    )
    with server.client(DISPATCHER) as c:
        thread = c.post("/api/chat/threads").json()["thread_id"]
        events = stream(c, f"/api/chat/threads/{thread}/messages", {"text": "江北环卫所有哪些超期的案件？"})
        deltas = [d["text"] for e, d in events if e == "delta"]
        assert deltas == ["江北环卫所有 1 件", "已超期：", f"{number}。"]
        assert events[-1][0] == "done" and events[-1][1]["replies"] == [f"江北环卫所有 1 件已超期：{number}。"]
        [found] = [m for m in fake_llm.requests[1]["messages"] if m["role"] == "tool"]
        assert number in found["content"]

        events = stream(c, f"/api/chat/threads/{thread}/messages", {"text": f"把 {number} 改派给江北城管执法"})
        [waiting] = [d for e, d in events if e == "waiting"]
        assert "JB-ZF" in json.dumps(waiting, ensure_ascii=False)
        assert server.store.get(number).department_id == "JB-HW"  # nothing happens before the confirmation

        thread_view = c.get(f"/api/chat/threads/{thread}").json()
        assert thread_view["waiting"] and thread_view["mode"] == "llm"
        assert [m["role"] for m in thread_view["messages"]][:2] == ["user", "assistant"]

        events = stream(c, f"/api/chat/threads/{thread}/answer", {"decision": "confirm"})
        assert events[-1][0] == "done" and events[-1][1]["waiting"] is None
    case = server.store.get(number)
    assert case.department_id == "JB-ZF" and case.status is Status.DISPATCHED
    assert [(h.actor, h.action) for h in case.history[-2:]] == [(DISPATCHER, "退回"), (DISPATCHER, "派遣")]
    assert case.history[-1].data.get("via") == "chat"


def test_json_answers_without_the_stream_header_and_cancel_writes_nothing(server, fake_llm):
    number = overdue_case(server.store)
    before = len(server.store.get(number).history)
    fake_llm.script(Reply.tool("reassign", {"number": number, "department": "JB-ZF"}))
    with server.client(DISPATCHER) as c:
        thread = c.post("/api/chat/threads").json()["thread_id"]
        turn = c.post(f"/api/chat/threads/{thread}/messages", json={"text": "改派"}).json()
        assert turn["thread_id"] == thread and turn["waiting"]
        assert c.post(f"/api/chat/threads/{thread}/answer", json={"decision": "cancel"}).json()["replies"] == ["已取消，未做任何改动。"]
        again = c.post(f"/api/chat/threads/{thread}/answer", json={"decision": "confirm"})
        assert again.status_code == 422 and "没有等待确认" in again.json()["detail"]
        assert c.post(f"/api/chat/threads/{thread}/answer", json={"decision": "yes"}).status_code == 422
    assert len(server.store.get(number).history) == before


def test_a_thread_belongs_to_its_user_and_roles_are_enforced_by_the_tools(server, fake_llm):
    number = overdue_case(server.store)
    fake_llm.script(Reply.text("好的。"), Reply.tool("reassign", {"number": number, "department": "JB-ZF"}),
                    Reply.text("你没有改派的权限。"))
    with server.client(DISPATCHER) as c:
        thread = c.post("/api/chat/threads").json()["thread_id"]
        c.post(f"/api/chat/threads/{thread}/messages", json={"text": "你好"})
    with server.client(VIEWER) as v:
        r = v.post(f"/api/chat/threads/{thread}/messages", json={"text": "我也说一句"})
        assert r.status_code == 403 and "会话属于 王调度" in r.json()["detail"]
        assert v.get(f"/api/chat/threads/{thread}").status_code == 403
    with server.client(DEPARTMENT) as d:
        own = d.post("/api/chat/threads").json()["thread_id"]
        turn = d.post(f"/api/chat/threads/{own}/messages", json={"text": f"把 {number} 改派给执法"}).json()
        assert turn["waiting"] is None  # the tool refused: nothing to confirm
        refused = [m for m in fake_llm.requests[-1]["messages"] if m["role"] == "tool"][-1]["content"]
        assert "无权改派" in refused
    assert server.store.get(number).department_id == "JB-HW"
    assert httpx.post(f"{server.url}/api/chat/threads").status_code == 401


def test_without_an_llm_plain_chinese_and_commands_work_over_the_api(live):
    number = overdue_case(live.store)
    with live.client(DISPATCHER) as c:
        thread = c.post("/api/chat/threads").json()
        assert thread["mode"] == "commands"
        tid = thread["thread_id"]
        events = stream(c, f"/api/chat/threads/{tid}/messages", {"text": "江北环卫所有哪些超期的案件？"})
        [reply] = [d["text"] for e, d in events if e == "reply"]
        assert reply.startswith("（未配置大模型，按关键词理解为：/cases JB-HW 超期）") and number in reply
        events = stream(c, f"/api/chat/threads/{tid}/messages", {"text": f"把 {number} 改派给江北城管执法"})
        assert any(e == "waiting" for e, _ in events)
        stream(c, f"/api/chat/threads/{tid}/answer", {"decision": "confirm"})
        free = c.post(f"/api/chat/threads/{tid}/messages", json={"text": "帮我写首诗"}).json()
        assert "未配置大模型" in free["replies"][0]
        assert c.post(f"/api/chat/threads/{tid}/messages", json={"text": "/show " + number}).json()["replies"]
    case = live.store.get(number)
    assert case.department_id == "JB-ZF" and case.history[-1].actor == DISPATCHER


def test_an_llm_failure_is_said_in_the_reply_and_the_thread_goes_on(server, fake_llm):
    fake_llm.script(Reply.error(400, "bad request"), Reply.text("你好！"))
    with server.client(DISPATCHER) as c:
        tid = c.post("/api/chat/threads").json()["thread_id"]
        events = stream(c, f"/api/chat/threads/{tid}/messages", {"text": "在吗"})
        assert events[-1][0] == "done" and "大模型暂时不可用" in events[-1][1]["replies"][0]
        ok = stream(c, f"/api/chat/threads/{tid}/messages", {"text": "在吗？"})
        assert ok[-1][0] == "done"


def test_a_crash_inside_the_turn_is_an_error_event(server, monkeypatch):
    from agents.chat import session

    def boom(self, graph_input, thread_id):
        raise RuntimeError("disk on fire")
        yield

    monkeypatch.setattr(session.Chat, "_run", boom)
    with server.client(DISPATCHER) as c:
        tid = c.post("/api/chat/threads").json()["thread_id"]
        events = stream(c, f"/api/chat/threads/{tid}/messages", {"text": "在吗"})
    assert events == [("error", {"detail": "对话出错：RuntimeError"})]
