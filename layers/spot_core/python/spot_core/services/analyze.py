"""Analyze: gather the facts of the selected instances, run the pure analysis, store the plan.

AWS calls grow with pages, distinct instance types and target groups, never with
instances (CPU history is read 500 instances a call).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.analysis import InstanceFacts, build_record, not_opted_in, summarize
from ..domain.clock import Clock
from ..domain.errors import InvalidMigrationRequest
from ..domain.instances import Instance
from ..domain.plan import InstanceRecord, PlanSummary
from ..domain.pools import candidate_types, migration_pools
from ..domain.request import MigrationRequest
from ..domain.tags import is_opted_in
from ..ports import Fleet, LoadBalancer, Metrics, MigrationRepository, OnDemandPrices, PlanRepository, PoolMemory, SpotPrices

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
    clock: Clock

    def run(self, migration_id: str, request: MigrationRequest) -> PlanSummary:
        instances = self.fleet.find(request.selector)
        self._check_selected(request, instances)  # before anything is written
        self.migrations.create(migration_id, request.model_dump())
        records = self._records(instances, request.min_savings_pct)
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

    def _records(self, instances: list[Instance], min_savings_pct: float) -> list[InstanceRecord]:
        traits = self.fleet.type_traits({i.instance_type for i in instances})
        facts = [InstanceFacts.of(i, traits.get(i.instance_type)) for i in instances]
        opted_in = [f for f in facts if is_opted_in(f.tags)]
        opted_in_ids = {f.instance_id for f in opted_in}
        now = self.clock.now()
        on_demand = self.on_demand.prices({f.instance_type for f in opted_in}, strict=False)
        movable = sorted({t for f in opted_in for t in candidate_types(f.instance_type)})
        spot = self.spot_prices.statistics(movable, now)
        cpu = self.metrics.cpu_utilisation([f.instance_id for f in opted_in], now)
        membership = self.load_balancer.membership() if opted_in else {}
        avoid = self.pool_memory.recent_interruptions()
        return [
            build_record(
                f,
                on_demand_hourly=on_demand.get(f.instance_type),
                pools=migration_pools(f.instance_type, f.availability_zone, spot, avoid),
                cpu_values=cpu.get(f.instance_id, []),
                target_groups=membership.get(f.instance_id, []),
                min_savings_pct=min_savings_pct,
            ) if f.instance_id in opted_in_ids else not_opted_in(f)
            for f in facts
        ]
