"""Returning on-demand fallbacks to Spot (services/return_fallbacks.py): make-before-break once a
healthy pool has capacity again; left alone when not (or when a migration holds them); a crash at
any step never leaves two live Spot instances for one fallback, nor the service short of capacity."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import API, MID, WEB, ZONES, Timeline, launches, plan, pools, records, serving, settle
from builders import interruptions as interruption_handler
from fakes import Crash, Ports
from test_carry_stateful import all_on, where
from test_rehome import ZONE as STATEFUL_ZONE
from test_rehome import interrupt as rehome_interrupt
from test_rehome import migrated as stateful_migrated
from test_rehome import run as rehome

from spot_core.domain.fallbacks import (
    CAPACITY_REFUSED,
    CLAIMED,
    DRAINING,
    GIVE_UP_SECONDS,
    GIVEN_UP,
    HELD,
    NO_HEALTHY_POOL,
    NOT_HEALTHY_YET,
    NOT_MIGRATED,
    STATEFUL,
    TOO_YOUNG,
    ReturnReport,
)
from spot_core.domain.interruptions import Notice
from spot_core.domain.outcomes import DRIFT_FALLBACKS, DRIFT_MONTHLY_SPOT
from spot_core.domain.plan import TargetRef
from spot_core.domain.pricing import HOURS_PER_MONTH
from spot_core.domain.tags import MANAGED_TAG, MIGRATION_ID_TAG, REPLACES_TAG, SUCCEEDS_TAG
from spot_core.services.return_fallbacks import ReturnFallbacks

ICE = "InsufficientInstanceCapacity"
PRICES = {"m5.large": 0.030, "m5a.large": 0.032, "m6i.large": 0.034}
ON_DEMAND = 0.096  # builders.ON_DEMAND_HOURLY: the fallback's cost, and its cap
HOUR = 3600


@pytest.fixture
def p(p: Ports) -> Ports:
    p.spot_prices.prices = {(t, z): price for t, price in PRICES.items() for z in ZONES}
    return p


def returner(p: Ports, **options) -> ReturnFallbacks:
    return ReturnFallbacks(p.fleet, p.load_balancer, p.spot_prices, p.claims, p.pool_memory, p.registry, p.plans,
                           p.locks, p.notifier, p.clock, **options)


def run(p: Ports, run_id: str = "run-1", **options) -> ReturnReport:
    return returner(p, **options).run(p.clock.budget(), run_id)


def with_fallback(p: Ports) -> str:
    """A completed migration whose Spot replacement EC2 interrupted when no Spot pool had capacity:
    the interruption handler's on-demand fallback serves in WEB and API, followed by the record."""
    [original] = serving(p, 1, ())
    plan(p, [original])
    record = records(p)[original.instance_id]
    [spot] = serving(p, 1, (WEB, API), lifecycle="spot",
                     tags={MANAGED_TAG: "true", MIGRATION_ID_TAG: MID, REPLACES_TAG: original.instance_id})
    record.launched(spot.instance_id, pools()[0], "launched")
    record.status, record.target_groups = "migrated", [TargetRef(arn=WEB), TargetRef(arn=API)]
    p.plans.put_record(MID, record)
    p.migrations.update(MID, status="completed")
    p.locks.release(MID)
    for pool in p.spot_prices.prices:
        p.fleet.refusals[pool] = ICE
    outcome = interruption_handler(p).handle(Notice("e-1", spot.instance_id, "interruption", p.clock.now()))
    assert outcome.market == "on-demand"
    p.fleet.reclaim(spot.instance_id)
    settle(p)
    fallback = outcome.replacement_id or ""
    assert records(p)[original.instance_id].replacement_market == "on-demand"
    assert p.load_balancer.serving(WEB) == {fallback}
    p.world.calls.clear()
    p.notifier.sent.clear()
    return fallback


def capacity_back(p: Ports) -> None:
    p.fleet.refusals.clear()
    p.clock.sleep(HOUR)


def spot_launches(p: Ports) -> list[dict]:
    """The launches of Spot instances (the fallback's own launch was on-demand)."""
    return [launch for launch in launches(p) if launch["spec"].market == "spot"]


