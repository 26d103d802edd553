"""Pure analysis rules: eligibility, workload classification, risk, savings and waves."""

import math
import random
import statistics

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from spot_core.domain import analysis
from spot_core.domain.analysis import (
    MIN_CPU_SAMPLES,
    STABLE_SPREAD,
    InstanceFacts,
    build_record,
    classify_workload,
    cpu_statistics,
    exclusion_reason,
    risk_level,
    summarize,
)
from spot_core.domain.plan import InstanceRecord, Pool, TargetRef
from spot_core.domain.pricing import HOURS_PER_MONTH, BillingProduct
from spot_core.domain.tags import STATEFUL_TAG
from spot_core.domain.waves import plan_waves, wave_order

HOURS = 7 * 24
TG = TargetRef(arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/6d0ecf831eec9f09", port=80)


def facts(**overrides) -> InstanceFacts:
    base = {
        "instance_id": "i-0123456789abcdef0", "instance_type": "m5.large", "availability_zone": "us-east-1a",
        "state": "running", "subnet_id": "subnet-0a1b2c3d", "tags": {"Name": "web", "spot-migration:opt-in": "true"},
    }
    return InstanceFacts(**{**base, **overrides})


def pools(*prices: float, itype: str = "m5.large", az: str = "us-east-1a") -> list[Pool]:
    types = [itype, "m5a.large", "m6i.large", "m6a.large", "m7i.large", "m5n.large"]
    return [Pool(instance_type=types[i], availability_zone=az, spot_hourly=p) for i, p in enumerate(prices)]


# --- CPU series --------------------------------------------------------------------------------


def stable_series(level: float = 32.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [round(max(1.0, rng.gauss(level, 2.5)), 2) for _ in range(HOURS)]


def variable_series(seed: int = 2) -> list[float]:
    rng = random.Random(seed)
    return [min(95.0, max(2.0, 40 + 25 * math.sin(h / 24 * 2 * math.pi) + rng.gauss(0, 6))) for h in range(HOURS)]


def burst_series(seed: int = 3) -> list[float]:
    """Idle, with a sharp nightly report at 02:00-04:00."""
    rng = random.Random(seed)
    return [96.0 if h % 24 in (2, 3) else max(0.5, rng.gauss(4, 1.5)) for h in range(HOURS)]


STABLE = stable_series()


# --- exclusion reasons --------------------------------------------------------------------------


def test_a_plain_running_on_demand_linux_instance_may_move():
    assert exclusion_reason(facts()) is None


@pytest.mark.parametrize(
    "overrides, reason, in_detail",
    [
        ({"tags": {STATEFUL_TAG: "true"}}, "stateful", STATEFUL_TAG),
        ({"tags": {STATEFUL_TAG: "True"}}, "stateful", STATEFUL_TAG),
        ({"instance_type": "m5d.large", "instance_storage": True}, "instance_store", "m5d.large"),
        ({"tags": {"aws:autoscaling:groupName": "web-asg"}}, "auto_scaling_group", "web-asg"),
        ({"lifecycle": "spot"}, "already_spot", "Spot"),
        ({"lifecycle": "scheduled"}, "scheduled_instance", "scheduled"),
        ({"state": "stopped"}, "not_running", "stopped"),
        ({"state": "pending"}, "not_running", "pending"),
        ({"state": "stopping"}, "not_running", "stopping"),
        ({"billing": BillingProduct.of("Windows BYOL", "RunInstances:0800", "windows")}, "unsupported_product",
         "Windows BYOL"),
        ({"billing": BillingProduct.of("Ubuntu Pro", "RunInstances:0g00", None)}, "unsupported_product",
         "no Spot price"),
    ],
)
def test_every_exclusion_reason(overrides, reason, in_detail):
    code, detail = exclusion_reason(facts(**overrides))
    assert code == reason
    assert in_detail in detail


@pytest.mark.parametrize("value", ["false", "no", ""])
def test_stateful_tag_must_say_true(value):
    assert exclusion_reason(facts(tags={STATEFUL_TAG: value})) is None


def test_not_running_wins_over_every_other_reason():
    everything = facts(state="stopped", lifecycle="spot", platform="windows", instance_storage=True,
                       tags={STATEFUL_TAG: "true", "aws:autoscaling:groupName": "asg"})
    assert exclusion_reason(everything)[0] == "not_running"


def test_stateful_wins_over_instance_store_and_asg():
    tags = {STATEFUL_TAG: "true", "aws:autoscaling:groupName": "a"}
    assert exclusion_reason(facts(instance_storage=True, tags=tags))[0] == "stateful"


def test_facts_name_comes_from_the_name_tag():
    assert facts().name == "web"
    assert facts(tags={}).name is None


# --- CPU statistics and workload classification -----------------------------------------------------


def test_cpu_statistics_needs_enough_samples():
    assert cpu_statistics([10.0] * (MIN_CPU_SAMPLES - 1)) is None
    assert cpu_statistics([10.0] * MIN_CPU_SAMPLES) == (10.0, 10.0, 10.0)


def test_cpu_statistics_mean_p95_max():
    mean, p95, peak = cpu_statistics([float(v) for v in range(1, 101)])
    assert mean == pytest.approx(50.5)
    assert p95 == 95.0
    assert peak == 100.0


def test_cpu_statistics_p95_is_nearest_rank():
    # 20 samples: the 95th percentile is the 19th smallest.
    values = [float(v) for v in range(20, 0, -1)]
    assert cpu_statistics(values)[1] == 19.0


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=MIN_CPU_SAMPLES, max_size=400))
@settings(deadline=None)
def test_cpu_statistics_are_ordered(values):
    mean, p95, peak = cpu_statistics(values)
    assert min(values) <= p95 <= peak == max(values)
    assert min(values) - 1e-9 <= mean <= peak + 1e-9


