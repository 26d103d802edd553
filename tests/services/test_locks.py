"""One migration at a time per instance: locks from planning to the end, the cooldown after a
rollback, the re-check right before a launch, and the end of an execution that skipped its own
last step (services/analyze.py, migrate_wave.py, finalize.py, end_execution.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import MID, WEB, finalize, migrate, migrate_wave, plan, records, serving
from fakes import Crash, FakeOnDemandPrices, FakeSpotPrices, Ports

from spot_core.domain.locks import DEFAULT_ROLLBACK_COOLDOWN_SECONDS
from spot_core.domain.request import MigrationRequest
from spot_core.domain.tags import OPT_IN_TAG, REPLACES_TAG, STATEFUL_TAG
from spot_core.services.analyze import Analyze
from spot_core.services.end_execution import EndExecution

OPTED_IN = {OPT_IN_TAG: "true"}


def analyze(p: Ports, migration_id: str) -> dict[str, str | None]:
    """Plan every opted-in instance for `migration_id`; instance id -> exclusion reason (None: a candidate)."""
    p.on_demand = FakeOnDemandPrices({"m5.large": 0.096})
    p.spot_prices = FakeSpotPrices({("m5.large", "us-east-1a"): 0.035})
    service = Analyze(p.fleet, p.load_balancer, p.metrics, p.on_demand, p.spot_prices, p.migrations, p.plans,
                      p.pool_memory, p.locks, p.clock, p.autoscaling)
    service.run(migration_id, MigrationRequest.model_validate({}))
    return {r.instance_id: r.exclusion_reason for r in p.plans.records(migration_id)}


def test_an_instance_held_by_a_live_migration_is_excluded_from_another_plan_with_that_reason(p):
    serving(p, 2, tags=OPTED_IN)
    assert set(analyze(p, "mig-a").values()) == {None}
    p.migrations.update("mig-a", status="migrating")

    second = analyze(p, "mig-b")

    assert set(second.values()) == {"held_by_migration"}
    detail = {r.exclusion_detail for r in p.plans.records("mig-b")}
    assert detail == {"held by migration mig-a, which has not ended"}
    assert p.migrations.get("mig-b")["summary"]["candidates"] == 0


@pytest.mark.parametrize("outcome", ["completed", "rejected", "vetoed", "approval_timed_out", "planned"])
def test_every_ending_releases_the_locks(p, outcome):
    serving(p, 2, tags=OPTED_IN)
    analyze(p, "mig-a")

    finalize(p).finish("mig-a", outcome, None)

    assert p.locks.items == {}
    assert set(analyze(p, "mig-b").values()) == {None}


def test_a_rolled_back_instance_cools_down_before_a_new_plan_takes_it(p):
    instances = serving(p, 2, tags=OPTED_IN)
    analyze(p, "mig-a")
    stored = p.plans.records("mig-a")
    stored[0].status = "rolled_back"  # the rollback touched the first one only
    p.plans.put_record("mig-a", stored[0])

    finalize(p).finish("mig-a", "rolled_back", None)
    after = analyze(p, "mig-b")

    touched, untouched = instances[0].instance_id, instances[1].instance_id
    assert after == {touched: "rollback_cooldown", untouched: None}
    assert "rolled back by migration mig-a" in records(p, "mig-b")[touched].exclusion_detail
    p.clock.sleep(DEFAULT_ROLLBACK_COOLDOWN_SECONDS + 1)
    assert analyze(p, "mig-c")[touched] is None


def test_a_migration_still_planned_keeps_its_locks_even_though_a_dry_run_ends_as_planned(p):
    serving(p, 1, tags=OPTED_IN)
    analyze(p, "mig-a")  # status "planned": reviews and approval are next

    assert set(analyze(p, "mig-b").values()) == {"held_by_migration"}


def test_a_lock_left_by_a_migration_that_ended_without_releasing_it_is_taken_over(p):
    serving(p, 1, tags=OPTED_IN)
    analyze(p, "mig-a")
    p.migrations.update("mig-a", status="completed", finished_at="2026-11-22T12:00:00+00:00")  # died before releasing

    assert set(analyze(p, "mig-b").values()) == {None}
    assert {lock.migration_id for lock in p.locks.items.values()} == {"mig-b"}


# --- the re-check right before a launch -------------------------------------------------------------------------
@pytest.mark.parametrize("change, reason", [({OPT_IN_TAG: "false"}, "opted_out"),
                                            ({STATEFUL_TAG: "true"}, "stateful")])
def test_an_instance_that_became_ineligible_after_approval_is_skipped_not_failed(p, change, reason):
    originals = serving(p, 2)
    wave = plan(p, originals, ratio=1.0)
    p.fleet.set_tags(originals[0].instance_id, **change)

    result = migrate(p, wave)

    skipped = records(p)[originals[0].instance_id]
    assert (skipped.status, skipped.exclusion_reason, skipped.replacement_id) == ("skipped", reason, None)
    assert records(p)[originals[1].instance_id].status == "migrated"
    assert (result.done, result.migrated, result.skipped) == (True, 1, 1)  # 1 of 1 movable: no WaveFailed
    assert [launch["spec"].tags[REPLACES_TAG] for launch in p.world.changes("launch")] == [originals[1].instance_id]
    assert p.fleet.state(originals[0].instance_id) == "running"


def test_an_instance_whose_lock_another_migration_holds_is_skipped(p):
    originals = serving(p, 1)
    wave = plan(p, originals)
    p.locks.release(MID)
    p.locks.acquire("mig-other", [originals[0].instance_id], p.clock.now())

    result = migrate(p, wave)

    record = records(p)[originals[0].instance_id]
    assert (record.status, record.exclusion_reason) == ("skipped", "lock_lost")
    assert "mig-other" in record.exclusion_detail
    assert p.world.changes("launch") == [] and result.skipped == 1


# --- an execution that ended without its own last step ---------------------------------------------------------
def end_execution(p: Ports) -> EndExecution:
    return EndExecution(p.migrations, finalize(p))


def test_an_execution_stopped_mid_wave_ends_the_migration_and_releases_its_locks(p):
    originals = serving(p, 2, (WEB,))
    plan(p, originals)
    p.migrations.update(MID, status="migrating")

    outcome = end_execution(p).run(MID, "ABORTED", "stopped from the console")

    item = p.migrations.get(MID)
    assert (outcome.status, item["status"], outcome.locks_released) == ("stopped", "stopped", 2)
    assert item["outcome_detail"]["Error"] == "execution ABORTED"
    assert p.locks.items == {}
    [sent] = p.notifier.sent
    assert sent["event"] == "stopped" and "0 instance(s) run on Spot" in " ".join(sent["lines"])


def test_an_execution_that_failed_after_recording_its_outcome_is_not_ended_twice(p):
    plan(p, serving(p, 1))
    finalize(p).finish(MID, "rejected", None)
    p.notifier.sent.clear()

    outcome = end_execution(p).run(MID, "FAILED", None)

    assert outcome.status == "rejected" and p.migrations.get(MID)["status"] == "rejected"
    assert p.notifier.sent == []


def test_an_execution_refused_before_anything_was_written_has_nothing_to_end(p):
    assert end_execution(p).run("mig-never", "FAILED", "InvalidMigrationRequest").status == "failed"
    assert p.notifier.sent == []


def test_the_cooldown_is_configurable(p):
    instance = serving(p, 1, tags=OPTED_IN)[0]
    analyze(p, "mig-a")
    stored = p.plans.records("mig-a")[0]
    stored.status = "rolled_back"
    p.plans.put_record("mig-a", stored)
    service = finalize(p)
    service.cooldown_seconds = 60

    service.finish("mig-a", "rolled_back", None)

    lock = p.locks.items[instance.instance_id]
    assert lock.cooldown_until == p.clock.now() + timedelta(seconds=60)


def test_an_original_whose_replacement_still_runs_gets_no_second_one(p):
    originals = serving(p, 2, tags=OPTED_IN)
    wave = plan(p, originals[:1], mid="mig-a")
    p.world.crash_on("lb.register")  # launched, never swapped in: the original still serves
    with pytest.raises(Crash):
        migrate(p, wave, "mig-a")
    finalize(p).finish("mig-a", "stopped", None)  # the execution was stopped there, its locks released

    reasons = analyze(p, "mig-b")

    assert reasons[originals[0].instance_id] == "has_live_replacement"
    assert reasons[originals[1].instance_id] is None
    assert "mig-a" in records(p, "mig-b")[originals[0].instance_id].exclusion_detail


def test_a_replacement_the_product_launched_is_not_planned_again(p):
    [instance] = serving(p, 1, tags={**OPTED_IN, "spot-migration:managed": "true"})
    assert analyze(p, "mig-a") == {instance.instance_id: "launched_by_product"}


def test_a_wave_invocation_still_running_when_the_execution_was_stopped_changes_nothing(p):
    originals = serving(p, 2)
    wave = plan(p, originals)
    end_execution(p).run(MID, "ABORTED", "stopped from the console")
    before = list(p.world.log)

    result = migrate_wave(p).run(MID, wave, p.clock.budget())

    assert p.world.log == before and result.migrated == 0
    assert p.migrations.get(MID)["status"] == "stopped"


def test_an_execution_that_ended_during_its_rollback_ends_rollback_failed_naming_each_instance(p):
    originals = serving(p, 2, (WEB,))
    wave = plan(p, originals)
    migrate(p, wave)
    p.migrations.update(MID, status="rolling_back")  # the Rollback task failed for good, then its record step too

    outcome = end_execution(p).run(MID, "FAILED", "Lambda.TooManyRequestsException")

    assert outcome.status == "rollback_failed"
    named = {n["instance_id"] for n in p.migrations.get(MID)["needs_attention"]}
    assert named == {o.instance_id for o in originals}
    [sent] = p.notifier.sent
    assert all(any(o.instance_id in line for line in sent["lines"]) for o in originals)
