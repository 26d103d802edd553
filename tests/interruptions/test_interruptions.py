"""Interruption warnings and rebalance recommendations, through the deployed rule patterns
into the replacement Lambda on the embedded runtime."""

import threading

import pytest
from ec2_events import ec2_event, launched_replacements, sample

from spot_core.domain.errors import InvalidEvent
from spot_core.entry import wiring
from spot_core.entry.event_rules import RULES
from spotctl.local.ec2_events import matching_rules
from spotctl.local.lambdas import FakeContext

STORM = 40  # warnings in the end-to-end storm


def serving(rt) -> set[str]:
    return rt.fleet.snapshot()["serving"]


def replace_context() -> FakeContext:
    return FakeContext("replace", "arn:aws:lambda:us-east-1:123456789012:function:replace", 90, 512)


@pytest.mark.parametrize("name, rule", [
    ("ec2_spot_interruption_warning.json", "SpotInterruptionWarning"),
    ("ec2_rebalance_recommendation.json", "RebalanceRecommendation"),
    ("ec2_malformed_interruption.json", "SpotInterruptionWarning"),
])
def test_deployed_rule_patterns_match_the_sample_events(name, rule):
    assert matching_rules(sample(name)) == [rule]


def test_other_events_match_no_rule():
    assert matching_rules(sample("ec2_state_change_not_matched.json")) == []
    spoofed = sample("ec2_spot_interruption_warning.json") | {"source": "my.app"}
    assert matching_rules(spoofed) == []
    assert set(RULES) == {"SpotInterruptionWarning", "RebalanceRecommendation"}


def test_unmanaged_instance_is_ignored(rt):
    before = rt.fleet.snapshot()
    [delivery] = rt.put_ec2_event(ec2_event(rt.unmanaged[0]))
    assert delivery["result"]["action"] == "ignored"
    assert rt.fleet.snapshot() == before
    assert '"EventsIgnored"' in rt.lambdas.invocations[-1].logs  # the EMF metric


def test_interruption_launches_a_replacement_in_another_pool_and_swaps_target_groups(rt):
    victim = rt.managed[0]
    [delivery] = rt.put_ec2_event(ec2_event(victim))
    result = delivery["result"]

    assert result["action"] == "replaced" and result["market"] == "spot"
    assert (result["instance_type"], result["availability_zone"]) != ("m5.large", "us-east-1a")
    new = rt.client("ec2").describe_instances(InstanceIds=[result["replacement_id"]])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in new["Tags"]}
    assert tags["spot-migration:managed"] == "true" and tags["spot-migration:succeeds"] == victim
    assert new["InstanceLifecycle"] == "spot"
    now_serving = serving(rt)
    assert result["replacement_id"] in now_serving and victim not in now_serving
    record = rt.wiring.claims.replacement_for(victim)
    assert record["status"] == "swapped" and record["replacement_id"] == result["replacement_id"]
    assert ("m5.large", "us-east-1a") in rt.wiring.pool_memory.recent_interruptions()
    assert any(victim in (n["message"] or "") for n in rt.notifications())
    assert result["seconds_from_event_to_launch"] > 0


def test_capacity_refused_everywhere_falls_back_to_on_demand(rt):
    rt.market.refuse()
    [delivery] = rt.put_ec2_event(ec2_event(rt.managed[1]))
    result = delivery["result"]
    assert result["market"] == "on-demand" and result["refused_pools"]
    new = rt.client("ec2").describe_instances(InstanceIds=[result["replacement_id"]])["Reservations"][0]["Instances"][0]
    assert "InstanceLifecycle" not in new
    assert result["replacement_id"] in serving(rt)


def test_the_same_event_delivered_twice_launches_once(rt):
    event = ec2_event(rt.managed[0])
    first, second = rt.put_ec2_event(event)[0], rt.put_ec2_event(event)[0]
    assert first["result"]["action"] == "replaced"
    assert second["result"]["action"] == "duplicate"
    assert len(launched_replacements(rt)) == 1


