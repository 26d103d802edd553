"""Every path through the state machine, asserting what happened to the fleet."""

import json

import pytest
from checks import assert_untouched, records

from spot_core.domain.errors import ApprovalNotPending
from spot_core.domain.tags import MANAGED_TAG

ONE_WAVE = {"waves": [100], "bake_seconds": [300]}  # where the test is not about the waves


def history_types(rt, mid):
    return [e["type"] for e in rt.history(mid)]


def test_happy_path_migrates_every_eligible_instance_make_before_break(rt, auto):
    result = rt.run_migration(auto)

    assert result.status == "SUCCEEDED", result.cause
    item = rt.migration(result.migration_id)
    assert item["status"] == "completed"
    recs = records(rt, result.migration_id)
    migrated = [r for r in recs.values() if r.status == "migrated"]
    assert len(migrated) == item["summary"]["candidates"] > 0
    after = rt.fleet.snapshot()
    # every migrated original is stopped (not terminated) and its Spot replacement serves
    assert {r.instance_id for r in migrated} <= after["stopped"]
    assert {r.replacement_id for r in migrated} == after["spot"]
    assert after["serving"] == ((rt.before["serving"] - {r.instance_id for r in migrated})
                                | {r.replacement_id for r in migrated})
    # what must not move did not move
    for iid in rt.groups["stateful"] + rt.groups["burst"]:
        assert iid in after["on_demand"]
        assert recs[iid].status == "excluded"
    # replacements carry the original's configuration and the managed tag from launch
    ec2 = rt.client("ec2")
    for r in migrated:
        new = ec2.describe_instances(InstanceIds=[r.replacement_id])["Reservations"][0]["Instances"][0]
        old = ec2.describe_instances(InstanceIds=[r.instance_id])["Reservations"][0]["Instances"][0]
        tags = {t["Key"]: t["Value"] for t in new["Tags"]}
        assert tags[MANAGED_TAG] == "true" and tags["spot-migration:replaces"] == r.instance_id
        assert tags["Name"] == {t["Key"]: t["Value"] for t in old["Tags"]}["Name"]
        assert ((new["ImageId"], new["SubnetId"], new.get("KeyName"))
                == (old["ImageId"], old["SubnetId"], old.get("KeyName")))
        assert [g["GroupId"] for g in new["SecurityGroups"]] == [g["GroupId"] for g in old["SecurityGroups"]]
        assert new["InstanceLifecycle"] == "spot"
    # three waves of 10, 50 and 100 % of the plan, each baked with its own bake time and gated
    candidates = item["summary"]["candidates"]
    assert [w["percent"] for w in item["waves"]] == [10, 50, 100]
    assert [w["cumulative"] for w in item["waves"]] == [max(1, -(-candidates // 10)), -(-candidates // 2), candidates]
    assert rt.waits.count(300) == 1 and rt.waits.count(600) == 1 and rt.waits.count(900) == 1
    assert {k: set(v) for k, v in item["wave_results"].items()} == {str(i): {"migration", "gate"} for i in range(3)}
    assert all(item["wave_results"][str(i)]["gate"]["passed"] for i in range(3))
    # realised savings computed from prices, close to the plan's estimate
    assert item["realised"]["instances"] == len(migrated)
    assert 55 < item["realised"]["savings_pct"] < 75
    assert any("completed" in (n["subject"] or "") for n in rt.notifications())


def test_agent_veto_ends_rejected_without_touching_the_fleet(rt):
    # Quality gates on a metric with no data at all: the application agent refuses to run blind.
    request = {"approval": {"auto_approve": True}, "quality": {"latency": {
        "namespace": "Custom/App", "metric_name": "Latency", "dimensions": {"Service": "web"}}}}
    result = rt.run_migration(request)

    assert (result.status, result.error) == ("FAILED", "MigrationVetoed")
    item = rt.migration(result.migration_id)
    assert item["status"] == "vetoed"
    assert [v["agent"] for v in item["verdicts"] if not v["approved"]] == ["application"]
    assert_untouched(rt)
    assert "MigrateWave" not in json.dumps(rt.history(result.migration_id), default=str)


def test_customer_rejection_ends_rejected_without_touching_the_fleet(rt):
    mid = rt.start_migration({"quality": {"target_group_arn": rt.fleet.target_group_arn}})
    rt.wait_for_status(mid, "awaiting_approval")
    notification = rt.notifications()[-1]
    assert "approval" in notification["subject"]
    token = rt.table.get_item(Key={"pk": f"MIGRATION#{mid}", "sk": "APPROVAL_TOKEN"})["Item"]["token"]
    assert token not in notification["message"]
    [asked] = [inv for inv in rt.lambdas.invocations if inv.function == "spot-migration-request_approval"]
    assert "approval requested" in asked.logs, "the handler's logs are captured"
    assert all(token not in inv.logs for inv in rt.lambdas.invocations)

    rt.decide(mid, approved=False, reason="change freeze this week", principal="arn:aws:iam::123456789012:user/alice")
    result = rt.wait(mid)

    assert (result.status, result.error) == ("FAILED", "MigrationRejected")
    item = rt.migration(mid)
    assert item["status"] == "rejected"
    assert item["approval"]["decided_by"].endswith("user/alice")
    assert_untouched(rt)
    with pytest.raises(ApprovalNotPending):
        rt.decide(mid, approved=True)


def test_customer_approval_runs_the_rollout(rt):
    mid = rt.start_migration({"quality": {"target_group_arn": rt.fleet.target_group_arn}, **ONE_WAVE})
    rt.wait_for_status(mid, "awaiting_approval")
    rt.decide(mid, approved=True)
    result = rt.wait(mid)
    assert result.status == "SUCCEEDED", result.cause
    assert rt.migration(mid)["approval"]["approved"] is True


def test_approval_timeout_ends_the_execution_without_changes(rt):
    result = rt.run_migration({"approval": {"timeout_seconds": 1}})

    assert (result.status, result.error) == ("FAILED", "ApprovalTimedOut")
    assert rt.migration(result.migration_id)["status"] == "approval_timed_out"
    assert_untouched(rt)


def test_a_lambda_service_fault_is_retried(rt, auto):
    rt.lambdas.inject_fault("spot-migration-analyze", "service", times=1)
    rt.lambdas.inject_fault("spot-migration-quality_gate", "TransientAwsError", times=1)
    result = rt.run_migration({**auto, **ONE_WAVE})

    assert result.status == "SUCCEEDED", result.cause
    failed = [e for e in rt.history(result.migration_id) if e["type"] == "TaskFailed"]
    assert {e["taskFailedEventDetails"]["error"] for e in failed} == {"Lambda.ServiceException", "TransientAwsError"}
    assert [i.function for i in rt.lambdas.invocations].count("spot-migration-analyze") == 2
    assert rt.virtual_seconds >= 2  # the retry backoff passed (on the virtual clock)


def test_domain_errors_are_not_retried(rt):
    result = rt.run_migration({"waves": [50, 10]})
    assert (result.status, result.error) == ("FAILED", "InvalidMigrationRequest")
    # Analyze once (not retried); the execution's status change then finds no migration to end.
    assert [i.function for i in rt.lambdas.invocations] == ["spot-migration-analyze", "spot-migration-end_execution"]
    assert_untouched(rt)


def test_unknown_instance_ids_are_a_clear_error_that_writes_nothing(rt):
    result = rt.run_migration({"selector": {"instance_ids": ["i-0123456789abcdef0", rt.groups["web"][0]]}})
    assert (result.status, result.error) == ("FAILED", "InvalidMigrationRequest")
    assert "i-0123456789abcdef0" in result.cause and rt.groups["web"][0] not in result.cause
    with pytest.raises(Exception, match="no migration"):
        rt.migration(result.migration_id)
    assert_untouched(rt)


def test_dry_run_plans_without_approval_or_changes(rt):
    result = rt.run_migration({"dry_run": True, "quality": {"target_group_arn": rt.fleet.target_group_arn}})
    assert result.status == "SUCCEEDED", result.cause
    assert rt.migration(result.migration_id)["status"] == "planned"
    assert "spot-migration-request_approval" not in [i.function for i in rt.lambdas.invocations]
    assert_untouched(rt)


def test_nothing_to_migrate(rt):
    result = rt.run_migration({"approval": {"auto_approve": True}, "selector": {"tags": {"team": "nobody"}}})
    assert result.status == "SUCCEEDED", result.cause
    assert rt.migration(result.migration_id)["status"] == "nothing_to_migrate"
    assert_untouched(rt)
