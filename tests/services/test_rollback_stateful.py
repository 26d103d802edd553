"""Rollback of a stateful move whose original cannot come back: its Spot instance has none of
its own disks any more (they went back onto the original), so every volume, interface and
Elastic IP moves back onto it, it starts and is registered again, and only then is the record
given up, naming why; resumable after a crash at any step (services/rollback.py)."""

from __future__ import annotations

from typing import Any

import pytest
from builders import MID, WEB, count_calls, crash_points, migrate, new_world, records, replacement_of, rollback, serving
from fakes import Crash, Ports
from test_carry_stateful import all_on, plan_stateful, where

from spot_core.domain.errors import RollbackIncomplete
from spot_core.domain.instances import Instance
from spot_core.services import rollback as rollback_module

FAILURE = {"Error": "QualityGateFailed"}
WAIT_FOR_RESTORE = 20  # the state machine's Wait between two Rollback invocations


def migrated_stateful(p: Ports, count: int = 2) -> list[Instance]:
    originals = serving(p, count)
    migrate(p, plan_stateful(p, originals))
    p.world.calls.clear()
    return originals


def roll_back_to_the_end(p: Ports, invocations: int = 200) -> RollbackIncomplete:
    """The state machine's loop (Rollback, WaitForRestore, Rollback ...) until the rollback ends
    naming the originals it could not restore."""
    for _ in range(invocations):
        try:
            result = rollback(p).run(MID, FAILURE, p.clock.budget())
        except RollbackIncomplete as incomplete:
            return incomplete
        assert not result.done, "the rollback ended as if every original were back"
        p.clock.sleep(WAIT_FOR_RESTORE)
    raise AssertionError(f"the rollback did not end in {invocations} invocations")


def assert_serving_on_its_spot_instance(p: Ports, original: Instance, spot: str) -> None:
    """Every piece on the Spot instance at its device, which runs and serves; the original stopped."""
    n = original.instance_id[2:]
    assert where(p, original) == {f"vol-root-{n}": (spot, "/dev/xvda"), f"vol-data-{n}": (spot, "/dev/sdf"),
                                  f"eni-s-{n}": (spot, "1"), f"eipalloc-{n}": (spot, None)}
    assert p.fleet.state(spot) == "running" and spot not in p.world.changes("terminate")
    assert spot in p.load_balancer.serving(WEB) and original.instance_id not in p.load_balancer.registered(WEB)
    assert p.fleet.state(original.instance_id) == "stopped"
    assert not [v for v, at in p.fleet.volume_at.items() if at.state == "available"]  # nothing left behind


def assert_rolled_back_normally(p: Ports, original: Instance, spot: str) -> None:
    oid = original.instance_id
    assert where(p, original) == all_on(original, oid)
    assert p.fleet.state(oid) == "running" and oid in p.load_balancer.serving(WEB)
    assert p.fleet.state(spot) in ("shutting-down", "terminated")
    assert records(p)[oid].status == "rolled_back"


# --- the original cannot start: the Spot instance takes its disks back and serves -----------------------
def test_an_original_without_capacity_for_too_long_has_its_disks_back_on_its_spot_instance_which_serves(p):
    short, other = migrated_stateful(p)
    spots = {o.instance_id: replacement_of(p, o) for o in (short, other)}
    p.fleet.start_refusals[short.instance_id] = "InsufficientInstanceCapacity"

    incomplete = roll_back_to_the_end(p)

    assert p.clock.monotonic() >= rollback_module.RESTORE_RETRY_SECONDS  # tried again for the whole window
    spot = spots[short.instance_id]
    assert_serving_on_its_spot_instance(p, short, spot)
    record = records(p)[short.instance_id]
    assert (record.status, record.replacement_id) == ("rollback_failed", spot)
    assert "no on-demand capacity to start it (InsufficientInstanceCapacity)" in record.attempts[-1]
    assert f"its disks are back on {spot}, which serves" in record.attempts[-1]
    assert short.instance_id in str(incomplete) and f"back on {spot}" in str(incomplete)
    [named] = p.migrations.get(MID)["rollback"]["kept_instances"]
    assert (named["instance_id"], named["replacement_id"]) == (short.instance_id, spot)
    assert_rolled_back_normally(p, other, spots[other.instance_id])  # the other one was not held up


