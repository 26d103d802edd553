"""Stateful moves: the original's own volumes (root included), secondary interfaces and Elastic
IPs end on the Spot instance at the same devices, in a maintenance step whose downtime is
measured; a move that fails, and a rollback, put them all back on the original."""

from __future__ import annotations

import pytest
from builders import (
    MID,
    WEB,
    count_calls,
    crash_points,
    interruptions,
    launches,
    migrate,
    migrate_wave,
    new_world,
    plan,
    records,
    replacement_of,
    rollback,
    serving,
    settle,
    until_done,
)
from fakes import Crash, Everyone, Ports

from spot_core.domain.carry import ElasticIp, Interface, Inventory, Volume, carry_plan
from spot_core.domain.errors import WaveFailed
from spot_core.domain.health import HealthProbe
from spot_core.domain.instances import Instance
from spot_core.domain.interruptions import Notice
from spot_core.domain.plan import WaveSpec

PROBE = HealthProbe(command="pg_isready", timeout_seconds=30)


def disks_of(instance: Instance) -> Inventory:
    n = instance.instance_id[2:]
    root = Volume(volume_id=f"vol-root-{n}", device="/dev/xvda", size_gib=50, volume_type="gp3", root=True)
    data = Volume(volume_id=f"vol-data-{n}", device="/dev/sdf", size_gib=500, volume_type="io2", iops=8000)
    primary = Interface(interface_id=f"eni-p-{n}", device_index=0, private_ips=("10.0.0.9",), public_ip="54.0.0.9")
    second = Interface(interface_id=f"eni-s-{n}", device_index=1, private_ips=("10.0.9.9",))
    eip = ElasticIp(allocation_id=f"eipalloc-{n}", public_ip="54.0.0.9", private_ip="10.0.0.9",
                    interface_id=primary.interface_id)
    return Inventory(volumes=(root, data), interfaces=(primary, second), addresses=(eip,))


def plan_stateful(p: Ports, originals: list[Instance], probe: HealthProbe | None = None) -> WaveSpec:
    for original in originals:
        p.fleet.set_inventory(original.instance_id, disks_of(original))
        p.fleet.user_datas[original.instance_id] = "IyEvYmluL3NoCg=="
    wave = plan(p, originals)
    planned = p.plans.records(MID)
    for record in planned:
        record.mode = "stateful"
        record.carry = carry_plan("stateful", p.fleet.inventories[record.instance_id], [], probe)
    p.plans.put_records(MID, planned)
    p.world.calls.clear()  # the set-up is not the service's doing
    return wave


def where(p: Ports, original: Instance) -> dict[str, tuple[str | None, str | None]]:
    """Each piece of the original's: (the instance it is on, its device or index)."""
    n = original.instance_id[2:]
    volumes = {v: (p.fleet.volume_at[v].instance_id, p.fleet.volume_at[v].device)
               for v in (f"vol-root-{n}", f"vol-data-{n}")}
    eni = p.fleet.interface_at[f"eni-s-{n}"]
    return {**volumes, f"eni-s-{n}": (eni.instance_id, str(eni.device_index)),
            f"eipalloc-{n}": (p.fleet.addresses[f"eipalloc-{n}"], None)}


def all_on(original: Instance, holder: str) -> dict[str, tuple[str | None, str | None]]:
    """`where` when every piece of the original's is on `holder`, at the original's devices."""
    n = original.instance_id[2:]
    return {f"vol-root-{n}": (holder, "/dev/xvda"), f"vol-data-{n}": (holder, "/dev/sdf"),
            f"eni-s-{n}": (holder, "1"), f"eipalloc-{n}": (holder, None)}


