"""Re-homing: a stateful Spot instance EC2 takes back (it stops with the original's disks) is
succeeded by a new instance in another pool of the same AZ, onto which the same volumes, the
secondary interface and the Elastic IP move; nothing is copied, so nothing written is lost."""

from __future__ import annotations

import json

import pytest
from builders import MID, WEB, count_calls, crash_points, interruptions, migrate, new_world, records, serving
from fakes import Crash, Ports
from test_carry_stateful import PROBE, all_on, plan_stateful, where

from spot_core.domain.instances import Instance
from spot_core.domain.interruptions import Notice
from spot_core.domain.outcomes import DRIFT_FALLBACKS, DRIFT_MONTHLY_SPOT
from spot_core.domain.rehome import RehomeProgress
from spot_core.services.rehome import Rehomes

ZONE = "us-east-1a"
PRICES = {("m5.large", ZONE): 0.035, ("m5a.large", ZONE): 0.031, ("m6i.large", ZONE): 0.038,
          ("m5a.large", "us-east-1b"): 0.020}  # the cheapest pool is in another AZ: never chosen


def rehomes(p: Ports) -> Rehomes:
    return Rehomes(p.fleet, p.load_balancer, p.spot_prices, p.pool_memory, p.registry, p.migrations, p.plans,
                   p.notifier, p.probes, p.clock)


def migrated(p: Ports, probe: bool = False) -> tuple[Instance, str]:
    """One database server moved statefully to Spot: (the original, its Spot instance)."""
    p.spot_prices.prices.update(PRICES)
    original = serving(p, 1)[0]
    migrate(p, plan_stateful(p, [original], PROBE if probe else None))
    p.migrations.update(MID, status="completed")
    return original, records(p)[original.instance_id].replacement or ""


def interrupt(p: Ports, spot: str) -> dict:
    """EC2 warns, the handler starts the re-home; EC2 then stops the instance (persistent request)."""
    outcome = interruptions(p).handle(Notice("warning-1", spot, "interruption", p.clock.now()))
    assert outcome.action == "rehoming", outcome
    p.fleet.reclaim(spot, stop=True)
    return json.loads(p.rehomes.started[f"rehome-{spot}"])


def run(p: Ports, started: dict, passes: int = 100) -> RehomeProgress:
    """The re-home state machine: passes, each followed by the Wait it asks for, until done."""
    for _ in range(passes):
        progress = rehomes(p).step(started["migration_id"], started["original_id"], started["interrupted"])
        if progress.done:
            return progress
        p.clock.sleep(progress.wait_seconds)
    raise AssertionError(f"re-home not done after {passes} passes")


def successor_of(p: Ports, original: Instance) -> Instance:
    return p.fleet.instance(records(p)[original.instance_id].replacement or "")


def test_the_same_disks_interface_and_address_move_to_a_new_spot_instance_in_another_pool_of_the_az(p):
    original, spot = migrated(p)
    interrupted = p.fleet.instance(spot)

    progress = run(p, interrupt(p, spot))

    assert progress.phase == "done"
    new = successor_of(p, original)
    assert where(p, original) == all_on(original, new.instance_id)
    assert new.state == "running" and new.lifecycle == "spot" and new.availability_zone == ZONE
    assert new.instance_type != interrupted.instance_type  # another pool: the cheapest left in the AZ
    assert new.instance_type == "m5a.large"
    assert p.fleet.user_datas[new.instance_id] == p.fleet.user_datas[original.instance_id]
    assert p.fleet.state(spot) in ("shutting-down", "terminated")
    assert spot in [i for op, i in p.world.log if op == "cancel_spot_request"]
    assert p.load_balancer.serving(WEB) == {new.instance_id}
    assert [i.instance_id for i in p.fleet.live()] == [new.instance_id]  # one instance serves for the original
    assert not [v for v, at in p.fleet.volume_at.items() if at.state == "available"]  # its own root: deleted


def test_the_record_follows_with_its_price_and_the_downtime_is_measured_and_told(p):
    original, spot = migrated(p)
    run(p, interrupt(p, spot))

    record = records(p)[original.instance_id]
    assert (record.replacement_type, record.replacement_az, record.replacement_market) == ("m5a.large", ZONE, "spot")
    assert record.replacement_spot_hourly == 0.031
    assert record.rehome is not None and record.rehome.downtime_seconds is not None
    assert 0 < record.rehome.downtime_seconds < 300
    drift = p.migrations.items[MID]
    assert drift[DRIFT_MONTHLY_SPOT] == pytest.approx((0.031 - 0.035) * 730, abs=0.01)
    assert drift[DRIFT_FALLBACKS] == 0
    events = [n["event"] for n in p.notifier.sent]
    assert events[-2:] == ["stateful-interrupted", "stateful-rehomed"] or events[-1] == "stateful-rehomed"
    assert p.notifier.sent[-1]["data"]["successor"] == record.replacement_id


def test_no_spot_capacity_in_the_az_moves_the_disks_on_demand(p):
    original, spot = migrated(p)
    for instance_type in ("m5.large", "m5a.large", "m6i.large"):
        p.fleet.refusals[(instance_type, ZONE)] = "InsufficientInstanceCapacity"

    run(p, interrupt(p, spot))

    new = successor_of(p, original)
    assert new.lifecycle is None and new.instance_type == original.instance_type  # on-demand, the original's type
    assert where(p, original)[f"vol-root-{original.instance_id[2:]}"] == (new.instance_id, "/dev/xvda")
    record = records(p)[original.instance_id]
    assert record.replacement_market == "on-demand" and p.migrations.items[MID][DRIFT_FALLBACKS] == 1


