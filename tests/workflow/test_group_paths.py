"""Auto Scaling groups through the real state machine on the embedded runtime (which simulates
EC2 Auto Scaling's mixed instances groups, instance refresh and Capacity Rebalancing): a group on
a launch template and one on a launch configuration migrated end to end with standalone
instances; a rollback at each wave that restores each group's exact configuration and an
all-on-demand fleet; Spot capacity refused for some types; an interrupted member left to its
group; bad values of the new request fields."""

from __future__ import annotations

import json

import pytest
from checks import records

from spot_core.domain.tags import AUTO_SCALING_GROUP_TAG, GROUP_MIGRATION_TAG, MANAGED_TAG
from spotctl.local.runtime import LocalRuntime
from spotctl.local.workload import Degradation

pytestmark = pytest.mark.usefixtures("quiet_moto")

ONE_BAKE = {"bake_seconds": [0, 0, 0]}


@pytest.fixture
def estate():
    """Four standalone web instances behind the ALB, a web group on a launch template serving
    behind it too, and a batch group on a launch configuration."""
    with LocalRuntime(seed=29) as rt:
        rt.fleet.seed_fleet(4, stateful=0, burst=0, cpu_days=2)
        rt.fleet.seed_group("web-asg", 6, launch="template", register=True, cpu_days=2)
        rt.fleet.seed_group("batch-asg", 4, launch="configuration", instance_type="c5.large", cpu_days=2)
        yield rt


def request(rt: LocalRuntime, **more) -> dict:
    return {"approval": {"auto_approve": True}, "quality": {"target_group_arn": rt.fleet.target_group_arn},
            **ONE_BAKE, **more}


def group(rt: LocalRuntime, name: str) -> dict:
    return rt.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def configuration(rt: LocalRuntime, name: str) -> dict:
    """What a rollback must give back exactly: the launch source, no mixed policy of the
    migration, Capacity Rebalancing, the capacity."""
    g = group(rt, name)
    return {k: g.get(k) for k in ("LaunchTemplate", "LaunchConfigurationName", "MixedInstancesPolicy",
                                  "CapacityRebalance", "DesiredCapacity", "MinSize", "MaxSize")}


