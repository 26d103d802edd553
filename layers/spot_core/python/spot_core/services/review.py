"""Review: the three agents (performance, capacity, application) each judge the plan and
record a verdict; ConsolidateReviews applies their exclusions and cuts the waves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..domain.analysis import summarize
from ..domain.asg import GroupRecord
from ..domain.clock import Clock
from ..domain.errors import MissingVerdicts
from ..domain.plan import AgentVerdict, InstanceRecord, WaveSpec
from ..domain.request import MigrationRequest
from ..domain.reviews import (
    ReviewOutcome,
    apply_exclusions,
    assign_waves,
    missing_agents,
    payload_verdict,
    review_application,
    review_capacity,
    review_performance,
    review_revert,
)
from ..ports import LoadBalancer, Metrics, MigrationRepository, PlanRepository, PoolMemory
from .quality_gate import gate_metrics


@dataclass
class Review:
    migrations: MigrationRepository
    plans: PlanRepository
    pool_memory: PoolMemory
    metrics: Metrics
    load_balancer: LoadBalancer
    clock: Clock

    # --- the agents -----------------------------------------------------------------------------
    def performance(self, migration_id: str) -> AgentVerdict:
        if self._reverting(migration_id):  # MigrationNotFound before any write
            return self._record(migration_id, review_revert("performance", self._candidates(migration_id)))
        return self._record(migration_id, review_performance(self._candidates(migration_id)))

    def capacity(self, migration_id: str) -> AgentVerdict:
        reverting = self._reverting(migration_id)  # MigrationNotFound before any write
        candidates = self._candidates(migration_id)
        if reverting:
            return self._record(migration_id, review_revert("capacity", candidates))
        return self._record(migration_id, review_capacity(candidates, self.pool_memory.recent_interruptions()))

    def _reverting(self, migration_id: str) -> bool:
        """Whether the migration is a revert (MigrationNotFound when there is none)."""
        return bool((self.migrations.get(migration_id).get("request") or {}).get("revert"))

    def application(self, migration_id: str) -> AgentVerdict:
        request = MigrationRequest.model_validate(self.migrations.get(migration_id)["request"])
        quality = request.quality
        metrics = gate_metrics(self.load_balancer, quality)
        now = self.clock.now()
        baseline = self.metrics.quality_sample(metrics, now - timedelta(minutes=quality.baseline_minutes), now) \
            if metrics else None
        verdict = review_application(self._candidates(migration_id), baseline, quality_configured=bool(metrics),
                                     reverting=request.reverting)
        return self._record(migration_id, verdict)

    def _candidates(self, migration_id: str) -> list[InstanceRecord]:
        return [r for r in self.plans.records(migration_id) if r.eligible]

    def _record(self, migration_id: str, verdict: AgentVerdict) -> AgentVerdict:
        """The full verdict goes to the table; the state machine carries a bounded one."""
        self.plans.put_verdict(migration_id, verdict)
        return payload_verdict(verdict)

    # --- consolidation ----------------------------------------------------------------------------
    def _groups(self, migration_id: str, item: dict[str, Any]) -> list[GroupRecord]:
        """The plan's groups (no read for a plan the analysis found none for)."""
        summary = item.get("summary") or {}
        return self.plans.groups(migration_id) if summary.get("groups") or summary.get("groups_excluded") else []

    @staticmethod
    def _waves(records: list[InstanceRecord], groups: list[GroupRecord], request: MigrationRequest
               ) -> tuple[list[WaveSpec], list[InstanceRecord]]:
        """The waves, and the records they change; every wave is kept when groups move."""
        return assign_waves(records, request.waves, request.bake_seconds or [],
                            with_groups=any(g.eligible for g in groups))

    def consolidate(self, migration_id: str) -> ReviewOutcome:
        item = self.migrations.get(migration_id)
        request = MigrationRequest.model_validate(item["request"])
        verdicts = self.plans.verdicts(migration_id)  # full exclusion lists live in the table
        missing = missing_agents(verdicts)
        if missing:
            raise MissingVerdicts(f"missing verdict(s) from {', '.join(missing)}")
        records, groups = self.plans.records(migration_id), self._groups(migration_id, item)
        changed = apply_exclusions(records, verdicts)
        vetoed_by = [v.agent for v in verdicts if not v.approved]
        waves, in_waves = self._waves(records, groups, request) if not vetoed_by else ([], [])
        changed += in_waves
        self.plans.put_records(migration_id, {r.instance_id: r for r in changed}.values())
        summary = summarize(records, item.get("summary", {}).get("pricing_source", "unknown"), groups)
        self.migrations.update(
            migration_id,
            status="vetoed" if vetoed_by else "reviewed",
            summary=summary.model_dump(),
            waves=[w.model_dump() for w in waves],
            verdicts=[v.model_dump(exclude={"excluded_instance_ids"}) for v in verdicts],
        )
        return ReviewOutcome(approved=not vetoed_by, vetoed_by=vetoed_by, candidates=summary.candidates,
                             monthly_savings=summary.monthly_savings, waves=waves)
