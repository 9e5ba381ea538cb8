"""Model cards: the YAML file next to a detector's weights that says what it detects.

A card maps each class id of the weights to a catalogue entry (kind + code) or to
``None`` (detected but not an issue, e.g. an intact manhole cover), and records
the input size, metrics, training data with licences, and how to reproduce it.

- :func:`find_card` / :func:`load_card`: ``<stem>.card.yaml`` or ``card.yaml`` next to the weights.
- :func:`check_card`: every class's (kind, code) must be in the catalogue, and the
  classes must agree with the names stored in the weights (:func:`weights_names`).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from city.errors import DataError


class ModelCardError(DataError):
    """A model card is missing, malformed, or disagrees with the catalogue or the weights."""


class CardClass(BaseModel):
    """One detector class; ``kind``/``code`` None means "detected, but not an issue"."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=0)
    name: str = Field(min_length=1)
    label_zh: str = ""
    kind: Literal["部件", "事件"] | None = None
    code: str | None = Field(default=None, pattern=r"^\d{5}$")

    @model_validator(mode="after")
    def _kind_and_code(self):
        if (self.kind is None) != (self.code is None):
            raise ValueError("kind and code must both be set or both be null")
        return self

    @property
    def is_issue(self) -> bool:
        return self.code is not None


class CardWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pt: str | None = None
    onnx: str | None = None


