"""What the rollback needs of the EC2 adapter, on moto: starting originals when EC2 refuses some
of them (one refusal fails a whole StartInstances call), and every instance launched for a migration."""

import boto3
import pytest
from botocore.exceptions import ClientError

from spot_core.adapters.ec2 import Ec2Fleet
from spot_core.domain.errors import CapacityRefused, StartRefused
from spot_core.domain.tags import MIGRATION_ID_TAG, REPLACES_TAG


@pytest.fixture
def ec2(moto):
    return boto3.client("ec2")


def launch(ec2, count: int, **tags: str) -> list[str]:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tagged = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    response = ec2.run_instances(ImageId=image, InstanceType="m5.large", MinCount=count, MaxCount=count,
                                 TagSpecifications=tagged)
    return [i["InstanceId"] for i in response["Instances"]]


def refusing(ec2, refusals: dict[str, str], calls: list[list[str]]):
    """start_instances that fails the whole call when it names a refused instance, as EC2 does."""
    real = ec2.start_instances

    def start_instances(InstanceIds):  # noqa: N803 - boto3's parameter name
        calls.append(list(InstanceIds))
        refused = [refusals[i] for i in InstanceIds if i in refusals]
        if refused:
            status = 500 if refused[0] == "InsufficientInstanceCapacity" else 400
            raise ClientError({"Error": {"Code": refused[0], "Message": "refused"},
                               "ResponseMetadata": {"HTTPStatusCode": status}}, "StartInstances")
        return real(InstanceIds=InstanceIds)
    return start_instances


def test_a_refused_batch_is_started_one_instance_at_a_time_and_each_refusal_is_classified(ec2, monkeypatch):
    ids = launch(ec2, 4)
    ec2.stop_instances(InstanceIds=ids)
    short, forbidden = ids[0], ids[1]
    calls: list[list[str]] = []
    monkeypatch.setattr(ec2, "start_instances", refusing(
        ec2, {short: "InsufficientInstanceCapacity", forbidden: "UnauthorizedOperation"}, calls))

    refused = Ec2Fleet(ec2).start(ids)

    assert isinstance(refused[short], CapacityRefused) and refused[short].code == "InsufficientInstanceCapacity"
    assert isinstance(refused[forbidden], StartRefused) and "UnauthorizedOperation" in str(refused[forbidden])
    assert set(refused) == {short, forbidden}
    states = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
              for i in r["Instances"]}
    assert {states[i] for i in ids[2:]} <= {"pending", "running"}
    assert calls[0] == sorted(ids) and all(len(c) == 1 for c in calls[1:])  # one batch, then one by one


def test_a_batch_nothing_refuses_is_one_call(ec2, monkeypatch):
    ids = launch(ec2, 3)
    ec2.stop_instances(InstanceIds=ids)
    calls: list[list[str]] = []
    monkeypatch.setattr(ec2, "start_instances", refusing(ec2, {}, calls))

    assert Ec2Fleet(ec2).start(ids) == {}
    assert len(calls) == 1


def test_every_live_instance_launched_for_a_migration_is_found(ec2):
    ours = launch(ec2, 2, **{MIGRATION_ID_TAG: "mig-1", REPLACES_TAG: "i-00000000000000001"})
    launch(ec2, 1, **{MIGRATION_ID_TAG: "mig-2", REPLACES_TAG: "i-00000000000000001"})
    gone = launch(ec2, 1, **{MIGRATION_ID_TAG: "mig-1", REPLACES_TAG: "i-00000000000000002"})
    ec2.terminate_instances(InstanceIds=gone)

    found = Ec2Fleet(ec2).launched_for("mig-1")

    assert sorted(i.instance_id for i in found) == sorted(ours)


def test_the_volumes_a_stopped_original_keeps_are_read_per_instance(ec2):
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=image, InstanceType="m5.large", MinCount=1, MaxCount=1, BlockDeviceMappings=[
        {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 100, "VolumeType": "gp3"}}])["Instances"][0]["InstanceId"]
    bare = launch(ec2, 1)[0]

    fleet = Ec2Fleet(ec2)
    inventory = fleet.inventory(list(fleet.describe([iid, bare]).values()))

    assert ("gp3", 100) in inventory[iid].volume_sizes
    assert all(size > 0 for _, size in inventory[iid].volume_sizes + inventory[bare].volume_sizes)
