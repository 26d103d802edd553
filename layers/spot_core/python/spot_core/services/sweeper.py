"""The orphan sweeper: finds instances this product launched that nothing accounts for.

An instance tagged spot-migration:managed=true is accounted for when the registry says
it is active (a migration or an interruption launched it and still uses it), when it
serves in a target group, or (unless the registry retired it) when a replacement claim
names it or it succeeds an instance whose replacement is still unfinished. Anything else
older than the grace period is an orphan: reported (default) or terminated, and notified.
The sweeper also finishes prewarmed replacements whose wait has expired, retires instances
that a rebalance 'replace' swapped out once they have drained, and reports replacements
left unfinished (their handling failed for good; the next event for the instance resumes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..domain.clock import Clock
from ..domain.instances import Instance
from ..domain.interruptions import is_stale, is_unfinished
from ..domain.orphans import DRAIN_SECONDS, Accounted, SweeperMode, SweepReport, find_orphans
from ..domain.plan import TargetRef, group_by_target_group
from ..ports import Fleet, LoadBalancer, ManagedRegistry, Notifier, ReplacementClaims


@dataclass
class Sweeper:
    fleet: Fleet
    load_balancer: LoadBalancer
    claims: ReplacementClaims
    registry: ManagedRegistry
    notifier: Notifier
    clock: Clock
    mode: SweeperMode = "report"
    grace_seconds: int = 600

    def sweep(self) -> SweepReport:
        now = self.clock.now()
        finished, retired = self._finish_replacements(now)
        instances = self.fleet.managed()
        claims = self.claims.all()
        registry = self.registry.statuses([i.instance_id for i in instances])
        orphans = find_orphans(instances, now, self.grace_seconds, registry, self._accounted(instances, claims))
        stale = sorted((c for c in claims if is_unfinished(c) and is_stale(c, now)), key=lambda c: c["instance_id"])
        report = SweepReport(mode=self.mode, managed=len(instances), orphans=orphans, prewarms_finished=finished,
                             swapped_out_retired=retired, unfinished_replacements=[c["instance_id"] for c in stale])
        if orphans:
            self._handle_orphans(report)
        if stale:
            lines = [f"{c['instance_id']}: replacement {c.get('replacement_id') or 'not recorded'} ({c['status']})"
                     for c in stale]
            self.notifier.publish("sweeper", "unfinished-replacements",
                                  f"{len(stale)} replacement(s) left unfinished: the replacement function failed on "
                                  "them (see its dead-letter queue); the next event for the instance resumes it",
                                  lines, report.model_dump())
        return report

    def _accounted(self, instances: list[Instance], claims: list[dict[str, Any]]) -> Accounted:
        """Serving in a target group, named by a replacement claim, or succeeding an unfinished one."""
        return Accounted(
            serving=set(self.load_balancer.membership()) if instances else set(),
            claimed={c["replacement_id"] for c in claims if c.get("replacement_id")},
            resuming={c["instance_id"] for c in claims if is_unfinished(c)},
        )

    def _finish_replacements(self, now: datetime) -> tuple[list[str], list[str]]:
        """Prewarms whose wait is over become swaps; instances swapped out after a rebalance
        are terminated once they have drained."""
        finished, retired = [], []
        for item in self.claims.all():
            if item.get("status") == "prewarmed" and int(item.get("prewarm_until", 0)) <= int(now.timestamp()):
                self._end_prewarm(item, now)
                finished.append(item["instance_id"])
            elif self._drained(item, now):
                self._retire_swapped_out(item["instance_id"])
                retired.append(item["instance_id"])
        return finished, retired

    def _end_prewarm(self, item: Mapping[str, Any], now: datetime) -> None:
        old = item["instance_id"]
        refs = [TargetRef.model_validate(t) for t in item.get("target_groups", [])]
        self.load_balancer.deregister(group_by_target_group((old, ref) for ref in refs))
        self.claims.update(old, status="swapped", swapped_at=now.isoformat())

    @staticmethod
    def _drained(item: Mapping[str, Any], now: datetime) -> bool:
        if item.get("status") != "swapped" or item.get("kind") != "rebalance" or not item.get("swapped_at"):
            return False
        return (now - datetime.fromisoformat(item["swapped_at"])).total_seconds() >= DRAIN_SECONDS

    def _retire_swapped_out(self, old: str) -> None:
        instance = self.fleet.describe([old]).get(old)
        if instance is not None and instance.state in ("pending", "running"):
            self.fleet.terminate([old])
            self.registry.register(old, "swapped out after a rebalance recommendation", status="retired")
        self.claims.update(old, status="retired")

    def _handle_orphans(self, report: SweepReport) -> None:
        ids = [o.instance_id for o in report.orphans]
        if self.mode == "terminate":
            self.fleet.terminate(ids)
            for instance_id in ids:
                self.registry.register(instance_id, "orphan terminated by the sweeper", status="retired")
            report.terminated = len(ids)
        lines = [f"{o.instance_id} ({o.instance_type}, launched {o.launched})" for o in report.orphans]
        action = "terminated" if self.mode == "terminate" else "reported (set SWEEPER_MODE=terminate to remove them)"
        self.notifier.publish("sweeper", "orphans", f"{len(lines)} managed instance(s) nothing accounts for: {action}",
                              lines, report.model_dump())
