"""The embedded runtime's EC2 Auto Scaling (spotctl/local/autoscaling.py), through the API the group
migration calls: mixed instances launches (On-Demand base, percentage above it rounded up in favour
of On-Demand, price-capacity-optimized Spot over the overrides and zones), instance refresh (bounds,
SkipMatching, one at a time, cancel, rollback), Capacity Rebalancing, scale-out during a refresh."""

import pytest
from botocore.exceptions import ClientError

from spot_core.domain.tags import OPT_IN_TAG

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
OVERRIDES = ("m5.large", "m6i.large", "m5a.large")
WARMUP = 60


@pytest.fixture
def rt():
    from spotctl.local.runtime import LocalRuntime

    with LocalRuntime(seed=5) as runtime:
        yield runtime


def mixed_policy(template, on_demand_percentage, base=0, overrides=OVERRIDES):
    return {"LaunchTemplate": {"LaunchTemplateSpecification": template,
                               "Overrides": [{"InstanceType": t} for t in overrides]},
            "InstancesDistribution": {"OnDemandBaseCapacity": base,
                                      "OnDemandPercentageAboveBaseCapacity": on_demand_percentage,
                                      "SpotAllocationStrategy": "price-capacity-optimized",
                                      "OnDemandAllocationStrategy": "prioritized"}}


def describe(rt, name):
    return rt.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def members(rt, name):
    """Instance id -> what the group and EC2 say of it."""
    listed = {i["InstanceId"]: i for i in describe(rt, name)["Instances"]}
    if not listed:
        return {}
    reservations = rt.client("ec2").describe_instances(InstanceIds=list(listed))["Reservations"]
    return {i["InstanceId"]: {
        "market": i.get("InstanceLifecycle", "on-demand"), "type": i["InstanceType"],
        "zone": i["Placement"]["AvailabilityZone"], "state": listed[i["InstanceId"]]["LifecycleState"],
        "template": listed[i["InstanceId"]].get("LaunchTemplate"), "request": i.get("SpotInstanceRequestId"),
        "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])},
        "configuration": listed[i["InstanceId"]].get("LaunchConfigurationName"),
    } for r in reservations for i in r["Instances"]}


def markets(found):
    return sorted(m["market"] for m in found.values())


def refresh_of(rt, name, refresh_id):
    return rt.client("autoscaling").describe_instance_refreshes(
        AutoScalingGroupName=name, InstanceRefreshIds=[refresh_id])["InstanceRefreshes"][0]


def start_refresh(rt, name, maximum=150, **extra):
    preferences = {"MinHealthyPercentage": 100, "MaxHealthyPercentage": maximum, "SkipMatching": True,
                   "InstanceWarmup": WARMUP, **extra.pop("preferences", {})}
    return rt.client("autoscaling").start_instance_refresh(
        AutoScalingGroupName=name, Strategy="Rolling", Preferences=preferences, **extra)["InstanceRefreshId"]


def run_refresh(rt, name, refresh_id, desired, step=10, limit=3600):
    """Let time pass until the refresh ends, checking the group never has fewer than `desired`
    members InService; the largest group seen."""
    largest = 0
    for _ in range(limit // step):
        found = members(rt, name)
        assert sum(m["state"] == "InService" for m in found.values()) >= desired
        largest = max(largest, len(found))
        if refresh_of(rt, name, refresh_id)["Status"] not in ("Pending", "InProgress", "Cancelling",
                                                               "RollbackInProgress", "Baking"):
            return largest
        rt.advance(step)
    raise AssertionError("the refresh did not end")


def error_code(call, **kwargs):
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return raised.value.response["Error"]["Code"]


# --- mixed instances launches ---------------------------------------------------------------------------
@pytest.mark.parametrize(("desired", "base", "percentage", "on_demand"), [
    (10, 10, 50, 10), (20, 10, 50, 15), (10, 0, 60, 6), (10, 0, 0, 0), (10, 12, 0, 10), (20, 12, 0, 12),  # AWS's table
    (3, 0, 50, 2), (5, 1, 30, 3), (4, 0, 10, 1),  # fractions round up, in favour of On-Demand
])
def test_mixed_launches_take_the_base_then_the_percentage_above_it_rounded_up(rt, desired, base, percentage,
                                                                             on_demand):
    template = rt.fleet.seed_group("seed", 0, cpu_days=0)["LaunchTemplate"]
    rt.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="mixed", MinSize=0, MaxSize=40, DesiredCapacity=desired,
        VPCZoneIdentifier=",".join(rt.fleet.subnets.values()),
        MixedInstancesPolicy=mixed_policy(template, percentage, base))
    assert markets(members(rt, "mixed")) == ["on-demand"] * on_demand + ["spot"] * (desired - on_demand)


