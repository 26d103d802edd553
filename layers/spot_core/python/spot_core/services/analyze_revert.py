"""The analysis of a revert: the plan that takes a completed migration's instances back to
on-demand (domain/revert.py). The migration it reverts and the instances named are checked
before anything is written."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..domain.analysis import InstanceFacts
from ..domain.plan import InstanceRecord
from ..domain.request import RevertOf
from ..domain.revert import check_revertible, revert_record, reverted_records
from ..ports import Fleet, LoadBalancer, MigrationRepository, OnDemandPrices, PlanRepository


@dataclass
class RevertAnalysis:
    fleet: Fleet
    load_balancer: LoadBalancer
    on_demand: OnDemandPrices
    migrations: MigrationRepository
    plans: PlanRepository

    def sources(self, revert: RevertOf) -> list[InstanceRecord]:
        """The source migration's records the revert takes; InvalidMigrationRequest (nothing
        written) when that migration cannot be reverted or a named instance is not one it moved."""
        check_revertible(revert.migration_id, self.migrations.get_many([revert.migration_id], consistent=True)
                         .get(revert.migration_id))
        return reverted_records(self.plans.records(revert.migration_id), revert)

    def records(self, sources: list[InstanceRecord]) -> list[InstanceRecord]:
        """One record per source: its current Spot instance and the on-demand pool it goes back to.
        Calls grow with billing products and pages, not instances."""
        current = {i.instance_id: InstanceFacts.of(i, None)
                   for i in self.fleet.describe([s.replacement for s in sources]).values()}
        wanted: dict[str, set[str]] = defaultdict(set)
        for source in sources:
            facts = current.get(source.replacement)
            if facts is not None:
                wanted[facts.billing.priced_as].add(source.instance_type)
        prices = {product: self.on_demand.prices(types, strict=False, product=product)
                  for product, types in wanted.items()}
        membership = self.load_balancer.membership() if current else {}
        records = []
        for source in sources:
            facts = current.get(source.replacement)
            hourly = prices.get(facts.billing.priced_as, {}).get(source.instance_type) if facts else None
            records.append(revert_record(source, facts, hourly, membership.get(source.replacement, [])))
        return records
