"""Window schedules: EventBridge Scheduler cron expressions, validated before anything is
written, and when each one fires next in its time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from spot_core.domain.errors import InvalidMigrationRequest
from spot_core.domain.request import parse_request
from spot_core.domain.windows import Cron, OnDemandWindow, schedule_name, zone_of

NOW = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("expression, zone, fires", [
    ("cron(0 18 L * ? *)", "Europe/Paris", "2026-12-31T17:00:00+00:00"),  # the last day, 18:00 in Paris
    ("cron(0 8 1 * ? *)", "Europe/Paris", "2027-01-01T07:00:00+00:00"),
    ("cron(0 9 ? * 2#1 *)", "UTC", "2026-12-07T09:00:00+00:00"),  # the first Monday
    ("cron(30 22 ? * 6L 2027)", "UTC", "2027-01-29T22:30:00+00:00"),  # the last Friday, in 2027 only
    ("cron(0/15 * * * ? *)", "UTC", "2026-12-02T00:15:00+00:00"),  # strictly after now
    ("cron(0 12 ? * MON-FRI *)", "America/New_York", "2026-12-02T17:00:00+00:00"),
    ("cron(0 2 29 2 ? *)", "UTC", "2028-02-29T02:00:00+00:00"),  # the next leap day
    ("cron(0 0 1 JAN,JUL ? *)", "UTC", "2027-01-01T00:00:00+00:00"),
])
def test_when_an_expression_fires_next(expression, zone, fires):
    assert Cron.parse(expression).next_after(NOW, zone_of(zone)).isoformat() == fires


@pytest.mark.parametrize("expression, message", [
    ("rate(5 minutes)", "not a cron"),
    ("cron(0 18 * *)", "6 fields"),
    ("cron(0 18 L * 2 *)", "exactly one of day-of-month and day-of-week"),
    ("cron(0 18 ? * ? *)", "exactly one of day-of-month and day-of-week"),
    ("cron(61 * * * ? *)", "minutes"),
    ("cron(0 24 * * ? *)", "hours"),
    ("cron(0 0 32 * ? *)", "day-of-month"),
    ("cron(0 0 ? FOO * *)", "month"),
    ("cron(0 0 ? * 8 *)", "day-of-week"),
    ("cron(0 0 ? * 2#6 *)", "day-of-week #"),
    ("cron(0 0 1W * ? *)", r"W \(nearest weekday\)"),
    ("cron(0 0 20-10 * ? *)", "runs backwards"),
    ("cron(0 0 1 * ? 1900)", "year"),
    ("cron(? 8 1 * ? *)", "only for day-of-month or day-of-week"),
    ("cron(0 8 1 ? * *)", "exactly one of day-of-month and day-of-week"),
    ("cron(5/ 8 1 * ? *)", "without a step"),
])
def test_a_bad_expression_is_refused_saying_why(expression, message):
    with pytest.raises(ValueError, match=message):
        OnDemandWindow(name="w", start=expression, end="cron(0 8 1 * ? *)")


def test_a_time_a_daylight_saving_change_leaves_out_does_not_fire_that_day():
    # 02:30 does not exist in Paris on 2027-03-28 (02:00 -> 03:00): Scheduler skips it
    fires = Cron.parse("cron(30 2 * * ? *)").next_after(datetime(2027, 3, 27, 12, tzinfo=UTC), zone_of("Europe/Paris"))
    assert fires.isoformat() == "2027-03-29T00:30:00+00:00"
    # and 02:30 on the night clocks go back (it exists twice) fires once, at the first
    fall = Cron.parse("cron(30 2 * * ? *)").next_after(datetime(2027, 10, 30, 12, tzinfo=UTC), zone_of("Europe/Paris"))
    assert fall.isoformat() == "2027-10-31T00:30:00+00:00"


def test_an_expression_that_never_fires_again_is_refused():
    with pytest.raises(ValidationError, match="never fires"):
        OnDemandWindow(name="w", start="cron(0 0 30 2 ? *)", end="cron(0 8 1 * ? *)")
    with pytest.raises(ValidationError, match="never fires"):
        OnDemandWindow(name="w", start="cron(0 0 1 1 ? 2020)", end="cron(0 8 1 * ? *)")


def test_a_window_is_open_between_its_start_and_its_end():
    window = OnDemandWindow(name="month-end", start="cron(0 18 L * ? *)", end="cron(0 8 2 * ? *)",
                            timezone="Europe/Paris")
    assert window.is_open(datetime(2026, 12, 1, 12, tzinfo=UTC))
    assert not window.is_open(datetime(2026, 12, 15, tzinfo=UTC))


@pytest.mark.parametrize("windows, field", [
    ([{"name": "Month End", "start": "cron(0 18 L * ? *)", "end": "cron(0 8 1 * ? *)"}], "windows.0.name"),
    ([{"name": "a", "start": "cron(0 18 L * ? *)", "end": "cron(0 18 L * ? *)"}], "windows.0"),
    ([{"name": "a", "start": "cron(0 18 L * ? *)", "end": "cron(0 8 1 * ? *)", "timezone": "Mars/Olympus"}],
     "windows.0.timezone"),
    ([{"name": "a", "start": "cron(0 18 L * ? *)"}], "windows.0.end"),
    ([{"name": "a", "start": "cron(0 18 L * ? *)", "end": "cron(0 8 1 * ? *)", "every": "day"}], "windows.0.every"),
    ([{"name": "a", "start": "cron(0 18 L * ? *)", "end": "cron(0 8 1 * ? *)"}] * 2, "windows"),
    ([{"name": f"w{i}", "start": "cron(0 18 L * ? *)", "end": "cron(0 8 1 * ? *)"} for i in range(11)], "windows"),
    ("month-end", "windows"),
])
def test_every_bad_window_is_a_clear_error_naming_the_field(windows, field):
    with pytest.raises(InvalidMigrationRequest, match=field.replace(".", r"\.")):
        parse_request({"windows": windows})


def test_a_revert_takes_no_windows():
    with pytest.raises(InvalidMigrationRequest, match="windows belong to the migration"):
        parse_request({"revert": {"migration_id": "mig-1"}, "windows": [
            {"name": "a", "start": "cron(0 18 L * ? *)", "end": "cron(0 8 1 * ? *)"}]})


def test_schedule_names_fit_scheduler_and_differ_per_migration():
    long_a, long_b = "m" * 79 + "a", "m" * 79 + "b"
    names = {schedule_name(m, "x" * 30, "close") for m in (long_a, long_b)}
    assert len(names) == 2 and all(len(n) <= 64 for n in names)