def test_spot_members_are_spot_instances_spread_over_the_zones_in_the_cheapest_pools(rt):
    for zone in ZONES:
        rt.market.set_price("m6i.large", zone, 0.01)  # the cheapest override everywhere
    group = rt.fleet.seed_group("web", 0, register=True, tags={"cost-center": "42"}, cpu_days=0)
    autoscaling = rt.client("autoscaling")
    autoscaling.create_or_update_tags(Tags=[{"ResourceId": "web", "ResourceType": "auto-scaling-group",
                                             "Key": "private", "Value": "x", "PropagateAtLaunch": False}])
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="web", CapacityRebalance=True, DesiredCapacity=7,
                                          MixedInstancesPolicy=mixed_policy(group["LaunchTemplate"], 50, base=1))

    found = members(rt, "web")
    assert markets(found) == ["on-demand"] * 4 + ["spot"] * 3  # 1 + ceil(50 % of 6)
    assert sorted(m["zone"] for m in found.values()) == sorted(ZONES * 2 + ("us-east-1a",))  # 3/2/2
    spot = [m for m in found.values() if m["market"] == "spot"]
    assert {m["type"] for m in spot} == {"m6i.large"} and all(m["request"] for m in spot)
    assert {m["type"] for m in found.values() if m["market"] == "on-demand"} == {"m5.large"}  # prioritized
    assert all(m["tags"]["aws:autoscaling:groupName"] == "web" and m["tags"][OPT_IN_TAG] == "true"
               and m["tags"]["cost-center"] == "42" and "private" not in m["tags"] for m in found.values())
    assert all(m["state"] == "InService" and m["template"]["Version"] == "1" for m in found.values())
    targets = rt.client("elbv2").describe_target_health(TargetGroupArn=rt.fleet.target_group_arn)
    assert {t["Target"]["Id"] for t in targets["TargetHealthDescriptions"]} == set(found)

    described = describe(rt, "web")
    assert described["CapacityRebalance"] is True and "LaunchTemplate" not in described  # in the policy only
    assert described["MixedInstancesPolicy"]["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 50


def test_a_refused_spot_pool_makes_the_group_launch_the_other_overrides(rt):
    for zone in ZONES:
        rt.market.set_price("m6i.large", zone, 0.01)
    rt.market.refuse("m6i.large")  # the cheapest pool has no capacity, anywhere
    rt.market.refuse("m5a.large", "us-east-1a")
    template = rt.fleet.seed_group("web", 0, cpu_days=0)["LaunchTemplate"]
    rt.client("autoscaling").update_auto_scaling_group(AutoScalingGroupName="web", DesiredCapacity=6,
                                                       MixedInstancesPolicy=mixed_policy(template, 0))

    found = members(rt, "web")
    assert markets(found) == ["spot"] * 6 and "m6i.large" not in {m["type"] for m in found.values()}
    assert {m["type"] for m in found.values() if m["zone"] == "us-east-1a"} <= {"m5.large"}
    assert ("m6i.large", "us-east-1a", "InsufficientInstanceCapacity") in rt.market.refused


def test_a_group_without_spot_capacity_keeps_trying_and_says_why(rt):
    rt.market.refuse()  # no Spot anywhere
    template = rt.fleet.seed_group("web", 0, cpu_days=0)["LaunchTemplate"]
    autoscaling = rt.client("autoscaling")
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="web", DesiredCapacity=2,
                                          MixedInstancesPolicy=mixed_policy(template, 0))
    assert members(rt, "web") == {}  # no On-Demand fallback: the distribution says Spot
    failed = autoscaling.describe_scaling_activities(AutoScalingGroupName="web")["Activities"][0]
    assert failed["StatusCode"] == "Failed" and "InsufficientInstanceCapacity" in failed["StatusMessage"]

    rt.market.refusals.clear()  # capacity is back: the group launches what it misses
    assert markets(members(rt, "web")) == ["spot", "spot"]


