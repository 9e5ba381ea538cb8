"""``xunjian catalog``: the national catalogue of 部件 and 事项."""

from __future__ import annotations

import typer
from rich.panel import Panel
from rich.table import Table

from app.cli.common import city, out, print_json
from city.catalogue import Kind

app = typer.Typer(help="管理部件与事项目录（GB/T 47678.5-2026 + 本地扩展）。", no_args_is_help=True)


@app.command("list")
def list_(
    kind: Kind = typer.Option(None, "--kind", help="部件 或 事件"),
    major: str = typer.Option(None, "--major", help="大类代码，如 06"),
    curated: bool = typer.Option(False, "--curated", help="只列出已配置完整属性的类别"),
    as_json: bool = typer.Option(False, "--json", help="输出 JSON"),
):
    """列出目录条目。"""
    entries = [
        e for e in city().catalogue
        if (kind is None or e.kind == kind) and (major is None or e.major_code == major) and (not curated or e.curated)
    ]
    if as_json:
        return print_json(entries)
    t = Table(title=f"目录（{len(entries)} 条）")
    for col in ("类型", "代码", "名称", "大类", "优先级", "风险", "一般时限", "旧代码"):
        t.add_column(col)
    for e in entries:
        t.add_row(e.kind.value, e.code, e.name + (" ★" if e.curated else ""), e.major_name, e.default_priority.value,
                  e.risk_level.value, str(e.time_limits[e.default_priority]), e.legacy_code or "")
    out.print(t)
    out.print("★ = 已配置同义词、时限和立结案条件；其余为按大类的默认值。")


@app.command()
def show(
    ref: str = typer.Argument(..., help="代码，如 06010、事件:01002、部件:01002 或旧代码 01-10"),
    kind: Kind = typer.Option(None, "--kind"),
    as_json: bool = typer.Option(False, "--json"),
):
    """显示一个条目的全部属性。"""
    e = city().catalogue.get(ref, kind)
    if as_json:
        return print_json(e)
    limits = "，".join(f"{u.value} {d}" for u, d in e.time_limits.items())
    body = "\n".join(
        line for line in [
            f"[b]{e.name}[/b]  {e.kind.value} {e.code}  （{e.major_code} {e.major_name}）",
            f"定义：{e.definition}" if e.definition else "",
            f"同义词：{'、'.join(e.synonyms)}" if e.synonyms else "",
            f"默认优先级：{e.default_priority.value}    风险等级：{e.risk_level.value}",
            f"处置时限：{limits}",
            f"立案条件：{e.filing_condition}",
            f"结案条件：{e.closing_condition}",
            f"上报来源：{'、'.join(s.value for s in e.sources)}",
            f"相关类别：{'、'.join(e.related)}" if e.related else "",
            f"旧代码（GB/T 30428.2-2013 / CJ/T 214）：{e.legacy_code}" if e.legacy_code else "",
            "本地扩展类别" if e.local_extension else "",
            "（属性为大类默认值，尚未逐项配置）" if not e.curated else "",
            f"注：{e.note}" if e.note else "",
        ] if line
    )
    out.print(Panel(body, title=e.key, expand=False))


@app.command()
def search(
    text: str = typer.Argument(..., help="一句描述，如 “井盖破了”"),
    k: int = typer.Option(10, "-k", help="返回条数"),
    kind: Kind = typer.Option(Kind.EVENT, "--kind", help="事件（默认：案件按事项分类）或 部件"),
    any_kind: bool = typer.Option(False, "--all", help="部件和事件一起检索"),
    as_json: bool = typer.Option(False, "--json"),
):
    """按描述检索目录（字符 n-gram TF-IDF + 同义词命中）。"""
    hits = city().catalogue.search(text, k=k, kind=None if any_kind else kind)
    if as_json:
        return print_json([{"key": h.entry.key, "name": h.entry.name, "score": h.score, "matched": h.matched} for h in hits])
    if not hits:
        out.print("没有匹配的条目。")
        raise typer.Exit(1)
    t = Table(title=f"“{text}” 的候选类别")
    for col in ("#", "类型", "代码", "名称", "得分", "命中"):
        t.add_column(col)
    for i, h in enumerate(hits, 1):
        t.add_row(str(i), h.entry.kind.value, h.entry.code, h.entry.name, f"{h.score:.3f}", h.matched or "")
    out.print(t)