def test_classify_stable():
    assert classify_workload(stable_series()) == "stable"


def test_classify_variable():
    assert classify_workload(variable_series()) == "variable"


def test_classify_burst():
    assert classify_workload(burst_series()) == "burst"


def test_classify_without_history_is_unknown():
    assert classify_workload([]) == "unknown"
    assert classify_workload([30.0] * (MIN_CPU_SAMPLES - 1)) == "unknown"


def test_flat_but_hot_is_not_stable():
    """Flat at 90 %: predictable, but no headroom; not 'stable', not 'burst'."""
    assert classify_workload([90.0] * HOURS) == "variable"


def test_busy_with_rare_peaks_is_not_burst():
    """A busy service (median 50 %) with a rare spike is not a mostly-idle burst workload."""
    values = [50.0 + (h % 3) for h in range(HOURS)]
    values[10] = 85.0
    assert classify_workload(values) == "stable"


def test_all_idle_is_stable():
    assert classify_workload([0.0] * 48) == "stable"


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=MIN_CPU_SAMPLES, max_size=400))
@settings(deadline=None)
def test_the_spread_is_decided_as_statistics_pstdev_decides_it(values):
    """The float standard deviation (20x faster) answers as the exact one of statistics.pstdev."""
    mean = cpu_statistics(values)[0]
    exact = (statistics.pstdev(values) / mean if mean > 0 else 0.0) < STABLE_SPREAD
    assert analysis._spread_below(values, mean, STABLE_SPREAD) == exact


def test_a_spread_at_the_limit_is_decided_by_the_exact_standard_deviation(monkeypatch):
    exact = []
    pstdev = statistics.pstdev
    monkeypatch.setattr(analysis.statistics, "pstdev", lambda values: exact.append(values) or pstdev(values))
    at_limit = [13.0, 7.0] * 12  # mean 10, standard deviation 3: a spread of exactly 0.3

    assert not analysis._spread_below(at_limit, 10.0, STABLE_SPREAD)
    assert analysis._spread_below([10.0, 12.0] * 12, 11.0, STABLE_SPREAD)
    assert exact == [at_limit]


@given(st.floats(min_value=0, max_value=74.9, allow_nan=False), st.integers(min_value=MIN_CPU_SAMPLES, max_value=200))
@settings(deadline=None)
def test_any_flat_series_below_75_is_stable(level, n):
    assert classify_workload([level] * n) == "stable"


