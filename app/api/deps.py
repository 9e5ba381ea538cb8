"""What every endpoint gets injected: the services (store, pipeline, LLM) and the
signed-in user.

A request is authenticated by ``Authorization: Bearer <token>`` (API clients)
or by the ``xunjian_session`` cookie the web app's login sets (HttpOnly,
SameSite=Strict). Role checks live in :class:`city.users.User`; the
dependencies here only say who is asking.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from city.store import Store
from city.users import PermissionDenied, Role, User

SESSION_COOKIE = "xunjian_session"


@dataclass
class Services:
    """The store and the agents the server runs with. Build with :meth:`default`
    (configured from the environment) or directly in tests."""

    store: Store
    llm_config: object = None  # agents.config.LLMConfig; None: offline
    ingest_engine: dict = field(default_factory=dict)  # IngestOptions fields the ingest jobs start from (engine, address…)
    _stack: ExitStack = field(default_factory=ExitStack)
    _pipeline: object = None
    _chat_graph: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def default(cls, store: Store | None = None, ingest_engine: dict | None = None) -> Services:
        """The configured store and LLM endpoint (the embedded model is started when
        the backend is ``local``, and stopped by :meth:`close`); ``ingest_engine``:
        where uploaded footage is processed (:func:`app.api.ingest.engine_options`)."""
        from agents.context import llm_endpoint
        from app.api.ingest import engine_options

        svc = cls(store=store or Store(), ingest_engine=ingest_engine if ingest_engine is not None else engine_options())
        svc.llm_config = svc._stack.enter_context(llm_endpoint())
        return svc

    def llm(self):
        from agents.config import LLMConfig
        from agents.llm import LLMClient, SqlCallLog

        return LLMClient(self.llm_config or LLMConfig(), log=SqlCallLog(self.store))

    @property
    def pipeline(self):
        """One case pipeline for the process (compiled graph + checkpointer)."""
        with self._lock:
            if self._pipeline is None:
                from agents.context import Context
                from agents.pipeline import Pipeline

                self._pipeline = Pipeline(self.store, Context.default(self.store, llm=self.llm()))
            return self._pipeline

    @property
    def chat_graph(self):
        """One compiled chat graph for the process (its checkpointer shares one connection)."""
        with self._lock:
            if self._chat_graph is None:
                from agents.chat.session import compiled

                self._chat_graph = compiled(self.store)
            return self._chat_graph

    def chat(self, user):
        """The dispatch agent for ``user`` (its LLM and the pipeline for redrafting replies)."""
        from agents.chat.session import Chat

        return Chat(self.store, user, self.llm(), pipeline=self.pipeline, graph=self.chat_graph)

    def close(self) -> None:
        self._stack.close()
        self.store.close()


def services(request: Request) -> Services:
    return request.app.state.services


def store(request: Request) -> Store:
    return request.app.state.services.store


def bearer(request: Request) -> str | None:
    """The token of the request: the Authorization header, else the session cookie."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.cookies.get(SESSION_COOKIE)


def optional_user(request: Request) -> User | None:
    token = bearer(request)
    if not token:
        return None
    found = store(request).token(token)
    if found is None or found[1] is None:  # unknown/expired token, or an Open311 API key (no user)
        return None
    return found[1]


def current_user(request: Request) -> User:
    user = optional_user(request)
    if user is None:
        raise HTTPException(401, "需要登录：请先登录，或在请求头带上 Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


def manager(user: Annotated[User, Depends(current_user)]) -> User:
    """A dispatcher or an admin."""
    user.require_manage("执行此操作")
    return user


def admin(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role is not Role.ADMIN:
        raise PermissionDenied(f"{user.label} 无权管理用户和密钥：只有管理员可以")
    return user


def writer(user: Annotated[User, Depends(current_user)]) -> User:
    """Anyone but a viewer (a department user's rights are checked per case)."""
    if user.role is Role.VIEWER:
        raise PermissionDenied(f"{user.label} 是只读用户，不能修改任何内容")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
Manager = Annotated[User, Depends(manager)]
Admin = Annotated[User, Depends(admin)]
Writer = Annotated[User, Depends(writer)]
StoreDep = Annotated[Store, Depends(store)]
ServicesDep = Annotated[Services, Depends(services)]
