"""The one pool ordering, as a migration and as an interruption use it."""

from datetime import UTC, datetime

from spot_core.domain import pools as pools_module
from spot_core.domain.instance_types import equivalent_types
from spot_core.domain.plan import Pool
from spot_core.domain.pools import (
    MIGRATION_POOLS,
    MigrationPoolBook,
    interruption_pools,
    migration_pools,
    order_pools,
)
from spot_core.domain.pricing import SpotPriceStat

NOW = datetime(2026, 11, 22, tzinfo=UTC)
TYPES = ["m5.large", "m5a.large", "m6i.large", "m6a.large", "m7i.large", "m5n.large"]


def pools(*prices: float, az: str = "us-east-1a") -> list[Pool]:
    return [Pool(instance_type=TYPES[i], availability_zone=az, spot_hourly=p) for i, p in enumerate(prices)]


def prices(table: dict[tuple[str, str], float]) -> dict[tuple[str, str], SpotPriceStat]:
    return {k: SpotPriceStat(k[0], k[1], median=v, p90=v, maximum=v, samples=1) for k, v in table.items()}


def test_original_type_first_then_cheapest():
    candidates = [
        Pool(instance_type="m6i.large", availability_zone="us-east-1a", spot_hourly=0.030),
        Pool(instance_type="m5.large", availability_zone="us-east-1a", spot_hourly=0.040),
        Pool(instance_type="m5a.large", availability_zone="us-east-1a", spot_hourly=0.020),
    ]
    ordered = order_pools(candidates, prefer_type="m5.large")
    assert [p.instance_type for p in ordered] == ["m5.large", "m5a.large", "m6i.large"]


def test_recently_interrupted_pools_go_last_even_the_original():
    ordered = order_pools(pools(0.040, 0.020, 0.030), avoid={("m5.large", "us-east-1a")}, prefer_type="m5.large")
    assert [p.instance_type for p in ordered] == ["m5a.large", "m6i.large", "m5.large"]


def test_without_a_preferred_type_the_cheapest_comes_first():
    assert [p.spot_hourly for p in order_pools(pools(0.05, 0.01, 0.03))] == [0.01, 0.03, 0.05]


def test_a_migration_tries_at_most_four_pools_in_its_own_zone():
    table = {(t, "us-east-1a"): 0.05 - i * 0.001 for i, t in enumerate(["m5.large", *equivalent_types("m5.large")])}
    table[("m5a.large", "us-east-1b")] = 0.001  # another zone: not a migration's pool
    ordered = migration_pools("m5.large", "us-east-1a", prices(table))
    assert len(ordered) == MIGRATION_POOLS
    assert ordered[0].instance_type == "m5.large"
    assert {p.availability_zone for p in ordered} == {"us-east-1a"}
    assert [p.spot_hourly for p in ordered[1:]] == sorted(p.spot_hourly for p in ordered[1:])


def test_unpriced_types_are_not_pools():
    assert migration_pools("m5.large", "us-east-1a", prices({("m5.large", "us-east-1a"): 0.03})) == [
        Pool(instance_type="m5.large", availability_zone="us-east-1a", spot_hourly=0.03)]
    assert migration_pools("m5.large", "us-east-1a", {}) == []


def test_an_interruption_goes_anywhere_in_the_vpc_but_the_reclaimed_pool():
    table = {("m5.large", "us-east-1a"): 0.01, ("m5.large", "us-east-1b"): 0.04, ("m5a.large", "us-east-1a"): 0.03,
             ("m5a.large", "us-east-1c"): 0.02, ("m5a.large", "us-east-1d"): 0.001}
    ordered = interruption_pools("m5.large", "us-east-1a", ["us-east-1c", "us-east-1a", "us-east-1b"], prices(table))
    assert [(p.instance_type, p.availability_zone) for p in ordered] == [
        ("m5a.large", "us-east-1c"), ("m5a.large", "us-east-1a"), ("m5.large", "us-east-1b")]


def test_an_interruption_puts_recently_interrupted_pools_last():
    table = {("m5.large", "us-east-1b"): 0.01, ("m5a.large", "us-east-1b"): 0.02}
    ordered = interruption_pools("m5.large", "us-east-1a", ["us-east-1a", "us-east-1b"], prices(table),
                                 avoid={("m5.large", "us-east-1b")})
    assert [p.instance_type for p in ordered] == ["m5a.large", "m5.large"]


def test_a_pool_book_works_out_each_type_and_zone_once_for_a_whole_fleet(monkeypatch):
    """1,000 instances of 2 types in 3 AZs: 6 pool lists, not 1,000 (each priced, ordered, validated)."""
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    table = prices({(t, z): round(0.03 + 0.001 * i + 0.0001 * j, 5)
                    for i, t in enumerate(TYPES) for j, z in enumerate(zones)})
    worked_out = []

    def counted(instance_type, zone, *args, **kwargs):
        worked_out.append((instance_type, zone))
        return migration_pools(instance_type, zone, *args, **kwargs)

    monkeypatch.setattr(pools_module, "migration_pools", counted)
    book = MigrationPoolBook(table, avoid={("m5a.large", "us-east-1b")})
    fleet = [(TYPES[n % 2], zones[n % 3]) for n in range(1000)]

    answers = [book.pools(t, z) for t, z in fleet]

    assert sorted(worked_out) == sorted(set(fleet))
    assert all(got == migration_pools(t, z, table, {("m5a.large", "us-east-1b")})
               for got, (t, z) in zip(answers, fleet, strict=True))
    answers[0].clear()  # each caller gets a list of its own
    assert book.pools(*fleet[0]) == answers[6]
