"""spotctl: the demo end to end, and approve/reject against a deployed stack (moto)."""

import json

import pytest

from spotctl.cli import main
from spotctl.local.runtime import LocalRuntime


def test_demo_json_report_is_complete_and_computed(capsys):
    assert main(["demo", "--instances", "8", "--seed", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "completed"
    summary = report["summary"]
    assert summary["analysed"] == 8 and summary["candidates"] + summary["excluded"] == 8
    assert 50 < summary["savings_pct"] < 80
    assert {v["agent"] for v in report["verdicts"]} == {"performance", "capacity", "application"}
    assert [w["percent"] for w in report["waves"]] == [10, 50, 100]
    assert all(w["gate"]["passed"] for w in report["waves"])
    assert report["realised"]["instances"] == summary["candidates"]
    assert report["approval"]["approved"] is True


def test_demo_degradation_rolls_back_and_exits_non_zero(capsys):
    assert main(["demo", "--instances", "6", "--degrade-at", "50"]) == 1
    text = capsys.readouterr().out
    assert "ROLLED BACK" in text and "FAIL" in text


def test_demo_asg_moves_both_groups_and_reports_their_configuration_before_and_after(capsys):
    assert main(["demo", "--instances", "4", "--asg", "--degrade-at", "100", "--json", "--graph", ""]) == 1
    report = json.loads(capsys.readouterr().out)
    groups = {g["name"]: g for g in report["groups"]}
    assert set(groups) == {"web-asg", "batch-asg"} and report["status"] == "rolled_back"
    for name, seen in report["group_configurations"].items():
        assert groups[name]["status"] == "rolled_back" and set(groups[name]["wave_spot_share"]) == {"0", "1", "2"}
        assert seen["before"] == seen["after"]  # the exact configuration back, every member on-demand
        assert seen["after"]["spot_members"] == 0 and seen["after"]["members"] == seen["before"]["desired"]


def test_demo_revert_shows_a_migration_a_revert_and_a_return(capsys):
    assert main(["demo", "--instances", "5", "--revert", "--json", "--graph", ""]) == 0
    report = json.loads(capsys.readouterr().out)
    moved = {i["replacement_id"] for i in report["instances"] if i["status"] == "migrated"}
    revert, back = report["day2"]["revert"], report["day2"]["return"]
    assert revert["outcome"] == "completed" and back["outcome"] == "completed"
    # the stateless Spot instances went back on-demand; the database (moved with its disks) stayed, with why
    assert {m["from"] for m in revert["moved"]} | {s["instance_id"] for s in revert["stayed"]} == moved
    assert all(m["market"] == "on-demand" and m["to_type"] == m["from_type"] for m in revert["moved"])
    assert {s["reason"] for s in revert["stayed"]} <= {"stateful_revert"}
    assert {m["from"] for m in back["moved"]} == {m["to"] for m in revert["moved"]}
    assert all(m["market"] == "spot" for m in back["moved"])


def test_demo_reject_exits_non_zero_and_changes_nothing(capsys):
    assert main(["demo", "--instances", "5", "--reject", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "rejected" and report["waves"][0]["migration"] is None
    assert all(i["replacement_id"] is None for i in report["instances"])


def test_demo_rejects_a_fleet_too_small(capsys):
    assert main(["demo", "--instances", "1"]) == 2


@pytest.mark.parametrize("command, approved", [(["approve"], True), (["reject", "--reason", "not this week"], False)])
def test_decide_against_a_deployed_stack(command, approved, capsys):
    with LocalRuntime() as rt:
        rt.fleet.seed_fleet(5)
        mid = rt.start_migration({"quality": {"target_group_arn": rt.fleet.target_group_arn},
                                  "waves": [100], "bake_seconds": [300]})  # the decision is the point, not the waves
        rt.wait_for_status(mid, "awaiting_approval")
        rt.publish_stack("SpotMigration")
        assert main([command[0], mid, *command[1:], "--region", "us-east-1"]) == 0
        assert rt.wait(mid).status == ("SUCCEEDED" if approved else "FAILED")
        decision = rt.migration(mid)["approval"]
        assert decision["approved"] is approved and decision["decided_by"].startswith("arn:aws:")
        assert main(["approve", mid, "--region", "us-east-1"]) == 4  # nothing pending any more: a conflict
    assert "not awaiting approval" in capsys.readouterr().err
