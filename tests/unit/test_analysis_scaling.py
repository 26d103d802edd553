"""The analysis of a fleet is linear in its size: per-type and per-pool work (equivalent types,
priced and ordered pools) is done once per distinct type or (type, AZ), never once per instance.
Counted, not timed (services/analyze.py with domain/pools.py and domain/instance_types.py, on the
in-memory fakes)."""

from __future__ import annotations

import itertools

import pytest
from fakes import FakeOnDemandPrices, FakeSpotPrices, Ports, ports

from spot_core.domain import instance_types, pools
from spot_core.domain.request import MigrationRequest
from spot_core.domain.tags import OPT_IN_TAG
from spot_core.services.analyze import Analyze

TYPES = ("m5.large", "c5.xlarge", "r5.large")
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
INSTANCES = 900

PROBED = {"mode": "stateless", "health_probe": {"command": "curl -fsS localhost/health"}}  # in no target group


def fleet_of_few_types() -> Ports:
    p = ports()
    for n, (instance_type, zone) in zip(range(INSTANCES), itertools.cycle(itertools.product(TYPES, ZONES))):
        instance = p.fleet.add(instance_type, zone, tags={OPT_IN_TAG: "true", "Name": f"web-{n}"})
        p.metrics.cpu[instance.instance_id] = [30.0 + n % 5] * 24
    movable = {t for instance_type in TYPES for t in pools.candidate_types(instance_type)}
    p.on_demand = FakeOnDemandPrices(dict.fromkeys(TYPES, 0.1))
    p.spot_prices = FakeSpotPrices({(t, z): 0.03 + 0.001 * i for i, t in enumerate(sorted(movable)) for z in ZONES})
    return p


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Every pool list worked out (domain.pools.migration_pools), and every equivalent-types scan
    of the catalog (the cache of domain.instance_types._equivalents, emptied first)."""
    seen: dict[str, list] = {"pools": []}
    real = pools.migration_pools

    def migration_pools(instance_type: str, zone: str, *args: object, **kwargs: object) -> list:
        seen["pools"].append((instance_type, zone))
        return real(instance_type, zone, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pools, "migration_pools", migration_pools)
    instance_types._equivalents.cache_clear()
    yield seen
    instance_types._equivalents.cache_clear()


def test_a_fleet_of_many_instances_and_few_types_works_out_each_pool_list_once(counted):
    p = fleet_of_few_types()
    service = Analyze(p.fleet, p.load_balancer, p.metrics, p.on_demand, p.spot_prices, p.migrations, p.plans,
                      p.pool_memory, p.locks, p.clock, p.autoscaling)

    summary = service.run("mig-1", MigrationRequest.model_validate(PROBED))

    assert summary.analysed == INSTANCES and summary.candidates == INSTANCES
    assert sorted(counted["pools"]) == sorted(itertools.product(TYPES, ZONES))  # 9, not 900
    assert instance_types._equivalents.cache_info().misses == len(TYPES)  # one catalog scan per type
    prices = p.spot_prices.statistics({t for t, _ in p.spot_prices.prices}, p.clock.now())
    for record in p.plans.records("mig-1"):  # each instance still gets the pools of its own type and AZ
        assert record.pools == pools.migration_pools(record.instance_type, record.availability_zone, prices)
        assert record.pools[0].key == (record.instance_type, record.availability_zone)
