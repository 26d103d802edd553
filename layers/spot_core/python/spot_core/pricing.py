"""On-demand and Spot prices.

On-demand: the AWS Price List Query API (``pricing.get_products``), one call per distinct
instance type, with the bundled catalog (``data/on_demand_prices.json``) as fallback.
Spot: EC2 DescribeSpotPriceHistory, summarised per pool (type, AZ) by a time-weighted
median, which one short spike cannot move. Clients are passed in (duck-typed), so this
module never imports boto3.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HOURS_PER_MONTH = 730
SPOT_HISTORY_CHUNK = 100  # instance types per DescribeSpotPriceHistory request
_CATALOG = Path(__file__).parent / "data" / "on_demand_prices.json"

# Region code -> `location` attribute of the AmazonEC2 Price List.
REGION_LOCATIONS: dict[str, str] = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "af-south-1": "Africa (Cape Town)",
    "ap-east-1": "Asia Pacific (Hong Kong)",
    "ap-east-2": "Asia Pacific (Taipei)",
    "ap-south-1": "Asia Pacific (Mumbai)",
    "ap-south-2": "Asia Pacific (Hyderabad)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
    "ap-southeast-3": "Asia Pacific (Jakarta)",
    "ap-southeast-4": "Asia Pacific (Melbourne)",
    "ap-southeast-5": "Asia Pacific (Malaysia)",
    "ap-southeast-7": "Asia Pacific (Thailand)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-northeast-2": "Asia Pacific (Seoul)",
    "ap-northeast-3": "Asia Pacific (Osaka)",
    "ca-central-1": "Canada (Central)",
    "ca-west-1": "Canada West (Calgary)",
    "eu-central-1": "EU (Frankfurt)",
    "eu-central-2": "EU (Zurich)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-west-3": "EU (Paris)",
    "eu-south-1": "EU (Milan)",
    "eu-south-2": "EU (Spain)",
    "eu-north-1": "EU (Stockholm)",
    "il-central-1": "Israel (Tel Aviv)",
    "me-south-1": "Middle East (Bahrain)",
    "me-central-1": "Middle East (UAE)",
    "mx-central-1": "Mexico (Central)",
    "sa-east-1": "South America (Sao Paulo)",
}


class PriceUnavailable(ValueError):
    """Neither the Price List API nor the bundled catalog knows this type in this region."""


def monthly(hourly: float) -> float:
    return hourly * HOURS_PER_MONTH


# --- on-demand -----------------------------------------------------------------------


@cache
def _catalog() -> dict[str, dict[str, float]]:
    return json.loads(_CATALOG.read_text())["prices"]


def catalog_on_demand_price(instance_type: str, region: str) -> float | None:
    """Hourly USD on-demand price (Linux, shared tenancy) from the bundled catalog."""
    return _catalog().get(instance_type, {}).get(region)


def price_list_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """``get_products`` filters selecting the Linux, shared-tenancy, on-demand SKU."""
    location = REGION_LOCATIONS.get(region)
    if location is None:
        raise ValueError(f"no Price List location is known for region {region!r}")
    terms = {
        "instanceType": instance_type,
        "location": location,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in terms.items()]


def parse_price_list_product(product_json: str | Mapping[str, Any]) -> float | None:
    """Hourly USD on-demand price of one ``PriceList`` entry; None when it has none.

    Reads ``terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD`` and ignores zero-price
    dimensions (AWS lists some, e.g. for reserved capacity).
    """
    product = json.loads(product_json) if isinstance(product_json, str) else product_json
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            if dimension.get("unit", "Hrs").lower() not in ("hrs", "hours"):
                continue
            usd = float(dimension.get("pricePerUnit", {}).get("USD", 0) or 0)
            if usd > 0:
                return usd
    return None


class OnDemandPricer:
    """Hourly on-demand prices for one region, memoised per instance type.

    ``source="api"`` asks the Price List API once per distinct type and falls back to the
    bundled catalog when there is no client, the call fails or it finds nothing;
    ``source="catalog"`` never calls the API. ``api_calls`` counts ``get_products`` calls.
    """

    def __init__(self, region: str, pricing_client: Any = None, source: str = "api") -> None:
        if source not in ("api", "catalog"):
            raise ValueError(f"pricing source must be 'api' or 'catalog', not {source!r}")
        self.region = region
        self.source = source
        self.api_calls = 0
        self._client = pricing_client
        self._api_failed = False
        self._memo: dict[str, tuple[float, str] | None] = {}
        self._sources_used: set[str] = set()

    @property
    def source_used(self) -> str:
        """Where the prices returned so far came from: "api", "catalog" or "api+catalog"."""
        if len(self._sources_used) > 1:
            return "api+catalog"
        return next(iter(self._sources_used), self.source)

    def prices(self, instance_types: Iterable[str], strict: bool = True) -> dict[str, float]:
        """Hourly price per distinct type. Unknown types raise PriceUnavailable, or are
        left out when ``strict`` is False."""
        result: dict[str, float] = {}
        for instance_type in sorted(set(instance_types)):
            found = self._lookup(instance_type)
            if found is None:
                if strict:
                    raise PriceUnavailable(
                        f"no on-demand price for {instance_type} in {self.region}: "
                        "not in the Price List API and not in the bundled catalog"
                    )
                continue
            result[instance_type] = found[0]
            self._sources_used.add(found[1])
        return result

    def price(self, instance_type: str) -> float:
        return self.prices([instance_type])[instance_type]

    def _lookup(self, instance_type: str) -> tuple[float, str] | None:
        if instance_type not in self._memo:
            from_api = self._from_api(instance_type) if self._use_api() else None
            if from_api is not None:
                self._memo[instance_type] = (from_api, "api")
            else:
                from_catalog = catalog_on_demand_price(instance_type, self.region)
                self._memo[instance_type] = None if from_catalog is None else (from_catalog, "catalog")
        return self._memo[instance_type]

    def _use_api(self) -> bool:
        return self.source == "api" and self._client is not None and not self._api_failed

    def _from_api(self, instance_type: str) -> float | None:
        try:
            self.api_calls += 1
            response = self._client.get_products(
                ServiceCode="AmazonEC2",
                Filters=price_list_filters(instance_type, self.region),
                FormatVersion="aws_v1",
                MaxResults=10,
            )
            prices = (parse_price_list_product(p) for p in response.get("PriceList", []))
            return next((p for p in prices if p is not None), None)
        except Exception as error:  # any API failure: the catalog still answers
            logger.warning(
                "Price List API failed for %s in %s (%s); using the bundled catalog from now on",
                instance_type, self.region, error,
            )
            self._api_failed = True
            return None


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
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


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


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def fetch_spot_price_history(
    ec2_client: Any,
    instance_types: Iterable[str],
    now: datetime,
    lookback_hours: float = 24,
    product: str = "Linux/UNIX",
) -> list[dict[str, Any]]:
    """Raw ``SpotPriceHistory`` items for the last ``lookback_hours``.

    One paginated request per chunk of distinct types: calls grow with pages and types,
    never with instances.
    """
    paginator = ec2_client.get_paginator("describe_spot_price_history")
    items: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(set(instance_types)), SPOT_HISTORY_CHUNK):
        pages = paginator.paginate(
            InstanceTypes=chunk,
            ProductDescriptions=[product],
            StartTime=now - timedelta(hours=lookback_hours),
            EndTime=now,
        )
        for page in pages:
            items.extend(page.get("SpotPriceHistory", []))
    return items
