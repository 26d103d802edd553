"""Prices: billing products, the monthly maths, the bundled on-demand catalog, and Spot
price statistics.

An instance is billed as the product of the image it was launched from (EC2's
``PlatformDetails``/``UsageOperation``): Linux/UNIX, or a licensed product such as RHEL or
Windows whose on-demand and Spot prices include the licence. On-demand prices come from the
Price List API (adapters/pricing.py); the bundled catalogs (``data/on_demand_prices.json``
and ``data/licensed_on_demand_prices.json``, read-only reference data shipped with the layer)
answer when the API cannot. A Spot pool's price history is summarised by a time-weighted
median, which one short spike cannot move.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

HOURS_PER_MONTH = 730
LINUX = "Linux/UNIX"  # the billing product (PlatformDetails) of an unlicensed Linux instance
_CATALOG = Path(__file__).parent / "data" / "on_demand_prices.json"
_LICENSED_CATALOG = Path(__file__).parent / "data" / "licensed_on_demand_prices.json"


def monthly(hourly: float) -> float:
    return hourly * HOURS_PER_MONTH


# --- billing products ------------------------------------------------------------------
# EC2 bills an instance as the product of its image: ``PlatformDetails`` names it and
# ``UsageOperation`` is its billing code (AWS EC2 User Guide, "AMI billing information
# fields"). Licensed products cost more on-demand and on Spot, so each is priced as itself.
RHEL = "Red Hat Enterprise Linux"
SUSE = "SUSE Linux"
WINDOWS = "Windows"
_LICENCE_INCLUDED = "No License required"  # Price List licenseModel of every licence-included SKU
_BYOL = "Bring your own license"
_SPOT_DESCRIPTIONS = (LINUX, RHEL, SUSE, WINDOWS)  # what DescribeSpotPriceHistory publishes
_WINDOWS_BYOL = (
    "Windows BYOL is not priced: Microsoft's licence terms put bring-your-own Windows Server on "
    "dedicated hardware (Dedicated Hosts), billed per host, and Spot offers no dedicated capacity"
)


@dataclass(frozen=True)
class BillingProduct:
    """One EC2 billing product: its name (``PlatformDetails``), billing code, the Spot
    ``ProductDescription`` whose prices apply to it, and its Price List terms.

    ``unsupported_reason`` says why the product cannot be priced honestly (no Spot price,
    dedicated-only licence, unknown product); such instances are left where they are.
    ``priced_as`` names the product whose compute prices apply (a BYOL Red Hat image is
    billed as Linux/UNIX: the subscription is the customer's and costs the same on Spot).
    """

    name: str
    usage_operation: str
    spot_description: str | None
    price_list_terms: Mapping[str, str] = field(hash=False)
    unsupported_reason: str | None = None
    priced_as: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "priced_as", self.priced_as or self.name)

    @property
    def licensed(self) -> bool:
        """Whether the price carries a licence fee on top of Linux/UNIX compute."""
        return self.priced_as != LINUX

    @classmethod
    def of(cls, platform_details: str | None, usage_operation: str | None, platform: str | None) -> BillingProduct:
        """The product EC2 reports for an instance (DescribeInstances ``PlatformDetails``,
        ``UsageOperation`` and ``Platform``); older responses carry only ``Platform``."""
        if platform_details:
            return _by_name(platform_details, usage_operation)
        if usage_operation:
            return _PRODUCT_BY_OPERATION.get(usage_operation) or _unknown(None, usage_operation)
        return _PRODUCTS[WINDOWS if (platform or "").lower() == "windows" else LINUX]

    @classmethod
    def named(cls, name: str) -> BillingProduct:
        """The product called ``name`` (a ``PlatformDetails`` value), as the price ports take it."""
        return _by_name(name, None)


def _terms(operating_system: str, software: str = "NA", licence: str = _LICENCE_INCLUDED) -> dict[str, str]:
    return {"operatingSystem": operating_system, "licenseModel": licence, "preInstalledSw": software}


def _product(name: str, usage_operation: str, terms: dict[str, str], spot: str | None = None,
             reason: str | None = None, priced_as: str = "") -> BillingProduct:
    if spot is None and reason is None:
        reason = (f"{name} is not priced: EC2 publishes no Spot price for it (DescribeSpotPriceHistory "
                  f"knows {', '.join(_SPOT_DESCRIPTIONS)} only)")
    return BillingProduct(name, usage_operation, spot, terms, reason, priced_as)


_PRODUCTS: dict[str, BillingProduct] = {p.name: p for p in (
    _product(LINUX, "RunInstances", _terms("Linux"), spot=LINUX),
    _product("Red Hat BYOL Linux", "RunInstances:00g0", _terms("Linux"), spot=LINUX, priced_as=LINUX),
    _product(RHEL, "RunInstances:0010", _terms("RHEL"), spot=RHEL),
    _product("Red Hat Enterprise Linux with HA", "RunInstances:1010", _terms("Red Hat Enterprise Linux with HA")),
    _product("Red Hat Enterprise Linux with SQL Server Standard and HA", "RunInstances:1014",
             _terms("Red Hat Enterprise Linux with HA", "SQL Std")),
    _product("Red Hat Enterprise Linux with SQL Server Enterprise and HA", "RunInstances:1110",
             _terms("Red Hat Enterprise Linux with HA", "SQL Ent")),
    _product("Red Hat Enterprise Linux with SQL Server Standard", "RunInstances:0014", _terms("RHEL", "SQL Std")),
    _product("Red Hat Enterprise Linux with SQL Server Web", "RunInstances:0210", _terms("RHEL", "SQL Web")),
    _product("Red Hat Enterprise Linux with SQL Server Enterprise", "RunInstances:0110", _terms("RHEL", "SQL Ent")),
    _product("SQL Server Enterprise", "RunInstances:0100", _terms("Linux", "SQL Ent")),
    _product("SQL Server Standard", "RunInstances:0004", _terms("Linux", "SQL Std")),
    _product("SQL Server Web", "RunInstances:0200", _terms("Linux", "SQL Web")),
    _product(SUSE, "RunInstances:000g", _terms("SUSE"), spot=SUSE),
    _product("Ubuntu Pro", "RunInstances:0g00", _terms("Ubuntu Pro")),
    _product(WINDOWS, "RunInstances:0002", _terms("Windows"), spot=WINDOWS),
    _product("Windows BYOL", "RunInstances:0800", _terms("Windows", licence=_BYOL), reason=_WINDOWS_BYOL),
    _product("Windows with SQL Server Enterprise", "RunInstances:0102", _terms("Windows", "SQL Ent")),
    _product("Windows with SQL Server Standard", "RunInstances:0006", _terms("Windows", "SQL Std")),
    _product("Windows with SQL Server Web", "RunInstances:0202", _terms("Windows", "SQL Web")),
)}
_PRODUCT_BY_OPERATION = {p.usage_operation: p for p in _PRODUCTS.values()}
PRODUCT_NAMES: tuple[str, ...] = tuple(_PRODUCTS)
SPOT_DESCRIPTIONS: tuple[str, ...] = _SPOT_DESCRIPTIONS


def _by_name(name: str, usage_operation: str | None) -> BillingProduct:
    known = _PRODUCTS.get(name)
    if known is None:
        return _unknown(name, usage_operation)
    if usage_operation and usage_operation != known.usage_operation:
        return replace(known, unsupported_reason=(
            f"{name} is not priced: EC2 bills it as {known.usage_operation}, but reports "
            f"UsageOperation {usage_operation!r} for this instance"))
    return known


def _unknown(name: str | None, usage_operation: str | None) -> BillingProduct:
    return BillingProduct(
        name=name or f"UsageOperation {usage_operation}", usage_operation=usage_operation or "",
        spot_description=None, price_list_terms={},
        unsupported_reason=(f"unknown billing product (PlatformDetails {name!r}, UsageOperation "
                            f"{usage_operation!r}): only the documented EC2 billing products are priced"),
    )


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


@cache
def _licensed_catalog() -> dict[str, dict[str, dict[str, float]]]:
    products = json.loads(_LICENSED_CATALOG.read_text())["products"]
    return {name: entry["prices"] for name, entry in products.items()}


def catalog_on_demand_price(instance_type: str, region: str, product: str = LINUX) -> float | None:
    """Hourly USD on-demand price (shared tenancy) of ``instance_type`` billed as ``product``
    from the bundled catalogs; None when they hold no price for it, never a guess."""
    billing = BillingProduct.named(product)
    if billing.unsupported_reason is not None:
        return None
    if billing.priced_as == LINUX:
        return _catalog().get(instance_type, {}).get(region)
    return _licensed_catalog().get(billing.priced_as, {}).get(instance_type, {}).get(region)


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
