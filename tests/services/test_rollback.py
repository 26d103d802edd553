"""Rollback: every original back in service before its Spot replacement is terminated; an
original that cannot come back keeps its replacement; resumable after a crash at any step and
across invocations (services/rollback.py, ending through services/finalize.py)."""

from __future__ import annotations

from typing import Any

import pytest
from builders import (
    API,
    MID,
    WEB,
    Timeline,
    count_calls,
    crash_points,
    finalize,
    index,
    interruptions,
    migrate,
    new_world,
    plan,
    records,
    rollback,
    serving,
    settle,
    snapshot,
    until_done,
)
from fakes import Crash, Ports

from spot_core.domain.errors import RollbackIncomplete
from spot_core.domain.instances import Instance
from spot_core.domain.interruptions import Notice
from spot_core.domain.tags import MANAGED_TAG, MIGRATION_ID_TAG, SUCCEEDS_TAG
from spot_core.services import rollback as rollback_module

FAILURE = {"Error": "QualityGateFailed", "Cause": '{"errorMessage": "latency rose 40 % during the bake"}'}
# One chunk takes 55 s of virtual time (boot 30 + healthy 15 + drained 10): a 150 s budget starts one
# chunk with its 120 s margin left, not a second one (see test_migrate_wave.py).
BUDGET_FOR_ONE_CHUNK = 150


def migrated_fleet(p: Ports, count_in_both: int = 2, count_in_web: int = 1) -> tuple[list[Instance], dict[str, Any]]:
    """Originals serving (some in both groups), migrated to Spot; their originals stopped by now.
    Returns the originals and the fleet as it was before the migration."""
    originals = serving(p, count_in_both, (WEB, API)) + serving(p, count_in_web, (WEB,))
    before = snapshot(p)
    wave = plan(p, originals, ratio=1.0)
    migrate(p, wave)
    settle(p)
    assert all(r.status == "migrated" for r in records(p).values())
    p.world.calls.clear()
    return originals, before


def roll_back(p: Ports, seconds: float = 900):
    return rollback(p).run(MID, FAILURE, p.clock.budget(seconds))


def replacements(p: Ports) -> dict[str, str]:
    """Original id -> its replacement's id, as recorded."""
    return {oid: r.replacement_id for oid, r in records(p).items() if r.replacement_id}


def test_each_original_serves_again_before_its_replacement_is_deregistered_and_terminated(p):
    originals, _ = migrated_fleet(p)
    replaced = replacements(p)
    timeline = Timeline(p)
    start = len(p.world.log)

    result = roll_back(p)

    assert (result.done, result.restored, result.terminated) == (True, 3, 3)
    log = p.world.log[start:]
    for original in originals:
        oid, rid = original.instance_id, replaced[original.instance_id]
        groups = [ref.arn for ref in records(p)[oid].target_groups]
        started, terminated = index(log, "start", oid), index(log, "terminate", rid)
        for arn in groups:
            registered, deregistered = index(log, "register", (arn, oid)), index(log, "deregister", (arn, rid))
            assert started < registered < deregistered < terminated
            when_it_left = timeline.at("deregister", (arn, rid)).serving
            assert all(oid in when_it_left[g] for g in groups), f"{oid} not healthy everywhere when {rid} left"
        assert not any(rid in timeline.at("terminate", rid).draining[arn] for arn in groups), "terminated undrained"
    assert timeline.lowest(WEB) == 3 and timeline.lowest(API) == 2  # never fewer than before


def test_a_rolled_back_fleet_is_exactly_as_before_the_migration(p):
    _, before = migrated_fleet(p)
    replaced = replacements(p)

    roll_back(p)

    assert snapshot(p) == before
    assert all(p.fleet.state(rid) in ("shutting-down", "terminated") for rid in replaced.values())
    assert all(r.status == "rolled_back" for r in records(p).values())
    assert p.registry.statuses(list(replaced.values())) == dict.fromkeys(replaced.values(), "retired")
    assert not set(p.world.changes("stop")) & set(replaced.values())  # replacements end terminated, not stopped


