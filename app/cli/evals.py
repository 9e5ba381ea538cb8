"""``xunjian eval``: run the eval suites, keep the runs, report and compare them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.common import city, err, out, print_json
from city.errors import InvalidInput, XunjianError

app = typer.Typer(help="评测：运行评测套件、保存结果、生成报告与对比。", no_args_is_help=True)

_db: dict[str, str | None] = {"path": None}


@app.callback()
def _options(
    db: str = typer.Option(None, "--db", envvar="XUNJIAN_EVALS_DB",
                           help="评测结果数据库（SQLite 文件；默认 $XUNJIAN_HOME/evals.db）"),
):
    _db["path"] = db


def _store():
    from evals.storage import EvalStore

    return EvalStore(_db["path"])


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _fail_check(problems: list[str]) -> None:
    for p in problems:
        err.print(f"[bold red]未通过检查[/]：{escape(p)}")
    raise typer.Exit(1)


@app.command("list")
def list_(limit: int = typer.Option(10, "--limit", help="显示最近几次运行"),
          as_json: bool = typer.Option(False, "--json")):
    """列出评测套件和最近的运行。"""
    from evals.suites import list_suites

    suites, runs = list_suites(), _store().runs(limit=limit)
    if as_json:
        return print_json({"suites": [s.model_dump(mode="json") for s in suites],
                           "runs": [r.model_dump(mode="json") for r in runs]})
    t = Table(title="评测套件")
    for c in ("套件", "任务", "数据集", "指标"):
        t.add_column(c)
    for s in suites:
        t.add_row(s.name, s.task, "\n".join(s.datasets), ", ".join(s.metrics))
    out.print(t)
    r = Table(title="最近的运行")
    r.add_column("运行", no_wrap=True)
    for c in ("后端", "条目", "耗时(秒)", "主要指标"):
        r.add_column(c)
    for i in runs:
        main = next((s.metrics for s in suites if s.name == i.suite), list(i.metrics)[:3])
        r.add_row(i.id, i.backend + (f"/{i.model}" if i.model else ""), str(i.items), f"{i.seconds:.1f}",
                  "  ".join(f"{m} {_fmt(i.metrics.get(m))}" for m in main[:4]))
    out.print(r if runs else "[dim]还没有评测运行：xunjian eval run triage[/]")


@app.command()
def run(
    suite: str = typer.Argument(None, help="套件名（xunjian eval list）或套件 YAML 文件；与 --all/--fast 二选一"),
    backend: str = typer.Option("offline", "--backend", help="offline、local 或 openai:MODEL"),
    limit: int = typer.Option(None, "--limit", min=1, help="只跑前 N 条"),
    weights: str = typer.Option(None, "--weights", help="检测模型权重（.onnx/.pt，旁边有 card.yaml），用于 detect 与 footage 套件"),
    all_suites: bool = typer.Option(False, "--all", help="运行全部套件（缺少数据集的跳过）"),
    fast: bool = typer.Option(False, "--fast", help="只运行标为 fast 的套件（CI 用）"),
    check: bool = typer.Option(False, "--check", help="指标越过套件阈值时以退出码 1 结束"),
    against: str = typer.Option(None, "--against", help="与此运行比较（运行编号或 baseline：最近一次离线运行）"),
    as_json: bool = typer.Option(False, "--json"),
):
    """运行评测套件，保存结果并生成报告（Markdown + HTML）。"""
    from evals.suites import list_suites, load_suite

    if suite and (all_suites or fast):
        raise InvalidInput("给出套件名，或用 --all / --fast，不要同时使用")
    if not suite and not (all_suites or fast):
        raise InvalidInput("请给出套件名（xunjian eval list 列出全部），或用 --all / --fast")
    suites = [load_suite(suite)] if suite else [s for s in list_suites() if s.fast or not fast]
    if weights:
        if any(s.task not in ("detect", "footage") for s in suites):
            raise InvalidInput("--weights 只用于 detect 与 footage 套件")
        suites = [s.model_copy(update={"options": {**s.options, "weights": str(Path(weights).resolve())}}) for s in suites]
    problems, outputs = [], []
    for s in suites:
        done = _run_one(s, backend, limit, against, as_json)
        if done is None:
            continue
        result, ref, path, cmp_path = done
        outputs.append({"run": result.info.model_dump(mode="json"), "report": str(path),
                        "compare_report": str(cmp_path) if cmp_path else None})
        if check:
            from evals.check import violations

            problems += [f"{s.name}：{p}" for p in violations(result.info, s, ref.info if ref else None)]
    if as_json:
        print_json(outputs[0] if suite and outputs else outputs)
    if check:
        if problems:
            _fail_check(problems)
        out.print("[green]检查通过[/]：所有指标满足套件阈值")


def _run_one(s, backend: str, limit: int | None, against: str | None, quiet: bool):
    """Run one suite, store it, write its reports; None when its data is absent (skipped with a message)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from evals.report import write_compare_report, write_run_report
    from evals.runner import MissingData, run_suite

    st = _store()
    ref = st.get(st.resolve(against, suite=s.name)) if against else None  # fail before the run, not after
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True, disable=quiet) as bar:
            task = bar.add_task(f"评测 {s.name}（{backend}）", total=None)

            def progress(done: int, total: int, item_id: str) -> None:
                bar.update(task, completed=done, total=total, description=f"评测 {s.name}（{backend}）{item_id}")

            result = run_suite(s, backend=backend, limit=limit, city=city(), progress=progress)
    except MissingData as e:
        err.print(f"[yellow]跳过[/]：{escape(str(e))}")
        return None
    st.save(result)
    try:  # the offline baseline beside an LLM run (or the previous offline run beside this one)
        base = next(r for r in st.runs(suite=s.name, limit=50) if r.backend == "offline" and r.id != result.info.id)
    except StopIteration:
        base = None
    path = write_run_report(result, s.thresholds, baseline=base)
    cmp_path = write_compare_report(ref, result) if ref else None
    if not quiet:
        _print_run(result.info, s.metrics)
        out.print(f"报告：{path}")
        if cmp_path:
            out.print(f"对比报告：{cmp_path}")
    return result, ref, path, cmp_path


