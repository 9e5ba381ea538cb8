"""``xunjian chat``: talk to the dispatch agent in the terminal."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.prompt import Prompt

from app.cli.common import actor, err, out, print_json, store
from city.errors import InvalidInput

ROLES = ("dispatcher", "department", "viewer", "admin")


def _user(name: str | None, role: str, dept: str | None):
    from city.users import Role, User

    if role not in ROLES:
        raise InvalidInput(f"--role {role!r}：应为 {'、'.join(ROLES)} 之一")
    return User(name=actor(name), role=Role(role), department_id=dept)


def _show(turn, streamed: str = "") -> None:
    """The turn's replies (except the one already streamed) and the change waiting for confirmation."""
    for r in turn.replies:
        if streamed and r == streamed:
            continue
        out.print(Panel(escape(r), title="调度助手", title_align="left", border_style="cyan"))
    if turn.waiting:
        warn = "".join(f"\n[yellow]注意：{escape(w)}[/]" for w in turn.waiting.get("warnings", []))
        out.print(Panel(escape(turn.waiting["text"]) + warn, title="待确认的操作（尚未执行）", title_align="left",
                        border_style="yellow"))


def _edit_args(text: str) -> dict:
    """``department=JB-SZ reason=…`` or a JSON object."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"修改内容不是有效的 JSON：{e}") from None
    pairs = [p.split("=", 1) for p in text.split()]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise InvalidInput("修改内容应为 参数=值（如 department=JB-SZ），或一个 JSON 对象")
    return dict(pairs)


def _decide(c, thread: str, turn) -> None:
    """Ask the user about the waiting change until it is confirmed, cancelled or replaced."""
    while turn.waiting:
        choice = Prompt.ask("确认执行？ [b]y[/] 确认 / [b]n[/] 取消 / [b]e[/] 修改参数", choices=["y", "n", "e"], default="n")
        if choice == "e":
            args = _edit_args(Prompt.ask("修改（参数=值 …，或 JSON）"))
            turn = c.answer(thread, "edit", args)
        else:
            turn = c.answer(thread, "confirm" if choice == "y" else "cancel")
        _show(turn)


def chat(
    message: str = typer.Option(None, "--message", "-m", help="只发送这一句（不进入交互）；适合脚本"),
    thread: str = typer.Option(None, "--thread", "-t", help="继续某个会话（会话编号）；默认新开一个"),
    confirm: bool = typer.Option(False, "--confirm", help="确认该会话中等待确认的操作（与 --thread 同用）"),
    cancel: bool = typer.Option(False, "--cancel", help="取消该会话中等待确认的操作"),
    name: str = typer.Option(None, "--user", help="你的姓名（写入审计日志；默认 $XUNJIAN_USER 或系统用户名）"),
    role: str = typer.Option("dispatcher", "--role", help="dispatcher 调度员、department 责任单位、viewer 只读、admin"),
    dept: str = typer.Option(None, "--dept", help="责任单位用户所属单位编号（--role department 时必填）"),
    as_json: bool = typer.Option(False, "--json", help="输出 JSON（与 -m/--confirm/--cancel 同用）"),
):
    """与调度助手对话：查案件、问原因、看统计，改派/延期/作废等改动经你确认后执行并记入审计日志。

    未配置大模型时为命令模式：常见的查询和改派等可直接用中文说（按关键词理解，并显示理解成的命令），其余用 /help 里的命令。会话保存在数据库中，用 --thread 继续。"""
    from agents.chat.session import Chat
    from agents.context import llm_endpoint
    from agents.llm import LLMClient, SqlCallLog

    user = _user(name, role, dept)
    st = store()
    if (confirm or cancel) and not thread:
        raise InvalidInput("--confirm / --cancel 需要 --thread 指明会话")
    with llm_endpoint() as config:
        c = Chat(st, user, LLMClient(config, log=SqlCallLog(st)))
        thread = thread or c.new_thread()
        if confirm or cancel or message is not None:
            turn = c.answer(thread, "confirm" if confirm else "cancel") if (confirm or cancel) else c.send(thread, message)
            if as_json:
                return print_json(turn)
            _show(turn)
            if turn.waiting:
                out.print(f"[dim]确认：xunjian chat --thread {thread} --confirm；取消：--cancel[/]")
            return
        mode = f"大模型 {config.backend}{'/' + config.model if config.model else ''}" if config.enabled else "命令模式（未配置大模型：常见问题可直接用中文问，其余用 /命令）"
        out.print(f"[b]调度助手[/b]  {escape(user.label)}  会话 [b]{thread}[/b]  {mode}。输入 /help 查看命令，Ctrl-D 退出。")
        if c.waiting(thread):
            _decide(c, thread, c.turn_since(thread, len(c.state(thread).messages)))
        while True:
            try:
                line = Prompt.ask("[b]你[/]")
            except (EOFError, KeyboardInterrupt):
                out.print(f"\n会话已保存：xunjian chat --thread {thread}")
                return
            if not line.strip():
                continue
            parts: list[str] = []

            def delta(piece: str, parts=parts) -> None:
                if not parts:
                    out.print("[cyan]调度助手[/]：", end="")
                parts.append(piece)
                out.print(escape(piece), end="", soft_wrap=True)

            try:
                turn = c.send(thread, line, on_delta=delta)
            except InvalidInput as e:
                err.print(f"[red]{escape(str(e))}[/]")
                continue
            if parts:
                out.print()
            _show(turn, "".join(parts))
            _decide(c, thread, turn)
