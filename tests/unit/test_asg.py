"""Auto Scaling groups: exclusions, the target mixed instances policy, each wave's on-demand share
(as EC2 Auto Scaling rounds it), the savings and the plan entry."""

import pytest

from spot_core.domain.asg import (
    POLICY_MIN_TYPES,
    GroupConfig,
    GroupFacts,
    GroupPolicy,
    GroupRecord,
    LaunchSource,
    _spot_under,
    group_exclusion,
    group_savings,
    plan_group,
    spot_target,
    target_policy,
    wave_distribution,
)
from spot_core.domain.instance_types import diversified_types, equivalent_types, spec
from spot_core.domain.pricing import HOURS_PER_MONTH, SpotPriceStat
from spot_core.domain.tags import STATEFUL_TAG

ZONES = ["us-east-1a", "us-east-1b"]
ARN = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:6d0ecf83-1eec-9f09:autoScalingGroupName/web"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/6d0ecf831eec9f09"
LT = LaunchSource(kind="launch_template", name="lt-0123456789abcdef0", version="$Default", instance_type="m5.large",
                  image_id="ami-0123456789abcdef0")


def facts(**overrides) -> GroupFacts:
    base = {
        "name": "web", "arn": ARN, "tags": {"spot-migration:opt-in": "true"}, "source": LT,
        "config": GroupConfig(launch_template={"LaunchTemplateId": LT.name, "Version": "$Default"}),
        "instance_types": {"m5.large": 10}, "desired": 10, "min_size": 2, "max_size": 20, "on_demand_count": 10,
        "availability_zones": ZONES, "subnet_ids": ["subnet-0a1b2c3d", "subnet-0e1f2a3b"], "target_group_arns": [TG],
        "health_check_type": "ELB", "health_check_grace_period": 300,
    }
    return GroupFacts(**{**base, **overrides})


def stat(instance_type: str, zone: str, median: float) -> SpotPriceStat:
    return SpotPriceStat(instance_type, zone, median=median, p90=median, maximum=median, samples=1)


def prices(types, median: float = 0.03, zones=ZONES) -> dict[tuple[str, str], SpotPriceStat]:
    return {(t, z): stat(t, z, median) for t in types for z in zones}


ALL_M5_LARGE = prices(["m5.large", *diversified_types("m5.large", minimum=50)])


# --- exclusions ----------------------------------------------------------------------------------


def test_an_ordinary_group_may_move():
    assert group_exclusion(facts()) is None


@pytest.mark.parametrize("tags, reason", [
    ({"eks:cluster-name": "prod", "eks:nodegroup-name": "general"}, "managed_by_eks"),
    ({"eks:nodegroup-name": "general"}, "managed_by_eks"),
    ({"elasticbeanstalk:environment-name": "web-prod"}, "managed_by_beanstalk"),
    ({"elasticbeanstalk:environment-id": "e-8jh55e2tug"}, "managed_by_beanstalk"),
])
def test_groups_another_service_manages_are_left_to_it(tags, reason):
    assert group_exclusion(facts(tags=tags))[0] == reason


def test_an_ecs_capacity_provider_with_managed_termination_protection_is_left_to_ecs():
    ecs = {"AmazonECSManaged": ""}  # ECS writes the tag with an empty value
    assert group_exclusion(facts(tags=ecs, protected_from_scale_in=True))[0] == "managed_by_ecs"
    assert group_exclusion(facts(tags=ecs, protected_from_scale_in=False)) is None  # ECS does not pick the victims


def test_a_group_that_can_run_nothing_has_nothing_to_move_but_one_scaled_to_zero_moves():
    assert group_exclusion(facts(desired=0, min_size=0, max_size=0, instance_types={}))[0] == "empty_group"
    assert group_exclusion(facts(desired=0, min_size=0, max_size=4, instance_types={}, on_demand_count=0)) is None


def test_a_group_without_a_launch_source_is_excluded():
    assert group_exclusion(facts(source=None))[0] == "no_launch_source"


def test_a_launch_configuration_is_no_reason_to_exclude_a_group():
    lc = LaunchSource(kind="launch_configuration", name="web-lc-7", instance_type="m5.large")
    assert group_exclusion(facts(source=lc, config=GroupConfig(launch_configuration_name="web-lc-7"))) is None


def test_a_group_already_on_spot_is_excluded():
    assert group_exclusion(facts(on_demand_count=0, spot_count=10))[0] == "already_spot"
    assert group_exclusion(facts(on_demand_count=4, spot_count=6)) is None


