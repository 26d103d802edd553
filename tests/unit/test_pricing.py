"""Prices: the bundled catalog, the monthly maths and the Spot price statistics (pure)."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spot_core.domain import pricing
from spot_core.domain.instance_types import known_types, spec
from spot_core.domain.pricing import HOURS_PER_MONTH, catalog_on_demand_price, monthly, spot_price_statistics

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