def test_an_original_ec2_refuses_to_start_for_another_reason_has_its_disks_back_on_its_spot_instance_at_once(p):
    refused, other = migrated_stateful(p)
    spots = {o.instance_id: replacement_of(p, o) for o in (refused, other)}
    p.fleet.start_refusals[refused.instance_id] = "UnauthorizedOperation"

    with pytest.raises(RollbackIncomplete, match=refused.instance_id):
        rollback(p).run(MID, FAILURE, p.clock.budget())  # one invocation: nothing to wait for

    spot = spots[refused.instance_id]
    assert_serving_on_its_spot_instance(p, refused, spot)
    record = records(p)[refused.instance_id]
    assert record.status == "rollback_failed" and "UnauthorizedOperation" in record.attempts[-1]
    assert f"its disks are back on {spot}, which serves" in record.attempts[-1]
    assert_rolled_back_normally(p, other, spots[other.instance_id])


def test_an_original_never_healthy_again_is_stopped_and_its_disks_go_back_onto_its_spot_instance(p):
    original = migrated_stateful(p, count=1)[0]
    spot = replacement_of(p, original)
    p.load_balancer.unhealthy.add(original.instance_id)  # it runs with its disks, and fails its health checks

    roll_back_to_the_end(p)

    assert_serving_on_its_spot_instance(p, original, spot)  # the original stopped and out of its group
    why = records(p)[original.instance_id].attempts[-1]
    assert "not running and healthy in every target group" in why and f"back on {spot}, which serves" in why


def test_the_rollback_is_not_done_while_the_disks_move_back_onto_the_spot_instance():
    p = new_world(boot_seconds=400)  # the Spot instance boots longer than one invocation waits for it
    original = migrated_stateful(p, count=1)[0]
    spot = replacement_of(p, original)
    p.fleet.start_refusals[original.instance_id] = "UnauthorizedOperation"

    first = rollback(p).run(MID, FAILURE, p.clock.budget())

    assert not first.done
    record = records(p)[original.instance_id]
    assert record.status == "migrated" and "UnauthorizedOperation" in (record.restore_given_up or "")
    assert p.fleet.state(spot) == "pending"  # started with every piece, not running yet
    assert p.migrations.get(MID)["status"] == "rolling_back" and p.notifier.sent == []

    roll_back_to_the_end(p)

    assert_serving_on_its_spot_instance(p, original, spot)
    assert records(p)[original.instance_id].status == "rollback_failed"


# --- neither can run: named, never silent -------------------------------------------------------------
def test_a_spot_instance_that_cannot_start_either_keeps_the_disks_and_both_reasons_are_named(p):
    original = migrated_stateful(p, count=1)[0]
    spot = replacement_of(p, original)
    p.fleet.start_refusals[original.instance_id] = "UnauthorizedOperation"
    p.fleet.start_refusals[spot] = "InsufficientInstanceCapacity"

    incomplete = roll_back_to_the_end(p)

    n = original.instance_id[2:]
    assert where(p, original) == {f"vol-root-{n}": (spot, "/dev/xvda"), f"vol-data-{n}": (spot, "/dev/sdf"),
                                  f"eni-s-{n}": (spot, "1"), f"eipalloc-{n}": (spot, None)}
    assert p.fleet.state(spot) == "stopped" and spot not in p.world.changes("terminate")  # it holds the disks
    record = records(p)[original.instance_id]
    why = record.attempts[-1]
    assert (record.status, record.replacement_id) == ("rollback_failed", spot)
    assert "UnauthorizedOperation" in why and f"EC2 refused to start {spot} too" in why
    assert f"vol-root-{n} (on {spot})" in why and f"eni-s-{n} (on {spot})" in why and "not serving" in why
    assert "54.0.0.9" in why and spot in str(incomplete)


