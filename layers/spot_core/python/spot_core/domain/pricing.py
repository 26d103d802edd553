"""Prices: the monthly maths, the bundled on-demand catalog, and Spot price statistics.

On-demand prices come from the Price List API (adapters/pricing.py); the bundled catalog
(``data/on_demand_prices.json``, read-only reference data shipped with the layer) answers
when the API cannot. A Spot pool's price history is summarised by a time-weighted median,
which one short spike cannot move.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

HOURS_PER_MONTH = 730
_CATALOG = Path(__file__).parent / "data" / "on_demand_prices.json"


def monthly(hourly: float) -> float:
    return hourly * HOURS_PER_MONTH


# --- EBS: what a stopped original still costs ------------------------------------------
# USD per GiB-month (us-east-1 list prices; other regions differ by a few per cent). Provisioned
# IOPS and throughput are not counted: the estimate errs on the side of smaller savings only
# through the volume sizes it knows.
EBS_GIB_MONTH = {"gp3": 0.08, "gp2": 0.10, "io1": 0.125, "io2": 0.125, "st1": 0.045, "sc1": 0.015, "standard": 0.05}
EBS_UNKNOWN_TYPE_GIB_MONTH = 0.10


def storage_monthly(volumes: Iterable[tuple[str, int]]) -> float:
    """Monthly cost of EBS volumes, as (volume type, size in GiB)."""
    return round(sum(EBS_GIB_MONTH.get(kind, EBS_UNKNOWN_TYPE_GIB_MONTH) * size for kind, size in volumes), 2)


# --- on-demand -----------------------------------------------------------------------


@cache
def _catalog() -> dict[str, dict[str, float]]:
    prices: dict[str, dict[str, float]] = json.loads(_CATALOG.read_text())["prices"]
    return prices


def catalog_on_demand_price(instance_type: str, region: str) -> float | None:
    """Hourly USD on-demand price (Linux, shared tenancy) from the bundled catalog."""
    return _catalog().get(instance_type, {}).get(region)


# --- spot ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SpotPriceStat:
    instance_type: str
    availability_zone: str
    median: float  # time-weighted over the window
    p90: float  # time-weighted
    maximum: float
    samples: int  # prices in force during the window


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _weighted_quantile(weighted: list[tuple[float, float]], q: float) -> float:
    """Smallest price whose cumulative weight reaches ``q`` of the total."""
    ordered = sorted(weighted)
    threshold = q * sum(weight for _, weight in ordered)
    cumulative = 0.0
    for price, weight in ordered:
        cumulative += weight
        if cumulative >= threshold:
            return price
    return ordered[-1][0]


def _durations(points: list[tuple[datetime, float]], start: datetime, end: datetime) -> list[tuple[float, float]]:
    """(price, seconds in force within [start, end]) for each point, sorted by time."""
    ordered = sorted(points)
    held = []
    for i, (stamp, price) in enumerate(ordered):
        until = ordered[i + 1][0] if i + 1 < len(ordered) else end
        seconds = (min(until, end) - max(stamp, start)).total_seconds()
        if seconds > 0:
            held.append((price, seconds))
    return held


def spot_price_statistics(
    history_items: Iterable[Mapping[str, Any]], now: datetime, lookback_hours: float = 24
) -> dict[tuple[str, str], SpotPriceStat]:
    """Per (instance type, AZ): time-weighted median and p90, and the maximum, over the
    window ``[now - lookback_hours, now]``.

    Each price holds from its timestamp until the next one in its pool (the last until
    ``now``); a price set before the window start counts from the window start. A pool
    whose prices hold for no time in the window is weighted per sample instead.
    """
    now = _utc(now)
    start = now - timedelta(hours=lookback_hours)
    pools: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    for item in history_items:
        key = (item["InstanceType"], item["AvailabilityZone"])
        pools[key].append((_utc(item["Timestamp"]), float(item["SpotPrice"])))

    stats = {}
    for (instance_type, zone), points in pools.items():
        held = _durations(points, start, now) or [(price, 1.0) for _, price in points]
        stats[(instance_type, zone)] = SpotPriceStat(
            instance_type=instance_type,
            availability_zone=zone,
            median=_weighted_quantile(held, 0.5),
            p90=_weighted_quantile(held, 0.9),
            maximum=max(price for price, _ in held),
            samples=len(held),
        )
    return stats
