"""The rules of returning on-demand fallbacks to Spot (domain/fallbacks.py)."""

from datetime import UTC, datetime, timedelta

from spot_core.domain.carry import MODE_TAG
from spot_core.domain.fallbacks import (
    HELD,
    NOT_FOLLOWED,
    NOT_MIGRATED,
    STATEFUL,
    TOO_YOUNG,
    is_fallback,
    is_stateful,
    price_cap,
    return_pools,
    why_left_alone,
)
from spot_core.domain.instances import Instance
from spot_core.domain.interruptions import launch_subnets
from spot_core.domain.locks import InstanceLock
from spot_core.domain.plan import InstanceRecord
from spot_core.domain.pricing import SpotPriceStat
from spot_core.domain.rehome import Rehome
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


def test_an_instance_moved_with_its_disks_is_never_returned():
    """A stateful move's on-demand successor (a re-home found no Spot capacity in the AZ) holds the real
    volumes: whether its mode tag or its record says so, it is left alone, however old."""
    stateful_tags = {MANAGED_TAG: "true", SUCCEEDS_TAG: "i-spot", MODE_TAG: "stateful"}
    assert why_left_alone(fallback(tags=stateful_tags), record(), {}, NOW, 3600) == STATEFUL
    assert why_left_alone(fallback(tags={**stateful_tags, MODE_TAG: " Stateful "}), record(), {}, NOW, 3600) == STATEFUL
    assert why_left_alone(fallback(tags=stateful_tags), None, {}, NOW, 3600) == STATEFUL
    assert why_left_alone(fallback(), record(mode="stateful"), {}, NOW, 3600) == STATEFUL
    rehomed = record(rehome=Rehome.begin("i-spot", NOW - timedelta(hours=2)))
    assert why_left_alone(fallback(), rehomed, {}, NOW, 3600) == STATEFUL
    assert why_left_alone(fallback(launch_time=NOW), record(mode="stateful"), {}, NOW, 3600) == STATEFUL
    assert why_left_alone(fallback(), record(mode="stateless"), {}, NOW, 3600) is None
    assert why_left_alone(fallback(tags={**stateful_tags, MODE_TAG: "stateless"}), record(), {}, NOW, 3600) is None
    assert is_stateful(fallback(tags=stateful_tags), None) and not is_stateful(fallback(), record())


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
