"""Shared CLI plumbing: global options, the store, time parsing, rendering."""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rich.console import Console

from city.bundle import CityData, load_city
from city.errors import InvalidInput

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@dataclass
class _State:
    db_url: str | None = None
    city_data: str | None = None


state = _State()


def city() -> CityData:
    return load_city(state.city_data)


def store():
    from city.store import Store

    return Store(state.db_url, city())


def actor(value: str | None) -> str:
    return value or os.environ.get("XUNJIAN_USER") or getpass.getuser()


def tz() -> ZoneInfo:
    return city().calendars.tz


def parse_time(text: str | None) -> datetime | None:
    """ISO 8601; a time without zone is taken in the city's time zone."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"time {text!r}: expected ISO 8601, e.g. 2026-11-23T09:30 or 2026-11-23T09:30+08:00") from None
    return t if t.tzinfo else t.replace(tzinfo=tz())


def fmt_time(t: datetime | None) -> str:
    return t.astimezone(tz()).strftime("%Y-%m-%d %H:%M") if t else "—"


def fmt_span(d: timedelta) -> str:
    sign = "-" if d < timedelta(0) else ""
    minutes = int(abs(d).total_seconds() // 60)
    return f"{sign}{minutes // 60}h{minutes % 60:02d}m"


def print_json(obj) -> None:
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    elif isinstance(obj, list):
        obj = [o.model_dump(mode="json") if hasattr(o, "model_dump") else o for o in obj]
    print(json.dumps(obj, ensure_ascii=False, indent=2))
