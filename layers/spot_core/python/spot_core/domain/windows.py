"""Scheduled on-demand windows: times a migration's instances run on-demand (a month-end close,
a release), each opened by a revert and closed by a return to Spot.

A window is two EventBridge Scheduler cron expressions in a time zone, written as Scheduler
takes them: ``cron(minutes hours day-of-month month day-of-week year)``. This module validates
them (a bad one is a clear error before anything is written) and tells when each fires next
(the status view, and the embedded runtime's scheduler, which fires them on its clock).
Supported: ``*``, ``?``, lists, ranges, ``/`` steps, month and day names, ``L`` (the last day of
the month; ``5L``: its last Thursday) and ``#`` (``2#1``: its first Monday). ``W`` is refused.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CRON = re.compile(r"^cron\((.+)\)\Z")
WINDOW_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,29}\Z")
MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}  # 1 = Sunday
SEARCH_DAYS = 366 * 5  # an expression that fires less often than this is taken as never firing
MAX_WINDOWS = 10
WindowAction = Literal["open", "close"]


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class _Field:
    """The values one field allows, plus the day-of-month and day-of-week specials."""

    values: frozenset[int]
    any: bool = False  # "*" or "?"
    last: bool = False  # day-of-month "L"
    last_weekday: int | None = None  # day-of-week "5L": the month's last Thursday
    nth: tuple[int, int] | None = None  # day-of-week "2#1": (weekday, n)


def _number(text: str, names: dict[str, int], low: int, high: int, what: str) -> int:
    value = names.get(text.upper()) if not text.isdigit() else int(text)
    if value is None or not low <= value <= high:
        raise CronError(f"{what}: {text!r} is not a value between {low} and {high}")
    return value


def _part(part: str, names: dict[str, int], low: int, high: int, what: str) -> set[int]:
    """One comma-separated part: a value, a range, `*`, each optionally with a /step."""
    base, slash, step_text = part.partition("/")
    if slash and not step_text:
        raise CronError(f"{what}: {part!r} has a '/' without a step")
    step = _number(step_text, {}, 1, high, f"{what} step") if step_text else 1
    if base == "*":
        first, last = low, high
    elif "-" in base:
        a, b = base.split("-", 1)
        first, last = _number(a, names, low, high, what), _number(b, names, low, high, what)
        if first > last:
            raise CronError(f"{what}: range {base!r} runs backwards")
    else:
        first = _number(base, names, low, high, what)
        last = high if step_text else first
    return set(range(first, last + 1, step))


def _field(text: str, names: dict[str, int], low: int, high: int, what: str) -> _Field:
    if text == "?" and what not in ("day-of-month", "day-of-week"):
        raise CronError(f"{what}: '?' is only for day-of-month or day-of-week")
    if text in ("*", "?"):
        return _Field(frozenset(range(low, high + 1)), any=True)
    if "W" in text.upper() and what == "day-of-month":
        raise CronError("day-of-month: W (nearest weekday) is not supported; name the days")
    values: set[int] = set()
    for part in text.split(","):
        values |= _part(part, names, low, high, what)
    return _Field(frozenset(values))


def _day_of_month(text: str) -> _Field:
    return _Field(frozenset(), last=True) if text.upper() == "L" else _field(text, {}, 1, 31, "day-of-month")


def _day_of_week(text: str) -> _Field:
    upper = text.upper()
    if upper.endswith("L") and len(upper) > 1:
        return _Field(frozenset(), last_weekday=_number(upper[:-1], DAYS, 1, 7, "day-of-week"))
    if "#" in upper:
        day, n = upper.split("#", 1)
        return _Field(frozenset(), nth=(_number(day, DAYS, 1, 7, "day-of-week"), _number(n, {}, 1, 5, "day-of-week #")))
    return _field(text, DAYS, 1, 7, "day-of-week")


@dataclass(frozen=True)
class Cron:
    """A parsed Scheduler cron expression."""

    minutes: _Field
    hours: _Field
    days: _Field
    months: _Field
    weekdays: _Field
    years: _Field

    @classmethod
    def parse(cls, expression: str) -> Cron:
        match = CRON.match(expression.strip())
        if not match:
            raise CronError(f"{expression!r} is not a cron(...) expression")
        fields = match.group(1).split()
        if len(fields) != 6:
            raise CronError("cron(...) takes 6 fields: minutes hours day-of-month month day-of-week year")
        minute, hour, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            raise CronError("exactly one of day-of-month and day-of-week is '?'")
        return cls(minutes=_field(minute, {}, 0, 59, "minutes"), hours=_field(hour, {}, 0, 23, "hours"),
                   days=_day_of_month(dom), months=_field(month, MONTHS, 1, 12, "month"),
                   weekdays=_day_of_week(dow), years=_field(year, {}, 1970, 2199, "year"))

    def on(self, day: date) -> bool:
        """Whether the expression fires on this calendar day."""
        if day.year not in self.years.values or day.month not in self.months.values:
            return False
        return self._day_matches(day) and self._weekday_matches(day)

    def _day_matches(self, day: date) -> bool:
        if self.days.last:
            return day.day == calendar.monthrange(day.year, day.month)[1]
        return day.day in self.days.values

    def _weekday_matches(self, day: date) -> bool:
        weekday = (day.isoweekday() % 7) + 1  # Sunday = 1
        w = self.weekdays
        if w.last_weekday is not None:
            return weekday == w.last_weekday and day.day + 7 > calendar.monthrange(day.year, day.month)[1]
        if w.nth is not None:
            return weekday == w.nth[0] and (day.day - 1) // 7 + 1 == w.nth[1]
        return weekday in w.values

    def next_after(self, moment: datetime, zone: ZoneInfo) -> datetime | None:
        """The first time after `moment` it fires, in UTC (None if not within SEARCH_DAYS)."""
        local = moment.astimezone(zone)
        for offset in range(SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            if not self.on(day):
                continue
            fires = self._first_on(day, zone, moment)
            if fires is not None:
                return fires
        return None

    def _first_on(self, day: date, zone: ZoneInfo, moment: datetime) -> datetime | None:
        """The day's first time after `moment` that exists there (Scheduler skips the hour a
        daylight-saving change leaves out)."""
        for hour in sorted(self.hours.values):
            for minute in sorted(self.minutes.values):
                fires = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                exists = fires.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == fires.replace(tzinfo=None)
                if exists and fires > moment:
                    return fires.astimezone(UTC)
        return None


def check_cron(expression: str) -> str:
    Cron.parse(expression)
    return expression.strip()


def zone_of(name: str) -> ZoneInfo:
    if name not in available_timezones() and name != "UTC":
        raise ValueError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris)")
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        raise ValueError(f"unknown time zone {name!r}") from None


class OnDemandWindow(BaseModel):
    """A recurring time during which the migration's instances run on-demand."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="1-30 lowercase letters, digits or '-': names the window's schedules")
    start: str = Field(description="when it opens: an EventBridge Scheduler cron(...) expression")
    end: str = Field(description="when it closes (back to Spot): a cron(...) expression")
    timezone: str = Field("UTC", description="the IANA time zone of both expressions (e.g. Europe/Paris)")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not WINDOW_NAME.match(name):
            raise ValueError("a window name is 1-30 lowercase letters, digits or '-', starting with a letter or digit")
        return name

    @field_validator("start", "end")
    @classmethod
    def _cron(cls, expression: str) -> str:
        try:
            return check_cron(expression)
        except CronError as bad:
            raise ValueError(str(bad)) from None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        zone_of(name)
        return name

    @model_validator(mode="after")
    def _fires(self) -> OnDemandWindow:
        if self.start == self.end:
            raise ValueError("a window's start and end differ")
        now = datetime.now(UTC)
        for side in ("start", "end"):
            if self.next(side, now) is None:
                raise ValueError(f"{side}: {getattr(self, side)!r} never fires in the next five years")
        return self

    def expression(self, action: WindowAction) -> str:
        return self.start if action == "open" else self.end

    def next(self, side: str, after: datetime) -> datetime | None:
        return Cron.parse(getattr(self, side)).next_after(after, zone_of(self.timezone))

    def is_open(self, now: datetime) -> bool:
        """Inside the window: its next close comes before its next opening."""
        opens, closes = self.next("start", now), self.next("end", now)
        return closes is not None and (opens is None or closes < opens)


def check_windows(windows: list[OnDemandWindow]) -> list[OnDemandWindow]:
    names = [w.name for w in windows]
    if len(set(names)) != len(names):
        raise ValueError("window names must be unique")
    return windows


def schedule_name(migration_id: str, window: str, action: WindowAction) -> str:
    """The Scheduler schedule of one side of a window (at most 64 characters, unique per migration)."""
    digest = hashlib.sha256(migration_id.encode()).hexdigest()[:6]
    return f"{migration_id[:20]}-{digest}-{window}-{action}"