def live_spot_successors(p: Ports, fallback: str) -> list[str]:
    return [i.instance_id for i in p.fleet.live() if i.tags.get(SUCCEEDS_TAG) == fallback]


def the_record(p: Ports):
    [record] = [r for r in records(p).values() if r.replacement_id]
    return record


# --- capacity is back -----------------------------------------------------------------------------------------------
def test_a_fallback_goes_back_to_spot_make_before_break_and_the_record_follows(p):
    fallback = with_fallback(p)
    drift_before = dict(p.migrations.items[MID])
    capacity_back(p)
    timeline = Timeline(p)

    report = run(p)

    [returned] = report.returned
    new = returned.replacement_id
    assert (returned.instance_id, returned.resumed) == (fallback, False)
    # the interrupted pool is remembered: the cheapest pool not interrupted, of the fallback's own type first
    assert returned.pool == "m5.large/us-east-1b" and returned.spot_hourly == PRICES["m5.large"]
    assert returned.monthly_saving == round((ON_DEMAND - PRICES["m5.large"]) * HOURS_PER_MONTH, 2)
    [launch] = spot_launches(p)
    spec = launch["spec"]
    assert spec.market == "spot" and spec.subnet_id == "subnet-1b" and spec.image_id == "ami-12345678"
    assert spec.tags[SUCCEEDS_TAG] == fallback and spec.tags[MIGRATION_ID_TAG] == MID
    # the fallback left its groups only once the Spot instance served in both, and went last
    for arn in (WEB, API):
        assert new in timeline.at("deregister", (arn, fallback)).serving[arn]
        assert timeline.lowest(arn) >= 1
    assert p.world.log[-1] == ("terminate", fallback)
    settle(p)
    assert p.load_balancer.serving(WEB) == p.load_balancer.serving(API) == {new}
    assert p.fleet.state(fallback) == "terminated" and live_spot_successors(p, fallback) == [new]
    record = the_record(p)
    assert (record.replacement_id, record.replacement_market, record.replacement_spot_hourly) == (
        new, "spot", PRICES["m5.large"])
    assert (record.replacement_type, record.replacement_az) == ("m5.large", "us-east-1b")
    assert fallback in record.attempts[-1] and new in record.attempts[-1]
    drift = p.migrations.items[MID]
    assert drift[DRIFT_FALLBACKS] - drift_before[DRIFT_FALLBACKS] == -1
    assert drift[DRIFT_MONTHLY_SPOT] - drift_before[DRIFT_MONTHLY_SPOT] == pytest.approx(-returned.monthly_saving)
    assert p.registry.items[fallback]["status"] == "retired" and p.registry.items[new]["status"] == "active"
    [sent] = [n for n in p.notifier.sent if n["event"] == "fallback-returned"]
    assert (sent["data"]["instance_id"], sent["data"]["pool"]) == (fallback, "m5.large/us-east-1b")
    assert sent["data"]["monthly_saving"] == returned.monthly_saving


def test_the_spot_instance_is_itself_replaced_on_interruption_like_any_other(p):
    fallback = with_fallback(p)
    capacity_back(p)
    [returned] = run(p).returned
    settle(p)

    outcome = interruption_handler(p).handle(Notice("e-2", returned.replacement_id, "interruption", p.clock.now()))

    assert (outcome.action, outcome.market) == ("replaced", "spot")
    assert the_record(p).replacement_id == outcome.replacement_id  # its launch profile names the record
    assert fallback not in {i.instance_id for i in p.fleet.live()}


def test_a_second_run_finds_nothing_more_to_do(p):
    with_fallback(p)
    capacity_back(p)
    run(p)
    settle(p)
    notified = len(p.notifier.sent)

    report = run(p, "run-2")

    assert (report.fallbacks, report.returned, report.left_alone) == (0, [], [])
    assert len(spot_launches(p)) == 1 and len(p.notifier.sent) == notified


