"""Interruption hooks (services/interruption_hooks.py, called by services/interruptions.py): a
checkpoint run on the interrupted instance, a drain before the replacement joins, a webhook told
of the event; each recorded on the claim, in the outcome and in the notification, bounded by its
timeout, the reclaim and the invocation; a hook that fails never keeps the replacement from
taking over; the webhook's URL is nowhere to be read."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from builders import API, WEB, ZONES, serving
from builders import interruptions as service
from fakes import Ports

from spot_core.domain.hooks import (
    CHECKPOINT_TAG,
    CHECKPOINT_TIMEOUT_TAG,
    ON_INTERRUPTION_TAG,
    WEBHOOK_TAG,
    InterruptionHooks,
)
from spot_core.domain.instances import Instance
from spot_core.domain.interruptions import LaunchProfile, Notice, NoticeKind
from spot_core.domain.tags import MANAGED_TAG, ON_REBALANCE_TAG
from spot_core.services.interruption_hooks import HookRunner
from spot_core.services.interruptions import HAND_OVER_MARGIN_SECONDS, Interruptions

PRICES = {"m5.large": 0.030, "m5a.large": 0.032, "m6i.large": 0.034}
SECRET_COMMAND = "flush --token=tok-5ecre7"
REFERENCE = "secretsmanager:spot-migration/web-hook"
URL = "https://hooks.example.com/T000/B000/s3cr3t-path"


@pytest.fixture
def p(p: Ports) -> Ports:
    p.spot_prices.prices = {(t, z): price for t, price in PRICES.items() for z in ZONES}
    p.webhooks.secrets[REFERENCE] = URL
    return p


def managed(p: Ports, **tags: str) -> Instance:
    return serving(p, 1, (WEB, API), lifecycle="spot", tags={MANAGED_TAG: "true", "Name": "web", **tags})[0]


def hooked(p: Ports, **options) -> Interruptions:
    """The replacement service with its hook runner, as the wiring builds it."""
    return service(p, hook_runner=HookRunner(p.probes, p.webhooks, p.load_balancer, p.clock), **options)


def notice(p: Ports, instance: Instance, kind: NoticeKind = "interruption", age: float = 2.0,
           event_id: str | None = None) -> Notice:
    return Notice(event_id or f"{kind}-{instance.instance_id}", instance.instance_id, kind,
                  p.clock.now() - timedelta(seconds=age), "shutting-down" if kind == "state-change" else None)


def hooks_of(p: Ports, instance: Instance) -> dict[str, dict]:
    """The hook results recorded on the instance's claim, by hook."""
    return {h["hook"]: h for h in p.claims.items[instance.instance_id].get("hooks", [])}


def swapped(p: Ports, instance: Instance, outcome) -> bool:
    """The replacement took over: it serves where the instance served, which is gone from there."""
    return (outcome.action in ("replaced", "swapped_prewarmed")
            and p.claims.items[instance.instance_id]["status"] == "swapped"
            and all(outcome.replacement_id in p.load_balancer.registered(arn)
                    and instance.instance_id not in p.load_balancer.registered(arn) for arn in (WEB, API)))


def everything_written(p: Ports, outcome) -> str:
    """Every record, claim, notification, change and the outcome, as text (but the launches: the
    replacement carries the instance's tags, as their owner wrote them)."""
    changes = [(op, d) for op, d in p.world.log if op != "launch"]
    return json.dumps([p.claims.items, p.plans.stored, p.migrations.items, p.notifier.sent, changes,
                       outcome.model_dump(mode="json")], default=str)


# --- replace: today's behaviour ------------------------------------------------------------------------------------
def test_replace_by_default_runs_no_hook_and_calls_nothing_more(p):
    victim = managed(p)
    outcome = hooked(p).handle(notice(p, victim))

    assert swapped(p, victim, outcome) and outcome.hooks is None and outcome.on_interruption is None
    assert "hooks" not in p.claims.items[victim.instance_id]
    assert p.world.calls["probes.send_checkpoint"] == p.world.calls["webhooks.call"] == 0
    assert p.world.calls["lb.target_states"] == 0


def test_replace_with_a_webhook_calls_it_once_with_the_event_the_instance_and_its_replacement(p):
    victim = managed(p, **{WEBHOOK_TAG: REFERENCE})
    event = notice(p, victim)
    outcome = hooked(p).handle(event)

    assert swapped(p, victim, outcome)
    [(url, payload)] = p.webhooks.calls
    assert url == URL
    assert payload["event"] == {"kind": "interruption", "time": event.time.isoformat(), "id": event.event_id}
    assert payload["instance"]["id"] == victim.instance_id
    assert payload["replacement"] == {"id": outcome.replacement_id, "instance_type": outcome.instance_type,
                                      "availability_zone": outcome.availability_zone, "market": "spot"}
    assert hooks_of(p, victim)["webhook"]["status"] == "succeeded"
    assert outcome.on_interruption == "replace" and [h.hook for h in outcome.hooks] == ["webhook"]
    assert "webhook succeeded: HTTP 200" in p.notifier.sent[-1]["headline"]


