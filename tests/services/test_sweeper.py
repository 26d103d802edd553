"""Sweeper: orphans (managed instances nothing accounts for) reported or terminated; prewarms
whose wait is over swapped; instances swapped out after a rebalance retired once drained
(services/sweeper.py, domain/orphans.py)."""

from __future__ import annotations

import pytest
from builders import API, WEB, ZONES, interruptions, launches, serving, settle, sweeper
from fakes import Crash, Ports

from spot_core.domain.instances import Instance
from spot_core.domain.interruptions import CLAIM_STALE_SECONDS, Notice, NoticeKind
from spot_core.domain.orphans import DRAIN_SECONDS
from spot_core.domain.tags import MANAGED_TAG, ON_REBALANCE_TAG, SUCCEEDS_TAG

GRACE = 600
PREWARM = 900


def managed(p: Ports, groups: tuple[str, ...] = (), **tags: str) -> Instance:
    return serving(p, 1, groups, lifecycle="spot", tags={MANAGED_TAG: "true", **tags})[0]


@pytest.fixture
def fleet(p: Ports) -> dict[str, Instance]:
    """One managed instance of each kind the sweeper tells apart, all past the grace period but `young`."""
    instances = {
        "retired": managed(p), "unknown": managed(p), "active": managed(p), "claimed": managed(p),
        "prewarmed": managed(p), "serving": managed(p, (WEB,)), "unmanaged": serving(p, 1, ())[0],
    }
    p.registry.register(instances["retired"].instance_id, "migration m-0", status="retired")
    p.registry.register(instances["active"].instance_id, "migration m-1")
    p.claims.update("i-0000000000000aaaa", status="swapped", replacement_id=instances["claimed"].instance_id)
    p.claims.update("i-0000000000000bbbb", status="prewarmed", replacement_id=instances["prewarmed"].instance_id,
                    prewarm_until=int(p.clock.now().timestamp()) + 10 * GRACE)
    p.clock.sleep(GRACE + 1)
    instances["young"] = managed(p)
    p.clock.sleep(GRACE - 2)  # the young one is GRACE - 2 s old, the others 2 * GRACE - 1 s
    return instances


def ids(fleet: dict[str, Instance], *kinds: str) -> set[str]:
    return {fleet[k].instance_id for k in kinds}


def test_managed_instances_past_the_grace_period_that_nothing_accounts_for_are_orphans(p, fleet):
    report = sweeper(p, grace_seconds=GRACE).sweep()

    assert {o.instance_id: o.registry for o in report.orphans} == {
        fleet["retired"].instance_id: "retired", fleet["unknown"].instance_id: "unknown"}
    assert report.managed == 7  # every managed instance but the unmanaged one


def test_report_mode_terminates_nothing_and_sends_one_notification_naming_the_orphans(p, fleet):
    report = sweeper(p, mode="report", grace_seconds=GRACE).sweep()

    assert report.terminated == 0 and p.world.changes("terminate") == []
    assert all(p.fleet.state(i.instance_id) == "running" for i in fleet.values())
    [sent] = p.notifier.sent
    assert sent["event"] == "orphans" and "reported" in sent["headline"]
    assert {line.split()[0] for line in sent["lines"]} == ids(fleet, "retired", "unknown")


def test_terminate_mode_terminates_the_orphans_only_and_retires_them(p, fleet):
    report = sweeper(p, mode="terminate", grace_seconds=GRACE).sweep()

    orphans = ids(fleet, "retired", "unknown")
    assert report.terminated == 2 and set(p.world.changes("terminate")) == orphans
    assert p.registry.statuses(sorted(orphans)) == dict.fromkeys(orphans, "retired")
    assert all(p.fleet.state(i.instance_id) == "running" for i in fleet.values() if i.instance_id not in orphans)
    [sent] = p.notifier.sent
    assert "terminated" in sent["headline"] and {line.split()[0] for line in sent["lines"]} == orphans


def test_a_sweep_without_orphans_changes_nothing_and_notifies_no_one(p):
    active = managed(p)
    p.registry.register(active.instance_id, "migration m-1")
    p.clock.sleep(10 * GRACE)

    report = sweeper(p, mode="terminate", grace_seconds=GRACE).sweep()

    assert report.orphans == [] and report.terminated == 0
    assert p.world.log == [] and p.notifier.sent == []


# --- replacements that claims account for -----------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["launching", "launched", "prewarmed", "swapped", "retired"])
def test_a_replacement_a_claim_names_is_never_swept_unless_the_registry_retired_it(p, status):
    named, retired = managed(p), managed(p)
    p.claims.update("i-0000000000000aaaa", status=status, replacement_id=named.instance_id,
                    claimed_at=int(p.clock.now().timestamp()))
    p.claims.update("i-0000000000000bbbb", status=status, replacement_id=retired.instance_id,
                    claimed_at=int(p.clock.now().timestamp()))
    p.registry.register(retired.instance_id, "rolled back", status="retired")
    p.clock.sleep(10 * GRACE)

    report = sweeper(p, mode="terminate", grace_seconds=GRACE).sweep()

    assert [o.instance_id for o in report.orphans] == [retired.instance_id]
    assert p.world.changes("terminate") == [retired.instance_id]


