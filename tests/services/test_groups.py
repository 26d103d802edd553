"""Auto Scaling groups through the waves and the rollback, on the fakes: each wave puts its share
of the group's instances on Spot by the group's own means (a mixed instances policy and an instance
refresh that launches before it terminates); a rollback puts the saved configuration back and
leaves every member on-demand; a crash at any step resumes to the same end."""

from __future__ import annotations

import pytest
from builders import MID, count_calls, crash_points, finalize, new_world
from fakes import Crash, Ports

from spot_core.domain.asg import GroupPolicy, GroupRecord
from spot_core.domain.plan import WaveSpec
from spot_core.domain.pricing import HOURS_PER_MONTH
from spot_core.domain.tags import GROUP_MIGRATION_TAG, WAVE_TAG
from spot_core.services.group_rollback import GroupRollback, GroupsRestored
from spot_core.services.group_wave import GroupsProgress, GroupWaves

TYPES = ["m5.large", "m5a.large", "m6i.large", "m5n.large", "m6a.large", "m7i.large"]
WAVES = [WaveSpec(index=i, percent=p, bake_seconds=0, target_count=0, cumulative=0)
         for i, p in enumerate((10.0, 50.0, 100.0))]


def planned(p: Ports, name: str = "web", desired: int = 10, launch: str = "template") -> GroupRecord:
    assert p.autoscaling is not None
    facts = p.autoscaling.add(name, desired, launch=launch)
    record = GroupRecord(name=name, arn=facts.arn, eligible=True, desired=desired, config=facts.config,
                         policy=GroupPolicy(instance_types=TYPES, on_demand_base=0))
    p.migrations.create(MID, {}, status="approved")
    p.plans.put_groups(MID, [record])
    p.world.calls.clear()
    return record


def wave(p: Ports, spec: WaveSpec, base: int = 0, passes: int = 100) -> GroupsProgress:
    """MigrateWave's loop for the groups: passes, each followed by the wait it asks for."""
    assert p.autoscaling is not None
    for _ in range(passes):
        progress = GroupWaves(p.autoscaling, p.plans, p.clock).advance(MID, spec, base)
        if progress.done:
            return progress
        p.clock.sleep(progress.wait_seconds)
    raise AssertionError(f"wave {spec.index} not done after {passes} passes")


def roll_back(p: Ports, passes: int = 100) -> GroupsRestored:
    assert p.autoscaling is not None
    for _ in range(passes):
        result = GroupRollback(p.autoscaling, p.plans, p.clock).run(MID)
        if result.done:
            return result
        p.clock.sleep(20)
    raise AssertionError("rollback not done")


def group(p: Ports, name: str = "web") -> GroupRecord:
    return {g.name: g for g in p.plans.groups(MID)}[name]


