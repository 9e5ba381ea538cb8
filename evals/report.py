"""Reports of a run and of a comparison: Markdown and one self-contained HTML page.

A run's report: what was measured on what (data, prompt, rule and code
versions), the metrics against the suite's thresholds, the task's own tables
and plots (confusion matrix, PR curves, error histograms …), the latency
histogram, and the worst failures with their inputs and outputs. A comparison:
metric deltas (coloured by each metric's direction) and the items that flipped.
Plots are PNG embedded as base64 ``data:`` URIs (:mod:`evals.plots`), so the
HTML opens anywhere with no network and no side files. Files go to
``$XUNJIAN_HOME/evals/<run id>/report.{md,html}`` (``<a>-vs-<b>`` for a comparison).
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, select_autoescape
from pydantic import BaseModel

from city import settings
from evals.plots import histogram_png, metrics_png
from evals.results import Metric, Plot, ReportTable, Result
from evals.storage import Run
from evals.tasks import task_module

WORST = 25  # failures listed per report


def reports_dir() -> Path:
    return settings.home() / "evals"


def _metrics(task: str) -> dict[str, Metric]:
    return task_module(task).METRICS


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" if not unit else f"{v:.2f} {unit}"


def failures(results: list[Result], n: int = WORST) -> list[Result]:
    """The worst failures first (the task's ``badness``)."""
    return sorted((r for r in results if not r.ok or r.error), key=lambda r: (-r.badness, r.item_id))[:n]


class Flip(BaseModel):
    item_id: str
    a: str
    b: str
    expected: str
    text: str


def flips(a: Run, b: Run) -> tuple[list[Flip], list[Flip]]:
    """(right → wrong, wrong → right) between two runs, on the items both have."""
    ra = {r.item_id: r for r in a.results}
    worse, better = [], []
    for rb in b.results:
        x = ra.get(rb.item_id)
        if x is None or x.ok == rb.ok:
            continue
        f = Flip(item_id=rb.item_id, a=x.output_summary, b=rb.output_summary, expected=rb.expected_summary, text=rb.text[:200])
        (worse if x.ok else better).append(f)
    return worse, better


def deltas(a: Run, b: Run) -> list[tuple[str, float | None, float | None, float | None, bool | None]]:
    """(metric, A, B, B − A, better?) for every metric of either run."""
    known = _metrics(b.info.task)
    out = []
    for m in dict.fromkeys([*a.info.metrics, *b.info.metrics]):
        va, vb = a.info.metrics.get(m), b.info.metrics.get(m)
        d = None if va is None or vb is None else vb - va
        up = known[m].higher_is_better if m in known else True
        out.append((m, va, vb, d, None if not d else (d > 0) == up))
    return out


def _short(text: str, n: int = 120) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _md(s: str | None) -> str:
    return (s or "").replace("|", "\\|").replace("\n", " ")


def _task_parts(run: Run) -> tuple[list[ReportTable], list[Plot]]:
    task = task_module(run.info.task)
    tables = task.tables(run.results, run.extra) if hasattr(task, "tables") else []
    plots = task.plots(run.results, run.extra) if hasattr(task, "plots") and run.results else []
    return tables, plots


def _fraction_metrics(run_metrics: dict, known: dict[str, Metric]) -> list[str]:
    return [m for m, v in run_metrics.items() if v is not None and m in known and not known[m].unit]


# -- rendering ------------------------------------------------------------------------

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_env.filters["short"] = _short

_CSS = """body{font-family:system-ui,'Noto Sans CJK SC','PingFang SC','Microsoft YaHei',sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;vertical-align:top}
th{background:#f3f3f3}.bad{color:#b00}.good{color:#070}code{background:#f6f6f6}img{max-width:100%}"""

RUN_HTML = _env.from_string("""<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>评测 {{ i.id }}</title>
<style>{{ css }}</style></head><body>
<h1>评测运行 {{ i.id }}</h1>
<table>
<tr><th>套件</th><td>{{ i.suite }}（{{ i.task }}）</td><th>后端 / 模型</th><td>{{ i.backend }}{% if i.model %} / {{ i.model }}{% endif %}</td></tr>
<tr><th>时间</th><td>{{ i.created_at }}</td><th>代码版本</th><td><code>{{ i.git_commit or '—' }}</code></td></tr>
<tr><th>数据集</th><td>{{ i.datasets|join(', ') or '（生成）' }}<br><code>{{ i.dataset_sha256[:16] }}</code></td><th>提示词 / 规则版本</th><td><code>{{ i.prompt_version }}</code> / <code>{{ i.rules_version }}</code></td></tr>
<tr><th>条目</th><td>{{ i.items }}{% if i.item_limit %}（--limit {{ i.item_limit }}）{% endif %}</td><th>耗时</th><td>{{ '%.1f'|format(i.seconds) }} 秒，tokens {{ i.prompt_tokens }} + {{ i.completion_tokens }}，费用 {{ "—" if i.cost is none else i.cost ~ " 元" }}</td></tr>
</table>
{% for n in i.notes %}<p>注：{{ n }}</p>{% endfor %}
<h2>指标</h2>
<table><tr><th>指标</th><th>说明</th><th>本次（{{ i.backend }}）</th>{% if base %}<th>离线基线 {{ base.id }}</th>{% endif %}<th>阈值</th></tr>
{% for m, label, v, b, th in metrics %}<tr><td><code>{{ m }}</code></td><td>{{ label }}</td><td>{{ v }}</td>{% if base %}<td>{{ b }}</td>{% endif %}<td>{{ th }}</td></tr>{% endfor %}
</table>
{% if bars %}<img alt="metrics" src="data:image/png;base64,{{ bars }}">{% endif %}
{% for t in tables %}<h2>{{ t.title }}</h2>
<table><tr>{% for h in t.headers %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in t.rows %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</table>{% endfor %}
{% for p in plots %}<h2>{{ p.title }}</h2><img alt="{{ p.title }}" src="data:image/png;base64,{{ p.png_base64 }}">{% endfor %}
<h2>每条耗时</h2>
<img alt="latency" src="data:image/png;base64,{{ latency }}">
{% if tokens %}<h2>每条 tokens</h2><img alt="tokens" src="data:image/png;base64,{{ tokens }}">{% endif %}
<h2>最差的失败（前 {{ worst|length }} 条）</h2>
<table><tr><th>编号</th><th>输入</th><th>期望</th><th>输出</th></tr>
{% for r in worst %}<tr><td>{{ r.item_id }}<br>{{ r.tags|join(' ') }}</td><td>{{ r.text|short(300) }}</td>
<td>{{ r.expected_summary }}</td><td class="bad">{{ r.output_summary }}{% if r.error %}<br>错误：{{ r.error }}{% endif %}</td></tr>{% endfor %}
</table></body></html>""")

COMPARE_HTML = _env.from_string("""<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>对比 {{ a.id }} vs {{ b.id }}</title>
<style>{{ css }}</style></head><body>
<h1>评测对比</h1>
<table><tr><th></th><th>A</th><th>B</th></tr>
{% for k in ['id','suite','backend','model','git_commit','dataset_sha256','prompt_version','rules_version','items','seconds','prompt_tokens','completion_tokens'] %}
<tr><th>{{ k }}</th><td>{{ a[k] }}</td><td>{{ b[k] }}</td></tr>{% endfor %}</table>
{% if a.dataset_sha256 != b.dataset_sha256 %}<p class="bad">注意：两次运行的数据集版本不同，只比较共同条目。</p>{% endif %}
<h2>指标变化</h2>
<table><tr><th>指标</th><th>A</th><th>B</th><th>变化</th></tr>
{% for m, label, va, vb, d, better in deltas %}<tr><td><code>{{ m }}</code> {{ label }}</td><td>{{ va }}</td><td>{{ vb }}</td>
<td class="{{ '' if better is none else 'good' if better else 'bad' }}">{{ d }}</td></tr>{% endfor %}</table>
{% if bars %}<img alt="metrics" src="data:image/png;base64,{{ bars }}">{% endif %}
{% for title, rows in [('由对变错', worse), ('由错变对', better)] %}
<h2>{{ title }}（{{ rows|length }}）</h2>
<table><tr><th>编号</th><th>期望</th><th>A</th><th>B</th><th>输入</th></tr>
{% for f in rows %}<tr><td>{{ f.item_id }}</td><td>{{ f.expected }}</td><td>{{ f.a }}</td><td>{{ f.b }}</td><td>{{ f.text|short }}</td></tr>{% endfor %}
</table>{% endfor %}
</body></html>""")


def _threshold_text(thresholds: dict) -> dict[str, str]:
    return {k: ", ".join(f"{n} {v}" for n, v in t.model_dump(exclude_none=True).items()) for k, t in (thresholds or {}).items()}


def _metric_rows(run: Run, th: dict[str, str], base=None) -> list[tuple[str, str, str, str, str]]:
    """(metric, label, value, the offline baseline's value, threshold) rows."""
    known = _metrics(run.info.task)
    rows = []
    for m, v in run.info.metrics.items():
        unit = known[m].unit if m in known else ""
        b = fmt(base.metrics.get(m), unit) if base is not None else ""
        rows.append((m, known[m].label if m in known else "", fmt(v, unit), b, th.get(m, "")))
    return rows


def run_markdown(run: Run, thresholds: dict | None = None, baseline=None) -> str:
    i, th = run.info, _threshold_text(thresholds or {})
    lines = [f"# 评测运行 {i.id}", "",
             f"- 套件：{i.suite}（{i.task}）；后端：{i.backend}{' / ' + i.model if i.model else ''}",
             f"- 时间：{i.created_at:%Y-%m-%d %H:%M:%S} UTC；代码：`{i.git_commit or '—'}`",
             f"- 数据集：{', '.join(i.datasets) or '（生成）'}（sha256 `{i.dataset_sha256[:16]}`）；提示词 `{i.prompt_version}`；规则 `{i.rules_version}`",
             (f"- 条目：{i.items}{f'（--limit {i.item_limit}）' if i.item_limit else ''}；耗时 {i.seconds:.1f} 秒；"
             f"tokens {i.prompt_tokens} + {i.completion_tokens}；费用 {'—' if i.cost is None else f'{i.cost} 元'}"),
             *[f"- 注：{n}" for n in i.notes],
             "", "## 指标", ""]
    if baseline is not None:
        lines += [f"| 指标 | 说明 | 本次（{i.backend}） | 离线基线 {baseline.id} | 阈值 |", "|---|---|---|---|---|"]
        lines += [f"| `{m}` | {label} | {v} | {b} | {t} |" for m, label, v, b, t in _metric_rows(run, th, baseline)]
    else:
        lines += ["| 指标 | 说明 | 值 | 阈值 |", "|---|---|---|---|"]
        lines += [f"| `{m}` | {label} | {v} | {t} |" for m, label, v, _b, t in _metric_rows(run, th)]
    tables, _ = _task_parts(run)
    for t in tables:
        lines += ["", f"## {t.title}", "", "| " + " | ".join(t.headers) + " |", "|" + "---|" * len(t.headers)]
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in t.rows]
    worst = failures(run.results)
    lines += ["", f"## 最差的失败（前 {len(worst)} 条）", "", "| 编号 | 输入 | 期望 | 输出 |", "|---|---|---|---|"]
    lines += [f"| {r.item_id} | {_md(_short(r.text))} | {_md(r.expected_summary)} | {_md(r.output_summary)}"
              f"{' 错误：' + _md(r.error) if r.error else ''} |" for r in worst]
    return "\n".join(lines) + "\n"


