"""Which way an instance moves, and what the plan says it carries, changes, or cannot carry."""

from __future__ import annotations

import pytest

from spot_core.domain.analysis import CarryRules, InstanceFacts, build_record
from spot_core.domain.carry import ElasticIp, Interface, Inventory, Volume, choose_mode, stateless_blockers
from spot_core.domain.health import HealthProbe, ProbeResult, StatusChecks, health_verdict, probe_of
from spot_core.domain.instances import LaunchSettings
from spot_core.domain.plan import Pool, TargetRef

ROOT = Volume(volume_id="vol-root", device="/dev/xvda", size_gib=50, volume_type="gp3", iops=3000, throughput=250,
              encrypted=True, kms_key_id="arn:aws:kms:us-east-1:1:key/abc", root=True)
DATA = Volume(volume_id="vol-data", device="/dev/sdf", size_gib=100, volume_type="gp3")
PRIMARY = Interface(interface_id="eni-1", device_index=0, private_ips=("10.0.0.5", "10.0.0.6"), public_ip="54.1.1.1")
SECOND = Interface(interface_id="eni-2", device_index=1, private_ips=("10.0.1.9",))
EIP = ElasticIp(allocation_id="eipalloc-1", public_ip="54.1.1.1", private_ip="10.0.0.5", interface_id="eni-1")
EIP_ON_SECONDARY_IP = ElasticIp(allocation_id="eipalloc-2", public_ip="54.2.2.2", private_ip="10.0.0.6",
                                interface_id="eni-1")
PROBE = HealthProbe(command="curl -fsS localhost/health")
TG = [TargetRef(arn="arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/1", port=80)]
AUTO = CarryRules()
POOL = Pool(instance_type="m5.large", availability_zone="us-east-1a", spot_hourly=0.03)


def inventory(*volumes: Volume, interfaces: tuple[Interface, ...] = (PRIMARY,),
              addresses: tuple[ElasticIp, ...] = (), hibernation: bool = False) -> Inventory:
    return Inventory(volumes=(ROOT, *volumes), interfaces=interfaces, addresses=addresses, hibernation=hibernation)


@pytest.mark.parametrize(("inv", "load_balanced", "probe", "allow_downtime", "expected"), [
    (inventory(), True, None, False, "stateless"),
    (inventory(addresses=(EIP,)), True, None, False, "stateless"),
    (inventory(DATA), True, None, False, "needs_downtime"),
    (inventory(DATA), True, None, True, "stateful"),
    (inventory(interfaces=(PRIMARY, SECOND)), True, None, True, "stateful"),
    (inventory(hibernation=True), True, None, True, "stateful"),
    (inventory(), False, None, False, "needs_downtime"),  # auto wants a target group to go stateless
    (inventory(), False, PROBE, True, "stateful"),
    (inventory(addresses=(EIP_ON_SECONDARY_IP,)), True, None, False, "needs_downtime"),
])
def test_auto_is_stateless_only_behind_a_target_group_with_nothing_but_itself_to_move(
        inv, load_balanced, probe, allow_downtime, expected):
    chosen = choose_mode("auto", inv, load_balanced=load_balanced, probe=probe, allow_downtime=allow_downtime)
    assert (chosen if isinstance(chosen, str) else chosen[0]) == expected


def test_stateless_asked_for_an_instance_with_disks_is_refused_with_what_it_would_leave_behind():
    chosen = choose_mode("stateless", inventory(DATA, interfaces=(PRIMARY, SECOND)), load_balanced=True, probe=None,
                         allow_downtime=True)
    assert chosen == ("cannot_be_stateless", "stateless mode cannot carry: data volume /dev/sdf (vol-data, 100 GiB); "
                                             "secondary interface eni-2")


def test_stateless_without_any_health_signal_is_an_exclusion_not_a_silent_pass():
    chosen = choose_mode("stateless", inventory(), load_balanced=False, probe=None, allow_downtime=True)
    assert isinstance(chosen, tuple) and chosen[0] == "no_health_signal"
    assert choose_mode("stateless", inventory(), load_balanced=False, probe=PROBE, allow_downtime=False) == "stateless"


def test_a_multi_attach_volume_cannot_move_with_its_instance():
    shared = DATA.model_copy(update={"multi_attach": True})
    chosen = choose_mode("stateful", inventory(shared), load_balanced=True, probe=None, allow_downtime=True)
    assert isinstance(chosen, tuple) and chosen[0] == "cannot_be_stateful" and "vol-data is multi-attach" in chosen[1]


