"""Sign-in, tokens and roles over a real HTTP server on loopback."""

from __future__ import annotations

import httpx
from live_server import ADMIN, DEPARTMENT, DISPATCHER, PASSWORD, VIEWER


def test_login_gives_a_token_and_a_cookie_and_me_answers(live):
    r = httpx.post(f"{live.url}/api/auth/login", json={"name": DISPATCHER, "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["user"] == {"name": DISPATCHER, "role": "dispatcher", "department_id": None}
    assert "xunjian_session" in r.cookies
    me = httpx.get(f"{live.url}/api/auth/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json()["name"] == DISPATCHER
    by_cookie = httpx.get(f"{live.url}/api/auth/me", cookies={"xunjian_session": r.cookies["xunjian_session"]})
    assert by_cookie.json()["name"] == DISPATCHER


def test_wrong_password_and_unknown_user_get_the_same_403(live):
    a = httpx.post(f"{live.url}/api/auth/login", json={"name": DISPATCHER, "password": "nope-nope"})
    b = httpx.post(f"{live.url}/api/auth/login", json={"name": "没有这个人", "password": "nope-nope"})
    assert a.status_code == b.status_code == 403
    assert a.json()["detail"] == b.json()["detail"] == "用户名或密码错误"


def test_no_token_bad_token_and_logged_out_token_are_401(live):
    assert httpx.get(f"{live.url}/api/auth/me").status_code == 401
    r = httpx.get(f"{live.url}/api/auth/me", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"] == "unauthorized" and "需要登录" in r.json()["detail"]
    r = httpx.get(f"{live.url}/api/no-such-thing")
    assert r.status_code == 404 and r.json() == {"detail": "没有这个地址", "error": "not_found"}
    with live.client(VIEWER) as c:
        assert c.post("/api/auth/logout").status_code == 204
        assert c.get("/api/auth/me").status_code == 401


def test_malformed_json_is_a_clear_422(live):
    r = httpx.post(f"{live.url}/api/auth/login", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"] == "请求体不是合法的 JSON"


def test_only_an_admin_manages_users_and_keys(live):
    new = {"name": "新调度", "role": "dispatcher", "password": "long-enough-1"}
    with live.client(DISPATCHER) as c:
        assert c.post("/api/users", json=new).status_code == 403
        assert c.post("/api/keys", json={"client": "12345热线"}).status_code == 403
    with live.client(ADMIN) as c:
        assert c.post("/api/users", json=new).status_code == 201
        assert c.post("/api/users", json=new).json()["detail"] == "用户名「新调度」已存在"
        bad = c.post("/api/users", json={**new, "name": "某单位", "role": "department", "department_id": "NOPE"})
        assert bad.status_code == 404
        assert {u["name"] for u in c.get("/api/users").json()} >= {ADMIN, DISPATCHER, DEPARTMENT, VIEWER, "新调度"}
        key = c.post("/api/keys", json={"client": "12345热线"}).json()["api_key"]
    # an API key is not a user session
    assert httpx.get(f"{live.url}/api/auth/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    r = httpx.post(f"{live.url}/api/auth/login", json={"name": "新调度", "password": "long-enough-1"})
    assert r.status_code == 200


def test_a_disabled_users_tokens_stop_working(live):
    with live.client(VIEWER) as c:
        assert c.get("/api/auth/me").status_code == 200
        live.store.disable_user(VIEWER)
        assert c.get("/api/auth/me").status_code == 401
