"""``xunjian serve``: the HTTP API and the web app; ``xunjian users``: accounts and API keys."""

from __future__ import annotations

import os
import secrets

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.common import err, out, store
from city.errors import InvalidInput

users_app = typer.Typer(help="用户与密钥：网页/接口的登录用户，Open311 客户端的 API key。", no_args_is_help=True)

ROLE_HELP = "dispatcher 调度员、department 责任单位、viewer 只读、admin 管理员"


def first_admin(st) -> tuple[str, str | None] | None:
    """Create the first admin when there is no user yet: (name, password if generated).
    Name from ``XUNJIAN_ADMIN_USER`` (default admin), password from
    ``XUNJIAN_ADMIN_PASSWORD`` or a random one (shown once)."""
    from city.users import Role, User

    if st.users():
        return None
    name = os.environ.get("XUNJIAN_ADMIN_USER") or "admin"
    given = os.environ.get("XUNJIAN_ADMIN_PASSWORD")
    password = given or secrets.token_urlsafe(12)
    st.add_user(User(name=name, role=Role.ADMIN), password)
    return name, None if given else password


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="监听地址（默认只在本机；对外服务请放在 HTTPS 反向代理之后）"),
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535),
    sla_every: str = typer.Option("5m", "--sla-every", help="超期预警与督办的检查间隔（如 30s、5m；0 关闭）"),
    log_level: str = typer.Option("info", "--log-level"),
    engine: str = typer.Option(None, "--engine", help="上传视频的处理引擎：local（本进程）| ray（Ray 集群）；默认 $XUNJIAN_INGEST_ENGINE，否则 local"),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray 集群地址（host:port）；默认 $RAY_ADDRESS，否则每个任务在本机启动 Ray"),
    ray_workers: int = typer.Option(None, "--ray-workers", help="Ray：检测 actor 数（默认每个 CPU 一个，有 GPU 时每个 GPU 一个）"),
):
    """启动网页和 HTTP 接口（含 Open311 GeoReport v2；接口文档在 /docs）。

    第一次启动时创建管理员：用户名取 $XUNJIAN_ADMIN_USER（默认 admin），密码取
    $XUNJIAN_ADMIN_PASSWORD，未设置则随机生成并只显示这一次。"""
    import uvicorn

    from app.api import create_app
    from app.api.deps import Services
    from app.api.ingest import engine_options
    from app.cli.sla import parse_every

    try:
        engine_opts = engine_options(engine, ray_address, ray_workers)
    except InvalidInput as e:
        raise typer.BadParameter(str(e), param_hint="--engine") from None
    every = None if sla_every.strip() in ("0", "off") else parse_every(sla_every).total_seconds()
    st = store()
    created = first_admin(st)
    services = Services.default(st, ingest_engine=engine_opts)
    url = f"http://{host}:{port}"
    out.print(f"[b]巡检 xunjian[/b]  网页 {url}/   接口文档 {url}/docs   数据库 {st.write_engine.url.render_as_string()}")
    if created:
        name, password = created
        if password:
            out.print(f"[yellow]已创建管理员[/] [b]{escape(name)}[/]，密码 [b]{escape(password)}[/]（只显示这一次；"
                      f"可用 xunjian users passwd {escape(name)} 修改）")
        else:
            out.print(f"已创建管理员 [b]{escape(name)}[/]（密码取自 XUNJIAN_ADMIN_PASSWORD）")
    if not st.count():
        out.print("[dim]数据库里还没有案件：先运行 xunjian demo 载入演示数据，或在网页上传巡检视频批次。[/]")
    mode = services.llm_config.backend if services.llm_config else "offline"
    where = engine_opts["engine"] + (f"（{engine_opts['address']}）" if engine_opts.get("address") else "")
    out.print(f"[dim]大模型：{mode}；视频导入：{where}；超期检查：{'每 ' + sla_every if every else '关闭'}。Ctrl-C 停止。[/]")
    uvicorn.run(create_app(services, sla_every_s=every), host=host, port=port, log_level=log_level)


@users_app.command("list")
def list_users():
    """列出用户。"""
    t = Table(title="用户")
    for col in ("用户名", "角色", "单位"):
        t.add_column(col)
    for u in store().users():
        t.add_row(u.name, u.role.value, u.department_id or "—")
    out.print(t)


def _password(password: str | None) -> str:
    if password:
        return password
    first = typer.prompt("密码", hide_input=True)
    if typer.prompt("再输一次", hide_input=True) != first:
        raise InvalidInput("两次输入的密码不一致")
    return first


@users_app.command("add")
def add_user(
    name: str = typer.Argument(..., help="用户名（也是审计日志里的操作人）"),
    role: str = typer.Option(..., "--role", help=ROLE_HELP),
    dept: str = typer.Option(None, "--dept", help="责任单位用户所属单位编号"),
    password: str = typer.Option(None, "--password", envvar="XUNJIAN_NEW_PASSWORD", help="默认交互输入"),
):
    """添加用户。"""
    from city.users import Role, User

    try:
        r = Role(role)
    except ValueError:
        raise InvalidInput(f"--role {role!r}：应为 {ROLE_HELP}") from None
    user = store().add_user(User(name=name, role=r, department_id=dept), _password(password))
    out.print(f"[green]✓[/] 已添加 {escape(user.label)}")


@users_app.command("passwd")
def passwd(name: str = typer.Argument(...), password: str = typer.Option(None, "--password", envvar="XUNJIAN_NEW_PASSWORD")):
    """修改密码。"""
    store().set_password(name, _password(password))
    out.print(f"[green]✓[/] 已修改 {escape(name)} 的密码")


@users_app.command("disable")
def disable(name: str = typer.Argument(...)):
    """停用用户（并吊销其全部登录令牌）。"""
    store().disable_user(name)
    out.print(f"[green]✓[/] 已停用 {escape(name)}")


@users_app.command("key")
def key(client: str = typer.Argument(..., help="客户端名称，如 12345热线")):
    """为 Open311 客户端签发 API key（只显示这一次）。"""
    k = store().issue_api_key(client)
    out.print(f"{escape(client)} 的 API key：[b]{k}[/]")
    err.print("[dim]只显示这一次，请妥善保存。[/]")
