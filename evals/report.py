"""Reports of a run and of a comparison: Markdown and one self-contained HTML page.

The plots are PNG (matplotlib, Agg backend) embedded as base64 ``data:`` URIs, so
the HTML opens anywhere with no network and no side files. Plot labels are codes
and metric names (ASCII): the machine may have no CJK font. Files go to
``$XUNJIAN_HOME/evals/<run id>/report.{md,html}`` (``<a>-vs-<b>`` for a comparison).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from jinja2 import Environment, select_autoescape
from pydantic import BaseModel

from city import settings
from evals.metrics import LABELS, ItemResult, by_tag, confusion
from evals.storage import Run

WORST = 25  # failures listed per report


def reports_dir() -> Path:
    return settings.home() / "evals"


# -- plots --------------------------------------------------------------------------


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(series: dict[str, dict[str, float | None]]) -> str:
    """Grouped bars: one group a metric, one bar a run."""
    plt = _plt()
    names = [m for m in next(iter(series.values())) if any(s.get(m) is not None for s in series.values())]
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.9), 3.2))
    w = 0.8 / len(series)
    for k, (label, metrics) in enumerate(series.items()):
        xs = [i + k * w for i in range(len(names))]
        ax.bar(xs, [metrics.get(m) or 0 for m in names], width=w, label=label)
    ax.set_xticks([i + w * (len(series) - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _png(fig)


def plot_confusion(results: list[ItemResult]) -> str:
    plt = _plt()
    labels, m = confusion(results)
    ascii_labels = ["none" if lab == "（无）" else "other" if lab == "其他" else lab for lab in labels]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), ascii_labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), ascii_labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    for i, row in enumerate(m):
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=6, color="white" if v > max(map(max, m)) / 2 else "black")
    return _png(fig)


def plot_latency(results: list[ItemResult]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.hist([r.latency_ms for r in results], bins=30)
    ax.set_xlabel("latency per item (ms)")
    ax.set_ylabel("items")
    return _png(fig)


# -- content --------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def failures(results: list[ItemResult], n: int = WORST) -> list[ItemResult]:
    """The worst failures first: wrong code with a confident answer, then wrong department."""
    wrong = [r for r in results if not r.code_ok or r.dept_ok is False or r.output.error]
    return sorted(wrong, key=lambda r: (r.code_ok, -(r.output.confidence or 0), r.item_id))[:n]


class Flip(BaseModel):
    item_id: str
    metric: str  # code / department
    a: str | None
    b: str | None
    expected: str | None
    text: str


def flips(a: Run, b: Run) -> tuple[list[Flip], list[Flip]]:
    """(right → wrong, wrong → right) between two runs, on the items both have."""
    ra = {r.item_id: r for r in a.results}
    worse, better = [], []
    for rb in b.results:
        x = ra.get(rb.item_id)
        if x is None:
            continue
        for metric, fa, fb, va, vb, exp in (
            ("code", x.code_ok, rb.code_ok, x.output.code, rb.output.code, rb.expected.get("code")),
            ("department", x.dept_ok, rb.dept_ok, x.output.department_id, rb.output.department_id, rb.expected.get("department_id")),
        ):
            if fa is None or fb is None or fa == fb:
                continue
            f = Flip(item_id=rb.item_id, metric=metric, a=va, b=vb, expected=exp, text=rb.text[:200])
            (worse if fa else better).append(f)
    return worse, better


def _short(text: str, n: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _md_escape(s: str | None) -> str:
    return (s or "").replace("|", "\\|")


# -- rendering ------------------------------------------------------------------------

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_env.filters["fmt"] = _fmt
_env.filters["short"] = _short

_CSS = """body{font-family:system-ui,'Noto Sans CJK SC','PingFang SC','Microsoft YaHei',sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;vertical-align:top}
th{background:#f3f3f3}.bad{color:#b00}.good{color:#070}code{background:#f6f6f6}img{max-width:100%}"""

RUN_HTML = _env.from_string("""<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>评测 {{ i.id }}</title>
<style>{{ css }}</style></head><body>
<h1>评测运行 {{ i.id }}</h1>
<table>
<tr><th>套件</th><td>{{ i.suite }}（{{ i.task }}）</td><th>后端</th><td>{{ i.backend }}{% if i.model %} / {{ i.model }}{% endif %}</td></tr>
<tr><th>时间</th><td>{{ i.created_at }}</td><th>代码版本</th><td><code>{{ i.git_commit or '—' }}</code></td></tr>
<tr><th>数据集</th><td>{{ i.datasets|join(', ') }}<br><code>{{ i.dataset_sha256[:16] }}</code></td><th>提示词 / 规则版本</th><td><code>{{ i.prompt_version }}</code> / <code>{{ i.rules_version }}</code></td></tr>
<tr><th>条目</th><td>{{ i.items }}{% if i.item_limit %}（--limit {{ i.item_limit }}）{% endif %}</td><th>耗时</th><td>{{ '%.1f'|format(i.seconds) }} 秒，tokens {{ i.prompt_tokens }} + {{ i.completion_tokens }}</td></tr>
</table>
<h2>指标</h2>
<table><tr><th>指标</th><th>说明</th><th>值</th><th>阈值</th></tr>
{% for m, v in i.metrics.items() %}<tr><td><code>{{ m }}</code></td><td>{{ labels.get(m, '') }}</td><td>{{ v|fmt }}</td><td>{{ thresholds.get(m, '') }}</td></tr>{% endfor %}
</table>
<img alt="metrics" src="data:image/png;base64,{{ plots.metrics }}">
<h2>按标签（top-1）</h2>
<table><tr><th>标签</th><th>条目</th><th>top-1</th></tr>
{% for t, (n, v) in tags.items() %}<tr><td>{{ t }}</td><td>{{ n }}</td><td>{{ v|fmt }}</td></tr>{% endfor %}</table>
<h2>混淆矩阵（最常见类别）</h2>
<img alt="confusion" src="data:image/png;base64,{{ plots.confusion }}">
<h2>每条耗时</h2>
<img alt="latency" src="data:image/png;base64,{{ plots.latency }}">
<h2>最差的失败（前 {{ worst|length }} 条）</h2>
<table><tr><th>编号</th><th>原文</th><th>期望</th><th>输出</th></tr>
{% for r in worst %}<tr><td>{{ r.item_id }}<br>{{ r.tags|join(' ') }}</td><td>{{ r.text|short(300) }}</td>
<td>类别 {{ r.expected.code or '（非城市管理）' }}{% if r.expected.alternatives %}（或 {{ r.expected.alternatives|join('/') }}）{% endif %}<br>部门 {{ r.expected.department_id or '—' }}<br>{{ r.expected.urgency or '' }}</td>
<td class="{{ 'good' if r.code_ok else 'bad' }}">类别 {{ r.output.code or '（拒答）' }} {{ r.output.name or '' }}（{{ r.output.confidence|fmt }}，{{ r.output.policy }}）<br>候选 {{ r.output.candidates[:3]|join(', ') }}<br>
<span class="{{ 'good' if r.dept_ok else 'bad' }}">部门 {{ r.output.department_id or '—' }}</span>；{{ r.output.urgency or '' }}{% if r.output.error %}<br>错误：{{ r.output.error }}{% endif %}</td></tr>{% endfor %}
</table></body></html>""")

COMPARE_HTML = _env.from_string("""<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>对比 {{ a.id }} vs {{ b.id }}</title>
<style>{{ css }}</style></head><body>
<h1>评测对比</h1>
<table><tr><th></th><th>A</th><th>B</th></tr>
{% for k in ['id','suite','backend','model','git_commit','dataset_sha256','prompt_version','rules_version','items','seconds'] %}
<tr><th>{{ k }}</th><td>{{ a[k] }}</td><td>{{ b[k] }}</td></tr>{% endfor %}</table>
{% if a.dataset_sha256 != b.dataset_sha256 %}<p class="bad">注意：两次运行的数据集版本不同，只比较共同条目。</p>{% endif %}
<h2>指标变化</h2>
<table><tr><th>指标</th><th>A</th><th>B</th><th>变化</th></tr>
{% for m, va, vb, d in deltas %}<tr><td><code>{{ m }}</code> {{ labels.get(m, '') }}</td><td>{{ va|fmt }}</td><td>{{ vb|fmt }}</td>
<td class="{{ 'bad' if d is not none and d < 0 else 'good' if d else '' }}">{{ '—' if d is none else '%+.3f'|format(d) }}</td></tr>{% endfor %}</table>
<img alt="metrics" src="data:image/png;base64,{{ plot }}">
{% for title, rows in [('由对变错', worse), ('由错变对', better)] %}
<h2>{{ title }}（{{ rows|length }}）</h2>
<table><tr><th>编号</th><th>项</th><th>期望</th><th>A</th><th>B</th><th>原文</th></tr>
{% for f in rows %}<tr><td>{{ f.item_id }}</td><td>{{ f.metric }}</td><td>{{ f.expected or '—' }}</td><td>{{ f.a or '—' }}</td><td>{{ f.b or '—' }}</td><td>{{ f.text|short }}</td></tr>{% endfor %}
</table>{% endfor %}
</body></html>""")


def run_markdown(run: Run, thresholds: dict | None = None) -> str:
    i, thresholds = run.info, thresholds or {}
    lines = [f"# 评测运行 {i.id}", "",
             f"- 套件：{i.suite}（{i.task}）；后端：{i.backend}{' / ' + i.model if i.model else ''}",
             f"- 时间：{i.created_at:%Y-%m-%d %H:%M:%S} UTC；代码：`{i.git_commit or '—'}`",
             f"- 数据集：{', '.join(i.datasets)}（sha256 `{i.dataset_sha256[:16]}`）；提示词 `{i.prompt_version}`；规则 `{i.rules_version}`",
             f"- 条目：{i.items}{f'（--limit {i.item_limit}）' if i.item_limit else ''}；耗时 {i.seconds:.1f} 秒；tokens {i.prompt_tokens} + {i.completion_tokens}",
             "", "## 指标", "", "| 指标 | 说明 | 值 | 阈值 |", "|---|---|---|---|"]
    lines += [f"| `{m}` | {LABELS.get(m, '')} | {_fmt(v)} | {thresholds.get(m, '')} |" for m, v in i.metrics.items()]
    lines += ["", "## 按标签（top-1）", "", "| 标签 | 条目 | top-1 |", "|---|---|---|"]
    lines += [f"| {t} | {n} | {_fmt(v)} |" for t, (n, v) in by_tag(run.results).items()]
    worst = failures(run.results)
    lines += ["", f"## 最差的失败（前 {len(worst)} 条）", "", "| 编号 | 原文 | 期望 | 输出 |", "|---|---|---|---|"]
    for r in worst:
        e, o = r.expected, r.output
        lines.append(f"| {r.item_id} | {_md_escape(_short(r.text))} | {e.get('code') or '（非城市管理）'} / {e.get('department_id') or '—'} / {e.get('urgency') or '—'} "
                     f"| {o.code or '（拒答）'} {_md_escape(o.name)} ({_fmt(o.confidence)}) / {o.department_id or '—'} / {o.urgency or '—'}"
                     f"{' 错误：' + _md_escape(o.error) if o.error else ''} |")
    return "\n".join(lines) + "\n"


def write_run_report(run: Run, thresholds: dict | None = None, folder: Path | None = None) -> Path:
    """Write ``report.md`` and ``report.html`` of a run; returns the HTML path."""
    folder = folder or reports_dir() / run.info.id
    folder.mkdir(parents=True, exist_ok=True)
    th = {k: ", ".join(f"{n} {v}" for n, v in t.model_dump(exclude_none=True).items()) for k, t in (thresholds or {}).items()}
    (folder / "report.md").write_text(run_markdown(run, th), encoding="utf-8")
    plots = {"metrics": plot_metrics({run.info.id: run.info.metrics}), "confusion": plot_confusion(run.results),
             "latency": plot_latency(run.results)}
    html = RUN_HTML.render(i=run.info, labels=LABELS, thresholds=th, plots=plots, tags=by_tag(run.results),
                           worst=failures(run.results), css=_CSS)
    path = folder / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def deltas(a: Run, b: Run) -> list[tuple[str, float | None, float | None, float | None]]:
    out = []
    for m in dict.fromkeys([*a.info.metrics, *b.info.metrics]):
        va, vb = a.info.metrics.get(m), b.info.metrics.get(m)
        out.append((m, va, vb, None if va is None or vb is None else vb - va))
    return out


def compare_markdown(a: Run, b: Run) -> str:
    worse, better = flips(a, b)
    lines = [f"# 评测对比：{a.info.id} → {b.info.id}", "",
             f"- A：{a.info.backend}{' / ' + a.info.model if a.info.model else ''}，代码 `{a.info.git_commit or '—'}`，{a.info.items} 条",
             f"- B：{b.info.backend}{' / ' + b.info.model if b.info.model else ''}，代码 `{b.info.git_commit or '—'}`，{b.info.items} 条"]
    if a.info.dataset_sha256 != b.info.dataset_sha256:
        lines.append("- 注意：两次运行的数据集版本不同，只比较共同条目。")
    lines += ["", "## 指标变化", "", "| 指标 | A | B | 变化 |", "|---|---|---|---|"]
    lines += [f"| `{m}` | {_fmt(va)} | {_fmt(vb)} | {'—' if d is None else f'{d:+.3f}'} |" for m, va, vb, d in deltas(a, b)]
    for title, rows in (("由对变错", worse), ("由错变对", better)):
        lines += ["", f"## {title}（{len(rows)}）", "", "| 编号 | 项 | 期望 | A | B | 原文 |", "|---|---|---|---|---|---|"]
        lines += [f"| {f.item_id} | {f.metric} | {f.expected or '—'} | {f.a or '—'} | {f.b or '—'} | {_md_escape(_short(f.text))} |" for f in rows]
    return "\n".join(lines) + "\n"


def write_compare_report(a: Run, b: Run, folder: Path | None = None) -> Path:
    folder = folder or reports_dir() / f"{a.info.id}-vs-{b.info.id}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(compare_markdown(a, b), encoding="utf-8")
    worse, better = flips(a, b)
    plot = plot_metrics({"A": a.info.metrics, "B": b.info.metrics})
    html = COMPARE_HTML.render(a=a.info.model_dump(), b=b.info.model_dump(), deltas=deltas(a, b), labels=LABELS,
                               worse=worse, better=better, plot=plot, css=_CSS)
    path = folder / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
