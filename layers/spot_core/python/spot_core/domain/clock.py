"""Time, passed in: wall-clock time for records, monotonic time for deadlines, and sleeping
between polls. Services take a Clock, so tests run them on virtual time."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """How the product writes a moment: UTC, to the second."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


STEP_TIMEOUT = 300.0  # seconds to reach running / healthy / drained before giving up on a step
DEFAULT_REMAINING_MS = 900_000  # a Lambda function's longest run


@dataclass
class Budget:
    """The invocation's time left (monotonic); a chunk of work starts only with enough margin."""

    clock: Clock
    end: float
    margin: float = 120.0

    @classmethod
    def of(cls, clock: Clock, remaining_ms: int | None) -> Budget:
        remaining = DEFAULT_REMAINING_MS if remaining_ms is None else remaining_ms
        return cls(clock=clock, end=clock.monotonic() + remaining / 1000.0)

    def exhausted(self) -> bool:
        return self.clock.monotonic() >= self.end - self.margin

    def step_deadline(self) -> float:
        return min(self.clock.monotonic() + STEP_TIMEOUT, self.end - self.margin / 2)