def write_run_report(run: Run, thresholds: dict | None = None, folder: Path | None = None, baseline=None) -> Path:
    """Write ``report.md`` and ``report.html`` of a run; returns the HTML path.
    ``baseline`` (a :class:`RunInfo`, normally the suite's latest offline run) is
    shown beside the run's metrics."""
    folder = folder or reports_dir() / run.info.id
    folder.mkdir(parents=True, exist_ok=True)
    th = _threshold_text(thresholds or {})
    if baseline is not None and baseline.id == run.info.id:
        baseline = None
    (folder / "report.md").write_text(run_markdown(run, thresholds, baseline), encoding="utf-8")
    tables, plots = _task_parts(run)
    names = _fraction_metrics(run.info.metrics, _metrics(run.info.task))
    tokens = [r.prompt_tokens + r.completion_tokens for r in run.results]
    html = RUN_HTML.render(i=run.info, metrics=_metric_rows(run, th, baseline), base=baseline, tables=tables, plots=plots,
                           css=_CSS, tokens=histogram_png(tokens, "tokens per item") if any(tokens) else None,
                           bars=metrics_png({run.info.id: run.info.metrics}, names) if names else None,
                           latency=histogram_png([r.latency_ms for r in run.results] or [0.0], "latency per item (ms)"),
                           worst=failures(run.results))
    path = folder / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def _delta_rows(a: Run, b: Run):
    known = _metrics(b.info.task)
    rows = []
    for m, va, vb, d, better in deltas(a, b):
        unit = known[m].unit if m in known else ""
        rows.append((m, known[m].label if m in known else "", fmt(va, unit), fmt(vb, unit),
                     "—" if d is None else f"{d:+.3f}", better))
    return rows