# --- instance refresh ------------------------------------------------------------------------------------
def desired_mix(group, on_demand_percentage):
    return {"MixedInstancesPolicy": mixed_policy(group["LaunchTemplate"], on_demand_percentage)}


def test_a_refresh_to_half_spot_replaces_only_what_is_needed_and_keeps_the_desired_capacity_in_service(rt):
    group = rt.fleet.seed_group("web", 6, register=True, cpu_days=0)
    before = set(members(rt, "web"))
    refresh_id = start_refresh(rt, "web", maximum=150, DesiredConfiguration=desired_mix(group, 50))

    started = refresh_of(rt, "web", refresh_id)
    assert (started["Status"], started["InstancesToUpdate"], started["PercentageComplete"]) == ("InProgress", 3, 0)
    assert len(members(rt, "web")) == 9  # 150 %: the whole batch launched first, above desired

    largest = run_refresh(rt, "web", refresh_id, desired=6)
    ended = refresh_of(rt, "web", refresh_id)
    assert (ended["Status"], ended["PercentageComplete"], ended["InstancesToUpdate"]) == ("Successful", 100, 0)
    assert (ended["EndTime"] - ended["StartTime"]).total_seconds() == pytest.approx(WARMUP, abs=1)
    after = members(rt, "web")
    assert markets(after) == ["on-demand"] * 3 + ["spot"] * 3 and largest == 9
    assert len(before & set(after)) == 3  # three On-Demand members kept: only the share above 50 % replaced
    targets = rt.client("elbv2").describe_target_health(TargetGroupArn=rt.fleet.target_group_arn)
    assert {t["Target"]["Id"] for t in targets["TargetHealthDescriptions"]} == set(after)


