"""``xunjian ingest``, ``xunjian observations …`` and ``xunjian vision …``:
footage batches in, observations out; training, validating and exporting
detectors (wrapping Ultralytics)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from app.cli.common import err, fmt_time, out, print_json, store

obs_app = typer.Typer(help="观测：视频批次里发现的问题（每个物理问题一条）。", no_args_is_help=True)
vision_app = typer.Typer(help="视觉模型：合成数据、训练、验证、导出 ONNX。", no_args_is_help=True)

STATUS_ZH = {"done": "[green]完成[/]", "failed": "[red]失败[/]", "skipped": "[dim]已跳过（内容未变）[/]"}


class RichProgress:
    """A bar for the batch (files) and one for the current file (seconds of footage)."""

    def __init__(self, progress: Progress):
        self.p = progress
        self.batch = None
        self.file = None

    def batch_started(self, batch_id, files):
        self.batch = self.p.add_task(f"批次 {batch_id}", total=files)

    def file_started(self, name, seconds):
        if self.file is not None:
            self.p.remove_task(self.file)
        self.file = self.p.add_task(f"  {name}", total=max(seconds, 0.01))

    def file_advanced(self, t):
        if self.file is not None:
            self.p.update(self.file, completed=t)

    def file_finished(self, outcome):
        if self.file is not None:
            self.p.remove_task(self.file)
            self.file = None
        self.p.advance(self.batch)
        msg = f"{STATUS_ZH[outcome.status]} {outcome.path}"
        if outcome.status != "failed":
            msg += f"：{outcome.observations} 个问题"
        if outcome.error:
            msg += f"  [red]{outcome.error}[/]"
        self.p.console.print(msg, highlight=False)


def ingest(
    path: Path = typer.Argument(..., help="批次目录，或上传的 .zip/.tar 压缩包"),
    source: str = typer.Option(None, "--source", "-s", help="vehicle（车巡）| drone（机巡）；默认取清单，否则 vehicle"),
    batch: str = typer.Option(None, "--batch", help="批次号（默认：清单里的 batch，否则目录名+路径摘要）"),
    weights: Path = typer.Option(None, "--weights", "-w", help="检测模型 .pt/.onnx（旁边要有 card.yaml；默认内置演示模型）"),
    backend: str = typer.Option("auto", "--backend", help="auto（有 .onnx 就用 ONNX Runtime）| onnx | ultralytics"),
    conf: float = typer.Option(None, "--conf", help="检测置信度阈值（默认取模型卡的 conf）"),
    every_m: float = typer.Option(None, "--every-m", help="每行驶 N 米取一帧（默认车巡 2、机巡 3）"),
    every_s: float = typer.Option(None, "--every-s", help="另外每 N 秒取一帧"),
    tile: str = typer.Option("auto", "--tile", help="大画面切片推理：auto（无人机大图）| never | always"),
    plates: bool = typer.Option(False, "--plates", help="证据图同时模糊车牌（OpenCV 自带车牌级联，效果有限）"),
    allow_outside_china: bool = typer.Option(False, "--allow-outside-china", help="允许境外轨迹（样例素材）"),
    force: bool = typer.Option(False, "--force", help="重新处理已完成的文件"),
    out_dir: Path = typer.Option(None, "--out", help="输出目录（默认 $XUNJIAN_HOME/batches/<批次号>）"),
    as_json: bool = typer.Option(False, "--json", help="输出批次报告 JSON"),
    engine: str = typer.Option("local", "--engine", help="local（本进程逐个文件）| ray（Ray 集群并行，需 pip install 'xunjian\\[ray]'）"),
    address: str = typer.Option(None, "--address", help="Ray 集群地址（host:port 或 auto）；默认 $RAY_ADDRESS，否则在本机启动 Ray"),
    workers: int = typer.Option(None, "--workers", min=1, help="Ray：检测 actor 数（默认每个 CPU 一个，有 GPU 时每个 GPU 一个）"),
    segment_s: float = typer.Option(None, "--segment-s", min=0, help="长视频按此时长（秒）切段并行（0 不切；默认 Ray 120 s、本地整段）"),
    overlap_s: float = typer.Option(5.0, "--overlap-s", min=0, help="每段多读入下一段的秒数，用于把跨切点的目标接成一条"),
):
    """导入一个巡检视频批次：抽帧、检测、跟踪、定位，每个物理问题生成一条观测。"""
    from vision.ingest import DEFAULT_WEIGHTS, IngestOptions
    from vision.ingest import ingest as run

    if source not in (None, "vehicle", "drone"):
        raise typer.BadParameter("应为 vehicle 或 drone", param_hint="--source")
    if engine not in ("local", "ray"):
        raise typer.BadParameter("应为 local 或 ray", param_hint="--engine")
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise typer.BadParameter("需要先安装 Ray：pip install 'xunjian[ray]'", param_hint="--engine") from None
    elif address or workers:
        raise typer.BadParameter("--address/--workers 只用于 --engine ray", param_hint="--engine")
    opts = IngestOptions(source=source, batch=batch, weights=weights or DEFAULT_WEIGHTS, backend=backend, conf=conf,
                         every_m=every_m, every_s=every_s, tile=tile, plates=plates,
                         allow_outside_china=allow_outside_china, force=force, out=out_dir,
                         engine=engine, address=address, workers=workers, segment_s=segment_s, overlap_s=overlap_s)
    st = store()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False, disable=as_json) as p:
        report = run(path, st, opts, RichProgress(p))
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        return
    for note in report.notes:
        err.print(f"[yellow]注意[/]：{note}")
    done = sum(f.status != "failed" for f in report.files)
    n_obs = sum(f.observations for f in report.files)
    out.print(f"批次 [b]{report.batch_id}[/b]：{done}/{len(report.files)} 个文件完成，{n_obs} 条观测，"
              f"用时 {report.seconds:.1f} s；模型 {report.model}")
    out.print(f"输出：{report.out}/observations.geojson  （xunjian observations list --batch {report.batch_id}）")
    if report.failed:
        raise typer.Exit(3)


@obs_app.command("list")
def list_(
    batch: str = typer.Option(None, "--batch", "-b", help="批次号"),
    code: str = typer.Option(None, "--code", help="只看某个目录代码"),
    issues_only: bool = typer.Option(False, "--issues", help="只看属于问题的类别"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json | geojson"),
):
    """列出观测。"""
    from city.observations import feature_collection

    obs = store().observations(batch, code=code, issues_only=issues_only)
    if fmt == "json":
        print_json(obs)
        return
    if fmt == "geojson":
        print(json.dumps(feature_collection(obs), ensure_ascii=False, indent=2))
        return
    if fmt != "table":
        raise typer.BadParameter("应为 table、json 或 geojson", param_hint="--format")
    t = Table(title=f"观测（{len(obs)} 条）" + (f" 批次 {batch}" if batch else ""))
    for col in ("编号", "文件", "类别", "代码", "置信度", "帧数", "位置", "误差", "时间", "案卷"):
        t.add_column(col)
    for o in obs:
        t.add_row(o.id.rsplit(":", 1)[-1], o.file, f"{o.label_zh or o.class_name}", o.code or "—", f"{o.confidence:.2f}",
                  str(o.frames), f"{o.lat:.6f},{o.lon:.6f}", f"±{o.error_m:.0f} m",
                  f"{o.first_t:.1f}–{o.last_t:.1f} s", o.case_number or "—")
    out.print(t)


@obs_app.command("show")
def show(obs_id: str = typer.Argument(..., help="观测 id（<批次>:<文件摘要>:<序号>）")):
    """显示一条观测的全部字段。"""
    print_json(store().observation(obs_id))


@obs_app.command("batches")
def batches():
    """列出批次及其文件状态。"""
    st = store()
    t = Table(title="批次")
    for col in ("批次", "来源", "平台", "完成文件", "观测", "更新时间", "目录"):
        t.add_column(col)
    for b, files, n in st.batches():
        t.add_row(b.id, b.source.value, b.platform_id or "—", str(files), str(n), fmt_time(b.updated_at), b.root)
    out.print(t)


@obs_app.command("files")
def files(batch: str = typer.Argument(..., help="批次号")):
    """一个批次里每个文件的处理结果（失败原因）。"""
    t = Table(title=f"批次 {batch} 的文件")
    for col in ("文件", "状态", "观测", "说明"):
        t.add_column(col)
    for f in store().batch_files(batch):
        t.add_row(f.path, STATUS_ZH[f.status], str(f.observations), f.error or "; ".join(f.stats.get("notes", [])[:2]))
    out.print(t)


@vision_app.command("synth")
def synth(
    out_dir: Path = typer.Argument(..., help="输出目录（YOLO 格式数据集）"),
    images: int = typer.Option(800, "--images", "-n", help="图片数"),
    seed: int = typer.Option(0, "--seed"),
    imgsz: int = typer.Option(448, "--imgsz"),
):
    """渲染合成巡检画面数据集（演示模型的训练数据）。"""
    from vision.synth.dataset import make_dataset

    data = make_dataset(out_dir, images, seed=seed, imgsz=imgsz)
    out.print(f"数据集：{data}")


@vision_app.command("demo-batch")
def demo_batch(out_dir: Path = typer.Argument(..., help="输出目录"), seed: int = typer.Option(0, "--seed")):
    """渲染演示巡检批次（车载视频 + GPX 轨迹 + 清单 + 真值）。"""
    from vision.synth.footage import make_demo_batch

    path = make_demo_batch(out_dir, seed=seed)
    out.print(f"演示批次：{path}")


@vision_app.command("train")
def train(
    data: Path = typer.Argument(..., help="数据集：YOLO（data.yaml 或 images/+labels/）或 Pascal VOC（Annotations/*.xml）"),
    model: str = typer.Option("yolo11n.yaml", "--model", help="模型结构 yaml（从头训练）或已有 .pt（微调）"),
    epochs: int = typer.Option(50, "--epochs"),
    imgsz: int = typer.Option(640, "--imgsz"),
    batch: int = typer.Option(16, "--batch"),
    device: str = typer.Option("cpu", "--device", help="cpu 或 GPU 编号，如 0"),
    out_dir: Path = typer.Option(Path("runs"), "--out"),
    name: str = typer.Option("train", "--name"),
    names: str = typer.Option(None, "--names", help="类别名，逗号分隔（YOLO 目录没有 data.yaml/classes.txt 时）"),
):
    """训练检测模型（封装 Ultralytics；VOC 先转换为 YOLO；没有验证集时按文件名哈希留出 15% 作验证）。"""
    from vision.train import train as run

    best = run(data, model=model, epochs=epochs, imgsz=imgsz, batch=batch, device=device, out=out_dir, name=name,
               names=[n.strip() for n in names.split(",") if n.strip()] if names else None)
    out.print(f"最佳权重：{best}")


@vision_app.command("val")
def val(
    weights: Path = typer.Argument(...),
    data: Path = typer.Argument(..., help="数据集 data.yaml"),
    imgsz: int = typer.Option(None, "--imgsz"),
    split: str = typer.Option("val", "--split"),
):
    """在数据集上验证：mAP50、mAP50-95、精确率、召回率、F1。"""
    from vision.train import validate

    m = validate(weights, data, imgsz=imgsz, split=split)
    print(json.dumps(m, ensure_ascii=False, indent=2))


@vision_app.command("export")
def export(
    weights: Path = typer.Argument(..., help=".pt 权重"),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="导出 ONNX（ONNX Runtime 快速路径）"),
    imgsz: int = typer.Option(None, "--imgsz"),
):
    """导出 ONNX，并更新模型卡。"""
    from vision.train import export_onnx

    if not onnx:
        raise typer.BadParameter("目前只支持 --onnx")
    path = export_onnx(weights, imgsz=imgsz)
    out.print(f"ONNX：{path}")


@vision_app.command("card")
def card(weights: Path = typer.Argument(..., help=".pt/.onnx 权重或其目录")):
    """显示模型卡，并按城市目录检查类别代码。"""
    from app.cli.common import city
    from vision.modelcard import check_card, load_card, weights_names

    c = load_card(weights)
    wpath = c.weights_path("pt") or c.weights_path("onnx")
    check_card(c, city().catalogue, names=weights_names(wpath) if wpath and wpath.exists() else None)
    print_json(c)
    unmapped = [k.name for k in c.classes if not k.is_issue]
    if len(unmapped) == len(c.classes):
        err.print(f"[yellow]注意[/]：{c.path} 的类别都没有映射到目录代码（kind/code），导入的观测都不会成为案件；请先填写")
    elif unmapped:
        err.print(f"[dim]不作为问题上报的类别：{', '.join(unmapped)}[/]")
    err.print("[green]模型卡与目录一致[/]")
