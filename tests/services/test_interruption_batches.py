"""Interruptions a batch at a time (services/interruptions.py handle_all, as the queue's batches
come): what the events of a batch share (one describe, one registration and one deregistration
per target group, one notification), what they do not (a claim, a launch, a record each; one
event's failure is its own), what the claim returns (the launch profile: no other read), a
replacement registered only once it runs, and an event handled once through its claim (no other
record of it)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from builders import API, MID, WEB, ZONES, launches, migrate, plan, pools, records, serving, settle
from builders import interruptions as service
from fakes import Crash, Ports

from spot_core.domain.errors import EventInProgress
from spot_core.domain.interruptions import HOLDER_EXPIRY, Notice
from spot_core.domain.tags import MANAGED_TAG, MIGRATION_ID_TAG, REPLACES_TAG, SUCCEEDS_TAG

PRICES = {"m5.large": 0.030, "m5a.large": 0.032, "m6i.large": 0.034}


@pytest.fixture
def p(p: Ports) -> Ports:
    p.spot_prices.prices = {(t, z): price for t, price in PRICES.items() for z in ZONES}
    return p


def warning(p: Ports, instance_id: str, event_id: str | None = None) -> Notice:
    return Notice(event_id or f"warning-{instance_id}", instance_id, "interruption",
                  p.clock.now() - timedelta(seconds=2))


def managed(p: Ports, count: int, **tags: str) -> list[str]:
    return [i.instance_id for i in serving(p, count, (WEB, API), lifecycle="spot", tags={MANAGED_TAG: "true", **tags})]


def test_a_batch_shares_its_reads_its_load_balancer_calls_and_its_notification(p):
    victims = managed(p, 10)
    notices = [warning(p, v) for v in victims]
    handler = service(p)

    handler.prefetch(notices)
    outcomes = handler.handle_all(notices)

    assert [o.action for o in outcomes] == ["replaced"] * 10  # type: ignore[union-attr]
    assert p.world.calls["fleet.describe"] == 1
    assert p.world.calls["claims.claim"] == 10 and p.world.calls["fleet.launch"] == 10
    assert p.world.calls["claims.update"] == 20  # the launch recorded, the takeover ended: each on its own
    assert Counter(op for op, _ in p.world.log if op in ("register", "deregister")) == {"register": 20,
                                                                                       "deregister": 20}
    assert p.world.calls["lb.register"] == 1 and p.world.calls["lb.deregister"] == 1  # both groups in one call each
    [sent] = p.notifier.sent
    assert sent["event"] == "replaced" and len(sent["lines"]) == 10
    assert all(any(v in line for line in sent["lines"]) for v in victims)
    settle(p)
    new = {o.replacement_id for o in outcomes}  # type: ignore[union-attr]
    assert p.load_balancer.serving(WEB) == p.load_balancer.serving(API) == new
    assert {c["status"] for c in p.claims.all()} == {"swapped"}


def test_a_warning_about_a_migration_replacement_needs_no_read_but_its_claim(p, monkeypatch):
    originals = serving(p, 3, (WEB,), user_data="IyEvYmluL3NoCg==")
    migrate(p, plan(p, originals))
    settle(p)
    victims = [records(p)[o.instance_id].replacement_id or "" for o in originals]
    read = Counter[str]()
    monkeypatch.setattr(type(p.fleet), "user_data", lambda self, iid: read.update(["user_data"]))
    p.world.calls.clear()
    p.world.log.clear()

    outcomes = service(p).handle_all([warning(p, v) for v in victims])

    assert p.world.calls["plans.records_by_key"] == 0 and read["user_data"] == 0  # the claims returned it all
    followed = records(p)
    assert [followed[o.instance_id].replacement_id for o in originals] == [
        getattr(o, "replacement_id", None) for o in outcomes]
    assert {arn for op, (arn, _) in p.world.log if op == "register"} == {WEB}  # the record's groups
    assert {p.fleet.user_datas.get(o.replacement_id or "") for o in outcomes} == {  # type: ignore[union-attr]
        "IyEvYmluL3NoCg=="}


def test_an_instance_launched_without_a_profile_is_replaced_after_reading_its_record_and_user_data(p):
    originals = serving(p, 2, (WEB,))
    plan(p, originals)
    stored = records(p)
    victims = []
    for original in originals:
        [v] = managed(p, 1, **{MIGRATION_ID_TAG: MID, REPLACES_TAG: original.instance_id})
        record = stored[original.instance_id]
        record.launched(v, pools()[0], "launched")
        record.status = "migrated"
        p.plans.put_record(MID, record)
        victims.append(v)
    p.world.calls.clear()

    outcomes = service(p).handle_all([warning(p, v) for v in victims])

    assert p.world.calls["plans.records_by_key"] == 2  # one record by key each, never the plan
    followed = records(p)
    assert [followed[o.instance_id].replacement_id for o in originals] == [
        getattr(o, "replacement_id", None) for o in outcomes]
    assert {arn for op, (arn, _) in p.world.log if op == "register"} == {WEB}  # the record's groups
    again = [getattr(o, "replacement_id", "") for o in outcomes]  # their replacements have profiles
    p.world.calls.clear()
    assert [o.action for o in service(p).handle_all([warning(p, v) for v in again])] == ["replaced"] * 2  # type: ignore[union-attr]
    assert p.world.calls["plans.records_by_key"] == 0
    assert [records(p)[o.instance_id].replacement_id for o in originals] != again


def test_one_event_s_failure_is_its_own(p):
    victims = managed(p, 3)
    p.world.crash_on("fleet.launch", after=1)  # the second event's launch fails

    outcomes = service(p).handle_all([warning(p, v) for v in victims])

    assert isinstance(outcomes[1], Crash)
    assert [getattr(o, "action", None) for o in (outcomes[0], outcomes[2])] == ["replaced", "replaced"]
    assert p.claims.get(victims[1]) is None  # nothing launched: the claim was given back for the retry
    assert len(launches(p)) == 2


def test_a_replacement_joins_its_target_groups_once_it_runs(p):
    p.load_balancer.refuse_booting = True  # as ELB: an instance still pending cannot be registered
    [victim] = managed(p, 1)

    outcome = service(p).handle(warning(p, victim))

    new = outcome.replacement_id or ""
    assert outcome.action == "replaced" and p.fleet.state(new) == "running"
    assert [d for op, d in p.world.log if op == "register"] == [(WEB, new), (API, new)]
    assert p.clock.elapsed >= p.fleet.boot_seconds


def test_a_replacement_still_booting_when_the_invocation_ends_is_handed_over_by_the_retry(p):
    p.load_balancer.refuse_booting = True
    p.fleet.boot_seconds = 120  # longer than the invocation has
    [victim] = managed(p, 1)
    event = warning(p, victim)

    with pytest.raises(Exception, match="not running yet"):
        service(p, holder_seconds=60).handle(event)
    [new] = [d["instance_id"] for d in launches(p)]
    assert (p.claims.get(victim) or {})["status"] == "launched"

    p.clock.sleep(120)
    retried = service(p).handle(event)

    assert (retried.action, retried.replacement_id, retried.resumed) == ("replaced", new, True)
    assert len(launches(p)) == 1


def test_an_event_is_handled_once_through_its_claim(p):
    [victim] = managed(p, 1)
    event = warning(p, victim)
    p.claims.claim_or_get(victim, event.event_id, kind="interruption", swap=True,
                          **{HOLDER_EXPIRY: int((p.clock.now().timestamp() + 60) * 1000)})

    with pytest.raises(EventInProgress):  # a copy of the event its holder is still handling
        service(p).handle(event)
    assert launches(p) == []

    p.clock.sleep(61)  # the holder's deadline passed: it is gone, its own event's retry resumes
    first = service(p).handle(event)
    again = service(p).handle(event)

    assert first.action == "replaced" and (again.action, again.event_id) == ("duplicate", event.event_id)
    assert len(launches(p)) == 1 and p.once.done == {}  # no other record of the event than its claim


def test_a_standalone_replacement_takes_its_target_groups_from_its_predecessor_s_claim(p):
    [first] = managed(p, 1)
    new = service(p).handle(warning(p, first)).replacement_id or ""
    settle(p)
    p.load_balancer.deregister({arn: [] for arn in (WEB, API)})
    p.world.calls.clear()
    p.world.log.clear()
    assert p.fleet.instance(new).tags[SUCCEEDS_TAG] == first

    outcome = service(p).handle(warning(p, new))

    assert outcome.action == "replaced"
    assert {d for op, d in p.world.log if op == "register"} == {(WEB, outcome.replacement_id),
                                                               (API, outcome.replacement_id)}
    assert "lb.target_groups_of" not in p.world.calls  # not asked of the load balancer
