"""``xunjian llm``: the embedded local model (llama.cpp ``llama-server`` + a small GGUF model)."""

from __future__ import annotations

import json
import threading
import time
from enum import Enum
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from agents import local_model as lm
from app.cli.common import out

app = typer.Typer(help="内置本地模型：构建 llama-server、安装模型、启动/停止本地服务。", no_args_is_help=True)


# -- progress rendering ----------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


class _RichTask(lm.Task):
    def __init__(self, prog: Progress, title: str, total: float | None, unit: str):
        self.prog, self.title, self.unit = prog, title, unit
        self.total, self.done, self.message = total, 0.0, ""
        self.id = prog.add_task(escape(title), total=total, detail="")
        self.lock = threading.Lock()

    def _detail(self) -> str:
        parts = []
        if self.unit == "B" and self.total:
            parts.append(f"{_mib(self.done)}/{_mib(self.total)}")
        if self.message:
            parts.append(self.message[:70])
        return escape("  ".join(parts))

    def update(self, advance=0, *, completed=None, total=None, message=None):
        with self.lock:
            if total is not None:
                self.total = total
            if completed is not None:
                self.done = completed
            self.done += advance
            if message is not None:
                self.message = message
            self.prog.update(self.id, completed=self.done, total=self.total, detail=self._detail())

    def finish(self, message=""):
        self.prog.update(self.id, description=f"[green]✓[/] {escape(self.title)}", total=self.total or 1,
                         completed=self.total or 1, detail=escape(message))
        self.prog.stop_task(self.id)

    def fail(self, message=""):
        self.prog.update(self.id, description=f"[red]✗[/] {escape(self.title)}", detail=f"[red]{escape(message[:160])}[/]")
        self.prog.stop_task(self.id)


class RichProgress(lm.Progress):
    """Live progress lines on a terminal."""

    def __init__(self):
        self.prog = Progress(SpinnerColumn(finished_text=" "), TextColumn("{task.description}"), BarColumn(bar_width=20),
                             TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
                             console=out, refresh_per_second=8)

    def __enter__(self):
        self.prog.start()
        return self

    def __exit__(self, *exc):
        self.prog.stop()

    def task(self, title, total=None, unit=""):
        return _RichTask(self.prog, title, total, unit)

    def skip(self, title, message):
        self.prog.console.print(f"[green]✓[/] {escape(title)}: [dim]{escape(message)}[/]")

    def info(self, message):
        self.prog.console.print(escape(message))


