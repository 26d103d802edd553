"""MigrateWave: make-before-break replacement of a wave's on-demand instances with Spot,
resumable after a crash at any step, in chunks across invocations (services/migrate_wave.py)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest
from builders import (
    API,
    MID,
    POOL_TYPES,
    WEB,
    Timeline,
    count_calls,
    crash_points,
    index,
    launches,
    migrate_wave,
    new_world,
    plan,
    pools,
    records,
    replacement_of,
    serving,
    settle,
    sweeper,
    until_done,
)
from fakes import Crash, Ports

from spot_core.domain.carry import VolumeSettings
from spot_core.domain.errors import WaveFailed
from spot_core.domain.instances import Instance, LaunchSettings
from spot_core.domain.plan import WaveSpec
from spot_core.domain.tags import MANAGED_TAG, MIGRATION_ID_TAG, REPLACES_TAG, SUCCEEDS_TAG, WAVE_TAG

ICE = "InsufficientInstanceCapacity"


class NoSleep:
    """A clock a service must not sleep on (waits belong to the state machine)."""

    def __init__(self, clock):
        self.clock = clock

    def now(self):
        return self.clock.now()

    def monotonic(self):
        return self.clock.monotonic()

    def sleep(self, seconds):
        raise AssertionError(f"the service slept {seconds} s")


def invoke(p: Ports, wave: WaveSpec, seconds: float = 900):
    """One invocation, then the state machine's Wait for as long as it asked."""
    result = migrate_wave(p).run(MID, wave, p.clock.budget(seconds))
    p.clock.sleep(result.wait_seconds)
    return result


def run(p: Ports, wave: WaveSpec, seconds: float = 900):
    """The state machine's loop: invocations and waits until the wave is done; the last result."""
    return list(until_done(lambda: invoke(p, wave, seconds)))[-1]


# --- make-before-break ------------------------------------------------------------------------------------
def test_each_replacement_serves_in_every_group_of_its_original_before_the_original_leaves(p):
    two_groups = serving(p, 2, (WEB, API))
    one_group = serving(p, 1, (WEB,))
    originals = two_groups + one_group
    wave = plan(p, originals)
    timeline = Timeline(p)

    result = run(p, wave)

    assert (result.done, result.migrated, result.failed) == (True, 3, 0)
    log = p.world.log
    for original in originals:
        oid, rid = original.instance_id, replacement_of(p, original)
        groups = [ref.arn for ref in records(p)[oid].target_groups]
        launched = next(n for n, (op, d) in enumerate(log) if op == "launch" and d["instance_id"] == rid)
        stopped = index(log, "stop", oid)
        for arn in groups:
            registered, deregistered = index(log, "register", (arn, rid)), index(log, "deregister", (arn, oid))
            assert launched < registered < deregistered < stopped
            # (deregistering the original does not change its replacement's health)
            when_it_left = timeline.at("deregister", (arn, oid)).serving
            assert all(rid in when_it_left[g] for g in groups), f"{rid} not healthy in every group when {oid} left"
        when_stopped = timeline.at("stop", oid)
        assert not any(oid in when_stopped.draining[arn] for arn in groups), f"{oid} stopped before it drained"
    settle(p)
    assert all(p.fleet.state(o.instance_id) == "stopped" for o in originals)
    assert p.world.changes("terminate") == []
    assert timeline.lowest(WEB) == 3 and timeline.lowest(API) == 2  # capacity never dropped


