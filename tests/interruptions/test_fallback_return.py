"""On the embedded runtime: an interruption with no Spot capacity anywhere leaves an on-demand
fallback; once capacity is back, the scheduled job returns it to Spot (make-before-break, the
migration record following it); while it is not, the fallback is left alone."""

import json
from pathlib import Path

import pytest

from spotctl.local.runtime import LocalRuntime

EVENT = json.loads((Path(__file__).resolve().parents[2] / "events" / "return_fallbacks.json").read_text())


@pytest.fixture
def rt():
    """A completed migration of two web servers, one of whose Spot instances EC2 then interrupts
    while no pool has Spot capacity: its on-demand fallback serves, and the record follows it."""
    with LocalRuntime(seed=17) as runtime:
        web = [*runtime.fleet.launch("m5.large", "web", "us-east-1a"), *runtime.fleet.launch("m5.large", "web",
                                                                                          "us-east-1b")]
        runtime.fleet.write_cpu_history(dict.fromkeys(web, "stable"), days=2)
        moved = runtime.run_migration({"approval": {"auto_approve": True}, "waves": [100], "bake_seconds": [60],
                                       "selector": {"instance_ids": web}})
        assert moved.status == "SUCCEEDED", moved.cause
        runtime.migration_id = moved.migration_id
        [runtime.original, *_] = sorted(r.instance_id for r in runtime.records(moved.migration_id)
                                        if r.status == "migrated")
        runtime.market.refuse()  # no Spot capacity anywhere
        runtime.simulate(record(runtime).replacement_id, "interruption")
        assert record(runtime).replacement_market == "on-demand"
        runtime.fallback = record(runtime).replacement_id
        runtime.lambdas.environment["FALLBACK_RETURN_MIN_AGE_SECONDS"] = "0"  # no need to wait an hour
        yield runtime


def record(rt):
    return next(r for r in rt.records(rt.migration_id) if r.instance_id == rt.original)


def return_fallbacks(rt) -> dict:
    response = rt.client("lambda").invoke(FunctionName="spot-migration-return_fallbacks", Payload=json.dumps(EVENT))
    assert "FunctionError" not in response
    return json.loads(response["Payload"].read())


def instance(rt, instance_id: str) -> dict:
    [reservation] = rt.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservation["Instances"][0]


def serving(rt) -> set[str]:
    health = rt.client("elbv2").describe_target_health(TargetGroupArn=rt.fleet.target_group_arn)
    return {d["Target"]["Id"] for d in health["TargetHealthDescriptions"] if d["TargetHealth"]["State"] == "healthy"}


def test_capacity_back_the_fallback_returns_to_spot_and_the_record_follows(rt):
    assert instance(rt, rt.fallback).get("InstanceLifecycle") is None and rt.fallback in serving(rt)
    rt.market.refusals.clear()  # Spot capacity is back

    report = return_fallbacks(rt)

    [returned] = report["returned"]
    new = returned["replacement_id"]
    assert returned["instance_id"] == rt.fallback and returned["monthly_saving"] > 0
    assert instance(rt, new)["InstanceLifecycle"] == "spot"
    assert instance(rt, rt.fallback)["State"]["Name"] in ("shutting-down", "terminated")
    assert new in serving(rt) and rt.fallback not in serving(rt)
    followed = record(rt)
    assert (followed.replacement_id, followed.replacement_market) == (new, "spot")
    assert followed.replacement_spot_hourly == returned["spot_hourly"]
    assert [n for n in rt.notifications() if "fallback-returned" in (n["subject"] or n["message"])]
    assert return_fallbacks(rt)["fallbacks"] == 0  # nothing more to do


def test_no_capacity_yet_the_fallback_is_left_alone(rt):
    report = return_fallbacks(rt)

    assert report["returned"] == []
    assert [(a["instance_id"], a["reason"]) for a in report["left_alone"]] == [(rt.fallback, "spot_capacity_refused")]
    assert instance(rt, rt.fallback)["State"]["Name"] == "running" and rt.fallback in serving(rt)
    assert (record(rt).replacement_id, record(rt).replacement_market) == (rt.fallback, "on-demand")
    assert not [n for n in rt.notifications() if "fallback-returned" in (n["subject"] or n["message"])]
