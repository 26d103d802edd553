import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from spot_core import pricing
from spot_core.instance_types import known_types, spec
from spot_core.pricing import (
    HOURS_PER_MONTH,
    OnDemandPricer,
    PriceUnavailable,
    catalog_on_demand_price,
    fetch_spot_price_history,
    monthly,
    parse_price_list_product,
    price_list_filters,
    spot_price_statistics,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]


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
                "capacitystatus": "Used", "licenseModel": "No License required", "usagetype": f"BoxUsage:{instance_type}",
                "operation": "RunInstances", "vcpu": "2", "memory": "8 GiB", "servicecode": "AmazonEC2",
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
                        "6C86BEPQVG73ZGGR.4NA7Y494T4.6YS6EN2CT7": {"unit": "Hrs", "pricePerUnit": {"USD": "0.0600000000"}},
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


# --- catalog -------------------------------------------------------------------------


@pytest.mark.parametrize(("instance_type", "region", "usd"), [
    ("m5.large", "us-east-1", 0.096),
    ("m5.large", "us-west-2", 0.096),
    ("m5.large", "eu-west-1", 0.107),
    ("m5.large", "eu-central-1", 0.115),
    ("c5.large", "us-east-1", 0.085),
    ("r5.large", "us-east-1", 0.126),
    ("t3.medium", "us-east-1", 0.0416),
    ("m6g.large", "us-east-1", 0.077),
    ("m5.xlarge", "eu-west-1", 0.214),
    ("i3.large", "eu-central-1", 0.186),
])
def test_catalog_has_published_prices(instance_type, region, usd):
    assert catalog_on_demand_price(instance_type, region) == usd


def test_catalog_does_not_invent_types_or_regions():
    assert catalog_on_demand_price("m5.metal", "us-east-1") is None
    assert catalog_on_demand_price("m5.large", "ap-south-1") is None


def test_catalog_documents_its_source():
    doc = json.loads((pricing._CATALOG).read_text())
    assert "Linux" in doc["source"] and "Shared" in doc["source"] and doc["as_of"]
    assert doc["regions"] == REGIONS


@pytest.mark.parametrize("region", REGIONS)
def test_catalog_prices_every_known_type_and_scales_with_size(region):
    for name in known_types():
        assert catalog_on_demand_price(name, region) > 0, name
    for name in known_types():
        s = spec(name)
        if s.size == "large" and f"{s.family}.xlarge" in known_types():
            ratio = catalog_on_demand_price(f"{s.family}.xlarge", region) / catalog_on_demand_price(name, region)
            assert ratio == pytest.approx(2, rel=0.002), name


def test_monthly_uses_730_hours():
    assert HOURS_PER_MONTH == 730
    assert monthly(0.096) == pytest.approx(70.08)


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
    assert locations == {"us-east-1": "US East (N. Virginia)", "us-west-2": "US West (Oregon)", "eu-central-1": "EU (Frankfurt)"}
    with pytest.raises(ValueError, match="moon-1"):
        price_list_filters("m5.large", "moon-1")


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


# --- spot statistics -----------------------------------------------------------------


def item(price, hours_ago, instance_type="m5.large", zone="us-east-1a"):
    return {
        "InstanceType": instance_type, "AvailabilityZone": zone, "ProductDescription": "Linux/UNIX",
        "SpotPrice": f"{price:.6f}", "Timestamp": NOW - timedelta(hours=hours_ago),
    }


def test_median_is_time_weighted_so_a_short_spike_does_not_move_it():
    history = [item(0.03, 24), item(0.30, 4), item(0.03, 3)]
    stat = spot_price_statistics(history, NOW)[("m5.large", "us-east-1a")]
    assert (stat.median, stat.maximum, stat.samples) == (0.03, 0.30, 3)
    assert stat.p90 == 0.03  # the spike held 1 h of 24


def test_a_long_enough_high_price_shows_in_p90_but_not_the_median():
    stat = spot_price_statistics([item(0.03, 24), item(0.30, 4)], NOW)[("m5.large", "us-east-1a")]
    assert (stat.median, stat.p90) == (0.03, 0.30)


def test_a_price_set_before_the_window_counts_from_the_window_start():
    history = [item(0.05, 48), item(1.00, 2)]
    stat = spot_price_statistics(history, NOW)[("m5.large", "us-east-1a")]
    assert stat.median == 0.05  # held 22 h of the window, not 46 h
    stat = spot_price_statistics([item(0.05, 48), item(1.00, 13)], NOW)[("m5.large", "us-east-1a")]
    assert stat.median == 1.00  # held 13 h of 24