def test_rollback_records_its_progress_the_outcome_and_notifies(p):
    migrated_fleet(p)

    roll_back(p)

    item = p.migrations.get(MID)
    assert item["status"] == "rolled_back" and item["finished_at"]
    assert item["rollback"] == {"done": True, "restored": 3, "kept": 0, "by_wave": {"0": 3}, "kept_instances": []}
    assert item["failure"] == FAILURE and item["outcome_detail"] == FAILURE
    [sent] = p.notifier.sent
    assert (sent["subject_id"], sent["event"], sent["data"]["status"]) == (MID, "rolled-back", "rolled_back")
    assert MID in sent["headline"]


def test_records_still_launching_are_rolled_back_without_waiting_for_a_deregistration(p):
    originals = serving(p, 2, (WEB, API))
    before = snapshot(p)
    wave = plan(p, originals)
    p.world.crash_on("lb.register")  # launched and recorded, never registered
    with pytest.raises(Crash):
        migrate(p, wave)
    assert [r.status for r in records(p).values()] == ["launching", "launching"]
    replaced = replacements(p)
    started_at = p.clock.monotonic()

    result = roll_back(p)

    assert result.done and result.restored == 2
    assert p.clock.monotonic() - started_at < p.load_balancer.drain_seconds  # nothing drained: nothing to wait for
    assert p.world.changes("deregister") == []
    assert sorted(p.world.changes("terminate")) == sorted(replaced.values())
    assert all(r.status == "rolled_back" for r in records(p).values())
    assert snapshot(p) == before


def _terminated_by_someone(p: Ports, original: Instance) -> None:
    p.fleet.terminate([original.instance_id])


def _never_healthy_again(p: Ports, original: Instance) -> None:
    p.load_balancer.unhealthy.add(original.instance_id)


@pytest.mark.parametrize("cannot_come_back", [_terminated_by_someone, _never_healthy_again],
                         ids=["terminated-by-someone", "never-healthy-again"])
def test_an_original_that_cannot_come_back_keeps_its_replacement_serving(p, cannot_come_back):
    originals, _ = migrated_fleet(p)
    lost = originals[0]
    kept = replacements(p)[lost.instance_id]
    cannot_come_back(p, lost)

    with pytest.raises(RollbackIncomplete, match=lost.instance_id):
        for _ in range(200):  # an original not back in time is tried again, for a while (WaitForRestore)
            roll_back(p)
            p.clock.sleep(20)

    stored = records(p)
    assert stored[lost.instance_id].status == "rollback_failed"
    assert all(stored[o.instance_id].status == "rolled_back" for o in originals[1:])
    assert p.fleet.state(kept) == "running" and kept not in p.world.changes("terminate")
    assert all(kept in p.load_balancer.serving(arn) for arn in (WEB, API))
    item = p.migrations.get(MID)
    progress = {k: v for k, v in item["rollback"].items() if k != "kept_instances"}
    assert progress == {"done": True, "restored": 2, "kept": 1, "by_wave": {"0": 2}}
    [named] = item["rollback"]["kept_instances"]
    assert (named["instance_id"], named["replacement_id"]) == (lost.instance_id, kept)
    assert "not restored" in named["reason"] and kept in named["reason"]
    assert item["status"] == "rolling_back"  # the state machine ends it as rollback_failed, not as rolled back
    assert p.notifier.sent == []


# --- resuming after a crash ----------------------------------------------------------------------------------------
ROLLBACK_OPERATIONS = ("fleet.describe", "fleet.start", "lb.register", "lb.target_states", "lb.deregister",
                       "fleet.terminate", "plans.put_record", "migrations.update", "notifier.publish")


def _crash_free_rollback() -> Ports:
    p = new_world()
    migrated_fleet(p)
    list(until_done(lambda: roll_back(p)))
    return p


CRASH_POINTS = crash_points(count_calls(_crash_free_rollback, ROLLBACK_OPERATIONS))


def test_the_crash_points_cover_every_step_of_the_rollback():
    assert {param.values[0] for param in CRASH_POINTS} == set(ROLLBACK_OPERATIONS)