def test_each_wave_puts_its_share_on_spot_by_a_policy_and_a_refresh_and_the_last_all(p):
    planned(p, desired=10)
    assert p.autoscaling is not None

    shares = []
    for spec in WAVES:
        assert wave(p, spec).failed == []
        shares.append(group(p).wave_spot_share[str(spec.index)])

    assert shares == [10.0, 50.0, 100.0]
    assert p.autoscaling.members["web"] == ["spot"] * 10 and group(p).status == "migrated"
    policy = p.autoscaling.configuration["web"]["MixedInstancesPolicy"]
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == TYPES
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"] == {"LaunchTemplateId": "lt-web",
                                                                       "Version": "$Default"}
    assert policy["InstancesDistribution"]["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert p.autoscaling.configuration["web"]["CapacityRebalance"] is True
    assert p.autoscaling.group_tags["web"] == {GROUP_MIGRATION_TAG: MID, WAVE_TAG: "2"}
    assert [d[1] for op, d in p.world.log if op == "start_refresh"] == [True, True, True]


def test_a_group_on_a_launch_configuration_gets_one_launch_template_made_from_it(p):
    planned(p, launch="configuration")
    assert p.autoscaling is not None

    for spec in WAVES:
        wave(p, spec)

    made = [d for op, d in p.world.log if op == "create_launch_template"]
    assert made == ["lt-made-0"]
    spec = p.autoscaling.configuration["web"]["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    assert spec["LaunchTemplateId"] == "lt-made-0" and group(p).config.launch_configuration_name == "web-lc"


def test_when_skip_matching_keeps_on_demand_members_a_refresh_of_every_member_follows(p):
    planned(p, desired=4)
    assert p.autoscaling is not None
    p.autoscaling.skip_matching_keeps_markets = True

    wave(p, WAVES[1])

    assert p.autoscaling.members["web"].count("spot") == 2
    assert [d[1] for op, d in p.world.log if op == "start_refresh"] == [True, False]
    assert group(p).full_refresh and group(p).wave_spot_share == {"1": 50.0}


def test_a_refresh_that_fails_fails_the_group_and_says_why(p):
    planned(p)
    assert p.autoscaling is not None
    p.autoscaling.failing.add("web")

    progress = wave(p, WAVES[0])

    assert progress.done and len(progress.failed) == 1 and "Failed" in progress.failed[0]
    assert group(p).status == "failed"


def test_a_scale_out_during_a_wave_is_measured_on_the_capacity_the_group_has_then(p):
    planned(p, desired=4)
    assert p.autoscaling is not None
    GroupWaves(p.autoscaling, p.plans, p.clock).advance(MID, WAVES[1], 0)  # the policy and the refresh
    p.autoscaling.set_desired("web", 8)  # a scaling policy, meanwhile

    wave(p, WAVES[1])

    assert p.autoscaling.members["web"].count("spot") == 4  # the wave's share of the capacity the group has now
    assert group(p).wave_spot_share["1"] == 50.0 and group(p).capacity_at_wave == 8
    assert any("capacity 4 -> 8" in note for note in group(p).attempts)


@pytest.mark.parametrize("launch", ["template", "configuration"])
def test_a_rollback_puts_the_saved_configuration_back_and_every_member_on_demand(p, launch):
    planned(p, desired=6, launch=launch)
    assert p.autoscaling is not None
    before = dict(p.autoscaling.configuration["web"])
    for spec in WAVES[:2]:
        wave(p, spec)
    GroupWaves(p.autoscaling, p.plans, p.clock).advance(MID, WAVES[2], 0)  # the last wave's refresh runs

    result = roll_back(p)

    assert result.restored == ["web"] and result.failed == []
    assert p.autoscaling.members["web"] == ["on-demand"] * 6
    assert p.autoscaling.configuration["web"] == {**before, "CapacityRebalance": False}
    assert p.autoscaling.group_tags["web"] == {}
    assert [d[1] for op, d in p.world.log if op == "start_refresh"][-1] is False  # every member replaced
    assert group(p).status == "rolled_back"


def test_a_rollback_leaves_a_group_no_wave_touched_alone(p):
    planned(p)
    assert p.autoscaling is not None

    result = roll_back(p)

    assert result == GroupsRestored(done=True, restored=[], failed=[])
    assert [op for op, _ in p.world.log if op in ("configure", "start_refresh")] == []


def migrated_then_rolled_back() -> Ports:
    p = new_world()
    planned(p, desired=6, launch="configuration")
    for spec in WAVES[:2]:
        wave(p, spec)
    roll_back(p)
    return p


MUTATIONS = ("autoscaling.configure", "autoscaling.tag", "autoscaling.untag", "autoscaling.start_refresh",
             "autoscaling.cancel_refresh", "autoscaling.create_launch_template", "plans.put_group")


@pytest.mark.parametrize(("operation", "after"), crash_points(count_calls(migrated_then_rolled_back, MUTATIONS)))
def test_a_crash_at_any_step_of_the_waves_or_the_rollback_resumes_to_the_same_end(operation, after):
    p = new_world()
    planned(p, desired=6, launch="configuration")
    assert p.autoscaling is not None
    p.world.crash_on(operation, after)

    def attempt(run):  # the state machine retries a task that died
        try:
            return run()
        except Crash:
            return run()

    for spec in WAVES[:2]:
        attempt(lambda spec=spec: wave(p, spec))
    result = attempt(lambda: roll_back(p))

    assert result.restored == ["web"]
    assert p.autoscaling.members["web"] == ["on-demand"] * 6
    assert [d for op, d in p.world.log if op == "create_launch_template"] in (["lt-made-0"], ["lt-made-0"] * 2)
    assert len(set(p.autoscaling.templates.values())) == 1  # one template, however often it was asked for


def test_the_realised_savings_count_each_migrated_group_as_it_runs_now(p):
    record = planned(p, desired=10)
    record.monthly_on_demand, record.monthly_savings = 700.8, 455.5  # as the plan priced it
    p.plans.put_group(MID, record)
    p.migrations.update(MID, summary={"groups": 1, "candidates": 1})
    p.spot_prices.prices[("m5.large", "us-east-1a")] = 0.030
    for spec in WAVES:
        wave(p, spec)

    outcome = finalize(p).finish(MID, "completed", None)

    realised = outcome.realised
    assert realised is not None and realised.groups == 1 and realised.instances == 0
    assert realised.monthly_on_demand == 700.8  # 10 members at the plan's on-demand price
    assert realised.monthly_spot == round(10 * 0.030 * HOURS_PER_MONTH, 2)  # all 10 on Spot at today's price
    assert realised.monthly_savings == round(700.8 - 10 * 0.030 * HOURS_PER_MONTH, 2)
