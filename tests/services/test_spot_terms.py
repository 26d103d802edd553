"""Every Spot launch for an instance carries the terms its plan resolved (max price, interruption
behaviour): the wave engine's, and the interruption handler's, which also keeps away from pools
above the max price and cancels the persistent request of an instance it replaces; a max price
EC2 finds too low moves the launch on to the next pool (services/migrate_wave.py,
services/interruptions.py, services/launching.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import MID, WEB, ZONES, launches, plan, records, serving
from builders import interruptions as interruption_service
from builders import migrate_wave as wave_service
from fakes import Ports

from spot_core.domain.instances import Instance
from spot_core.domain.interruptions import LaunchProfile, Notice
from spot_core.domain.plan import WaveSpec
from spot_core.domain.spot_options import SpotTerms
from spot_core.domain.tags import MANAGED_TAG, MIGRATION_ID_TAG

TOO_LOW = "SpotMaxPriceTooLow"


def run_wave(p: Ports, wave: WaveSpec) -> None:
    for _ in range(200):
        result = wave_service(p).run(MID, wave, p.clock.budget(900))
        if result.done:
            return
        p.clock.sleep(result.wait_seconds)
    raise AssertionError("wave not done")


def planned_with(p: Ports, originals: list[Instance], **terms) -> WaveSpec:
    """A planned wave whose records resolved these Spot terms (max_price, interruption_behavior)."""
    wave = plan(p, originals)
    p.plans.put_records(MID, [r.model_copy(update=terms) for r in p.plans.records(MID)])
    return wave


# --- the wave engine --------------------------------------------------------------------------------------------
def test_the_wave_engine_launches_with_the_records_max_price_and_behavior(p):
    original = serving(p, 1)[0]
    run_wave(p, planned_with(p, [original], max_price=0.05, interruption_behavior="stop"))

    [launch] = launches(p)
    assert (launch["spec"].max_price, launch["spec"].interruption_behavior) == (0.05, "stop")
    record = records(p)[original.instance_id]
    assert record.status == "migrated"
    profile = LaunchProfile.model_validate(p.claims.items[record.replacement]["profile"])
    assert profile.spot == SpotTerms(interruption_behavior="stop", max_price=0.05)  # what an interruption needs


def test_a_max_price_too_low_for_a_pool_moves_the_launch_to_the_next_pool(p):
    original = serving(p, 1)[0]
    p.fleet.refusals[("m5.large", "us-east-1a")] = TOO_LOW
    run_wave(p, planned_with(p, [original], max_price=0.036))

    record = records(p)[original.instance_id]
    assert record.status == "migrated" and record.replacement_type == "m5a.large"
    assert f"m5.large/us-east-1a: {TOO_LOW}" in record.attempts
    assert [launch["spec"].max_price for launch in launches(p)] == [0.036]


def test_originals_with_different_terms_are_not_launched_together(p):
    capped, uncapped = serving(p, 2)
    wave = plan(p, [capped, uncapped])
    p.plans.put_records(MID, [r.model_copy(update={"max_price": 0.04}) if r.instance_id == capped.instance_id else r
                              for r in p.plans.records(MID)])
    run_wave(p, wave)

    assert [records(p)[o.instance_id].status for o in (capped, uncapped)] == ["migrated", "migrated"]
    # one RunInstances each (one configuration per call), each with its own max price
    by_replacement = {launch["instance_id"]: launch["spec"].max_price for launch in launches(p)}
    assert by_replacement == {records(p)[capped.instance_id].replacement: 0.04,
                              records(p)[uncapped.instance_id].replacement: None}


# --- the interruption handler -------------------------------------------------------------------------------
PRICES = {"m5.large": 0.030, "m5a.large": 0.032, "m6i.large": 0.034}


@pytest.fixture
def market(p: Ports) -> Ports:
    p.spot_prices.prices = {(t, z): price for t, price in PRICES.items() for z in ZONES}
    return p


def managed(p: Ports, terms: SpotTerms | None) -> Instance:
    """A managed Spot instance serving in WEB, launched with `terms` on its launch profile."""
    instance = serving(p, 1, (WEB,), lifecycle="spot", tags={MANAGED_TAG: "true", "Name": "web"})[0]
    p.registry.register_all([instance.instance_id], "test", {instance.instance_id: LaunchProfile(
        target_groups=[], spot=terms)})
    return instance


def warning(p: Ports, instance: Instance) -> Notice:
    return Notice(f"e-{instance.instance_id}", instance.instance_id, "interruption",
                  p.clock.now() - timedelta(seconds=2))


def test_an_interruption_replacement_keeps_the_terms_and_no_pool_above_the_max_price(market):
    p = market
    victim = managed(p, SpotTerms(interruption_behavior="terminate", max_price=0.031))
    p.fleet.refusals[("m5.large", "us-east-1b")] = TOO_LOW

    outcome = interruption_service(p).handle(warning(p, victim))

    # m5a.large and m6i.large cost more than 0.031: only the other m5.large pools are tried
    assert outcome.action == "replaced" and outcome.market == "spot"
    assert (outcome.instance_type, outcome.availability_zone) == ("m5.large", "us-east-1c")
    assert outcome.refused_pools == [f"m5.large/us-east-1b: {TOO_LOW}"]
    [launch] = launches(p)
    assert (launch["spec"].max_price, launch["spec"].interruption_behavior) == (0.031, "terminate")
    successor = LaunchProfile.model_validate(p.claims.items[outcome.replacement_id or ""]["profile"])
    assert successor.spot == SpotTerms(max_price=0.031)  # its own replacement keeps them too
    assert not [d for op, d in p.world.log if op == "cancel_spot_request"]  # a one-time request ends by itself


def test_no_pool_within_the_max_price_falls_back_to_on_demand(market):
    p = market
    victim = managed(p, SpotTerms(max_price=0.01))

    outcome = interruption_service(p).handle(warning(p, victim))

    assert (outcome.action, outcome.market, outcome.refused_pools) == ("replaced", "on-demand", [])


def test_replacing_an_instance_that_stops_on_interruption_cancels_its_persistent_request(market):
    """EC2 would start the stopped instance again once capacity returns: a second live instance."""
    p = market
    victim = managed(p, SpotTerms(interruption_behavior="stop"))

    outcome = interruption_service(p).handle(warning(p, victim))

    assert outcome.action == "replaced"
    assert [d for op, d in p.world.log if op == "cancel_spot_request"] == [victim.instance_id]
    [launch] = launches(p)
    assert launch["spec"].interruption_behavior == "stop"  # the replacement stops too, as asked


def stopped_by_ec2(p: Ports, instance: Instance) -> Notice:
    """EC2 reclaims the instance by stopping it (a persistent request); the state change once it is stopped."""
    p.fleet.reclaim(instance.instance_id, stop=True)
    p.clock.sleep(60)
    assert p.fleet.state(instance.instance_id) == "stopped"
    return Notice(f"stopped-{instance.instance_id}", instance.instance_id, "state-change", p.clock.now(),
                  state="stopped")


@pytest.mark.parametrize("behavior", ["stop", "hibernate"])
def test_a_replaced_instance_ec2_stops_is_terminated_and_retired_with_no_second_replacement(market, behavior):
    """Its persistent request is cancelled, so nothing would ever start it again: left stopped, its
    volumes would be billed for ever."""
    p = market
    victim = managed(p, SpotTerms(interruption_behavior=behavior))
    replaced = interruption_service(p).handle(warning(p, victim))
    assert replaced.action == "replaced" and p.fleet.state(victim.instance_id) == "running"

    stopped = stopped_by_ec2(p, victim)
    outcome = interruption_service(p).handle(stopped)

    assert (outcome.action, outcome.replacement_id) == ("terminated_stopped", replaced.replacement_id)
    assert p.fleet.state(victim.instance_id) in ("shutting-down", "terminated")
    assert p.registry.items[victim.instance_id]["status"] == "retired"
    assert p.claims.items[victim.instance_id]["status"] == "retired"
    assert len(launches(p)) == 1 and p.fleet.state(replaced.replacement_id or "") == "running"
    interruption_service(p).handle(stopped)  # delivered again: nothing more
    assert len(launches(p)) == 1 and [d for op, d in p.world.log if op == "terminate"] == [victim.instance_id]


def test_a_reclaim_without_a_warning_that_finds_the_instance_stopped_terminates_it_once_replaced(market):
    p = market
    victim = managed(p, SpotTerms(interruption_behavior="stop"))

    outcome = interruption_service(p).handle(stopped_by_ec2(p, victim))

    assert outcome.action == "replaced" and outcome.reason and "stopped by EC2" in outcome.reason
    assert [d for op, d in p.world.log if op == "terminate"] == [victim.instance_id]
    assert p.registry.items[victim.instance_id]["status"] == "retired"
    assert len(launches(p)) == 1 and p.fleet.state(outcome.replacement_id or "") in ("pending", "running")


def test_a_prewarmed_instance_ec2_stops_without_a_warning_is_swapped_then_terminated(market):
    p = market
    victim = managed(p, SpotTerms(interruption_behavior="hibernate"))
    prewarmed = interruption_service(p).handle(Notice("rebalance-1", victim.instance_id, "rebalance", p.clock.now()))
    assert prewarmed.action == "prewarmed"

    outcome = interruption_service(p).handle(stopped_by_ec2(p, victim))

    assert (outcome.action, outcome.replacement_id) == ("swapped_prewarmed", prewarmed.replacement_id)
    assert [d for op, d in p.world.log if op == "terminate"] == [victim.instance_id]
    assert p.registry.items[victim.instance_id]["status"] == "retired" and len(launches(p)) == 1


def test_a_replaced_instance_that_stops_while_still_stopping_waits_for_its_stopped_event(market):
    p = market
    victim = managed(p, SpotTerms(interruption_behavior="stop"))
    interruption_service(p).handle(warning(p, victim))
    p.fleet.reclaim(victim.instance_id, stop=True)

    outcome = interruption_service(p).handle(Notice("stopping-1", victim.instance_id, "state-change",
                                                    p.clock.now(), state="stopping"))

    assert outcome.action == "already_replaced" and p.fleet.state(victim.instance_id) in ("stopping", "stopped")
    assert not [d for op, d in p.world.log if op == "terminate"]


def test_an_instance_ec2_terminates_is_left_to_ec2(market):
    p = market
    victim = managed(p, SpotTerms(interruption_behavior="terminate"))
    replaced = interruption_service(p).handle(warning(p, victim))
    p.fleet.reclaim(victim.instance_id)
    p.clock.sleep(60)

    outcome = interruption_service(p).handle(Notice("gone-1", victim.instance_id, "state-change", p.clock.now(),
                                                    state="terminated"))

    assert (outcome.action, outcome.replacement_id) == ("already_replaced", replaced.replacement_id)
    assert not [d for op, d in p.world.log if op in ("terminate", "cancel_spot_request")]
    assert p.registry.items[victim.instance_id]["status"] == "active" and len(launches(p)) == 1


def test_an_instance_without_terms_on_its_profile_follows_its_migration_record(market):
    p = market
    original = serving(p, 1)[0]
    run_wave(p, planned_with(p, [original], max_price=0.033, interruption_behavior="stop"))
    replacement = records(p)[original.instance_id].replacement
    del p.claims.items[replacement]  # no launch profile: an earlier version launched it
    assert p.fleet.instance(replacement).tags[MIGRATION_ID_TAG] == MID

    outcome = interruption_service(p).handle(warning(p, p.fleet.instance(replacement)))

    assert outcome.action == "replaced" and outcome.instance_type in ("m5.large", "m5a.large")
    assert launches(p)[-1]["spec"].max_price == 0.033