@pytest.mark.parametrize("operation, after", CRASH_POINTS)
def test_a_rollback_resumed_after_a_crash_ends_as_without_it(operation, after):
    p = new_world()
    _, before = migrated_fleet(p)
    replaced = replacements(p)
    timeline = Timeline(p)
    p.world.crash_on(operation, after)

    with pytest.raises(Crash):
        roll_back(p)
    list(until_done(lambda: roll_back(p)))

    assert snapshot(p) == before
    assert all(r.status == "rolled_back" for r in records(p).values())
    assert all(p.fleet.state(rid) in ("shutting-down", "terminated") for rid in replaced.values())
    assert p.migrations.get(MID)["status"] == "rolled_back"
    assert p.migrations.get(MID)["rollback"]["restored"] == 3
    assert [n["event"] for n in p.notifier.sent] == ["rolled-back"]
    assert timeline.lowest(WEB) == 3 and timeline.lowest(API) == 2


# --- budgets ----------------------------------------------------------------------------------------------------------
def test_a_rollback_whose_budget_runs_out_is_finished_by_the_next_invocations(p, monkeypatch):
    monkeypatch.setattr(rollback_module, "CHUNK", 1)
    _, before = migrated_fleet(p)

    first = roll_back(p, BUDGET_FOR_ONE_CHUNK)

    assert (first.done, first.restored) == (False, 1)
    item = p.migrations.get(MID)
    assert item["status"] == "rolling_back" and item["rollback"]["done"] is False
    assert p.notifier.sent == []
    assert sorted(r.status for r in records(p).values()) == ["migrated", "migrated", "rolled_back"]

    rest = [(r.done, r.restored) for r in until_done(lambda: roll_back(p, BUDGET_FOR_ONE_CHUNK))]

    assert rest == [(False, 2), (True, 3)]
    assert p.migrations.get(MID)["status"] == "rolled_back"
    assert [n["event"] for n in p.notifier.sent] == ["rolled-back"]
    assert snapshot(p) == before


def test_an_original_still_booting_when_the_budget_runs_out_is_restored_by_the_next_invocation(monkeypatch):
    p = new_world(boot_seconds=120)
    _, before = migrated_fleet(p, count_in_both=0, count_in_web=2)
    monkeypatch.setattr(rollback_module, "CHUNK", 1)

    # The first chunk ends at 145 s; the second starts with 155 s left and its original boots at 265 s.
    list(until_done(lambda: roll_back(p, 300)))

    assert all(r.status == "rolled_back" for r in records(p).values())
    assert snapshot(p) == before


# --- partial failure: EC2 refusing some originals ---------------------------------------------------------------
def test_an_original_ec2_refuses_to_start_does_not_keep_the_others_stopped(p):
    originals, _ = migrated_fleet(p)
    refused = originals[0].instance_id
    kept = replacements(p)[refused]
    p.fleet.start_refusals[refused] = "UnauthorizedOperation"  # its tags changed: the role may not start it

    with pytest.raises(RollbackIncomplete, match=f"{refused}.*UnauthorizedOperation"):
        roll_back(p)

    stored = records(p)
    assert stored[refused].status == "rollback_failed" and "UnauthorizedOperation" in stored[refused].attempts[-1]
    assert all(stored[o.instance_id].status == "rolled_back" for o in originals[1:])
    assert all(p.fleet.state(o.instance_id) == "running" for o in originals[1:])
    assert p.fleet.state(kept) == "running" and all(kept in p.load_balancer.serving(a) for a in (WEB, API))
    [named] = p.migrations.get(MID)["rollback"]["kept_instances"]
    assert named["instance_id"] == refused and "UnauthorizedOperation" in named["reason"]

    finalize(p).finish(MID, "rollback_failed", None)  # the state machine's RecordRollbackFailure
    [sent] = p.notifier.sent
    [line] = [line for line in sent["lines"] if refused in line]
    assert "UnauthorizedOperation" in line and kept in line


def test_a_capacity_refusal_to_start_an_original_is_tried_again_until_capacity_returns(p):
    originals, before = migrated_fleet(p)
    short = originals[0].instance_id
    p.fleet.start_refusals[short] = "InsufficientInstanceCapacity"

    first = roll_back(p)

    assert not first.done and first.restored == 2
    assert records(p)[short].status == "migrated" and records(p)[short].restore_refused_since
    assert p.notifier.sent == []
    p.clock.sleep(600)
    del p.fleet.start_refusals[short]  # on-demand capacity is back

    assert roll_back(p).done
    assert snapshot(p) == before
    assert all(r.status == "rolled_back" for r in records(p).values())