def _print_run(info, lead: list[str]) -> None:
    from evals.report import fmt
    from evals.tasks import task_module

    known = task_module(info.task).METRICS
    out.print(f"[bold]{info.id}[/]  {info.suite} / {info.backend}{'/' + info.model if info.model else ''}  "
              f"{info.items} 条，{info.seconds:.1f} 秒，tokens {info.prompt_tokens}+{info.completion_tokens}")
    t = Table()
    t.add_column("指标")
    t.add_column("说明")
    t.add_column("值", justify="right")
    for m in [*lead, *(k for k in info.metrics if k not in lead)]:
        k = known.get(m)
        t.add_row(m, k.label if k else "", fmt(info.metrics.get(m), k.unit if k else ""))
    out.print(t)


@app.command()
def show(run_ref: str = typer.Argument(..., metavar="RUN", help="运行编号（可用前缀、latest）"),
         as_json: bool = typer.Option(False, "--json")):
    """显示一次运行的指标，并重新生成它的报告。"""
    from evals.report import write_run_report
    from evals.suites import load_suite

    r = _store().get(run_ref)
    try:
        s = load_suite(r.info.suite, file=r.info.suite_file)
        lead, thresholds = s.metrics, s.thresholds
    except XunjianError:  # the suite file is gone or no longer valid: show the run without thresholds
        lead, thresholds = [], {}
    path = write_run_report(r, thresholds)
    if as_json:
        return print_json({"run": r.info.model_dump(mode="json"), "report": str(path)})
    _print_run(r.info, lead)
    out.print(f"报告：{path}")


@app.command()
def compare(
    a: str = typer.Argument(..., metavar="RUN_A", help="基准运行（或 baseline）"),
    b: str = typer.Argument(..., metavar="RUN_B", help="新运行（或 latest）"),
    check: bool = typer.Option(False, "--check", help="B 比 A 下降超过套件允许的幅度或低于阈值时以退出码 1 结束"),
    as_json: bool = typer.Option(False, "--json"),
):
    """对比两次运行：指标变化、由对变错与由错变对的条目（Markdown + HTML 报告）。"""
    from evals.check import violations
    from evals.report import deltas, flips, write_compare_report
    from evals.suites import load_suite

    st = _store()
    rb = st.get(b)
    ra = st.get(st.resolve(a, suite=rb.info.suite))
    path = write_compare_report(ra, rb)
    worse, better = flips(ra, rb)
    if as_json:
        print_json({"a": ra.info.id, "b": rb.info.id, "report": str(path),
                    "deltas": [{"metric": m, "a": va, "b": vb, "delta": d, "better": ok} for m, va, vb, d, ok in deltas(ra, rb)],
                    "right_to_wrong": [f.model_dump() for f in worse], "wrong_to_right": [f.model_dump() for f in better]})
    else:
        t = Table(title=f"{ra.info.id} → {rb.info.id}")
        for c in ("指标", "A", "B", "变化"):
            t.add_column(c, justify="right" if c != "指标" else "left")
        for m, va, vb, d, ok in deltas(ra, rb):
            style = "" if ok is None else "green" if ok else "red"
            t.add_row(m, _fmt(va), _fmt(vb), "—" if d is None else f"[{style}]{d:+.3f}[/]" if style else f"{d:+.3f}")
        out.print(t)
        out.print(f"由对变错 {len(worse)} 条，由错变对 {len(better)} 条")
        for f in worse[:10]:
            out.print(f"  [red]✗[/] {f.item_id}：{escape(f.a)} → {escape(f.b)}（期望 {escape(f.expected)}）")
        out.print(f"报告：{path}")
    if check:
        _fail_check_if(violations(rb.info, load_suite(rb.info.suite, file=rb.info.suite_file), ra.info))


def _fail_check_if(problems: list[str]) -> None:
    if problems:
        _fail_check(problems)
    out.print("[green]检查通过[/]")
