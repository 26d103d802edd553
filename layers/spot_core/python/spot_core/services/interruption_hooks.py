"""The interruption hooks of instances EC2 takes back (domain/hooks.py), run around their
replacement's takeover by the replacement function (services/interruptions.py):

1. `start`: each checkpoint is sent (SSM Run Command on the interrupted instance) and the
   instances to drain leave their target groups: only those EC2 takes back (a warning, a reclaim);
   one a rebalance recommendation swaps (`replace` policy) leaves after its replacement joined;
2. `await_drained`: the handler waits for them to drain, bounded by their target groups'
   deregistration delay, before their replacements join the groups;
3. the replacements take over (the caller);
4. `finish`: the checkpoints' results are read until they end or their time is up, then each
   webhook is called once with the event, the instance and its replacement.

Every wait is bounded by the hook's timeout, the reclaim (two minutes after the warning) and the
invocation's deadline, whichever comes first. A hook that fails, times out or cannot run is a
result (status, SSM's status and exit code, the HTTP status), recorded and notified by the caller;
it never raises, so it never keeps a replacement from taking over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..domain.clock import Clock
from ..domain.errors import ProbeRefused
from ..domain.health import ProbeResult
from ..domain.hooks import (
    DEFAULT_TIMEOUT_SECONDS,
    MIN_CHECKPOINT_SECONDS,
    WEBHOOK_TIMEOUT_SECONDS,
    HookName,
    HookResult,
    HookStatus,
    InterruptionHooks,
    drains_first,
    hook_budget,
    seconds_to_reclaim,
    webhook_payload,
)
from ..domain.instances import Instance
from ..domain.interruptions import KIND_LABELS, Notice
from ..domain.plan import TargetRef, group_by_target_group
from ..ports import LoadBalancer, Probes, Webhooks
from .probing import probe_results

POLL_SECONDS = 2.0
GONE = (None, "unused")  # a target that has drained: no longer described, or unused


@dataclass
class Departure:
    """An instance EC2 takes back, whose replacement takes over, with the hooks it runs."""

    notice: Notice
    instance: Instance
    replacement: dict[str, Any]  # id, instance_type, availability_zone, market: what the webhook tells
    groups: list[TargetRef]
    hooks: InterruptionHooks
    note: str | None = None  # why its hooks fell back to the default
    results: list[HookResult] = field(default_factory=list)
    ends_at: float = 0.0  # monotonic: when waiting for its checkpoint ends
    drained_by: float | None = None  # monotonic: when waiting for its drain ends (None: not draining)
    left: bool = False  # it left its target groups already (drain): the takeover does not deregister it again
    command_id: str | None = None
    started_at: float = 0.0

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    def record(self, hook: HookName, status: HookStatus, detail: str = "", exit_code: int | None = None,
               seconds: float | None = None) -> None:
        self.results.append(HookResult(hook=hook, status=status, detail=detail, exit_code=exit_code,
                                       seconds=round(seconds, 1) if seconds is not None else None))

    def summary(self) -> dict[str, Any]:
        """What the claim, the outcome and the notification keep of it."""
        out: dict[str, Any] = {"on_interruption": self.hooks.on_interruption,
                               "hooks": [r.model_dump(exclude_none=True) for r in self.results]}
        return {**out, "hooks_note": self.note} if self.note else out

    def lines(self) -> str:
        said = [r.line() for r in self.results] + ([self.note] if self.note else [])
        return f"{self.hooks.on_interruption}: {'; '.join(said)}" if said else self.hooks.on_interruption


@dataclass
class HookRunner:
    probes: Probes
    webhooks: Webhooks
    load_balancer: LoadBalancer
    clock: Clock
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS  # a checkpoint's, unless its hooks say
    poll_seconds: float = POLL_SECONDS

    # --- 1. checkpoints sent, drains begun ----------------------------------------------------------------
    def start(self, departures: list[Departure], deadline: float) -> None:
        """`deadline`: the monotonic moment by which every wait must be over (this invocation's)."""
        now = self.clock.monotonic()
        for d in departures:
            d.started_at = now
            timeout = d.hooks.timeout_seconds or self.timeout_seconds
            d.ends_at = now + hook_budget(timeout, self._to_reclaim(d), deadline - now)
        self._drain(self._draining_first(departures))
        for d in departures:
            self._send_checkpoint(d)

    @staticmethod
    def _draining_first(departures: list[Departure]) -> list[Departure]:
        """Those to drain before their replacement joins: EC2 takes them back. A swap the product
        starts itself (a rebalance recommendation's `replace`) drains after its replacement joined."""
        first: list[Departure] = []
        for d in departures:
            if drains_first(d.hooks.on_interruption, d.notice.kind):
                first.append(d)
            elif d.hooks.on_interruption == "drain":
                d.record("drain", "skipped", f"not drained first: a {KIND_LABELS[d.notice.kind]}, EC2 is not "
                                             "taking it back; its replacement registered before it left")
        return first

    def _to_reclaim(self, d: Departure) -> float:
        """Seconds until EC2 takes the instance: none left once it did (a reclaim's state change)."""
        if d.notice.kind == "state-change":
            return 0.0
        left = seconds_to_reclaim(d.notice.kind, d.notice.time, self.clock.now())
        return left if left is not None else float("inf")

    def _drain(self, draining: list[Departure]) -> None:
        """They leave their target groups; each waits at most its groups' deregistration delay."""
        for d in draining:
            if not d.groups:
                d.record("drain", "skipped", "in no target group")
        listed = [d for d in draining if d.groups]
        delays = self._deregister(listed) if listed else None
        if delays is None:
            return
        now = self.clock.monotonic()
        for d in listed:
            d.left, d.drained_by = True, min(d.ends_at, now + max(delays.get(ref.arn, 0) for ref in d.groups))

    def _deregister(self, listed: list[Departure]) -> dict[str, int] | None:
        """The deregistration delays of their target groups, once they left them (None: they could not)."""
        groups = group_by_target_group((d.instance_id, ref) for d in listed for ref in d.groups)
        try:
            self.load_balancer.deregister(groups)
            return self.load_balancer.deregistration_delays(groups)
        except Exception as exc:  # noqa: BLE001 - a hook's failure is its result; the takeover deregisters again
            for d in listed:
                d.record("drain", "failed", f"deregistration failed ({type(exc).__name__})")
            return None

    def _send_checkpoint(self, d: Departure) -> None:
        left = int(d.ends_at - self.clock.monotonic())
        checkpoint = d.hooks.checkpoint(left)
        if checkpoint is None:
            return
        if left < MIN_CHECKPOINT_SECONDS:
            d.record("checkpoint", "skipped", "no time left before the reclaim")
            return
        try:
            d.command_id = self.probes.send_checkpoint(d.instance_id, checkpoint)
        except ProbeRefused:
            d.record("checkpoint", "failed", "could not run: not an SSM managed instance (no agent, or gone)")
        except Exception as exc:  # noqa: BLE001 - SSM unreachable or refusing: the hook's result
            d.record("checkpoint", "failed", f"could not run ({type(exc).__name__})")

    # --- 2. the drains ------------------------------------------------------------------------------------
    def await_drained(self, departures: list[Departure]) -> None:
        """Until the instances draining have left their target groups, or their time is up."""
        waiting = [d for d in departures if d.drained_by is not None]
        while waiting:
            states = self._states(waiting)
            if states is None:
                return
            now = self.clock.monotonic()
            waiting = [d for d in waiting if not self._drain_ended(d, states, now)]
            self._pause(d.drained_by for d in waiting)

    @staticmethod
    def _drain_ended(d: Departure, states: Mapping[tuple[str, str], str], now: float) -> bool:
        if all(states.get((ref.arn, d.instance_id)) in GONE for ref in d.groups):
            d.record("drain", "succeeded", seconds=now - d.started_at)
            return True
        if now >= (d.drained_by or now):
            d.record("drain", "timed_out", "still draining when its time was up", seconds=now - d.started_at)
            return True
        return False

    def _states(self, waiting: list[Departure]) -> dict[tuple[str, str], str] | None:
        groups = group_by_target_group((d.instance_id, ref) for d in waiting for ref in d.groups)
        try:
            return self.load_balancer.target_states(groups)
        except Exception as exc:  # noqa: BLE001 - the drain is not watched any longer; the takeover goes on
            for d in waiting:
                d.record("drain", "failed", f"target health unreadable ({type(exc).__name__})")
            return None

    # --- 4. the checkpoints' results, then the webhooks ----------------------------------------------------
    def finish(self, departures: list[Departure]) -> None:
        self._await_checkpoints([d for d in departures if d.command_id is not None])
        for d in departures:
            if d.hooks.webhook is not None:
                self._call_webhook(d, d.hooks.webhook)

    def _await_checkpoints(self, waiting: list[Departure]) -> None:
        while waiting:
            try:
                results = probe_results(self.probes, {d.instance_id: d.command_id or "" for d in waiting})
            except Exception as exc:  # noqa: BLE001 - SSM unreachable: the hook's result
                for d in waiting:
                    d.record("checkpoint", "failed", f"result unreadable ({type(exc).__name__})")
                return
            now = self.clock.monotonic()
            waiting = [d for d in waiting if not self._ended(d, results.get(d.instance_id), now)]
            self._pause(d.ends_at for d in waiting)

    @staticmethod
    def _ended(d: Departure, result: ProbeResult | None, now: float) -> bool:
        seconds = now - d.started_at
        if result is not None and result.state != "pending":
            status: HookStatus = "succeeded" if result.state == "success" else "failed"
            d.record("checkpoint", status, result.detail, result.exit_code, seconds)
            return True
        if now >= d.ends_at:
            d.record("checkpoint", "timed_out", "still running when its time was up", seconds=seconds)
            return True
        return False

    def _call_webhook(self, d: Departure, reference: str) -> None:
        payload = webhook_payload(
            {"kind": d.notice.kind, "time": d.notice.time.isoformat(), "id": d.notice.event_id},
            {"id": d.instance_id, "instance_type": d.instance.instance_type,
             "availability_zone": d.instance.availability_zone},
            d.replacement, d.hooks.on_interruption, d.results)
        before = self.clock.monotonic()
        try:
            result = self.webhooks.call(reference, payload, WEBHOOK_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - the port never raises; a broken adapter must not block either
            result = HookResult(hook="webhook", status="failed", detail=f"not called ({type(exc).__name__})")
        d.results.append(result.model_copy(update={"seconds": round(self.clock.monotonic() - before, 1)}))

    def _pause(self, ends: Iterable[float | None]) -> None:
        """Sleep until the next poll, never past the first end."""
        left = [e - self.clock.monotonic() for e in ends if e is not None]
        if left:
            self.clock.sleep(max(0.0, min([self.poll_seconds, *left])))