def test_an_original_without_capacity_for_too_long_keeps_its_replacement_and_says_why(p):
    originals, _ = migrated_fleet(p)
    short = originals[0].instance_id
    kept = replacements(p)[short]
    p.fleet.start_refusals[short] = "InsufficientInstanceCapacity"

    with pytest.raises(RollbackIncomplete, match="no on-demand capacity"):
        for _ in range(200):  # the state machine's loop: WaitForRestore, then Rollback again
            roll_back(p)
            p.clock.sleep(20)

    record = records(p)[short]
    assert record.status == "rollback_failed" and record.replacement_id == kept
    assert p.fleet.state(kept) == "running"
    assert p.clock.monotonic() >= rollback_module.RESTORE_RETRY_SECONDS


# --- every instance launched for the migration -----------------------------------------------------------------
@pytest.mark.parametrize("policy", ["prewarm", "replace"])
def test_a_rebalance_replacement_of_a_replacement_is_terminated_by_the_rollback(p, policy):
    originals, before = migrated_fleet(p)
    replaced = replacements(p)[originals[0].instance_id]
    notice = Notice(event_id="evt-1", instance_id=replaced, kind="rebalance", time=p.clock.now())
    outcome = interruptions(p, default_policy=policy).handle(notice)
    assert outcome.launched
    settle(p)

    list(until_done(lambda: roll_back(p)))

    assert snapshot(p) == before
    assert p.fleet.launched_for(MID) == []
    assert p.registry.statuses([outcome.replacement_id]) == {outcome.replacement_id: "retired"}


def test_a_launch_no_record_knows_yet_is_terminated_by_the_rollback(p):
    originals = serving(p, 2, (WEB, API))
    before = snapshot(p)
    wave = plan(p, originals)
    p.world.crash_on("plans.put_records", after=1)  # launched (written ahead), died before the record said so
    with pytest.raises(Crash):
        migrate(p, wave)
    assert p.fleet.launched_for(MID)

    list(until_done(lambda: roll_back(p)))
    settle(p)

    assert snapshot(p) == before
    assert p.fleet.launched_for(MID) == []


def test_an_interruption_replacement_launched_while_the_rollback_runs_does_not_outlive_it(p):
    originals, before = migrated_fleet(p)
    interrupted = replacements(p)[originals[0].instance_id]
    real = p.fleet.launched_for

    def launched_for(migration_id):  # EC2 interrupts a replacement right after the rollback looked
        found = real(migration_id)
        if not p.world.changes("launch")[3:]:
            notice = Notice(event_id="evt-late", instance_id=interrupted, kind="interruption", time=p.clock.now())
            assert interruptions(p).handle(notice).launched
        return found

    p.fleet.launched_for = launched_for
    list(until_done(lambda: roll_back(p)))
    settle(p)

    assert real(MID) == []
    assert snapshot(p) == before


def test_a_rollback_that_failed_outright_names_every_instance_it_did_not_reach(p):
    originals, _ = migrated_fleet(p)
    replaced = replacements(p)

    finalize(p).finish(MID, "rollback_failed", {"Error": "TargetGroupNotFound"})  # RecordRollbackFailure

    [sent] = p.notifier.sent
    for original in originals:
        [line] = [line for line in sent["lines"] if original.instance_id in line]
        assert "was not rolled back (migrated)" in line and replaced[original.instance_id] in line
    assert {lock.cooldown_after for lock in p.locks.items.values()} == {MID}  # they cool down, not free


def test_an_interruption_replacement_no_record_names_is_found_by_the_instance_it_succeeds(p):
    """EC2 took a replacement back before it had its own tags: its successor (launched by the
    interruption handler, which could not tell the record) names only the instance it succeeds."""
    originals, before = migrated_fleet(p, count_in_both=1, count_in_web=0)
    interrupted = replacements(p)[originals[0].instance_id]
    p.fleet.reclaim(interrupted)
    successor = p.fleet.add(tags={SUCCEEDS_TAG: interrupted, MIGRATION_ID_TAG: MID, MANAGED_TAG: "true"},
                            lifecycle="spot")

    list(until_done(lambda: roll_back(p)))
    settle(p)

    assert p.fleet.state(successor.instance_id) in ("shutting-down", "terminated")
    assert p.fleet.launched_for(MID) == []
    assert snapshot(p) == before