def test_the_replacement_is_launched_from_its_originals_settings_with_the_migration_tags(p):
    custom = LaunchSettings(security_group_ids=("sg-a", "sg-b"), key_name="deploy", instance_profile_arn="arn:profile",
                            metadata_http_tokens="required")
    first = serving(p, 1, tags={"Name": "web-1", "team": "shop", "aws:cloudformation:stack-name": "web"},
                    user_data="#!/bin/sh\necho one", settings=custom, image_id="ami-aaaa1111")[0]
    second = serving(p, 1, zone="us-east-1b", tags={"Name": "web-2"}, user_data="#!/bin/sh\necho two")[0]
    wave = plan(p, [first, second], wave=1)

    run(p, wave)

    specs = {d["instance_id"]: d["spec"] for d in launches(p)}
    assert set(specs) == {replacement_of(p, first), replacement_of(p, second)}
    for original, user_data in ((first, "#!/bin/sh\necho one"), (second, "#!/bin/sh\necho two")):
        spec, replacement = specs[replacement_of(p, original)], p.fleet.instance(replacement_of(p, original))
        carried = replace(original.settings, root_volume=VolumeSettings(  # the fakes' default root volume
            device="/dev/xvda", size_gib=8, volume_type="gp3", delete_on_termination=True))
        assert (spec.image_id, spec.subnet_id, spec.settings, spec.user_data) == (
            original.image_id, original.subnet_id, carried, user_data)
        assert (spec.instance_type, spec.market) == ("m5.large", "spot")
        tags = replacement.tags
        assert tags[MANAGED_TAG] == "true" and tags[MIGRATION_ID_TAG] == MID and tags[WAVE_TAG] == "1"
        assert spec.tags[MANAGED_TAG] == "true"  # terminable by the product from its launch on
        assert tags["Name"] == original.tags["Name"] and tags[REPLACES_TAG] == original.instance_id
    assert p.fleet.instance(replacement_of(p, first)).tags["team"] == "shop"
    assert not any(k.startswith("aws:") for i in specs for k in p.fleet.instance(i).tags)


def test_a_launched_replacement_is_registered_active_in_the_managed_registry(p):
    original = serving(p, 1)[0]
    run(p, plan(p, [original]))
    assert p.registry.statuses([replacement_of(p, original)]) == {replacement_of(p, original): "active"}


# --- pools and refusals ---------------------------------------------------------------------------------------
def test_a_refused_pool_moves_the_replacement_to_the_next_pool(p):
    original = serving(p, 1)[0]
    p.fleet.refusals[("m5.large", "us-east-1a")] = ICE
    run(p, plan(p, [original]))

    record = records(p)[original.instance_id]
    assert record.status == "migrated"
    assert (record.replacement_type, record.replacement_az) == ("m5a.large", "us-east-1a")
    assert f"m5.large/us-east-1a: {ICE}" in record.attempts
    assert p.fleet.instance(record.replacement).instance_type == "m5a.large"


def test_every_pool_refused_fails_the_record_and_leaves_the_original_serving(p):
    refused, movable = serving(p, 1, zone="us-east-1b")[0], serving(p, 1)[0]
    for instance_type in POOL_TYPES:
        p.fleet.refusals[(instance_type, "us-east-1b")] = ICE
    result = run(p, plan(p, [refused, movable], ratio=0.5))

    record = records(p)[refused.instance_id]
    assert record.status == "failed" and record.replacement_id is None
    assert record.attempts == [f"{t}/us-east-1b: {ICE}" for t in POOL_TYPES] + ["Spot capacity refused in all 3 pools"]
    assert [p.fleet.instance(d["instance_id"]).tags[REPLACES_TAG] for d in launches(p)] == [movable.instance_id]
    assert p.fleet.state(refused.instance_id) == "running" and refused.instance_id in p.load_balancer.serving(WEB)
    assert (result.migrated, result.failed) == (1, 1)


def test_a_launch_refused_for_another_reason_fails_that_instance_only_without_trying_other_pools(p):
    no_address, movable = serving(p, 1, zone="us-east-1b")[0], serving(p, 1)[0]
    p.fleet.refused_subnets[no_address.subnet_id or ""] = "InsufficientFreeAddressesInSubnet"
    result = run(p, plan(p, [no_address, movable], ratio=0.5))

    record = records(p)[no_address.instance_id]
    assert record.status == "failed"
    assert record.attempts[-1].startswith("launch refused: InsufficientFreeAddressesInSubnet")
    assert p.world.calls["fleet.launch_many"] == 2  # one for each instance: the other pools were not tried
    assert records(p)[movable.instance_id].status == "migrated"
    assert p.fleet.state(no_address.instance_id) == "running" and no_address.instance_id in p.load_balancer.serving(WEB)
    assert (result.done, result.migrated, result.failed) == (True, 1, 1)


# --- the success ratio ------------------------------------------------------------------------------------------
def _three_of_four(p: Ports, ratio: float) -> WaveSpec:
    originals = serving(p, 3) + serving(p, 1, zone="us-east-1b")
    for instance_type in POOL_TYPES:
        p.fleet.refusals[(instance_type, "us-east-1b")] = ICE
    return plan(p, originals, ratio=ratio)