# --- left alone -----------------------------------------------------------------------------------------------------
def test_no_healthy_pool_leaves_it_alone_without_a_claim_or_a_notification(p):
    fallback = with_fallback(p)
    capacity_back(p)
    p.spot_prices.prices = dict.fromkeys(p.spot_prices.prices, ON_DEMAND + 0.01)  # above its cap

    report = run(p)

    assert [(a.instance_id, a.reason) for a in report.left_alone] == [(fallback, NO_HEALTHY_POOL)]
    assert spot_launches(p) == [] and p.claims.get(fallback) is None and p.notifier.sent == []


def test_recently_interrupted_pools_are_not_healthy(p):
    fallback = with_fallback(p)
    capacity_back(p)
    for t, z in p.spot_prices.prices:
        p.pool_memory.record_interruption(t, z, "i-elsewhere")

    report = run(p)

    assert report.count(NO_HEALTHY_POOL) == 1 and spot_launches(p) == [] and p.fleet.state(fallback) == "running"


def test_the_records_max_price_caps_the_pools(p):
    fallback = with_fallback(p)
    capacity_back(p)
    record = the_record(p)
    record.max_price = 0.031  # only m5.large costs less
    p.plans.put_record(MID, record)
    p.claims.items.pop(fallback)  # its launch profile predates the max price: the record's terms apply

    [returned] = run(p).returned

    assert returned.pool.startswith("m5.large/") and spot_launches(p)[0]["spec"].max_price == 0.031


def test_a_refused_launch_leaves_it_serving_and_gives_the_claim_back(p):
    fallback = with_fallback(p)
    p.clock.sleep(HOUR)  # the pools are priced, but EC2 still has no Spot capacity

    report = run(p)

    assert report.count(CAPACITY_REFUSED) == 1 and report.returned == []
    assert spot_launches(p) == [] and p.claims.get(fallback) is None  # released: its launch profile back in place
    assert p.claims.items[fallback]["profile"]["target_groups"]
    assert p.load_balancer.serving(WEB) == {fallback} and p.notifier.sent == []
    p.fleet.refusals.clear()
    assert len(run(p, "run-2").returned) == 1  # the next run returns it


def test_the_on_demand_successor_of_a_stateful_rehome_keeps_its_disks(p):
    """A stateful Spot instance interrupted when no Spot pool of its AZ had capacity: the re-home's
    on-demand successor holds the real volumes, interface and address. Returning it to Spot from the
    image would leave the data behind: it is left alone, however long it runs and whatever the market."""
    original, spot = stateful_migrated(p)
    for instance_type in ("m5.large", "m5a.large", "m6i.large"):
        p.fleet.refusals[(instance_type, STATEFUL_ZONE)] = ICE
    rehome(p, rehome_interrupt(p, spot))
    successor = records(p)[original.instance_id].replacement_id or ""
    disks = where(p, original)
    assert p.fleet.instance(successor).lifecycle is None and records(p)[original.instance_id].replacement_market \
        == "on-demand"
    p.locks.release(MID)  # the migration completed: nothing holds the successor
    capacity_back(p)
    launched, p.notifier.sent = len(launches(p)), []

    report = run(p)

    assert (report.fallbacks, report.returned) == (1, [])
    assert [(a.instance_id, a.reason) for a in report.left_alone] == [(successor, STATEFUL)]
    assert len(launches(p)) == launched and p.claims.get(successor) is None and p.notifier.sent == []
    assert p.fleet.state(successor) == "running" and where(p, original) == disks == all_on(original, successor)
    assert records(p)[original.instance_id].replacement_id == successor
    assert p.load_balancer.serving(WEB) == {successor}


