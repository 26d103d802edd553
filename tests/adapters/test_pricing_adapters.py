"""The pricing adapters: on-demand prices from the Price List API (with the catalogs as
fallback) and Spot price history from EC2 (moto, and a paged fake), per billing product."""

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from spot_core.adapters import spot_prices as spot_prices_adapter
from spot_core.adapters.pricing import OnDemandPricer, parse_price_list_product, price_list_filters
from spot_core.adapters.spot_prices import CachedSpotPrices, Ec2SpotPrices
from spot_core.domain.errors import PriceUnavailable
from spot_core.domain.pricing import LINUX, RHEL, SUSE, WINDOWS, spot_price_statistics

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def price_list_entry(instance_type="m5.large", usd="0.0960000000", extra_dimensions=()):
    """One `PriceList` string as `pricing.get_products` returns it (aws_v1 format)."""
    dimensions = {
        "JRTCKXETXF.6YS6EN2CT7.6YS6EN2CT7": {
            "unit": "Hrs", "endRange": "Inf", "beginRange": "0", "appliesTo": [],
            "rateCode": "6C86BEPQVG73ZGGR.JRTCKXETXF.6YS6EN2CT7",
            "description": f"${usd[:5]} per On Demand Linux {instance_type} Instance Hour",
            "pricePerUnit": {"USD": usd},
        },
        **dict(extra_dimensions),
    }
    return json.dumps({
        "product": {
            "productFamily": "Compute Instance",
            "sku": "6C86BEPQVG73ZGGR",
            "attributes": {
                "instanceType": instance_type, "location": "US East (N. Virginia)", "regionCode": "us-east-1",
                "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                "capacitystatus": "Used", "licenseModel": "No License required",
                "usagetype": f"BoxUsage:{instance_type}", "operation": "RunInstances", "vcpu": "2",
                "memory": "8 GiB", "servicecode": "AmazonEC2",
            },
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                "6C86BEPQVG73ZGGR.JRTCKXETXF": {
                    "offerTermCode": "JRTCKXETXF", "sku": "6C86BEPQVG73ZGGR",
                    "effectiveDate": "2026-11-01T00:00:00Z", "termAttributes": {},
                    "priceDimensions": dimensions,
                }
            },
            "Reserved": {
                "6C86BEPQVG73ZGGR.4NA7Y494T4": {
                    "priceDimensions": {
                        "6C86BEPQVG73ZGGR.4NA7Y494T4.6YS6EN2CT7": {
                            "unit": "Hrs", "pricePerUnit": {"USD": "0.0600000000"},
                        },
                    },
                    "termAttributes": {"LeaseContractLength": "1yr", "PurchaseOption": "No Upfront"},
                }
            },
        },
        "version": "20261101000000",
        "publicationDate": "2026-11-01T00:00:00Z",
    })


class FakePricing:
    """Duck-typed `pricing` client: answers from a {type: usd} table, records every call."""

    def __init__(self, table=None, error=None):
        self.table = table or {}
        self.error = error
        self.calls = []

    def get_products(self, **kwargs):
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        instance_type = next(f["Value"] for f in kwargs["Filters"] if f["Field"] == "instanceType")
        usd = self.table.get(instance_type)
        return {"PriceList": [] if usd is None else [price_list_entry(instance_type, usd)], "FormatVersion": "aws_v1"}


def item(price, hours_ago, instance_type="m5.large", zone="us-east-1a"):
    return {
        "InstanceType": instance_type, "AvailabilityZone": zone, "ProductDescription": "Linux/UNIX",
        "SpotPrice": f"{price:.6f}", "Timestamp": NOW - timedelta(hours=hours_ago),
    }


# --- price list --------------------------------------------------------------------------


def test_parse_price_list_product_reads_the_on_demand_hourly_usd():
    assert parse_price_list_product(price_list_entry("m5.large", "0.0960000000")) == 0.096