def test_an_update_to_a_mixed_policy_moves_the_group_to_its_split_by_itself_gradually(rt):
    """UpdateAutoScalingGroup's own replacement of purchase options: a tenth of the group at a time,
    launched before the old ones go, each batch past the group's warmup (HealthCheckGracePeriod)."""
    group = rt.fleet.seed_group("web", 10, cpu_days=0)
    grace = describe(rt, "web")["HealthCheckGracePeriod"]
    rt.client("autoscaling").update_auto_scaling_group(AutoScalingGroupName="web",
                                                       MixedInstancesPolicy=mixed_policy(group["LaunchTemplate"], 50))
    seen = []
    for _ in range(5 * grace // 30 + 1):
        found = members(rt, "web")
        assert sum(m["state"] == "InService" for m in found.values()) >= 10 and len(found) <= 11
        seen.append(markets(found).count("spot"))
        rt.advance(30)
    assert markets(members(rt, "web")) == ["on-demand"] * 5 + ["spot"] * 5
    assert seen[0] == 1 and seen[grace // 30 + 1] == 2  # gradually: one more every grace period


def test_an_update_then_a_refresh_ends_at_the_split_without_going_below_desired(rt):
    """The group migration's way: the policy saved on the group, then a refresh (SkipMatching)."""
    group = rt.fleet.seed_group("web", 6, register=True, cpu_days=0)
    before = set(members(rt, "web"))
    rt.client("autoscaling").update_auto_scaling_group(AutoScalingGroupName="web", CapacityRebalance=True,
                                                       MixedInstancesPolicy=mixed_policy(group["LaunchTemplate"], 50))
    refresh_id = start_refresh(rt, "web", maximum=150)
    run_refresh(rt, "web", refresh_id, desired=6)
    assert refresh_of(rt, "web", refresh_id)["Status"] == "Successful"
    after = members(rt, "web")
    assert markets(after) == ["on-demand"] * 3 + ["spot"] * 3 and len(before & set(after)) == 3


def test_a_refresh_at_110_percent_replaces_one_instance_at_a_time(rt):
    group = rt.fleet.seed_group("web", 4, cpu_days=0)
    refresh_id = start_refresh(rt, "web", maximum=110, DesiredConfiguration=desired_mix(group, 0))
    assert len(members(rt, "web")) == 5

    rt.advance(WARMUP + 1)
    assert refresh_of(rt, "web", refresh_id)["PercentageComplete"] == 25
    assert run_refresh(rt, "web", refresh_id, desired=4) == 5
    ended = refresh_of(rt, "web", refresh_id)
    assert ended["Status"] == "Successful"
    assert (ended["EndTime"] - ended["StartTime"]).total_seconds() == pytest.approx(4 * WARMUP, abs=2)
    assert markets(members(rt, "web")) == ["spot"] * 4


def test_skip_matching_leaves_the_members_that_match_alone(rt):
    group = rt.fleet.seed_group("web", 2, cpu_days=0)
    ec2, autoscaling = rt.client("ec2"), rt.client("autoscaling")
    template_id = group["LaunchTemplate"]["LaunchTemplateId"]
    ec2.create_launch_template_version(LaunchTemplateId=template_id, SourceVersion="1",
                                       LaunchTemplateData={"InstanceType": "m5.large"})
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="web", DesiredCapacity=4,
                                          LaunchTemplate={"LaunchTemplateId": template_id, "Version": "2"})
    by_version = {i: m["template"]["Version"] for i, m in members(rt, "web").items()}
    assert sorted(by_version.values()) == ["1", "1", "2", "2"]

    refresh_id = start_refresh(rt, "web")
    assert refresh_of(rt, "web", refresh_id)["InstancesToUpdate"] == 2
    run_refresh(rt, "web", refresh_id, desired=4)
    after = members(rt, "web")
    assert {i for i, v in by_version.items() if v == "2"} <= set(after)  # the matching ones stayed
    assert sorted(m["template"]["Version"] for m in after.values()) == ["2"] * 4

    again = start_refresh(rt, "web")  # nothing left to replace: it succeeds at once
    assert (refresh_of(rt, "web", again)["Status"], set(members(rt, "web"))) == ("Successful", set(after))


def test_one_refresh_at_a_time(rt):
    group = rt.fleet.seed_group("web", 2, cpu_days=0)
    autoscaling = rt.client("autoscaling")
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="web",
                                          MixedInstancesPolicy=mixed_policy(group["LaunchTemplate"], 0))
    first = start_refresh(rt, "web")
    assert error_code(autoscaling.start_instance_refresh, AutoScalingGroupName="web") == "InstanceRefreshInProgress"
    run_refresh(rt, "web", first, desired=2)
    assert start_refresh(rt, "web") != first  # the next one is accepted once it ended


def test_cancel_stops_after_the_batch_in_flight_and_keeps_what_was_replaced(rt):
    group = rt.fleet.seed_group("web", 4, cpu_days=0)
    autoscaling = rt.client("autoscaling")
    refresh_id = start_refresh(rt, "web", maximum=125, DesiredConfiguration=desired_mix(group, 0))  # one at a time
    rt.advance(WARMUP + 1)  # the first replaced, the second launched

    assert autoscaling.cancel_instance_refresh(AutoScalingGroupName="web")["InstanceRefreshId"] == refresh_id
    assert refresh_of(rt, "web", refresh_id)["Status"] == "Cancelling"
    rt.advance(WARMUP + 1)
    assert refresh_of(rt, "web", refresh_id)["Status"] == "Cancelled"
    kept = members(rt, "web")
    assert markets(kept) == ["on-demand", "on-demand", "spot", "spot"]
    rt.advance(10 * WARMUP)
    assert members(rt, "web") == kept  # nothing more is replaced
    assert error_code(autoscaling.cancel_instance_refresh, AutoScalingGroupName="web") == \
        "ActiveInstanceRefreshNotFound"


