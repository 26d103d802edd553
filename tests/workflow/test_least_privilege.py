"""Every AWS call a function makes on the embedded runtime is allowed by the IAM role the
CDK stack gives it (actions only; the tag conditions are tested in tests/infra)."""

import copy
import fnmatch
import json
import uuid
from pathlib import Path

import pytest
from aws_cdk.assertions import Template

from infra.stack import create_app
from spot_core.domain.carry import MODE_TAG
from spot_core.entry.catalog import FUNCTIONS
from spotctl.local.runtime import LocalRuntime
from spotctl.local.workload import Degradation


@pytest.fixture(scope="module")
def allowed_actions(tmp_path_factory) -> dict[str, list[str]]:
    """function name -> the IAM actions its role allows."""
    app, stack = create_app(outdir=str(tmp_path_factory.mktemp("cdk.out")))
    resources = Template.from_stack(stack).to_json()["Resources"]
    by_role: dict[str, list[str]] = {}
    for res in resources.values():
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and res["Properties"].get("Roles"):
            for role in res["Properties"]["Roles"]:
                for st in res["Properties"]["PolicyDocument"]["Statement"]:
                    if st["Effect"] == "Allow":
                        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                        by_role.setdefault(role["Ref"], []).extend(actions)
    out = {}
    for spec in FUNCTIONS:
        fn = resources[stack.resolve(stack.functions.functions[spec.name].node.default_child.logical_id)]
        out[spec.name] = by_role[fn["Properties"]["Role"]["Fn::GetAtt"][0]]
    return out


API_EVENT = json.loads((Path(__file__).resolve().parents[2] / "events" / "api.json").read_text())


def api(rt: LocalRuntime, method: str, path: str, body: dict | None = None, query: dict | None = None) -> dict:
    """One request through the migrations API function, as API Gateway sends it."""
    event = copy.deepcopy(API_EVENT)
    mid = path.split("/")[2] if path.count("/") > 1 else None
    event.update(httpMethod=method, path=path, queryStringParameters=query,
                 multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
                 resource=path.replace(mid, "{migration_id}") if mid else path,
                 pathParameters={"migration_id": mid} if mid else None,
                 body=json.dumps(body) if body is not None else None)
    reply = rt.client("lambda").invoke(FunctionName="spot-migration-api", Payload=json.dumps(event))
    response = json.loads(reply["Payload"].read())
    assert response["statusCode"] < 300, response
    return json.loads(response["body"])