def test_a_warm_pool_excludes_the_group():
    reason, detail = group_exclusion(facts(warm_pool=True))
    assert reason == "warm_pool" and "Spot" in detail


@pytest.mark.parametrize("override, what", [
    ({"InstanceType": "m5.large", "WeightedCapacity": "2"}, "instance weights"),
    ({"InstanceRequirements": {"VCpuCount": {"Min": 2}}}, "attribute-based"),
    ({"InstanceType": "m6g.large", "LaunchTemplateSpecification": {"LaunchTemplateId": "lt-0a"}}, "per-type"),
])
def test_a_policy_the_product_cannot_carry_over_excludes_the_group(override, what):
    policy = {"LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateId": LT.name},
                                 "Overrides": [{"InstanceType": "m5.large"}, override]}}
    reason, detail = group_exclusion(facts(config=GroupConfig(mixed_instances_policy=policy)))
    assert reason == "unsupported_policy" and what in detail


def test_an_unpriceable_product_is_excluded():
    assert group_exclusion(facts(product="Windows BYOL"))[0] == "unsupported_product"


def test_stateful_members_or_a_stateful_group_are_excluded():
    assert group_exclusion(facts(stateful_members=1))[0] == "stateful_members"
    tags = {"spot-migration:opt-in": "true", STATEFUL_TAG: "True"}
    assert group_exclusion(facts(tags=tags))[0] == "stateful_members"


def test_a_group_whose_every_type_keeps_data_on_instance_store_is_excluded():
    assert spec("i3.large").has_instance_storage and spec("m5d.large").has_instance_storage
    reason, detail = group_exclusion(facts(instance_types={"i3.large": 3, "m5d.large": 1}))
    assert reason == "instance_store_only" and "i3.large" in detail
    assert group_exclusion(facts(instance_types={"i3.large": 3, "m5.large": 1})) is None  # not every type
    empty = facts(desired=0, instance_types={}, on_demand_count=0, source=LT.model_copy(update={"instance_type":
                                                                                                 "i3.large"}))
    assert group_exclusion(empty)[0] == "instance_store_only"  # none runs: the launch source's type decides


# --- the diversified list ------------------------------------------------------------------------


def test_diversified_types_are_equivalents_first_then_the_nearest_larger_types():
    graviton = diversified_types("m6g.large", minimum=6)
    assert graviton[:3] == equivalent_types("m6g.large", limit=50)  # only 3 equivalents in the catalog
    assert len(graviton) == 6
    original = spec("m6g.large")
    for name in graviton:
        candidate = spec(name)
        assert candidate.arch == "arm64" and candidate.vcpu >= original.vcpu
        assert candidate.memory_gib >= original.memory_gib and not candidate.burstable
    assert "m6g.large" not in graviton


def test_diversified_types_keep_every_equivalent_and_filter_before_counting():
    assert diversified_types("m5.large") == equivalent_types("m5.large", limit=50)  # 10 equivalents: no padding
    no_m7 = diversified_types("m6g.large", minimum=6, usable=lambda t: not t.startswith("m7g"))
    assert len(no_m7) == 6 and not any(t.startswith("m7g") for t in no_m7)
    assert diversified_types("not-a-type") == []


def test_the_policy_puts_the_groups_own_type_first_and_has_at_least_six_types():
    policy = target_policy(facts(), ALL_M5_LARGE, avoid=(), on_demand_base=0)
    assert policy.instance_types[0] == "m5.large"
    assert len(policy.instance_types) >= POLICY_MIN_TYPES
    original = spec("m5.large")
    for name in policy.instance_types:
        candidate = spec(name)
        assert candidate.arch == original.arch and candidate.vcpu >= original.vcpu
        assert candidate.memory_gib >= original.memory_gib
    assert (policy.allocation_strategy, policy.capacity_rebalance) == ("price-capacity-optimized", True)


def test_the_policy_pads_a_type_with_few_equivalents_up_to_six_larger_ones_included():
    graviton = facts(instance_types={"m6g.large": 4}, desired=4,
                     source=LT.model_copy(update={"instance_type": "m6g.large"}))
    table = prices(["m6g.large", *diversified_types("m6g.large", minimum=50)])
    policy = target_policy(graviton, table, avoid=(), on_demand_base=0)
    assert len(policy.instance_types) == POLICY_MIN_TYPES
    assert {spec(t).arch for t in policy.instance_types} == {"arm64"}
    assert any(spec(t).vcpu > 2 for t in policy.instance_types)  # equivalents alone are too few


