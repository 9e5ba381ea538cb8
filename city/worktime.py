"""The SLA clock: working calendars and deadlines (处置时限) in working time.

A case's time limit is a :class:`~city.catalogue.WorkDuration`:

- ``工作时``: N hours of working time, counted only inside the calendar's working
  periods on its workdays; a start outside working time starts counting at the
  next working period.
- ``工作日``: N × the calendar's working hours per day of working time (on
  ``standard``, 1工作日 = 8工作时): 1工作日 from Tuesday 10:00 is Wednesday
  10:00, from Friday 16:00 the next workday at 16:00.
- ``小时``: plain calendar hours, whatever the calendar.

A workday is a day of the calendar's weekdays, minus public holidays (放假) and
plus the official make-up working days (调休上班) when the calendar follows the
State Council arrangement. The arrangement is data (``calendars.yaml``) and
covers only the years listed there; other years fall back to the weekday rule,
and :meth:`WorkCalendar.covers` tells callers when to warn.

Working periods are wall-clock times in the city's time zone (China has no
daylight saving time). Every datetime given must be timezone-aware; results are
in the calendar's zone. Internally working time is an integer count of
microseconds since 2000-01-01, indexed per day, so ``add`` and
``working_time_between`` are a bisection and a few additions, however long the
limit.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from city.catalogue import WorkDuration
from city.errors import DataError, InvalidInput, NotFound

Status = Literal["正常", "即将超期", "已超期"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS: tuple[str, ...] = Weekday.__args__
_CN_WEEKDAYS = "一二三四五六日"
_US = 1_000_000  # microseconds per second
_ORIGIN = date(2000, 1, 1).toordinal()  # working time 0
_GROW = 3660  # days the index grows by when a date falls outside it

# -- the data file ------------------------------------------------------------------


def _day_range(v) -> tuple[date, date]:
    first, _, last = str(v).partition("..")
    days = []
    for s in (first.strip(), (last or first).strip()):
        try:
            days.append(date.fromisoformat(s))
        except ValueError:
            raise ValueError(f"{s!r} is not a date (YYYY-MM-DD)") from None
    return tuple(days)


def _ordered(v: tuple[date, date]) -> tuple[date, date]:
    if v[1] < v[0]:
        raise ValueError(f"range {v[0]}..{v[1]} ends before it starts")
    return v


DayRange = Annotated[tuple[date, date], BeforeValidator(_day_range), AfterValidator(_ordered)]
"""A date ``2026-10-01`` or an inclusive range ``2026-10-01..2026-10-07``."""


def _period(v):
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", v) if isinstance(v, str) else None
    if not m:
        raise ValueError(f"working period {v!r}: expected 'HH:MM-HH:MM', e.g. '08:30-12:00'")
    h1, m1, h2, m2 = map(int, m.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"working period {v!r}: not a time of day")
    start, end = (h1 * 60 + m1) * 60, (h2 * 60 + m2) * 60
    if end <= start:
        raise ValueError(f"working period {v!r} ends before it starts")
    return (start, end)


Period = Annotated[tuple[int, int], BeforeValidator(_period)]
"""``"08:30-12:00"``, parsed to seconds from midnight (``"24:00"`` ends the day)."""


class CalendarSpec(BaseModel):
    """One named calendar of ``calendars.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    workdays: list[Weekday] = Field(min_length=1)
    periods: list[Period] = Field(min_length=1)
    holidays: bool  # follow the State Council arrangement (放假 off, 调休 worked)

    @field_validator("workdays")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"weekday listed twice in {v}")
        return v

    @field_validator("periods")
    @classmethod
    def _sorted(cls, v: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for (_, end), (start, _) in zip(v, v[1:]):
            if start < end:
                raise ValueError(f"working periods must be sorted and not overlap: {_hhmm(start)} < {_hhmm(end)}")
        return v


class Holiday(BaseModel):
    """One holiday of a year's notice: its days off and its make-up working days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    off_days: list[DayRange] = Field(min_length=1)  # 放假
    makeup_days: list[date] = []  # 调休上班

    def days_off(self) -> list[date]:
        """The off days, ranges expanded."""
        return [date.fromordinal(o) for a, b in self.off_days for o in range(a.toordinal(), b.toordinal() + 1)]


class HolidayYear(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    notice: str = ""
    days: list[Holiday]


class CalendarFile(BaseModel):
    """The whole of ``calendars.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str
    default: str
    calendars: dict[str, CalendarSpec] = Field(min_length=1)
    holidays: dict[int, HolidayYear] = {}  # keyed by the year the notice is for

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.default not in self.calendars:
            raise ValueError(f"field default: {self.default!r} is not one of the calendars {sorted(self.calendars)}")
        seen: dict[date, str] = {}
        for year, arrangement in self.holidays.items():
            for i, h in enumerate(arrangement.days):
                for kind, days in (("off_days", h.days_off()), ("makeup_days", h.makeup_days)):
                    where = f"field holidays.{year}.days.{i}.{kind}"
                    for d in days:
                        if not (d.year == year or (d.year == year - 1 and d.month == 12)):
                            raise ValueError(f"{where}: {d} is outside the {year} arrangement")
                        if kind == "makeup_days" and d.weekday() < 5:
                            raise ValueError(f"{where}: {d} is a 周{_CN_WEEKDAYS[d.weekday()]}, not a weekend day to make up")
                        label = f"{'放假' if kind == 'off_days' else '调休上班'} ({h.name})"
                        if d in seen:
                            raise ValueError(f"{where}: {d} is both {seen[d]} and {label}")
                        seen[d] = label
        return self


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves dates as strings, so pydantic reports a bad one with its field."""


_Loader.yaml_implicit_resolvers = {
    ch: [r for r in rs if r[0] != "tag:yaml.org,2002:timestamp"] for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


# -- the clock ----------------------------------------------------------------------


class WorkCalendar:
    """A department's working calendar: which instants count as working time.

    Built by :func:`load_calendars`; ``off`` and ``work`` are the holiday and
    make-up days, ``years`` the years the arrangement covers (both ignored when
    ``spec.holidays`` is false).
    """

    def __init__(self, name: str, spec: CalendarSpec, tz: ZoneInfo, *, off=(), work=(), years=()):
        self.name, self.spec, self.tz = name, spec, tz
        self.observes_holidays = spec.holidays
        self._weekdays = frozenset(_WEEKDAYS.index(d) for d in spec.workdays)
        self._periods = [(s * _US, e * _US) for s, e in spec.periods]  # µs from local midnight
        self._day_us = sum(e - s for s, e in self._periods)  # working µs in a workday
        self._off = frozenset(off) if spec.holidays else frozenset()
        self._work = frozenset(work) if spec.holidays else frozenset()
        self._years = frozenset(years)
        # (base, cum): cum[i] is the working µs from _ORIGIN to the start of the day
        # with ordinal base + i; one tuple, replaced whole, so threads can share it
        self._index: tuple[int, list[int]] = (_ORIGIN, [0])

    def __repr__(self) -> str:
        periods = ",".join(f"{_hhmm(s // _US)}-{_hhmm(e // _US)}" for s, e in self._periods)
        return f"WorkCalendar({self.name!r}, {'/'.join(self.spec.workdays)} {periods}, {self.tz.key})"

    @property
    def day_hours(self) -> timedelta:
        """Working time in one workday: what 1工作日 stands for."""
        return timedelta(microseconds=self._day_us)

    # -- days -------------------------------------------------------------------

    def is_workday(self, day: date) -> bool:
        """Whether working time runs on ``day`` (a datetime is taken in the calendar's zone)."""
        if isinstance(day, datetime):
            day = self._local(day).date()
        if day in self._work:
            return True
        return day not in self._off and day.weekday() in self._weekdays

    def covers(self, day: date) -> bool:
        """False when ``day``'s year has no holiday data, so only the weekday rule applied.

        Always True for a calendar that works through public holidays.
        """
        if isinstance(day, datetime):
            day = self._local(day).date()
        return not self.observes_holidays or day.year in self._years

    # -- durations --------------------------------------------------------------

    def duration(self, limit: WorkDuration | str) -> timedelta:
        """The working time a limit stands for (calendar time for ``小时``)."""
        limit = _limit(limit)
        if limit.unit == "小时":
            return timedelta(hours=limit.value)
        return timedelta(microseconds=self._us(limit))

    def add(self, start: datetime, limit: WorkDuration | str) -> datetime:
        """The deadline: the first instant by which ``limit`` has run from ``start``."""
        limit = _limit(limit)
        start = self._local(start)
        if limit.unit == "小时":
            return (start.astimezone(timezone.utc) + timedelta(hours=limit.value)).astimezone(self.tz)
        return self._at(self._elapsed(start) + self._us(limit))

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time from ``a`` to ``b`` (negative when ``b`` is before ``a``)."""
        return timedelta(microseconds=self._elapsed(self._local(b)) - self._elapsed(self._local(a)))

    def remaining(self, deadline: datetime, now: datetime, *, limit: WorkDuration | str | None = None) -> timedelta:
        """Working time left until ``deadline``; negative once it has passed.

        Outside working time the clock stands still: a case due Friday 18:00
        has 0 left all weekend (use :meth:`status` for the overdue flag). With
        a ``小时`` ``limit`` the remaining time is calendar time.
        """
        if limit is not None and _limit(limit).unit == "小时":
            return self._local(deadline) - self._local(now)
        return self.working_time_between(now, deadline)

    def status(
        self,
        deadline: datetime,
        now: datetime,
        *,
        limit: WorkDuration | str | None = None,
        warn: timedelta = timedelta(hours=2),
        warn_fraction: float = 0.2,
    ) -> Status:
        """正常, 即将超期 or 已超期 at ``now``.

        已超期: ``now`` is after the deadline (in real time, so a case due
        Friday 18:00 is overdue on Saturday). 即将超期: less remaining time than
        ``warn_fraction`` of the case's ``limit`` when it is given (default
        20%: 48 min of 4工作时, 3.2 h of 2工作日), else less than ``warn``
        (default 2 working hours).
        """
        deadline, now = self._local(deadline), self._local(now)
        if now > deadline:
            return "已超期"
        threshold = self.duration(limit) * warn_fraction if limit is not None else warn
        return "即将超期" if self.remaining(deadline, now, limit=limit) < threshold else "正常"

    # -- internals --------------------------------------------------------------

    def _local(self, t: datetime) -> datetime:
        if not isinstance(t, datetime):
            raise InvalidInput(f"expected a datetime, got {t!r}")
        if t.tzinfo is None or t.utcoffset() is None:
            raise InvalidInput(f"{t.isoformat()}: naive datetime; give its time zone (e.g. +08:00)")
        return t.astimezone(self.tz)

    def _us(self, limit: WorkDuration) -> int:
        per = 3600 * _US if limit.unit == "工作时" else self._day_us
        return round(limit.value * per)

    def _day(self, ordinal: int) -> tuple[int, list[int]]:
        """A day's position in the index and the index, grown to hold the day."""
        base, cum = self._index
        if not 0 <= ordinal - base < len(cum) - 1:
            base, cum = self._index = self._build(min(ordinal - _GROW, base), max(ordinal + _GROW, base + len(cum) - 1))
        return ordinal - base, cum

    def _build(self, first: int, end: int) -> tuple[int, list[int]]:
        """Index the days with ordinals first..end-1 (and the origin, where working time is 0)."""
        first, end = min(first, _ORIGIN), max(end, _ORIGIN + 1)
        cum = [0]
        for o in range(first, end):
            cum.append(cum[-1] + (self._day_us if self.is_workday(date.fromordinal(o)) else 0))
        shift = cum[_ORIGIN - first]
        return first, [c - shift for c in cum]

    def _elapsed(self, t: datetime) -> int:
        """Working µs from the origin to ``t`` (a datetime in the calendar's zone)."""
        i, cum = self._day(t.toordinal())
        before = cum[i]
        if cum[i + 1] == before:  # not a workday
            return before
        us = (t.hour * 3600 + t.minute * 60 + t.second) * _US + t.microsecond
        for s, e in self._periods:
            if us <= s:
                break
            before += min(us, e) - s
        return before

    def _at(self, w: int) -> datetime:
        """The first instant at which working time since the origin reaches ``w``."""
        base, cum = self._index
        while w > cum[-1]:
            base, cum = self._index = self._build(base, base + len(cum) - 1 + _GROW)
        i = bisect_left(cum, w) - 1  # the day in which w is reached
        r = w - cum[i]
        for s, e in self._periods:
            if r <= e - s:
                break
            r -= e - s
        day = datetime.combine(date.fromordinal(base + i), time(), tzinfo=self.tz)
        return day + timedelta(microseconds=s + r)  # wall-clock arithmetic, as periods are


def _limit(limit: WorkDuration | str) -> WorkDuration:
    if isinstance(limit, WorkDuration):
        return limit
    try:
        return WorkDuration.model_validate(limit)
    except ValidationError as e:
        raise InvalidInput(e.errors()[0]["msg"].removeprefix("Value error, ")) from None


class Calendars:
    """The calendars of ``calendars.yaml`` by name, with the city's time zone."""

    def __init__(self, calendars: dict[str, WorkCalendar], default: str, tz: ZoneInfo, years: frozenset[int], source: Path | None = None):
        self._calendars, self.default_name, self.tz, self.years, self.source = calendars, default, tz, years, source

    def __getitem__(self, name: str) -> WorkCalendar:
        try:
            return self._calendars[name]
        except KeyError:
            raise NotFound(f"no working calendar {name!r} (known: {', '.join(self._calendars)})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._calendars

    def __iter__(self):
        return iter(self._calendars)

    def __len__(self) -> int:
        return len(self._calendars)

    @property
    def default(self) -> WorkCalendar:
        return self._calendars[self.default_name]


def load_calendars(path: Path | str | None = None) -> Calendars:
    """Load and check ``calendars.yaml`` (default: the city data folder's); errors are DataError."""
    if path is None:
        from city.settings import city_data_dir

        path = city_data_dir() / "calendars.yaml"
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            raw = yaml.load(f, Loader=_Loader)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid UTF-8 YAML: {e}") from None
    try:
        data = CalendarFile.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise DataError(f"{path}: field {loc}: {msg}" if loc else f"{path}: {msg}") from None

    tz = ZoneInfo(data.timezone)
    holidays = [h for year in data.holidays.values() for h in year.days]
    off = {d for h in holidays for d in h.days_off()}
    work = {d for h in holidays for d in h.makeup_days}
    years = frozenset(data.holidays)
    calendars = {
        name: WorkCalendar(name, spec, tz, off=off, work=work, years=years) for name, spec in data.calendars.items()
    }
    return Calendars(calendars, data.default, tz, years, path)