def test_a_replacement_launched_but_not_yet_on_its_claim_is_not_swept_while_the_claim_is_unfinished(p):
    """The handler died between RunInstances and recording the id: the instance that succeeds
    the claimed one is the replacement the next attempt resumes with."""
    unrecorded = managed(p, **{SUCCEEDS_TAG: "i-0000000000000aaaa"})
    duplicate = managed(p, **{SUCCEEDS_TAG: "i-0000000000000bbbb"})  # its predecessor's claim is done
    p.claims.claim("i-0000000000000aaaa", "e-1")
    p.claims.claim("i-0000000000000bbbb", "e-2")
    p.claims.update("i-0000000000000bbbb", status="swapped", replacement_id="i-0000000000000cccc")
    p.clock.sleep(10 * GRACE)

    report = sweeper(p, mode="terminate", grace_seconds=GRACE).sweep()

    assert [o.instance_id for o in report.orphans] == [duplicate.instance_id]
    assert p.fleet.state(unrecorded.instance_id) == "running"


def test_replacements_left_unfinished_are_reported_once_stale(p):
    new = managed(p).instance_id
    p.claims.claim("i-0000000000000aaaa", "e-1")
    p.claims.update("i-0000000000000aaaa", status="launched", replacement_id=new)
    sweep = sweeper(p, grace_seconds=GRACE).sweep

    assert sweep().unfinished_replacements == [] and p.notifier.sent == []
    p.clock.sleep(CLAIM_STALE_SECONDS + 1)
    report = sweep()

    assert report.unfinished_replacements == ["i-0000000000000aaaa"] and report.orphans == []
    [sent] = p.notifier.sent
    assert sent["event"] == "unfinished-replacements"
    assert sent["lines"] == [f"i-0000000000000aaaa: replacement {new} (launched)"]


def test_a_replacement_whose_handling_failed_for_good_survives_a_terminating_sweep(p):
    """Every attempt dies after the launch (the target group refuses it): the failure goes to the
    on-failure destination, and the replacement stays, registered, for the next event to resume."""
    p.spot_prices.prices = {("m5.large", zone): 0.03 for zone in ZONES}
    victim = managed(p, (WEB,))
    notice = Notice("e-1", victim.instance_id, "interruption", p.clock.now())
    for _ in range(3):  # the first delivery and Lambda's two retries
        p.world.crash_on("lb.register")
        with pytest.raises(Crash):
            interruptions(p).handle(notice)
    p.clock.sleep(10 * GRACE)

    report = sweeper(p, mode="terminate", grace_seconds=GRACE).sweep()

    [launch] = launches(p)
    assert report.orphans == [] and p.world.changes("terminate") == []
    assert report.unfinished_replacements == [victim.instance_id]
    assert p.registry.statuses([launch["instance_id"]]) == {launch["instance_id"]: "active"}


# --- replacements the sweeper finishes --------------------------------------------------------------------------------
def replaced_by_rebalance(p: Ports, policy: str, kind: NoticeKind = "rebalance") -> tuple[str, str]:
    """A managed instance (active: a migration launched it) serving in both groups, replaced after
    an EC2 event with the given rebalance policy. Returns its id and its replacement's."""
    p.spot_prices.prices = {("m5.large", zone): 0.03 for zone in ZONES}
    old = managed(p, (WEB, API), **{ON_REBALANCE_TAG: policy})
    p.registry.register(old.instance_id, "migration m-1")
    outcome = interruptions(p, prewarm_seconds=PREWARM).handle(Notice("e-1", old.instance_id, kind, p.clock.now()))
    assert outcome.replacement_id is not None
    return old.instance_id, outcome.replacement_id


def test_a_prewarm_whose_wait_is_over_is_swapped(p):
    old, new = replaced_by_rebalance(p, "prewarm")
    sweep = sweeper(p, mode="terminate", grace_seconds=GRACE).sweep

    p.clock.sleep(PREWARM - 1)
    early = sweep()
    assert early.prewarms_finished == [] and p.world.changes("deregister") == []
    assert p.claims.all()[0]["status"] == "prewarmed"

    p.clock.sleep(1)
    report = sweep()

    assert report.prewarms_finished == [old] and report.orphans == []
    assert sorted(p.world.changes("deregister")) == sorted([(WEB, old), (API, old)])
    claim = p.claims.all()[0]
    assert claim["status"] == "swapped" and claim["swapped_at"] == p.clock.now().isoformat()
    assert p.fleet.state(old) == "running"  # draining now, terminated later
    settle(p)
    assert all(p.load_balancer.serving(arn) == {new} for arn in (WEB, API))


@pytest.mark.parametrize("policy", ["replace", "prewarm"])
def test_an_instance_swapped_out_after_a_rebalance_is_terminated_once_drained_and_retired(p, policy):
    old, new = replaced_by_rebalance(p, policy)
    sweep = sweeper(p, mode="terminate", grace_seconds=GRACE).sweep
    if policy == "prewarm":
        p.clock.sleep(PREWARM)
        assert sweep().prewarms_finished == [old]

    p.clock.sleep(DRAIN_SECONDS - 1)
    assert sweep().swapped_out_retired == [] and p.world.changes("terminate") == []

    p.clock.sleep(1)
    report = sweep()

    assert report.swapped_out_retired == [old] and report.orphans == []
    assert p.world.changes("terminate") == [old]
    assert p.registry.statuses([old]) == {old: "retired"}
    assert p.claims.all()[0]["status"] == "retired"
    assert p.fleet.state(new) == "running" and p.registry.statuses([new]) == {new: "active"}
    again = sweep()
    assert again.swapped_out_retired == [] and p.world.changes("terminate") == [old]


def test_an_instance_swapped_out_after_an_interruption_is_left_to_ec2(p):
    old, _ = replaced_by_rebalance(p, "prewarm", kind="interruption")

    p.clock.sleep(10 * DRAIN_SECONDS)
    report = sweeper(p, mode="terminate", grace_seconds=GRACE).sweep()

    assert report.swapped_out_retired == [] and p.world.changes("terminate") == []
    assert p.claims.all()[0]["status"] == "swapped"