def test_a_fallback_younger_than_the_minimum_age_is_left_alone(p):
    fallback = with_fallback(p)
    p.fleet.refusals.clear()
    p.clock.sleep(HOUR / 2)

    report = run(p)

    assert [(a.instance_id, a.reason) for a in report.left_alone] == [(fallback, TOO_YOUNG)]
    assert run(p, "run-2", min_age_seconds=HOUR // 2).returned  # the setting


def test_disabled_does_nothing(p):
    with_fallback(p)
    capacity_back(p)

    report = run(p, enabled=False)

    assert report == ReturnReport(enabled=False) and p.world.calls.get("fleet.fallbacks", 0) == 0
    assert spot_launches(p) == []


@pytest.mark.parametrize("held", ["original", "fallback"])
def test_a_fallback_a_running_migration_holds_is_left_alone(p, held):
    fallback = with_fallback(p)
    capacity_back(p)
    original = the_record(p).instance_id
    p.locks.acquire("mig-2", [original if held == "original" else fallback], p.clock.now())

    report = run(p)

    assert report.count(HELD) == 1 and spot_launches(p) == []


@pytest.mark.parametrize("status", ["rolled_back", "rollback_failed", "launching"])
def test_a_fallback_whose_record_is_not_migrated_is_left_alone(p, status):
    with_fallback(p)
    capacity_back(p)
    record = the_record(p)
    record.status = status
    p.plans.put_record(MID, record)

    assert run(p).count(NOT_MIGRATED) == 1 and spot_launches(p) == []


def test_an_on_demand_instance_no_record_follows_is_left_alone(p):
    stray = serving(p, 1, (WEB,), tags={MANAGED_TAG: "true", SUCCEEDS_TAG: "i-0000000000000dead"})[0]
    p.clock.sleep(HOUR)

    report = run(p)

    assert [a.instance_id for a in report.left_alone] == [stray.instance_id] and spot_launches(p) == []


def test_a_spot_instance_not_healthy_in_time_is_given_up_and_the_fallback_keeps_serving(p):
    fallback = with_fallback(p)
    capacity_back(p)
    p.fleet.never_boots = set(PRICES)  # Spot instances that never leave pending

    first = run(p)

    assert first.count(NOT_HEALTHY_YET) == 1
    [new] = live_spot_successors(p, fallback)
    assert p.load_balancer.serving(WEB) == {fallback} and the_record(p).replacement_id == fallback
    p.clock.sleep(GIVE_UP_SECONDS)

    second = run(p, "run-2")

    assert second.count(GIVEN_UP) == 1 and live_spot_successors(p, fallback) == []
    assert p.fleet.state(new) in ("shutting-down", "terminated") and p.registry.items[new]["status"] == "retired"
    assert p.claims.get(fallback) is None and the_record(p).replacement_id == fallback
    settle(p)
    assert p.load_balancer.serving(WEB) == p.load_balancer.serving(API) == {fallback}


def test_a_fallback_still_draining_at_the_end_of_a_run_is_terminated_by_the_next(p):
    fallback = with_fallback(p)
    capacity_back(p)
    p.load_balancer.drain_seconds = 600  # past a run's step deadline

    first = run(p)

    assert first.returned == [] and first.count(DRAINING) == 1 and p.fleet.state(fallback) == "running"
    new = the_record(p).replacement_id  # the record follows the Spot instance already
    p.clock.sleep(600)
    [returned] = run(p, "run-2").returned
    assert (returned.instance_id, returned.replacement_id, returned.resumed) == (fallback, new, True)
    assert p.fleet.state(fallback) == "shutting-down"
    assert [n["event"] for n in p.notifier.sent].count("fallback-returned") == 1


def test_a_return_swapped_before_its_record_said_stateful_never_terminates_the_fallback(p):
    """A return an earlier version swapped for a stateful move's successor: the fallback holds the disks,
    so it is not terminated (left alone, reason stateful) even though its Spot instance serves."""
    fallback = with_fallback(p)
    capacity_back(p)
    p.load_balancer.drain_seconds = 600  # past a run's step deadline: phase 2 is left to the next run
    assert run(p).count(DRAINING) == 1
    record = the_record(p)
    record.mode = "stateful"
    p.plans.put_record(MID, record)
    p.clock.sleep(600)

    report = run(p, "run-2")

    assert report.returned == [] and [(a.instance_id, a.reason) for a in report.left_alone] == [(fallback, STATEFUL)]
    assert p.fleet.state(fallback) == "running"


def test_a_return_another_run_holds_is_not_touched(p):
    fallback = with_fallback(p)
    capacity_back(p)
    p.fleet.never_boots = set(PRICES)
    report = run(p)  # the Spot instance is not healthy yet: the next run resumes it...
    assert report.count(NOT_HEALTHY_YET) == 1
    # ...unless it finds the claim held by a run still at work
    p.claims.items[fallback]["in_progress_expiration"] = int((p.clock.now() + timedelta(minutes=5)).timestamp() * 1000)

    concurrent = run(p, "run-2")

    assert concurrent.count(CLAIMED) == 1 and len(spot_launches(p)) == 1


def test_a_spot_instance_interrupted_before_it_took_over_is_followed_to_its_own_replacement(p):
    fallback = with_fallback(p)
    capacity_back(p)
    p.fleet.never_boots = set(PRICES)
    assert run(p).count(NOT_HEALTHY_YET) == 1
    [new] = live_spot_successors(p, fallback)
    p.fleet.never_boots = set()
    handled = interruption_handler(p).handle(Notice("e-2", new, "interruption", p.clock.now()))
    p.fleet.reclaim(new)
    p.clock.sleep(900)

    [returned] = run(p, "run-2").returned

    assert returned.replacement_id == handled.replacement_id and len(spot_launches(p)) == 2
    assert the_record(p).replacement_id == handled.replacement_id
    settle(p)
    assert [i.instance_id for i in p.fleet.live()
            if i.tags.get(SUCCEEDS_TAG) in (fallback, new)] == [handled.replacement_id]
    assert p.load_balancer.serving(WEB) == {handled.replacement_id}


# --- crashes ----------------------------------------------------------------------------------------------------------
STEPS = ["claims.claim", "fleet.launch", "claims.update", "fleet.describe", "lb.register", "lb.target_states",
         "lb.deregister", "fleet.terminate"]


@pytest.mark.parametrize("operation", STEPS)
def test_a_crash_at_any_step_resumes_with_one_spot_instance_and_never_short_of_capacity(p, operation):
    fallback = with_fallback(p)
    capacity_back(p)
    timeline = Timeline(p)
    p.world.crash_on(operation)
    p.world.observers.append(lambda *_: assert_one_spot_at_most(p, fallback))

    with pytest.raises(Crash):
        run(p)
    for n in range(2, 5):  # the next runs (or the retry) resume it
        run(p, f"run-{n}")
        if p.fleet.state(fallback) != "running":
            break
    settle(p)

    [new] = live_spot_successors(p, fallback)
    assert p.fleet.state(fallback) in ("shutting-down", "terminated")
    assert len(spot_launches(p)) == 1
    assert the_record(p).replacement_id == new and the_record(p).replacement_market == "spot"
    assert p.load_balancer.serving(WEB) == p.load_balancer.serving(API) == {new}
    assert timeline.lowest(WEB) >= 1 and timeline.lowest(API) >= 1
    assert [n["event"] for n in p.notifier.sent].count("fallback-returned") == 1


class Killed(BaseException):
    """The Lambda invocation dies (its timeout): no exception handler of the service runs."""


def test_a_run_killed_after_run_instances_is_resumed_with_the_instance_it_launched(p, monkeypatch):
    """The claim stays held until the killed run's deadline; the next run after it finds the Spot
    instance by its succeeds tag instead of launching a second one."""
    fallback = with_fallback(p)
    capacity_back(p)

    def killed(self, r):
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(ReturnFallbacks, "_record_launch", killed)
        with pytest.raises(Killed):
            run(p)
    [new] = live_spot_successors(p, fallback)
    assert run(p, "run-2").count(CLAIMED) == 1  # its holder may still be at work
    p.clock.sleep(900)

    [returned] = run(p, "run-3").returned

    assert (returned.replacement_id, returned.resumed) == (new, True) and len(spot_launches(p)) == 1
    assert p.claims.get(fallback)["replacement_id"] == new and the_record(p).replacement_id == new


def assert_one_spot_at_most(p: Ports, fallback: str) -> None:
    assert len(live_spot_successors(p, fallback)) <= 1, "two live Spot instances for one fallback"