def test_a_successor_that_fails_its_probe_hands_the_disks_to_the_next_one(p):
    original, spot = migrated(p, probe=True)
    started = interrupt(p, spot)
    first: list[str] = []

    def failing_first(operation: str, detail: object) -> None:
        if operation == "launch" and not first:
            first.append(detail["instance_id"])  # type: ignore[index]
            p.probes.failing.add(first[0])
    p.world.observers.append(failing_first)

    run(p, started)

    new = successor_of(p, original)
    assert first and new.instance_id != first[0] and new.state == "running"
    assert where(p, original)[f"vol-data-{original.instance_id[2:]}"] == (new.instance_id, "/dev/sdf")
    assert p.fleet.state(first[0]) in ("shutting-down", "terminated")
    assert [i.instance_id for i in p.fleet.live()] == [new.instance_id]


def test_when_no_successor_can_take_the_disks_it_fails_saying_where_they_are(p):
    original, spot = migrated(p)
    started = interrupt(p, spot)
    p.fleet.refuse_everything = "UnauthorizedOperation"

    progress = run(p, started)

    assert progress.phase == "failed"
    rehome = records(p)[original.instance_id].rehome
    assert rehome is not None and "UnauthorizedOperation" in (rehome.outcome or "")
    assert spot in (rehome.outcome or "")  # the disks stay on the interrupted instance, named
    assert p.notifier.sent[-1]["event"] == "stateful-rehome-failed"
    assert where(p, original)[f"vol-root-{original.instance_id[2:]}"] == (spot, "/dev/xvda")


def test_a_warning_not_followed_by_a_stop_leaves_the_instance_with_its_disks(p):
    original, spot = migrated(p)
    interruptions(p).handle(Notice("warning-1", spot, "interruption", p.clock.now()))
    started = json.loads(p.rehomes.started[f"rehome-{spot}"])  # EC2 never stops it

    progress = run(p, started, passes=400)

    assert progress.phase == "done" and "not stopped by EC2" in (progress.outcome or "")
    assert records(p)[original.instance_id].replacement_id == spot
    assert [i.instance_id for i in p.fleet.live()] == [spot]  # the successor launched meanwhile is gone


def test_the_state_changes_that_follow_the_warning_start_nothing_more(p):
    _, spot = migrated(p)
    interrupt(p, spot)
    p.clock.sleep(60)
    again = interruptions(p).handle(Notice("stopped-1", spot, "state-change", p.clock.now(), state="stopped"))

    assert again.action == "duplicate" and list(p.rehomes.started) == [f"rehome-{spot}"]
    assert [n["event"] for n in p.notifier.sent].count("stateful-interrupted") == 1


def test_the_product_stopping_its_own_stateful_instance_is_not_an_interruption(p):
    _, spot = migrated(p)
    p.fleet.stop([spot])
    p.clock.sleep(60)

    outcome = interruptions(p).handle(Notice("stopped-1", spot, "state-change", p.clock.now(), state="stopped"))

    assert outcome.action == "ignored" and "not a Spot reclaim" in (outcome.reason or "")
    assert not p.rehomes.started and not p.pool_memory.recent_interruptions()


def test_a_rollback_in_progress_owns_the_disks(p):
    original, spot = migrated(p)
    started = interrupt(p, spot)
    p.migrations.update(MID, status="rolling_back")

    progress = run(p, started)

    assert progress.done and "rolling back" in (progress.outcome or "")
    assert records(p)[original.instance_id].replacement_id == spot


def rehomed_world() -> Ports:
    p = new_world()
    _, spot = migrated(p)
    started = interrupt(p, spot)
    p.world.calls.clear()  # the re-home's own calls only
    run(p, started)
    return p


MUTATIONS = ("fleet.launch", "fleet.stop", "fleet.cancel_spot_requests", "fleet.attach_volume", "fleet.detach_volume",
             "fleet.attach_interface", "fleet.detach_interface", "fleet.associate_address", "fleet.start",
             "fleet.terminate", "fleet.delete_volumes", "fleet.set_user_data", "plans.put_record",
             "plans.put_record_drifting", "probes.send")


@pytest.mark.parametrize(("operation", "after"), crash_points(count_calls(rehomed_world, MUTATIONS)))
def test_a_crash_at_any_step_resumes_to_the_same_end(operation, after):
    p = new_world()
    original, spot = migrated(p)
    started = interrupt(p, spot)
    p.world.crash_on(operation, after)

    with pytest.raises(Crash):
        run(p, started)
    progress = run(p, started)

    assert progress.phase == "done"
    new = successor_of(p, original)
    assert where(p, original) == all_on(original, new.instance_id)
    assert [i.instance_id for i in p.fleet.live()] == [new.instance_id]  # no second successor
    drift = p.migrations.items[MID][DRIFT_MONTHLY_SPOT]
    assert drift == pytest.approx((0.031 - 0.035) * 730, abs=0.01)  # counted once


def test_a_rehome_that_stops_before_its_first_step_tells_the_owner_where_the_disks_are(p):
    original, spot = migrated(p)

    progress = rehomes(p).give_up(MID, original.instance_id, spot, "KeyError: boom")

    assert progress.done and "boom" in (progress.outcome or "")
    sent = p.notifier.sent[-1]
    assert sent["event"] == "stateful-rehome-failed" and sent["data"]["holder"] == spot
