"""Ec2Fleet.fallbacks on moto: one DescribeInstances by tag finds the running on-demand instances the
interruption handler launched, not its Spot replacements nor anything else."""

import boto3
import pytest

from spot_core.adapters.ec2 import Ec2Fleet
from spot_core.domain.instances import LaunchSpec
from spot_core.domain.plan import Pool
from spot_core.domain.tags import MANAGED_TAG, interruption_replacement_tags


@pytest.fixture
def fleet(moto) -> Ec2Fleet:
    return Ec2Fleet(boto3.client("ec2"))


def launched(fleet: Ec2Fleet, market: str, tags: dict[str, str]) -> str:
    ec2 = fleet.ec2
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    [source] = ec2.run_instances(ImageId=image, InstanceType="m5.large", MinCount=1, MaxCount=1,
                                 SubnetId=subnet)["Instances"]
    original = fleet.describe([source["InstanceId"]])[source["InstanceId"]]
    pool = Pool(instance_type="m5.large", availability_zone="us-east-1a", spot_hourly=0.0)
    return fleet.launch(LaunchSpec.replacing(original, pool, tags, None, market=market), f"t-{market}-{len(tags)}")


def test_fallbacks_are_the_running_on_demand_successors_the_product_launched(fleet):
    fallback = launched(fleet, "on-demand", interruption_replacement_tags({}, "i-0000000000000dead"))
    launched(fleet, "spot", interruption_replacement_tags({}, "i-0000000000000beef"))  # a Spot successor
    launched(fleet, "on-demand", {MANAGED_TAG: "true"})  # managed, succeeding nothing

    assert [i.instance_id for i in fleet.fallbacks()] == [fallback]
    fleet.terminate([fallback])
    assert fleet.fallbacks() == []
