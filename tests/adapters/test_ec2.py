"""The EC2 and ELBv2 adapters on moto: instances read into the domain's shape, replacements
launched with every setting of the original, refusals classified, registrations swapped."""

import base64
from dataclasses import replace

import boto3
import pytest
from botocore.exceptions import ClientError

from spot_core.adapters.ec2 import Ec2Fleet, run_instances_request
from spot_core.adapters.elbv2 import ElbTargets
from spot_core.domain.errors import CapacityRefused, LaunchRefused, TransientAwsError
from spot_core.domain.instances import Instance, LaunchSettings, LaunchSpec
from spot_core.domain.plan import Pool, TargetRef, group_by_target_group
from spot_core.domain.request import Selector
from spot_core.domain.tags import (
    MANAGED_TAG,
    OPT_IN_TAG,
    interruption_replacement_tags,
    migration_replacement_tags,
)

USER_DATA = base64.b64encode(b"#!/bin/sh\necho hello\n").decode()


@pytest.fixture
def aws(moto):
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = {zone: ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=zone)["Subnet"]
               ["SubnetId"] for n, zone in enumerate(["us-east-1a", "us-east-1b"])}
    group = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    ec2.create_key_pair(KeyName="ops")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return {"ec2": ec2, "vpc": vpc, "subnets": subnets, "group": group, "image": image}


def original(aws, **tags: str) -> str:
    tagged = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    return aws["ec2"].run_instances(
        ImageId=aws["image"], InstanceType="m5.large", MinCount=1, MaxCount=1, SubnetId=aws["subnets"]["us-east-1a"],
        SecurityGroupIds=[aws["group"]], KeyName="ops", UserData="#!/bin/sh\necho hello\n", EbsOptimized=True,
        Monitoring={"Enabled": True}, MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
        TagSpecifications=tagged,
    )["Instances"][0]["InstanceId"]


def test_an_instance_is_read_with_what_a_replacement_copies(aws):
    iid = original(aws, **{OPT_IN_TAG: "true", "Name": "web-1"})
    fleet = Ec2Fleet(aws["ec2"])
    instance = fleet.describe([iid, "i-0123456789abcdef0"])[iid]  # an unknown id is simply absent
    assert (instance.instance_type, instance.availability_zone, instance.state) == ("m5.large", "us-east-1a", "running")
    assert (instance.subnet_id, instance.vpc_id, instance.image_id) == (aws["subnets"]["us-east-1a"], aws["vpc"],
                                                                        aws["image"])
    assert instance.name == "web-1" and instance.launch_time is not None
    settings = instance.settings
    assert settings.security_group_ids == (aws["group"],) and settings.key_name == "ops"
    assert (settings.ebs_optimized, settings.monitoring, settings.metadata_http_tokens) == (True, True, "required")
    assert fleet.user_data(iid) == USER_DATA
    assert [i.instance_id for i in fleet.find(Selector())] == [iid]
    assert fleet.find(Selector(tags={"team": "none"})) == []


def test_a_replacement_is_launched_with_the_original_settings_and_found_again(aws):
    iid = original(aws, **{OPT_IN_TAG: "true"})
    fleet = Ec2Fleet(aws["ec2"])
    source = fleet.describe([iid])[iid]
    tags = migration_replacement_tags(source.tags, iid, "mig-1", 0)
    pool = Pool(instance_type="m5a.large", availability_zone="us-east-1a", spot_hourly=0.03)
    spec = LaunchSpec.replacing(source, pool, tags, fleet.user_data(iid))
    new = fleet.launch(spec, "mig-1-i-1-0")  # (moto does not keep EC2's idempotency by client token)

    launched = fleet.describe([new])[new]
    assert launched.instance_type == "m5a.large" and launched.lifecycle == "spot"
    assert launched.settings.security_group_ids == source.settings.security_group_ids
    assert launched.tags[MANAGED_TAG] == "true"
    assert fleet.user_data(new) == USER_DATA, "the replacement boots the original's script, not its base64 text"
    assert {i: r.instance_id for i, r in fleet.find_replacements("mig-1", [iid]).items()} == {iid: new}
    assert fleet.find_replacements("mig-2", [iid]) == {}
    assert [i.instance_id for i in fleet.managed()] == [new]


def test_an_interruption_replacement_is_found_by_the_instance_it_succeeds_while_it_lives(aws):
    iid, other = original(aws), original(aws)
    fleet = Ec2Fleet(aws["ec2"])
    source = fleet.describe([iid])[iid]
    pool = Pool(instance_type="m5a.large", availability_zone="us-east-1b", spot_hourly=0.03)
    spec = LaunchSpec.replacing(source, pool, interruption_replacement_tags(source.tags, iid), None,
                                subnet_id=aws["subnets"]["us-east-1b"])
    new = fleet.launch(spec, "intr-e-1-0")

    found = fleet.find_successors([iid, other])
    assert list(found) == [iid] and found[iid].instance_id == new and found[iid].lifecycle == "spot"
    aws["ec2"].terminate_instances(InstanceIds=[new])
    assert fleet.find_successors([iid]) == {}


