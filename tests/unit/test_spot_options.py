"""The Spot terms of a replacement: its max price (absolute or a share of on-demand) and its
interruption behaviour, as the request and the instance's tags ask (domain/spot_options.py)."""

import pytest

from spot_core.domain.errors import InvalidMigrationRequest
from spot_core.domain.plan import InstanceRecord, Pool
from spot_core.domain.request import parse_request
from spot_core.domain.spot_options import (
    MaxPrice,
    SpotTerms,
    above_max_price,
    ec2_max_price,
    interruption_behavior,
    parse_max_price,
    requested_behavior,
    requested_max_price,
    within_max_price,
)
from spot_core.domain.tags import INTERRUPTION_BEHAVIOR_TAG, MAX_PRICE_TAG


# --- the max price -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "parsed", "text"), [
    ("0.05", MaxPrice(0.05), "0.05"),
    (0.05, MaxPrice(0.05), "0.05"),
    (2, MaxPrice(2.0), "2"),
    (" 0.0123456 ", MaxPrice(0.0123456), "0.012346"),
    ("80%", MaxPrice(80.0, percent=True), "80%"),
    ("80 %", MaxPrice(80.0, percent=True), "80%"),
    ("1%", MaxPrice(1.0, percent=True), "1%"),
    ("100%", MaxPrice(100.0, percent=True), "100%"),
    ("62.5%", MaxPrice(62.5, percent=True), "62.5%"),
    ("0.001", MaxPrice(0.001), "0.001"),  # EC2's lowest
])
def test_a_max_price_is_a_positive_price_or_a_percentage_of_on_demand(value, parsed, text):
    assert parse_max_price(value) == parsed
    assert str(parse_max_price(value)) == text


@pytest.mark.parametrize("value", ["", "cheap", "0", "-0.05", "0.0009", "0%", "0.5%", "101%", "%", "80%%", "nan",
                                   "inf", "1e999", True, None, [0.05], {"usd": 0.05}])
def test_anything_else_is_not_a_max_price(value):
    with pytest.raises(ValueError, match="percentage of the on-demand price"):
        parse_max_price(value)


@pytest.mark.parametrize(("asked", "on_demand", "hourly"), [
    (MaxPrice(0.05), 0.096, 0.05),  # absolute: whatever the on-demand price
    (MaxPrice(80.0, percent=True), 0.096, 0.0768),
    (MaxPrice(100.0, percent=True), 0.096, 0.096),
    (MaxPrice(33.3, percent=True), 0.0104, 0.003463),  # rounded to the 6 decimals EC2 is given
])
def test_a_max_price_resolves_to_usd_an_hour(asked, on_demand, hourly):
    assert asked.hourly(on_demand) == hourly


def test_ec2_is_given_the_max_price_as_a_plain_decimal():
    given = (0.05, 0.0768, 1.0, 0.000123, 12.5)
    assert [ec2_max_price(v) for v in given] == ["0.05", "0.0768", "1", "0.000123", "12.5"]


def test_the_tag_overrides_the_requests_max_price():
    default = MaxPrice(0.05)
    assert requested_max_price({}, default) == default
    assert requested_max_price({MAX_PRICE_TAG: " "}, default) == default
    assert requested_max_price({MAX_PRICE_TAG: "70%"}, default) == MaxPrice(70.0, percent=True)
    assert requested_max_price({MAX_PRICE_TAG: "0.02"}, None) == MaxPrice(0.02)
    assert requested_max_price({}, None) is None


def test_a_tag_that_is_no_max_price_is_an_exclusion_naming_it():
    reason, detail = requested_max_price({MAX_PRICE_TAG: "half"}, MaxPrice(0.05))
    assert reason == "invalid_max_price_tag"
    assert MAX_PRICE_TAG in detail and "'half'" in detail and "80%" in detail


POOLS = [Pool(instance_type=t, availability_zone="us-east-1a", spot_hourly=price)
         for t, price in (("m5.large", 0.04), ("m5a.large", 0.03), ("m6i.large", 0.05))]


