"""Interruption warnings, rebalance recommendations and reclaims without a warning (state
changes), through the deployed rule patterns into the replacement Lambda on the embedded
runtime; crashes after the launch resumed by the retries."""

import json
import threading

import pytest
from ec2_events import ec2_event, launched_replacements, sample, state_change

from spot_core.adapters.elbv2 import ElbTargets
from spot_core.domain.errors import InvalidEvent, TransientAwsError
from spot_core.entry import wiring
from spot_core.entry.event_rules import RULES
from spotctl.local.ec2_events import REPLACER, matching_rules
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


@pytest.mark.parametrize("state", ["stopping", "stopped", "shutting-down", "terminated"])
def test_a_state_change_that_may_be_a_reclaim_matches_the_reclaim_rule(state):
    assert matching_rules(state_change("i-0b662ef9931388ba0", state)) == ["InstanceReclaimed"]


def test_other_events_match_no_rule():
    for state in ("pending", "running"):
        assert matching_rules(state_change("i-0b662ef9931388ba0", state)) == []
    spoofed = sample("ec2_spot_interruption_warning.json") | {"source": "my.app"}
    assert matching_rules(spoofed) == []
    assert set(RULES) == {"SpotInterruptionWarning", "RebalanceRecommendation", "InstanceReclaimed"}


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


# --- reclaimed without a warning ----------------------------------------------------------------------------------
def test_a_reclaim_without_a_warning_gets_exactly_one_replacement(rt):
    """A replacement the product launched (after a rebalance 'replace') is reclaimed with no warning:
    the load balancer has let it go already; its target groups are on its predecessor's claim."""
    rt.client("ec2").create_tags(Resources=[rt.managed[1]],
                                 Tags=[{"Key": "spot-migration:on-rebalance", "Value": "replace"}])
    [rebalanced] = rt.put_ec2_event(ec2_event(rt.managed[1], "rebalance"))
    victim = rebalanced["result"]["replacement_id"]
    assert victim in serving(rt)

    outcome = rt.simulate(victim, "reclaim")

    first, second = outcome["deliveries"]
    assert [d["rule"] for d in outcome["deliveries"]] == ["InstanceReclaimed"] * 2
    assert [d["event"]["detail-type"] for d in outcome["deliveries"]] == ["EC2 Instance State-change Notification"] * 2
    assert first["result"]["action"] == "replaced" and first["attempts"] == 1
    assert (second["result"]["action"], second["result"]["replacement_id"]) == (
        "already_replaced", first["result"]["replacement_id"])
    new = first["result"]["replacement_id"]
    assert sorted(i["InstanceId"] for i in launched_replacements(rt)) == sorted([victim, new])
    assert new in serving(rt) and victim not in serving(rt)
    assert rt.wiring.claims.replacement_for(victim)["kind"] == "state-change"
    assert rt.wiring.registry.statuses([new]) == {new: "active"}
    assert any("state-change-replaced" in (n["subject"] or "") for n in rt.notifications())
    assert rt.dead_letters() == []


def test_the_reclaim_after_a_warning_and_the_product_s_own_terminations_launch_nothing_more(rt):
    victim, mine = rt.managed[0], rt.managed[2]
    warned = rt.simulate(victim, "interruption")
    [replaced] = warned["deliveries"]
    assert [d["result"]["action"] for d in warned["reclaim_deliveries"]] == ["already_replaced"] * 2

    rt.client("ec2").terminate_instances(InstanceIds=[mine])  # as a rollback or the sweeper does
    [ignored] = rt.put_ec2_event(state_change(mine, "terminated"))
    [unmanaged] = rt.put_ec2_event(state_change(rt.unmanaged[0], "stopped"))

    assert replaced["result"]["action"] == "replaced"
    assert ignored["result"]["action"] == "ignored" and "Client.UserInitiatedShutdown" in ignored["result"]["reason"]
    assert unmanaged["result"]["action"] == "ignored"
    assert [i["InstanceId"] for i in launched_replacements(rt)] == [replaced["result"]["replacement_id"]]
    assert '"EventsIgnored"' not in rt.lambdas.invocations[-1].logs  # every state change in the account: no metric


