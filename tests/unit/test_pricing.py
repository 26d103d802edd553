"""Prices: billing products, the bundled catalogs, the monthly maths and the Spot price
statistics (pure)."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spot_core.domain import pricing
from spot_core.domain.instance_types import known_types, spec
from spot_core.domain.pricing import (
    HOURS_PER_MONTH,
    LINUX,
    PRODUCT_NAMES,
    RHEL,
    SUSE,
    WINDOWS,
    BillingProduct,
    catalog_on_demand_price,
    monthly,
    spot_price_statistics,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]


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


# --- billing products ------------------------------------------------------------------

# The AWS EC2 User Guide's "AMI billing information fields" table: PlatformDetails, UsageOperation,
# and the Spot ProductDescription whose prices apply (None: EC2 publishes no Spot price for it).
DOCUMENTED = [
    ("Linux/UNIX", "RunInstances", "Linux/UNIX", ("Linux", "No License required", "NA")),
    ("Red Hat BYOL Linux", "RunInstances:00g0", "Linux/UNIX", ("Linux", "No License required", "NA")),
    ("Red Hat Enterprise Linux", "RunInstances:0010", "Red Hat Enterprise Linux",
     ("RHEL", "No License required", "NA")),
    ("Red Hat Enterprise Linux with HA", "RunInstances:1010", None,
     ("Red Hat Enterprise Linux with HA", "No License required", "NA")),
    ("Red Hat Enterprise Linux with SQL Server Standard and HA", "RunInstances:1014", None,
     ("Red Hat Enterprise Linux with HA", "No License required", "SQL Std")),
    ("Red Hat Enterprise Linux with SQL Server Enterprise and HA", "RunInstances:1110", None,
     ("Red Hat Enterprise Linux with HA", "No License required", "SQL Ent")),
    ("Red Hat Enterprise Linux with SQL Server Standard", "RunInstances:0014", None,
     ("RHEL", "No License required", "SQL Std")),
    ("Red Hat Enterprise Linux with SQL Server Web", "RunInstances:0210", None,
     ("RHEL", "No License required", "SQL Web")),
    ("Red Hat Enterprise Linux with SQL Server Enterprise", "RunInstances:0110", None,
     ("RHEL", "No License required", "SQL Ent")),
    ("SQL Server Enterprise", "RunInstances:0100", None, ("Linux", "No License required", "SQL Ent")),
    ("SQL Server Standard", "RunInstances:0004", None, ("Linux", "No License required", "SQL Std")),
    ("SQL Server Web", "RunInstances:0200", None, ("Linux", "No License required", "SQL Web")),
    ("SUSE Linux", "RunInstances:000g", "SUSE Linux", ("SUSE", "No License required", "NA")),
    ("Ubuntu Pro", "RunInstances:0g00", None, ("Ubuntu Pro", "No License required", "NA")),
    ("Windows", "RunInstances:0002", "Windows", ("Windows", "No License required", "NA")),
    ("Windows BYOL", "RunInstances:0800", None, ("Windows", "Bring your own license", "NA")),
    ("Windows with SQL Server Enterprise", "RunInstances:0102", None, ("Windows", "No License required", "SQL Ent")),
    ("Windows with SQL Server Standard", "RunInstances:0006", None, ("Windows", "No License required", "SQL Std")),
    ("Windows with SQL Server Web", "RunInstances:0202", None, ("Windows", "No License required", "SQL Web")),
]


@pytest.mark.parametrize(("name", "operation", "spot", "terms"), DOCUMENTED, ids=[d[0] for d in DOCUMENTED])
def test_every_documented_product_maps_to_its_spot_description_and_price_list_terms(name, operation, spot, terms):
    product = BillingProduct.of(name, operation, None)
    assert (product.name, product.usage_operation, product.spot_description) == (name, operation, spot)
    assert product.price_list_terms == dict(zip(("operatingSystem", "licenseModel", "preInstalledSw"), terms,
                                                strict=True))
    assert BillingProduct.of(None, operation, None) == product, "the billing code alone names the product"
    assert BillingProduct.named(name) == product
    assert (product.unsupported_reason is None) == (spot is not None)


def test_the_product_list_is_the_documented_one():
    assert set(PRODUCT_NAMES) == {d[0] for d in DOCUMENTED}
    assert (LINUX, RHEL, SUSE, WINDOWS) == ("Linux/UNIX", "Red Hat Enterprise Linux", "SUSE Linux", "Windows")


@pytest.mark.parametrize(("platform", "expected"), [(None, LINUX), ("", LINUX), ("windows", WINDOWS),
                                                    ("Windows", WINDOWS), ("linux", LINUX)])
def test_without_billing_fields_the_platform_decides(platform, expected):
    product = BillingProduct.of(None, None, platform)
    assert product.name == expected and product.unsupported_reason is None


def test_products_without_a_spot_price_are_unsupported_and_say_why():
    for name in ("Red Hat Enterprise Linux with HA", "Ubuntu Pro", "Windows with SQL Server Standard"):
        reason = BillingProduct.named(name).unsupported_reason
        assert reason and name in reason and "no Spot price" in reason


def test_red_hat_byol_is_billed_and_priced_as_linux():
    """EC2 reports Red Hat BYOL usage as RunInstances (Linux/UNIX): the subscription is the
    customer's own and costs the same on Spot, so only the Linux compute price moves."""
    byol = BillingProduct.named("Red Hat BYOL Linux")
    assert byol.unsupported_reason is None and not byol.licensed
    assert (byol.priced_as, byol.spot_description) == (LINUX, LINUX)
    assert catalog_on_demand_price("m5.large", "us-east-1", "Red Hat BYOL Linux") == 0.096