def test_only_types_with_a_spot_price_in_one_of_the_groups_zones_are_added():
    priced = ["m6i.large", "m5a.large"]
    table = {**prices(priced, zones=["us-east-1b"]), **prices(["m7i.large"], zones=["eu-west-1a"])}
    policy = target_policy(facts(), table, avoid=(), on_demand_base=0)
    assert policy.instance_types == ["m5.large", "m6i.large", "m5a.large"]  # the own type stays, unpriced


def test_types_interrupted_in_every_zone_of_the_group_go_last_and_only_to_reach_six():
    few = ["m7i.large", "m6a.large", "m6i.large", "m5a.large", "m5n.large"]
    avoid = {("m7i.large", z) for z in ZONES}
    policy = target_policy(facts(), prices(few), avoid=avoid, on_demand_base=0)
    assert policy.instance_types == ["m5.large", "m6a.large", "m6i.large", "m5a.large", "m5n.large", "m7i.large"]

    plenty = target_policy(facts(), ALL_M5_LARGE, avoid=avoid, on_demand_base=0)
    assert "m7i.large" not in plenty.instance_types and len(plenty.instance_types) >= POLICY_MIN_TYPES

    one_zone = {("m7i.large", "us-east-1a")}  # still fresh in us-east-1b: an ordinary candidate
    assert target_policy(facts(), prices(few), avoid=one_zone, on_demand_base=0).instance_types[1] == "m7i.large"


def test_the_groups_own_types_lead_even_when_interrupted():
    avoid = {("m5.large", z) for z in ZONES}
    assert target_policy(facts(), ALL_M5_LARGE, avoid=avoid, on_demand_base=0).instance_types[0] == "m5.large"


def test_every_type_the_group_runs_or_declares_is_kept_most_members_first():
    policy = {"LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateId": LT.name},
                                 "Overrides": [{"InstanceType": "c5.large"}, {"InstanceType": "m5.large"}]}}
    mixed = facts(instance_types={"m5.large": 2, "m6i.large": 5}, desired=7,
                  config=GroupConfig(mixed_instances_policy=policy))
    assert target_policy(mixed, {}, avoid=(), on_demand_base=0).instance_types == ["m6i.large", "m5.large",
                                                                                   "c5.large"]


@pytest.mark.parametrize("asked, desired, kept", [(0, 10, 0), (2, 10, 2), (12, 10, 10), (-1, 10, 0), (3, 0, 0)])
def test_the_on_demand_base_is_clamped_to_the_group(asked, desired, kept):
    assert target_policy(facts(desired=desired), ALL_M5_LARGE, (), asked).on_demand_base == kept


# --- waves ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("base, percentage, spot", [
    (10, 50, [0, 5, 10, 15]),  # the user guide's examples, at 10, 20, 30 and 40 instances
    (0, 0, [10, 20, 30, 40]),
    (0, 60, [4, 8, 12, 16]),
    (0, 100, [0, 0, 0, 0]),
    (12, 0, [0, 8, 18, 28]),
])
def test_the_rounding_rule_reproduces_the_aws_documentation(base, percentage, spot):
    assert [_spot_under(size, base, percentage) for size in (10, 20, 30, 40)] == spot


def test_a_fraction_is_rounded_in_favour_of_on_demand():
    assert _spot_under(3, 0, 50) == 1  # 1.5 on-demand -> 2
    assert _spot_under(10, 0, 95) == 0  # 9.5 on-demand -> 10


@pytest.mark.parametrize("desired, base, spot", [
    (1, 0, [1, 1, 1]),
    (3, 0, [1, 2, 3]),
    (10, 0, [1, 5, 10]),
    (100, 0, [10, 50, 100]),
    (1, 2, [0, 0, 0]),  # the base takes the whole group
    (3, 2, [1, 1, 1]),
    (10, 2, [1, 5, 8]),
    (100, 2, [10, 50, 98]),
    (3, 5, [0, 0, 0]),  # a base larger than the group
    (0, 0, [0, 0, 0]),
])
def test_each_wave_runs_its_share_on_spot_never_the_base(desired, base, spot):
    assert [spot_target(desired, base, p) for p in (10, 50, 100)] == spot


