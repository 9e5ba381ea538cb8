"""Reading the city's data files: YAML/CSV in, validated pydantic models out,
errors that name the file, the entry and the field."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml
from pydantic import ValidationError

from city.errors import DataError


def read_yaml(path: Path):
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.safe_load(f) or []
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid UTF-8 YAML: {e}") from None


def read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8: {e}") from None


def validate(model, data, where: str):
    """``model.model_validate(data)``, turning the first error into a one-line DataError."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise DataError(f"{where}: field {loc or '(entry)'}: {err['msg']}") from None
