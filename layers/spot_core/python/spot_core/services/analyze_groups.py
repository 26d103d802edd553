"""The Auto Scaling groups of an analysis: found by the selector (named, or carrying its tags),
priced per billing product like standalone instances (on-demand for the types in use, Spot for
every type their policy may list, in their AZs), planned by domain/asg.py, and held by a lock
like instances (`asg:<name>`), so one migration at a time moves a group."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from ..domain.asg import GroupFacts, GroupRecord, plan_group, policy_candidates
from ..domain.errors import InvalidMigrationRequest
from ..domain.pools import PoolKey
from ..domain.pricing import SpotPriceStat
from ..domain.request import MigrationRequest, Selector
from ..domain.tags import OPT_IN_TAG, is_opted_in
from ..ports import AutoScaling, OnDemandPrices, SpotPrices

GROUP_LOCK_PREFIX = "asg:"  # a group's lock id: no instance id starts so


def group_lock(name: str) -> str:
    return f"{GROUP_LOCK_PREFIX}{name}"


@dataclass
class GroupAnalysis:
    autoscaling: AutoScaling
    on_demand: OnDemandPrices
    spot_prices: SpotPrices

    def find(self, selector: Selector) -> list[GroupFacts]:
        """The named groups (every one must exist), or those carrying the selector's tags when
        nothing is named; none when only instances are named."""
        if selector.auto_scaling_groups:
            found = self.autoscaling.find(names=selector.auto_scaling_groups)
            missing = sorted(set(selector.auto_scaling_groups) - {g.name for g in found})
            if missing:
                raise InvalidMigrationRequest("invalid migration request: selector.auto_scaling_groups: no such "
                                              "Auto Scaling group: " + ", ".join(missing[:20]))
            return found
        return self.autoscaling.find(tags=selector.tags) if selector.instances_by_tags else []

    def plan(self, groups: list[GroupFacts], request: MigrationRequest, now: datetime,
             avoid: Collection[PoolKey]) -> list[GroupRecord]:
        """One record per group: those not opted in excluded, the others planned with the prices
        of their billing product (read once per product)."""
        opted_in = [g for g in groups if is_opted_in(g.tags)]
        by_product: dict[str, list[GroupFacts]] = defaultdict(list)
        for facts in opted_in:
            by_product[facts.product].append(facts)
        planned: dict[str, GroupRecord] = {}
        for product, facts_list in by_product.items():
            on_demand, spot = self._prices(product, facts_list, now)
            for facts in facts_list:
                planned[facts.name] = plan_group(facts, on_demand_hourly=on_demand, prices=spot, avoid=avoid,
                                                 on_demand_base=request.asg.on_demand_base,
                                                 min_savings_pct=request.min_savings_pct)
        return [planned.get(g.name) or _not_opted_in(g) for g in groups]

    def _prices(self, product: str, groups: list[GroupFacts], now: datetime
                ) -> tuple[dict[str, float], dict[PoolKey, SpotPriceStat]]:
        in_use = sorted({t for g in groups for t in _types_in_use(g)})
        candidates = sorted({t for g in groups for t in policy_candidates(g)})
        zones = {z for g in groups for z in g.availability_zones}
        spot = self.spot_prices.statistics(candidates, now, product=product)
        return (self.on_demand.prices(in_use, strict=False, product=product),
                {k: v for k, v in spot.items() if k[1] in zones})


def _not_opted_in(facts: GroupFacts) -> GroupRecord:
    record = GroupRecord(name=facts.name, arn=facts.arn, eligible=True, desired=facts.desired,
                         instance_types=dict(facts.instance_types), availability_zones=list(facts.availability_zones),
                         config=facts.config)
    record.exclude("not_opted_in", f"not tagged {OPT_IN_TAG}=true")
    return record


def _types_in_use(facts: GroupFacts) -> set[str]:
    """The types a group runs, or launches (its source's) when it runs none."""
    source = facts.source.instance_type if facts.source else None
    return set(facts.instance_types) | ({source} if source else set())
