"""Where a replacement may run: the one ordering of Spot pools.

A pool is an instance type in an Availability Zone. Candidates are the original type and
its equivalents (same architecture and vCPUs, at least the memory); the order is: pools
interrupted recently last, then the preferred type (the original's, whose performance is
known) first, then the cheapest.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from .instance_types import equivalent_types
from .plan import Pool
from .pricing import SpotPriceStat
from .spot_options import within_max_price

MIGRATION_POOLS = 4  # pools a migration's replacement may try, in the original's AZ
PoolKey = tuple[str, str]


def candidate_types(instance_type: str) -> list[str]:
    """The original type first, then its equivalents, best first."""
    return [instance_type, *equivalent_types(instance_type)]


def priced_pools(types: Iterable[str], zones: Iterable[str], prices: Mapping[PoolKey, SpotPriceStat],
                 exclude: Collection[PoolKey] = ()) -> list[Pool]:
    """Every (type, zone) with a Spot price, each priced at its median."""
    zones = list(zones)
    return [
        Pool(instance_type=t, availability_zone=z, spot_hourly=round(prices[(t, z)].median, 5))
        for t in types for z in zones
        if (t, z) in prices and (t, z) not in exclude
    ]


def order_pools(pools: Iterable[Pool], *, avoid: Collection[PoolKey] = (), prefer_type: str | None = None,
                limit: int | None = None) -> list[Pool]:
    def key(pool: Pool) -> tuple[bool, bool, float, str, str]:
        return (pool.key in avoid, prefer_type is not None and pool.instance_type != prefer_type,
                pool.spot_hourly, pool.instance_type, pool.availability_zone)

    ordered = sorted(pools, key=key)
    return ordered if limit is None else ordered[:limit]


def migration_pools(instance_type: str, zone: str, prices: Mapping[PoolKey, SpotPriceStat],
                    avoid: Collection[PoolKey] = (), limit: int | None = MIGRATION_POOLS) -> list[Pool]:
    """A migration's replacement stays in the original's AZ (its subnet and volumes are there)."""
    pools = priced_pools(candidate_types(instance_type), [zone], prices)
    return order_pools(pools, avoid=avoid, prefer_type=instance_type, limit=limit)


def planned_pools(ordered: list[Pool], max_hourly: float | None) -> list[Pool]:
    """The pools a migration plans for an instance, of all its pools in order: the first
    MIGRATION_POOLS within its max price."""
    return within_max_price(ordered, max_hourly)[:MIGRATION_POOLS]


class MigrationPoolBook:
    """`migration_pools` for a whole fleet: worked out once per (type, AZ), not once per instance
    (10,000 instances of 9 types in 3 AZs share 27 answers)."""

    def __init__(self, prices: Mapping[PoolKey, SpotPriceStat], avoid: Collection[PoolKey] = ()):
        self.prices, self.avoid = prices, avoid
        self._known: dict[PoolKey, list[Pool]] = {}

    def pools(self, instance_type: str, zone: str) -> list[Pool]:
        """A new list each time (its Pools are shared: nothing changes a Pool)."""
        return self.candidates(instance_type, zone)[:MIGRATION_POOLS]

    def candidates(self, instance_type: str, zone: str) -> list[Pool]:
        """Every pool of the type and AZ, in order (`planned_pools` picks the ones planned)."""
        key = (instance_type, zone)
        if key not in self._known:
            self._known[key] = migration_pools(instance_type, zone, self.prices, self.avoid, limit=None)
        return list(self._known[key])


def interruption_pools(instance_type: str, zone: str, zones: Iterable[str], prices: Mapping[PoolKey, SpotPriceStat],
                       avoid: Collection[PoolKey] = (), max_hourly: float | None = None) -> list[Pool]:
    """An interruption's replacement goes anywhere in the VPC but the pool being reclaimed, at
    no more than the instance's max price."""
    pools = priced_pools(candidate_types(instance_type), sorted(zones), prices, exclude={(instance_type, zone)})
    return order_pools(within_max_price(pools, max_hourly), avoid=avoid)