@pytest.fixture(scope="module")
def calls() -> set[tuple[str, str]]:
    """(function, IAM action) of every call in: an approved rollout driven through the
    migrations API, a rollback, an interruption, a rebalance and an orphan sweep."""
    with LocalRuntime(seed=21) as rt:
        rt.fleet.seed_fleet(8)
        quality = {"target_group_arn": rt.fleet.target_group_arn, "alarm_names": ["web-5xx"]}
        mid = api(rt, "POST", "/migrations", {"quality": quality, "retention_days": 1})["migration_id"]
        rt.wait_for_status(mid, "awaiting_approval")
        api(rt, "GET", f"/migrations/{mid}")  # while running: reads the execution history too
        api(rt, "POST", f"/migrations/{mid}/approve", {"reason": "reviewed"})
        assert rt.wait(mid).status == "SUCCEEDED"
        for status in (None, "SUCCEEDED", "completed"):
            api(rt, "GET", "/migrations", query={"status": status} if status else None)
        api(rt, "GET", f"/migrations/{mid}/plan", query={"limit": "3"})
        spot = sorted(rt.fleet.snapshot()["spot"])
        for kind, iid in (("EC2 Spot Instance Interruption Warning", spot[0]),
                          ("EC2 Instance Rebalance Recommendation", spot[1])):
            rt.put_ec2_event({"version": "0", "id": str(uuid.uuid4()), "detail-type": kind, "source": "aws.ec2",
                              "account": "123456789012", "time": "2026-11-22T10:00:00Z", "region": "us-east-1",
                              "resources": [], "detail": {"instance-id": iid}})
        rt.lambdas.environment["SWEEPER_GRACE_SECONDS"] = "0"
        rt.client("lambda").invoke(FunctionName="spot-migration-sweep_orphans", Payload=b"{}")
        api(rt, "POST", f"/migrations/{mid}/retention", {"days": 0})  # retire the stopped originals now
        for _ in range(2):  # snapshots, then (complete) termination
            rt.client("lambda").invoke(FunctionName="spot-migration-sweep_orphans", Payload=b"{}")
        _rehome(rt, quality)
        _fallback_returned(rt, mid)
        returned = _window(rt, quality)
        rt.fleet.degradation = Degradation(wave=0)
        revert = api(rt, "POST", f"/migrations/{returned}/revert",  # rolled back: the Spot ones serve again
                     {"approval": {"auto_approve": True}, "waves": [100], "bake_seconds": [60]})["migration_id"]
        assert rt.wait(revert).error == "MigrationRolledBack"
        extra = rt.fleet.launch("m5.large", "web-extra", "us-east-1b", count=3) + [_stateful(rt)]
        ec2 = rt.client("ec2")
        ec2.associate_address(AllocationId=ec2.allocate_address(Domain="vpc")["AllocationId"], InstanceId=extra[0])
        rt.fleet.seed_group("lp-asg", 3, launch="configuration", register=True, cpu_days=1)  # a template made for it
        failed = rt.run_migration({"approval": {"auto_approve": True}, "quality": quality, "waves": [100],
                                   "selector": {"instance_ids": extra, "auto_scaling_groups": ["lp-asg"]},
                                   "allow_downtime": True,
                                   "health_probe": {"command": "curl -fsS localhost/health"}}, timeout=300)
        assert (failed.status, failed.error) == ("FAILED", "MigrationRolledBack")
        assert not [i for i in rt.lambdas.invocations if i.errored and "AccessDenied" in str(i.payload)]
        return {(fn.removeprefix("spot-migration-"), action) for fn, action in rt.lambdas.calls}


def _rehome(rt: LocalRuntime, quality: dict) -> None:
    """A database server moved with its disks, whose Spot instance EC2 then takes back: its disks
    move on to a new instance (the re-home state machine)."""
    db = _stateful(rt)
    moved = rt.run_migration({"approval": {"auto_approve": True}, "quality": quality, "waves": [100],
                              "selector": {"instance_ids": [db]}, "allow_downtime": True,
                              "health_probe": {"command": "pg_isready"}})
    assert moved.status == "SUCCEEDED", moved.cause
    spot = next(r.replacement_id for r in rt.records(moved.migration_id) if r.instance_id == db)
    rt.simulate(spot, "interruption")
    assert rt.wait_rehome(spot).status == "SUCCEEDED"


def _fallback_returned(rt: LocalRuntime, migration_id: str) -> None:
    """A Spot instance interrupted while no pool has Spot capacity: its on-demand fallback goes back to
    Spot once capacity is back (the scheduled job, without waiting the hour it waits by default)."""
    record = next(r for r in rt.records(migration_id) if r.status == "migrated" and r.replacement_market == "spot")
    rt.market.refuse()
    rt.simulate(record.replacement_id, "interruption")
    rt.market.refusals.clear()
    rt.lambdas.environment["FALLBACK_RETURN_MIN_AGE_SECONDS"] = "0"
    event = (Path(__file__).resolve().parents[2] / "events" / "return_fallbacks.json").read_text()
    reply = rt.client("lambda").invoke(FunctionName="spot-migration-return_fallbacks", Payload=event)
    assert len(json.loads(reply["Payload"].read())["returned"]) == 1