def test_windows_byol_is_unsupported_because_it_needs_dedicated_hosts():
    reason = BillingProduct.named("Windows BYOL").unsupported_reason
    assert reason and "Dedicated Hosts" in reason
    assert catalog_on_demand_price("m5.large", "us-east-1", "Windows BYOL") is None


@pytest.mark.parametrize(("details", "operation"), [
    ("Windows with SQL Server Express", "RunInstances:0002"),
    ("Rocky Linux", None),
    (None, "RunInstances:9999"),
])
def test_unknown_products_are_unsupported_with_a_reason_naming_them(details, operation):
    product = BillingProduct.of(details, operation, None)
    assert product.unsupported_reason is not None and product.spot_description is None
    assert "unknown billing product" in product.unsupported_reason
    assert all(str(v) in product.unsupported_reason for v in (details, operation) if v)
    assert product.price_list_terms == {}
    assert catalog_on_demand_price("m5.large", "us-east-1", product.name) is None


def test_details_and_billing_code_that_disagree_are_not_priced():
    product = BillingProduct.of(RHEL, "RunInstances", None)
    assert product.name == RHEL
    assert product.unsupported_reason and "RunInstances:0010" in product.unsupported_reason


def test_billing_products_are_values():
    assert BillingProduct.named(RHEL) == BillingProduct.of(RHEL, "RunInstances:0010", "")
    assert len({BillingProduct.named(RHEL), BillingProduct.named(RHEL), BillingProduct.named(WINDOWS)}) == 2
    assert BillingProduct.named(WINDOWS).licensed and not BillingProduct.named(LINUX).licensed


# --- licensed catalog ------------------------------------------------------------------------


@pytest.mark.parametrize(("instance_type", "product", "usd"), [
    ("m5.large", RHEL, 0.1248),
    ("c5.xlarge", RHEL, 0.2276),  # AWS's RHEL pricing FAQ: 0.0024 USD/h less than the former 0.23
    ("c5.4xlarge", RHEL, 0.8528),  # and 0.0428 USD/h more than the former 0.81
    ("m6g.large", RHEL, 0.1058),
    ("m5.large", WINDOWS, 0.188),
    ("c5.large", WINDOWS, 0.177),
    ("r5.xlarge", WINDOWS, 0.436),
])
def test_licensed_catalog_has_licence_included_prices_in_us_east_1(instance_type, product, usd):
    assert catalog_on_demand_price(instance_type, "us-east-1", product) == usd


def test_licensed_catalog_answers_only_what_it_knows():
    assert catalog_on_demand_price("m5.large", "us-east-1", SUSE) is None, "no documented SUSE fee: no price"
    assert catalog_on_demand_price("t3.medium", "us-east-1", WINDOWS) is None, "T families have their own rates"
    assert catalog_on_demand_price("m6g.large", "us-east-1", WINDOWS) is None, "Graviton runs no Windows"
    assert catalog_on_demand_price("m5.large", "ap-south-1", RHEL) is None
    assert catalog_on_demand_price("m5.metal", "us-east-1", RHEL) is None
    assert catalog_on_demand_price("m5.large", "us-east-1", "Red Hat Enterprise Linux with HA") is None


def rhel_fee(vcpu):
    return vcpu * (0.0144 if vcpu <= 8 else 0.0108 if vcpu <= 127 else 0.0096)


def test_licensed_catalog_is_the_linux_price_plus_the_documented_fee_and_says_so():
    doc = json.loads(pricing._LICENSED_CATALOG.read_text())
    assert doc["as_of"] and doc["regions"] == REGIONS and "SUSE Linux" in doc["omitted"]
    fees = {RHEL: lambda s: rhel_fee(s.vcpu), WINDOWS: lambda s: 0.046 * s.vcpu}
    for product, entry in doc["products"].items():
        assert entry["sources"] and all(source.startswith("https://") for source in entry["sources"])
        assert entry["prices"], product
        for instance_type, by_region in entry["prices"].items():
            assert set(by_region) == set(REGIONS)
            for region, usd in by_region.items():
                expected = catalog_on_demand_price(instance_type, region) + fees[product](spec(instance_type))
                assert usd == pytest.approx(expected, abs=1e-9), (product, instance_type, region)


def test_monthly_uses_730_hours():
    assert HOURS_PER_MONTH == 730
    assert monthly(0.096) == pytest.approx(70.08)


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


@given(st.floats(min_value=0.0001, max_value=50).map(lambda p: round(p, 4)),
       st.lists(st.integers(0, 48 * 60), min_size=1))
def test_a_constant_series_gives_that_constant(price, minutes):
    stat = spot_price_statistics(as_items([(price, m) for m in minutes]), NOW)[("m5.large", "us-east-1a")]
    assert stat.median == stat.p90 == stat.maximum == float(f"{price:.6f}")


@settings(deadline=None)
@given(st.data())
def test_the_order_of_history_items_does_not_matter(data):
    items = as_items(data.draw(histories))
    shuffled = data.draw(st.permutations(items))
    assert spot_price_statistics(shuffled, NOW) == spot_price_statistics(items, NOW)