def test_the_reason_of_the_last_state_change_is_read(aws):
    iid = original(aws)
    fleet = Ec2Fleet(aws["ec2"])
    assert fleet.describe([iid])[iid].state_reason is None  # EC2 gives no reason for a running instance
    aws["ec2"].terminate_instances(InstanceIds=[iid])
    gone = fleet.describe([iid])[iid]  # a terminated instance is still described for a while
    assert (gone.state, gone.state_reason) == ("terminated", "Client.UserInitiatedShutdown")


def test_the_run_instances_request_copies_every_setting():
    source = Instance("i-1", "m5.large", "us-east-1a", "running", subnet_id="subnet-1", image_id="ami-1",
                      settings=LaunchSettings(("sg-1", "sg-2"), "ops", "arn:aws:iam::1:instance-profile/web", True,
                                              True, "required", "enabled"))
    pool = Pool(instance_type="c5.large", availability_zone="us-east-1b", spot_hourly=0.02)
    request = run_instances_request(
        LaunchSpec.replacing(source, pool, {"a": "1"}, "dXNlcg==", subnet_id="subnet-2"), "t" * 80)
    assert request == {
        "ImageId": "ami-1", "InstanceType": "c5.large", "MinCount": 1, "MaxCount": 1, "SubnetId": "subnet-2",
        "SecurityGroupIds": ["sg-1", "sg-2"], "EbsOptimized": True, "Monitoring": {"Enabled": True},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "1"}]},
                              {"ResourceType": "volume", "Tags": [{"Key": "a", "Value": "1"}]},
                              {"ResourceType": "spot-instances-request", "Tags": [{"Key": "a", "Value": "1"}]}],
        "ClientToken": "t" * 64,
        "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}},
        "KeyName": "ops", "IamInstanceProfile": {"Arn": "arn:aws:iam::1:instance-profile/web"}, "UserData": b"user",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
    }
    on_demand = run_instances_request(LaunchSpec.replacing(source, pool, {}, None, market="on-demand"), "t")
    assert "InstanceMarketOptions" not in on_demand and "UserData" not in on_demand
    assert [t["ResourceType"] for t in on_demand["TagSpecifications"]] == ["instance", "volume"]
    stopping = replace(LaunchSpec.replacing(source, pool, {}, None), interruption_behavior="stop")
    stateful = run_instances_request(stopping, "t")
    assert stateful["InstanceMarketOptions"]["SpotOptions"] == {"SpotInstanceType": "persistent",
                                                                 "InstanceInterruptionBehavior": "stop"}


class Refusing:
    """An EC2 client whose RunInstances answers with one error code."""

    def __init__(self, code: str, status: int = 400):
        self.code, self.status = code, status

    def run_instances(self, **_):
        raise ClientError({"Error": {"Code": self.code, "Message": "no"},
                           "ResponseMetadata": {"HTTPStatusCode": self.status}}, "RunInstances")


@pytest.mark.parametrize(("code", "status", "error"), [
    ("InsufficientInstanceCapacity", 500, CapacityRefused),  # EC2 answers it as a server error: still the pool's
    ("SpotMaxPriceTooLow", 400, CapacityRefused),
    ("InvalidSubnetID.NotFound", 400, LaunchRefused),
    ("RequestLimitExceeded", 503, TransientAwsError),
])
def test_launch_refusals_are_classified(code, status, error):
    spec = LaunchSpec(image_id="ami-1", instance_type="m5.large", subnet_id="subnet-1", settings=LaunchSettings(),
                      tags={})
    with pytest.raises(error):
        Ec2Fleet(Refusing(code, status)).launch(spec, "token")


def test_subnets_by_zone_take_the_lowest_subnet_of_each_zone(aws):
    extra = aws["ec2"].create_subnet(VpcId=aws["vpc"], CidrBlock="10.0.9.0/24", AvailabilityZone="us-east-1a")
    zones = Ec2Fleet(aws["ec2"]).subnets_by_zone(aws["vpc"])
    assert set(zones) == {"us-east-1a", "us-east-1b"}
    assert zones["us-east-1a"] == min(aws["subnets"]["us-east-1a"], extra["Subnet"]["SubnetId"])


def test_targets_are_registered_read_and_deregistered_per_group(aws):
    elbv2 = boto3.client("elbv2")
    arn = elbv2.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=aws["vpc"],
                                    TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    first, second = original(aws), original(aws)
    targets = ElbTargets(elbv2)
    targets.register(group_by_target_group([(first, TargetRef(arn=arn, port=8080)), (second, TargetRef(arn=arn))]))
    membership = targets.membership()
    assert membership[first] == [TargetRef(arn=arn, port=8080)] and set(membership) == {first, second}
    assert targets.target_groups_of(first) == [TargetRef(arn=arn, port=8080)]
    assert set(targets.target_states(group_by_target_group([(first, TargetRef(arn=arn))]))) == {(arn, first)}
    targets.deregister(group_by_target_group([(second, TargetRef(arn=arn))]))
    targets.deregister(group_by_target_group([(second, TargetRef(arn=arn))]))  # gone already: not an error
    assert set(targets.membership()) == {first}
    assert targets.load_balancer_of(arn) is None  # no load balancer in front of the group yet
