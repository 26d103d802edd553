"""A revert (domain/revert.py): a completed migration's Spot instances replaced, make-before-break,
by on-demand instances of their originals' types; the Spot ones kept running out of service until
the revert completes (a rollback puts them back as they were), terminated then."""

from __future__ import annotations

import pytest
from builders import (
    MID,
    WEB,
    ZONES,
    Timeline,
    finalize,
    launches,
    migrate,
    plan,
    records,
    rollback,
    serving,
    until_done,
)
from fakes import FakeOnDemandPrices

from spot_core.domain.errors import InvalidMigrationRequest, RollbackIncomplete, WaveFailed
from spot_core.domain.plan import WaveSpec
from spot_core.domain.request import MigrationRequest, RevertOf
from spot_core.domain.tags import RETIRED_BY_TAG, REVERTED_BY_TAG
from spot_core.services.analyze import Analyze

REVERT = "rev-1"


def completed(p, count: int = 3):
    originals = serving(p, count)
    migrate(p, plan(p, originals))
    finalize(p).finish(MID, "completed", None)
    p.on_demand = FakeOnDemandPrices({o.instance_type: 0.096 for o in originals})
    return originals


def revert(p, *names: str) -> dict:
    request = MigrationRequest(revert=RevertOf(migration_id=MID, instance_ids=list(names)), waves=[100],
                               bake_seconds=[0], min_savings_pct=0)
    Analyze(p.fleet, p.load_balancer, p.metrics, p.on_demand, p.spot_prices, p.migrations, p.plans, p.pool_memory,
            p.locks, p.clock, p.autoscaling).run(REVERT, request)
    planned = p.plans.records(REVERT)
    for record in planned:
        record.wave = 0 if record.eligible else None
    p.plans.put_records(REVERT, planned)
    p.migrations.update(REVERT, status="approved")
    return records(p, REVERT)


def wave(count: int) -> WaveSpec:
    return WaveSpec(index=0, percent=100, bake_seconds=0, target_count=count, cumulative=count)


def test_a_revert_replaces_each_spot_instance_by_an_on_demand_one_of_the_originals_type_make_before_break(p):
    originals = completed(p)
    spot = {r.replacement_id: r for r in records(p).values()}
    planned = revert(p)
    assert set(planned) == set(spot) and all(r.eligible for r in planned.values())
    assert all(r.pools[0].market == "on-demand" and r.monthly_savings < 0 for r in planned.values())
    timeline = Timeline(p, (WEB,))

    migrate(p, wave(len(spot)), mid=REVERT)

    reverted = records(p, REVERT)
    assert all(r.status == "migrated" and r.replacement_market == "on-demand" for r in reverted.values())
    for launch in launches(p)[-len(spot):]:
        assert launch["spec"].market == "on-demand"
        assert launch["spec"].instance_type == originals[0].instance_type
        assert launch["spec"].tags[REVERTED_BY_TAG] == REVERT
    assert timeline.lowest(WEB) >= len(originals)  # never below the capacity it started with
    for spot_id in spot:  # out of service but running until the revert ends
        assert p.fleet.state(spot_id) == "running" and p.fleet.instance(spot_id).tags[RETIRED_BY_TAG] == REVERT

    finalize(p).finish(REVERT, "completed", None)
    assert all(p.fleet.state(s) in ("shutting-down", "terminated") for s in spot)
    source = records(p)
    assert {r.replacement_id for r in source.values()} == {r.replacement_id for r in reverted.values()}
    assert all(r.reverted_by == REVERT and r.replacement_market == "on-demand" for r in source.values())


def test_finalizing_a_revert_twice_changes_nothing_more(p):
    completed(p, 2)
    migrate(p, wave(len(revert(p))), mid=REVERT)
    finalize(p).finish(REVERT, "completed", None)
    once = records(p)
    finalize(p).finish(REVERT, "completed", None)
    assert records(p) == once


def test_a_named_instance_is_reverted_alone_by_its_original_or_current_id(p):
    originals = completed(p)
    first = records(p)[originals[0].instance_id]
    assert list(revert(p, originals[0].instance_id)) == [first.replacement_id]
    p.migrations.items.pop(REVERT)
    assert list(revert(p, first.replacement_id)) == [first.replacement_id]


@pytest.mark.parametrize("status", ["migrating", "rolled_back", "awaiting_approval"])
def test_only_a_completed_migration_is_reverted_and_nothing_is_written(p, status):
    completed(p, 1)
    p.migrations.update(MID, status=status)
    with pytest.raises(InvalidMigrationRequest, match="only a completed migration"):
        revert(p)
    assert REVERT not in p.migrations.items


def test_an_instance_the_migration_did_not_move_is_an_error_and_nothing_is_written(p):
    completed(p, 1)
    with pytest.raises(InvalidMigrationRequest, match="i-00000000000000ff"):
        revert(p, "i-00000000000000ff")
    assert REVERT not in p.migrations.items


def test_a_spot_instance_opted_out_or_already_on_demand_is_excluded_with_its_reason(p):
    originals = completed(p, 2)
    first, second = (records(p)[o.instance_id] for o in originals)
    p.fleet.set_tags(first.replacement, **{"spot-migration:opt-in": "false"})
    p.fleet.terminate([second.replacement])
    planned = revert(p)
    assert planned[first.replacement].exclusion_reason == "not_opted_in"
    assert planned[second.replacement].exclusion_reason == "not_running"


