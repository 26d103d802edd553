"""The analysis of Auto Scaling groups: found by the opt-in tag or by name, planned with a policy
and savings, excluded with a reason, held by one migration at a time; the summary counts them."""

from __future__ import annotations

import pytest
from builders import serving
from fakes import FakeOnDemandPrices, FakeSpotPrices, Ports

from spot_core.domain.errors import InvalidMigrationRequest
from spot_core.domain.request import MigrationRequest
from spot_core.domain.tags import OPT_IN_TAG
from spot_core.services.analyze import Analyze

ZONES = ("us-east-1a", "us-east-1b")
OPTED_IN = {OPT_IN_TAG: "true"}
EQUIVALENTS = ("m5.large", "m5a.large", "m6i.large", "m5n.large", "m6a.large", "m7i.large", "m5d.large")


def analyse(p: Ports, request: dict | None = None, mid: str = "mig-1") -> dict:
    service = Analyze(p.fleet, p.load_balancer, p.metrics, p.on_demand, p.spot_prices, p.migrations, p.plans,
                      p.pool_memory, p.locks, p.clock, p.autoscaling)
    summary = service.run(mid, MigrationRequest.model_validate(request or {}))
    return {"summary": summary, "groups": {g.name: g for g in p.plans.groups(mid)}}


@pytest.fixture
def priced(p):
    p.on_demand = FakeOnDemandPrices({"m5.large": 0.096})
    p.spot_prices = FakeSpotPrices({(t, z): 0.035 for t in EQUIVALENTS for z in ZONES})
    return p


def test_an_opted_in_group_is_planned_with_a_diversified_policy_and_its_savings(priced):
    p = priced
    assert p.autoscaling is not None
    p.autoscaling.add("web", 10, tags=OPTED_IN, zones=ZONES)
    p.autoscaling.add("other", 4, zones=ZONES)  # no opt-in tag: not selected by tags at all

    plan = analyse(p, {"asg": {"on_demand_base": 2}})

    web = plan["groups"]["web"]
    assert list(plan["groups"]) == ["web"] and web.eligible and web.status == "planned"
    assert web.policy is not None and web.policy.instance_types[0] == "m5.large"
    assert len(web.policy.instance_types) >= 6 and web.policy.on_demand_base == 2
    assert web.monthly_savings > 0 and web.config.launch_template == {"LaunchTemplateId": "lt-web",
                                                                      "Version": "$Default"}
    summary = plan["summary"]
    assert (summary.candidates, summary.groups, summary.monthly_savings) == (1, 1, web.monthly_savings)


def test_named_groups_are_taken_and_no_instance_by_tag(priced):
    p = priced
    assert p.autoscaling is not None
    p.autoscaling.add("web", 4, tags=OPTED_IN, zones=ZONES)
    p.autoscaling.add("batch", 4, zones=ZONES)
    serving(p, 2, tags=OPTED_IN)

    plan = analyse(p, {"selector": {"auto_scaling_groups": ["web", "batch"]}})

    assert plan["groups"]["web"].eligible
    assert (plan["groups"]["batch"].eligible, plan["groups"]["batch"].exclusion_reason) == (False, "not_opted_in")
    assert p.plans.records("mig-1") == []  # naming groups takes no instance by its tags
    assert plan["summary"].groups_excluded == 1


def test_a_group_named_that_does_not_exist_is_a_clear_error_and_nothing_is_written(priced):
    p = priced
    assert p.autoscaling is not None
    p.autoscaling.add("web", 4, tags=OPTED_IN, zones=ZONES)

    with pytest.raises(InvalidMigrationRequest, match="no such Auto Scaling group: gone"):
        analyse(p, {"selector": {"auto_scaling_groups": ["web", "gone"]}})

    assert p.migrations.items == {} and p.locks.items == {}


def test_an_eks_managed_group_is_excluded_with_its_reason(priced):
    p = priced
    assert p.autoscaling is not None
    p.autoscaling.add("nodes", 4, tags={**OPTED_IN, "eks:cluster-name": "prod", "eks:nodegroup-name": "ng-1"},
                      zones=ZONES)

    group = analyse(p)["groups"]["nodes"]

    assert (group.eligible, group.exclusion_reason, group.policy) == (False, "managed_by_eks", None)


def test_two_migrations_of_one_group_the_second_is_refused_it(priced):
    p = priced
    assert p.autoscaling is not None
    p.autoscaling.add("web", 4, tags=OPTED_IN, zones=ZONES)

    first = analyse(p, mid="mig-1")["groups"]["web"]
    second = analyse(p, mid="mig-2")["groups"]["web"]

    assert first.eligible and not second.eligible
    assert second.exclusion_reason == "held_by_migration" and "mig-1" in (second.exclusion_detail or "")