# --- checkpoint -------------------------------------------------------------------------------------------------
def test_a_checkpoint_runs_on_the_interrupted_instance_and_its_status_and_exit_code_are_recorded(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "checkpoint", CHECKPOINT_TAG: SECRET_COMMAND})
    outcome = hooked(p).handle(notice(p, victim))

    assert swapped(p, victim, outcome)
    [(instance_id, checkpoint)] = p.probes.checkpoints
    assert instance_id == victim.instance_id and checkpoint.command == SECRET_COMMAND and checkpoint.document is None
    recorded = hooks_of(p, victim)["checkpoint"]
    assert (recorded["status"], recorded["exit_code"]) == ("succeeded", 0)
    assert p.claims.items[victim.instance_id]["on_interruption"] == "checkpoint"
    assert "checkpoint succeeded" in p.notifier.sent[-1]["headline"]
    assert SECRET_COMMAND not in everything_written(p, outcome)  # the command may carry a secret


def test_a_checkpoint_document_is_run_by_name(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "checkpoint", CHECKPOINT_TAG: "ssm:spot-migration-flush"})
    hooked(p).handle(notice(p, victim))

    [(_, checkpoint)] = p.probes.checkpoints
    assert (checkpoint.document, checkpoint.command) == ("spot-migration-flush", None)
    assert hooks_of(p, victim)["checkpoint"]["status"] == "succeeded"


def test_the_checkpoint_is_bounded_by_its_timeout_the_reclaim_and_the_invocation(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "checkpoint", CHECKPOINT_TAG: "flush", CHECKPOINT_TIMEOUT_TAG: "30"})
    hooked(p).handle(notice(p, victim))
    assert p.probes.checkpoints[-1][1].timeout_seconds == 30  # its own timeout

    other = managed(p, **{ON_INTERRUPTION_TAG: "checkpoint", CHECKPOINT_TAG: "flush"})
    hooked(p).handle(notice(p, other, age=100))  # the reclaim comes 20 s from now
    assert 15 <= p.probes.checkpoints[-1][1].timeout_seconds <= 20

    third = managed(p, **{ON_INTERRUPTION_TAG: "checkpoint", CHECKPOINT_TAG: "flush"})
    hooked(p, holder_seconds=60).handle(notice(p, third))  # the invocation ends in 60 s
    assert p.probes.checkpoints[-1][1].timeout_seconds <= 60 - HAND_OVER_MARGIN_SECONDS


def test_no_checkpoint_is_sent_when_the_reclaim_is_seconds_away(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "checkpoint", CHECKPOINT_TAG: "flush"})
    outcome = hooked(p).handle(notice(p, victim, age=118))

    assert swapped(p, victim, outcome) and p.probes.checkpoints == []
    assert hooks_of(p, victim)["checkpoint"] == {"hook": "checkpoint", "status": "skipped",
                                                 "detail": "no time left before the reclaim"}


# --- drain ------------------------------------------------------------------------------------------------------
def test_drain_deregisters_the_instance_and_waits_for_the_drain_before_the_replacement_joins(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "drain"})
    outcome = hooked(p).handle(notice(p, victim))

    assert swapped(p, victim, outcome)
    changes = [(op, d) for op, d in p.world.log if op in ("register", "deregister")]
    assert changes[:2] == [("deregister", (WEB, victim.instance_id)), ("deregister", (API, victim.instance_id))]
    assert changes[2:] == [("register", (WEB, outcome.replacement_id)), ("register", (API, outcome.replacement_id))]
    drain = hooks_of(p, victim)["drain"]
    assert drain["status"] == "succeeded" and p.load_balancer.drain_seconds <= drain["seconds"] <= 12


def test_a_drain_longer_than_its_time_ends_at_the_reclaim_and_the_replacement_joins_then(p):
    p.load_balancer.drain_seconds = 300  # the target group's deregistration delay
    victim = managed(p, **{ON_INTERRUPTION_TAG: "drain"})
    start = p.clock.monotonic()
    outcome = hooked(p).handle(notice(p, victim, age=110))  # 10 s left

    assert swapped(p, victim, outcome)
    assert hooks_of(p, victim)["drain"]["status"] == "timed_out"
    assert p.clock.monotonic() - start <= 10