def test_a_finished_wave_below_the_success_ratio_fails_and_still_records_its_progress(p):
    wave = _three_of_four(p, ratio=0.95)
    with pytest.raises(WaveFailed, match="migrated 3 of 4 instances, below the required 95%"):
        run(p, wave)
    progress = p.migrations.get(MID)["wave_results"]["0"]["migration"]
    assert (progress["done"], progress["migrated"], progress["failed"]) == (True, 3, 1)


def test_a_finished_wave_at_the_success_ratio_is_done(p):
    result = run(p, _three_of_four(p, ratio=0.75))
    assert (result.done, result.total, result.migrated, result.failed) == (True, 4, 3, 1)
    assert result.completed_at is not None and len(result.failures) == 1
    assert p.migrations.get(MID)["status"] == "migrating" and p.migrations.get(MID)["current_wave"] == 0


def test_an_unfinished_wave_is_not_judged_however_few_moved_so_far(p):
    refused = serving(p, 1, zone="us-east-1b")[0]
    booting = serving(p, 2)
    for instance_type in POOL_TYPES:
        p.fleet.refusals[(instance_type, "us-east-1b")] = ICE
    wave = plan(p, [refused, *booting], ratio=0.95)

    result = invoke(p, wave)  # 0 of 3 moved so far, one failed: the others are still booting

    assert (result.done, result.migrated, result.failed, result.launching) == (False, 0, 1, 2)
    assert result.wait_seconds > 0
    assert p.migrations.get(MID)["wave_results"]["0"]["migration"]["done"] is False


# --- replacements that do not make it --------------------------------------------------------------------------
def test_a_replacement_that_never_boots_is_terminated_and_its_original_keeps_serving(p):
    stuck, movable = serving(p, 2, (WEB, API))
    p.fleet.never_boots.add("m5a.large")
    wave = plan(p, [stuck, movable], ratio=0.5,
                pools_of=lambda o: pools(types=("m5a.large",)) if o is stuck else pools())
    timeline = Timeline(p)

    result = run(p, wave)

    record = records(p)[stuck.instance_id]
    assert record.status == "failed" and "did not reach running" in record.attempts[-1]
    assert p.world.changes("terminate") == [record.replacement]
    assert p.registry.statuses([record.replacement]) == {record.replacement: "retired"}
    assert ("register", (WEB, record.replacement)) not in p.world.log
    assert p.fleet.state(stuck.instance_id) == "running"
    assert all(stuck.instance_id in p.load_balancer.serving(arn) for arn in (WEB, API))
    assert (result.done, result.migrated) == (True, 1)
    assert timeline.lowest(WEB) == 2 and timeline.lowest(API) == 2


def test_a_replacement_that_never_becomes_healthy_is_terminated_and_its_original_keeps_serving(p):
    sick, movable = serving(p, 2, (WEB, API))
    p.load_balancer.unhealthy_types.add("m5a.large")
    wave = plan(p, [sick, movable], ratio=0.5,
                pools_of=lambda o: pools(types=("m5a.large",)) if o is sick else pools())
    timeline = Timeline(p)

    result = run(p, wave)

    record = records(p)[sick.instance_id]
    assert record.status == "failed" and "not healthy in 2 target group(s)" in record.attempts[-1]
    assert p.world.changes("terminate") == [record.replacement]
    assert {d for op, d in p.world.log if op == "deregister" and d[1] == record.replacement} == {
        (WEB, record.replacement), (API, record.replacement)}
    assert not any(op in ("deregister", "stop") and sick.instance_id in (d, *d) for op, d in p.world.log)
    assert all(sick.instance_id in p.load_balancer.serving(arn) for arn in (WEB, API))
    assert (result.done, result.migrated) == (True, 1)
    assert timeline.lowest(WEB) == 2 and timeline.lowest(API) == 2


# --- resuming after a crash ---------------------------------------------------------------------------------------
WAVE_OPERATIONS = ("fleet.describe", "fleet.launch_many", "plans.put_records", "fleet.tag", "lb.register",
                   "lb.target_states", "lb.deregister", "fleet.stop", "migrations.update")


