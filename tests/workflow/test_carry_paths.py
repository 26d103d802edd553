"""Carrying the whole instance through the real state machine (domain/carry.py): what moves with
an instance in each mode, where it ends after a migration and after a rollback, and the request
fields that choose the mode.

- stateless: an Elastic IP moves to the replacement once it is healthy, the replacement's root
  volume has the original's settings; a rollback puts the address back on the original;
- stateful: the original's own volumes, secondary interfaces and Elastic IPs move to a Spot
  instance (a persistent request that stops on interruption) in the same AZ; a rollback moves
  them back, terminates the Spot instance, cancels its request and deletes its own root;
- a probe that fails keeps the original serving; one that fails when the gate runs it again
  after the bake fails the gate and rolls the migration back; an instance with no health
  signal, or that needs downtime it was not allowed, is excluded with why;
- a rollback at each wave of a fleet mixing both modes leaves every original as it was;
- a bad value of the mode fields is a clear InvalidMigrationRequest that changes nothing;
- under EC2's AssociateAddress rule (the runtime enforces it; moto does not), a stateful instance
  with a secondary interface and an Elastic IP moves and its address follows it.

Each migration is selected by instance id where the test is about one instance, one wave and
no bake (`waves: [100]`, `bake_seconds: [0]`): a degradation of wave 0 then makes the gate of
the wave the instance lands in fail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from checks import records
from invariants import check_all, observe

from spot_core.domain.carry import MODE_TAG
from spot_core.domain.health import PROBE_TAG
from spot_core.domain.tags import MIGRATION_ID_TAG, OPT_IN_TAG, WAVE_TAG
from spot_core.services import rollback
from spotctl.local.runtime import LocalRuntime
from spotctl.local.workload import Degradation

pytestmark = pytest.mark.usefixtures("quiet_moto", "quick_restore_polls")

AZ = "us-east-1a"
SEED = 23
ONE_WAVE = {"waves": [100], "bake_seconds": [0]}
ROOT = {"size": 30, "type": "gp3"}  # not the image's 8 GiB gp2: the replacement must copy it


# --- the fleet --------------------------------------------------------------------------------------
@pytest.fixture
def quick_restore_polls(monkeypatch):
    """The rollback moves a stateful instance's pieces back one reconciliation pass at a time and
    sleeps (real time, in the Lambda) 5 s between passes: EC2's pace. moto changes states at
    once, so the passes here are 0.5 s apart; what each pass does is unchanged."""
    monkeypatch.setattr(rollback, "POLL_SECONDS", 0.5)  # raises should the name go


@pytest.fixture
def fresh():
    """Four web instances behind the ALB (the gate's baseline), nothing else."""
    with LocalRuntime(seed=SEED) as rt:
        rt.fleet.seed_fleet(4, stateful=0, burst=0, cpu_days=2)
        yield rt


def request(rt: LocalRuntime, ids: list[str] | None = None, **more: Any) -> dict:
    """Auto-approved, gated on the ALB's target group; only `ids` when given."""
    req: dict[str, Any] = {"approval": {"auto_approve": True},
                           "quality": {"target_group_arn": rt.fleet.target_group_arn}}
    if ids:
        req["selector"] = {"instance_ids": ids}
    return {**req, **more}


def launch(rt: LocalRuntime, name: str, az: str = AZ, *, itype: str = "m5.large", tags: dict | None = None,
           register: bool = True, root: dict | None = None) -> str:
    """An opted-in instance like the simulator's (workload.py), with a root volume of its own
    size and type when `root` says so; registered in the ALB's target group unless told not to."""
    ec2 = rt.client("ec2")
    all_tags = {"Name": name, "team": "web", OPT_IN_TAG: "true", **(tags or {})}
    extra: dict[str, Any] = {}
    if root:
        image = ec2.describe_images(ImageIds=[rt.fleet.image_id()])["Images"][0]
        extra["BlockDeviceMappings"] = [{"DeviceName": image["RootDeviceName"], "Ebs": {
            "VolumeSize": root["size"], "VolumeType": root["type"], "DeleteOnTermination": True}}]
    [iid] = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=rt.fleet.image_id(), InstanceType=itype, MinCount=1, MaxCount=1, SubnetId=rt.fleet.subnets[az],
        SecurityGroupIds=[rt.fleet.security_group], KeyName="ops", UserData="#!/bin/bash\nsystemctl start web\n",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}],
        **extra)["Instances"]]
    if register:
        rt.client("elbv2").register_targets(TargetGroupArn=rt.fleet.target_group_arn, Targets=[{"Id": iid, "Port": 80}])
    rt.fleet.write_cpu_history({iid: "stable"}, days=2)
    return iid


