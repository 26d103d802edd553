"""A replacement's Spot terms through the real state machine on the embedded runtime, whose Spot
market refuses a launch whose max price is below the pool's price (SpotMaxPriceTooLow), as EC2
does:

- the request's max price (a share of on-demand) keeps the pools above it out of the plan; an
  instance whose tag caps it below every pool, or asks to hibernate without hibernation, is
  excluded with why; a pool whose price rose above the cap after the plan refuses the launch and
  the next pool serves; every Spot request carries the cap and the behaviour (stop: persistent);
- an interruption of such a replacement launches one within the cap, and cancels the persistent
  request of the instance it replaces, so EC2 never starts it again next to its replacement;
- a bad value of the new fields is a clear InvalidMigrationRequest that changes nothing.
"""

from __future__ import annotations

import json

import pytest
from checks import records

from spot_core.domain.tags import INTERRUPTION_BEHAVIOR_TAG, MAX_PRICE_TAG
from spotctl.local.runtime import LocalRuntime

pytestmark = pytest.mark.usefixtures("quiet_moto")

AZ = "us-east-1b"
ON_DEMAND = 0.096  # m5.large
CAP = round(0.45 * ON_DEMAND, 6)  # "45%": 0.0432 USD/h
PRICES = {"m5.large": 0.070, "m6a.large": 0.028, "m5a.large": 0.031, "m6i.large": 0.035, "m7i.large": 0.043,
          "m5n.large": 0.045, "r7i.large": 0.047}  # in AZ: the instances' own type costs more than the cap


@pytest.fixture(scope="module")
def rt():
    with LocalRuntime(seed=31) as runtime:
        runtime.fleet.seed_fleet(3, stateful=0, burst=0, cpu_days=2)  # the ALB's traffic: the gates' baseline
        for instance_type, price in PRICES.items():
            runtime.market.set_price(instance_type, AZ, price)
        runtime.web = runtime.fleet.launch("m5.large", "web", AZ, count=2)
        runtime.capped = runtime.fleet.launch("m5.large", "web-capped", AZ, {MAX_PRICE_TAG: "0.02"})[0]
        runtime.hibernating = runtime.fleet.launch("m5.large", "web-hib", AZ,
                                                   {INTERRUPTION_BEHAVIOR_TAG: "hibernate"})[0]
        runtime.fleet.write_cpu_history(dict.fromkeys([*runtime.web, runtime.capped, runtime.hibernating], "stable"),
                                        days=2)
        yield runtime


def request(rt: LocalRuntime, **more) -> dict:
    return {"quality": {"target_group_arn": rt.fleet.target_group_arn}, "waves": [100], "bake_seconds": [0],
            "selector": {"instance_ids": [*rt.web, rt.capped, rt.hibernating]}, **more}


def spot_request(rt: LocalRuntime, instance_id: str) -> dict:
    """The Spot request EC2 made for the instance; {} once cancelled (DescribeSpotInstanceRequests lists it no more)."""
    described = rt.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    request_id = described.get("SpotInstanceRequestId")
    assert request_id, f"{instance_id} names no Spot request"
    found = rt.client("ec2").describe_spot_instance_requests()["SpotInstanceRequests"]
    return next((r for r in found if r["SpotInstanceRequestId"] == request_id), {})


def state(rt: LocalRuntime, instance_id: str) -> str:
    described = rt.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return described["State"]["Name"]