def record_of(tags: dict[str, str], inv: Inventory, rules: CarryRules = AUTO, target_groups=TG,
              settings: LaunchSettings | None = None):
    facts = InstanceFacts(instance_id="i-0123456789abcdef0", instance_type="m5.large", availability_zone="us-east-1a",
                          state="running", tags=tags, inventory=inv, settings=settings or LaunchSettings())
    return build_record(facts, on_demand_hourly=0.096, pools=[POOL], cpu_values=[], target_groups=target_groups,
                        min_savings_pct=0, rules=rules)


def test_the_plan_shows_what_a_stateless_move_carries_and_what_changes():
    record = record_of({}, inventory(addresses=(EIP,)), settings=LaunchSettings(metadata_http_tokens="required",
                                                                                 metadata_hop_limit=2))
    assert record.eligible and record.mode == "stateless" and record.carry is not None
    carried, changed = "\n".join(record.carry.carried), "\n".join(record.carry.changed)
    assert "root volume settings: /dev/xvda 50 GiB gp3, 3000 IOPS, 250 MiB/s, encrypted (abc)" in carried
    assert "Elastic IP 54.1.1.1" in carried and "tokens required, hop limit 2" in carried
    assert "primary private IP (was 10.0.0.5)" in changed and "root volume content: fresh from the image" in changed
    assert "public IP" not in changed  # the address is an Elastic IP: it moves
    assert [a.allocation_id for a in record.carry.elastic_ips] == ["eipalloc-1"]


def test_the_tag_overrides_the_requests_mode_and_a_bad_tag_is_an_exclusion_with_the_reason():
    assert record_of({"spot-migration:mode": "stateful"}, inventory()).mode == "stateful"
    assert record_of({"spot-migration:mode": "Stateless"}, inventory(), CarryRules(mode="stateful")).mode == "stateless"
    bad = record_of({"spot-migration:mode": "fast"}, inventory())
    assert bad.exclusion_reason == "invalid_mode_tag" and "'fast' is not one of auto, stateless, stateful" in (
        bad.exclusion_detail or "")


def test_a_probe_tag_wins_over_the_request_and_a_bad_one_is_an_exclusion():
    tags = {"spot-migration:health-probe": "systemctl is-active web", "spot-migration:health-probe-timeout": "45"}
    record = record_of(tags, inventory(), CarryRules(mode="stateless", probe=PROBE), target_groups=[])
    assert record.carry is not None and record.carry.probe == HealthProbe(command="systemctl is-active web",
                                                                          timeout_seconds=45)
    assert record_of({**tags, "spot-migration:health-probe-timeout": "soon"}, inventory()).exclusion_reason == \
        "invalid_probe_tag"
    assert probe_of({}, PROBE) == PROBE


def test_dedicated_tenancy_is_excluded_with_the_reason():
    record = record_of({}, inventory(), settings=LaunchSettings(tenancy="dedicated"))
    assert record.exclusion_reason == "unsupported_tenancy"


def test_a_data_volume_is_named_among_what_blocks_a_stateless_move():
    assert stateless_blockers(inventory(DATA)) == ["data volume /dev/sdf (vol-data, 100 GiB)"]


@pytest.mark.parametrize(("groups", "checks", "probe", "wanted", "expected"), [
    ([], StatusChecks(instance="ok", system="ok"), None, False, "healthy"),
    (["tg"], StatusChecks(instance="ok", system="ok"), None, False, "waiting"),
    ([], StatusChecks(), None, False, "waiting"),
    ([], None, None, False, "waiting"),
    ([], StatusChecks(instance="ok", system="ok"), None, True, "waiting"),
    ([], StatusChecks(instance="ok", system="ok"), ProbeResult(state="pending"), True, "waiting"),
    ([], StatusChecks(instance="ok", system="ok"), ProbeResult(state="success"), True, "healthy"),
    ([], StatusChecks(instance="ok", system="ok"), ProbeResult(state="failed", detail="x"), True, "failed"),
    (["tg"], StatusChecks(instance="impaired", system="ok"), None, False, "failed"),
])
def test_a_replacement_is_healthy_only_with_every_signal_it_has(groups, checks, probe, wanted, expected):
    assert health_verdict(groups, checks, probe, wanted)[0] == expected


def test_a_stateful_move_leaves_no_volume_behind_to_pay_for():
    stateful = record_of({"spot-migration:mode": "stateful"}, inventory(DATA))
    stateless = record_of({}, inventory())
    assert stateful.mode == "stateful" and stateful.stopped_storage_monthly == 0.0
    assert stateless.stopped_storage_monthly == round(50 * 0.08, 2)  # the root it leaves on the stopped original
    assert stateful.carry.downtime_seconds > 0 and stateless.carry.downtime_seconds == 0
