"""Stateless moves carry the whole instance: its root volume's settings, its Elastic IP (moved
once the replacement is healthy, back on rollback), and health is proven without a load
balancer too (EC2's status checks, a probe run on the replacement)."""

from __future__ import annotations

import pytest
from builders import MID, WEB, launches, migrate, plan, records, replacement_of, rollback, serving, until_done
from fakes import Everyone, Ports

from spot_core.domain.carry import ElasticIp, Interface, Inventory, Volume, carry_plan
from spot_core.domain.errors import WaveFailed
from spot_core.domain.health import HealthProbe
from spot_core.domain.instances import Instance
from spot_core.domain.plan import WaveSpec
from spot_core.services.quality_gate import QualityGate

PROBE = HealthProbe(command="curl -fsS localhost:8080/health", timeout_seconds=30)


def inventory_of(instance: Instance, *, eip: bool = False, data_volume: bool = False,
                 source_dest_check: bool = True) -> Inventory:
    root = Volume(volume_id=f"vol-r{instance.instance_id[2:]}", device="/dev/xvda", size_gib=120, volume_type="io2",
                  iops=6000, encrypted=True, kms_key_id="arn:aws:kms:us-east-1:123456789012:key/k-1",
                  delete_on_termination=True, root=True)
    data = (Volume(volume_id=f"vol-d{instance.instance_id[2:]}", device="/dev/sdf", size_gib=100,
                   volume_type="gp3"),) if data_volume else ()
    primary = Interface(interface_id=f"eni-{instance.instance_id[2:]}", device_index=0, private_ips=("10.0.0.5",),
                        public_ip="54.0.0.5" if eip else None)
    address = (ElasticIp(allocation_id=f"eipalloc-{instance.instance_id[2:]}", public_ip="54.0.0.5",
                         private_ip="10.0.0.5", interface_id=primary.interface_id),) if eip else ()
    return Inventory(volumes=(root, *data), interfaces=(primary,), addresses=address,
                     source_dest_check=source_dest_check)


def plan_stateless(p: Ports, originals: list[Instance], probe: HealthProbe | None = None,
                   **inventory: bool) -> WaveSpec:
    """A planned wave whose records move stateless, as the analysis plans them."""
    for original in originals:
        p.fleet.set_inventory(original.instance_id, inventory_of(original, **inventory))
    wave = plan(p, originals)
    planned = p.plans.records(MID)
    for record in planned:
        record.mode = "stateless"
        record.carry = carry_plan("stateless", p.fleet.inventories[record.instance_id], [], probe)
    p.plans.put_records(MID, planned)
    return wave


def test_the_replacement_gets_the_root_volume_settings_of_its_original(p):
    original = serving(p, 1)[0]
    wave = plan_stateless(p, [original])

    migrate(p, wave)

    root = launches(p)[0]["spec"].settings.root_volume
    assert (root.device, root.size_gib, root.volume_type, root.iops, root.encrypted, root.kms_key_id) == (
        "/dev/xvda", 120, "io2", 6000, True, "arn:aws:kms:us-east-1:123456789012:key/k-1")


def test_an_elastic_ip_moves_to_the_replacement_once_it_is_healthy_and_back_on_rollback(p):
    original = serving(p, 1)[0]
    allocation = f"eipalloc-{original.instance_id[2:]}"
    wave = plan_stateless(p, [original], eip=True)

    migrate(p, wave)

    replacement = replacement_of(p, original)
    assert p.fleet.addresses[allocation] == replacement
    moved_at = p.world.log.index(("associate_address", (allocation, replacement)))
    stopped_at = next(n for n, (op, data) in enumerate(p.world.log) if op == "stop" and original.instance_id in data)
    assert moved_at < stopped_at  # clients of the address reach the replacement before the original stops
    assert [a.allocation_id for a in records(p)[original.instance_id].moved_addresses] == [allocation]

    list(until_done(lambda: rollback(p).run(MID, {"Error": "QualityGateFailed"}, p.clock.budget())))

    assert p.fleet.addresses[allocation] == original.instance_id
    assert p.fleet.state(original.instance_id) == "running" and p.fleet.state(replacement) in ("shutting-down",
                                                                                            "terminated")