def test_a_rollback_of_a_revert_puts_the_spot_fleet_back_exactly(p):
    completed(p)
    spot = {r.replacement_id for r in records(p).values()}
    migrate(p, wave(len(revert(p))), mid=REVERT)
    on_demand = {r.replacement_id for r in records(p, REVERT).values()}

    list(until_done(lambda: rollback(p).run(REVERT, {"Error": "QualityGateFailed"}, p.clock.budget())))

    assert all(r.status == "rolled_back" for r in records(p, REVERT).values())
    assert all(p.fleet.state(s) == "running" and RETIRED_BY_TAG not in p.fleet.instance(s).tags for s in spot)
    assert set(p.load_balancer.serving(WEB)) >= spot
    assert all(p.fleet.state(o) in ("shutting-down", "terminated") for o in on_demand)
    assert {r.replacement_id for r in records(p).values()} == spot  # the migration's records are as they were


# --- a revert and the interruption handler, a revert and other migrations ----------------------------------
def warned(p, instance_id: str):
    from datetime import timedelta

    from builders import interruptions

    from spot_core.domain.interruptions import Notice

    p.spot_prices.prices = {(t, z): 0.03 for t in ("m5.large", "m5a.large", "m6i.large") for z in ZONES}
    return interruptions(p).handle(Notice(f"w-{instance_id}", instance_id, "interruption",
                                          p.clock.now() - timedelta(seconds=2)))


def test_a_spot_instance_interrupted_once_the_revert_launched_for_it_gets_no_second_replacement(p):
    completed(p, 1)
    [spot] = [r.replacement for r in records(p).values()]
    revert(p)
    migrate_wave_once(p)  # the on-demand instance is launched, the Spot one marked retired
    launched = len(launches(p))

    outcome = warned(p, spot)

    assert outcome.action == "ignored" and "retired by revert" in (outcome.reason or "")
    assert len(launches(p)) == launched
    migrate(p, wave(1), mid=REVERT)
    assert records(p, REVERT)[spot].status == "migrated"


def test_a_spot_instance_the_interruption_handler_replaced_first_is_left_to_its_replacement(p):
    completed(p, 1)
    [spot] = [r.replacement for r in records(p).values()]
    revert(p)
    outcome = warned(p, spot)  # before the revert's wave: the handler replaces it
    assert outcome.action == "replaced"

    migrate(p, wave(1), mid=REVERT)

    record = records(p, REVERT)[spot]
    assert record.status == "skipped" and record.exclusion_reason == "interrupted"
    assert not [launch for launch in launches(p) if launch["spec"].market == "on-demand"]
    assert RETIRED_BY_TAG not in p.fleet.instance(spot).tags


def test_the_reverts_on_demand_instances_are_its_own_until_it_ends(p):
    completed(p, 2)
    migrate(p, wave(len(revert(p))), mid=REVERT)
    on_demand = sorted(r.replacement for r in records(p, REVERT).values())
    assert {i: lock.migration_id for i, lock in p.locks.locks(on_demand).items()} == dict.fromkeys(on_demand, REVERT)
    finalize(p).finish(REVERT, "completed", None)
    assert p.locks.locks(on_demand) == {}  # released with the revert's others: a migration may take them back


def migrate_wave_once(p) -> None:
    from builders import migrate_wave

    migrate_wave(p).run(REVERT, wave(len(p.plans.records(REVERT))), p.clock.budget())


def test_a_spot_instance_the_revert_gives_up_on_serves_on_and_is_replaced_again_when_interrupted(p):
    originals = completed(p, 1)
    [spot] = [r.replacement for r in records(p).values()]
    revert(p)
    p.fleet.on_demand_refusals[(originals[0].instance_type, originals[0].availability_zone)] = \
        "InsufficientInstanceCapacity"

    with pytest.raises(WaveFailed):
        migrate(p, wave(1), mid=REVERT)

    record = records(p, REVERT)[spot]
    assert record.status == "failed" and "on-demand capacity refused" in record.attempts[-1]
    assert RETIRED_BY_TAG not in p.fleet.instance(spot).tags
    assert spot in p.load_balancer.serving(WEB)
    assert warned(p, spot).action == "replaced"


def test_a_spot_instance_a_revert_rollback_cannot_bring_back_is_terminated_and_the_on_demand_one_serves(p):
    completed(p, 1)
    [spot] = [r.replacement for r in records(p).values()]
    migrate(p, wave(len(revert(p))), mid=REVERT)
    [on_demand] = [r.replacement for r in records(p, REVERT).values()]
    p.fleet.terminate([spot])  # EC2 took it back meanwhile: no rollback brings it back

    with pytest.raises(RollbackIncomplete):
        list(until_done(lambda: rollback(p).run(REVERT, {"Error": "QualityGateFailed"}, p.clock.budget())))
    finalize(p).finish(REVERT, "rollback_failed", None)

    assert records(p, REVERT)[spot].status == "rollback_failed"
    assert p.fleet.state(on_demand) == "running" and on_demand in p.load_balancer.serving(WEB)
    [source] = records(p).values()
    assert source.replacement_id == on_demand and source.reverted_by == REVERT
