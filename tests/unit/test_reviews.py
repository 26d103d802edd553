"""The three review agents: performance, capacity, application."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spot_core.domain.plan import AgentVerdict, InstanceRecord, Pool, TargetRef
from spot_core.domain.quality import QualitySample
from spot_core.domain.reviews import HOT_CPU_P95, review_application, review_capacity, review_performance

TG = TargetRef(arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/6d0ecf831eec9f09", port=80)
TYPES = ("m5.large", "m5a.large", "m6i.large", "m6a.large", "m7i.large")
VERDICT_KEYS = {"agent", "approved", "confidence", "concerns", "recommendations", "excluded_instance_ids"}
BASELINE = QualitySample(latency=0.12, error_rate=0.002, requests=72_000, datapoints=60)


def rec(n: int, *, workload="stable", p95=40.0, pools=4, name="web", az="us-east-1a", burstable=False,
        target_groups=(TG,), first_type=None) -> InstanceRecord:
    types = list(TYPES[:pools])
    if first_type and types:
        types[0] = first_type
    return InstanceRecord(
        instance_id=f"i-{n:017x}", instance_type="m5.large", availability_zone=az, name=name, eligible=True,
        workload=workload, cpu_p95=p95, burstable=burstable, target_groups=list(target_groups),
        pools=[Pool(instance_type=t, availability_zone=az, spot_hourly=0.03 + 0.001 * i) for i, t in enumerate(types)],
    )


def spread(count: int, **kw) -> list[InstanceRecord]:
    """`count` healthy web instances over three AZs (each with a different first pool)."""
    zones = ("us-east-1a", "us-east-1b", "us-east-1c")
    return [rec(n, az=zones[n % 3], first_type=TYPES[n % len(TYPES)], **kw) for n in range(count)]


def check_shape(verdict: AgentVerdict, agent: str, candidates: list[InstanceRecord]) -> None:
    assert verdict.agent == agent
    assert set(verdict.model_dump()) >= VERDICT_KEYS
    assert 0.0 <= verdict.confidence <= 1.0
    assert verdict.excluded_instance_ids == sorted(set(verdict.excluded_instance_ids))
    assert verdict.excluded_count == len(verdict.excluded_instance_ids)
    assert set(verdict.excluded_instance_ids) <= {r.instance_id for r in candidates}
    if not verdict.approved:
        assert verdict.concerns, "a veto says why"


# --- performance ------------------------------------------------------------------------------


def test_performance_approves_a_healthy_fleet():
    candidates = spread(6)
    verdict = review_performance(candidates)
    check_shape(verdict, "performance", candidates)
    assert verdict.approved and verdict.excluded_instance_ids == [] and verdict.confidence == 1.0
    assert verdict.concerns == []


def test_performance_excludes_burst_workloads():
    candidates = spread(6) + [rec(100, workload="burst", p95=96.0, name="batch-report-1")]
    verdict = review_performance(candidates)
    assert verdict.approved
    assert verdict.excluded_instance_ids == [f"i-{100:017x}"]
    assert any("burst" in c for c in verdict.concerns)


def test_performance_excludes_instances_without_cpu_headroom():
    candidates = spread(5) + [rec(100, p95=HOT_CPU_P95), rec(101, p95=HOT_CPU_P95 - 0.1)]
    verdict = review_performance(candidates)
    assert verdict.excluded_instance_ids == [f"i-{100:017x}"]
    assert any("p95" in c for c in verdict.concerns)


def test_performance_counts_a_hot_burst_instance_once():
    candidates = spread(5) + [rec(100, workload="burst", p95=97.0)]
    verdict = review_performance(candidates)
    assert verdict.excluded_instance_ids == [f"i-{100:017x}"] and verdict.excluded_count == 1
    assert not any("p95" in c for c in verdict.concerns)


def test_performance_recommends_unlimited_credits_for_burstable_types():
    verdict = review_performance(spread(3) + [rec(100, burstable=True)])
    assert verdict.approved
    assert any("burstable" in r for r in verdict.recommendations)


def test_performance_lowers_confidence_without_cpu_history():
    candidates = spread(2) + [rec(100, workload="unknown", p95=None), rec(101, workload="unknown", p95=None)]
    verdict = review_performance(candidates)
    assert verdict.approved
    assert verdict.confidence == pytest.approx(0.75)  # half unknown -> 1 - 0.5 x 0.5
    assert any("2 instance(s) without enough CPU history" in c for c in verdict.concerns)


def test_performance_vetoes_when_half_the_plan_is_unsafe():
    candidates = spread(2) + [rec(100, workload="burst", p95=96), rec(101, workload="burst", p95=96)]
    verdict = review_performance(candidates)
    check_shape(verdict, "performance", candidates)
    assert not verdict.approved
    assert "2 of 4" in verdict.concerns[0]


def test_performance_approves_just_under_half_unsafe():
    candidates = spread(3) + [rec(100, workload="burst", p95=96), rec(101, workload="burst", p95=96)]
    assert review_performance(candidates).approved


def test_performance_on_an_empty_plan():
    verdict = review_performance([])
    assert verdict.approved and verdict.excluded_instance_ids == []


# --- capacity -----------------------------------------------------------------------------------


def test_capacity_approves_a_diverse_fleet():
    candidates = spread(6)
    verdict = review_capacity(candidates)
    check_shape(verdict, "capacity", candidates)
    assert verdict.approved and verdict.excluded_instance_ids == []
    assert verdict.confidence == 1.0
    assert any("L-34B43A08" in r for r in verdict.recommendations)


def test_capacity_excludes_single_pool_instances():
    candidates = spread(5) + [rec(100, pools=1)]
    verdict = review_capacity(candidates)
    assert verdict.approved
    assert verdict.excluded_instance_ids == [f"i-{100:017x}"]
    assert any("single Spot pool" in c for c in verdict.concerns)


def test_capacity_vetoes_when_nothing_has_a_fallback():
    candidates = [rec(n, pools=1) for n in range(3)]
    verdict = review_capacity(candidates)
    check_shape(verdict, "capacity", candidates)
    assert not verdict.approved
    assert "no instance has a Spot pool" in verdict.concerns[0]
    assert verdict.excluded_count == 3


def test_capacity_warns_about_a_single_az():
    candidates = [rec(n, first_type=TYPES[n % 5]) for n in range(4)]
    verdict = review_capacity(candidates)
    assert verdict.approved
    assert any("us-east-1a" in c for c in verdict.concerns)
    assert any("Availability Zones" in r for r in verdict.recommendations)


def test_capacity_small_single_az_fleet_is_not_flagged():
    candidates = [rec(n, first_type=TYPES[n % 5]) for n in range(3)]
    assert not any("AZ" in c for c in review_capacity(candidates).concerns)


def test_capacity_warns_about_pool_concentration():
    # two AZs, every replacement would start in m5.large; 4 of 6 in the same pool
    candidates = [rec(n, az="us-east-1a" if n < 4 else "us-east-1b") for n in range(6)]
    verdict = review_capacity(candidates)
    assert any("share the pool m5.large/us-east-1a" in c for c in verdict.concerns)
    assert any("more instance types" in r for r in verdict.recommendations)


def test_capacity_notes_recently_interrupted_pools():
    candidates = spread(6)
    first = candidates[0].pools[0]
    verdict = review_capacity(candidates, recently_interrupted={(first.instance_type, first.availability_zone)})
    assert verdict.approved
    assert any("interrupted recently" in c for c in verdict.concerns)


def test_capacity_confidence_follows_pool_diversity():
    assert review_capacity(spread(3, pools=2)).confidence == pytest.approx(0.75)
    assert review_capacity(spread(3, pools=3)).confidence == pytest.approx(0.88)


def test_capacity_on_an_empty_plan():
    verdict = review_capacity([])
    assert verdict.approved and verdict.excluded_instance_ids == []


# --- application ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["postgres-1", "web-db-2", "db", "redis", "kafka-broker-1", "mysql-primary", "etcd-0",
                                  "orders.cassandra.3", "zookeeper_2", "DATABASE-main", "elastic-1", "mongo-1"])
def test_application_excludes_instances_that_look_stateful(name):
    candidates = spread(4) + [rec(100, name=name, target_groups=())]
    verdict = review_application(candidates, BASELINE, quality_configured=True)
    assert verdict.excluded_instance_ids == [f"i-{100:017x}"], name
    assert any("stateful" in c for c in verdict.concerns)


@pytest.mark.parametrize("name", ["mongodb-1", "postgresql-primary", "elasticsearch-data-0"])
def test_application_recognises_the_full_product_names(name):
    """The name list has 'mongo', 'postgres' and 'elastic', but the usual host names
    are mongodb-*, postgresql-*, elasticsearch-*: they must be caught too."""
    candidates = spread(4) + [rec(100, name=name, target_groups=())]
    verdict = review_application(candidates, BASELINE, quality_configured=True)
    assert verdict.excluded_instance_ids == [f"i-{100:017x}"], name


@pytest.mark.parametrize("name", ["web", "dashboard", "api-gateway", "feedback-ui", "adbroker", "web-1", None])
def test_application_keeps_ordinary_names(name):
    verdict = review_application(spread(4) + [rec(100, name=name)], BASELINE, quality_configured=True)
    assert verdict.excluded_instance_ids == []
    assert verdict.approved and verdict.confidence == 0.9


def test_application_flags_instances_outside_any_target_group():
    verdict = review_application(spread(4) + [rec(100, target_groups=())], BASELINE, quality_configured=True)
    assert verdict.approved and verdict.excluded_instance_ids == []
    assert any("1 instance(s) are in no target group" in c for c in verdict.concerns)
    assert any("load balancer" in r for r in verdict.recommendations)


def test_application_does_not_count_excluded_stateful_instances_as_standalone():
    verdict = review_application(spread(4) + [rec(100, name="postgres-1", target_groups=())], BASELINE, True)
    assert not any("no target group" in c for c in verdict.concerns)


@pytest.mark.parametrize("baseline", [None, QualitySample(datapoints=0)])
def test_application_vetoes_blind_gates(baseline):
    candidates = spread(4)
    verdict = review_application(candidates, baseline, quality_configured=True)
    check_shape(verdict, "application", candidates)
    assert not verdict.approved
    assert "baseline" in verdict.concerns[0]
    assert verdict.confidence == 0.3


def test_application_without_quality_metrics_approves_with_less_confidence():
    verdict = review_application(spread(4), None, quality_configured=False)
    assert verdict.approved and verdict.confidence == 0.6
    assert any("no quality metrics configured" in c for c in verdict.concerns)


def test_application_vetoes_a_mostly_stateful_plan():
    candidates = [rec(0), rec(1, name="postgres-1"), rec(2, name="redis-2")]
    verdict = review_application(candidates, BASELINE, True)
    assert not verdict.approved
    assert "2 of 3" in verdict.concerns[0]


# --- any plan -----------------------------------------------------------------------------------------


records = st.builds(
    lambda n, workload, p95, pools, name, burstable, in_tg, az: rec(
        n, workload=workload, p95=p95, pools=pools, name=name, burstable=burstable,
        target_groups=(TG,) if in_tg else (), az=az),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from(["stable", "variable", "burst", "unknown"]),
    st.none() | st.floats(min_value=0, max_value=100, allow_nan=False),
    st.integers(min_value=0, max_value=5),
    st.sampled_from(["web", "api", "postgres-1", "redis", "worker", None]),
    st.booleans(), st.booleans(),
    st.sampled_from(["us-east-1a", "us-east-1b", "us-east-1c"]),
)


@given(st.lists(records, max_size=40, unique_by=lambda r: r.instance_id), st.booleans(), st.booleans())
@settings(deadline=None)
def test_every_agent_returns_a_consistent_verdict(candidates, quality_configured, has_baseline):
    baseline = BASELINE if has_baseline else None
    verdicts = [review_performance(candidates), review_capacity(candidates),
                review_application(candidates, baseline, quality_configured)]
    for verdict, agent in zip(verdicts, ("performance", "capacity", "application"), strict=True):
        check_shape(verdict, agent, candidates)
        if verdict.approved and candidates:
            assert verdict.excluded_count / len(candidates) < 0.5
