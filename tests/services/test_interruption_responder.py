"""Interruptions: one replacement per interrupted (or rebalanced, or reclaimed without a warning)
managed Spot instance, in another pool, taking over its target groups; duplicates, policies,
on-demand fallback, crashes and their resumption, a storm, and migrations that follow their
instance (services/interruptions.py)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest
from builders import API, MID, WEB, ZONES, launches, plan, pools, records, serving, settle
from builders import interruptions as service
from fakes import Crash, Ports

from spot_core.adapters.spot_prices import CachedSpotPrices
from spot_core.domain.instances import Instance
from spot_core.domain.interruptions import CLAIM_STALE_SECONDS, Notice, NoticeKind, ReplacementInProgress
from spot_core.domain.plan import Target
from spot_core.domain.tags import MANAGED_TAG, MIGRATION_ID_TAG, ON_REBALANCE_TAG, REPLACES_TAG, SUCCEEDS_TAG

ICE = "InsufficientInstanceCapacity"
PRICES = {"m5.large": 0.030, "m5a.large": 0.032, "m6i.large": 0.034}  # the interrupted type is the cheapest
INTERRUPTED_POOL = ("m5.large", "us-east-1a")


@pytest.fixture
def p(p: Ports) -> Ports:
    """The fakes, with Spot prices for three equivalent types in every zone."""
    p.spot_prices.prices = {(t, z): price for t, price in PRICES.items() for z in ZONES}
    return p


def managed(p: Ports, count: int = 1, groups: tuple[str, ...] = (WEB, API), **tags: str) -> list[Instance]:
    """Managed Spot instances serving in `groups` (tags given by name: **{ON_REBALANCE_TAG: "ignore"})."""
    return serving(p, count, groups, lifecycle="spot", tags={MANAGED_TAG: "true", "Name": "web", **tags})


def notice(p: Ports, instance: Instance, kind: NoticeKind = "interruption", event_id: str | None = None) -> Notice:
    return Notice(event_id or f"{kind}-{instance.instance_id}", instance.instance_id, kind,
                  p.clock.now() - timedelta(seconds=2), "shutting-down" if kind == "state-change" else None)


def launched_ids(p: Ports) -> list[str]:
    return [d["instance_id"] for d in launches(p)]


def dies_at(p: Ports, operation: str, event: Notice, after: int = 0) -> None:
    """The handling of `event` dies at `operation` (after `after` successful calls of it), as a
    Lambda invocation killed there would."""
    p.world.crash_on(operation, after)
    with pytest.raises(Crash):
        service(p).handle(event)


# --- what is not ours --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tags", [{}, {MANAGED_TAG: "false"}, {"Name": "someone-elses"}])
def test_an_unmanaged_instance_is_ignored_and_nothing_is_written_or_launched(p, tags):
    instance = serving(p, 1, (WEB,), lifecycle="spot", tags=tags)[0]

    outcome = service(p).handle(notice(p, instance))

    assert outcome.action == "ignored" and outcome.replacement_id is None
    assert p.world.log == [] and p.claims.all() == [] and p.pool_memory.interrupted == []
    assert p.notifier.sent == [] and p.once.done == {} and p.registry.items == {}


def test_an_instance_ec2_no_longer_knows_is_ignored(p):
    outcome = service(p).handle(Notice("e-1", "i-0123456789abcdef0", "interruption", p.clock.now()))
    assert outcome.action == "ignored" and p.world.log == []


# --- an interruption warning ---------------------------------------------------------------------------------------
def test_an_interruption_launches_one_replacement_in_another_pool_that_takes_over_the_target_groups(p):
    victim = managed(p)[0]
    vid = victim.instance_id

    outcome = service(p).handle(notice(p, victim))

    [launch] = launches(p)
    new, spec = launch["instance_id"], launch["spec"]
    assert (outcome.action, outcome.replacement_id, outcome.market, outcome.launched) == ("replaced", new, "spot", True)
    assert p.fleet.instance(new).pool_key != INTERRUPTED_POOL
    assert (outcome.instance_type, outcome.availability_zone) == p.fleet.instance(new).pool_key
    assert p.fleet.subnets[spec.subnet_id][1] == outcome.availability_zone
    assert spec.tags[SUCCEEDS_TAG] == vid and spec.tags[MANAGED_TAG] == "true" and spec.tags["Name"] == "web"
    assert outcome.seconds_from_event_to_launch == 2.0
    for arn in (WEB, API):
        assert ("register", (arn, new)) in p.world.log and ("deregister", (arn, vid)) in p.world.log
    settle(p)
    assert all(p.load_balancer.serving(arn) == {new} for arn in (WEB, API))

    claim = p.claims.all()[0]
    assert (claim["instance_id"], claim["status"], claim["replacement_id"], claim["kind"]) == (
        vid, "swapped", new, "interruption")
    assert (claim["instance_type"], claim["availability_zone"], claim["market"]) == (
        outcome.instance_type, outcome.availability_zone, "spot")
    assert claim["target_groups"] == [{"arn": WEB, "port": None}, {"arn": API, "port": None}]
    assert p.pool_memory.interrupted == [(*INTERRUPTED_POOL, vid)]
    assert p.registry.statuses([new]) == {new: "active"}
    [sent] = p.notifier.sent
    assert sent["subject_id"] == vid and sent["event"] == "interruption-replaced" and new in sent["headline"]


def test_a_pool_interrupted_recently_is_tried_last(p):
    p.pool_memory.record_interruption("m5.large", "us-east-1b", "i-earlier")
    victim = managed(p)[0]

    outcome = service(p).handle(notice(p, victim))

    assert (outcome.instance_type, outcome.availability_zone) == ("m5.large", "us-east-1c")


def test_the_same_event_delivered_twice_launches_one_replacement(p):
    victim = managed(p)[0]
    interrupted = notice(p, victim)

    first, second = service(p).handle(interrupted), service(p).handle(interrupted)

    assert first.action == "replaced" and second.action == "duplicate"
    assert launched_ids(p) == [first.replacement_id]


@pytest.mark.parametrize("first_kind, tag", [("interruption", None), ("rebalance", "replace")],
                         ids=["warning-then-rebalance", "rebalance-replace-then-warning"])
def test_two_different_events_for_one_instance_launch_one_replacement(p, first_kind, tag):
    victim = managed(p, **({ON_REBALANCE_TAG: tag} if tag else {}))[0]
    second_kind: NoticeKind = "rebalance" if first_kind == "interruption" else "interruption"

    first = service(p).handle(notice(p, victim, first_kind))
    second = service(p).handle(notice(p, victim, second_kind))

    assert first.action == "replaced"
    assert (second.action, second.replacement_id) == ("already_replaced", first.replacement_id)
    assert launched_ids(p) == [first.replacement_id]


def test_a_second_event_arriving_while_the_first_launches_launches_no_second_replacement(p):
    victim = managed(p)[0]
    handler = service(p)
    concurrent = []

    def rebalance_arrives_now(operation, detail):  # handled while the warning's launch is in flight
        if operation == "launch" and not concurrent:
            concurrent.append(None)
            concurrent[0] = handler.handle(notice(p, victim, "rebalance"))

    p.world.observers.append(rebalance_arrives_now)
    first = handler.handle(notice(p, victim, "interruption"))

    assert first.action == "replaced" and concurrent[0].action == "in_progress"
    assert concurrent[0].replacement_id is None and concurrent[0].event_id == "interruption-" + victim.instance_id
    assert launched_ids(p) == [first.replacement_id]


# --- rebalance recommendations --------------------------------------------------------------------------------------
@pytest.mark.parametrize("tag, default, action", [
    ("ignore", "prewarm", "ignored_by_policy"),
    ("prewarm", "ignore", "prewarmed"),
    ("replace", "prewarm", "replaced"),
    (None, "prewarm", "prewarmed"),
    (None, "ignore", "ignored_by_policy"),
    (None, "replace", "replaced"),
    ("whenever", "ignore", "ignored_by_policy"),  # not a policy: the service's default applies
])
def test_a_rebalance_recommendation_follows_the_instance_tag_or_else_the_service_default(p, tag, default, action):
    victim = managed(p, **({ON_REBALANCE_TAG: tag} if tag else {}))[0]
    vid = victim.instance_id

    outcome = service(p, default_policy=default).handle(notice(p, victim, "rebalance"))

    assert outcome.action == action
    assert outcome.policy == {"ignored_by_policy": "ignore", "prewarmed": "prewarm", "replaced": "replace"}[action]
    assert len(launches(p)) == (0 if action == "ignored_by_policy" else 1)
    assert (("deregister", (WEB, vid)) in p.world.log) == (action == "replaced")
    if action == "ignored_by_policy":
        assert p.claims.all() == [] and p.world.log == []


def test_a_prewarmed_replacement_serves_next_to_the_instance(p):
    victim = managed(p)[0]

    outcome = service(p).handle(notice(p, victim, "rebalance"))
    settle(p)

    assert outcome.action == "prewarmed"
    assert all(p.load_balancer.serving(arn) == {victim.instance_id, outcome.replacement_id} for arn in (WEB, API))
    claim = p.claims.all()[0]
    assert claim["status"] == "prewarmed" and claim["kind"] == "rebalance"
    assert claim["prewarm_until"] == int(p.clock.start.timestamp()) + 900


def test_a_warning_after_a_prewarm_only_moves_the_traffic_to_the_prewarmed_replacement(p):
    victim = managed(p)[0]
    vid = victim.instance_id
    prewarmed = service(p).handle(notice(p, victim, "rebalance"))
    settle(p)

    outcome = service(p).handle(notice(p, victim, "interruption"))

    assert (outcome.action, outcome.replacement_id, outcome.launched) == (
        "swapped_prewarmed", prewarmed.replacement_id, False)
    assert launched_ids(p) == [prewarmed.replacement_id]
    assert {d for op, d in p.world.log if op == "deregister"} == {(WEB, vid), (API, vid)}
    assert p.claims.all()[0]["status"] == "swapped"
    assert p.pool_memory.interrupted == [(*INTERRUPTED_POOL, vid)]
    assert p.notifier.sent[-1]["event"] == "prewarmed-swap"
    settle(p)
    assert all(p.load_balancer.serving(arn) == {prewarmed.replacement_id} for arn in (WEB, API))


# --- no Spot capacity -------------------------------------------------------------------------------------------------
def test_no_spot_capacity_anywhere_falls_back_to_on_demand_in_the_original_pool(p):
    victim = managed(p)[0]
    for pool in p.spot_prices.prices:
        p.fleet.refusals[pool] = ICE

    outcome = service(p).handle(notice(p, victim))

    assert (outcome.action, outcome.market) == ("replaced", "on-demand")
    assert (outcome.instance_type, outcome.availability_zone) == INTERRUPTED_POOL
    assert set(outcome.refused_pools or []) == {
        f"{t}/{z}: {ICE}" for t, z in p.spot_prices.prices if (t, z) != INTERRUPTED_POOL}
    [launch] = launches(p)
    assert launch["spec"].market == "on-demand" and launch["spec"].subnet_id == victim.subnet_id
    assert p.fleet.instance(outcome.replacement_id or "").lifecycle is None
    assert p.claims.all()[0]["market"] == "on-demand"
    assert ("register", (WEB, outcome.replacement_id)) in p.world.log


# --- crashes ----------------------------------------------------------------------------------------------------------
def test_a_crash_while_launching_releases_the_claim_so_the_retry_launches(p):
    victim = managed(p)[0]
    interrupted = notice(p, victim)
    dies_at(p, "fleet.launch", interrupted)
    assert p.claims.all() == [] and launches(p) == []

    outcome = service(p).handle(interrupted)  # the event's retry

    assert outcome.action == "replaced" and launched_ids(p) == [outcome.replacement_id]
    assert p.claims.replacement_for(victim.instance_id)["replacement_id"] == outcome.replacement_id


AFTER_LAUNCH = ("lb.register", "lb.deregister", "claims.update")
# (operation, successful calls before it dies): every step after RunInstances answered
EVERY_STEP_AFTER_LAUNCH = [("claims.update", 0), ("lb.register", 0), ("lb.deregister", 0), ("notifier.publish", 0),
                           ("claims.update", 1)]


@pytest.mark.parametrize("operation", AFTER_LAUNCH)
def test_a_retry_after_a_crash_after_the_launch_launches_no_second_replacement(p, operation):
    victim = managed(p)[0]
    interrupted = notice(p, victim)
    dies_at(p, operation, interrupted)
    service(p).handle(interrupted)
    service(p).handle(notice(p, victim, "rebalance"))

    assert len(launches(p)) == 1


@pytest.mark.parametrize("operation", AFTER_LAUNCH)
def test_a_retry_after_a_crash_after_the_launch_completes_the_takeover(p, operation):
    victim = managed(p)[0]
    interrupted = notice(p, victim)
    dies_at(p, operation, interrupted)
    outcome = service(p).handle(interrupted)
    settle(p)

    [new] = launched_ids(p)
    assert outcome.replacement_id == new
    assert (p.claims.replacement_for(victim.instance_id) or {}).get("replacement_id") == new
    assert all(p.load_balancer.serving(arn) == {new} for arn in (WEB, API))
    assert p.registry.statuses([new]) == {new: "active"}


@pytest.mark.parametrize("operation, after", EVERY_STEP_AFTER_LAUNCH, ids=lambda v: str(v))
def test_the_retry_of_an_event_that_died_after_the_launch_resumes_it_to_the_end(p, operation, after):
    victim = managed(p)[0]
    vid = victim.instance_id
    interrupted = notice(p, victim)
    dies_at(p, operation, interrupted, after)
    outcome = service(p).handle(interrupted)  # Lambda's retry of the same event
    settle(p)

    [new] = launched_ids(p)
    assert (outcome.action, outcome.replacement_id, outcome.resumed, outcome.launched) == ("replaced", new, True, True)
    assert outcome.seconds_from_event_to_launch == 2.0 and outcome.market == "spot"
    claim = p.claims.get(vid) or {}
    assert (claim["status"], claim["replacement_id"], claim["market"]) == ("swapped", new, "spot")
    assert all(p.load_balancer.serving(arn) == {new} for arn in (WEB, API))
    assert p.registry.statuses([new]) == {new: "active"}
    sent = 2 if operation == "claims.update" and after == 1 else 1  # died after notifying: told twice rather than never
    assert [(n["event"], new in n["headline"]) for n in p.notifier.sent] == [("interruption-replaced", True)] * sent
    assert p.pool_memory.interrupted == [(*INTERRUPTED_POOL, vid)]
    p.fleet.reclaim(vid)  # EC2 takes it back two minutes after the warning: its state change changes nothing
    again = service(p).handle(notice(p, victim, "state-change", "reclaimed"))
    assert (again.action, again.replacement_id) == ("already_replaced", new) and launched_ids(p) == [new]


def test_the_replacement_is_on_its_claim_and_in_the_registry_before_anything_else_is_done(p):
    victim = managed(p)[0]
    seen = []

    def at_registration(operation, detail):
        if operation == "register" and not seen:
            seen.append((p.claims.get(victim.instance_id), dict(p.registry.items)))

    p.world.observers.append(at_registration)
    outcome = service(p).handle(notice(p, victim))

    [(claim, registry)] = seen
    new = outcome.replacement_id
    assert (claim["status"], claim["replacement_id"]) == ("launched", new)
    assert registry[new]["status"] == "active"


def test_an_event_that_died_before_recording_its_launch_is_resumed_with_the_instance_it_launched(p):
    """Died between RunInstances and the claim write: the retry finds the instance by its
    succeeds tag, even with prices that would now order the pools differently."""
    victim = managed(p)[0]
    interrupted = notice(p, victim)
    dies_at(p, "claims.update", interrupted)
    [first] = launched_ids(p)
    assert p.registry.statuses([first]) == {}
    p.spot_prices.prices = {pool: 0.5 if pool == p.fleet.instance(first).pool_key else price
                            for pool, price in p.spot_prices.prices.items()}

    outcome = service(p).handle(interrupted)

    assert (outcome.action, outcome.replacement_id, outcome.resumed) == ("replaced", first, True)
    assert launched_ids(p) == [first] and p.registry.statuses([first]) == {first: "active"}
    assert (outcome.instance_type, outcome.availability_zone) == p.fleet.instance(first).pool_key


def test_while_the_holder_may_still_work_another_event_is_told_it_is_in_progress_then_resumes_once_stale(p):
    victim = managed(p)[0]
    dies_at(p, "lb.register", notice(p, victim, "interruption", "warning"))
    [new] = launched_ids(p)

    early = service(p).handle(notice(p, victim, "rebalance", "rebalance-1"))
    assert (early.action, early.replacement_id, early.event_id) == ("in_progress", new, "warning")
    assert p.world.changes("register") == []

    p.clock.sleep(CLAIM_STALE_SECONDS + 1)
    p.fleet.reclaim(victim.instance_id)
    late = service(p).handle(notice(p, victim, "state-change", "reclaimed"))
    settle(p)

    assert (late.action, late.replacement_id, late.resumed) == ("replaced", new, True)
    assert launched_ids(p) == [new] and all(p.load_balancer.serving(arn) == {new} for arn in (WEB, API))
    assert (p.claims.get(victim.instance_id) or {})["event_id"] == "reclaimed"


def test_a_claim_resumed_by_another_event_at_the_same_moment_is_resumed_once(p):
    victim = managed(p)[0]
    dies_at(p, "lb.register", notice(p, victim, "interruption", "warning"))
    p.clock.sleep(CLAIM_STALE_SECONDS + 1)
    held = p.claims.get(victim.instance_id) or {}
    assert p.claims.take_over(victim.instance_id, held, "someone-else")  # wins the race

    outcome = service(p).handle(notice(p, victim, "rebalance", "rebalance-1"))

    assert outcome.action == "in_progress" and p.world.changes("register") == []


def test_a_replacement_gone_before_the_resumption_is_launched_again_and_recorded(p):
    victim = managed(p)[0]
    interrupted = notice(p, victim)
    dies_at(p, "lb.register", interrupted)
    [gone] = launched_ids(p)
    p.fleet.reclaim(gone)

    outcome = service(p).handle(interrupted)

    [_, new] = launched_ids(p)
    assert (outcome.action, outcome.replacement_id) == ("replaced", new) and new != gone
    assert (p.claims.get(victim.instance_id) or {})["replacement_id"] == new
    assert p.registry.statuses([new]) == {new: "active"}


def test_an_event_whose_retries_all_die_after_the_launch_fails_every_time_and_never_claims_success(p):
    victim = managed(p)[0]
    interrupted = notice(p, victim)
    for _ in range(3):
        p.world.crash_on("lb.register")
        with pytest.raises(Crash):  # what reaches Lambda's on-failure destination
            service(p).handle(interrupted)

    [new] = launched_ids(p)
    assert (p.claims.get(victim.instance_id) or {})["status"] == "launched"
    assert p.registry.statuses([new]) == {new: "active"} and p.notifier.sent == []


def test_a_warning_during_a_prewarm_launch_is_retried_and_then_moves_the_traffic(p):
    victim = managed(p)[0]
    handler = service(p)
    during = []

    def warning_arrives_now(operation, detail):
        if operation == "launch" and not during:
            with pytest.raises(ReplacementInProgress) as raised:
                handler.handle(notice(p, victim, "interruption"))
            during.append(raised.value)

    p.world.observers.append(warning_arrives_now)
    prewarmed = handler.handle(notice(p, victim, "rebalance"))
    settle(p)
    retried = handler.handle(notice(p, victim, "interruption"))  # Lambda's retry of the warning

    assert during and prewarmed.action == "prewarmed"
    assert (retried.action, retried.replacement_id) == ("swapped_prewarmed", prewarmed.replacement_id)
    settle(p)
    assert all(p.load_balancer.serving(arn) == {prewarmed.replacement_id} for arn in (WEB, API))


# --- reclaimed without a warning (instance state changes) -------------------------------------------------------------
@pytest.mark.parametrize("stop", [False, True], ids=["terminated", "stopped"])
def test_a_reclaim_without_a_warning_launches_one_replacement_that_takes_over(p, stop):
    victim = managed(p)[0]
    vid = victim.instance_id
    p.fleet.reclaim(vid, stop=stop)

    outcome = service(p).handle(notice(p, victim, "state-change"))
    settle(p)

    [new] = launched_ids(p)
    assert (outcome.action, outcome.replacement_id, outcome.launched) == ("replaced", new, True)
    assert p.fleet.instance(new).pool_key != INTERRUPTED_POOL
    assert all(p.load_balancer.serving(arn) == {new} for arn in (WEB, API))
    claim = p.claims.get(vid) or {}
    assert (claim["status"], claim["kind"], claim["replacement_id"]) == ("swapped", "state-change", new)
    assert p.pool_memory.interrupted == [(*INTERRUPTED_POOL, vid)]
    assert p.registry.statuses([new]) == {new: "active"}
    [sent] = p.notifier.sent
    assert sent["event"] == "state-change-replaced" and "reclaimed without a warning" in sent["headline"]


def elb_lets_go(p: Ports, instance_id: str) -> None:
    """What the load balancer does with a terminated target: it deregisters it."""
    p.load_balancer.deregister({arn: [Target(instance_id, None)] for arn in (WEB, API)})
    p.world.log.clear()


def test_a_replacement_reclaimed_without_a_warning_takes_its_target_groups_from_its_predecessor_s_claim(p):
    victim = managed(p)[0]
    first = service(p).handle(notice(p, victim)).replacement_id or ""
    settle(p)
    successor = p.fleet.instance(first)
    p.fleet.reclaim(first)
    elb_lets_go(p, first)

    outcome = service(p).handle(notice(p, successor, "state-change"))
    settle(p)

    assert outcome.action == "replaced" and ("register", (WEB, outcome.replacement_id)) in p.world.log
    assert all(p.load_balancer.serving(arn) == {outcome.replacement_id} for arn in (WEB, API))


def test_a_migration_replacement_reclaimed_without_a_warning_takes_its_target_groups_from_its_record(p):
    original = serving(p, 1, (WEB, API))[0]
    plan(p, [original])
    replacement = managed(p, groups=(), **{MIGRATION_ID_TAG: MID, REPLACES_TAG: original.instance_id})[0]
    record = records(p)[original.instance_id]
    record.launched(replacement.instance_id, pools()[0], "launched")
    record.status = "migrated"
    p.plans.put_record(MID, record)
    p.fleet.reclaim(replacement.instance_id)

    outcome = service(p).handle(notice(p, replacement, "state-change"))

    new = outcome.replacement_id
    assert {d for op, d in p.world.log if op == "register"} == {(WEB, new), (API, new)}
    assert records(p)[original.instance_id].replacement_id == new


def test_both_state_changes_of_a_reclaim_and_a_late_warning_launch_one_replacement(p):
    victim = managed(p)[0]
    p.fleet.reclaim(victim.instance_id)
    handler = service(p)

    first = handler.handle(notice(p, victim, "state-change", "shutting-down"))
    settle(p)  # terminated now
    second = handler.handle(notice(p, victim, "state-change", "terminated"))
    warning = handler.handle(notice(p, victim, "interruption"))

    assert first.action == "replaced"
    assert [(o.action, o.replacement_id) for o in (second, warning)] == [("already_replaced", first.replacement_id)] * 2
    assert launched_ids(p) == [first.replacement_id] and len(p.pool_memory.interrupted) == 1


def test_the_reclaim_after_a_warning_changes_nothing(p):
    victim = managed(p)[0]
    handler = service(p)
    replaced = handler.handle(notice(p, victim))
    p.fleet.reclaim(victim.instance_id)
    calls = dict(p.world.calls)

    outcome = handler.handle(notice(p, victim, "state-change"))

    assert (outcome.action, outcome.replacement_id) == ("already_replaced", replaced.replacement_id)
    assert launched_ids(p) == [replaced.replacement_id] and len(p.notifier.sent) == 1
    assert {k: v - calls.get(k, 0) for k, v in p.world.calls.items() if v != calls.get(k, 0)} == {"fleet.describe": 1}


def test_a_reclaim_without_a_warning_after_a_prewarm_moves_the_traffic_to_the_prewarmed_replacement(p):
    victim = managed(p)[0]
    prewarmed = service(p).handle(notice(p, victim, "rebalance"))
    p.fleet.reclaim(victim.instance_id)

    outcome = service(p).handle(notice(p, victim, "state-change"))

    assert (outcome.action, outcome.replacement_id) == ("swapped_prewarmed", prewarmed.replacement_id)
    assert launched_ids(p) == [prewarmed.replacement_id]


@pytest.mark.parametrize("how", ["api-terminate", "api-stop", "from-the-os", "still-running"])
def test_a_managed_instance_stopped_or_terminated_by_anyone_but_ec2_is_not_replaced(p, how):
    """The product's own rollbacks and sweeps, an operator, a shutdown from inside: one describe."""
    victim = managed(p)[0]
    vid = victim.instance_id
    if how == "api-terminate":
        p.fleet.terminate([vid])
    elif how == "api-stop":
        p.fleet.stop([vid])
    elif how == "from-the-os":
        p.fleet._set_state(vid, "stopping", "Client.InstanceInitiatedShutdown")
    calls = dict(p.world.calls)

    outcome = service(p).handle(notice(p, victim, "state-change"))

    assert outcome.action == "ignored" and "not a Spot reclaim" in (outcome.reason or "")
    assert launches(p) == [] and p.claims.all() == [] and p.once.done == {} and p.pool_memory.interrupted == []
    assert {k: v - calls.get(k, 0) for k, v in p.world.calls.items() if v != calls.get(k, 0)} == {"fleet.describe": 1}