def test_concurrent_duplicates_launch_once(rt, monkeypatch):
    """Two copies of one event and a different event for the same instance, at once."""
    for k, v in rt.lambdas.environment.items():
        monkeypatch.setenv(k, v)
    wiring.reset()
    handler = rt.lambdas.handler("spot-migration-replace_interrupted")
    event = ec2_event(rt.managed[2])
    other = ec2_event(rt.managed[2])
    results, barrier = [], threading.Barrier(3)

    def deliver(e):
        barrier.wait()
        results.append(handler(e, replace_context())["action"])

    threads = [threading.Thread(target=deliver, args=(e,)) for e in (event, event, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("replaced") == 1, results
    assert len(launched_replacements(rt)) == 1


def test_rebalance_prewarms_and_the_interruption_swaps_without_a_second_launch(rt):
    victim = rt.managed[0]
    [rebalance] = rt.put_ec2_event(ec2_event(victim, "rebalance"))
    assert rebalance["result"]["action"] == "prewarmed"
    prewarmed = rebalance["result"]["replacement_id"]
    assert {victim, prewarmed} <= serving(rt), "the old instance keeps serving next to the prewarmed one"

    [warning] = rt.put_ec2_event(ec2_event(victim))
    assert warning["result"] == {"action": "swapped_prewarmed", "instance_id": victim, "replacement_id": prewarmed,
                                 "launched": False}
    assert len(launched_replacements(rt)) == 1
    assert victim not in serving(rt) and prewarmed in serving(rt)


def test_rebalance_policy_ignore_launches_nothing(rt):
    victim = rt.managed[1]
    rt.client("ec2").create_tags(Resources=[victim], Tags=[{"Key": "spot-migration:on-rebalance", "Value": "ignore"}])
    [delivery] = rt.put_ec2_event(ec2_event(victim, "rebalance"))
    assert delivery["result"]["action"] == "ignored_by_policy"
    assert launched_replacements(rt) == []


def test_malformed_event_is_rejected_launches_nothing_and_lands_in_the_dlq(rt, monkeypatch):
    before = rt.fleet.snapshot()
    [delivery] = rt.put_ec2_event(sample("ec2_malformed_interruption.json"))
    assert delivery["error"]["errorType"] == "InvalidEvent"
    assert "not an EC2 instance id" in delivery["error"]["errorMessage"]
    assert rt.fleet.snapshot() == before
    [dead] = rt.dead_letters()
    assert dead["responsePayload"]["errorType"] == "InvalidEvent"
    assert dead["requestPayload"]["id"] == sample("ec2_malformed_interruption.json")["id"]

    for k, v in rt.lambdas.environment.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(InvalidEvent, match="detail.instance-id"):
        rt.lambdas.handler("spot-migration-replace_interrupted")(
            sample("ec2_malformed_interruption.json"), replace_context())


def test_a_storm_of_warnings_gets_one_replacement_each(rt):
    """End to end through the rules and the function; the 200-warning storm with duplicates is a
    service test on fakes (tests/services/test_interruptions.py)."""
    storm = rt.fleet.launch("c5.large", "batch-spot", "us-east-1b", {"spot-migration:managed": "true"}, count=STORM,
                            market="spot")
    for iid in storm:
        rt.wiring.registry.register(iid, "storm fleet")
    handled = [d for iid in storm for d in rt.put_ec2_event(ec2_event(iid))]

    assert [d.get("error") for d in handled if "error" in d] == []
    assert sum(d["result"]["action"] == "replaced" for d in handled) == STORM
    succeeded = {i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]}["spot-migration:succeeds"]
                 for i in launched_replacements(rt)}
    assert sorted(succeeded.values()) == sorted(storm)
    assert rt.dead_letters() == []


def test_sweeper_reports_a_planted_orphan_and_nothing_else(rt):
    rt.lambdas.environment["SWEEPER_GRACE_SECONDS"] = "0"
    planted = rt.fleet.launch("m5.large", "forgotten", "us-east-1c", {"spot-migration:managed": "true"}, market="spot",
                              register=False)
    response = rt.client("lambda").invoke(FunctionName="spot-migration-sweep_orphans", Payload=b"{}")
    result = __import__("json").loads(response["Payload"].read())
    assert [o["instance_id"] for o in result["orphans"]] == planted
    assert rt.fleet.snapshot()["spot"] >= set(planted), "report mode terminates nothing"
    assert any("orphans" in (n["subject"] or "") for n in rt.notifications())