def compare_markdown(a: Run, b: Run) -> str:
    worse, better = flips(a, b)
    lines = [f"# 评测对比：{a.info.id} → {b.info.id}", "",
             f"- A：{a.info.backend}{' / ' + a.info.model if a.info.model else ''}，代码 `{a.info.git_commit or '—'}`，{a.info.items} 条",
             f"- B：{b.info.backend}{' / ' + b.info.model if b.info.model else ''}，代码 `{b.info.git_commit or '—'}`，{b.info.items} 条"]
    if a.info.dataset_sha256 != b.info.dataset_sha256:
        lines.append("- 注意：两次运行的数据集版本不同，只比较共同条目。")
    lines += ["", "## 指标变化", "", "| 指标 | A | B | 变化 |", "|---|---|---|---|"]
    lines += [f"| `{m}` {label} | {va} | {vb} | {d}{'' if ok is None else ' ✓' if ok else ' ✗'} |"
              for m, label, va, vb, d, ok in _delta_rows(a, b)]
    for title, rows in (("由对变错", worse), ("由错变对", better)):
        lines += ["", f"## {title}（{len(rows)}）", "", "| 编号 | 期望 | A | B | 输入 |", "|---|---|---|---|---|"]
        lines += [f"| {f.item_id} | {_md(f.expected)} | {_md(f.a)} | {_md(f.b)} | {_md(_short(f.text))} |" for f in rows]
    return "\n".join(lines) + "\n"


def write_compare_report(a: Run, b: Run, folder: Path | None = None) -> Path:
    folder = folder or reports_dir() / f"{a.info.id}-vs-{b.info.id}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(compare_markdown(a, b), encoding="utf-8")
    worse, better = flips(a, b)
    names = _fraction_metrics({**a.info.metrics, **b.info.metrics}, _metrics(b.info.task))
    html = COMPARE_HTML.render(a=a.info.model_dump(), b=b.info.model_dump(), deltas=_delta_rows(a, b), worse=worse,
                               better=better, css=_CSS,
                               bars=metrics_png({"A": a.info.metrics, "B": b.info.metrics}, names) if names else None)
    path = folder / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
