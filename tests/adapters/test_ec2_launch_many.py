"""Launching several replacements in one RunInstances on moto: ids in launch order, found again
by their batch, tagged one by one; throttling told apart; deregistration delays read."""

import boto3
import pytest
from test_ec2 import Refusing, aws, original  # noqa: F401  (aws: the fixture)

from spot_core.adapters.dynamodb.registry import DynamoManagedRegistry
from spot_core.adapters.dynamodb.schema import key_schema
from spot_core.adapters.ec2 import Ec2Fleet
from spot_core.adapters.elbv2 import ElbTargets
from spot_core.domain.errors import LaunchThrottled
from spot_core.domain.instances import LaunchSettings, LaunchSpec
from spot_core.domain.plan import Pool
from spot_core.domain.tags import LAUNCH_BATCH_TAG, MANAGED_TAG, MIGRATION_ID_TAG, REPLACES_TAG
from spotctl.local.market import SpotMarket


@pytest.fixture
def market(aws):  # noqa: F811
    """moto launches MinCount instances; EC2 (and the embedded runtime's market) up to MaxCount."""
    market = SpotMarket("us-east-1")
    market.install()
    yield aws
    market.uninstall()


def test_several_replacements_are_launched_by_one_call_and_found_again_by_their_batch(market):
    iid = original(market)
    fleet = Ec2Fleet(market["ec2"])
    source = fleet.describe([iid])[iid]
    pool = Pool(instance_type="m5a.large", availability_zone="us-east-1a", spot_hourly=0.03)
    shared = {MANAGED_TAG: "true", MIGRATION_ID_TAG: "mig-1", LAUNCH_BATCH_TAG: "batch-1"}
    spec = LaunchSpec.replacing(source, pool, shared, None)

    ids = fleet.launch_many(spec, 3, "batch-1")

    assert len(ids) == 3
    found = fleet.launched_in_batch("mig-1", "batch-1")
    assert [i.instance_id for i in found] == ids and [i.launch_index for i in found] == [0, 1, 2]
    assert all(i.instance_type == "m5a.large" and i.lifecycle == "spot" for i in found)
    assert fleet.launched_in_batch("mig-1", "batch-2") == [] and fleet.launched_in_batch("mig-2", "batch-1") == []
    fleet.tag(ids[1], {REPLACES_TAG: iid, "Name": "web-1"})
    tagged = fleet.describe([ids[1]])[ids[1]]
    assert tagged.tags[REPLACES_TAG] == iid and tagged.tags["Name"] == "web-1" and tagged.tags[MANAGED_TAG] == "true"


def test_a_throttled_launch_is_told_apart_from_a_refusal():
    spec = LaunchSpec(image_id="ami-1", instance_type="m5.large", subnet_id="subnet-1", settings=LaunchSettings(),
                      tags={})
    with pytest.raises(LaunchThrottled):
        Ec2Fleet(Refusing("RequestLimitExceeded", 503)).launch_many(spec, 5, "token")


def test_deregistration_delays_are_read_from_the_target_groups(aws):  # noqa: F811
    elbv2 = boto3.client("elbv2")
    arns = [elbv2.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=aws["vpc"], TargetType="instance")
            ["TargetGroups"][0]["TargetGroupArn"] for name in ("web", "api")]
    elbv2.modify_target_group_attributes(TargetGroupArn=arns[1], Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "30"}])

    assert ElbTargets(elbv2).deregistration_delays(arns) == {arns[0]: 300, arns[1]: 30}


def test_instances_launched_together_are_registered_together(moto):
    ddb = boto3.resource("dynamodb")
    table = ddb.create_table(TableName="t", **key_schema())
    registry = DynamoManagedRegistry(table)

    registry.register_all([f"i-{n:017x}" for n in range(60)], "migration mig-1 wave 0")

    statuses = registry.statuses([f"i-{n:017x}" for n in range(60)])
    assert len(statuses) == 60 and set(statuses.values()) == {"active"}
