"""Carrying the whole instance, on moto: what the EC2 adapter reads of an instance (disks,
interfaces, addresses, launch settings), the inventory it gathers in a few batched calls, the
RunInstances request that copies the root volume and placement, moving an Elastic IP, the
source/destination check, and EC2's status checks.

moto's quirks the tests live with: it reports the image's RootDeviceName (/dev/sda1) even when
the launch mapped the root at /dev/xvda; it drops a mapping's Throughput (set here with
ModifyVolume), gives gp3 3000 IOPS, ignores Placement GroupName/Tenancy and CreditSpecification,
and answers "standard" credits for any instance. What EC2 answers and moto does not model is
added to moto's own answer before `to_instance` reads it.
"""

import copy
import dataclasses

import boto3
import pytest

from spot_core.adapters import ec2 as ec2_adapter
from spot_core.adapters.ec2 import Ec2Fleet, run_instances_request, to_instance
from spot_core.domain.carry import ElasticIp, Inventory, Volume
from spot_core.domain.health import StatusChecks
from spot_core.domain.instances import LaunchSettings, LaunchSpec
from spot_core.domain.plan import Pool

ZONE = "us-east-1a"
ROOT = "/dev/xvda"
DATA = "/dev/sdf"
GIB_ROOT, GIB_DATA = 50, 100


@pytest.fixture
def ec2(moto):
    return boto3.client("ec2")