def _window(rt: LocalRuntime, quality: dict) -> str:
    """A migration with an on-demand window: its schedules fire, the window's revert (the Spot
    instances terminated once it completes) and its return to Spot run; the return's id."""
    web = rt.fleet.launch("m5.large", "web-window", "us-east-1a", count=2)
    rt.fleet.write_cpu_history(dict.fromkeys(web, "stable"), days=2)
    window = {"name": "close", "start": "cron(0 18 L * ? *)", "end": "cron(0 8 1 * ? *)", "timezone": "UTC"}
    moved = rt.run_migration({"approval": {"auto_approve": True}, "quality": quality, "waves": [100],
                              "bake_seconds": [60], "selector": {"instance_ids": web}, "windows": [window]})
    assert moved.status == "SUCCEEDED", moved.cause
    for side in ("revert_id", "return_id"):
        rt.scheduler.advance_to(min(s for s in (_next_fire(rt, s) for s in rt.scheduler.schedules()) if s))
        started = rt.migration(moved.migration_id)["windows_state"][side]
        assert rt.wait(started).status == "SUCCEEDED"
    return started


def _next_fire(rt: LocalRuntime, schedule: dict):
    from spot_core.domain.windows import Cron, zone_of

    return Cron.parse(schedule["ScheduleExpression"]).next_after(rt.scheduler.now,
                                                                 zone_of(schedule["ScheduleExpressionTimezone"]))


def _stateful(rt: LocalRuntime) -> str:
    """A standalone instance that moves with its disks: a data volume, a second interface, an Elastic IP."""
    ec2, az = rt.client("ec2"), "us-east-1b"
    [iid] = rt.fleet.launch("r5.large", "db-extra", az, {MODE_TAG: "stateful"}, register=False)
    volume = ec2.create_volume(AvailabilityZone=az, Size=100, VolumeType="gp3")["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=iid, Device="/dev/sdf")
    ec2.associate_address(AllocationId=ec2.allocate_address(Domain="vpc")["AllocationId"], InstanceId=iid)
    eni = ec2.create_network_interface(SubnetId=rt.fleet.subnets[az])["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=iid, DeviceIndex=1)
    rt.fleet.write_cpu_history({iid: "stable"}, days=7)
    return iid


def test_the_moves_of_every_mode_were_exercised(calls):
    made = {action for _, action in calls}
    assert {"ec2:AttachVolume", "ec2:DetachVolume", "ec2:AttachNetworkInterface", "ec2:DetachNetworkInterface",
            "ec2:AssociateAddress", "ec2:DeleteVolume", "ec2:CancelSpotInstanceRequests", "ssm:SendCommand",
            "ssm:GetCommandInvocation", "ec2:DescribeInstanceStatus", "ec2:ModifyInstanceAttribute",
            "ec2:CreateSnapshots", "ec2:DescribeSnapshots"} <= made
    assert ("sweep_orphans", "ec2:TerminateInstances") in calls
    assert {("return_fallbacks", "ec2:RunInstances"), ("return_fallbacks", "ec2:TerminateInstances"),
            ("return_fallbacks", "elasticloadbalancing:DeregisterTargets")} <= calls
    assert {("finalize", "ec2:TerminateInstances"), ("rollback", "ec2:DeleteTags"),
            ("on_demand_windows", "scheduler:CreateSchedule"), ("on_demand_windows", "states:StartExecution")} <= calls
    assert {"autoscaling:UpdateAutoScalingGroup", "autoscaling:StartInstanceRefresh",
            "autoscaling:CancelInstanceRefresh", "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags",
            "autoscaling:DescribeAutoScalingGroups", "ec2:CreateLaunchTemplate"} <= made


def test_every_function_was_exercised(calls):
    assert {fn for fn, _ in calls} == {s.name for s in FUNCTIONS}


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.name)
def test_every_call_is_allowed_by_the_functions_role(spec, calls, allowed_actions):
    made = sorted(action for fn, action in calls if fn == spec.name)
    denied = [a for a in made if not any(fnmatch.fnmatchcase(a.lower(), p.lower()) for p in allowed_actions[spec.name])]
    assert denied == [], f"{spec.name} calls {denied} but its role does not allow them"