def test_drain_then_checkpoint(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "drain", CHECKPOINT_TAG: "flush"})
    outcome = hooked(p).handle(notice(p, victim))

    assert swapped(p, victim, outcome)
    assert [h.hook for h in outcome.hooks] == ["drain", "checkpoint"]
    assert {h.status for h in outcome.hooks} == {"succeeded"}


def test_a_rebalance_swap_registers_the_replacement_before_the_drain_and_still_runs_the_other_hooks(p):
    """A rebalance recommendation with the replace policy: EC2 is not taking the instance back, so it
    serves until its replacement has joined (no capacity lost waiting for a drain); its checkpoint and
    webhook still run."""
    p.load_balancer.drain_seconds = 60
    victim = managed(p, **{ON_INTERRUPTION_TAG: "drain", CHECKPOINT_TAG: "flush", WEBHOOK_TAG: REFERENCE,
                           ON_REBALANCE_TAG: "replace"})
    start = p.clock.monotonic()

    outcome = hooked(p).handle(notice(p, victim, "rebalance"))

    assert (outcome.action, outcome.policy) == ("replaced", "replace") and swapped(p, victim, outcome)
    new = outcome.replacement_id
    changes = [(op, d) for op, d in p.world.log if op in ("register", "deregister")]
    assert changes == [("register", (WEB, new)), ("register", (API, new)),
                       ("deregister", (WEB, victim.instance_id)), ("deregister", (API, victim.instance_id))]
    hooks = hooks_of(p, victim)
    assert hooks["drain"]["status"] == "skipped" and "rebalance recommendation" in hooks["drain"]["detail"]
    assert hooks["checkpoint"]["status"] == hooks["webhook"]["status"] == "succeeded"
    assert p.probes.checkpoints and p.clock.monotonic() - start < p.load_balancer.drain_seconds  # never waited


def test_a_warning_after_a_rebalance_swap_changes_nothing_more(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "drain", ON_REBALANCE_TAG: "replace"})
    swapped_out = hooked(p).handle(notice(p, victim, "rebalance"))
    changes = len(p.world.log)

    outcome = hooked(p).handle(notice(p, victim))

    assert outcome.action == "already_replaced" and outcome.replacement_id == swapped_out.replacement_id
    assert len(p.world.log) == changes


# --- a hook that fails never blocks the replacement ------------------------------------------------------------------
def failing_checkpoint(p: Ports, how: str, victim: Instance) -> None:
    if how == "command fails":
        p.probes.failing.add(victim.instance_id)
    elif how == "times out":
        p.probes.hanging.add(victim.instance_id)
    elif how == "no agent":
        p.probes.refusing.add(victim.instance_id)
    else:
        p.probes.unreachable = True


@pytest.mark.parametrize(("how", "status", "detail"), [
    ("command fails", "failed", "Failed (exit 1)"),
    ("times out", "timed_out", "still running when its time was up"),
    ("no agent", "failed", "could not run: not an SSM managed instance (no agent, or gone)"),
    ("SSM unreachable", "failed", "could not run (TransientAwsError)"),
])
def test_a_failing_checkpoint_is_recorded_and_notified_and_the_replacement_takes_over_within_its_bound(
        p, how, status, detail):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "checkpoint", CHECKPOINT_TAG: "flush", CHECKPOINT_TIMEOUT_TAG: "40"})
    failing_checkpoint(p, how, victim)
    start = p.clock.monotonic()
    outcome = hooked(p).handle(notice(p, victim))

    assert swapped(p, victim, outcome)
    recorded = hooks_of(p, victim)["checkpoint"]
    assert (recorded["status"], recorded["detail"]) == (status, detail)
    assert f"checkpoint {status}: {detail}" in p.notifier.sent[-1]["headline"]
    assert p.clock.monotonic() - start <= 40 + 1


@pytest.mark.parametrize(("answer", "status", "detail"), [
    (500, "failed", "HTTP 500"),
    ("timeout", "timed_out", "no answer within 5 s"),
    (None, "failed", "secret not found (ResourceNotFoundException)"),
])
def test_a_failing_webhook_is_recorded_and_notified_and_changes_nothing_else(p, answer, status, detail):
    if answer is None:
        del p.webhooks.secrets[REFERENCE]
    else:
        p.webhooks.answers[URL] = answer
    victim = managed(p, **{WEBHOOK_TAG: REFERENCE})
    outcome = hooked(p).handle(notice(p, victim))

    assert swapped(p, victim, outcome)
    assert (hooks_of(p, victim)["webhook"]["status"], hooks_of(p, victim)["webhook"]["detail"]) == (status, detail)
    assert f"webhook {status}: {detail}" in p.notifier.sent[-1]["headline"]