def test_a_data_volume_attached_since_the_plan_skips_the_instance_instead_of_leaving_it_behind(p):
    original = serving(p, 1)[0]
    wave = plan_stateless(p, [original])
    p.fleet.set_inventory(original.instance_id, inventory_of(original, data_volume=True))

    migrate(p, wave)

    record = records(p)[original.instance_id]
    assert record.status == "skipped" and record.exclusion_reason == "cannot_be_stateless"
    assert "data volume /dev/sdf" in (record.exclusion_detail or "")
    assert launches(p) == [] and p.fleet.state(original.instance_id) == "running"


def test_an_instance_in_no_target_group_moves_once_its_probe_passes_after_the_status_checks(p):
    original = serving(p, 1, groups=())[0]
    p.fleet.status_check_seconds = 120
    wave = plan_stateless(p, [original], probe=PROBE)

    migrate(p, wave)

    replacement = replacement_of(p, original)
    assert p.probes.sent == [(replacement, PROBE)]
    assert records(p)[original.instance_id].status == "migrated"
    assert p.fleet.state(original.instance_id) in ("stopping", "stopped")
    probed = p.world.log.index(("probe", replacement))
    assert not any(op == "stop" for op, _ in p.world.log[:probed])  # the original stops only after the probe


def test_a_failing_probe_abandons_the_replacement_and_leaves_the_original_serving(p):
    original = serving(p, 1)[0]
    wave = plan_stateless(p, [original], probe=PROBE)
    p.probes.failing = Everyone()

    with pytest.raises(WaveFailed):
        migrate(p, wave)

    record = records(p)[original.instance_id]
    assert record.status == "failed" and "health probe failed: Failed (exit 1)" in record.attempts[-1]
    assert p.fleet.state(original.instance_id) == "running" and original.instance_id in p.load_balancer.serving(WEB)
    assert p.fleet.state(record.replacement) in ("shutting-down", "terminated")


def test_a_replacement_ssm_cannot_reach_is_abandoned_with_the_reason(p):
    original = serving(p, 1)[0]
    wave = plan_stateless(p, [original], probe=PROBE)
    p.probes.refusing = Everyone()

    with pytest.raises(WaveFailed):
        migrate(p, wave)

    record = records(p)[original.instance_id]
    assert record.status == "failed" and "not an SSM managed instance" in record.attempts[-1]
    assert p.fleet.state(original.instance_id) == "running"


def test_impaired_status_checks_abandon_the_replacement_even_when_the_load_balancer_says_healthy(p):
    original = serving(p, 1)[0]
    wave = plan_stateless(p, [original])
    p.fleet.impaired = Everyone()

    with pytest.raises(WaveFailed):
        migrate(p, wave)

    record = records(p)[original.instance_id]
    assert record.status == "failed" and "EC2 status checks failed (instance impaired" in record.attempts[-1]
    assert p.fleet.state(original.instance_id) == "running" and original.instance_id in p.load_balancer.serving(WEB)


def test_a_router_instance_keeps_its_source_destination_check_off(p):
    original = serving(p, 1)[0]
    wave = plan_stateless(p, [original], source_dest_check=False)

    migrate(p, wave)

    assert p.fleet.source_dest_checks == {replacement_of(p, original): False}



def test_the_quality_gate_counts_a_migrated_replacement_whose_status_checks_fail(p):
    originals = serving(p, 2)
    wave = plan_stateless(p, originals)
    migrate(p, wave)
    gate = QualityGate(p.metrics, p.fleet, p.load_balancer, p.migrations, p.plans, p.clock, p.probes)
    assert gate.unhealthy_replacements(MID) == []

    p.fleet.impaired = {replacement_of(p, originals[1])}

    assert gate.unhealthy_replacements(MID) == [replacement_of(p, originals[1])]
