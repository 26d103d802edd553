"""Analyze: gather the facts of the selected instances, run the pure analysis, store the plan.

AWS calls grow with pages, distinct instance types and target groups, never with
instances (CPU history is read 500 instances a call).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..domain.analysis import CarryRules, InstanceFacts, build_record, not_opted_in, summarize
from ..domain.asg import GroupRecord
from ..domain.clock import Clock
from ..domain.errors import InvalidMigrationRequest
from ..domain.instances import Instance
from ..domain.locks import InstanceLock
from ..domain.outcomes import has_ended
from ..domain.plan import InstanceRecord, PlanSummary, TargetRef
from ..domain.pools import MigrationPoolBook, PoolKey, candidate_types
from ..domain.request import MigrationRequest, RevertOf
from ..domain.tags import MIGRATION_ID_TAG, REPLACES_TAG, is_opted_in
from ..ports import (
    AutoScaling,
    Fleet,
    InstanceLocks,
    LoadBalancer,
    Metrics,
    MigrationRepository,
    OnDemandPrices,
    PlanRepository,
    PoolMemory,
    SpotPrices,
)
from .analyze_groups import GroupAnalysis, group_lock
from .analyze_revert import RevertAnalysis

UNKNOWN_IDS_SHOWN = 20


@dataclass
class Analyze:
    fleet: Fleet
    load_balancer: LoadBalancer
    metrics: Metrics
    on_demand: OnDemandPrices
    spot_prices: SpotPrices
    migrations: MigrationRepository
    plans: PlanRepository
    pool_memory: PoolMemory
    locks: InstanceLocks
    clock: Clock
    autoscaling: AutoScaling

    def run(self, migration_id: str, request: MigrationRequest) -> PlanSummary:
        if request.revert is not None:
            return self._revert(migration_id, request, request.revert)
        selector = request.selector
        instances = self.fleet.find(selector) if selector.instance_ids or selector.instances_by_tags else []
        self._check_selected(request, instances)  # before anything is written
        group_analysis = GroupAnalysis(self.autoscaling, self.on_demand, self.spot_prices)
        groups = group_analysis.find(selector)
        self.migrations.create(migration_id, request.model_dump())
        records = self._records(instances, request)
        self._exclude_replaced(records)
        self._hold(migration_id, records)
        group_records = group_analysis.plan(groups, request, self.clock.now(),
                                            self.pool_memory.recent_interruptions() if groups else set())
        self._hold_groups(migration_id, group_records)
        self.plans.put_records(migration_id, records)
        self.plans.put_groups(migration_id, group_records)
        summary = summarize(records, self.on_demand.source_used, group_records)
        self.migrations.update(migration_id, status="planned", summary=summary.model_dump())
        return summary

    def _revert(self, migration_id: str, request: MigrationRequest, revert: RevertOf) -> PlanSummary:
        """The plan that takes a completed migration's instances back to on-demand."""
        analysis = RevertAnalysis(self.fleet, self.load_balancer, self.on_demand, self.migrations, self.plans)
        sources = analysis.sources(revert)  # before anything is written
        self.migrations.create(migration_id, request.model_dump())
        records = analysis.records(sources)
        self._hold(migration_id, records)
        self.plans.put_records(migration_id, records)
        summary = summarize(records, self.on_demand.source_used)
        self.migrations.update(migration_id, status="planned", summary=summary.model_dump())
        return summary

    @staticmethod
    def _check_selected(request: MigrationRequest, instances: list[Instance]) -> None:
        missing = sorted(set(request.selector.instance_ids) - {i.instance_id for i in instances})
        if missing:
            raise InvalidMigrationRequest("invalid migration request: selector.instance_ids: no such (live) instance: "
                                          + ", ".join(missing[:UNKNOWN_IDS_SHOWN]))

    def _exclude_replaced(self, records: list[InstanceRecord]) -> None:
        """An original whose replacement still runs (a migration that ended half-way, a rollback
        that kept it) must not get a second one."""
        candidates = {r.instance_id: r for r in records if r.eligible}
        if not candidates:
            return
        for replacement in self.fleet.live_replacements():
            record = candidates.get(replacement.tags.get(REPLACES_TAG, ""))
            if record is not None and record.eligible:
                record.exclude("has_live_replacement",
                               f"{replacement.instance_id}, launched for it by migration "
                               f"{replacement.tags.get(MIGRATION_ID_TAG)}, still runs")

    def _hold(self, migration_id: str, records: list[InstanceRecord]) -> None:
        """Lock every candidate for this migration; one that another live migration holds, or
        that cools down after a rollback, is excluded with that reason."""
        self._lock(migration_id, {r.instance_id: r for r in records if r.eligible})

    def _hold_groups(self, migration_id: str, groups: list[GroupRecord]) -> None:
        """The same lock for every group that would move (its own id: `asg:<name>`)."""
        self._lock(migration_id, {group_lock(g.name): g for g in groups if g.eligible})

    def _lock(self, migration_id: str, candidates: Mapping[str, InstanceRecord | GroupRecord]) -> None:
        if not candidates:
            return
        now = self.clock.now()
        refused = self._take_over_ended(migration_id, self.locks.acquire(migration_id, list(candidates), now), now)
        for lock_id, lock in refused.items():
            why = lock.refusal(migration_id, now)
            if why:
                candidates[lock_id].exclude(*why)

    def _take_over_ended(self, migration_id: str, refused: dict[str, InstanceLock],
                         now: datetime) -> dict[str, InstanceLock]:
        """Locks still held by a migration that has ended (it died before releasing them) are taken over."""
        ended = self._ended(sorted({lock.migration_id for lock in refused.values() if lock.migration_id}))
        taken = {i for i, lock in refused.items()
                 if lock.migration_id in ended and self.locks.take_over(migration_id, i, lock.migration_id, now)}
        return {i: lock for i, lock in refused.items() if i not in taken}

    def _ended(self, migration_ids: list[str]) -> set[str]:
        """Those of the migrations that have ended (or never wrote an item: refused before writing)."""
        items = self.migrations.get_many(migration_ids, consistent=True) if migration_ids else {}
        return {m for m in migration_ids if m not in items or has_ended(items[m])}

    def _records(self, instances: list[Instance], request: MigrationRequest) -> list[InstanceRecord]:
        traits = self.fleet.type_traits({i.instance_type for i in instances})
        opted_in = [i for i in instances if is_opted_in(i.tags)]
        inventory = self.fleet.inventory(opted_in) if opted_in else {}
        facts = [InstanceFacts.of(i, traits.get(i.instance_type), inventory.get(i.instance_id)) for i in instances]
        evidence = self._evidence([f for f in facts if is_opted_in(f.tags)])
        rules = CarryRules(mode=request.mode, allow_downtime=request.allow_downtime, probe=request.health_probe,
                           max_price=request.max_price, interruption_behavior=request.interruption_behavior,
                           hooks=request.interruption)
        return [evidence.record(f, request.min_savings_pct, rules) if f.instance_id in evidence.opted_in
                else not_opted_in(f) for f in facts]

    def _prices(self, product: str, types: set[str], now: datetime, avoid: set[PoolKey]) -> _Prices:
        movable = sorted({t for instance_type in types for t in candidate_types(instance_type)})
        return _Prices(self.on_demand.prices(types, strict=False, product=product),
                       MigrationPoolBook(self.spot_prices.statistics(movable, now, product=product), avoid=avoid))

    def _evidence(self, opted_in: list[InstanceFacts]) -> _Evidence:
        """Everything the analysis needs of AWS, read in calls that grow with types and billing
        products (a licensed image has its own on-demand and Spot prices), not instances."""
        now = self.clock.now()
        avoid = self.pool_memory.recent_interruptions() if opted_in else set()
        products = sorted({f.billing.priced_as for f in opted_in if not f.billing.unsupported_reason})
        prices = {product: self._prices(product, {f.instance_type for f in opted_in if f.billing.priced_as == product},
                                        now, avoid) for product in products}
        cpu = self.metrics.cpu_utilisation([f.instance_id for f in opted_in], now)
        membership = self.load_balancer.membership() if opted_in else {}
        return _Evidence(opted_in={f.instance_id for f in opted_in}, prices=prices, cpu=cpu, membership=membership)


@dataclass
class _Prices:
    on_demand: dict[str, float]
    pools: MigrationPoolBook  # per (type, AZ), once


NO_PRICES = _Prices({}, MigrationPoolBook({}))


@dataclass
class _Evidence:
    opted_in: set[str]
    prices: dict[str, _Prices]  # per billing product (its name)
    cpu: dict[str, list[float]]
    membership: dict[str, list[TargetRef]]

    def record(self, facts: InstanceFacts, min_savings_pct: float, rules: CarryRules) -> InstanceRecord:
        prices = self.prices.get(facts.billing.priced_as, NO_PRICES)
        return build_record(
            facts,
            on_demand_hourly=prices.on_demand.get(facts.instance_type),
            pools=prices.pools.candidates(facts.instance_type, facts.availability_zone),
            cpu_values=self.cpu.get(facts.instance_id, []),
            target_groups=self.membership.get(facts.instance_id, []),
            min_savings_pct=min_savings_pct,
            rules=rules,
        )
