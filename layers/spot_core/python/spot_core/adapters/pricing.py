"""On-demand prices from the AWS Price List Query API (``pricing.get_products``), one call per
distinct instance type and billing product, with the bundled catalogs as fallback."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..domain.errors import PriceUnavailable
from ..domain.pricing import LINUX, BillingProduct, catalog_on_demand_price

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


def price_list_filters(instance_type: str, region: str, product: str = LINUX) -> list[FilterTypeDef]:
    """``get_products`` filters selecting the shared-tenancy, on-demand SKU of ``product`` (a
    billing product name, Linux/UNIX by default): its operating system, licence model and
    pre-installed software terms."""
    location = REGION_LOCATIONS.get(region)
    if location is None:
        raise ValueError(f"no Price List location is known for region {region!r}")
    product_terms = BillingProduct.named(product).price_list_terms
    if not product_terms:
        raise ValueError(f"no Price List terms are known for billing product {product!r}")
    terms = {
        "instanceType": instance_type,
        "location": location,
        "operatingSystem": product_terms["operatingSystem"],
        "tenancy": "Shared",
        "preInstalledSw": product_terms["preInstalledSw"],
        "capacitystatus": "Used",
        "licenseModel": product_terms["licenseModel"],
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
    """Hourly on-demand prices for one region, memoised per (instance type, billing product).

    ``source="api"`` asks the Price List API once per distinct type and product and falls back
    to the bundled catalogs when there is no client, the call fails or it finds nothing;
    ``source="catalog"`` never calls the API. ``api_calls`` counts ``get_products`` calls.
    A product that cannot be priced honestly (``BillingProduct.unsupported_reason``) has no
    price: neither the API nor the catalog is asked.
    """

    def __init__(self, region: str, pricing_client: PricingClient | None = None, source: str = "api") -> None:
        if source not in ("api", "catalog"):
            raise ValueError(f"pricing source must be 'api' or 'catalog', not {source!r}")
        self.region = region
        self.source = source
        self.api_calls = 0
        self._client = pricing_client
        self._api_failed = False
        self._memo: dict[tuple[str, str], tuple[float, str] | None] = {}
        self._sources_used: set[str] = set()

    @property
    def source_used(self) -> str:
        """Where the prices returned so far came from: "api", "catalog" or "api+catalog"."""
        if len(self._sources_used) > 1:
            return "api+catalog"
        return next(iter(self._sources_used), self.source)

    def prices(self, instance_types: Iterable[str], strict: bool = True, product: str = LINUX) -> dict[str, float]:
        """Hourly price per distinct type, billed as ``product``. Types without a price raise
        PriceUnavailable, or are left out when ``strict`` is False."""
        result: dict[str, float] = {}
        for instance_type in sorted(set(instance_types)):
            found = self._lookup(instance_type, product)
            if found is None:
                if strict:
                    raise PriceUnavailable(self._missing(instance_type, product))
                continue
            result[instance_type] = found[0]
            self._sources_used.add(found[1])
        return result

    def price(self, instance_type: str, product: str = LINUX) -> float:
        return self.prices([instance_type], product=product)[instance_type]

    def _missing(self, instance_type: str, product: str) -> str:
        reason = BillingProduct.named(product).unsupported_reason
        what = instance_type if product == LINUX else f"{product} on {instance_type}"
        return (f"no on-demand price for {what} in {self.region}: "
                f"{reason or 'not in the Price List API and not in the bundled catalog'}")

    def _lookup(self, instance_type: str, product: str) -> tuple[float, str] | None:
        key = (instance_type, product)
        if key not in self._memo:
            self._memo[key] = self._find(instance_type, product)
        return self._memo[key]

    def _find(self, instance_type: str, product: str) -> tuple[float, str] | None:
        if BillingProduct.named(product).unsupported_reason is not None:
            return None
        from_api = self._from_api(instance_type, product) if self._use_api() else None
        if from_api is not None:
            return (from_api, "api")
        from_catalog = catalog_on_demand_price(instance_type, self.region, product)
        return None if from_catalog is None else (from_catalog, "catalog")

    def _use_api(self) -> bool:
        return self.source == "api" and self._client is not None and not self._api_failed

    def _from_api(self, instance_type: str, product: str) -> float | None:
        assert self._client is not None  # _use_api() said so
        try:
            self.api_calls += 1
            response = self._client.get_products(
                ServiceCode="AmazonEC2",
                Filters=price_list_filters(instance_type, self.region, product),
                FormatVersion="aws_v1",
                MaxResults=10,
            )
            prices = (parse_price_list_product(p) for p in response.get("PriceList", []))
            return next((p for p in prices if p is not None), None)
        except Exception as error:  # noqa: BLE001 - any API failure: the catalog still answers
            logger.warning(
                "Price List API failed for %s (%s) in %s (%s); using the bundled catalog from now on",
                instance_type, product, self.region, error,
            )
            self._api_failed = True
            return None