class _LineTask(lm.Task):
    def __init__(self, title: str, total: float | None, unit: str):
        self.title, self.total, self.unit = title, total, unit
        self.done, self.started, self.step, self.last_msg = 0.0, time.monotonic(), -1, None
        out.print(f"… {escape(title)}")

    def update(self, advance=0, *, completed=None, total=None, message=None):
        if total is not None:
            self.total = total
        if completed is not None:
            self.done = completed
        self.done += advance
        if self.unit == "B":  # downloads: one line per part
            if message and message != self.last_msg and message.endswith("writing"):
                out.print(f"  {escape(message)}  {_mib(self.done)}/{_mib(self.total or 0)}  {self._elapsed()}")
            self.last_msg = message or self.last_msg
        elif self.unit == "%" and self.total:  # the build: one line per 10 %
            step = int(self.done * 10 // self.total)
            if step > self.step:
                self.step = step
                out.print(f"  {step * 10:3d}%  {self._elapsed()}  {escape((message or '')[:100])}")

    def _elapsed(self) -> str:
        s = int(time.monotonic() - self.started)
        return f"{s // 60}:{s % 60:02d}"

    def finish(self, message=""):
        out.print(f"✓ {escape(self.title)}: {escape(message)} ({self._elapsed()})")

    def fail(self, message=""):
        out.print(f"✗ {escape(self.title)}: {escape(message)}")


class LineProgress(lm.Progress):
    """Plain lines for logs and pipes (no live display)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def task(self, title, total=None, unit=""):
        return _LineTask(title, total, unit)

    def skip(self, title, message):
        out.print(f"✓ {escape(title)}: {escape(message)}")

    def info(self, message):
        out.print(escape(message))


def _progress():
    return RichProgress() if out.is_terminal else LineProgress()


# -- commands --------------------------------------------------------------------------------------


class Only(str, Enum):
    server = "server"
    model = "model"


@app.command()
def install(
    gguf: Path = typer.Option(None, "--gguf", help="安装这个 GGUF 模型文件，代替默认的 Qwen2.5-Coder-1.5B-Instruct Q4_K_M"),
    link: bool = typer.Option(False, "--link", help="与 --gguf 同用：建符号链接而不复制"),
    force: bool = typer.Option(False, "--force", help="重新构建、重新下载（即使已安装并校验通过）"),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, help="编译并行数（默认：CPU 核数）"),
    only: Only = typer.Option(None, "--only", help="只装 server（llama-server）或 model（模型）"),
    check: bool = typer.Option(True, "--check/--no-check", help="装好后启动一次服务、生成几个 token 验证"),
):
    """构建 llama-server 并安装模型（首次约 6 分钟编译 + 1.1 GB 下载；已完成的步骤会跳过）。"""
    if gguf is not None and only == Only.server:
        raise lm.LocalModelError("--gguf installs a model: it does not go with --only server")
    if link and gguf is None:
        raise lm.LocalModelError("--link goes with --gguf PATH")
    lay = lm.layout()
    out.print(f"安装目录：{lay.root}")
    started = time.monotonic()
    with _progress() as p:
        result = lm.install(p, gguf=gguf, link=link, force=force, jobs=jobs, root=lay.root,
                            server=only != Only.model, model=only != Only.server, check=check and only is None)
    out.print(f"[green]完成[/]（{(time.monotonic() - started) / 60:.1f} 分钟）：{result.server}  +  {result.model}")
    out.print(f"启动：[b]xunjian llm serve[/]（OpenAI 兼容接口 http://127.0.0.1:8080/v1，模型名 {result.name}）")


@app.command()
def status(
    verify: bool = typer.Option(False, "--verify", help="重新计算模型文件的 sha256"),
    as_json: bool = typer.Option(False, "--json"),
):
    """安装了什么、在哪里、是否校验通过；本地服务是否在运行。"""
    lay = lm.layout()
    srv = lm.server_installed(lay)
    mod = lm.model_installed(lay)
    if verify and mod:
        with _progress() as p:
            mod["sha256_ok"] = lm.verify_model(mod, p)
    running = lm.running_server(lay.root)
    if as_json:
        print(json.dumps({"root": str(lay.root), "server": srv, "model": mod, "running": running,
                          "cache_bytes": lm.disk_usage(lay.cache)}, ensure_ascii=False, indent=2))
        return
    t = Table(title=f"本地模型（{lay.root}）", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    if srv:
        t.add_row("llama-server", f"{srv['path']}\n版本 {srv.get('version')}（llama-cpp-python {srv['llama_cpp_python']} 内置 llama.cpp）"
                  f"\n构建于 {srv.get('built_at')}，用时 {srv.get('build_seconds', 0) / 60:.1f} 分钟，-j{srv.get('jobs')}")
    else:
        stale = lay.server.exists()
        t.add_row("llama-server", "[yellow]未安装[/]" + ("（已有旧版本，需要重新构建）" if stale else "") + "：xunjian llm install")
    if mod:
        if "sha256_ok" in mod:
            sha = "[green]sha256 校验通过[/]" if mod["sha256_ok"] else "[red]sha256 不符：xunjian llm install --force[/]"
        else:
            sha = f"sha256 {mod['sha256'][:16]}…（{mod.get('verified_at')} 校验；--verify 重新校验）"
        t.add_row("模型", f"{mod['path']}\n名称 {mod['name']}，{mod['size']:,} 字节（{mod['size'] / 2**30:.2f} GiB），"
                  f"{'默认模型' if mod.get('default') else '来源 ' + mod.get('source', '')}\n{sha}")
    else:
        t.add_row("模型", "[yellow]未安装[/]：xunjian llm install（或 --gguf PATH）")
    if running:
        t.add_row("服务", f"[green]运行中[/] {running['base_url']}  pid {running['pid']}  /health: {running['health']}"
                  f"\n日志 {running['log']}")
    else:
        t.add_row("服务", "未运行（xunjian llm serve）")
    cache = lm.disk_usage(lay.cache)
    if cache:
        t.add_row("缓存", f"{lay.cache}  {_mib(cache)}")
    out.print(t)


@app.command()
def serve(
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="端口（0：任选一个空闲端口）"),
    ctx: int = typer.Option(4096, "--ctx", min=256, help="上下文长度（token）"),
    threads: int = typer.Option(None, "--threads", min=1, help="推理线程数（默认：CPU 核数）"),
    parallel: int = typer.Option(1, "--parallel", min=1, help="并行槽位数（每个槽位分得 ctx/parallel）"),
    background: bool = typer.Option(False, "--background", "-d", help="后台运行（写 pid 文件后返回；xunjian llm stop 停止）"),
    busy_wait: bool = typer.Option(False, "--busy-wait", help="线程忙等（机器空闲时生成快约 30%，有其他进程争用 CPU 时慢 5-10 倍）"),
    timeout: float = typer.Option(180, "--timeout", help="等待 /health 就绪的秒数"),
):
    """在 127.0.0.1 上启动 llama-server（OpenAI 兼容接口 /v1）；默认前台运行，Ctrl-C 停止。"""
    if running := lm.running_server():
        raise lm.LocalModelError(f"a local server is already running at {running['base_url']} (pid {running['pid']}): "
                                 f"`xunjian llm stop` first")
    with out.status("启动 llama-server，等待 /health …"):
        handle = lm.start_server(port or None, ctx=ctx, threads=threads, parallel=parallel, timeout=timeout,
                                 detach=background, record=True, busy_wait=busy_wait)
    out.print(f"[green]就绪[/]：[b]{handle.base_url}[/]  模型 {handle.model}  pid {handle.pid}")
    out.print(f"[dim]日志：{handle.log_path}[/]")
    if background:
        out.print("后台运行中；停止：xunjian llm stop")
        return
    out.print("前台运行中；Ctrl-C 停止")
    try:
        rc = handle.wait()
    except KeyboardInterrupt:
        out.print("停止 …")
        handle.stop()
        return
    handle.stop()
    if rc:
        raise lm.LocalModelError(f"llama-server exited with code {rc}: {handle.log_tail(2)} — log: {handle.log_path}")


@app.command()
def stop():
    """停止 `xunjian llm serve` 启动的本地服务。"""
    info = lm.stop_server()
    if info:
        out.print(f"已停止 {info['base_url']}（pid {info['pid']}）")
    else:
        out.print("没有运行中的本地服务")


DEMO_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["市政设施", "市容环境", "园林绿化", "交通设施", "其他"]},
        "summary": {"type": "string"},
        "urgent": {"type": "boolean"},
    },
    "required": ["category", "summary", "urgent"],
    "additionalProperties": False,
}


def ask(base_url: str, model: str, text: str, max_tokens: int = 200) -> dict:
    """One JSON-schema-constrained chat completion through the raw HTTP API; the response with llama.cpp timings."""
    return lm.chat(base_url, {
        "model": model,
        "temperature": 0,
        "max_tokens": max_tokens,
        "messages": [
            {"role": "system", "content": "你是城市管理案件分类助手。只输出 JSON。category 只能取：市政设施、市容环境、园林绿化、交通设施、其他。"},
            {"role": "user", "content": f"市民反映：{text}\n请给出类别、一句话摘要、是否紧急。"},
        ],
        "response_format": {"type": "json_schema", "json_schema": {"name": "triage", "strict": True, "schema": DEMO_SCHEMA}},
    })


@app.command("try")
def try_(
    text: str = typer.Argument("建设路与人民路交叉口东北角人行道井盖破了一半，晚上很危险", help="一段市民反映"),
    as_json: bool = typer.Option(False, "--json"),
):
    """用本地模型做一次 JSON Schema 约束的分类，显示结果和速度（token/s）。"""
    running = lm.running_server()
    handle = None
    if running and running.get("health") == "ok":
        base_url, model = running["base_url"], running["model"]
    else:
        with out.status("启动临时 llama-server …"):
            handle = lm.start_server()
        base_url, model = handle.base_url, handle.model
    try:
        with out.status(f"请求 {base_url} …"):
            started = time.monotonic()
            resp = ask(base_url, model, text)
            wall = time.monotonic() - started
    finally:
        if handle:
            handle.stop()
    answer = resp["choices"][0]["message"]["content"]
    tm = resp.get("timings", {})
    if as_json:
        print(json.dumps({"answer": json.loads(answer), "timings": tm, "usage": resp.get("usage"), "wall_s": round(wall, 2)},
                         ensure_ascii=False, indent=2))
        return
    out.print(escape(answer))
    if tm:
        out.print(f"提示 {tm.get('prompt_n')} token，{tm.get('prompt_per_second', 0):.1f} token/s；"
                  f"生成 {tm.get('predicted_n')} token，{tm.get('predicted_per_second', 0):.1f} token/s；共 {wall:.1f} s")
