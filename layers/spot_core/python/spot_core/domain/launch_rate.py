"""How fast a migration may launch: a model of EC2's RunInstances resource token bucket.

EC2 lets an account launch a burst of instances at once and then a steady number a second
(https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html: 1,000 instances,
then 2 a second, by default). The wave engine launches as much as the model says is there,
and adapts when EC2 disagrees: other launches in the account share the bucket, and some
accounts have other limits. A RequestLimitExceeded empties the model and halves its rate
and the size of a launch; every launch EC2 accepts lets both grow back towards the default.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

LAUNCH_BURST = 1000  # instances EC2 lets an account launch at once
LAUNCH_REFILL_PER_SECOND = 2.0  # instances a second once the burst is spent
MIN_REFILL_PER_SECOND = 0.25  # the model never stops launching altogether
RECOVERY = 1.25  # rate growth after a throttle-free launch


class LaunchRate(BaseModel):
    """The model's state, kept on the migration between invocations (a few numbers)."""

    tokens: float = LAUNCH_BURST
    at: float | None = None  # epoch seconds of `tokens`
    per_second: float = LAUNCH_REFILL_PER_SECOND
    largest: int = LAUNCH_BURST  # the most instances one launch asks for

    def available(self, now: float) -> int:
        """Instances that may be launched now, in one call."""
        return min(self.largest, int(self._tokens(now)))

    def spend(self, launched: int, now: float) -> None:
        self.tokens, self.at = max(0.0, self._tokens(now) - launched), now
        self.per_second = min(LAUNCH_REFILL_PER_SECOND, self.per_second * RECOVERY)
        self.largest = min(LAUNCH_BURST, self.largest * 2)

    def throttled(self, asked: int, now: float) -> None:
        """EC2 said RequestLimitExceeded to a launch of `asked`: its bucket is emptier than the
        model, and fills slower."""
        self.tokens, self.at = 0.0, now
        self.per_second = max(MIN_REFILL_PER_SECOND, self.per_second / 2)
        self.largest = max(1, asked // 2)

    def seconds_until(self, instances: int, now: float) -> float:
        """How long until a launch of `instances` (or the largest one allowed) may start."""
        missing = min(instances, self.largest) - self._tokens(now)
        return 0.0 if missing <= 0 else math.ceil(missing / self.per_second)

    def _tokens(self, now: float) -> float:
        if self.at is None:
            return self.tokens
        return min(float(LAUNCH_BURST), self.tokens + max(0.0, now - self.at) * self.per_second)
