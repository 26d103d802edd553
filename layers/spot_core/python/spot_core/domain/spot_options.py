"""What a replacement's Spot request says besides its pool: the most it may cost an hour (its max
price) and what EC2 does with it when it takes the capacity back (its interruption behaviour).

- **max price**: an absolute price (USD an hour, "0.05") or a share of the original's on-demand
  price ("80%"); none given, EC2's own default applies (the on-demand price). The plan resolves
  it to USD an hour once, from the on-demand price it analysed, and stores that on the record:
  pools whose Spot price is above it are not planned, and every Spot launch for the instance
  (the migration's, the interruption handler's) asks EC2 for no more (SpotOptions.MaxPrice).
- **interruption behaviour**: terminate (the default), stop or hibernate. A stateful move always
  stops (its disks must survive the interruption) or hibernates; hibernate needs an original
  launched with hibernation configured. Stop and hibernate need a persistent Spot request, which
  EC2 would start again after an interruption: the product cancels it when it replaces the instance.

The request sets both for every instance; the tags `spot-migration:spot-max-price` and
`spot-migration:interruption-behavior` override them per instance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import BaseModel, ConfigDict

from .carry import Exclusion, Mode
from .tags import INTERRUPTION_BEHAVIOR_TAG, MAX_PRICE_TAG

if TYPE_CHECKING:
    from .plan import Pool

InterruptionBehavior = Literal["terminate", "stop", "hibernate"]
INTERRUPTION_BEHAVIORS: tuple[InterruptionBehavior, ...] = get_args(InterruptionBehavior)
PERSISTENT_BEHAVIORS: tuple[InterruptionBehavior, ...] = ("stop", "hibernate")  # need a persistent Spot request
MIN_MAX_PRICE = 0.001  # USD an hour: EC2 refuses a lower max price (InvalidParameterValue)
MAX_PRICE_DECIMALS = 6
MAX_PRICE_RULE = f"a price in USD an hour of at least {MIN_MAX_PRICE} (e.g. \"0.05\") or a percentage of the " \
                 "on-demand price from 1% to 100% (e.g. \"80%\")"


class SpotTerms(BaseModel):
    """What one instance's Spot replacements are launched with, as its plan resolved it."""

    model_config = ConfigDict(frozen=True)

    interruption_behavior: InterruptionBehavior = "terminate"
    max_price: float | None = None  # USD an hour (None: EC2's default, the on-demand price)

    def stateful(self) -> SpotTerms:
        """The terms of a stateful move's Spot instance, whose disks must survive an interruption."""
        return self.model_copy(update={"interruption_behavior": keeping_disks(self.interruption_behavior)})


@dataclass(frozen=True)
class MaxPrice:
    """A max price as asked: `value` USD an hour, or `value` percent of the on-demand price."""

    value: float
    percent: bool = False

    def __str__(self) -> str:
        return f"{_decimal(self.value)}%" if self.percent else _decimal(self.value)

    def hourly(self, on_demand_hourly: float) -> float:
        """USD an hour, for an instance whose on-demand price is `on_demand_hourly`."""
        price = on_demand_hourly * self.value / 100 if self.percent else self.value
        return round(price, MAX_PRICE_DECIMALS)


def parse_max_price(value: object) -> MaxPrice:
    """A max price from the request or a tag: a positive number (or its text), or "N%" with N in
    [1, 100]; ValueError (naming the rule, not the value) otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be {MAX_PRICE_RULE}")
    text = str(value).strip()
    percent = text.endswith("%")
    number = _number(text.removesuffix("%").strip())
    if percent and number is not None and 1 <= number <= 100:
        return MaxPrice(number, percent=True)
    if not percent and number is not None and number >= MIN_MAX_PRICE:
        return MaxPrice(number)
    raise ValueError(f"must be {MAX_PRICE_RULE}")


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def requested_max_price(tags: Mapping[str, str], default: MaxPrice | None) -> MaxPrice | None | Exclusion:
    """The instance's tag wins over the request; a tag that is no max price is an exclusion."""
    value = tags.get(MAX_PRICE_TAG, "").strip()
    if not value:
        return default
    try:
        return parse_max_price(value)
    except ValueError as exc:
        return "invalid_max_price_tag", f"{MAX_PRICE_TAG}={tags[MAX_PRICE_TAG]!r}: {exc}"


def within_max_price(pools: Iterable[Pool], max_hourly: float | None) -> list[Pool]:
    """The pools whose Spot price is at most `max_hourly` (all of them without one), in order."""
    return [p for p in pools if max_hourly is None or p.spot_hourly <= max_hourly]


def above_max_price(pools: list[Pool], max_hourly: float, asked: MaxPrice) -> Exclusion:
    """Why an instance cannot move when every pool costs more than its max price."""
    cheapest = min(pools, key=lambda p: p.spot_hourly)
    asked_as = f" ({asked} of on-demand)" if asked.percent else ""
    return "above_max_price", (f"every Spot pool costs more than the max price of {ec2_max_price(max_hourly)} USD/h"
                               f"{asked_as}; the cheapest, {cheapest}, costs {cheapest.spot_hourly:g} USD/h")


def ec2_max_price(max_hourly: float) -> str:
    """SpotOptions.MaxPrice as EC2 takes it: a decimal string, no exponent."""
    return _decimal(max_hourly)


def _decimal(value: float) -> str:
    return f"{value:.{MAX_PRICE_DECIMALS}f}".rstrip("0").rstrip(".")


def requested_behavior(tags: Mapping[str, str], default: InterruptionBehavior) -> InterruptionBehavior | Exclusion:
    """The instance's tag wins over the request; a tag that names no behaviour is an exclusion."""
    value = tags.get(INTERRUPTION_BEHAVIOR_TAG, "").strip().lower()
    if not value:
        return default
    for behavior in INTERRUPTION_BEHAVIORS:
        if value == behavior:
            return behavior
    return "invalid_interruption_behavior_tag", (f"{INTERRUPTION_BEHAVIOR_TAG}={tags[INTERRUPTION_BEHAVIOR_TAG]!r} "
                                                 f"is not one of {', '.join(INTERRUPTION_BEHAVIORS)}")


def interruption_behavior(requested: InterruptionBehavior, mode: Mode,
                          hibernation: bool) -> InterruptionBehavior | Exclusion:
    """What EC2 does with the instance's Spot replacement when it interrupts it: as requested,
    but a stateful move keeps its disks (stop, unless it hibernates); hibernate only where the
    original was launched with hibernation configured (EC2 requires it of the replacement)."""
    if requested == "hibernate" and not hibernation:
        return "hibernation_not_configured", ("interruption behaviour hibernate needs an original launched with "
                                              "hibernation configured (HibernationOptions)")
    return keeping_disks(requested) if mode == "stateful" else requested


def keeping_disks(requested: InterruptionBehavior) -> InterruptionBehavior:
    """A stateful move's behaviour: its disks survive the interruption (stop, unless it hibernates)."""
    return requested if is_persistent(requested) else "stop"


def is_persistent(behavior: InterruptionBehavior) -> bool:
    """Whether the Spot request must be persistent (EC2 takes stop and hibernate only from one)."""
    return behavior in PERSISTENT_BEHAVIORS
