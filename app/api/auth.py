"""Sign-in, the signed-in user, users and Open311 API keys (admin)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from app.api.deps import SESSION_COOKIE, Admin, CurrentUser, StoreDep, bearer
from app.api.ratelimit import limit
from city.store.accounts import SESSION_TTL
from city.users import Role, User

router = APIRouter(prefix="/api", tags=["auth"])


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class Session(BaseModel):
    token: str
    user: User
    expires_at: datetime


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: Role
    department_id: str | None = None
    password: str = Field(min_length=8, max_length=256)


class NewKey(BaseModel):
    client: str = Field(min_length=1, max_length=128, description="客户端名称，如 12345热线")


class Key(BaseModel):
    client: str
    api_key: str


@router.post("/auth/login", response_model=Session, dependencies=[Depends(limit("login"))])
def login(body: Login, response: Response, store: StoreDep, request: Request) -> Session:
    """用户名和密码登录：返回 token（也写入 HttpOnly 会话 cookie，供网页使用）。"""
    user, token = store.login(body.name, body.password)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(SESSION_TTL.total_seconds()), httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")
    return Session(token=token, user=user, expires_at=datetime.now(UTC) + SESSION_TTL)


@router.post("/auth/logout", status_code=204)
def logout(request: Request, response: Response, store: StoreDep) -> Response:
    token = bearer(request)
    if token:
        store.revoke(token)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/auth/me", response_model=User)
def me(user: CurrentUser) -> User:
    return user


@router.get("/users", response_model=list[User])
def list_users(_: Admin, store: StoreDep) -> list[User]:
    return store.users()


@router.post("/users", response_model=User, status_code=201)
def add_user(body: NewUser, _: Admin, store: StoreDep) -> User:
    return store.add_user(User(name=body.name, role=body.role, department_id=body.department_id), body.password)


@router.post("/keys", response_model=Key, status_code=201)
def add_key(body: NewKey, _: Admin, store: StoreDep) -> Key:
    """为 Open311 客户端签发 API key（只显示这一次）。"""
    return Key(client=body.client, api_key=store.issue_api_key(body.client))