@pytest.mark.parametrize("desired, base", [(1, 0), (3, 0), (10, 0), (100, 0), (1, 2), (3, 2), (10, 2), (100, 2),
                                           (3, 5), (250, 0), (250, 7), (1000, 30)])
@pytest.mark.parametrize("percent", [10, 33.3, 50, 100])
def test_the_distribution_gives_exactly_the_target_under_aws_rounding(desired, base, percent):
    distribution = wave_distribution(desired, base, percent)
    assert set(distribution) == {"OnDemandBaseCapacity", "OnDemandPercentageAboveBaseCapacity"}
    assert distribution["OnDemandBaseCapacity"] == min(base, desired)
    assert 0 <= distribution["OnDemandPercentageAboveBaseCapacity"] <= 100
    spot = _spot_under(desired, distribution["OnDemandBaseCapacity"],
                       distribution["OnDemandPercentageAboveBaseCapacity"])
    assert spot == spot_target(desired, base, percent) <= desired - min(base, desired)
    wanted = min(desired - min(base, desired), -(-desired * percent // 100))
    assert spot >= wanted  # at least the wave's share ...
    if desired - min(base, desired) <= 100:
        assert spot == wanted  # ... exactly, while whole percentages can say it


def test_the_distributions_of_the_default_waves():
    assert wave_distribution(10, 0, 10) == {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 90}
    assert wave_distribution(10, 2, 50) == {"OnDemandBaseCapacity": 2, "OnDemandPercentageAboveBaseCapacity": 37}
    assert wave_distribution(10, 2, 100) == {"OnDemandBaseCapacity": 2, "OnDemandPercentageAboveBaseCapacity": 0}
    assert wave_distribution(0, 0, 50) == {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 50}
    assert wave_distribution(10, 0, 0)["OnDemandPercentageAboveBaseCapacity"] == 100  # all on-demand again


def test_a_wave_rounds_as_plan_waves_does_not_through_float_noise():
    assert spot_target(30, 0, 10) == 3  # 30 * 10 / 100 is 3.0000000000000004 in floats


@pytest.mark.parametrize("args", [(-1, 0, 10), (10, -1, 10), (10, 0, 101), (10, 0, -5)])
def test_impossible_distributions_are_refused(args):
    with pytest.raises(ValueError):
        wave_distribution(*args)


# --- savings -------------------------------------------------------------------------------------

POLICY = GroupPolicy(instance_types=["m5.large", "m6i.large", "m5a.large"], on_demand_base=2)


def spot_table() -> dict[tuple[str, str], SpotPriceStat]:
    return {("m5.large", "us-east-1a"): stat("m5.large", "us-east-1a", 0.040),
            ("m6i.large", "us-east-1b"): stat("m6i.large", "us-east-1b", 0.030),
            ("m5a.large", "us-east-1a"): stat("m5a.large", "us-east-1a", 0.034),
            ("c5.large", "us-east-1a"): stat("c5.large", "us-east-1a", 0.001),  # not in the policy
            ("m5a.large", "eu-west-1a"): stat("m5a.large", "eu-west-1a", 0.002)}  # not the group's zone


def test_savings_keep_the_base_on_demand_and_price_the_rest_at_the_two_cheapest_pools():
    savings = group_savings(facts(), {"m5.large": 0.096}, POLICY, spot_table())
    spot_hourly = (0.030 + 0.034) / 2
    assert savings.monthly_on_demand == round(10 * 0.096 * HOURS_PER_MONTH, 2)
    assert savings.monthly_spot == round((2 * 0.096 + 8 * spot_hourly) * HOURS_PER_MONTH, 2)
    assert savings.monthly_savings == round(8 * (0.096 - spot_hourly) * HOURS_PER_MONTH, 2)
    assert savings.monthly_savings == pytest.approx(savings.monthly_on_demand - savings.monthly_spot, abs=0.01)
    assert savings.savings_pct == round(100 * savings.monthly_savings / savings.monthly_on_demand, 1)


def test_a_mixed_group_costs_its_members_average_on_demand_price():
    mixed = facts(instance_types={"m5.large": 6, "m5.xlarge": 4})
    no_base = POLICY.model_copy(update={"on_demand_base": 0})
    savings = group_savings(mixed, {"m5.large": 0.096, "m5.xlarge": 0.192}, no_base, spot_table())
    assert savings.monthly_on_demand == round((6 * 0.096 + 4 * 0.192) * HOURS_PER_MONTH, 2)


def test_one_priced_pool_is_the_estimate_and_none_is_an_error():
    one = {("m5.large", "us-east-1a"): stat("m5.large", "us-east-1a", 0.04)}
    savings = group_savings(facts(), {"m5.large": 0.1}, POLICY.model_copy(update={"on_demand_base": 0}), one)
    assert savings.monthly_spot == round(10 * 0.04 * HOURS_PER_MONTH, 2)
    with pytest.raises(ValueError, match="no Spot price"):
        group_savings(facts(), {"m5.large": 0.1}, POLICY, {})
    with pytest.raises(ValueError, match="no on-demand price"):
        group_savings(facts(), {}, POLICY, spot_table())


def test_a_group_at_zero_saves_nothing_yet():
    idle = facts(desired=0, instance_types={}, on_demand_count=0)
    savings = group_savings(idle, {"m5.large": 0.096}, POLICY, spot_table())
    assert (savings.monthly_on_demand, savings.monthly_spot, savings.monthly_savings, savings.savings_pct) == (
        0.0, 0.0, 0.0, 0.0)


# --- the plan entry ------------------------------------------------------------------------------


def test_an_eligible_group_is_planned_with_its_policy_its_savings_and_its_saved_configuration():
    record = plan_group(facts(), on_demand_hourly={"m5.large": 0.096}, prices=ALL_M5_LARGE, on_demand_base=1)
    assert record.eligible and record.status == "planned" and record.exclusion_reason is None
    assert record.policy is not None and record.policy.on_demand_base == 1
    assert record.policy.instance_types[0] == "m5.large"
    assert record.monthly_on_demand == round(10 * 0.096 * HOURS_PER_MONTH, 2)
    assert record.monthly_savings == round(9 * (0.096 - 0.03) * HOURS_PER_MONTH, 2)
    assert record.config == facts().config and record.target_group_arns == [TG]


def test_an_excluded_group_gets_no_policy():
    record = plan_group(facts(warm_pool=True), on_demand_hourly={"m5.large": 0.096}, prices=ALL_M5_LARGE)
    assert (record.eligible, record.status, record.exclusion_reason, record.policy) == (
        False, "excluded", "warm_pool", None)
    assert record.config == facts().config  # saved all the same: the plan shows what the group is


@pytest.mark.parametrize("on_demand, spot, reason", [
    ({}, ALL_M5_LARGE, "no_on_demand_price"),
    ({"m5.large": 0.096}, {}, "no_spot_pool"),
])
def test_a_group_that_cannot_be_priced_is_excluded(on_demand, spot, reason):
    record = plan_group(facts(), on_demand_hourly=on_demand, prices=spot)
    assert (record.exclusion_reason, record.policy) == (reason, None)


def test_a_group_below_the_minimum_savings_is_excluded_unless_it_runs_nothing():
    table = prices(["m5.large", *diversified_types("m5.large", minimum=50)], median=0.09)
    record = plan_group(facts(), on_demand_hourly={"m5.large": 0.096}, prices=table, min_savings_pct=10)
    assert record.exclusion_reason == "insufficient_savings" and record.policy is None
    idle = facts(desired=0, instance_types={}, on_demand_count=0)
    assert plan_group(idle, on_demand_hourly={"m5.large": 0.096}, prices=table, min_savings_pct=10).eligible


def test_a_group_record_survives_a_round_trip_through_its_stored_form():
    policy = {"LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateId": LT.name, "Version": "3"},
                                 "Overrides": [{"InstanceType": "m5.large"}, {"InstanceType": "m5a.large"}]},
              "InstancesDistribution": {"OnDemandBaseCapacity": 1, "OnDemandPercentageAboveBaseCapacity": 100}}
    group = facts(config=GroupConfig(mixed_instances_policy=policy, capacity_rebalance=True))
    record = plan_group(group, on_demand_hourly={"m5.large": 0.096}, prices=ALL_M5_LARGE)
    record.status, record.refresh_id = "migrating", "08b91cf7-8fa6-48af-b6a6-d227f40f1b9b"
    record.wave_spot_share = {"0": 0.1, "1": 0.5}
    record.created_launch_template, record.attempts = "lt-0fedcba9876543210", ["wave 0: refresh started"]
    stored = record.model_dump(mode="json")
    assert GroupRecord.model_validate(stored) == record
    assert GroupRecord.model_validate(stored).config.mixed_instances_policy == policy