def test_the_webhook_url_is_in_no_record_claim_notification_log_or_outcome(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "drain", CHECKPOINT_TAG: "flush", WEBHOOK_TAG: REFERENCE})
    p.webhooks.answers[URL] = 503
    outcome = hooked(p).handle(notice(p, victim))

    assert p.webhooks.calls and URL not in everything_written(p, outcome)
    assert "s3cr3t" not in everything_written(p, outcome)


# --- where the hooks come from ----------------------------------------------------------------------------------------
def test_the_hooks_planned_from_the_request_come_with_the_launch_profile_and_pass_to_the_successor(p):
    planned = InterruptionHooks(on_interruption="checkpoint", checkpoint_command="flush", webhook=REFERENCE)
    victim = managed(p)
    p.claims.put_profile(victim.instance_id, LaunchProfile(
        target_groups=p.load_balancer.target_groups_of(victim.instance_id), hooks=planned))
    outcome = hooked(p).handle(notice(p, victim))

    assert [h.hook for h in outcome.hooks] == ["checkpoint", "webhook"]
    successor = p.claims.items[outcome.replacement_id]["profile"]
    assert InterruptionHooks.model_validate(successor["hooks"]) == planned


def test_the_instances_tags_override_the_planned_hooks(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "replace"})
    p.claims.put_profile(victim.instance_id, LaunchProfile(
        target_groups=p.load_balancer.target_groups_of(victim.instance_id),
        hooks=InterruptionHooks(on_interruption="checkpoint", checkpoint_command="flush")))
    outcome = hooked(p).handle(notice(p, victim))

    assert swapped(p, victim, outcome) and p.probes.checkpoints == [] and outcome.hooks is None


@pytest.mark.parametrize("tags", [
    {ON_INTERRUPTION_TAG: "pause"},
    {ON_INTERRUPTION_TAG: "checkpoint"},  # no checkpoint to run
    {WEBHOOK_TAG: URL},  # the URL itself
    {CHECKPOINT_TIMEOUT_TAG: "soon", ON_INTERRUPTION_TAG: "drain"},
])
def test_invalid_hook_tags_at_interruption_time_fall_back_to_replace_with_a_note(p, tags):
    victim = managed(p, **tags)
    outcome = hooked(p).handle(notice(p, victim))

    assert swapped(p, victim, outcome)
    assert outcome.hooks == [] and "invalid interruption hook tags" in outcome.hooks_note
    assert p.world.calls["probes.send_checkpoint"] == p.world.calls["webhooks.call"] == 0
    assert p.world.calls["lb.target_states"] == 0
    assert "replaced without hooks" in p.notifier.sent[-1]["headline"]
    assert URL not in everything_written(p, outcome)


# --- the other ways an instance goes ---------------------------------------------------------------------------------
def test_a_prewarmed_replacement_takes_over_with_the_hooks_at_the_warning(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "drain", CHECKPOINT_TAG: "flush", WEBHOOK_TAG: REFERENCE})
    prewarmed = hooked(p).handle(notice(p, victim, "rebalance", age=600))
    assert prewarmed.action == "prewarmed" and prewarmed.hooks is None and p.webhooks.calls == []

    outcome = hooked(p).handle(notice(p, victim))

    assert outcome.action == "swapped_prewarmed" and swapped(p, victim, outcome)
    assert [h.hook for h in outcome.hooks] == ["drain", "checkpoint", "webhook"]
    assert {h.status for h in outcome.hooks} == {"succeeded"}
    assert p.webhooks.calls[0][1]["replacement"]["id"] == prewarmed.replacement_id
    assert "hooks: drain" in p.notifier.sent[-1]["headline"]


def test_a_reclaim_without_a_warning_runs_no_checkpoint_and_still_calls_the_webhook(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "checkpoint", CHECKPOINT_TAG: "flush", WEBHOOK_TAG: REFERENCE})
    p.fleet.reclaim(victim.instance_id)
    outcome = hooked(p).handle(notice(p, victim, "state-change"))

    assert outcome.action == "replaced" and p.probes.checkpoints == []
    assert hooks_of(p, victim)["checkpoint"]["status"] == "skipped"
    assert hooks_of(p, victim)["webhook"]["status"] == "succeeded"


def test_without_a_hook_runner_the_instance_is_replaced_as_before(p):
    victim = managed(p, **{ON_INTERRUPTION_TAG: "checkpoint", CHECKPOINT_TAG: "flush"})
    outcome = service(p).handle(notice(p, victim))
    assert swapped(p, victim, outcome) and outcome.hooks is None and p.probes.checkpoints == []
