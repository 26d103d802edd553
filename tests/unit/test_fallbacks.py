"""The rules of returning on-demand fallbacks to Spot (domain/fallbacks.py)."""

from datetime import UTC, datetime, timedelta

from spot_core.domain.fallbacks import (
    HELD,
    NOT_FOLLOWED,
    NOT_MIGRATED,
    TOO_YOUNG,
    is_fallback,
    launch_subnets,
    price_cap,
    return_pools,
    why_left_alone,
)
from spot_core.domain.instances import Instance
from spot_core.domain.locks import InstanceLock
from spot_core.domain.plan import InstanceRecord
from spot_core.domain.pricing import SpotPriceStat
from spot_core.domain.spot_options import SpotTerms
from spot_core.domain.tags import MANAGED_TAG, SUCCEEDS_TAG

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
ZONES = ("us-east-1a", "us-east-1b")
PRICES = {(t, z): SpotPriceStat(t, z, median=p, p90=p, maximum=p, samples=1)
          for t, p in (("m5.large", 0.030), ("m5a.large", 0.028), ("m6i.large", 0.05)) for z in ZONES}


def fallback(**changes) -> Instance:
    values = {"instance_id": "i-fallback", "instance_type": "m5.large", "availability_zone": "us-east-1a",
              "state": "running", "subnet_id": "subnet-a", "tags": {MANAGED_TAG: "true", SUCCEEDS_TAG: "i-spot"},
              "launch_time": NOW - timedelta(hours=2), **changes}
    return Instance(**values)


def record(**changes) -> InstanceRecord:
    values = {"instance_id": "i-original", "instance_type": "m5.large", "availability_zone": "us-east-1a",
              "eligible": True, "status": "migrated", "replacement_id": "i-fallback",
              "replacement_market": "on-demand", "on_demand_hourly": 0.096, **changes}
    return InstanceRecord(**values)


def test_a_fallback_is_a_running_managed_on_demand_successor():
    assert is_fallback(fallback())
    assert not is_fallback(fallback(lifecycle="spot"))
    assert not is_fallback(fallback(state="stopped"))
    assert not is_fallback(fallback(tags={MANAGED_TAG: "true"}))


def test_why_a_fallback_is_left_alone():
    assert why_left_alone(fallback(), record(), {}, NOW, 3600) is None
    assert why_left_alone(fallback(launch_time=NOW - timedelta(minutes=30)), record(), {}, NOW, 3600) == TOO_YOUNG
    assert why_left_alone(fallback(), None, {}, NOW, 3600) == NOT_FOLLOWED
    assert why_left_alone(fallback(), record(replacement_market="spot"), {}, NOW, 3600) == NOT_FOLLOWED
    assert why_left_alone(fallback(), record(replacement_id="i-other"), {}, NOW, 3600) == NOT_FOLLOWED
    assert why_left_alone(fallback(), record(status="rolled_back"), {}, NOW, 3600) == NOT_MIGRATED
    assert why_left_alone(fallback(), record(reverted_by="mig-r"), {}, NOW, 3600) == NOT_MIGRATED
    for held in ("i-fallback", "i-original"):
        locks = {held: InstanceLock(instance_id=held, migration_id="mig-2")}
        assert why_left_alone(fallback(), record(), locks, NOW, 3600) == HELD
    cooling = {"i-original": InstanceLock(instance_id="i-original", cooldown_until=NOW + timedelta(hours=1))}
    assert why_left_alone(fallback(), record(), cooling, NOW, 3600) is None  # a cooldown holds no instance


def test_healthy_pools_are_below_the_cap_not_interrupted_recently_own_type_first():
    pools = return_pools("m5.large", ZONES, PRICES, {("m5.large", "us-east-1a")}, cap=0.04)
    assert [str(p) for p in pools] == ["m5.large/us-east-1b", "m5a.large/us-east-1a", "m5a.large/us-east-1b"]
    assert return_pools("m5.large", ZONES, PRICES, set(), cap=0.028) == []  # below the cap, not at it
    assert return_pools("m5.large", ZONES, PRICES, set(), cap=None) == []


def test_the_cap_is_the_max_price_else_the_on_demand_price():
    assert price_cap(SpotTerms(max_price=0.05), record()) == 0.05
    assert price_cap(SpotTerms(), record()) == 0.096


def test_launch_subnets_keep_the_fallbacks_own_subnet_in_its_zone():
    vpc = {"us-east-1a": "subnet-first", "us-east-1b": "subnet-b"}
    assert launch_subnets(fallback(), vpc) == {"us-east-1a": "subnet-a", "us-east-1b": "subnet-b"}