def test_prices_superseded_before_the_window_are_ignored():
    stat = spot_price_statistics([item(9.0, 40), item(0.04, 30), item(0.05, 6)], NOW)[("m5.large", "us-east-1a")]
    assert stat.maximum == 0.05 and stat.samples == 2


def test_pools_are_kept_apart_and_naive_timestamps_are_utc():
    naive = {**item(0.07, 5, zone="us-east-1b"), "Timestamp": (NOW - timedelta(hours=5)).replace(tzinfo=None)}
    stats = spot_price_statistics([item(0.03, 5), naive, item(0.02, 5, instance_type="c5.large")], NOW)
    assert {k: v.median for k, v in stats.items()} == {
        ("m5.large", "us-east-1a"): 0.03, ("m5.large", "us-east-1b"): 0.07, ("c5.large", "us-east-1a"): 0.02,
    }


histories = st.lists(
    st.tuples(
        st.floats(min_value=0.0001, max_value=50, allow_nan=False).map(lambda p: round(p, 4)),
        st.integers(min_value=0, max_value=48 * 60),
    ),
    min_size=1, max_size=30,
)


def as_items(points):
    return [item(price, minutes / 60) for price, minutes in points]


@settings(max_examples=200, deadline=None)
@given(histories)
def test_statistics_lie_between_the_lowest_and_highest_price(points):
    stat = spot_price_statistics(as_items(points), NOW)[("m5.large", "us-east-1a")]
    prices = [float(f"{p:.6f}") for p, _ in points]
    assert min(prices) <= stat.median <= stat.p90 <= stat.maximum <= max(prices)


@given(st.floats(min_value=0.0001, max_value=50).map(lambda p: round(p, 4)), st.lists(st.integers(0, 48 * 60), min_size=1))
def test_a_constant_series_gives_that_constant(price, minutes):
    stat = spot_price_statistics(as_items([(price, m) for m in minutes]), NOW)[("m5.large", "us-east-1a")]
    assert stat.median == stat.p90 == stat.maximum == float(f"{price:.6f}")


@settings(deadline=None)
@given(st.data())
def test_the_order_of_history_items_does_not_matter(data):
    items = as_items(data.draw(histories))
    shuffled = data.draw(st.permutations(items))
    assert spot_price_statistics(shuffled, NOW) == spot_price_statistics(items, NOW)


# --- spot history from EC2 (moto) -----------------------------------------------------


@pytest.fixture
def ec2(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("ec2", region_name="us-east-1")


def count_calls(client, operation):
    requests = []
    client.meta.events.register(
        f"before-parameter-build.ec2.{operation}", lambda params, **_: requests.append(dict(params)),
    )
    return requests


def test_fetch_spot_price_history_returns_raw_items_for_the_window(ec2):
    requests = count_calls(ec2, "DescribeSpotPriceHistory")
    items = fetch_spot_price_history(ec2, ["m5.large", "c5.large", "m5.large"], NOW)
    assert {i["InstanceType"] for i in items} == {"m5.large", "c5.large"}
    assert {"InstanceType", "AvailabilityZone", "SpotPrice", "Timestamp"} <= set(items[0])
    assert len(requests) == 1
    assert requests[0]["InstanceTypes"] == ["c5.large", "m5.large"]
    assert requests[0]["ProductDescriptions"] == ["Linux/UNIX"]
    assert (requests[0]["StartTime"], requests[0]["EndTime"]) == (NOW - timedelta(hours=24), NOW)
    # moto's price is a constant set long ago: it holds for the whole window
    stats = spot_price_statistics(items, NOW)
    assert stats and all(s.median == 0.00001 for s in stats.values())


def test_fetch_spot_price_history_calls_grow_with_type_chunks_not_instances(ec2, monkeypatch):
    monkeypatch.setattr(pricing, "SPOT_HISTORY_CHUNK", 2)
    requests = count_calls(ec2, "DescribeSpotPriceHistory")
    fleet_of_types = ["m5.large"] * 500 + ["c5.large"] * 300 + ["r5.large"] * 200
    items = fetch_spot_price_history(ec2, fleet_of_types, NOW)
    assert len(requests) == 2  # 3 distinct types, 2 per request, one page each
    assert {i["InstanceType"] for i in items} == {"m5.large", "c5.large", "r5.large"}
    assert fetch_spot_price_history(ec2, [], NOW) == [] and len(requests) == 2


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
    items = fetch_spot_price_history(client, ["m5.large"], NOW, lookback_hours=6, product="Linux/UNIX (Amazon VPC)")
    assert [i["SpotPrice"] for i in items] == ["0.030000", "0.040000"]
    assert client.requests[0]["StartTime"] == NOW - timedelta(hours=6)
    assert client.requests[0]["ProductDescriptions"] == ["Linux/UNIX (Amazon VPC)"]