def crash_scenario() -> tuple[Ports, WaveSpec, list[Instance], list[Instance]]:
    """Four originals: three move (each to its second pool), one cannot (every pool refused)."""
    p = new_world()
    movable = serving(p, 2, (WEB, API)) + serving(p, 1, (WEB,))
    refused = serving(p, 1, (WEB,), zone="us-east-1b")
    p.fleet.refusals[("m5.large", "us-east-1a")] = ICE
    for instance_type in POOL_TYPES:
        p.fleet.refusals[(instance_type, "us-east-1b")] = ICE
    return p, plan(p, movable + refused, ratio=0.75), movable, refused


def _crash_free_run() -> Ports:
    p, wave, _, _ = crash_scenario()
    run(p, wave)
    return p


CRASH_POINTS = crash_points(count_calls(_crash_free_run, WAVE_OPERATIONS))


def assert_wave_invariants(p: Ports, timeline: Timeline, movable: list[Instance], refused: list[Instance]) -> None:
    stored = records(p)
    live_replacements: dict[str, list[str]] = defaultdict(list)
    for instance in p.fleet.live():
        if instance.tags.get(MIGRATION_ID_TAG) == MID:
            live_replacements[instance.tags[REPLACES_TAG]].append(instance.instance_id)
    for original in movable:  # migrated: stopped, its one replacement serving in all its groups
        record = stored[original.instance_id]
        assert record.status == "migrated"
        assert live_replacements[original.instance_id] == [record.replacement_id]
        assert p.fleet.state(original.instance_id) == "stopped"
        for ref in record.target_groups:
            assert record.replacement_id in p.load_balancer.serving(ref.arn)
            assert original.instance_id not in p.load_balancer.registered(ref.arn)
    for original in refused:  # untouched: running and serving, no replacement left
        record = stored[original.instance_id]
        assert record.status == "failed"
        assert live_replacements[original.instance_id] == []
        assert p.fleet.state(original.instance_id) == "running"
        assert all(original.instance_id in p.load_balancer.serving(ref.arn) for ref in record.target_groups)
    named = {r.replacement_id for r in stored.values() if r.status == "migrated"}
    launched = {d["instance_id"] for d in launches(p) if d["spec"].tags.get(MIGRATION_ID_TAG) == MID}
    assert {i.instance_id for i in p.fleet.live()} & launched <= named, "a launched instance no record names"
    originals = {o.instance_id for o in movable + refused}
    assert not originals & set(p.world.changes("terminate")), "an original was terminated"
    for arn in (WEB, API):
        assert timeline.lowest(arn) == len(timeline.moments[0].serving[arn]), f"capacity dropped in {arn}"
    for n, (operation, instance_id) in enumerate(p.world.log[timeline.start:]):
        if operation == "stop":
            assert not any(instance_id in group for group in timeline.moments[n + 1].draining.values()), \
                f"{instance_id} stopped before it drained"


@pytest.mark.parametrize("operation, after", CRASH_POINTS)
def test_a_wave_resumed_after_a_crash_ends_as_without_it(operation, after):
    p, wave, movable, refused = crash_scenario()
    timeline = Timeline(p)
    p.world.crash_on(operation, after)

    with pytest.raises(Crash):
        run(p, wave)
    final = run(p, wave)

    assert (final.migrated, final.failed) == (3, 1)
    settle(p)
    assert_wave_invariants(p, timeline, movable, refused)


def test_the_crash_points_cover_every_step_of_the_wave():
    assert {param.values[0] for param in CRASH_POINTS} == set(WAVE_OPERATIONS)
    assert len(CRASH_POINTS) > len(WAVE_OPERATIONS)  # several positions for the repeated calls


def test_a_replacement_found_after_a_crash_is_active_in_the_registry_and_never_swept(p):
    original = serving(p, 1, groups=())[0]  # not behind a load balancer: only the registry accounts for it
    wave = plan(p, [original])
    p.world.crash_on("plans.put_records", after=1)  # the launch happened (written ahead); recording it did not
    with pytest.raises(Crash):
        run(p, wave)
    run(p, wave)
    replacement = replacement_of(p, original)
    assert records(p)[original.instance_id].status == "migrated"

    p.clock.sleep(3600)
    report = sweeper(p, mode="terminate").sweep()

    assert p.registry.statuses([replacement]) == {replacement: "active"}
    assert replacement not in {o.instance_id for o in report.orphans}
    assert p.fleet.state(replacement) == "running"