def elastic_ip(rt: LocalRuntime, iid: str) -> str:
    ec2 = rt.client("ec2")
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=allocation, InstanceId=iid)
    return allocation


def stateful(rt: LocalRuntime, name: str, az: str = AZ) -> dict[str, str]:
    """A standalone instance tagged to move with its disks: a data volume at /dev/sdf, a second
    interface at device index 1 and an Elastic IP."""
    ec2 = rt.client("ec2")
    iid = launch(rt, name, az, itype="r5.large", tags={MODE_TAG: "stateful"}, register=False)
    volume = ec2.create_volume(AvailabilityZone=az, Size=100, VolumeType="gp3")["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=iid, Device="/dev/sdf")
    allocation = elastic_ip(rt, iid)  # while it has one interface: EC2 takes an instance id then
    eni = ec2.create_network_interface(SubnetId=rt.fleet.subnets[az])["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=iid, DeviceIndex=1)
    return {"instance": iid, "volume": volume, "eni": eni, "allocation": allocation}


# --- what EC2 and the load balancer say ----------------------------------------------------------------
def instance(rt: LocalRuntime, iid: str) -> dict:
    return rt.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def state(rt: LocalRuntime, iid: str) -> str:
    return instance(rt, iid)["State"]["Name"]


def layout(rt: LocalRuntime) -> dict[str, dict[str, Any]]:
    """Instance id -> its state, its volumes (id -> device), its interfaces (id -> device index)
    and its Elastic IPs (allocation ids), as EC2 describes them."""
    ec2 = rt.client("ec2")
    out: dict[str, dict[str, Any]] = {}
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page["Reservations"]:
            for i in reservation["Instances"]:
                out[i["InstanceId"]] = {"state": i["State"]["Name"], "volumes": {}, "interfaces": {},
                                        "addresses": set()}
    for volume in ec2.describe_volumes()["Volumes"]:
        for a in volume.get("Attachments", []):
            out[a["InstanceId"]]["volumes"][volume["VolumeId"]] = a["Device"]
    for eni in ec2.describe_network_interfaces()["NetworkInterfaces"]:
        attached = eni.get("Attachment") or {}
        if attached.get("InstanceId") in out:
            out[attached["InstanceId"]]["interfaces"][eni["NetworkInterfaceId"]] = attached["DeviceIndex"]
    for address in ec2.describe_addresses()["Addresses"]:
        if address.get("InstanceId") in out:
            out[address["InstanceId"]]["addresses"].add(address["AllocationId"])
    return out


def address_holder(rt: LocalRuntime, allocation: str) -> str | None:
    return rt.client("ec2").describe_addresses(AllocationIds=[allocation])["Addresses"][0].get("InstanceId")


def available_volumes(rt: LocalRuntime) -> list[str]:
    volumes = rt.client("ec2").describe_volumes(Filters=[{"Name": "status", "Values": ["available"]}])["Volumes"]
    return sorted(v["VolumeId"] for v in volumes)


def target_health(rt: LocalRuntime) -> dict[str, str]:
    described = rt.client("elbv2").describe_target_health(TargetGroupArn=rt.fleet.target_group_arn)
    return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in described["TargetHealthDescriptions"]}


def launched_by(rt: LocalRuntime, mid: str) -> dict[str, str]:
    """Every instance the migration launched (tagged with its id) -> its state."""
    found = {}
    for page in rt.client("ec2").get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{MIGRATION_ID_TAG}", "Values": [mid]}]):
        for reservation in page["Reservations"]:
            found |= {i["InstanceId"]: i["State"]["Name"] for i in reservation["Instances"]}
    return found


def spot_request(rt: LocalRuntime, spot_instance: str) -> dict:
    """The Spot request EC2 made for the instance (DescribeInstances names it)."""
    request_id = instance(rt, spot_instance).get("SpotInstanceRequestId")
    assert request_id, f"{spot_instance} names no Spot request"
    return spot_request_by_id(rt, request_id)


def spot_request_by_id(rt: LocalRuntime, request_id: str) -> dict:
    """The request as DescribeSpotInstanceRequests shows it; {} if it no longer lists it."""
    described = rt.client("ec2").describe_spot_instance_requests()["SpotInstanceRequests"]
    return next((r for r in described if r["SpotInstanceRequestId"] == request_id), {})


def user_data(rt: LocalRuntime, iid: str) -> str | None:
    described = rt.client("ec2").describe_instance_attribute(InstanceId=iid, Attribute="userData")
    return (described.get("UserData") or {}).get("Value")


def root_volume(rt: LocalRuntime, iid: str) -> dict:
    described = instance(rt, iid)
    volumes = rt.client("ec2").describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"]
    devices = {v["Attachments"][0]["Device"]: v for v in volumes}
    assert len(devices) == 1, f"{iid} has volumes at {sorted(devices)}: a replacement has its root only"
    [(device, volume)] = devices.items()
    assert device == described["RootDeviceName"] or device in ("/dev/xvda", "/dev/sda1")
    return volume


# --- 1. stateless, with an Elastic IP ----------------------------------------------------------------
def test_stateless_elastic_ip_moves_to_the_healthy_replacement_whose_root_has_the_originals_settings(fresh):
    rt = fresh
    web = launch(rt, "web-eip", root=ROOT)
    allocation = elastic_ip(rt, web)
    original_root = root_volume(rt, web)
    assert (original_root["Size"], original_root["VolumeType"]) == (ROOT["size"], ROOT["type"])

    result = rt.run_migration(request(rt, [web], **ONE_WAVE))

    assert result.status == "SUCCEEDED", result.cause
    record = records(rt, result.migration_id)[web]
    assert (record.status, record.mode) == ("migrated", "stateless"), record.attempts
    assert [a.allocation_id for a in record.carry.elastic_ips] == [allocation]
    spot = record.replacement_id
    assert address_holder(rt, allocation) == spot
    assert instance(rt, spot)["InstanceLifecycle"] == "spot"
    new_root = root_volume(rt, spot)
    assert (new_root["Size"], new_root["VolumeType"], new_root["Encrypted"]) == (
        original_root["Size"], original_root["VolumeType"], original_root["Encrypted"])
    assert new_root["VolumeId"] != original_root["VolumeId"], "stateless: a fresh root from the image"
    assert state(rt, web) == "stopped"
    health = target_health(rt)
    assert health.get(spot) == "healthy" and web not in health


def test_stateless_rollback_puts_the_elastic_ip_back_on_the_original_which_serves_again(fresh):
    rt = fresh
    web = launch(rt, "web-eip", root=ROOT)
    allocation = elastic_ip(rt, web)
    before = (target_health(rt), available_volumes(rt))
    rt.fleet.degradation = Degradation(wave=0)

    result = rt.run_migration(request(rt, [web], **ONE_WAVE))

    assert (result.status, result.error) == ("FAILED", "MigrationRolledBack"), result.cause
    record = records(rt, result.migration_id)[web]
    assert record.status == "rolled_back", record.attempts
    assert record.replacement_id and [a.allocation_id for a in record.moved_addresses] == [allocation], \
        "the address had moved to the replacement before the gate failed"
    assert address_holder(rt, allocation) == web
    assert state(rt, web) == "running"
    assert state(rt, record.replacement_id) == "terminated"
    assert launched_by(rt, result.migration_id) == {record.replacement_id: "terminated"}
    assert (target_health(rt), available_volumes(rt)) == before


# --- 2. stateful: volumes, a secondary interface, an Elastic IP ---------------------------------------
def test_stateful_move_carries_the_originals_volumes_interface_and_address_to_a_persistent_spot_instance(fresh):
    rt = fresh
    db = stateful(rt, "db-1")
    iid = db["instance"]
    before = layout(rt)[iid]
    assert len(before["volumes"]) == 2 and before["volumes"][db["volume"]] == "/dev/sdf"
    assert before["interfaces"][db["eni"]] == 1 and before["addresses"] == {db["allocation"]}

    result = rt.run_migration(request(rt, [iid], allow_downtime=True, **ONE_WAVE))

    assert result.status == "SUCCEEDED", result.cause
    record = records(rt, result.migration_id)[iid]
    assert (record.status, record.mode) == ("migrated", "stateful"), record.attempts
    spot = record.replacement_id
    after = layout(rt)
    # the same volumes at the same devices, the interface at the same index, the address: on the Spot instance
    assert after[spot]["state"] == "running"
    assert after[spot]["volumes"] == before["volumes"]
    assert {e: i for e, i in after[spot]["interfaces"].items() if i != 0} == {db["eni"]: 1}
    assert after[spot]["addresses"] == {db["allocation"]}
    assert instance(rt, spot)["Placement"]["AvailabilityZone"] == AZ
    # the original is stopped, with nothing of its own left on it
    assert after[iid]["state"] == "stopped"
    assert not after[iid]["volumes"] and not after[iid]["addresses"]
    assert db["eni"] not in after[iid]["interfaces"]
    # the measured downtime, and the Spot instance's own root (from its image) deleted
    assert record.stateful is not None and record.stateful.downtime_seconds is not None
    assert record.stateful.downtime_seconds > 0
    assert available_volumes(rt) == []
    # a persistent request that stops on interruption (a terminating one would lose the disks)
    described = instance(rt, spot)
    assert described["InstanceLifecycle"] == "spot"
    request_ = spot_request(rt, spot)
    assert (request_["Type"], request_["InstanceInterruptionBehavior"]) == ("persistent", "stop")
    assert request_["State"] == "active" and request_.get("InstanceId") == spot
    # it took the original's user data once stopped (it was launched without, so nothing ran on its own disk)
    assert user_data(rt, spot) == user_data(rt, iid) and user_data(rt, iid)
    assert check_all(rt, observe(rt, [result.migration_id]), result, {iid: []}) == []


def test_stateful_rollback_moves_everything_back_and_cancels_the_spot_request(fresh):
    rt = fresh
    db = stateful(rt, "db-1")
    iid = db["instance"]
    web = launch(rt, "web-gated")  # in the same wave: its degraded replacement fails the gate
    before, health_before = layout(rt), target_health(rt)
    rt.fleet.degradation = Degradation(wave=0)

    result = rt.run_migration(request(rt, [iid, web], allow_downtime=True, **ONE_WAVE))

    assert (result.status, result.error) == ("FAILED", "MigrationRolledBack"), result.cause
    recs = records(rt, result.migration_id)
    record = recs[iid]
    assert record.mode == "stateful" and record.status == "rolled_back", record.attempts
    assert any("moved with its disks" in a for a in record.attempts), "it had moved before the rollback"
    spot = record.replacement_id
    after = layout(rt)
    # every piece is back on the original, which runs
    assert after[iid] == before[iid]
    assert after[iid]["state"] == "running"
    assert after[web] == before[web] and recs[web].status == "rolled_back"
    # the Spot instance is terminated, its persistent request cancelled, its own root deleted
    assert after[spot]["state"] == "terminated"
    request_ = spot_request(rt, spot)  # moto forgets a cancelled request; EC2 lists it cancelled
    assert request_.get("State", "cancelled") == "cancelled", request_
    assert set(launched_by(rt, result.migration_id).values()) == {"terminated"}
    assert available_volumes(rt) == []
    assert target_health(rt) == health_before
    assert check_all(rt, observe(rt, [result.migration_id]), result,
                     {iid: [], web: [rt.fleet.target_group_arn]}) == []


def test_stateful_move_with_a_secondary_interface_associates_the_elastic_ip_as_ec2_accepts_it(fresh):
    rt = fresh
    db = stateful(rt, "db-1")  # two interfaces and an Elastic IP, as in the tests above
    iid = db["instance"]
    before = layout(rt)[iid]
    with pytest.raises(ClientError, match="multiple interfaces"):  # the runtime holds EC2's rule
        rt.client("ec2").associate_address(AllocationId=db["allocation"], InstanceId=iid)

    result = rt.run_migration(request(rt, [iid], allow_downtime=True, **ONE_WAVE))

    record = records(rt, result.migration_id)[iid]
    after = layout(rt)
    assert result.status == "SUCCEEDED", (
        f"{result.error}: {rt.migration(result.migration_id).get('failure')}; the original is "
        f"{after[iid]['state']}, its record {record.status}")
    assert (record.status, record.mode) == ("migrated", "stateful"), record.attempts
    spot = record.replacement_id
    assert after[spot]["volumes"] == before["volumes"] and after[spot]["addresses"] == {db["allocation"]}
    assert {e: i for e, i in after[spot]["interfaces"].items() if i != 0} == {db["eni"]: 1}


# --- 3. a probe that fails ------------------------------------------------------------------------------
def test_a_failing_probe_gives_the_replacement_up_and_the_original_serves_on(fresh):
    rt = fresh
    probed = launch(rt, "web-probed")  # probed with the request's command: it fails
    other = launch(rt, "web-other", "us-east-1b", tags={PROBE_TAG: "systemctl is-active web"})  # its own: passes
    rt.health.fail_probes(command_contains="localhost/health")
    health_before = target_health(rt)

    result = rt.run_migration(request(rt, [probed, other], wave_success_ratio=0.5,
                                      health_probe={"command": "curl -fsS http://localhost/health"}, **ONE_WAVE))

    assert result.status == "SUCCEEDED", result.cause  # one of two moved: enough for this request
    recs = records(rt, result.migration_id)
    record = recs[probed]
    assert record.status == "failed", record.attempts
    assert "health probe failed" in record.attempts[-1], record.attempts
    sent = {c.instance_id: c for c in rt.health.commands}
    assert sent[record.replacement_id].command == "curl -fsS http://localhost/health"
    assert sent[record.replacement_id].outcome == "failed"
    # the original was never stopped nor taken out of its group; the replacement is gone
    assert state(rt, probed) == "running"
    assert target_health(rt).get(probed) == "healthy" == health_before[probed]
    assert state(rt, record.replacement_id) == "terminated"
    assert record.replacement_id not in target_health(rt)
    # the other one moved, proven by its own probe
    assert recs[other].status == "migrated"
    assert sent[recs[other].replacement_id].command == "systemctl is-active web"


def test_a_probe_failing_after_the_wave_migrated_fails_the_gate_and_the_migration_rolls_back(fresh):
    rt = fresh
    web = launch(rt, "web-probed")
    health_before = target_health(rt)

    def fail_probes_after_the_first(log: Any) -> None:
        """Once the wave's probe is sent (it passes), the replacement's next probes fail."""
        if rt.health.commands and not rt.health.probe_faults:
            rt.health.fail_probes(instance_ids=[rt.health.commands[0].instance_id])
    rt.lambdas.watchers.append(fail_probes_after_the_first)

    result = rt.run_migration(request(rt, [web], health_probe={"command": "curl -fsS http://localhost/health"},
                                      **ONE_WAVE))

    assert (result.status, result.error) == ("FAILED", "MigrationRolledBack"), result.cause
    record = records(rt, result.migration_id)[web]
    assert record.status == "rolled_back", record.attempts
    spot = record.replacement_id
    # the wave's probe passed; the gate's, sent after the bake, failed
    assert [(c.instance_id, c.outcome) for c in rt.health.commands] == [(spot, "success"), (spot, "failed")]
    assert any("ssm:SendCommand" in m.actions for m in rt.lambdas.mutating_calls("spot-migration-quality_gate"))
    steps = [e["stateEnteredEventDetails"]["name"] for e in rt.history(result.migration_id)
             if "stateEnteredEventDetails" in e]
    assert steps.count("QualityGate") >= 2 and "WaitForProbes" in steps and "WaveSucceeded" not in steps
    gate = rt.migration(result.migration_id)["wave_results"]["0"]["gate"]
    assert gate["passed"] is False and gate["failed_probes"] == [spot]
    assert any(r.startswith(f"health probe failed on 1 replacement(s): {spot} (Failed") for r in gate["reasons"])
    # back on on-demand: the original serves again, the Spot replacement is gone
    assert state(rt, web) == "running" and state(rt, spot) == "terminated"
    assert target_health(rt) == health_before


# --- 5. a rollback at every wave, both modes in one fleet ----------------------------------------------
@pytest.mark.parametrize("wave", [0, 1, 2], ids=["10%", "50%", "100%"])
def test_rollback_at_each_wave_of_a_mixed_fleet_leaves_every_original_as_it_was(wave):
    with LocalRuntime(seed=SEED) as rt:
        web = rt.fleet.seed_fleet(8, stateful=0, burst=0, cpu_days=2)["web"]
        addresses = {iid: elastic_ip(rt, iid) for iid in web[::3]}
        dbs = [stateful(rt, "db-1", "us-east-1a")["instance"], stateful(rt, "db-2", "us-east-1b")["instance"]]
        originals = {iid: [rt.fleet.target_group_arn] for iid in web} | {iid: [] for iid in dbs}
        before, health_before, snapshot = layout(rt), target_health(rt), rt.fleet.snapshot()
        rt.fleet.degradation = Degradation(wave=wave)

        result = rt.run_migration(request(rt, allow_downtime=True, bake_seconds=[0, 0, 0]))

        assert (result.status, result.error) == ("FAILED", "MigrationRolledBack"), result.cause
        item = rt.migration(result.migration_id)
        assert [item["wave_results"][str(w)]["gate"]["passed"] for w in range(wave + 1)] == [True] * wave + [False]
        recs = records(rt, result.migration_id)
        assert {recs[i].mode for i in web} == {"stateless"} and {recs[i].mode for i in dbs} == {"stateful"}
        touched = {i for i, r in recs.items() if r.replacement_id}
        assert touched == {i for i, r in recs.items() if r.wave is not None and r.wave <= wave}
        assert all(recs[i].status == "rolled_back" for i in touched), {i: recs[i].status for i in touched}
        if wave == 2:
            assert set(dbs) <= touched and set(addresses) <= touched
        after = layout(rt)
        # every original runs with exactly its own volumes, interfaces and addresses
        for iid in originals:
            assert after[iid] == before[iid], f"{iid} ({recs[iid].mode}, wave {recs[iid].wave})"
        assert all(after[i]["state"] == "running" for i in originals)
        assert {i: after[i]["addresses"] for i in addresses} == {i: {a} for i, a in addresses.items()}
        # nothing the migration launched is left running or stopped, no volume of theirs is left behind
        launched = launched_by(rt, result.migration_id)
        assert launched and set(launched.values()) == {"terminated"}, launched
        assert set(after) - set(originals) == set(launched), "every other instance was launched by the migration"
        assert available_volumes(rt) == []
        assert target_health(rt) == health_before
        assert rt.fleet.snapshot() == snapshot
        for iid in touched:
            tags = {t["Key"]: t["Value"] for t in instance(rt, recs[iid].replacement_id)["Tags"]}
            assert int(tags[WAVE_TAG]) == recs[iid].wave
        assert check_all(rt, observe(rt, [result.migration_id]), result, originals, before=snapshot) == []


# --- 4 and 6: planning and validation, on one runtime that nothing changes ------------------------------
# (last in the file: moto is one per process, so no other runtime may start while this one lives)
@pytest.fixture(scope="module")
def planner(quiet_moto):
    with LocalRuntime(seed=SEED) as rt:
        rt.fleet.seed_fleet(4, stateful=0, burst=0, cpu_days=2)
        rt.worker = launch(rt, "worker", "us-east-1b", register=False)  # no target group, no probe
        rt.before = rt.fleet.snapshot()
        yield rt


@pytest.mark.parametrize("fields, reason, mode", [
    ({"mode": "stateless"}, "no_health_signal", None),
    ({}, "needs_downtime", None),
    ({"allow_downtime": True}, None, "stateful"),  # the control: allowed downtime, it moves with its disks
], ids=["stateless-no-signal", "auto-no-downtime", "auto-downtime-allowed"])
def test_an_instance_with_no_health_signal_is_excluded_with_why(planner, fields, reason, mode):
    rt = planner
    result = rt.run_migration(request(rt, [rt.worker], dry_run=True, **fields))

    assert result.status == "SUCCEEDED", result.cause
    record = records(rt, result.migration_id)[rt.worker]
    assert (record.exclusion_reason, record.mode) == (reason, mode), record.exclusion_detail
    assert record.eligible is (reason is None)
    if reason == "no_health_signal":
        assert "target group" in record.exclusion_detail and "health probe" in record.exclusion_detail
    if reason == "needs_downtime":
        assert "allow_downtime" in record.exclusion_detail and "in no target group" in record.exclusion_detail
    assert rt.fleet.snapshot() == rt.before


BAD_FIELDS = {
    "mode-unknown": ({"mode": "fast"}, "mode"),
    "allow_downtime-not-bool": ({"allow_downtime": "sometimes"}, "allow_downtime"),
    "probe-empty-command": ({"health_probe": {"command": ""}}, "health_probe.command"),
    "probe-timeout-too-short": ({"health_probe": {"command": "x", "timeout_seconds": 5}},
                                "health_probe.timeout_seconds"),
    "probe-a-string": ({"health_probe": "curl"}, "health_probe"),
    "probe-unknown-field": ({"health_probe": {"command": "x", "extra": 1}}, "health_probe.extra"),
}


@pytest.mark.parametrize("fields, field", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_bad_mode_field_is_invalid_and_changes_nothing(planner, fields, field):
    rt = planner
    states_before = {i: d["state"] for i, d in layout(rt).items()}
    mid = f"bad-carry-{len(rt.lambdas.invocations)}"
    result = rt.run_migration(request(rt, **fields), migration_id=mid)

    assert (result.status, result.error) == ("FAILED", "InvalidMigrationRequest"), result.cause
    message = json.loads(result.cause)["errorMessage"]
    assert message.startswith("invalid migration request: ") and f"{field}:" in message, message
    steps = [e["stateEnteredEventDetails"]["name"] for e in rt.history(mid) if "stateEnteredEventDetails" in e]
    assert steps == ["Analyze"]
    assert rt.table.query(KeyConditionExpression="pk = :pk",
                          ExpressionAttributeValues={":pk": f"MIGRATION#{mid}"})["Items"] == []
    assert {i: d["state"] for i, d in layout(rt).items()} == states_before
    assert rt.fleet.snapshot() == rt.before
