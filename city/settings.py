"""Where things live: the city data folder, the user's data directory, the database URL.

Environment variables (all optional):

- ``XUNJIAN_HOME``: the data directory (default: the platform's user data dir).
- ``XUNJIAN_DB_URL``: SQLAlchemy URL of the store (default: SQLite file in the data dir).
- ``XUNJIAN_CITY_DATA``: a folder with the city's data files (default: the bundled sample).
- ``XUNJIAN_DATASETS``: the shared real datasets (default: ``../shared/datasets`` next to the repo).

The city's time zone is city data (``calendars.yaml``), not a setting.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

BUNDLED_CITY_DATA = Path(__file__).parent / "data"


def home() -> Path:
    path = Path(os.environ.get("XUNJIAN_HOME") or platformdirs.user_data_dir("xunjian"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_url() -> str:
    return os.environ.get("XUNJIAN_DB_URL") or f"sqlite:///{home() / 'xunjian.db'}"


def city_data_dir() -> Path:
    return Path(os.environ.get("XUNJIAN_CITY_DATA") or BUNDLED_CITY_DATA)



def datasets_dir() -> Path:
    """The shared real datasets (never committed): ``XUNJIAN_DATASETS`` or ``../shared/datasets``."""
    return Path(os.environ.get("XUNJIAN_DATASETS") or Path(__file__).resolve().parents[2] / "shared" / "datasets")
