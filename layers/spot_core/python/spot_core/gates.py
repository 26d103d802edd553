"""Baseline capture and the quality gate after each bake."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from . import fleet, telemetry
from .errors import QualityGateFailed
from .models import MetricQuery, MigrationRequest, WaveSpec
from .quality import GateResult, QualitySample, evaluate_gate
from .store import MigrationStore


def capture_baseline(migration_id: str, *, cloudwatch: Any, elbv2: Any, store: MigrationStore, now: datetime) -> dict:
    request = MigrationRequest.model_validate(store.get(migration_id)["request"])
    metrics = telemetry.resolve_quality_metrics(request.quality, elbv2)
    sample = telemetry.quality_sample(cloudwatch, metrics, now - timedelta(minutes=request.quality.baseline_minutes), now)
    baseline = {"metrics": {k: v.model_dump() for k, v in metrics.items()}, "sample": sample.model_dump()}
    store.update(migration_id, baseline=baseline, status="migrating")
    return {"latency": sample.latency, "error_rate": sample.error_rate, "requests": sample.requests, "datapoints": sample.datapoints}


def unhealthy_replacements(migration_id: str, *, ec2: Any, elbv2: Any, store: MigrationStore) -> list[str]:
    """Replacements of migrated instances that are no longer running or healthy."""
    migrated = [r for r in store.records(migration_id) if r.status == "migrated"]
    if not migrated:
        return []
    states = {i: inst["State"]["Name"] for i, inst in fleet.describe(ec2, [r.replacement_id for r in migrated]).items()}
    groups = fleet.group_by_target_group((r.replacement_id, ref) for r in migrated for ref in r.target_groups)
    health = fleet.target_states(elbv2, groups)
    bad = []
    for r in migrated:
        if states.get(r.replacement_id) != "running" or any(health.get((ref.arn, r.replacement_id)) != "healthy" for ref in r.target_groups):
            bad.append(r.replacement_id)
    return bad


def run_gate(migration_id: str, wave: WaveSpec, since: datetime, *, cloudwatch: Any, ec2: Any, elbv2: Any,
             store: MigrationStore, now: datetime) -> GateResult:
    item = store.get(migration_id)
    request = MigrationRequest.model_validate(item["request"])
    baseline = item.get("baseline") or {}
    metrics = {k: MetricQuery.model_validate(v) for k, v in (baseline.get("metrics") or {}).items()}
    base = QualitySample.model_validate(baseline.get("sample") or {})
    current = telemetry.quality_sample(cloudwatch, metrics, since, now)
    result = evaluate_gate(
        wave.index, base, current, request.quality.threshold_pct,
        alarms_in_alarm=telemetry.alarms_in_alarm(cloudwatch, request.quality.alarm_names),
        unhealthy_instances=unhealthy_replacements(migration_id, ec2=ec2, elbv2=elbv2, store=store),
    )
    if base.datapoints and not current.datapoints:
        result.passed = False
        result.reasons.append("no quality data during the bake window although the baseline had some")
    store.set_wave_result(migration_id, wave.index, "gate", result.model_dump())
    if not result.passed:
        raise QualityGateFailed(f"wave {wave.index + 1} ({wave.percent:g} %): " + "; ".join(result.reasons))
    return result
