"""Rollback: every original back in service, then its Spot replacement terminated.

Never loses capacity: a replacement is terminated only after its original runs and is
healthy again in every target group; an original that cannot come back keeps its
replacement serving, and the record says so. Loops (the state machine calls again) until
every record is handled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..domain.batching import chunks
from ..domain.clock import Budget, Clock
from ..domain.errors import RollbackIncomplete
from ..domain.plan import ROLLBACK_SCOPE, InstanceRecord, group_by_target_group
from ..domain.waves import RollbackResult
from ..ports import Fleet, LoadBalancer, ManagedRegistry, MigrationRepository, PlanRepository
from .finalize import Finalize
from .traffic import Traffic

CHUNK = 50
NAMED_IN_ERROR = 20


def failure_detail(failure: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Step Functions' Catch output: Error and Cause (the cause is the Lambda's error JSON)."""
    if not failure:
        return None
    return {"Error": failure.get("Error"), "Cause": str(failure.get("Cause", ""))[:1000]}


@dataclass
class Rollback:
    fleet: Fleet
    load_balancer: LoadBalancer
    migrations: MigrationRepository
    plans: PlanRepository
    registry: ManagedRegistry
    finalize: Finalize
    clock: Clock

    def run(self, migration_id: str, failure: Mapping[str, Any] | None, budget: Budget) -> RollbackResult:
        detail = failure_detail(failure)
        self.migrations.update(migration_id, status="rolling_back", failure=detail)
        records = [r for r in self.plans.records(migration_id) if r.replacement_id and r.status in ROLLBACK_SCOPE]
        handled = 0
        for chunk in chunks(records, CHUNK):
            if budget.exhausted():
                break
            _Restore(self, migration_id, budget).restore(chunk)
            handled += len(chunk)
        result = self._progress(migration_id, done=handled == len(records))
        if result.done:
            self.finalize.finish(migration_id, "rolled_back", detail)
        return result

    def _progress(self, migration_id: str, done: bool) -> RollbackResult:
        everything = self.plans.records(migration_id)
        restored = [r for r in everything if r.status == "rolled_back"]
        kept = [r for r in everything if r.status == "rollback_failed"]
        by_wave = Counter(str(r.wave) for r in restored if r.wave is not None)
        self.migrations.update(migration_id, rollback={"done": done, "restored": len(restored), "kept": len(kept),
                                                       "by_wave": dict(by_wave)})
        if done and kept:
            raise RollbackIncomplete(
                f"{len(kept)} original(s) could not be restored and keep their Spot replacement: "
                + ", ".join(r.instance_id for r in kept[:NAMED_IN_ERROR])
            )
        return RollbackResult(done=done, restored=len(restored), terminated=len(restored))


class _Restore:
    """One chunk: originals started and healthy again, then replacements drained and terminated."""

    def __init__(self, service: Rollback, migration_id: str, budget: Budget):
        self.s, self.mid, self.budget = service, migration_id, budget
        self.traffic = Traffic(service.fleet, service.load_balancer, service.clock)

    def restore(self, chunk: list[InstanceRecord]) -> None:
        back = self._start_originals(chunk)
        serving = self._serving_again(back)
        self._retire_replacements(serving)
        for r in serving:
            r.rolled_back()
            self.s.plans.put_record(self.mid, r)
        for r in chunk:
            if r not in serving:
                r.rollback_failed()
                self.s.plans.put_record(self.mid, r)

    def _start_originals(self, chunk: list[InstanceRecord]) -> list[InstanceRecord]:
        """Start the stopped originals (waiting for any still stopping); those running come back."""
        ids = [r.instance_id for r in chunk]
        originals = self.s.fleet.describe(ids)
        stopping = [i for i, o in originals.items() if o.state == "stopping"]
        if stopping:
            self.traffic.wait_for_states(stopping, "stopped", self.budget.step_deadline())
            originals = self.s.fleet.describe(ids)
        to_start = [i for i, o in originals.items() if o.state == "stopped"]
        if to_start:
            self.s.fleet.start(to_start)
        states = self.traffic.wait_for_states(ids, "running", self.budget.step_deadline())
        return [r for r in chunk if states.get(r.instance_id) == "running"]

    def _serving_again(self, back: list[InstanceRecord]) -> list[InstanceRecord]:
        """Register the originals again; those healthy in every target group serve again."""
        old_groups = group_by_target_group((r.instance_id, ref) for r in back for ref in r.target_groups)
        self.s.load_balancer.register(old_groups)
        health = self.traffic.wait_for_targets(old_groups, {"healthy"}, self.budget.step_deadline())
        return [r for r in back if all(health.get((ref.arn, r.instance_id)) == "healthy" for ref in r.target_groups)]

    def _retire_replacements(self, serving: list[InstanceRecord]) -> None:
        """Drain and terminate the replacements of originals serving again (a "launching" one
        may never have been registered: only registered targets are deregistered)."""
        new_groups = self.traffic.registered_only(group_by_target_group(
            (r.replacement, ref) for r in serving for ref in r.target_groups))
        self.s.load_balancer.deregister(new_groups)
        self.traffic.wait_for_targets(new_groups, {"unused"}, self.budget.step_deadline())
        if serving:
            self.s.fleet.terminate([r.replacement for r in serving])
        for r in serving:
            self.s.registry.register(r.replacement, f"migration {self.mid}", status="retired")