def test_rollback_restores_the_configuration_the_refresh_started_from_and_an_all_on_demand_group(rt):
    group = rt.fleet.seed_group("web", 4, cpu_days=0)
    before = members(rt, "web")
    refresh_id = start_refresh(rt, "web", maximum=150, DesiredConfiguration=desired_mix(group, 0))
    rt.advance(WARMUP + 1)
    assert markets(members(rt, "web")) == ["on-demand"] * 2 + ["spot"] * 4  # first batch done, second launched

    autoscaling = rt.client("autoscaling")
    assert autoscaling.rollback_instance_refresh(AutoScalingGroupName="web")["InstanceRefreshId"] == refresh_id
    rolling = refresh_of(rt, "web", refresh_id)
    assert rolling["Status"] == "RollbackInProgress"
    assert rolling["RollbackDetails"]["PercentageCompleteOnRollback"] == 50
    run_refresh(rt, "web", refresh_id, desired=4)

    ended = refresh_of(rt, "web", refresh_id)
    assert (ended["Status"], ended["PercentageComplete"]) == ("RollbackSuccessful", 0)
    after = members(rt, "web")
    assert markets(after) == ["on-demand"] * 4 and {m["type"] for m in after.values()} == {"m5.large"}
    assert len(set(before) & set(after)) == 2  # the two never replaced stayed
    described = describe(rt, "web")
    assert described["LaunchTemplate"] == {**group["LaunchTemplate"], "LaunchTemplateName": "web-template"}
    assert "MixedInstancesPolicy" not in described


def test_rollback_needs_a_desired_configuration_as_on_aws(rt):
    group = rt.fleet.seed_group("web", 2, cpu_days=0)
    autoscaling = rt.client("autoscaling")
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="web",
                                          MixedInstancesPolicy=mixed_policy(group["LaunchTemplate"], 0))
    start_refresh(rt, "web")
    assert error_code(autoscaling.rollback_instance_refresh, AutoScalingGroupName="web") == \
        "IrreversibleInstanceRefresh"


def test_the_saved_configuration_and_a_new_refresh_bring_a_launch_configuration_group_back_to_on_demand(rt):
    """The way back without RollbackInstanceRefresh: UpdateAutoScalingGroup to the saved configuration
    (here a launch configuration, the group having moved to a launch template made from it), then a
    refresh."""
    rt.fleet.seed_group("web", 3, launch="configuration", cpu_days=0)
    assert {m["configuration"] for m in members(rt, "web").values()} == {"web-configuration"}
    autoscaling, ec2 = rt.client("autoscaling"), rt.client("ec2")
    made = ec2.create_launch_template(LaunchTemplateName="web-from-configuration", LaunchTemplateData={
        "ImageId": rt.fleet.image_id(), "InstanceType": "m5.large"})["LaunchTemplate"]
    template = {"LaunchTemplateId": made["LaunchTemplateId"], "Version": "1"}
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="web", CapacityRebalance=True,
                                          MixedInstancesPolicy=mixed_policy(template, 0))
    run_refresh(rt, "web", start_refresh(rt, "web"), desired=3)
    assert markets(members(rt, "web")) == ["spot"] * 3
    assert "LaunchConfigurationName" not in describe(rt, "web")

    autoscaling.update_auto_scaling_group(AutoScalingGroupName="web", LaunchConfigurationName="web-configuration",
                                          CapacityRebalance=False)
    described = describe(rt, "web")
    assert (described["LaunchConfigurationName"], described["CapacityRebalance"]) == ("web-configuration", False)
    assert "MixedInstancesPolicy" not in described and "LaunchTemplate" not in described
    run_refresh(rt, "web", start_refresh(rt, "web"), desired=3)
    after = members(rt, "web")
    assert markets(after) == ["on-demand"] * 3
    assert {(m["configuration"], m["template"]) for m in after.values()} == {("web-configuration", None)}