def test_pools_above_the_max_price_are_left_out_in_order():
    assert within_max_price(POOLS, None) == POOLS
    assert [p.instance_type for p in within_max_price(POOLS, 0.04)] == ["m5.large", "m5a.large"]  # at the cap: in
    assert within_max_price(POOLS, 0.029) == []


def test_no_pool_within_the_max_price_names_the_cap_and_the_cheapest_pool():
    reason, detail = above_max_price(POOLS, 0.0192, MaxPrice(20.0, percent=True))
    assert reason == "above_max_price"
    assert "0.0192 USD/h (20% of on-demand)" in detail and "m5a.large/us-east-1a" in detail and "0.03" in detail


# --- the interruption behaviour ------------------------------------------------------------------------------
def test_the_tag_overrides_the_requests_behavior():
    assert requested_behavior({}, "stop") == "stop"
    assert requested_behavior({INTERRUPTION_BEHAVIOR_TAG: " Hibernate "}, "terminate") == "hibernate"
    reason, detail = requested_behavior({INTERRUPTION_BEHAVIOR_TAG: "pause"}, "terminate")
    assert reason == "invalid_interruption_behavior_tag"
    assert "'pause'" in detail and "terminate, stop, hibernate" in detail


@pytest.mark.parametrize(("requested", "mode", "hibernation", "behavior"), [
    ("terminate", "stateless", False, "terminate"),
    ("stop", "stateless", False, "stop"),
    ("hibernate", "stateless", True, "hibernate"),
    ("terminate", "stateful", False, "stop"),  # its disks must survive the interruption
    ("stop", "stateful", True, "stop"),
    ("hibernate", "stateful", True, "hibernate"),
])
def test_the_behavior_each_mode_gets(requested, mode, hibernation, behavior):
    assert interruption_behavior(requested, mode, hibernation) == behavior


@pytest.mark.parametrize("mode", ["stateless", "stateful"])
def test_hibernate_needs_an_original_launched_with_hibernation(mode):
    reason, detail = interruption_behavior("hibernate", mode, hibernation=False)
    assert reason == "hibernation_not_configured" and "HibernationOptions" in detail


def test_a_records_spot_terms_keep_a_stateful_moves_disks():
    record = InstanceRecord(instance_id="i-0123456789abcdef0", instance_type="m5.large",
                            availability_zone="us-east-1a", eligible=True, max_price=0.05)
    assert record.spot_terms == SpotTerms(interruption_behavior="terminate", max_price=0.05)
    record.mode = "stateful"  # a record planned before the behaviour was stored says terminate: still stops
    assert record.spot_terms == SpotTerms(interruption_behavior="stop", max_price=0.05)


# --- the request fields --------------------------------------------------------------------------------------
def test_the_request_takes_a_max_price_as_text_or_number_and_keeps_its_canonical_text():
    assert parse_request({}).max_price is None and parse_request({}).interruption_behavior == "terminate"
    assert parse_request({"spot_max_price": 0.05}).spot_max_price == "0.05"
    assert parse_request({"spot_max_price": " 80% "}).max_price == MaxPrice(80.0, percent=True)
    stored = parse_request({"spot_max_price": "75%", "interruption_behavior": "hibernate"}).model_dump()
    assert parse_request(stored).spot_max_price == "75%" and parse_request(stored).interruption_behavior == "hibernate"


@pytest.mark.parametrize(("field", "value"), [
    ("spot_max_price", "cheap"), ("spot_max_price", 0), ("spot_max_price", -1), ("spot_max_price", "0%"),
    ("spot_max_price", "120%"), ("spot_max_price", True), ("spot_max_price", [1]),
    ("interruption_behavior", "pause"), ("interruption_behavior", None), ("interruption_behavior", "STOP"),
])
def test_a_bad_value_is_an_invalid_request_naming_the_field(field, value):
    with pytest.raises(InvalidMigrationRequest, match=f"invalid migration request: {field}: "):
        parse_request({field: value})
