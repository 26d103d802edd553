"""Builders shared by the service tests (tests/services/conftest.py gives the `p` fixture), all
on the fakes of tests/fakes.py (virtual clock, no AWS): a VPC with a subnet in three zones,
instances serving behind target groups, a planned migration with its records, the services
wired to the fakes, and a timeline of what served in each target group after every change of
the world's log."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fakes import Ports, ports

from spot_core.domain.instances import Instance
from spot_core.domain.plan import InstanceRecord, Pool, WaveSpec
from spot_core.domain.tags import OPT_IN_TAG
from spot_core.services.finalize import Finalize
from spot_core.services.interruptions import Interruptions
from spot_core.services.migrate_wave import MigrateWave
from spot_core.services.rollback import Rollback
from spot_core.services.sweeper import Sweeper
from spot_core.services.traffic import POLL_SECONDS

MID = "mig-1"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
WEB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
API = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api/fedcba9876543210"
POOL_TYPES = ("m5.large", "m5a.large", "m6i.large")  # the original type, then two of its equivalents
ON_DEMAND_HOURLY = 0.096


def new_world(**timing: float) -> Ports:
    """The fakes, with a subnet in each of three zones of one VPC and two target groups."""
    world = ports(**timing)
    for zone in ZONES:
        world.fleet.add_subnet(f"subnet-{zone[-2:]}", zone)
    for arn in (WEB, API):
        world.load_balancer.add_group(arn)
    return world



# --- the fleet -------------------------------------------------------------------------------------------
def serving(p: Ports, count: int, groups: Iterable[str] = (WEB,), *, instance_type: str = "m5.large",
            zone: str = "us-east-1a", **add: Any) -> list[Instance]:
    """`count` running instances, each registered and healthy in every one of `groups` already."""
    instances = [p.fleet.add(instance_type, zone, **add) for _ in range(count)]
    for instance in instances:
        for arn in groups:
            p.load_balancer.add_target(arn, instance.instance_id)
    return instances


def snapshot(p: Ports, groups: Iterable[str] = (WEB, API)) -> dict[str, Any]:
    """What runs and what serves where: to compare the fleet before and after."""
    return {"live": sorted(i.instance_id for i in p.fleet.live()),
            "serving": {arn: sorted(p.load_balancer.serving(arn)) for arn in groups}}


def settle(p: Ports) -> None:
    """Let every transition in flight finish (boots, stops, health checks, draining)."""
    fleet, lb = p.fleet, p.load_balancer
    p.clock.sleep(max(fleet.boot_seconds, fleet.stop_seconds) + lb.health_seconds + lb.drain_seconds + POLL_SECONDS)


# --- a planned migration -----------------------------------------------------------------------------------
def pools(zone: str = "us-east-1a", types: Iterable[str] = POOL_TYPES, hourly: float = 0.035) -> list[Pool]:
    """A migration's pools, in the original's zone, in the order to try them."""
    return [Pool(instance_type=t, availability_zone=zone, spot_hourly=round(hourly + n * 0.001, 4))
            for n, t in enumerate(types)]


def plan(p: Ports, originals: Iterable[Instance], *, ratio: float = 0.95, wave: int = 0,
         pools_of: Callable[[Instance], list[Pool]] | None = None, mid: str = MID) -> WaveSpec:
    """A migration approved and about to run `wave`: one eligible record per original, with the
    target groups it serves in now and its pools (by default, those of its zone)."""
    originals = list(originals)
    for o in originals:  # planned, so opted in
        p.fleet.set_tags(o.instance_id, **{OPT_IN_TAG: "true"})
    p.migrations.create(mid, {"wave_success_ratio": ratio}, status="approved")
    p.migrations.update(mid, summary={"candidates": len(originals), "monthly_savings": 100.0})
    p.plans.put_records(mid, [
        InstanceRecord(
            instance_id=o.instance_id, instance_type=o.instance_type, availability_zone=o.availability_zone,
            subnet_id=o.subnet_id, eligible=True, wave=wave, on_demand_hourly=ON_DEMAND_HOURLY,
            target_groups=p.load_balancer.target_groups_of(o.instance_id),
            pools=pools_of(o) if pools_of else pools(o.availability_zone),
        )
        for o in originals
    ])
    p.locks.acquire(mid, [o.instance_id for o in originals], p.clock.now())  # as the analysis would
    p.world.calls.clear()  # the set-up is not the service's doing
    count = len(originals)
    return WaveSpec(index=wave, percent=100, bake_seconds=0, target_count=count, cumulative=count)


def records(p: Ports, mid: str = MID) -> dict[str, InstanceRecord]:
    """The stored records, by original id."""
    return {r.instance_id: r for r in p.plans.records(mid)}


def replacement_of(p: Ports, original: Instance) -> str:
    replacement = records(p)[original.instance_id].replacement_id
    assert replacement is not None
    return replacement


# --- the services, wired to the fakes ------------------------------------------------------------------------
def migrate_wave(p: Ports) -> MigrateWave:
    return MigrateWave(p.fleet, p.load_balancer, p.migrations, p.plans, p.registry, p.locks, p.clock, p.probes,
                       p.autoscaling)


def migrate(p: Ports, wave: WaveSpec, mid: str = MID, invocations: int = 200) -> Any:
    """MigrateWave as the state machine runs it: invocations, each followed by the Wait it asks
    for, until the wave is done; the last result."""
    for _ in range(invocations):
        result = migrate_wave(p).run(mid, wave, p.clock.budget())
        if result.done:
            return result
        p.clock.sleep(result.wait_seconds)
    raise AssertionError(f"wave not done after {invocations} invocations")


def finalize(p: Ports) -> Finalize:
    return Finalize(p.migrations, p.plans, p.notifier, p.spot_prices, p.locks, p.clock, p.autoscaling, fleet=p.fleet)


def rollback(p: Ports) -> Rollback:
    return Rollback(p.fleet, p.load_balancer, p.migrations, p.plans, p.registry, finalize(p), p.clock, p.autoscaling)


def interruptions(p: Ports, spot_prices: Any = None, **options: Any) -> Interruptions:
    options.setdefault("default_policy", "prewarm")
    options.setdefault("prewarm_seconds", 900)
    return Interruptions(p.fleet, p.load_balancer, spot_prices or p.spot_prices, p.claims, p.pool_memory,
                         p.registry, p.plans, p.notifier, p.clock, p.rehomes, **options)


def sweeper(p: Ports, **options: Any) -> Sweeper:
    return Sweeper(p.fleet, p.load_balancer, p.claims, p.registry, p.notifier, p.clock, **options)


def until_done(run: Callable[[], Any], invocations: int = 200) -> Iterator[Any]:
    """Call `run` again (the state machine's loop) until its result says done."""
    for _ in range(invocations):
        result = run()
        yield result
        if result.done:
            return
    raise AssertionError(f"not done after {invocations} invocations")


# --- what served when ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Moment:
    """The targets of each group that were healthy, and those draining, at one moment."""

    serving: dict[str, frozenset[str]]
    draining: dict[str, frozenset[str]]


class Timeline:
    """The world right after every change of its log (one moment per log entry, in the same
    order, after the moment before the first change); capacity only drops at a change (a
    deregistration, a stop, a termination), so the lowest moment is the lowest capacity there ever was."""

    def __init__(self, p: Ports, groups: Iterable[str] = (WEB, API)):
        self.p, self.groups = p, tuple(groups)
        self.start = len(p.world.log)
        self.moments = [self._now()]
        p.world.observers.append(lambda operation, detail: self.moments.append(self._now()))

    def _now(self) -> Moment:
        lb = self.p.load_balancer
        return Moment(serving={arn: frozenset(lb.serving(arn)) for arn in self.groups},
                      draining={arn: frozenset(lb.draining(arn)) for arn in self.groups})

    def lowest(self, arn: str) -> int:
        return min(len(moment.serving[arn]) for moment in self.moments)

    def at(self, operation: str, detail: Any) -> Moment:
        """The world right after the first logged change `operation` with `detail`."""
        return self.moments[1 + index(self.p.world.log[self.start:], operation, detail)]


def index(log: list[tuple[str, Any]], operation: str, detail: Any) -> int:
    """The position of the first change `operation` with `detail` in `log` (AssertionError if none)."""
    for n, (op, d) in enumerate(log):
        if op == operation and d == detail:
            return n
    raise AssertionError(f"no {operation} {detail} in the log")


def launches(p: Ports) -> list[dict[str, Any]]:
    """Every successful launch: {"instance_id", "spec"}."""
    return p.world.changes("launch")


def count_calls(scenario: Callable[[], Ports], operations: Iterable[str]) -> dict[str, int]:
    """How often a crash-free run of `scenario` calls each operation (to place crashes)."""
    p = scenario()
    return {op: p.world.calls.get(op, 0) for op in operations}


def crash_points(calls: dict[str, int]) -> list[Any]:
    """(operation, after) at the first, a middle and the last call of each operation."""
    return [pytest.param(op, after, id=f"{op}-after-{after}")
            for op, count in calls.items() for after in sorted({0, count // 2, count - 1}) if count]