@given(
    st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), min_size=MIN_CPU_SAMPLES, max_size=200),
    st.lists(st.floats(min_value=80, max_value=100, allow_nan=False), min_size=1, max_size=3),
)
@settings(deadline=None)
def test_mostly_idle_with_a_peak_is_burst(idle, peaks):
    assume(len(peaks) < len(idle))  # the median stays idle
    assert classify_workload(idle + peaks) == "burst"


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=200), st.randoms())
@settings(deadline=None)
def test_classification_ignores_sample_order(values, rng):
    shuffled = list(values)
    rng.shuffle(shuffled)
    assert classify_workload(shuffled) == classify_workload(values)


# --- risk ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "workload, burstable, p95, pool_count, risk",
    [
        ("stable", False, 40.0, 3, "low"),
        ("stable", False, 40.0, 4, "low"),
        ("stable", False, None, 4, "low"),
        ("stable", False, 84.9, 4, "low"),
        ("stable", False, 85.0, 4, "high"),
        ("stable", False, 40.0, 1, "high"),
        ("stable", False, 40.0, 0, "high"),
        ("burst", False, 40.0, 4, "high"),
        ("variable", False, 40.0, 4, "medium"),
        ("unknown", False, None, 4, "medium"),
        ("stable", True, 40.0, 4, "medium"),
        ("stable", False, 40.0, 2, "medium"),
        ("variable", True, 90.0, 1, "high"),
    ],
)
def test_risk_levels(workload, burstable, p95, pool_count, risk):
    assert risk_level(workload, burstable, p95, pool_count) == risk


# --- records and savings -------------------------------------------------------------------------------


def record_for(f: InstanceFacts | None = None, od: float | None = 0.096,
               spot: tuple[float, ...] = (0.0336, 0.035, 0.036),
               cpu: list[float] | None = None, min_savings_pct: float = 10.0) -> InstanceRecord:
    f = f or facts()
    return build_record(f, on_demand_hourly=od, pools=pools(*spot, itype=f.instance_type, az=f.availability_zone),
                        cpu_values=STABLE if cpu is None else cpu, target_groups=[TG], min_savings_pct=min_savings_pct)


def test_eligible_record_has_its_savings():
    record = record_for()
    assert record.eligible and record.status == "planned" and record.exclusion_reason is None
    assert record.on_demand_hourly == 0.096
    assert record.spot_hourly == 0.0336  # the first pool: the original type
    assert record.monthly_on_demand == round(0.096 * HOURS_PER_MONTH, 2)
    assert record.monthly_savings == round((0.096 - 0.0336) * HOURS_PER_MONTH, 2)
    assert record.savings_pct == 65.0
    assert record.workload == "stable" and record.risk == "low"
    assert record.target_groups == [TG]
    assert record.cpu_mean is not None and record.cpu_p95 is not None and record.cpu_max is not None


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"tags": {STATEFUL_TAG: "true"}}, "stateful"),
        ({"instance_storage": True}, "instance_store"),
        ({"tags": {"aws:autoscaling:groupName": "web-asg"}}, "auto_scaling_group"),
        ({"lifecycle": "spot"}, "already_spot"),
        ({"state": "stopped"}, "not_running"),
        ({"billing": BillingProduct.of("Windows with SQL Server Standard", "RunInstances:0006", "windows")},
         "unsupported_product"),
    ],
)
def test_excluded_record_carries_the_reason_and_no_savings(overrides, reason):
    record = record_for(facts(**overrides))
    assert not record.eligible
    assert record.status == "excluded"
    assert record.exclusion_reason == reason
    assert record.exclusion_detail
    assert record.monthly_savings == 0.0 and record.savings_pct == 0.0


def test_no_on_demand_price_excludes():
    record = record_for(od=None)
    assert (record.eligible, record.exclusion_reason) == (False, "no_on_demand_price")


def test_no_spot_pool_excludes():
    record = record_for(spot=())
    assert (record.eligible, record.exclusion_reason) == (False, "no_spot_pool")


def test_insufficient_savings_excludes_but_keeps_the_numbers():
    record = record_for(od=0.1, spot=(0.095, 0.096), min_savings_pct=10)
    assert not record.eligible and record.exclusion_reason == "insufficient_savings"
    assert record.savings_pct == 5.0
    assert "5.0 %" in record.exclusion_detail


