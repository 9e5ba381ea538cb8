"""The operations-centre web app: server-rendered pages (Jinja2) over the JSON API.

Every page needs a signed-in user (the ``xunjian_session`` cookie the login page
gets from ``POST /api/auth/login``); without one the browser is sent to
``/login?next=<page>``. The pages only lay things out and say who is signed in;
the data comes from the JSON API, fetched by the page's ES module with the same
cookie. Everything (CSS, JS, icons) is served from ``app/web/static``: no CDN.

Settings: ``XUNJIAN_TILE_URL`` — an optional map tile URL template
(``https://…/{z}/{x}/{y}.png``) drawn under the district/street/grid outlines;
without it the map is the outlines alone (works offline).
``XUNJIAN_WEB_CHUNK_MB`` (default 64) — the upload page sends a batch through the
resumable chunked API when one of its files is larger than this.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.api.deps import optional_user
from city.users import ROLE_NAMES, Role, User

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))

#: The pages in the top nav: (path, title, roles that may use it; None: everyone).
NAV = [
    ("/", "案件看板", None),
    ("/review", "审核队列", {Role.ADMIN, Role.DISPATCHER}),
    ("/upload", "上传批次", {Role.ADMIN, Role.DISPATCHER}),
    ("/chat", "调度对话", None),
    ("/dashboard", "统计看板", None),
]


def _asset_version() -> str:
    """Changes when a static file changes, so browsers fetch the new one."""
    try:
        return str(int(max(p.stat().st_mtime for p in STATIC.rglob("*") if p.is_file())))
    except ValueError:
        return "0"


def _chunk_threshold() -> int:
    """Bytes above which a file goes through the chunked upload API."""
    try:
        mb = float(os.environ.get("XUNJIAN_WEB_CHUNK_MB") or 64)
    except ValueError:
        mb = 64
    return max(1, int(mb * 1024 * 1024))


def _safe_next(target: str | None) -> str:
    """Only a local path (no scheme, no host, no ``//``) is followed after login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _page(request: Request, template: str, title: str, user: User, *, status: int = 200, **data) -> HTMLResponse:
    nav = [{"href": href, "title": name, "allowed": roles is None or user.role in roles} for href, name, roles in NAV]
    page = {
        "user": user.model_dump(mode="json") | {"role_name": ROLE_NAMES[user.role], "manages": user.manages},
        **data,
    }
    return templates.TemplateResponse(request, template, {
        "title": title,
        "user": user,
        "role_name": ROLE_NAMES[user.role],
        "nav": nav,
        "path": request.url.path,
        "v": _asset_version(),
        "page_json": json.dumps(page, ensure_ascii=False).replace("</", "<\\/"),
        **data,
    }, status_code=status)


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


class _SignedOut(Exception):
    """A page asked for without a session: answered with a redirect to /login."""


def _page_user(request: Request) -> User:
    user = optional_user(request)
    if user is None:
        raise _SignedOut
    return user


PageUser = Annotated[User, Depends(_page_user)]


def _forbidden(request: Request, user: User, title: str, message: str) -> HTMLResponse:
    return _page(request, "forbidden.html", title, user, status=403, message=message)


def mount(app: FastAPI) -> None:
    """Add the web pages and ``/static`` to ``app``."""
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_exception_handler(_SignedOut, lambda request, exc: _login_redirect(request))

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str = "/"):
        target = _safe_next(next)
        if optional_user(request) is not None:
            return RedirectResponse(target, status_code=303)
        return templates.TemplateResponse(request, "login.html", {
            "title": "登录", "next": target, "v": _asset_version()})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def board(request: Request, user: PageUser):
        return _page(request, "board.html", "案件看板", user, tile_url=os.environ.get("XUNJIAN_TILE_URL") or None)

    @app.get("/cases/{number}", response_class=HTMLResponse, include_in_schema=False)
    def case_page(request: Request, user: PageUser, number: str):
        return _page(request, "case.html", f"案件 {number}", user, number=number)

    @app.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review(request: Request, user: PageUser):
        if not user.manages:
            return _forbidden(request, user, "审核队列",
                              f"{user.label} 不能使用审核队列：只有调度员或管理员可以审核案件。")
        return _page(request, "review.html", "审核队列", user)

    @app.get("/upload", response_class=HTMLResponse, include_in_schema=False)
    def upload(request: Request, user: PageUser):
        if not user.manages:
            return _forbidden(request, user, "上传批次",
                              f"{user.label} 不能上传巡查批次：只有调度员或管理员可以上传。")
        threshold = _chunk_threshold()
        return _page(request, "upload.html", "上传批次", user, chunk_threshold=threshold, chunk_mb=f"{threshold / 2**20:g}")

    @app.get("/batches/{batch_id}", response_class=HTMLResponse, include_in_schema=False)
    def batch(request: Request, user: PageUser, batch_id: str):
        return _page(request, "batch.html", f"批次 {batch_id}", user, batch_id=batch_id)

    @app.get("/chat", response_class=HTMLResponse, include_in_schema=False)
    def chat(request: Request, user: PageUser):
        return _page(request, "chat.html", "调度对话", user)

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(request: Request, user: PageUser):
        return _page(request, "dashboard.html", "统计看板", user)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response((STATIC / "favicon.svg").read_bytes(), media_type="image/svg+xml")
