"""A revert (domain/revert.py): a completed migration's Spot instances replaced, make-before-break,
by on-demand instances of their originals' types; the Spot ones kept running out of service until
the revert completes (a rollback puts them back as they were), terminated then."""

from __future__ import annotations

import pytest
from builders import MID, WEB, Timeline, finalize, launches, migrate, plan, records, rollback, serving, until_done
from fakes import FakeOnDemandPrices

from spot_core.domain.errors import InvalidMigrationRequest
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
