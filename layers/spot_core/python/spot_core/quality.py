"""Quality maths: how much worse the service got compared with its baseline.

score = 0.7 x latency change (%) + 0.3 x error-rate change (%), each change clamped at
zero so an improvement in one cannot hide a degradation in the other. The error-rate
change is relative to max(baseline rate, 1 %): going from 0 % to 0.5 % errors counts as
a 50 % change, not an infinite one.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

LATENCY_WEIGHT = 0.7
ERROR_WEIGHT = 0.3
ERROR_RATE_FLOOR = 0.01


class QualitySample(BaseModel):
    """Quality over one window: mean latency (seconds), error rate (0..1), request count."""

    latency: float | None = None
    error_rate: float | None = None
    requests: float = 0.0
    datapoints: int = 0
    start: str | None = None
    end: str | None = None


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
    reasons: list[str] = Field(default_factory=list)


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
) -> GateResult:
    """Pass only when the score is within the threshold, no alarm fires and every
    replacement of the migration is still running and healthy."""
    lat = latency_change_pct(baseline.latency, current.latency)
    err = error_rate_change_pct(baseline.error_rate, current.error_rate)
    score = round(degradation_score(lat, err), 3)  # decide on the score that is reported
    alarms = sorted(alarms_in_alarm or [])
    unhealthy = sorted(unhealthy_instances or [])
    reasons = []
    if score > threshold_pct:
        reasons.append(f"degradation score {score:.2f} % exceeds the {threshold_pct:g} % threshold")
    if alarms:
        reasons.append(f"alarm(s) in ALARM: {', '.join(alarms)}")
    if unhealthy:
        reasons.append(f"{len(unhealthy)} Spot replacement(s) not running or not healthy")
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
        reasons=reasons,
    )