@pytest.fixture
def net(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=ZONE)["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]
    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    return {"vpc": vpc, "subnet": subnet, "image": image["ImageId"], "image_root": image["RootDeviceName"],
            "key": key}


def launch(ec2, net, instance_type: str = "m5.large", count: int = 1, **options) -> list[str]:
    response = ec2.run_instances(ImageId=net["image"], InstanceType=instance_type, MinCount=count, MaxCount=count,
                                 SubnetId=net["subnet"], **options)
    return [i["InstanceId"] for i in response["Instances"]]


def raw_instance(ec2, instance_id: str) -> dict:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def volumes_of(ec2, instance_id: str) -> dict[str, dict]:
    """device -> the volume DescribeVolumes reports attached there."""
    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"]
    return {a["Device"]: v for v in volumes for a in v["Attachments"] if a["InstanceId"] == instance_id}


def recorded(client, operation: str) -> list[dict]:
    """The parameters of every `operation` call the client makes (a paginator's pages included)."""
    requests: list[dict] = []
    client.meta.events.register(f"before-parameter-build.ec2.{operation}",
                                lambda params, **_: requests.append(dict(params)))
    return requests


@pytest.fixture
def carried(ec2, net):
    """An m5 with a custom root (50 GiB gp3, 3000 IOPS, 250 MiB/s, encrypted with a key), a data
    volume, two secondary private IPs, a secondary interface at device 1 and an Elastic IP;
    metadata hop limit 2, hibernation configured."""
    iid = launch(ec2, net, BlockDeviceMappings=[
        {"DeviceName": ROOT, "Ebs": {"VolumeSize": GIB_ROOT, "VolumeType": "gp3", "Iops": 3000, "Throughput": 250,
                                     "Encrypted": True, "KmsKeyId": net["key"], "DeleteOnTermination": True}},
        {"DeviceName": DATA, "Ebs": {"VolumeSize": GIB_DATA, "VolumeType": "gp2", "DeleteOnTermination": False}},
    ], MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 2},
        HibernationOptions={"Configured": True})[0]
    volumes = volumes_of(ec2, iid)
    ec2.modify_volume(VolumeId=volumes[ROOT]["VolumeId"], Throughput=250)  # moto drops it from the mapping
    primary_eni = raw_instance(ec2, iid)["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ec2.assign_private_ip_addresses(NetworkInterfaceId=primary_eni, SecondaryPrivateIpAddressCount=2)
    secondary_eni = ec2.create_network_interface(SubnetId=net["subnet"])["NetworkInterface"]
    ec2.attach_network_interface(NetworkInterfaceId=secondary_eni["NetworkInterfaceId"], InstanceId=iid, DeviceIndex=1)
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=iid)
    raw = raw_instance(ec2, iid)
    primary_raw = next(n for n in raw["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0)
    return {
        "id": iid, "root": volumes[ROOT]["VolumeId"], "data": volumes[DATA]["VolumeId"],
        "primary_eni": primary_eni, "primary_ip": raw["PrivateIpAddress"],
        "secondary_ips": [ip["PrivateIpAddress"] for ip in primary_raw["PrivateIpAddresses"] if not ip["Primary"]],
        "secondary_eni": secondary_eni["NetworkInterfaceId"], "secondary_ip": secondary_eni["PrivateIpAddress"],
        "allocation": address["AllocationId"], "public_ip": address["PublicIp"],
    }


def read(ec2, instance_id: str):
    fleet = Ec2Fleet(ec2)
    instance = fleet.describe([instance_id])[instance_id]
    return instance, fleet.inventory([instance])[instance_id]


# --- to_instance ---------------------------------------------------------------------------------
def test_an_instance_is_read_with_its_disks_interfaces_and_launch_settings(ec2, net, carried):
    instance = Ec2Fleet(ec2).describe([carried["id"]])[carried["id"]]
    raw = raw_instance(ec2, carried["id"])

    assert instance.root_device == net["image_root"]  # moto: the image's name, not where the root was mapped
    assert set(instance.block_devices) == {(ROOT, carried["root"], True), (DATA, carried["data"], False)}
    by_id = {i.interface_id: i for i in instance.interfaces}
    assert set(by_id) == {carried["primary_eni"], carried["secondary_eni"]}
    primary, secondary = by_id[carried["primary_eni"]], by_id[carried["secondary_eni"]]
    assert (primary.device_index, secondary.device_index) == (0, 1)
    assert primary.private_ips[0] == carried["primary_ip"]
    assert set(primary.private_ips[1:]) == set(carried["secondary_ips"]) and len(primary.private_ips) == 3
    assert primary.public_ip == carried["public_ip"]  # from the interface's Association
    assert secondary.private_ips == (carried["secondary_ip"],) and secondary.public_ip is None
    assert primary.delete_on_termination is raw["NetworkInterfaces"][0]["Attachment"]["DeleteOnTermination"]
    assert instance.source_dest_check is True
    settings = instance.settings
    assert (settings.metadata_hop_limit, settings.metadata_http_tokens) == (2, "required")
    assert settings.placement_group is None  # moto answers GroupName "": no group
    assert settings.tenancy == "default" and settings.hibernation is True
    assert (instance.product, instance.usage_operation) == (raw.get("PlatformDetails"), raw.get("UsageOperation"))


def test_an_instance_launched_without_options_reads_as_such(ec2, net):
    iid = launch(ec2, net)[0]
    instance = Ec2Fleet(ec2).describe([iid])[iid]
    root = volumes_of(ec2, iid)[net["image_root"]]["VolumeId"]

    assert instance.block_devices == ((net["image_root"], root, True),)
    assert [(i.device_index, i.public_ip) for i in instance.interfaces] == [(0, None)]  # no public IP in this subnet
    assert instance.settings.hibernation is False and instance.settings.placement_group is None
    assert instance.settings.metadata_hop_limit == raw_instance(ec2, iid)["MetadataOptions"]["HttpPutResponseHopLimit"]


def test_what_moto_does_not_model_is_read_as_ec2_answers_it(ec2, carried):
    raw = copy.deepcopy(raw_instance(ec2, carried["id"]))
    raw["Placement"].update(GroupName="web-cluster", Tenancy="dedicated")
    raw.update(PlatformDetails="Red Hat Enterprise Linux", UsageOperation="RunInstances:0010", SourceDestCheck=False)
    primary_raw = next(n for n in raw["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0)
    primary_raw["PrivateIpAddresses"].reverse()  # EC2 does not promise the primary first
    assert not primary_raw["PrivateIpAddresses"][0]["Primary"]

    instance = to_instance(raw)

    assert (instance.settings.placement_group, instance.settings.tenancy) == ("web-cluster", "dedicated")
    assert (instance.product, instance.usage_operation) == ("Red Hat Enterprise Linux", "RunInstances:0010")
    assert instance.source_dest_check is False
    primary = next(i for i in instance.interfaces if i.device_index == 0)
    assert primary.primary_ip == carried["primary_ip"] and len(primary.private_ips) == 3


# --- inventory -----------------------------------------------------------------------------------
def test_the_inventory_reads_each_volume_with_its_settings_and_exactly_one_root(ec2, net, carried):
    _, inventory = read(ec2, carried["id"])

    assert {v.device: v for v in inventory.volumes} == {
        ROOT: Volume(volume_id=carried["root"], device=ROOT, size_gib=GIB_ROOT, volume_type="gp3", iops=3000,
                     throughput=250, encrypted=True, kms_key_id=net["key"], delete_on_termination=True, root=True),
        DATA: Volume(volume_id=carried["data"], device=DATA, size_gib=GIB_DATA, volume_type="gp2", encrypted=False,
                     delete_on_termination=False, root=False),
    }
    assert len(inventory.volumes) == 2
    # moto's RootDeviceName (/dev/sda1) names no attached volume: the root falls back to /dev/xvda
    assert net["image_root"] not in {v.device for v in inventory.volumes}
    assert inventory.root is not None and inventory.root.volume_id == carried["root"]
    assert [v.volume_id for v in inventory.data_volumes] == [carried["data"]]
    assert inventory.hibernation is True and inventory.source_dest_check is True


def test_the_root_of_an_instance_without_a_custom_mapping_is_the_volume_at_its_root_device(ec2, net):
    iid = launch(ec2, net)[0]
    _, inventory = read(ec2, iid)

    assert [(v.device, v.root) for v in inventory.volumes] == [(net["image_root"], True)]
    assert inventory.root.volume_id == volumes_of(ec2, iid)[net["image_root"]]["VolumeId"]
    assert inventory.data_volumes == () and inventory.addresses == () and inventory.secondary_interfaces == ()


def test_a_secondary_interface_is_in_the_inventory_and_among_the_secondary_ones(ec2, carried):
    _, inventory = read(ec2, carried["id"])

    assert {i.interface_id for i in inventory.interfaces} == {carried["primary_eni"], carried["secondary_eni"]}
    assert [(i.interface_id, i.device_index, i.private_ips) for i in inventory.secondary_interfaces] == [
        (carried["secondary_eni"], 1, (carried["secondary_ip"],))]
    assert inventory.primary is not None and inventory.primary.interface_id == carried["primary_eni"]


def test_an_elastic_ip_is_in_the_inventory_with_its_allocation_addresses_and_interface(ec2, carried):
    _, inventory = read(ec2, carried["id"])

    assert inventory.addresses == (ElasticIp(allocation_id=carried["allocation"], public_ip=carried["public_ip"],
                                             private_ip=carried["primary_ip"], interface_id=carried["primary_eni"]),)
    assert inventory.addresses_off_primary_ip() == ()  # on the primary IP: a stateless move can take it along


def test_a_burstable_instance_gets_its_cpu_credits_and_no_credit_call_is_made_for_another(ec2, net):
    burstable, fixed = launch(ec2, net, "t3.micro")[0], launch(ec2, net, "m5.large")[0]
    fleet = Ec2Fleet(ec2)
    instances = list(fleet.describe([burstable, fixed]).values())
    calls = recorded(ec2, "DescribeInstanceCreditSpecifications")

    inventory = fleet.inventory(instances)

    assert inventory[burstable].cpu_credits == "standard"
    assert inventory[fixed].cpu_credits is None  # moto would answer "standard" for it too, were it asked
    assert [c["InstanceIds"] for c in calls] == [[burstable]]


def test_an_inventory_without_burstable_instances_makes_no_credit_call(ec2, net):
    ids = launch(ec2, net, count=3)
    fleet = Ec2Fleet(ec2)
    calls = recorded(ec2, "DescribeInstanceCreditSpecifications")

    inventory = fleet.inventory(list(fleet.describe(ids).values()))

    assert calls == [] and all(inventory[i].cpu_credits is None for i in ids)


def test_the_inventory_calls_do_not_grow_with_the_number_of_instances(ec2, net):
    ids = launch(ec2, net, count=30)
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=ids[7])
    fleet = Ec2Fleet(ec2)
    instances = list(fleet.describe(ids).values())
    volume_calls, address_calls = recorded(ec2, "DescribeVolumes"), recorded(ec2, "DescribeAddresses")

    inventory = fleet.inventory(instances)

    assert (len(volume_calls), len(address_calls)) == (1, 1)
    assert set(inventory) == set(ids)
    roots = [inventory[i].root for i in ids]
    assert all(roots) and len({r.volume_id for r in roots}) == 30  # each its own root, from the one call
    assert [i for i in ids if inventory[i].addresses] == [ids[7]]
    assert inventory[ids[7]].addresses[0].allocation_id == address["AllocationId"]


def test_the_inventory_calls_grow_with_filter_chunks_and_each_instance_keeps_its_own_volumes(ec2, net, monkeypatch):
    monkeypatch.setattr(ec2_adapter, "VOLUME_FILTER_VALUES", 10)
    ids = launch(ec2, net, count=25)
    fleet = Ec2Fleet(ec2)
    instances = list(fleet.describe(ids).values())
    volume_calls, address_calls = recorded(ec2, "DescribeVolumes"), recorded(ec2, "DescribeAddresses")

    inventory = fleet.inventory(instances)

    assert (len(volume_calls), len(address_calls)) == (3, 3)
    assert [len(c["Filters"][0]["Values"]) for c in volume_calls] == [10, 10, 5]
    for iid in ids:
        assert [v.volume_id for v in inventory[iid].volumes] == [volumes_of(ec2, iid)[net["image_root"]]["VolumeId"]]


# --- the RunInstances request --------------------------------------------------------------------
def spec_for(ec2, instance_id: str, instance_type: str = "m5a.large", inventory: Inventory | None = None,
             **settings) -> LaunchSpec:
    """A replacement of the instance in `instance_type`, with its inventory (read from moto unless
    given); `settings` change the original's launch settings first."""
    fleet = Ec2Fleet(ec2)
    original = fleet.describe([instance_id])[instance_id]
    if inventory is None:
        inventory = fleet.inventory([original])[instance_id]
    if settings:
        original = dataclasses.replace(original, settings=dataclasses.replace(original.settings, **settings))
    pool = Pool(instance_type=instance_type, availability_zone=ZONE, spot_hourly=0.03)
    return LaunchSpec.replacing(original, pool, {"Name": "web-1"}, None, inventory=inventory)


def test_the_request_carries_the_root_volume_and_the_metadata_hop_limit(ec2, net, carried):
    request = run_instances_request(spec_for(ec2, carried["id"]), "token", 1)

    assert request["BlockDeviceMappings"] == [{"DeviceName": ROOT, "Ebs": {
        "VolumeSize": GIB_ROOT, "VolumeType": "gp3", "Iops": 3000, "Throughput": 250, "Encrypted": True,
        "KmsKeyId": net["key"], "DeleteOnTermination": True}}]  # the root only: the data volume is not launched
    assert request["MetadataOptions"] == {"HttpEndpoint": "enabled", "HttpTokens": "required",
                                          "HttpPutResponseHopLimit": 2}
    assert "Placement" not in request  # no group, default tenancy
    assert "CreditSpecification" not in request


@pytest.mark.parametrize(("update", "ebs"), [
    ({"volume_type": "gp2", "iops": 150, "throughput": None, "encrypted": False, "kms_key_id": None},
     {"VolumeType": "gp2", "Encrypted": False}),  # gp2's reported IOPS are its baseline, not asked for
    ({"volume_type": "io2", "iops": 16000, "throughput": None},
     {"VolumeType": "io2", "Iops": 16000, "Encrypted": True, "KmsKeyId": "KEY"}),
    ({"volume_type": "io1", "iops": 5000, "throughput": 500},
     {"VolumeType": "io1", "Iops": 5000, "Encrypted": True, "KmsKeyId": "KEY"}),
    ({"volume_type": "st1", "size_gib": 500, "iops": 500, "throughput": 40},
     {"VolumeType": "st1", "VolumeSize": 500, "Encrypted": True, "KmsKeyId": "KEY"}),
    ({"encrypted": False, "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/stale"},
     {"VolumeType": "gp3", "Iops": 3000, "Throughput": 250, "Encrypted": False}),
    ({"delete_on_termination": False}, {"VolumeType": "gp3", "Iops": 3000, "Throughput": 250, "Encrypted": True,
                                        "KmsKeyId": "KEY", "DeleteOnTermination": False}),
], ids=["gp2", "io2", "io1", "st1", "unencrypted", "kept-on-termination"])
def test_iops_only_for_provisioned_types_throughput_only_for_gp3_and_a_key_only_when_encrypted(
        ec2, net, carried, update, ebs):
    _, inventory = read(ec2, carried["id"])
    root = inventory.root.model_copy(update=update)
    request = run_instances_request(
        spec_for(ec2, carried["id"], inventory=Inventory(volumes=(root,))), "token", 1)

    expected = {"VolumeSize": GIB_ROOT, "DeleteOnTermination": True,
                **{k: net["key"] if v == "KEY" else v for k, v in ebs.items()}}
    assert request["BlockDeviceMappings"] == [{"DeviceName": ROOT, "Ebs": expected}]


@pytest.mark.parametrize(("group", "tenancy", "placement"), [
    ("web-cluster", "default", {"GroupName": "web-cluster"}),
    ("web-cluster", None, {"GroupName": "web-cluster"}),
    (None, "dedicated", {"Tenancy": "dedicated"}),
    ("web-cluster", "host", {"GroupName": "web-cluster", "Tenancy": "host"}),
    (None, "default", None),
])
def test_the_placement_group_and_a_tenancy_other_than_default_are_carried(ec2, carried, group, tenancy, placement):
    request = run_instances_request(
        spec_for(ec2, carried["id"], placement_group=group, tenancy=tenancy), "token", 1)

    assert request.get("Placement") == placement


def test_cpu_credits_are_asked_only_of_a_burstable_replacement(ec2, net):
    original = launch(ec2, net, "t3.large")[0]

    assert run_instances_request(spec_for(ec2, original, "t3a.large"), "t", 1)["CreditSpecification"] == {
        "CpuCredits": "standard"}  # what DescribeInstanceCreditSpecifications said of the original
    assert "CreditSpecification" not in run_instances_request(spec_for(ec2, original, "m5.large"), "t", 1)
    _, inventory = read(ec2, original)
    unlimited = inventory.model_copy(update={"cpu_credits": "unlimited"})
    assert run_instances_request(spec_for(ec2, original, "t3a.large", inventory=unlimited), "t", 1)[
        "CreditSpecification"] == {"CpuCredits": "unlimited"}


def test_a_replacement_launched_with_the_request_gets_the_root_volume_asked(ec2, net, carried):
    fleet = Ec2Fleet(ec2)
    new = fleet.launch(spec_for(ec2, carried["id"]), "mig-1-web-1")

    volumes = volumes_of(ec2, new)
    root = volumes[ROOT]
    assert (root["Size"], root["VolumeType"], root["Encrypted"], root["KmsKeyId"]) == (
        GIB_ROOT, "gp3", True, net["key"])
    assert DATA not in volumes  # a stateless replacement starts from the image
    assert raw_instance(ec2, new)["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    replacement = fleet.describe([new])[new]
    assert fleet.inventory([replacement])[new].root.size_gib == GIB_ROOT


# --- Elastic IP, source/destination check, status checks ----------------------------------------
def address_holder(ec2, allocation_id: str) -> str:
    return ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"][0].get("InstanceId")


def test_an_elastic_ip_moves_to_the_replacement_and_back(ec2, net):
    original, replacement = launch(ec2, net, count=2)
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=original)
    fleet = Ec2Fleet(ec2)

    fleet.associate_address(address["AllocationId"], replacement)  # EC2 refuses this without AllowReassociation

    assert address_holder(ec2, address["AllocationId"]) == replacement
    inventory = fleet.inventory(list(fleet.describe([original, replacement]).values()))
    assert inventory[original].addresses == ()
    moved = inventory[replacement].addresses
    assert [(a.allocation_id, a.public_ip, a.private_ip) for a in moved] == [
        (address["AllocationId"], address["PublicIp"], raw_instance(ec2, replacement)["PrivateIpAddress"])]

    fleet.associate_address(address["AllocationId"], original)  # rollback

    assert address_holder(ec2, address["AllocationId"]) == original


def test_the_source_dest_check_is_turned_off_and_on_again(ec2, net):
    iid = launch(ec2, net)[0]
    fleet = Ec2Fleet(ec2)

    fleet.set_source_dest_check(iid, False)

    assert raw_instance(ec2, iid)["SourceDestCheck"] is False
    instance, inventory = read(ec2, iid)
    assert instance.source_dest_check is False and inventory.source_dest_check is False
    fleet.set_source_dest_check(iid, True)
    assert raw_instance(ec2, iid)["SourceDestCheck"] is True


def test_status_checks_are_read_for_running_instances_and_stopped_ones_are_absent(ec2, net):
    running, stopped = launch(ec2, net, count=2), launch(ec2, net)[0]
    ec2.stop_instances(InstanceIds=[stopped])

    checks = Ec2Fleet(ec2).status_checks([*running, stopped])

    assert checks == {i: StatusChecks(instance="ok", system="ok") for i in running}
    assert all(c.passed and not c.failed for c in checks.values())


def test_status_checks_of_150_instances_take_two_calls_of_at_most_100(ec2, net):
    ids = launch(ec2, net, count=150)
    calls = recorded(ec2, "DescribeInstanceStatus")

    checks = Ec2Fleet(ec2).status_checks([*ids, *ids[:5]])  # a repeated id is asked once

    assert sorted(len(c["InstanceIds"]) for c in calls) == [50, 100]
    assert set(checks) == set(ids) and all(c.passed for c in checks.values())


# --- Trainium (trn1, trn2) is not a burstable family ----------------------------------------------


def test_a_trainium_instance_is_not_asked_for_cpu_credits(ec2, net):
    trainium, burstable = launch(ec2, net, "trn1.2xlarge")[0], launch(ec2, net, "t3.micro")[0]
    fleet = Ec2Fleet(ec2)
    instances = list(fleet.describe([trainium, burstable]).values())
    calls = recorded(ec2, "DescribeInstanceCreditSpecifications")

    inventory = fleet.inventory(instances)

    assert [c["InstanceIds"] for c in calls] == [[burstable]]
    assert inventory[trainium].cpu_credits is None


def test_a_trainium_replacement_is_launched_without_a_credit_specification():
    spec = LaunchSpec(image_id="ami-1", instance_type="trn1.2xlarge", subnet_id="subnet-1",
                      settings=LaunchSettings(cpu_credits="standard"), tags={})

    assert "CreditSpecification" not in run_instances_request(spec, "token", 1)



def test_an_instance_snapshotted_again_with_the_same_tags_gets_the_snapshots_already_taken(ec2):
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=image, InstanceType="m5.large", MinCount=1, MaxCount=1, BlockDeviceMappings=[
        {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 100, "VolumeType": "gp3"}}])["Instances"][0]["InstanceId"]
    fleet = Ec2Fleet(ec2)
    tags = {"spot-migration:managed": "true", "spot-migration:snapshot-of": iid}

    first, size = fleet.snapshot_instance(iid, tags)
    again, _ = fleet.snapshot_instance(iid, tags)  # a run that crashed before recording the first

    assert first and size > 0 and sorted(again) == sorted(first)
    of_it = ec2.describe_snapshots(Filters=[{"Name": "tag:spot-migration:snapshot-of", "Values": [iid]}])
    assert len(of_it["Snapshots"]) == len(first)  # none taken twice
    assert set(fleet.snapshot_states(first).values()) <= {"pending", "completed"}