def test_an_instance_the_product_retired_is_not_replaced_even_when_ec2_reclaims_it(p):
    victim = managed(p)[0]
    p.registry.register(victim.instance_id, "migration m-1", status="retired")  # a rollback let it go
    p.fleet.reclaim(victim.instance_id)

    outcome = service(p).handle(notice(p, victim, "state-change"))

    assert (outcome.action, outcome.reason) == ("ignored", "retired by the product")
    assert launches(p) == [] and p.claims.all() == []


def test_a_state_change_of_an_instance_the_product_does_not_manage_costs_one_describe(p):
    other = serving(p, 1, (WEB,), lifecycle="spot")[0]
    p.fleet.reclaim(other.instance_id)

    outcome = service(p).handle(notice(p, other, "state-change"))

    assert outcome.action == "ignored" and p.world.calls == {"fleet.describe": 1}
    assert launches(p) == [] and p.once.done == {}


# --- a storm ----------------------------------------------------------------------------------------------------------
def test_a_storm_of_duplicated_warnings_launches_one_replacement_each_and_reads_prices_once(p):
    victims = managed(p, 200, (WEB,))
    deliveries = [notice(p, v) for v in victims] * 2
    random.Random(2026).shuffle(deliveries)
    handler = service(p, spot_prices=CachedSpotPrices(p.spot_prices))  # warm: one environment for the storm

    actions = Counter(handler.handle(n).action for n in deliveries)

    assert actions == {"replaced": 200, "duplicate": 200}
    new = launched_ids(p)
    assert len(new) == len(set(new)) == 200
    claims = {c["instance_id"]: c["replacement_id"] for c in p.claims.all()}
    assert set(claims) == {v.instance_id for v in victims} and set(claims.values()) == set(new)
    assert p.spot_prices.calls == 1
    settle(p)
    assert p.load_balancer.serving(WEB) == set(new)


