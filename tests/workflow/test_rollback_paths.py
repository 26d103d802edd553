"""The paths through the state machine that end in a rollback (a gate fails, a wave cannot
complete), and capacity refusals, asserting the fleet ends exactly as it was."""

import pytest
from checks import assert_untouched, records

from spotctl.local.workload import Degradation


@pytest.mark.parametrize("wave", [0, 1, 2], ids=["10%", "50%", "100%"])
def test_degradation_rolls_back_and_restores_the_fleet_exactly(rt, auto, wave):
    rt.fleet.degradation = Degradation(wave=wave)
    result = rt.run_migration(auto)

    assert (result.status, result.error) == ("FAILED", "MigrationRolledBack")
    item = rt.migration(result.migration_id)
    assert item["status"] == "rolled_back"
    assert not item["wave_results"][str(wave)]["gate"]["passed"]
    assert all(item["wave_results"][str(w)]["gate"]["passed"] for w in range(wave))
    after = rt.fleet.snapshot()
    assert after["spot"] == set(), "no Spot instance may be left running"
    assert after == rt.before
    touched = [r for r in records(rt, result.migration_id).values() if r.replacement_id]
    assert touched and all(r.status == "rolled_back" for r in touched)
    # What status / watch / GET /migrations/{id} show, from the progress recorded on the item
    waves = rt.operator().get(result.migration_id).waves
    assert [w.state for w in waves] == ["rolled_back"] * (wave + 1) + ["pending"] * (2 - wave)
    assert [w.rolled_back for w in waves[:wave + 1]] == [w.target_count for w in waves[:wave + 1]]
    assert sum(w.rolled_back for w in waves) == len(touched)
    assert any("rolled-back" in (n["subject"] or "") for n in rt.notifications())


def test_capacity_refused_in_one_pool_is_served_by_the_next(rt, auto):
    rt.market.refuse(instance_type="m5.large")  # every AZ, every time
    result = rt.run_migration({**auto, "waves": [100], "bake_seconds": [300]})

    assert result.status == "SUCCEEDED", result.cause
    moved = [r for r in records(rt, result.migration_id).values()
             if r.instance_type == "m5.large" and r.status == "migrated"]
    assert moved, "the seeded fleet has m5.large instances"
    for r in moved:
        assert r.replacement_type != "m5.large"
        assert any("InsufficientInstanceCapacity" in a for a in r.attempts)
    replacements = {r.replacement_id for r in records(rt, result.migration_id).values() if r.status == "migrated"}
    assert rt.fleet.snapshot()["spot"] == replacements


def test_capacity_refused_everywhere_fails_the_wave_and_rolls_back(rt, auto):
    rt.market.refuse()  # no Spot capacity anywhere
    result = rt.run_migration(auto)

    assert (result.status, result.error) == ("FAILED", "MigrationRolledBack")
    item = rt.migration(result.migration_id)
    assert "WaveFailed" in item["failure"]["Error"]
    assert item["wave_results"]["0"]["migration"]["migrated"] == 0
    assert_untouched(rt)


def test_a_launch_refused_for_another_reason_fails_that_instance_and_the_wave_rolls_back(rt, auto):
    rt.market.refuse(code="InsufficientFreeAddressesInSubnet")  # no other pool would help
    result = rt.run_migration(auto)

    assert (result.status, result.error) == ("FAILED", "MigrationRolledBack")
    failed = [r for r in records(rt, result.migration_id).values() if r.status == "failed"]
    assert failed and all("launch refused: InsufficientFreeAddressesInSubnet" in r.attempts[-1] for r in failed)
    assert all(len(r.attempts) == 1 for r in failed), "a refusal that is not about the pool is not retried elsewhere"
    assert_untouched(rt)


def test_rollback_of_a_wave_cut_short_mid_chunk_does_not_wait_for_replacements_never_registered(rt, auto, monkeypatch):
    """The 6th launch fails for good: the chunk holds replacements launched but never
    registered; rollback deregisters only what is registered instead of polling for the
    others until its step deadline."""
    from moto.ec2.exceptions import EC2ClientError

    launches, original = [], rt.market.check_launch

    def check(instance_type, availability_zone):
        launches.append(instance_type)
        if len(launches) == 6:
            raise EC2ClientError("InsufficientFreeAddressesInSubnet", "no free addresses in the subnet")
        return original(instance_type, availability_zone)

    monkeypatch.setattr(rt.market, "check_launch", check)
    result = rt.run_migration(auto)

    assert (result.status, result.error) == ("FAILED", "MigrationRolledBack")
    assert_untouched(rt)
    polls = [a for f, a in rt.lambdas.calls
             if f.endswith("rollback") and a == "elasticloadbalancing:DescribeTargetHealth"]
    assert len(polls) <= 4, f"rollback polled target health {len(polls)} times"
