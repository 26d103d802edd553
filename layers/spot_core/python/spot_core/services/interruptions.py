"""Keeps the capacity of managed Spot instances whole through interruption warnings and
rebalance recommendations.

Exactly one replacement per interrupted instance, however often or concurrently events
arrive: each event is handled once (EventOnce, on its id), and the instance's one
replacement is claimed with a conditional write before anything is launched; a claim is
released again if launching fails, so the retry can do the work. The replacement goes to
a *different* pool (type and/or AZ of the diversified set, avoiding pools interrupted
recently), falls back to on-demand when no Spot capacity is left, and takes over the
interrupted instance's target-group registrations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..domain.clock import Clock
from ..domain.instances import Instance, LaunchSpec, Market
from ..domain.interruptions import InterruptionOutcome, Notice, RebalancePolicy, rebalance_policy
from ..domain.plan import Pool, TargetRef, group_by_target_group
from ..domain.pools import candidate_types, interruption_pools
from ..domain.tags import MIGRATION_ID_TAG, REPLACES_TAG, interruption_replacement_tags, is_managed
from ..ports import (
    EventOnce,
    Fleet,
    LoadBalancer,
    ManagedRegistry,
    Notifier,
    PlanRepository,
    PoolMemory,
    ReplacementClaims,
    SpotPrices,
)
from .launching import launch_in_first_pool

PRICE_LOOKBACK_HOURS = 6


@dataclass
class Replacement:
    """A launched replacement: where it runs and what the pools said on the way."""

    instance_id: str
    pool: Pool
    market: Market
    refused: list[str]


@dataclass
class Interruptions:
    fleet: Fleet
    load_balancer: LoadBalancer
    spot_prices: SpotPrices
    claims: ReplacementClaims
    pool_memory: PoolMemory
    registry: ManagedRegistry
    plans: PlanRepository
    notifier: Notifier
    once: EventOnce
    clock: Clock
    default_policy: RebalancePolicy = "prewarm"
    prewarm_seconds: int = 900

    def handle(self, notice: Notice) -> InterruptionOutcome:
        iid = notice.instance_id
        instance = self.fleet.describe([iid]).get(iid)
        if instance is None or not is_managed(instance.tags):
            return InterruptionOutcome(action="ignored", instance_id=iid, reason="not managed by spot-migration")
        return self.once.run(
            notice.event_id, lambda: self._respond(notice, instance),
            lambda: InterruptionOutcome(action="duplicate", instance_id=iid, event_id=notice.event_id),
        )

    def _respond(self, notice: Notice, instance: Instance) -> InterruptionOutcome:
        existing = self.claims.replacement_for(notice.instance_id)
        if not notice.is_interruption:
            return self._rebalance(notice, instance, existing)
        self.pool_memory.record_interruption(instance.instance_type, instance.availability_zone, instance.instance_id)
        if existing and existing["status"] == "prewarmed":
            return self._swap_prewarmed(instance, existing)
        if existing:
            return _already_replaced(notice.instance_id, existing)
        return self._replace(notice, instance, swap=True)

    def _rebalance(self, notice: Notice, instance: Instance, existing: Mapping[str, Any] | None) -> InterruptionOutcome:
        policy = rebalance_policy(instance.tags, self.default_policy)
        if policy == "ignore":
            return InterruptionOutcome(action="ignored_by_policy", instance_id=notice.instance_id, policy=policy)
        if existing:
            return _already_replaced(notice.instance_id, existing)
        outcome = self._replace(notice, instance, swap=policy == "replace")
        return outcome.model_copy(update={"policy": policy})

    def _swap_prewarmed(self, instance: Instance, existing: Mapping[str, Any]) -> InterruptionOutcome:
        """The warning came after a rebalance recommendation: the prewarmed replacement serves
        already, so the interrupted instance only leaves its target groups."""
        iid, new_id = instance.instance_id, existing["replacement_id"]
        refs = [TargetRef.model_validate(t) for t in existing.get("target_groups", [])]
        self.load_balancer.deregister(group_by_target_group((iid, ref) for ref in refs))
        self.claims.update(iid, status="swapped", swapped_at=self.clock.now().isoformat())
        self._notify(iid, "prewarmed-swap", f"{iid} is being reclaimed; its prewarmed replacement {new_id} took over")
        return InterruptionOutcome(action="swapped_prewarmed", instance_id=iid, replacement_id=new_id, launched=False)

    def _replace(self, notice: Notice, instance: Instance, swap: bool) -> InterruptionOutcome:
        iid = instance.instance_id
        if not self.claims.claim(iid, notice.event_id):
            return _already_replaced(iid, self.claims.replacement_for(iid) or {})
        try:
            groups = self.load_balancer.target_groups_of(iid)
            replacement = self._launch(notice, instance)
        except Exception:
            self.claims.release(iid)
            raise
        launched_at = self.clock.now()
        self.load_balancer.register(group_by_target_group((replacement.instance_id, ref) for ref in groups))
        if swap:  # traffic moves to the replacement; the interrupted instance drains
            self.load_balancer.deregister(group_by_target_group((iid, ref) for ref in groups))
        swapped = {"status": "swapped", "swapped_at": launched_at.isoformat()} if swap else {"status": "prewarmed"}
        self.claims.update(
            iid, **swapped, replacement_id=replacement.instance_id,
            instance_type=replacement.pool.instance_type, availability_zone=replacement.pool.availability_zone,
            market=replacement.market, target_groups=[g.model_dump() for g in groups],
            launched_at=launched_at.isoformat(), kind=notice.kind, event_time=notice.time.isoformat(),
            refused=replacement.refused, prewarm_until=int(launched_at.timestamp()) + self.prewarm_seconds,
        )
        self.registry.register(replacement.instance_id, f"replacement of {iid}")
        self._follow_migration(instance, replacement)
        self._notify(iid, f"{notice.kind}-replaced",
                     f"{iid} ({instance.instance_type} in {instance.availability_zone}, {notice.kind}): replacement "
                     f"{replacement.instance_id} launched as {replacement.market} {replacement.pool.instance_type} "
                     f"in {replacement.pool.availability_zone}")
        return InterruptionOutcome(
            action="replaced" if swap else "prewarmed", instance_id=iid, replacement_id=replacement.instance_id,
            instance_type=replacement.pool.instance_type, availability_zone=replacement.pool.availability_zone,
            market=replacement.market, launched=True, refused_pools=replacement.refused,
            seconds_from_event_to_launch=round((launched_at - notice.time).total_seconds(), 3),
        )

    def _launch(self, notice: Notice, instance: Instance) -> Replacement:
        """In the first pool that serves; on-demand in the original pool when no Spot pool does."""
        subnets = {instance.availability_zone: instance.subnet_id or "",
                   **{z: s for z, s in self.fleet.subnets_by_zone(instance.vpc_id or "").items()
                      if z != instance.availability_zone}}
        types = candidate_types(instance.instance_type)
        prices = self.spot_prices.statistics(types, self.clock.now(), PRICE_LOOKBACK_HOURS)
        pools = interruption_pools(instance.instance_type, instance.availability_zone, subnets, prices,
                                   self.pool_memory.recent_interruptions())
        tags = interruption_replacement_tags(instance.tags, instance.instance_id)
        user_data = self.fleet.user_data(instance.instance_id)
        def in_pool(pool: Pool) -> LaunchSpec:
            return LaunchSpec.replacing(instance, pool, tags, user_data, subnet_id=subnets[pool.availability_zone])

        launch = launch_in_first_pool(self.fleet, pools, in_pool, f"intr-{notice.event_id}")
        if launch.failure is not None:
            raise launch.failure
        if launch.instance_id is not None and launch.pool is not None:
            return Replacement(launch.instance_id, launch.pool, "spot", launch.refused)
        # No Spot capacity anywhere: keep the capacity whole on-demand, in the original pool.
        pool = Pool(instance_type=instance.instance_type, availability_zone=instance.availability_zone, spot_hourly=0.0)
        spec = LaunchSpec.replacing(instance, pool, tags, user_data, market="on-demand")
        return Replacement(self.fleet.launch(spec, f"intr-{notice.event_id}-od"), pool, "on-demand", launch.refused)

    def _follow_migration(self, interrupted: Instance, replacement: Replacement) -> None:
        """If the interrupted instance replaces an original of a migration, the migration's
        record now points at the new instance (so a rollback terminates the right one)."""
        migration_id, original = interrupted.tags.get(MIGRATION_ID_TAG), interrupted.tags.get(REPLACES_TAG)
        if not migration_id or not original:
            return
        for record in self.plans.records(migration_id):
            if record.instance_id == original and record.replacement_id == interrupted.instance_id:
                hourly = replacement.pool.spot_hourly if replacement.market == "spot" else record.on_demand_hourly
                record.follow(replacement.instance_id, replacement.pool, hourly,
                              f"{interrupted.instance_id} interrupted; replaced by {replacement.instance_id} "
                              f"({replacement.market})")
                self.plans.put_record(migration_id, record)

    def _notify(self, instance_id: str, event: str, headline: str) -> None:
        self.notifier.publish(instance_id, event, headline, [], {"instance_id": instance_id})


def _already_replaced(instance_id: str, existing: Mapping[str, Any]) -> InterruptionOutcome:
    return InterruptionOutcome(action="already_replaced", instance_id=instance_id,
                               replacement_id=existing.get("replacement_id"))
