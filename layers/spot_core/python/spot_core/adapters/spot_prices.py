"""EC2 Spot price history: statistics per pool from DescribeSpotPriceHistory, and a warm cache.

Prices are per billing product: a RHEL or Windows instance pays its licence on Spot too, so
its pools are read under that product's Spot ``ProductDescription``, never as Linux/UNIX.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..domain.batching import chunks
from ..domain.pricing import LINUX, BillingProduct, SpotPriceStat, spot_price_statistics
from .aws import transient_errors

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

TYPES_BATCH = 100  # DescribeSpotPriceHistory takes 100 types a call


def spot_description(product: str) -> str | None:
    """The Spot ``ProductDescription`` whose prices apply to ``product`` (a billing product
    name); None when the product has no honest Spot price."""
    billing = BillingProduct.named(product)
    return billing.spot_description if billing.unsupported_reason is None else None


class Ec2SpotPrices:
    """Spot price statistics per pool from DescribeSpotPriceHistory: one paginated request per
    100 distinct types, so calls grow with pages and types, never with instances."""

    def __init__(self, ec2: EC2Client):
        self.ec2 = ec2

    def statistics(self, instance_types: Iterable[str], now: datetime, lookback_hours: float = 24,
                   product: str = LINUX) -> dict[tuple[str, str], SpotPriceStat]:
        history = self.history(instance_types, now, lookback_hours, product)
        return spot_price_statistics(history, now, lookback_hours)

    def history(self, instance_types: Iterable[str], now: datetime, lookback_hours: float,
                product: str = LINUX) -> list[dict[str, Any]]:
        """Raw history items of ``product``'s pools; none for a product without a Spot price."""
        description = spot_description(product)
        if description is None:
            return []
        paginator = self.ec2.get_paginator("describe_spot_price_history")
        items: list[dict[str, Any]] = []
        with transient_errors():
            for chunk in chunks(sorted(set(instance_types)), TYPES_BATCH):
                for page in paginator.paginate(InstanceTypes=chunk, ProductDescriptions=[description],  # type: ignore[arg-type]
                                               StartTime=now - timedelta(hours=lookback_hours), EndTime=now):
                    items.extend(page.get("SpotPriceHistory", []))  # type: ignore[arg-type]
        return items


class CachedSpotPrices:
    """Keeps statistics for `ttl_seconds` per set of types and billing product: a storm of
    interruption warnings for the same types in one warm execution environment reads them once."""

    def __init__(self, inner: Ec2SpotPrices, ttl_seconds: float = 300.0):
        self.inner, self.ttl = inner, ttl_seconds
        self._cache: dict[tuple[tuple[str, ...], float, str],
                          tuple[float, dict[tuple[str, str], SpotPriceStat]]] = {}

    def statistics(self, instance_types: Iterable[str], now: datetime, lookback_hours: float = 24,
                   product: str = LINUX) -> dict[tuple[str, str], SpotPriceStat]:
        key = (tuple(instance_types), lookback_hours, product)
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        stats = self.inner.statistics(key[0], now, lookback_hours, product)
        self._cache[key] = (time.monotonic(), stats)
        return stats