class TrainingData(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    licence: str
    how: str | None = None
    url: str | None = None


class ModelCard(BaseModel):
    """What a detector's weights are: classes → catalogue codes, input size, provenance."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int | str = 1
    demo_grade: bool = False
    task: Literal["detect"] = "detect"
    input_size: int = Field(gt=0, multiple_of=32)
    conf: float = Field(default=0.35, gt=0, lt=1, description="the confidence threshold the ingest uses unless told otherwise")
    classes: list[CardClass] = Field(min_length=1)
    weights: CardWeights = CardWeights()
    metrics: dict = {}
    training_data: list[TrainingData] = []
    licence: str = ""
    reproduce: str = ""

    _path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _unique_ids(self):
        ids = [c.id for c in self.classes]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate class id(s) {dup}")
        return self

    @property
    def path(self) -> Path | None:
        """The YAML file this card was read from (None for a card built in code)."""
        return self._path

    @property
    def names(self) -> dict[int, str]:
        return {c.id: c.name for c in sorted(self.classes, key=lambda c: c.id)}

    def by_id(self, class_id: int) -> CardClass | None:
        return next((c for c in self.classes if c.id == int(class_id)), None)

    def weights_path(self, fmt: Literal["pt", "onnx"]) -> Path | None:
        """Absolute path of the card's ``weights.pt``/``weights.onnx`` (relative to the card's folder)."""
        rel = getattr(self.weights, fmt)
        if rel is None:
            return None
        p = Path(rel)
        return p if p.is_absolute() or self._path is None else self._path.parent / p

    def save(self, path: str | Path | None = None) -> Path:
        """Write the card as YAML (to ``path`` or where it was read from)."""
        path = Path(path) if path is not None else self._path
        if path is None:
            raise ModelCardError("模型卡未指定保存路径")
        data = self.model_dump(mode="json")
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        self._path = path
        return path


def card_candidates(weights_path: str | Path) -> list[Path]:
    """Where a card for these weights may live, most specific first."""
    p = Path(weights_path)
    if p.is_dir():
        return [p / "card.yaml"]
    return [p.with_name(f"{p.stem}.card.yaml"), p.parent / "card.yaml"]


def find_card(weights_path: str | Path) -> Path | None:
    return next((c for c in card_candidates(weights_path) if c.is_file()), None)


def read_card(card_file: str | Path) -> ModelCard:
    """Parse one card YAML file; errors name the file and the field."""
    card_file = Path(card_file)
    try:
        data = yaml.safe_load(card_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ModelCardError(f"模型卡 {card_file} 无法读取: {e}") from e
    if not isinstance(data, dict):
        raise ModelCardError(f"模型卡 {card_file} 应为 YAML 映射（name、classes、input_size 等字段）")
    try:
        card = ModelCard.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or '(根)'}: {err['msg']}" for err in e.errors()
        )
        raise ModelCardError(f"模型卡 {card_file} 字段有误: {problems}") from e
    card._path = card_file.resolve()
    return card


def load_card(weights_path: str | Path) -> ModelCard:
    """The card of these weights (``<stem>.card.yaml`` or ``card.yaml`` in the same folder).

    ``weights_path`` may also be the card file itself or the weights' folder.
    Raises :class:`ModelCardError` (in Chinese, naming the places looked at) when none exists.
    """
    p = Path(weights_path)
    if p.suffix in {".yaml", ".yml"} and p.is_file():
        return read_card(p)
    found = find_card(p)
    if found is None:
        looked = "、".join(str(c) for c in card_candidates(p))
        raise ModelCardError(
            f"找不到模型 {p} 的模型卡：已查找 {looked}。"
            "每个权重文件旁须有 card.yaml（或 <文件名>.card.yaml），写明类别对应的目录编码"
        )
    return read_card(found)


def weights_names(weights_path: str | Path) -> dict[int, str]:
    """The class names stored in the weights themselves (ONNX metadata, or the .pt checkpoint).

    Reading an ``.onnx`` needs only ``onnx``/``onnxruntime``; a ``.pt`` needs torch (slow import).
    """
    p = Path(weights_path)
    if p.suffix == ".onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        meta = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]).get_modelmeta()
        raw = meta.custom_metadata_map.get("names")
        if raw is None:
            raise ModelCardError(f"ONNX 模型 {p} 的元数据中没有类别名 names（不是 ultralytics 导出的？）")
        return {int(k): str(v) for k, v in ast.literal_eval(raw).items()}
    import torch

    ckpt = torch.load(p, map_location="cpu", weights_only=False)
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else ckpt
    names = getattr(model, "names", None)
    if names is None:
        raise ModelCardError(f"权重 {p} 中没有类别名 names")
    return dict(enumerate(names)) if isinstance(names, list) else {int(k): str(v) for k, v in names.items()}


def check_card(card: ModelCard | None, catalogue, *, names: dict[int, str] | None = None) -> None:
    """Refuse a card whose classes are not in the catalogue or disagree with the weights.

    ``catalogue`` is a :class:`city.catalogue.Catalogue`; every class with a code
    must be an entry ``(kind, code)``. ``names`` are the weights' own class names
    (:func:`weights_names`, or ``Detector.names``); when given, the card must list exactly
    those ids and names. A missing card (None) is refused too.
    Raises :class:`ModelCardError` listing every problem (in Chinese, naming the card file and field).
    """
    from city.catalogue import Kind

    if card is None:
        raise ModelCardError(
            "检测模型没有模型卡：权重旁须有 card.yaml（或 <文件名>.card.yaml），写明各类别对应的目录编码"
        )
    where = f"模型卡 {card.path}" if card.path else f"模型卡 {card.name}"
    problems: list[str] = []
    for i, c in enumerate(card.classes):
        if c.code is None:
            continue
        if (Kind(c.kind), c.code) not in catalogue:
            twin = Kind.PART if c.kind == Kind.EVENT.value else Kind.EVENT
            hint = f"（目录中有 {twin.value}:{c.code}，是否写错了 kind？）" if (twin, c.code) in catalogue else ""
            problems.append(f"classes[{i}] {c.name}: 目录中没有 {c.kind}:{c.code}{hint}")
    if names is not None:
        card_names = card.names
        if len(card_names) != len(names):
            problems.append(f"classes: 模型卡有 {len(card_names)} 个类别，权重有 {len(names)} 个 {names}")
        for cid in sorted(set(card_names) | set(names)):
            a, b = card_names.get(cid), names.get(cid)
            if a != b:
                problems.append(
                    f"classes id={cid}: 模型卡为 {a or '（缺）'}，权重为 {b or '（缺）'}"
                )
    if problems:
        raise ModelCardError(f"{where} 有 {len(problems)} 处错误: " + "; ".join(problems))