def test_spot_dearer_than_on_demand_excludes():
    record = record_for(od=0.1, spot=(0.12, 0.13), min_savings_pct=0)
    assert not record.eligible and record.exclusion_reason == "insufficient_savings"


def test_savings_exactly_at_the_minimum_are_enough():
    record = record_for(od=1.0, spot=(0.75, 0.8), min_savings_pct=25)
    assert record.eligible and record.savings_pct == 25.0


def test_savings_reported_at_the_minimum_are_not_called_below_it():
    """1.0 -> 0.9 is a 10 % saving (10.0 in the record); floating-point noise
    (1.0 - 0.9 = 0.0999...) must not exclude it as 'below the 10 % minimum'."""
    record = record_for(od=1.0, spot=(0.9, 0.95), min_savings_pct=10)
    assert record.savings_pct == 10.0
    assert record.eligible, record.exclusion_detail


def test_record_without_cpu_history_is_unknown_and_medium_risk():
    record = record_for(cpu=[])
    assert record.eligible and record.workload == "unknown" and record.risk == "medium"
    assert record.cpu_mean is None and record.cpu_p95 is None


def test_burst_record_is_high_risk():
    assert record_for(cpu=burst_series()).risk == "high"


def test_single_pool_record_is_high_risk():
    assert record_for(spot=(0.03,)).risk == "high"


# --- summary --------------------------------------------------------------------------------------------


@st.composite
def priced_fleets(draw):
    """A fleet of (on-demand hourly price, number of instances) per type."""
    return draw(st.lists(
        st.tuples(st.floats(min_value=0.01, max_value=30.0, allow_nan=False), st.integers(min_value=1, max_value=8)),
        min_size=1, max_size=10,
    ))


@given(priced_fleets(), st.sampled_from([0.30, 0.50, 0.65, 0.70, 0.90]))
@settings(max_examples=100, deadline=None)
def test_summary_savings_follow_the_prices(fleet, discount):
    """A fleet whose Spot prices are X % below on-demand shows X % savings."""
    records = []
    n = 0
    for od, count in fleet:
        for _ in range(count):
            spot = od * (1 - discount)
            records.append(record_for(facts(instance_id=f"i-{n:017x}"), od=od, spot=(spot, spot * 1.05, spot * 1.1)))
            n += 1
    summary = summarize(records, "catalog")
    assert summary.candidates == summary.analysed == n
    assert summary.savings_pct == pytest.approx(100 * discount, abs=0.1)
    expected_od = sum(od * HOURS_PER_MONTH * count for od, count in fleet)
    assert summary.monthly_on_demand == pytest.approx(expected_od, abs=0.005 * n + 0.01)
    assert summary.monthly_savings == pytest.approx(expected_od * discount, abs=0.005 * n + 0.01)


def test_summary_65_percent_below_on_demand_is_65_percent_savings():
    prices = {"m5.large": 0.096, "m5.xlarge": 0.192, "c5.large": 0.085, "r5.large": 0.126, "c6i.xlarge": 0.17}
    records = [
        record_for(facts(instance_id=f"i-{n:017x}", instance_type=itype), od=od, spot=(od * 0.35, od * 0.4, od * 0.42))
        for n, (itype, od) in enumerate(prices.items())
    ]
    summary = summarize(records, "catalog")
    assert summary.savings_pct == 65.0
    assert summary.monthly_savings == pytest.approx(0.65 * sum(prices.values()) * HOURS_PER_MONTH, abs=0.03)


def test_summary_counts_only_eligible_money_and_groups_exclusions():
    eligible = [record_for(facts(instance_id="i-00000000000000001")),
                record_for(facts(instance_id="i-00000000000000002"), cpu=variable_series())]
    excluded = [record_for(facts(instance_id="i-00000000000000003", tags={STATEFUL_TAG: "true"})),
                record_for(facts(instance_id="i-00000000000000004", tags={STATEFUL_TAG: "true"})),
                record_for(facts(instance_id="i-00000000000000005", lifecycle="spot"))]
    summary = summarize(eligible + excluded, "api")
    assert (summary.analysed, summary.candidates, summary.excluded) == (5, 2, 3)
    assert summary.excluded_by_reason == {"stateful": 2, "already_spot": 1}
    assert summary.by_workload == {"stable": 1, "variable": 1}
    assert summary.by_risk == {"low": 1, "medium": 1}
    assert summary.monthly_on_demand == round(2 * 0.096 * HOURS_PER_MONTH, 2)
    assert summary.pricing_source == "api"