# --- the pace: EC2's launch rate, waits in the state machine, budgets ----------------------------------------------
def test_originals_sharing_a_configuration_are_launched_by_one_call_and_each_replacement_names_its_own(p):
    originals = serving(p, 5, tags={"team": "shop"})
    for n, original in enumerate(originals):
        p.fleet.set_tags(original.instance_id, Name=f"web-{n}")

    run(p, plan(p, originals))

    assert p.world.calls["fleet.launch_many"] == 1
    for n, original in enumerate(originals):
        replacement = p.fleet.instance(replacement_of(p, original))
        assert replacement.tags[REPLACES_TAG] == original.instance_id and replacement.tags["Name"] == f"web-{n}"
        assert replacement.tags["team"] == "shop"
    assert all(r.status == "migrated" for r in records(p).values())


def test_a_pool_short_of_capacity_takes_what_it_can_and_the_rest_go_to_the_next_pool(p):
    originals = serving(p, 5)
    p.fleet.capacity[("m5.large", "us-east-1a")] = 2

    run(p, plan(p, originals))

    types = sorted(r.replacement_type or "" for r in records(p).values())
    assert types == ["m5.large"] * 2 + ["m5a.large"] * 3
    assert all(r.status == "migrated" for r in records(p).values())
    assert len(launches(p)) == 5


def test_launches_follow_ec2s_rate_and_a_throttle_waits_instead_of_failing(p):
    originals = serving(p, 6)
    p.fleet.launch_bucket = (2, 0.5)  # EC2 lets this account launch 2 at once, then one every 2 s

    run(p, plan(p, originals))

    assert p.world.changes("throttled")  # the engine learnt EC2's rate from its answer...
    assert all(r.status == "migrated" for r in records(p).values())  # ...and failed nothing for it
    assert len(launches(p)) == 6  # each original replaced once


def test_the_state_machine_waits_for_the_drain_not_a_lambda(p):
    p.load_balancer.drain_seconds = 300
    original = serving(p, 1)[0]
    wave = plan(p, [original])

    service, waits = migrate_wave(p), []
    service.clock = NoSleep(p.clock)  # a Lambda that sleeps fails the test
    while not (result := service.run(MID, wave, p.clock.budget())).done:
        waits.append(result.wait_seconds)
        p.clock.sleep(result.wait_seconds)
        if records(p)[original.instance_id].phase == "draining":
            assert p.fleet.state(original.instance_id) == "running"  # not stopped while it drains

    assert max(waits) == 60 and sum(waits) >= 300  # draining: long waits, up to the delay
    assert records(p)[original.instance_id].status == "migrated"


def test_an_invocation_out_of_budget_changes_nothing_and_the_next_one_carries_on(p):
    originals = serving(p, 3)
    wave = plan(p, originals)

    result = invoke(p, wave, seconds=60)  # less than the margin a step needs

    assert (result.done, result.launching) == (False, 0)
    assert launches(p) == []
    final = run(p, wave)
    assert final.migrated == 3 and len(launches(p)) == 3


def test_a_replacement_still_booting_when_the_invocation_ends_is_carried_over_not_abandoned():
    p = new_world(boot_seconds=400)  # boots slower than the invocation lasts
    originals = serving(p, 2)
    wave = plan(p, originals, ratio=0.5)

    final = run(p, wave, 300)

    assert final.migrated == 2
    assert p.world.changes("terminate") == []


def test_a_replacement_taken_back_while_booting_before_its_own_tags_is_followed_to_its_successor(p):
    original = serving(p, 1)[0]
    wave = plan(p, [original])
    first = invoke(p, wave, seconds=900)
    assert first.launching == 1
    record = records(p)[original.instance_id]
    # EC2 reclaims the replacement; the interruption handler launched its successor, which names it
    p.fleet.reclaim(record.replacement)
    successor = p.fleet.add(tags={SUCCEEDS_TAG: record.replacement, MIGRATION_ID_TAG: MID, MANAGED_TAG: "true"},
                            lifecycle="spot", state="pending")

    final = run(p, wave)

    assert final.migrated == 1
    assert records(p)[original.instance_id].replacement_id == successor.instance_id
    assert p.fleet.instance(successor.instance_id).tags[REPLACES_TAG] == original.instance_id