# --- migrations follow their instance ---------------------------------------------------------------------------------
def test_a_migration_record_follows_its_interrupted_replacement(p):
    originals = serving(p, 2, ())
    plan(p, originals)
    stored = records(p)
    interrupted = managed(p, **{MIGRATION_ID_TAG: MID, REPLACES_TAG: originals[0].instance_id})[0]
    untouched = managed(p, **{MIGRATION_ID_TAG: MID, REPLACES_TAG: originals[1].instance_id})[0]
    for record, replacement in zip(stored.values(), (interrupted, untouched), strict=True):
        record.launched(replacement.instance_id, pools()[0], "launched")
        record.status = "migrated"
        p.plans.put_record(MID, record)
    before = records(p)[originals[1].instance_id]

    outcome = service(p).handle(notice(p, interrupted))

    followed = records(p)[originals[0].instance_id]
    assert followed.replacement_id == outcome.replacement_id and followed.status == "migrated"
    assert (followed.replacement_type, followed.replacement_az) == (outcome.instance_type, outcome.availability_zone)
    assert followed.replacement_spot_hourly == PRICES[outcome.instance_type or ""]
    assert interrupted.instance_id in followed.attempts[-1] and str(outcome.replacement_id) in followed.attempts[-1]
    assert records(p)[originals[1].instance_id] == before
    [launch] = launches(p)
    assert launch["spec"].tags[MIGRATION_ID_TAG] == MID  # a rollback still finds the new instance by its tags
    assert launch["spec"].tags[REPLACES_TAG] == originals[0].instance_id