def test_the_max_price_keeps_pools_out_of_the_plan_and_every_launch_carries_it(rt):
    mid = rt.start_migration(request(rt, spot_max_price="45%", interruption_behavior="stop"), "capped")
    rt.wait_for_status(mid, "awaiting_approval")
    plan = records(rt, mid)
    for iid in rt.web:  # m5.large (0.07) and the pools above 0.0432 are not planned
        assert plan[iid].eligible and plan[iid].max_price == CAP and plan[iid].interruption_behavior == "stop"
        assert [p.instance_type for p in plan[iid].pools] == ["m6a.large", "m5a.large", "m6i.large", "m7i.large"]
    assert plan[rt.capped].exclusion_reason == "above_max_price"
    assert "0.02 USD/h" in plan[rt.capped].exclusion_detail and "m6a.large" in plan[rt.capped].exclusion_detail
    assert plan[rt.hibernating].exclusion_reason == "hibernation_not_configured"

    rt.market.set_price("m6a.large", AZ, 0.050)  # its price rises above the cap before the wave launches
    rt.decide(mid, True)
    result = rt.wait(mid)

    assert result.status == "SUCCEEDED", result.cause
    moved = records(rt, mid)
    assert ("m6a.large", AZ, "SpotMaxPriceTooLow") in rt.market.refused
    for iid in rt.web:
        assert moved[iid].status == "migrated" and moved[iid].replacement_type == "m5a.large"
        assert f"m6a.large/{AZ}: SpotMaxPriceTooLow" in " ".join(moved[iid].attempts)
        launched = spot_request(rt, moved[iid].replacement)
        assert (float(launched["SpotPrice"]), launched["Type"], launched["InstanceInterruptionBehavior"]) == (
            CAP, "persistent", "stop")
    assert {state(rt, i) for i in (rt.capped, rt.hibernating)} == {"running"}  # excluded: untouched

    # EC2 takes one replacement back (stops it, as its request says): one new instance within the cap
    interrupted = moved[rt.web[0]].replacement
    rt.simulate(interrupted, "interruption")
    follows = records(rt, mid)[rt.web[0]]
    assert follows.replacement_id != interrupted
    successor = spot_request(rt, follows.replacement)
    assert float(successor["SpotPrice"]) == CAP and successor["InstanceInterruptionBehavior"] == "stop"
    # its persistent request was cancelled when it was replaced: nothing starts it again
    assert spot_request(rt, interrupted) == {} and state(rt, interrupted) in ("stopped", "terminated")
    live = [i for i in (interrupted, follows.replacement) if state(rt, i) in ("pending", "running")]
    assert live == [follows.replacement]


BAD_FIELDS = {
    "max-price-words": ({"spot_max_price": "cheap"}, "spot_max_price"),
    "max-price-zero": ({"spot_max_price": 0}, "spot_max_price"),
    "max-price-negative": ({"spot_max_price": "-0.05"}, "spot_max_price"),
    "max-price-zero-percent": ({"spot_max_price": "0%"}, "spot_max_price"),
    "max-price-above-on-demand": ({"spot_max_price": "150%"}, "spot_max_price"),
    "max-price-bool": ({"spot_max_price": True}, "spot_max_price"),
    "max-price-object": ({"spot_max_price": {"usd": 0.05}}, "spot_max_price"),
    "behavior-unknown": ({"interruption_behavior": "pause"}, "interruption_behavior"),
    "behavior-null": ({"interruption_behavior": None}, "interruption_behavior"),
}


@pytest.mark.parametrize(("fields", "field"), BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_bad_spot_terms_field_is_invalid_and_changes_nothing(rt, fields, field):
    before = rt.fleet.snapshot()
    mid = f"bad-terms-{len(rt.lambdas.invocations)}"
    result = rt.run_migration(request(rt, approval={"auto_approve": True}, **fields), migration_id=mid)

    assert (result.status, result.error) == ("FAILED", "InvalidMigrationRequest"), result.cause
    message = json.loads(result.cause)["errorMessage"]
    assert message.startswith(f"invalid migration request: {field}: "), message
    steps = [e["stateEnteredEventDetails"]["name"] for e in rt.history(mid) if "stateEnteredEventDetails" in e]
    assert steps == ["Analyze"]
    assert rt.table.query(KeyConditionExpression="pk = :pk",
                          ExpressionAttributeValues={":pk": f"MIGRATION#{mid}"})["Items"] == []
    assert rt.fleet.snapshot() == before