def test_the_same_volumes_interface_and_address_end_on_the_spot_instance_at_the_same_devices(p):
    original = serving(p, 1)[0]
    wave = plan_stateful(p, [original])

    migrate(p, wave)

    spot = replacement_of(p, original)
    n = original.instance_id[2:]
    assert where(p, original) == {f"vol-root-{n}": (spot, "/dev/xvda"), f"vol-data-{n}": (spot, "/dev/sdf"),
                                  f"eni-s-{n}": (spot, "1"), f"eipalloc-{n}": (spot, None)}
    assert p.fleet.state(spot) == "running" and p.fleet.state(original.instance_id) == "stopped"
    assert spot in p.load_balancer.serving(WEB) and original.instance_id not in p.load_balancer.serving(WEB)
    record = records(p)[original.instance_id]
    assert record.status == "migrated" and record.stateful.downtime_seconds > 0
    assert p.fleet.deleted_volumes == [f"vol-own-{spot[2:]}"]  # its own root from the image, swapped out


def test_the_spot_instance_stops_on_interruption_and_runs_nothing_before_it_has_the_disks(p):
    original = serving(p, 1)[0]
    wave = plan_stateful(p, [original])

    migrate(p, wave)

    spec = launches(p)[0]["spec"]
    assert spec.interruption_behavior == "stop" and spec.market == "spot" and spec.user_data is None
    assert spec.subnet_id == original.subnet_id  # volumes and interfaces are zonal
    assert p.fleet.user_datas[replacement_of(p, original)] == "IyEvYmluL3NoCg=="  # set while stopped


def test_the_original_stops_only_after_leaving_its_target_groups_and_the_spot_instance_is_parked(p):
    original = serving(p, 1)[0]
    wave = plan_stateful(p, [original])

    migrate(p, wave)

    spot = replacement_of(p, original)
    log = p.world.log
    parked = log.index(("stop", spot))
    stopped = log.index(("stop", original.instance_id))
    assert parked < stopped
    assert not any(op == "detach_volume" for op, _ in log[:stopped])


def test_a_move_whose_spot_instance_is_not_healthy_puts_every_piece_back_and_starts_the_original(p):
    original = serving(p, 1)[0]
    wave = plan_stateful(p, [original], probe=PROBE)
    p.probes.failing = Everyone()

    with pytest.raises(WaveFailed):
        migrate(p, wave)
    settle(p)

    record = records(p)[original.instance_id]
    spot = record.replacement
    oid = original.instance_id
    assert where(p, original) == all_on(original, oid)
    assert record.status == "failed" and "health probe failed" in " ".join(record.attempts)
    assert p.fleet.state(oid) == "running" and oid in p.load_balancer.serving(WEB)
    assert p.fleet.state(spot) in ("shutting-down", "terminated")


def test_a_rollback_moves_the_disks_back_onto_the_original_which_serves_again(p):
    originals = serving(p, 2)
    wave = plan_stateful(p, originals)
    migrate(p, wave)
    spots = [replacement_of(p, o) for o in originals]

    list(until_done(lambda: rollback(p).run(MID, {"Error": "QualityGateFailed"}, p.clock.budget())))

    for original, spot in zip(originals, spots, strict=True):
        oid = original.instance_id
        assert where(p, original) == all_on(original, oid)
        assert p.fleet.state(oid) == "running" and oid in p.load_balancer.serving(WEB)
        assert p.fleet.state(spot) in ("shutting-down", "terminated")
        assert records(p)[oid].status == "rolled_back"



@pytest.mark.parametrize("phase", ["parking", "draining", "moving", "proving"])
def test_a_rollback_in_the_middle_of_a_move_restores_the_original_with_its_disks(p, phase):
    original = serving(p, 1)[0]
    wave = plan_stateful(p, [original])
    for _ in range(60):  # the wave engine's passes, until the record reaches `phase`
        migrate_wave(p).run(MID, wave, p.clock.budget())
        if records(p)[original.instance_id].phase == phase:
            break
        p.clock.sleep(5)
    assert records(p)[original.instance_id].phase == phase
    spot = records(p)[original.instance_id].replacement

    list(until_done(lambda: rollback(p).run(MID, {"Error": "WaveFailed"}, p.clock.budget())))
    settle(p)

    oid = original.instance_id
    assert where(p, original) == all_on(original, oid)
    assert p.fleet.state(oid) == "running" and oid in p.load_balancer.serving(WEB)
    assert p.fleet.state(spot) in ("shutting-down", "terminated")
    assert not [v for v, at in p.fleet.volume_at.items() if at.state == "available"]  # no volume left over