def test_a_spot_instance_terminated_meanwhile_leaves_the_disks_where_they_are_named(p):
    original = migrated_stateful(p, count=1)[0]
    spot = replacement_of(p, original)
    oid, n = original.instance_id, original.instance_id[2:]
    p.fleet.start_refusals[oid] = "UnauthorizedOperation"

    def terminated_once_the_disks_are_back(operation, detail):  # by someone, before the original is refused
        if (operation, detail) == ("attach_volume", (f"vol-root-{n}", oid, "/dev/xvda")):
            p.fleet.reclaim(spot)

    p.world.observers.append(terminated_once_the_disks_are_back)

    roll_back_to_the_end(p)

    record = records(p)[oid]
    why = record.attempts[-1]
    assert (record.status, record.replacement_id) == ("rollback_failed", None)
    assert "UnauthorizedOperation" in why and f"its Spot instance {spot} is" in why
    assert f"vol-root-{n} (on {oid})" in why and f"vol-data-{n} (on {oid})" in why
    assert where(p, original)[f"vol-root-{n}"] == (oid, "/dev/xvda")  # nothing moved towards a gone instance


def test_disks_that_do_not_get_onto_the_spot_instance_in_time_are_named_and_the_rollback_ends(p):
    original = migrated_stateful(p, count=1)[0]
    spot = replacement_of(p, original)
    n = original.instance_id[2:]
    p.fleet.start_refusals[original.instance_id] = "UnauthorizedOperation"
    p.fleet.never_boots.add(p.fleet.instance(spot).instance_type)  # EC2 keeps it pending

    roll_back_to_the_end(p)

    record = records(p)[original.instance_id]
    why = record.attempts[-1]
    assert (record.status, record.replacement_id) == ("rollback_failed", spot)
    assert f"its disks did not get onto {spot} in {rollback_module.RETURN_SECONDS // 60} min" in why
    assert f"vol-root-{n} (on {spot})" in why and "not serving" in why


# --- resuming after a crash ------------------------------------------------------------------------------
OPERATIONS = ("fleet.describe", "fleet.pieces", "fleet.stop", "fleet.start", "fleet.detach_volume",
              "fleet.attach_volume", "fleet.detach_interface", "fleet.attach_interface",
              "fleet.associate_address", "fleet.delete_volumes", "fleet.terminate", "lb.register",
              "lb.deregister", "lb.target_states", "plans.put_record", "migrations.update")


def _refused(p: Ports, original: Instance, code: str) -> None:
    p.fleet.start_refusals[original.instance_id] = code


def _crash_free(code: str) -> Ports:
    p = new_world()
    _refused(p, migrated_stateful(p)[0], code)
    roll_back_to_the_end(p)
    return p


def every_call(calls: dict[str, int]) -> list[Any]:
    """(operation, after) at every call of each operation."""
    return [pytest.param(op, after, id=f"{op}-after-{after}") for op, count in calls.items() for after in range(count)]


# A refusal given up at once: a crash at every call. A capacity refusal, tried again for the whole
# window (hundreds of calls): at the first, a middle and the last call of each operation.
SWEEPS = {"UnauthorizedOperation": every_call, "InsufficientInstanceCapacity": crash_points}
CRASH_POINTS = [pytest.param(code, *point.values, id=f"{code}-{point.id}")
                for code, sweep in SWEEPS.items()
                for point in sweep(count_calls(lambda c=code: _crash_free(c), OPERATIONS))]


def test_the_crash_points_cover_every_operation_of_both_refusals():
    for code in SWEEPS:
        assert {param.values[1] for param in CRASH_POINTS if param.values[0] == code} == set(OPERATIONS)


@pytest.mark.parametrize("code, operation, after", CRASH_POINTS)
def test_disks_going_back_onto_the_spot_instance_after_a_crash_end_as_without_it(code, operation, after):
    p = new_world()
    given_up, other = migrated_stateful(p)
    spots = {o.instance_id: replacement_of(p, o) for o in (given_up, other)}
    _refused(p, given_up, code)
    p.world.crash_on(operation, after)

    with pytest.raises(Crash):
        roll_back_to_the_end(p)
    roll_back_to_the_end(p)

    assert_serving_on_its_spot_instance(p, given_up, spots[given_up.instance_id])
    record = records(p)[given_up.instance_id]
    assert record.status == "rollback_failed" and code in record.attempts[-1]
    assert f"its disks are back on {spots[given_up.instance_id]}, which serves" in record.attempts[-1]
    assert_rolled_back_normally(p, other, spots[other.instance_id])