def members(rt: LocalRuntime, name: str) -> dict[str, dict]:
    """InService members -> what EC2 says of them (market, type, tags)."""
    ids = [m["InstanceId"] for m in group(rt, name)["Instances"] if m["LifecycleState"] == "InService"]
    described = rt.client("ec2").describe_instances(InstanceIds=ids)["Reservations"] if ids else []
    return {i["InstanceId"]: {"spot": i.get("InstanceLifecycle") == "spot", "type": i["InstanceType"],
                              "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])}}
            for r in described for i in r["Instances"]}


def migration_spot_running(rt: LocalRuntime) -> list[str]:
    """Spot instances a migrated group launched that still run."""
    found = rt.client("ec2").describe_instances(Filters=[
        {"Name": "tag-key", "Values": [GROUP_MIGRATION_TAG]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
    return [i["InstanceId"] for r in found for i in r["Instances"] if i.get("InstanceLifecycle") == "spot"]


def group_records(rt: LocalRuntime, mid: str) -> dict:
    return {g.name: g for g in rt.wiring.plans.groups(mid)}


def test_groups_on_a_template_and_a_configuration_move_to_spot_wave_by_wave_with_the_instances(estate):
    rt = estate
    desired = {n: group(rt, n)["DesiredCapacity"] for n in ("web-asg", "batch-asg")}

    result = rt.run_migration(request(rt), timeout=300)

    assert result.status == "SUCCEEDED", result.cause
    planned = group_records(rt, result.migration_id)
    for name in ("web-asg", "batch-asg"):
        record, g = planned[name], group(rt, name)
        assert record.status == "migrated", record.attempts
        assert list(record.wave_spot_share) == ["0", "1", "2"] and record.wave_spot_share["2"] == 100.0
        assert record.wave_spot_share["0"] < record.wave_spot_share["1"] < 100.0
        policy = g["MixedInstancesPolicy"]
        assert policy["InstancesDistribution"]["SpotAllocationStrategy"] == "price-capacity-optimized"
        assert len(policy["LaunchTemplate"]["Overrides"]) >= 2 and g["CapacityRebalance"] is True
        assert g["DesiredCapacity"] == desired[name]
        running = members(rt, name)
        assert len(running) == desired[name] and all(m["spot"] for m in running.values())
    made = planned["batch-asg"].created_launch_template  # a launch configuration gets a template made from it
    spec = group(rt, "batch-asg")["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    assert made and spec["LaunchTemplateId"] == made
    assert planned["batch-asg"].config.launch_configuration_name == "batch-asg-configuration"  # kept for rollback
    standalone = [r for r in records(rt, result.migration_id).values() if r.eligible]
    assert standalone and all(r.status == "migrated" for r in standalone)


@pytest.mark.parametrize("wave", [0, 1, 2])
def test_a_rollback_at_each_wave_restores_each_groups_configuration_and_an_all_on_demand_fleet(estate, wave):
    rt = estate
    before = {n: configuration(rt, n) for n in ("web-asg", "batch-asg")}
    rt.fleet.degradation = Degradation(wave=wave)  # members the web group launches from this wave on degrade

    result = rt.run_migration(request(rt, selector={"auto_scaling_groups": ["web-asg", "batch-asg"]}), timeout=300)

    assert (result.status, result.error) == ("FAILED", "MigrationRolledBack"), result.cause
    planned = group_records(rt, result.migration_id)
    for name in ("web-asg", "batch-asg"):
        assert planned[name].status == "rolled_back", planned[name].attempts
        assert configuration(rt, name) == before[name]
        running = members(rt, name)
        assert len(running) == before[name]["DesiredCapacity"]
        assert not any(m["spot"] for m in running.values())
        assert not any(GROUP_MIGRATION_TAG in m["tags"] for m in running.values())
        assert not [t for t in group(rt, name)["Tags"] if t["Key"] == GROUP_MIGRATION_TAG]
    assert migration_spot_running(rt) == []
    assert rt.migration(result.migration_id)["rollback"]["groups_restored"] == ["batch-asg", "web-asg"]


def test_spot_capacity_refused_for_some_types_the_group_runs_the_others(estate):
    rt = estate
    rt.market.refuse("m5.large")  # the group's own type: no Spot capacity anywhere

    result = rt.run_migration(request(rt, selector={"auto_scaling_groups": ["web-asg"]}), timeout=300)

    assert result.status == "SUCCEEDED", result.cause
    running = members(rt, "web-asg")
    assert running and all(m["spot"] and m["type"] != "m5.large" for m in running.values())


def test_an_interrupted_member_is_left_to_its_group_no_second_replacement(estate):
    rt = estate
    result = rt.run_migration(request(rt, selector={"auto_scaling_groups": ["web-asg"]}), timeout=300)
    assert result.status == "SUCCEEDED", result.cause
    member = sorted(members(rt, "web-asg"))[0]

    sent = rt.simulate(member, "interruption")

    assert [d["result"]["action"] for d in sent["deliveries"]] == ["group_replaces"]
    managed = rt.client("ec2").describe_instances(Filters=[{"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]},
                                                           {"Name": f"tag:{AUTO_SCALING_GROUP_TAG}",
                                                            "Values": ["web-asg"]}])["Reservations"]
    assert managed == []  # the product launched nothing for it
    running = members(rt, "web-asg")
    assert member not in running and len(running) == group(rt, "web-asg")["DesiredCapacity"]  # the group replaced it
    pools = rt.wiring.pool_memory.recent_interruptions()
    assert any(t == rt.client("ec2").describe_instances(InstanceIds=[member])["Reservations"][0]["Instances"][0]
               ["InstanceType"] for t, _ in pools)


BAD_FIELDS = {
    "group-name-blank": ({"selector": {"auto_scaling_groups": [" "]}}, "selector.auto_scaling_groups"),
    "group-name-too-long": ({"selector": {"auto_scaling_groups": ["g" * 256]}}, "selector.auto_scaling_groups"),
    "groups-not-a-list": ({"selector": {"auto_scaling_groups": "web-asg"}}, "selector.auto_scaling_groups"),
    "base-negative": ({"asg": {"on_demand_base": -1}}, "asg.on_demand_base"),
    "base-not-a-number": ({"asg": {"on_demand_base": "two"}}, "asg.on_demand_base"),
    "asg-unknown-field": ({"asg": {"spot_share": 50}}, "asg.spot_share"),
    "group-missing": ({"selector": {"auto_scaling_groups": ["web-asg", "no-such-asg"]}},
                      "selector.auto_scaling_groups"),
}


@pytest.mark.parametrize("fields, field", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_bad_group_field_is_invalid_and_changes_nothing(estate, fields, field):
    rt = estate
    before = {n: (configuration(rt, n), sorted(members(rt, n))) for n in ("web-asg", "batch-asg")}

    result = rt.run_migration({**request(rt), **fields}, migration_id="bad-group-field")

    assert (result.status, result.error) == ("FAILED", "InvalidMigrationRequest"), result.cause
    message = json.loads(result.cause)["errorMessage"]
    assert message.startswith("invalid migration request: ") and f"{field}" in message, message
    assert rt.table.query(KeyConditionExpression="pk = :pk",
                          ExpressionAttributeValues={":pk": "MIGRATION#bad-group-field"})["Items"] == []
    assert {n: (configuration(rt, n), sorted(members(rt, n))) for n in ("web-asg", "batch-asg")} == before


def test_a_scale_out_during_a_wave_does_not_break_it_the_new_capacity_moves_too(estate, monkeypatch):
    """A scaling policy raises the group's capacity while wave 2 runs (just after its policy and
    refresh were set): the wave measures the share on the capacity the group has then, and the
    last wave moves it all."""
    from spot_core.services import group_wave

    rt = estate
    advance, scaled = group_wave.GroupWaves.advance, []

    def scaling_policy_meanwhile(self, migration_id, wave, base):
        progress = advance(self, migration_id, wave, base)
        if wave.index == 1 and not scaled:
            rt.client("autoscaling").set_desired_capacity(AutoScalingGroupName="web-asg", DesiredCapacity=9)
            scaled.append(wave.index)
        return progress

    monkeypatch.setattr(group_wave.GroupWaves, "advance", scaling_policy_meanwhile)

    result = rt.run_migration(request(rt, selector={"auto_scaling_groups": ["web-asg"]}), timeout=300)

    assert result.status == "SUCCEEDED", result.cause
    assert scaled == [1] and group(rt, "web-asg")["DesiredCapacity"] == 9
    running = members(rt, "web-asg")
    assert len(running) == 9 and all(m["spot"] for m in running.values())
    record = group_records(rt, result.migration_id)["web-asg"]
    assert record.wave_spot_share["1"] >= 50.0 and record.wave_spot_share["2"] == 100.0