# --- a crash after the launch ---------------------------------------------------------------------------------------
def test_a_registration_error_after_the_launch_is_retried_and_the_takeover_resumed(rt, monkeypatch):
    victim = rt.managed[0]
    register, failures = ElbTargets.register, []

    def refuses_once(self, groups):
        if not failures:
            failures.append(groups)
            raise TransientAwsError("elasticloadbalancing:RegisterTargets: Throttling")
        return register(self, groups)

    monkeypatch.setattr(ElbTargets, "register", refuses_once)
    [delivery] = rt.put_ec2_event(ec2_event(victim))

    result = delivery["result"]
    assert failures and delivery["attempts"] == 2
    assert (result["action"], result["resumed"]) == ("replaced", True)
    [new] = launched_replacements(rt)
    assert result["replacement_id"] == new["InstanceId"] and new["InstanceId"] in serving(rt)
    assert rt.wiring.registry.statuses([new["InstanceId"]]) == {new["InstanceId"]: "active"}
    assert rt.wiring.claims.replacement_for(victim)["status"] == "swapped"
    assert sum(victim in (n["message"] or "") for n in rt.notifications()) == 1
    assert rt.dead_letters() == []


def test_an_invocation_killed_right_after_run_instances_is_resumed_by_its_retry(rt):
    """Timed out between RunInstances and recording the instance: the retry finds the instance
    by its tag (moto keeps no client-token idempotency, so launching again would make a second)."""
    [warm] = rt.put_ec2_event(ec2_event(rt.managed[2]))  # where RunInstances falls among the mutating calls
    assert warm["result"]["action"] == "replaced"
    k = rt.lambdas.mutating_calls(REPLACER)[-1].actions.index("ec2:RunInstances") + 1
    victim = rt.managed[0]
    rt.lambdas.crash_after(REPLACER, k, when=lambda event: victim in json.dumps(event))  # the queue's batch of it

    [delivery] = rt.put_ec2_event(ec2_event(victim))

    [crashed] = rt.lambdas.mutating_calls(REPLACER, crashed=True)
    assert crashed.actions[-1] == "ec2:RunInstances"
    result = delivery["result"]
    assert delivery["attempts"] == 2 and (result["action"], result["resumed"]) == ("replaced", True)
    new = [i["InstanceId"] for i in launched_replacements(rt) if i["InstanceId"] != warm["result"]["replacement_id"]]
    assert new == [result["replacement_id"]] and result["replacement_id"] in serving(rt)
    assert rt.wiring.registry.statuses(new) == {new[0]: "active"}
    assert any(victim in (n["message"] or "") for n in rt.notifications())


def test_retries_exhausted_after_the_launch_reach_the_dead_letter_queue_and_the_replacement_is_kept(rt, monkeypatch):
    victim = rt.managed[1]

    def refuses(self, groups):
        raise TransientAwsError("elasticloadbalancing:RegisterTargets: Throttling")

    monkeypatch.setattr(ElbTargets, "register", refuses)
    [delivery] = rt.put_ec2_event(ec2_event(victim))

    assert delivery["error"]["errorType"] == "TransientAwsError"
    [dead] = rt.dead_letters()
    assert dead["requestPayload"]["detail"]["instance-id"] == victim
    [new] = [i["InstanceId"] for i in launched_replacements(rt)]
    assert rt.wiring.registry.statuses([new]) == {new: "active"}
    assert rt.wiring.claims.get(victim)["status"] == "launched"

    rt.lambdas.environment.update({"SWEEPER_GRACE_SECONDS": "0", "SWEEPER_MODE": "terminate"})
    response = rt.client("lambda").invoke(FunctionName="spot-migration-sweep_orphans", Payload=b"{}")
    swept = json.loads(response["Payload"].read())
    assert new not in [o["instance_id"] for o in swept["orphans"]]
    assert new in rt.fleet.snapshot()["spot"]