def test_parse_price_list_product_ignores_zero_price_dimensions():
    zero = {"X.JRTCKXETXF.ZERO": {"unit": "Hrs", "pricePerUnit": {"USD": "0.0000000000"}}}
    doc = json.loads(price_list_entry(usd="0.0000000000", extra_dimensions=zero))
    assert parse_price_list_product(json.dumps(doc)) is None
    doc["terms"]["OnDemand"]["6C86BEPQVG73ZGGR.JRTCKXETXF"]["priceDimensions"]["Y"] = {
        "unit": "Hrs", "pricePerUnit": {"USD": "0.1070000000"},
    }
    assert parse_price_list_product(json.dumps(doc)) == 0.107


def test_parse_price_list_product_without_on_demand_terms_is_none():
    assert parse_price_list_product(json.dumps({"product": {}, "terms": {"Reserved": {}}})) is None


def test_price_list_filters_select_the_linux_shared_on_demand_sku():
    assert price_list_filters("m5.large", "eu-west-1") == [
        {"Type": "TERM_MATCH", "Field": "instanceType", "Value": "m5.large"},
        {"Type": "TERM_MATCH", "Field": "location", "Value": "EU (Ireland)"},
        {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
        {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
        {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
        {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
        {"Type": "TERM_MATCH", "Field": "licenseModel", "Value": "No License required"},
    ]
    locations = {r: price_list_filters("t3.micro", r)[1]["Value"] for r in ["us-east-1", "us-west-2", "eu-central-1"]}
    assert locations == {"us-east-1": "US East (N. Virginia)", "us-west-2": "US West (Oregon)",
                         "eu-central-1": "EU (Frankfurt)"}
    with pytest.raises(ValueError, match="moon-1"):
        price_list_filters("m5.large", "moon-1")


def terms_of(filters):
    return {f["Field"]: f["Value"] for f in filters}


@pytest.mark.parametrize(("product", "operating_system", "licence", "software"), [
    (LINUX, "Linux", "No License required", "NA"),
    (RHEL, "RHEL", "No License required", "NA"),
    (SUSE, "SUSE", "No License required", "NA"),
    (WINDOWS, "Windows", "No License required", "NA"),
    ("Red Hat Enterprise Linux with HA", "Red Hat Enterprise Linux with HA", "No License required", "NA"),
    ("Windows with SQL Server Standard", "Windows", "No License required", "SQL Std"),
    ("Windows with SQL Server Web", "Windows", "No License required", "SQL Web"),
    ("Windows with SQL Server Enterprise", "Windows", "No License required", "SQL Ent"),
    ("Ubuntu Pro", "Ubuntu Pro", "No License required", "NA"),
    ("Windows BYOL", "Windows", "Bring your own license", "NA"),
    ("Red Hat BYOL Linux", "Linux", "No License required", "NA"),  # billed as Linux/UNIX
])
def test_price_list_filters_select_the_product_sku(product, operating_system, licence, software):
    filters = price_list_filters("m5.large", "us-east-1", product)
    assert [f["Field"] for f in filters] == [f["Field"] for f in price_list_filters("m5.large", "us-east-1")]
    assert all(f["Type"] == "TERM_MATCH" for f in filters)
    assert terms_of(filters) == {
        "instanceType": "m5.large", "location": "US East (N. Virginia)", "operatingSystem": operating_system,
        "tenancy": "Shared", "preInstalledSw": software, "capacitystatus": "Used", "licenseModel": licence,
    }


def test_price_list_filters_refuse_an_unknown_product():
    with pytest.raises(ValueError, match="Rocky Linux"):
        price_list_filters("m5.large", "us-east-1", "Rocky Linux")


# --- on-demand pricer ------------------------------------------------------------------


def test_pricer_asks_the_api_once_per_distinct_type():
    client = FakePricing({"m5.large": "0.0960000000", "c5.large": "0.0850000000"})
    pricer = OnDemandPricer("us-east-1", client)
    assert pricer.prices(["m5.large", "c5.large", "m5.large"]) == {"m5.large": 0.096, "c5.large": 0.085}
    assert pricer.prices(["c5.large"]) == {"c5.large": 0.085}
    assert pricer.api_calls == 2 and len(client.calls) == 2
    assert client.calls[0]["ServiceCode"] == "AmazonEC2"
    assert client.calls[0]["Filters"] == price_list_filters("c5.large", "us-east-1")
    assert pricer.source_used == "api"


def test_pricer_prefers_the_api_over_the_catalog():
    pricer = OnDemandPricer("eu-west-1", FakePricing({"m5.large": "0.1100000000"}))
    assert pricer.price("m5.large") == 0.11


def test_pricer_falls_back_to_the_catalog_when_the_api_raises():
    client = FakePricing(error=RuntimeError("AccessDeniedException"))
    pricer = OnDemandPricer("eu-west-1", client)
    assert pricer.prices(["m5.large", "c5.large"]) == {"m5.large": 0.107, "c5.large": 0.096}
    assert pricer.api_calls == 1, "after one failure the pricer stops calling the API"
    assert pricer.source_used == "catalog"


def test_pricer_falls_back_per_type_when_the_api_finds_nothing():
    pricer = OnDemandPricer("us-east-1", FakePricing({"m5.large": "0.0960000000"}))
    assert pricer.prices(["m5.large", "r5.large"]) == {"m5.large": 0.096, "r5.large": 0.126}
    assert pricer.api_calls == 2
    assert pricer.source_used == "api+catalog"


@pytest.mark.parametrize("pricer", [
    OnDemandPricer("us-east-1"),
    OnDemandPricer("us-east-1", FakePricing({"m5.large": "9.0"}), source="catalog"),
])
def test_catalog_only_pricers_never_call_the_api(pricer):
    assert pricer.prices(["m5.large"]) == {"m5.large": 0.096}
    assert pricer.api_calls == 0
    assert pricer.source_used == "catalog"


def test_unknown_type_raises_price_unavailable_naming_type_and_region():
    pricer = OnDemandPricer("eu-central-1", FakePricing())
    with pytest.raises(PriceUnavailable, match=r"x9z\.huge.*eu-central-1"):
        pricer.prices(["m5.large", "x9z.huge"])
    assert issubclass(PriceUnavailable, ValueError)
    assert pricer.prices(["m5.large", "x9z.huge"], strict=False) == {"m5.large": 0.115}


def test_region_without_a_price_list_location_uses_the_catalog_and_then_fails_clearly():
    pricer = OnDemandPricer("moon-1", FakePricing({"m5.large": "0.1"}))
    with pytest.raises(PriceUnavailable, match="moon-1"):
        pricer.prices(["m5.large"])


def test_pricer_rejects_an_unknown_source():
    with pytest.raises(ValueError, match="pricing source"):
        OnDemandPricer("us-east-1", source="guess")


class ProductPricing(FakePricing):
    """Answers from a {(type, operatingSystem, preInstalledSw): usd} table."""

    def get_products(self, **kwargs):
        self.calls.append(kwargs)
        terms = terms_of(kwargs["Filters"])
        usd = self.table.get((terms["instanceType"], terms["operatingSystem"], terms["preInstalledSw"]))
        return {"PriceList": [] if usd is None else [price_list_entry(terms["instanceType"], usd)]}


def test_pricer_asks_the_api_once_per_distinct_type_and_product():
    client = ProductPricing({("m5.large", "Linux", "NA"): "0.0960000000", ("m5.large", "RHEL", "NA"): "0.1248000000",
                             ("m5.large", "Windows", "NA"): "0.1880000000"})
    pricer = OnDemandPricer("us-east-1", client)
    assert pricer.prices(["m5.large"]) == {"m5.large": 0.096}
    assert pricer.prices(["m5.large", "m5.large"], product=RHEL) == {"m5.large": 0.1248}
    assert pricer.prices(["m5.large"], product=WINDOWS) == {"m5.large": 0.188}
    assert pricer.prices(["m5.large"], product=RHEL) == {"m5.large": 0.1248}
    assert pricer.price("m5.large", WINDOWS) == 0.188 and pricer.price("m5.large") == 0.096
    assert pricer.api_calls == 3, "memoised per (type, product)"
    assert [terms_of(c["Filters"])["operatingSystem"] for c in client.calls] == ["Linux", "RHEL", "Windows"]
    assert client.calls[1]["Filters"] == price_list_filters("m5.large", "us-east-1", RHEL)


def test_pricer_falls_back_to_the_product_catalog():
    pricer = OnDemandPricer("us-east-1", ProductPricing())
    assert pricer.prices(["m5.large", "c5.4xlarge"], product=RHEL) == {"m5.large": 0.1248, "c5.4xlarge": 0.8528}
    assert pricer.prices(["m5.large"], product=WINDOWS) == {"m5.large": 0.188}
    assert pricer.prices(["m5.large"], product="Red Hat BYOL Linux") == {"m5.large": 0.096}
    assert pricer.source_used == "catalog"


def test_a_product_without_any_price_is_unavailable_and_named():
    pricer = OnDemandPricer("us-east-1", ProductPricing())
    with pytest.raises(PriceUnavailable, match=r"no on-demand price for SUSE Linux on m5\.large in us-east-1"):
        pricer.prices(["m5.large"], product=SUSE)
    assert pricer.prices(["m5.large"], strict=False, product=SUSE) == {}
    assert pricer.prices(["t3.medium", "m5.large"], strict=False, product=WINDOWS) == {"m5.large": 0.188}


@pytest.mark.parametrize(("product", "reason"), [
    ("Windows BYOL", "Dedicated Hosts"),
    ("Ubuntu Pro", "no Spot price"),
    ("Rocky Linux", "unknown billing product"),
])
def test_unsupported_products_are_never_priced_and_never_asked_for(product, reason):
    client = ProductPricing({("m5.large", "Windows", "NA"): "0.1880000000"})
    pricer = OnDemandPricer("us-east-1", client)
    with pytest.raises(PriceUnavailable, match=reason):
        pricer.prices(["m5.large"], product=product)
    assert pricer.prices(["m5.large"], strict=False, product=product) == {}
    assert client.calls == []


# --- spot history from EC2 (moto) -----------------------------------------------------


@pytest.fixture
def ec2(moto):
    return boto3.client("ec2", region_name="us-east-1")


def count_calls(client, operation):
    requests = []
    client.meta.events.register(
        f"before-parameter-build.ec2.{operation}", lambda params, **_: requests.append(dict(params)),
    )
    return requests


def test_fetch_spot_price_history_returns_raw_items_for_the_window(ec2):
    requests = count_calls(ec2, "DescribeSpotPriceHistory")
    items = Ec2SpotPrices(ec2).history(["m5.large", "c5.large", "m5.large"], NOW, 24)
    assert {i["InstanceType"] for i in items} == {"m5.large", "c5.large"}
    assert {"InstanceType", "AvailabilityZone", "SpotPrice", "Timestamp"} <= set(items[0])
    assert len(requests) == 1
    assert requests[0]["InstanceTypes"] == ["c5.large", "m5.large"]
    assert requests[0]["ProductDescriptions"] == ["Linux/UNIX"]
    assert (requests[0]["StartTime"], requests[0]["EndTime"]) == (NOW - timedelta(hours=24), NOW)
    # moto's price is a constant set long ago: it holds for the whole window
    stats = spot_price_statistics(items, NOW, 24)
    assert stats and all(s.median == 0.00001 for s in stats.values())


def test_fetch_spot_price_history_calls_grow_with_type_chunks_not_instances(ec2, monkeypatch):
    monkeypatch.setattr(spot_prices_adapter, "TYPES_BATCH", 2)
    requests = count_calls(ec2, "DescribeSpotPriceHistory")
    fleet_of_types = ["m5.large"] * 500 + ["c5.large"] * 300 + ["r5.large"] * 200
    items = Ec2SpotPrices(ec2).history(fleet_of_types, NOW, 24)
    assert len(requests) == 2  # 3 distinct types, 2 per request, one page each
    assert {i["InstanceType"] for i in items} == {"m5.large", "c5.large", "r5.large"}
    assert Ec2SpotPrices(ec2).history([], NOW, 24) == [] and len(requests) == 2


class PagedEc2:
    """Duck-typed EC2 client whose spot history arrives in several pages."""

    def __init__(self, pages):
        self.pages, self.requests = pages, []

    def get_paginator(self, operation):
        assert operation == "describe_spot_price_history"
        return self

    def paginate(self, **kwargs):
        self.requests.append(kwargs)
        yield from ({"SpotPriceHistory": page} for page in self.pages)


def test_fetch_spot_price_history_reads_every_page():
    client = PagedEc2([[item(0.03, 5)], [item(0.04, 3)], []])
    items = Ec2SpotPrices(client).history(["m5.large"], NOW, lookback_hours=6)
    assert [i["SpotPrice"] for i in items] == ["0.030000", "0.040000"]
    assert client.requests[0]["StartTime"] == NOW - timedelta(hours=6)
    assert client.requests[0]["ProductDescriptions"] == ["Linux/UNIX"]


@pytest.mark.parametrize(("product", "description"), [
    (LINUX, "Linux/UNIX"),
    (RHEL, "Red Hat Enterprise Linux"),
    (SUSE, "SUSE Linux"),
    (WINDOWS, "Windows"),
    ("Red Hat BYOL Linux", "Linux/UNIX"),
])
def test_spot_history_asks_for_the_product_spot_description(ec2, product, description):
    requests = count_calls(ec2, "DescribeSpotPriceHistory")
    Ec2SpotPrices(ec2).statistics(["m5.large", "c5.large"], NOW, 12, product=product)
    assert [r["ProductDescriptions"] for r in requests] == [[description]]
    assert requests[0]["InstanceTypes"] == ["c5.large", "m5.large"]
    assert (requests[0]["StartTime"], requests[0]["EndTime"]) == (NOW - timedelta(hours=12), NOW)


@pytest.mark.parametrize("product", ["Windows with SQL Server Standard", "Windows BYOL", "Rocky Linux"])
def test_a_product_without_a_spot_price_asks_nothing_and_has_no_pools(ec2, product):
    requests = count_calls(ec2, "DescribeSpotPriceHistory")
    assert Ec2SpotPrices(ec2).history(["m5.large"], NOW, 24, product) == []
    assert Ec2SpotPrices(ec2).statistics(["m5.large"], NOW, product=product) == {}
    assert requests == []


def test_paged_history_is_read_per_product():
    client = PagedEc2([[item(0.06, 5)], [item(0.07, 3)]])
    items = Ec2SpotPrices(client).history(["m5.large"], NOW, 6, product=WINDOWS)
    assert len(items) == 2 and client.requests[0]["ProductDescriptions"] == ["Windows"]


class RecordingSpotPrices:
    def __init__(self):
        self.calls = []

    def statistics(self, instance_types, now, lookback_hours=24, product=LINUX):
        self.calls.append((tuple(instance_types), lookback_hours, product))
        return {("m5.large", "us-east-1a"): product}


def test_cached_spot_prices_keep_products_apart():
    inner = RecordingSpotPrices()
    cached = CachedSpotPrices(inner)
    assert cached.statistics(["m5.large"], NOW) == {("m5.large", "us-east-1a"): LINUX}
    assert cached.statistics(["m5.large"], NOW, product=RHEL) == {("m5.large", "us-east-1a"): RHEL}
    assert cached.statistics(["m5.large"], NOW, 24, RHEL) == {("m5.large", "us-east-1a"): RHEL}
    assert cached.statistics(["m5.large"], NOW) == {("m5.large", "us-east-1a"): LINUX}
    assert inner.calls == [(("m5.large",), 24, LINUX), (("m5.large",), 24, RHEL)]
