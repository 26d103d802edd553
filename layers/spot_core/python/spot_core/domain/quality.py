"""Quality maths: how much worse the service got compared with its baseline.

score = 0.7 x latency change (%) + 0.3 x error-rate change (%), each change clamped at
zero so an improvement in one cannot hide a degradation in the other. The error-rate
change is relative to max(baseline rate, 1 %): going from 0 % to 0.5 % errors counts as
a 50 % change, not an infinite one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, Field

from .request import MetricQuery, QualityConfig

LATENCY_WEIGHT = 0.7
ERROR_WEIGHT = 0.3
ERROR_RATE_FLOOR = 0.01
NAMED_PROBE_FAILURES = 3  # failed probes a gate's reason names (with why); the rest are counted
PROBE_DETAIL_CHARS = 120  # of why each failed


class QualitySample(BaseModel):
    """Quality over one window: mean latency (seconds), error rate (0..1), request count."""

    latency: float | None = None
    error_rate: float | None = None
    requests: float = 0.0
    datapoints: int = 0
    start: str | None = None
    end: str | None = None

    @classmethod
    def of(cls, latency: list[float], errors: list[float], requests: list[float], start: datetime,
           end: datetime) -> QualitySample:
        """Per-minute values of a window -> its mean latency and its error rate (errors / requests)."""
        error_count, request_count = sum(errors), sum(requests)
        return cls(
            latency=sum(latency) / len(latency) if latency else None,
            error_rate=(error_count / request_count) if request_count else None,
            requests=request_count,
            datapoints=len(latency) + len(requests),
            start=start.isoformat(timespec="seconds"),
            end=end.isoformat(timespec="seconds"),
        )


class GateResult(BaseModel):
    wave: int
    passed: bool
    score: float
    threshold_pct: float
    latency_change_pct: float | None = None
    error_rate_change_pct: float | None = None
    baseline: QualitySample
    current: QualitySample
    alarms_in_alarm: list[str] = Field(default_factory=list)
    unhealthy_instances: list[str] = Field(default_factory=list)
    failed_probes: list[str] = Field(default_factory=list)  # replacements whose health probe failed
    reasons: list[str] = Field(default_factory=list)
    pending: bool = False  # no verdict yet: the gate waits `wait_seconds` for health probes, then runs again
    wait_seconds: int = 0

    @classmethod
    def waiting(cls, wave: int, threshold_pct: float, baseline: QualitySample, probes: int,
                wait_seconds: int) -> GateResult:
        """No verdict yet: `probes` health probes still run (not passed, and not the result to store)."""
        return cls(wave=wave, passed=False, score=0.0, threshold_pct=threshold_pct, baseline=baseline,
                   current=QualitySample(), reasons=[f"waiting for {probes} health probe(s)"], pending=True,
                   wait_seconds=wait_seconds)


def latency_change_pct(baseline: float | None, current: float | None) -> float | None:
    if baseline is None or current is None or baseline <= 0:
        return None
    return 100.0 * (current - baseline) / baseline


def error_rate_change_pct(baseline: float | None, current: float | None) -> float | None:
    if baseline is None or current is None:
        return None
    return 100.0 * (current - baseline) / max(baseline, ERROR_RATE_FLOOR)


def degradation_score(latency_change: float | None, error_change: float | None) -> float:
    return LATENCY_WEIGHT * max(latency_change or 0.0, 0.0) + ERROR_WEIGHT * max(error_change or 0.0, 0.0)


def evaluate_gate(
    wave: int,
    baseline: QualitySample,
    current: QualitySample,
    threshold_pct: float,
    alarms_in_alarm: list[str] | None = None,
    unhealthy_instances: list[str] | None = None,
    failed_probes: Mapping[str, str] | None = None,
) -> GateResult:
    """Pass only when the score is within the threshold, no alarm fires, every replacement
    of the migration is still running and healthy, the health probes run again on the wave's
    replacements passed (`failed_probes`: replacement id -> why not), and the bake window had
    data when the baseline did (a gate that sees nothing must not pass)."""
    lat = latency_change_pct(baseline.latency, current.latency)
    err = error_rate_change_pct(baseline.error_rate, current.error_rate)
    score = round(degradation_score(lat, err), 3)  # decide on the score that is reported
    alarms = sorted(alarms_in_alarm or [])
    unhealthy = sorted(unhealthy_instances or [])
    failed = dict(failed_probes or {})
    reasons: list[str] = []
    if score > threshold_pct:
        reasons.append(f"degradation score {score:.2f} % exceeds the {threshold_pct:g} % threshold")
    if alarms:
        reasons.append(f"alarm(s) in ALARM: {', '.join(alarms)}")
    reasons += _health_reasons(unhealthy, failed)
    if baseline.datapoints and not current.datapoints:
        reasons.append("no quality data during the bake window although the baseline had some")
    return GateResult(
        wave=wave,
        passed=not reasons,
        score=score,
        threshold_pct=threshold_pct,
        latency_change_pct=None if lat is None else round(lat, 3),
        error_rate_change_pct=None if err is None else round(err, 3),
        baseline=baseline,
        current=current,
        alarms_in_alarm=alarms,
        unhealthy_instances=unhealthy,
        failed_probes=sorted(failed),
        reasons=reasons,
    )


def _health_reasons(unhealthy: list[str], failed_probes: Mapping[str, str]) -> list[str]:
    reasons = []
    if unhealthy:
        reasons.append(f"{len(unhealthy)} Spot replacement(s) not running or not healthy")
    if failed_probes:
        reasons.append(probe_failures(failed_probes))
    return reasons


def probe_failures(failed: Mapping[str, str]) -> str:
    """`health probe failed on 2 replacement(s): i-1 (Failed (exit 1)), i-2 (...)`: the first few
    named with why (trimmed), the rest counted."""
    named = [f"{i} ({(failed[i] or 'failed')[:PROBE_DETAIL_CHARS]})" for i in sorted(failed)[:NAMED_PROBE_FAILURES]]
    more = len(failed) - len(named)
    return f"health probe failed on {len(failed)} replacement(s): {', '.join(named)}" + (
        f" and {more} more" if more else "")


def quality_metrics(config: QualityConfig, load_balancer_arn: str | None) -> dict[str, MetricQuery]:
    """The metrics the gates read: explicit ones, else the ALB defaults of the target group
    (``load_balancer_arn``: the group's load balancer, when it has one)."""
    metrics: dict[str, MetricQuery] = {}
    if config.target_group_arn and needs_load_balancer(config):
        dims = {"TargetGroup": config.target_group_arn.split(":")[-1]}
        if load_balancer_arn:
            dims["LoadBalancer"] = load_balancer_arn.split(":loadbalancer/")[-1]
        alb = {"namespace": "AWS/ApplicationELB", "dimensions": dims}
        metrics["latency"] = MetricQuery(metric_name="TargetResponseTime", statistic="Average", **alb)
        metrics["errors"] = MetricQuery(metric_name="HTTPCode_Target_5XX_Count", statistic="Sum", **alb)
        metrics["requests"] = MetricQuery(metric_name="RequestCount", statistic="Sum", **alb)
    for name in ("latency", "errors", "requests"):
        explicit = getattr(config, name)
        if explicit is not None:
            metrics[name] = explicit
    return metrics


def needs_load_balancer(config: QualityConfig) -> bool:
    """Whether the ALB defaults apply (then the target group's load balancer is looked up)."""
    return bool(config.target_group_arn) and (config.latency is None or config.errors is None)
