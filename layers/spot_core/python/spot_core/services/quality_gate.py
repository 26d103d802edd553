"""Quality gates: the baseline captured before any change, and the gate after each bake that
compares the bake window with it (plus alarms and the health of every replacement)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..domain.clock import Clock
from ..domain.errors import QualityGateFailed
from ..domain.health import StatusChecks
from ..domain.instances import Instance
from ..domain.plan import InstanceRecord, WaveSpec, group_by_target_group
from ..domain.quality import GateResult, QualitySample, evaluate_gate, needs_load_balancer, quality_metrics
from ..domain.request import MetricQuery, MigrationRequest, QualityConfig
from ..ports import Fleet, LoadBalancer, Metrics, MigrationRepository, PlanRepository


def gate_metrics(load_balancer: LoadBalancer, quality: QualityConfig) -> dict[str, MetricQuery]:
    """The metrics the gates read (the ALB defaults need the target group's load balancer)."""
    balancer = load_balancer.load_balancer_of(quality.target_group_arn) \
        if quality.target_group_arn and needs_load_balancer(quality) else None
    return quality_metrics(quality, balancer)


@dataclass
class QualityGate:
    metrics: Metrics
    fleet: Fleet
    load_balancer: LoadBalancer
    migrations: MigrationRepository
    plans: PlanRepository
    clock: Clock

    def capture_baseline(self, migration_id: str) -> QualitySample:
        """The quality of the service before anything changes; the gates compare with it."""
        quality = MigrationRequest.model_validate(self.migrations.get(migration_id)["request"]).quality
        metrics = gate_metrics(self.load_balancer, quality)
        now = self.clock.now()
        sample = self.metrics.quality_sample(metrics, now - timedelta(minutes=quality.baseline_minutes), now)
        baseline = {"metrics": {k: v.model_dump() for k, v in metrics.items()}, "sample": sample.model_dump()}
        self.migrations.update(migration_id, baseline=baseline, status="migrating")
        return sample

    def run(self, migration_id: str, wave: WaveSpec, since: datetime) -> GateResult:
        """QualityGateFailed (the state machine rolls back) unless the bake window is as good as the baseline."""
        item = self.migrations.get(migration_id)
        request = MigrationRequest.model_validate(item["request"])
        baseline = item.get("baseline") or {}
        metrics = {k: MetricQuery.model_validate(v) for k, v in (baseline.get("metrics") or {}).items()}
        current = self.metrics.quality_sample(metrics, since, self.clock.now())
        result = evaluate_gate(
            wave.index, QualitySample.model_validate(baseline.get("sample") or {}), current,
            request.quality.threshold_pct,
            alarms_in_alarm=self.metrics.alarms_in_alarm(request.quality.alarm_names),
            unhealthy_instances=self.unhealthy_replacements(migration_id),
        )
        self.migrations.set_wave_result(migration_id, wave.index, "gate", result.model_dump())
        if not result.passed:
            raise QualityGateFailed(f"wave {wave.index + 1} ({wave.percent:g} %): " + "; ".join(result.reasons))
        return result

    def unhealthy_replacements(self, migration_id: str) -> list[str]:
        """Replacements of migrated instances that are no longer running, healthy in every target
        group of their original, or passing EC2's status checks (an impaired one fails the gate;
        one still initializing, just replaced after an interruption, does not yet)."""
        migrated = [r for r in self.plans.records(migration_id) if r.status == "migrated"]
        if not migrated:
            return []
        ids = [r.replacement for r in migrated]
        instances, checks = self.fleet.describe(ids), self.fleet.status_checks(ids)
        health = self.load_balancer.target_states(
            group_by_target_group((r.replacement, ref) for r in migrated for ref in r.target_groups))
        return [r.replacement for r in migrated if not _serving(r, instances, health, checks.get(r.replacement))]


def _serving(record: InstanceRecord, instances: Mapping[str, Instance], health: Mapping[tuple[str, str], str],
             checks: StatusChecks | None) -> bool:
    """The record's replacement runs, is healthy in every target group of its original, and no
    status check of it fails."""
    instance = instances.get(record.replacement)
    return instance is not None and instance.state == "running" and not (checks and checks.failed) \
        and all(health.get((ref.arn, record.replacement)) == "healthy" for ref in record.target_groups)
