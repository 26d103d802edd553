"""On-demand prices from the AWS Price List Query API (``pricing.get_products``), one call per
distinct instance type, with the bundled catalog as fallback."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..domain.errors import PriceUnavailable
from ..domain.pricing import catalog_on_demand_price

if TYPE_CHECKING:
    from mypy_boto3_pricing import PricingClient
    from mypy_boto3_pricing.type_defs import FilterTypeDef

logger = logging.getLogger(__name__)

PRICING_API_REGION = "us-east-1"  # the Price List Query API lives in us-east-1 (and ap-south-1)
PricingSource = Literal["api", "catalog"]

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


def price_list_filters(instance_type: str, region: str) -> list[FilterTypeDef]:
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

    def __init__(self, region: str, pricing_client: PricingClient | None = None, source: str = "api") -> None:
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
        assert self._client is not None  # _use_api() said so
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
        except Exception as error:  # noqa: BLE001 - any API failure: the catalog still answers
            logger.warning(
                "Price List API failed for %s in %s (%s); using the bundled catalog from now on",
                instance_type, self.region, error,
            )
            self._api_failed = True
            return None