# --- resuming after a crash ------------------------------------------------------------------------
STATEFUL_OPERATIONS = ("fleet.stop", "fleet.start", "fleet.detach_volume", "fleet.attach_volume",
                       "fleet.detach_interface", "fleet.attach_interface", "fleet.associate_address",
                       "fleet.set_user_data", "fleet.delete_volumes", "fleet.pieces", "plans.put_records",
                       "lb.deregister", "lb.register")


def _crash_free_move() -> Ports:
    p = new_world()
    migrate(p, plan_stateful(p, serving(p, 2)))
    return p


@pytest.mark.parametrize("operation, after", crash_points(count_calls(_crash_free_move, STATEFUL_OPERATIONS)))
def test_a_stateful_move_resumed_after_a_crash_ends_as_without_it(operation, after):
    p = new_world()
    originals = serving(p, 2)
    wave = plan_stateful(p, originals)
    p.world.crash_on(operation, after)

    with pytest.raises(Crash):
        migrate(p, wave)
    migrate(p, wave)

    for original in originals:
        spot, n = replacement_of(p, original), original.instance_id[2:]
        assert where(p, original) == {f"vol-root-{n}": (spot, "/dev/xvda"), f"vol-data-{n}": (spot, "/dev/sdf"),
                                      f"eni-s-{n}": (spot, "1"), f"eipalloc-{n}": (spot, None)}
        assert p.fleet.state(spot) == "running" and p.fleet.state(original.instance_id) == "stopped"
    assert [i.instance_id for i in p.fleet.live() if i.instance_id not in {o.instance_id for o in originals}] \
        == sorted(replacement_of(p, o) for o in originals)  # no second Spot instance for one original
    assert not [v for v, at in p.fleet.volume_at.items() if at.state == "available"]  # spares deleted


def test_an_interrupted_stateful_spot_instance_is_not_copied_from_its_image_its_disks_move_on(p):
    original = serving(p, 1)[0]
    migrate(p, plan_stateful(p, [original]))
    spot = p.fleet.instance(replacement_of(p, original))
    launched = len(launches(p))
    warning = Notice("warning-1", spot.instance_id, "interruption", p.clock.now())

    outcome = interruptions(p).handle(warning)

    assert outcome.action == "rehoming" and "EC2 stops it with its disks" in (outcome.reason or "")
    assert len(launches(p)) == launched  # no copy from the image: its disks are the instance
    assert list(p.rehomes.started) == [f"rehome-{spot.instance_id}"]  # they move on (tests/services/test_rehome.py)
    assert (spot.instance_type, spot.availability_zone) in p.pool_memory.recent_interruptions()
    assert [n["event"] for n in p.notifier.sent][-1] == "stateful-interrupted"



def test_a_stateful_replacement_keeps_its_mode_tag_whatever_its_original_says(p):
    """The original tagged mode=auto (moved stateful, allowed downtime): its replacement's own tags,
    copied from the original after the launch, still say stateful."""
    from dataclasses import replace as changed

    from builders import migrate_wave, serving

    from spot_core.domain.carry import MODE_TAG
    from spot_core.domain.launch_rate import LaunchRate
    from spot_core.domain.plan import InstanceRecord
    from spot_core.services.migrate_wave import _WaveStep

    [original] = serving(p, 1)
    original = changed(original, tags={**original.tags, MODE_TAG: "auto"})
    step = _WaveStep(migrate_wave(p), MID, 0, p.clock.budget(), LaunchRate())
    record = InstanceRecord(instance_id=original.instance_id, instance_type=original.instance_type,
                            availability_zone=original.availability_zone, eligible=True)
    assert step._own_tags(record, original)[MODE_TAG] == "auto"  # stateless: the original's own say
    record.mode = "stateful"
    assert step._own_tags(record, original)[MODE_TAG] == "stateful"
