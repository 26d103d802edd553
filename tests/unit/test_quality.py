"""Quality maths: latency and error-rate changes, the degradation score, the gate."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spot_core.domain.quality import (
    ERROR_RATE_FLOOR,
    ERROR_WEIGHT,
    LATENCY_WEIGHT,
    PROBE_DETAIL_CHARS,
    QualitySample,
    degradation_score,
    error_rate_change_pct,
    evaluate_gate,
    latency_change_pct,
)

changes = st.floats(min_value=-100, max_value=10_000, allow_nan=False)
optional_changes = st.none() | changes


def sample(latency=0.120, error_rate=0.002, requests=72_000.0, datapoints=60) -> QualitySample:
    return QualitySample(latency=latency, error_rate=error_rate, requests=requests, datapoints=datapoints)


# --- changes ------------------------------------------------------------------------------------


def test_latency_change():
    assert latency_change_pct(0.100, 0.150) == pytest.approx(50.0)
    assert latency_change_pct(0.200, 0.100) == pytest.approx(-50.0)
    assert latency_change_pct(0.120, 0.120) == 0.0


@pytest.mark.parametrize("baseline, current", [(None, 0.1), (0.1, None), (0.0, 0.1), (-1.0, 0.1)])
def test_latency_change_without_a_usable_baseline(baseline, current):
    assert latency_change_pct(baseline, current) is None


def test_error_rate_change_is_relative_to_the_baseline_above_the_floor():
    assert error_rate_change_pct(0.02, 0.03) == pytest.approx(50.0)
    assert error_rate_change_pct(0.05, 0.025) == pytest.approx(-50.0)


def test_error_rate_floor_zero_baseline():
    """0 % -> 0.5 % errors is a 50 % change (relative to the 1 % floor), not infinite."""
    assert error_rate_change_pct(0.0, 0.005) == pytest.approx(50.0)
    assert error_rate_change_pct(0.0, 0.01) == pytest.approx(100.0)


def test_error_rate_floor_small_baseline():
    assert error_rate_change_pct(0.002, 0.007) == pytest.approx(50.0)  # 0.5 points over the 1 % floor
    assert error_rate_change_pct(ERROR_RATE_FLOOR, 0.015) == pytest.approx(50.0)


def test_error_rate_change_without_data():
    assert error_rate_change_pct(None, 0.01) is None
    assert error_rate_change_pct(0.01, None) is None


@given(st.floats(min_value=0, max_value=1, allow_nan=False), st.floats(min_value=0, max_value=1, allow_nan=False))
@settings(deadline=None)
def test_error_rate_change_is_finite_and_bounded_by_the_floor(baseline, current):
    change = error_rate_change_pct(baseline, current)
    assert abs(change) <= 100.0 / ERROR_RATE_FLOOR + 1e-9


# --- the score ------------------------------------------------------------------------------------


def test_score_weights():
    assert degradation_score(10.0, 0.0) == pytest.approx(7.0)
    assert degradation_score(0.0, 10.0) == pytest.approx(3.0)
    assert degradation_score(10.0, 10.0) == pytest.approx(10.0)
    assert pytest.approx(1.0) == LATENCY_WEIGHT + ERROR_WEIGHT


def test_missing_components_count_as_no_change():
    assert degradation_score(None, None) == 0.0
    assert degradation_score(None, 20.0) == pytest.approx(6.0)
    assert degradation_score(20.0, None) == pytest.approx(14.0)


def test_an_improvement_cannot_hide_a_degradation():
    """Latency 50 % better, errors 30 % worse: the score is the error part alone."""
    assert degradation_score(-50.0, 30.0) == pytest.approx(ERROR_WEIGHT * 30.0)
    assert degradation_score(40.0, -100.0) == pytest.approx(LATENCY_WEIGHT * 40.0)


@given(optional_changes, optional_changes)
@settings(deadline=None)
def test_score_is_never_below_either_degradation(latency, errors):
    score = degradation_score(latency, errors)
    assert score >= 0.0
    assert score >= LATENCY_WEIGHT * max(latency or 0.0, 0.0) - 1e-9
    assert score >= ERROR_WEIGHT * max(errors or 0.0, 0.0) - 1e-9


@given(changes, changes, st.floats(min_value=-100, max_value=0, allow_nan=False))
@settings(deadline=None)
def test_an_improvement_never_lowers_the_score(latency, errors, improvement):
    """Adding an improvement to one component leaves the score of the other untouched."""
    assert degradation_score(improvement, errors) == pytest.approx(degradation_score(None, errors))
    assert degradation_score(latency, improvement) == pytest.approx(degradation_score(latency, None))


@given(changes, changes, st.floats(min_value=0, max_value=1000, allow_nan=False))
@settings(deadline=None)
def test_score_is_monotonic(latency, errors, extra):
    assert degradation_score(latency + extra, errors) >= degradation_score(latency, errors) - 1e-9
    assert degradation_score(latency, errors + extra) >= degradation_score(latency, errors) - 1e-9


# --- the gate ------------------------------------------------------------------------------------


def test_gate_passes_on_an_unchanged_service():
    result = evaluate_gate(0, sample(), sample(), 5.0)
    assert result.passed and result.score == 0.0 and result.reasons == []
    assert result.latency_change_pct == 0.0 and result.error_rate_change_pct == 0.0


def test_gate_fails_on_latency_degradation():
    result = evaluate_gate(1, sample(latency=0.100), sample(latency=0.120), 5.0)  # +20 % -> score 14
    assert not result.passed
    assert result.score == pytest.approx(14.0)
    assert result.latency_change_pct == pytest.approx(20.0)
    assert any("exceeds the 5 % threshold" in r for r in result.reasons)
    assert result.wave == 1 and result.threshold_pct == 5.0


def test_gate_fails_on_error_rate_from_zero():
    """From 0 % to 2 % errors: +200 % by the floor, score 60."""
    result = evaluate_gate(0, sample(error_rate=0.0), sample(error_rate=0.02), 5.0)
    assert not result.passed
    assert result.error_rate_change_pct == pytest.approx(200.0)
    assert result.score == pytest.approx(60.0)


def test_gate_tolerates_small_error_noise_near_zero():
    """0.1 % -> 0.2 % errors is 10 % of the floor: score 3, under a 5 % threshold."""
    result = evaluate_gate(0, sample(error_rate=0.001), sample(error_rate=0.002), 5.0)
    assert result.passed
    assert result.score == pytest.approx(3.0)


def test_gate_improvement_does_not_offset_degradation():
    result = evaluate_gate(0, sample(latency=0.100, error_rate=0.02), sample(latency=0.050, error_rate=0.03), 10.0)
    assert result.score == pytest.approx(15.0)  # 0.3 x 50 %; the faster latency does not count
    assert not result.passed


@pytest.mark.parametrize(
    "current_latency, threshold, passed",
    [
        (1.25, 17.5, True),    # score exactly 17.5 == threshold: within
        (1.25, 17.49, False),  # just over
        (1.25, 17.51, True),
        (1.0, 0.001, True),    # no change passes any threshold
    ],
)
def test_gate_threshold_boundary(current_latency, threshold, passed):
    baseline, current = sample(latency=1.0, error_rate=0.0), sample(latency=current_latency, error_rate=0.0)
    result = evaluate_gate(0, baseline, current, threshold)
    assert result.passed is passed


@given(st.floats(min_value=0.01, max_value=10, allow_nan=False),
       st.floats(min_value=0.01, max_value=10, allow_nan=False),
       st.floats(min_value=0, max_value=0.5, allow_nan=False),
       st.floats(min_value=0, max_value=0.5, allow_nan=False),
       st.data())
@settings(deadline=None)
def test_gate_passes_exactly_when_the_reported_score_is_within_the_threshold(
    base_latency, latency, base_errors, errors, data
):
    """The decision and the reported score agree, also at the boundary (threshold == score)."""
    base, current = sample(latency=base_latency, error_rate=base_errors), sample(latency=latency, error_rate=errors)
    reported = evaluate_gate(0, base, current, 100.0).score
    candidates = [t for t in (reported, reported * 0.99, reported * 1.01) if 0 < t <= 100]
    threshold = data.draw(st.sampled_from(candidates) if candidates else st.floats(min_value=0.001, max_value=100))
    result = evaluate_gate(0, base, current, threshold)
    assert result.score == reported
    assert result.passed is (reported <= threshold), (reported, threshold, result.reasons)


def test_gate_decision_agrees_with_the_reported_score():
    """+10 % latency under a 7 % threshold: the gate reports score 7.0 and must not
    then fail with 'degradation score 7.00 % exceeds the 7 % threshold' because
    100 x (1.1 - 1.0) / 1.0 is 10.000000000000009 in floating point."""
    result = evaluate_gate(0, sample(latency=1.0, error_rate=0.0), sample(latency=1.1, error_rate=0.0), 7.0)
    assert result.score == 7.0
    assert result.passed, result.reasons


def test_gate_fails_on_alarms_even_without_degradation():
    result = evaluate_gate(2, sample(), sample(), 5.0, alarms_in_alarm=["web-alb-p99-latency", "web-alb-5xx-rate"])
    assert not result.passed
    assert result.alarms_in_alarm == ["web-alb-5xx-rate", "web-alb-p99-latency"]
    assert any("web-alb-5xx-rate" in r and "web-alb-p99-latency" in r for r in result.reasons)


def test_gate_fails_on_unhealthy_replacements():
    unhealthy = ["i-0fedcba9876543210", "i-0123456789abcdef0"]
    result = evaluate_gate(0, sample(), sample(), 5.0, unhealthy_instances=unhealthy)
    assert not result.passed
    assert result.unhealthy_instances == ["i-0123456789abcdef0", "i-0fedcba9876543210"]
    assert any("2 Spot replacement(s)" in r for r in result.reasons)


def test_gate_fails_on_failed_probes_naming_a_few_with_why_trimmed():
    failed = {f"i-0{n:016x}": ("Failed (exit 1)" if n else "x" * 500) for n in range(5)}
    result = evaluate_gate(0, sample(), sample(), 5.0, failed_probes=failed)
    assert not result.passed and result.failed_probes == sorted(failed)
    [reason] = result.reasons
    first = sorted(failed)[0]
    assert reason.startswith(f"health probe failed on 5 replacement(s): {first} ({'x' * PROBE_DETAIL_CHARS}), ")
    assert reason.endswith(" and 2 more") and "x" * (PROBE_DETAIL_CHARS + 1) not in reason


def test_gate_lists_every_reason():
    result = evaluate_gate(0, sample(latency=0.1), sample(latency=0.2), 5.0, alarms_in_alarm=["a"],
                           unhealthy_instances=["i-0123456789abcdef0"])
    assert len(result.reasons) == 3


def test_gate_without_quality_data_checks_only_alarms_and_health():
    empty = QualitySample()
    result = evaluate_gate(0, empty, empty, 5.0)
    assert result.passed and result.score == 0.0
    assert result.latency_change_pct is None and result.error_rate_change_pct is None


def test_gate_result_is_json_ready():
    result = evaluate_gate(0, sample(), sample(latency=0.2), 5.0)
    dumped = result.model_dump(mode="json")
    assert dumped["baseline"]["latency"] == 0.120 and dumped["current"]["latency"] == 0.2
    assert isinstance(dumped["score"], float)