def test_scale_out_during_a_refresh_launches_from_its_desired_configuration(rt):
    group = rt.fleet.seed_group("web", 4, cpu_days=0)
    refresh_id = start_refresh(rt, "web", maximum=125, DesiredConfiguration=desired_mix(group, 0))
    before = set(members(rt, "web"))

    rt.client("autoscaling").set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=6)
    scaled = members(rt, "web")
    assert [scaled[i]["market"] for i in set(scaled) - before] == ["spot", "spot"]
    run_refresh(rt, "web", refresh_id, desired=6)
    assert markets(members(rt, "web")) == ["spot"] * 6
    assert describe(rt, "web")["MixedInstancesPolicy"]["InstancesDistribution"][
        "OnDemandPercentageAboveBaseCapacity"] == 0  # saved on the group once it succeeded


def test_a_refresh_that_cannot_launch_fails_after_an_hour(rt):
    group = rt.fleet.seed_group("web", 2, cpu_days=0)
    rt.market.refuse()
    rt.client("autoscaling").update_auto_scaling_group(AutoScalingGroupName="web",
                                                       MixedInstancesPolicy=mixed_policy(group["LaunchTemplate"], 0))
    refresh_id = start_refresh(rt, "web")
    rt.advance(3601)
    failed = refresh_of(rt, "web", refresh_id)
    assert failed["Status"] == "Failed" and "InsufficientInstanceCapacity" in failed["StatusReason"]
    assert markets(members(rt, "web")) == ["on-demand", "on-demand"]  # the group was left as it was


def test_checkpoints_pause_the_refresh(rt):
    group = rt.fleet.seed_group("web", 4, cpu_days=0)
    refresh_id = start_refresh(rt, "web", maximum=200, DesiredConfiguration=desired_mix(group, 0),
                               preferences={"CheckpointPercentages": [50, 100], "CheckpointDelay": 600})
    assert len(members(rt, "web")) == 6  # the batch stops at the checkpoint: 2 of 4
    rt.advance(WARMUP + 1)
    paused = refresh_of(rt, "web", refresh_id)
    assert (paused["PercentageComplete"], paused["StatusReason"].startswith("Waiting for checkpoint")) == (50, True)
    rt.advance(300)
    assert len(members(rt, "web")) == 4  # still paused
    rt.advance(300 + WARMUP)
    assert refresh_of(rt, "web", refresh_id)["Status"] == "Successful"


# --- Capacity Rebalancing and replacements --------------------------------------------------------------
def spot_group(rt, capacity_rebalance):
    group = rt.fleet.seed_group("web", 0, cpu_days=0)
    rt.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName="web", DesiredCapacity=2, CapacityRebalance=capacity_rebalance,
        MixedInstancesPolicy=mixed_policy(group["LaunchTemplate"], 0))
    return members(rt, "web")


def activities(rt):
    """The group's launches and terminations, oldest first: (what, instance id)."""
    found = rt.client("autoscaling").describe_scaling_activities(AutoScalingGroupName="web")["Activities"]
    return [(a["Description"].split(":")[0], a["Description"].rsplit(" ", 1)[-1]) for a in reversed(found)
            if a["StatusCode"] == "Successful"]


def test_capacity_rebalancing_replaces_a_warned_spot_member_before_terminating_it(rt):
    before = spot_group(rt, capacity_rebalance=True)
    warned = sorted(before)[0]
    rt.simulate(warned, kind="rebalance")

    after = members(rt, "web")
    [replacement] = set(after) - set(before)
    assert warned not in after and len(after) == 2 and after[replacement]["market"] == "spot"
    assert (after[replacement]["type"], after[replacement]["zone"]) != (before[warned]["type"], before[warned]["zone"])
    history = activities(rt)
    assert history.index(("Launching a new EC2 instance", replacement)) < \
        history.index(("Terminating EC2 instance", warned))


def test_without_capacity_rebalancing_a_member_is_replaced_once_ec2_took_it_back(rt):
    before = spot_group(rt, capacity_rebalance=False)
    warned = sorted(before)[0]
    rt.simulate(warned, kind="interruption")  # the warning, then the reclaim

    after = members(rt, "web")
    [replacement] = set(after) - set(before)
    assert warned not in after and markets(after) == ["spot", "spot"]
    history = activities(rt)
    assert history.index(("Terminating EC2 instance", warned)) < \
        history.index(("Launching a new EC2 instance", replacement))