def test_summary_of_nothing():
    summary = summarize([], "catalog")
    assert (summary.analysed, summary.candidates, summary.monthly_savings, summary.savings_pct) == (0, 0, 0.0, 0.0)


# --- wave order and wave sizes -----------------------------------------------------------------------------


def test_wave_order_least_risky_first_then_biggest_savings():
    def rec(iid, risk, savings):
        return InstanceRecord(instance_id=iid, instance_type="m5.large", availability_zone="us-east-1a",
                              eligible=True, risk=risk, monthly_savings=savings)

    records = [rec("i-0000000000000000a", "high", 900), rec("i-0000000000000000b", "low", 10),
               rec("i-0000000000000000c", "medium", 50), rec("i-0000000000000000d", "low", 40),
               rec("i-0000000000000000e", "low", 40)]
    assert [r.instance_id[-1] for r in wave_order(records)] == ["d", "e", "b", "c", "a"]


@pytest.mark.parametrize(
    "count, cumulative",
    [(0, []), (1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (8, [1, 4, 8]), (10, [1, 5, 10]), (1000, [100, 500, 1000])],
)
def test_default_waves(count, cumulative):
    waves = plan_waves(count, [10, 50, 100], [300, 600, 900])
    assert [w.cumulative for w in waves] == cumulative


def test_tiny_fleet_drops_empty_waves_and_keeps_indices_contiguous():
    waves = plan_waves(1, [10, 50, 100], [300, 600, 900])
    assert [(w.index, w.percent, w.bake_seconds, w.target_count, w.cumulative) for w in waves] == [(0, 10, 300, 1, 1)]
    waves = plan_waves(2, [10, 50, 100], [300, 600, 900])
    assert [(w.index, w.percent, w.bake_seconds, w.target_count) for w in waves] == [(0, 10, 300, 1), (1, 100, 900, 1)]


def test_exact_percentages_are_not_rounded_up():
    waves = plan_waves(20, [10, 50, 100], [1, 2, 3])
    assert [w.cumulative for w in waves] == [2, 10, 20]
    waves = plan_waves(3, [100 / 3, 200 / 3, 100], [1, 2, 3])
    assert [w.cumulative for w in waves] == [1, 2, 3]


@st.composite
def wave_plans(draw):
    inner = draw(st.lists(st.floats(min_value=0.001, max_value=99.999, allow_nan=False), max_size=9, unique=True))
    percents = sorted(inner) + [100.0]
    bakes = draw(st.lists(st.integers(min_value=0, max_value=86_400), min_size=len(percents), max_size=len(percents)))
    return percents, bakes


@given(st.integers(min_value=0, max_value=20_000), wave_plans())
@settings(max_examples=300, deadline=None)
def test_plan_waves_properties(candidates, plan):
    percents, bakes = plan
    waves = plan_waves(candidates, percents, bakes)
    if candidates == 0:
        assert waves == []
        return
    assert waves, "a non-empty plan has at least one wave"
    assert sum(w.target_count for w in waves) == candidates
    assert all(w.target_count >= 1 for w in waves)
    assert [w.index for w in waves] == list(range(len(waves)))
    cumulative = [w.cumulative for w in waves]
    assert all(b > a for a, b in zip(cumulative, cumulative[1:], strict=False))
    assert cumulative[-1] == candidates
    running = 0
    bake_of = dict(zip(percents, bakes, strict=True))
    for w in waves:
        running += w.target_count
        assert w.cumulative == running
        assert w.bake_seconds == bake_of[w.percent]
        # a wave covers at least its share of the plan (never less than requested)
        assert w.cumulative >= candidates * w.percent / 100.0 - 1e-6
