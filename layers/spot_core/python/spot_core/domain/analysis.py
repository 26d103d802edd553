"""Pure analysis: eligibility, workload classification, risk and savings of each instance.

No AWS calls here: the analyze service gathers facts through the ports and feeds them
in, so every rule is unit-testable.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .asg import GroupRecord
from .carry import CarryPlan, Exclusion, Inventory, RequestedMode, carry_plan, choose_mode, probe_for, requested_mode
from .health import HealthProbe
from .hooks import InterruptionHooks, hooks_for
from .instances import Instance, LaunchSettings, TypeTraits, burstable_family
from .plan import InstanceRecord, PlanSummary, Pool, Risk, TargetRef, Workload
from .pools import MIGRATION_POOLS, planned_pools
from .pricing import HOURS_PER_MONTH, LINUX, BillingProduct, storage_monthly
from .spot_options import (
    InterruptionBehavior,
    MaxPrice,
    above_max_price,
    interruption_behavior,
    requested_behavior,
    requested_max_price,
)
from .tags import AUTO_SCALING_GROUP_TAG, OPT_IN_TAG, REVERTED_BY_TAG, STATEFUL_TAG, is_managed, is_opted_in

MIN_CPU_SAMPLES = 6
STABLE_SPREAD = 0.3  # a stable workload's standard deviation is below this share of its mean
SPREAD_TIE = 1e-9  # closer to STABLE_SPREAD than this, the exact standard deviation decides


@dataclass(frozen=True)
class InstanceFacts:
    """What EC2 says about one instance, reduced to what the analysis needs."""

    instance_id: str
    instance_type: str
    availability_zone: str
    state: str
    subnet_id: str | None = None
    lifecycle: str | None = None  # "spot" | "scheduled" | None (on-demand)
    platform: str | None = None  # "windows" | None
    tags: dict[str, str] = field(default_factory=dict)
    instance_storage: bool = False
    burstable: bool = False
    inventory: Inventory = field(default_factory=Inventory)
    settings: LaunchSettings = field(default_factory=LaunchSettings)
    billing: BillingProduct = field(default_factory=lambda: BillingProduct.named(LINUX))

    @property
    def name(self) -> str | None:
        return self.tags.get("Name")

    @property
    def volumes(self) -> tuple[tuple[str, int], ...]:
        """Attached EBS volumes as (type, GiB)."""
        return self.inventory.volume_sizes

    @classmethod
    def of(cls, instance: Instance, traits: TypeTraits | None, inventory: Inventory | None = None) -> InstanceFacts:
        """Types DescribeInstanceTypes did not answer for count as burstable when their family is t."""
        return cls(
            instance_id=instance.instance_id, instance_type=instance.instance_type,
            availability_zone=instance.availability_zone, state=instance.state, subnet_id=instance.subnet_id,
            lifecycle=instance.lifecycle, platform=instance.platform, tags=dict(instance.tags),
            instance_storage=traits.instance_storage if traits else False,
            burstable=traits.burstable if traits else burstable_family(instance.instance_type),
            inventory=inventory or Inventory(), settings=instance.settings,
            billing=BillingProduct.of(instance.product, instance.usage_operation, instance.platform),
        )


@dataclass(frozen=True)
class CarryRules:
    """The request's say in how instances move (each instance's tags may override it)."""

    mode: RequestedMode = "auto"
    allow_downtime: bool = False
    probe: HealthProbe | None = None
    max_price: MaxPrice | None = None
    interruption_behavior: InterruptionBehavior = "terminate"
    hooks: InterruptionHooks | None = None  # the request's interruption hooks


DEFAULT_RULES = CarryRules()


def how_it_moves(facts: InstanceFacts, rules: CarryRules, load_balanced: bool) -> CarryPlan | Exclusion:
    """The instance's mode and what it carries, or why it cannot move at all."""
    mode = requested_mode(facts.tags, rules.mode)
    probe = probe_for(facts.tags, rules.probe)
    hooks = hooks_for(facts.tags, rules.hooks)
    for answer in (mode, probe, hooks):
        if isinstance(answer, tuple):
            return answer
    assert not isinstance(mode, tuple) and not isinstance(probe, tuple) and not isinstance(hooks, tuple)
    if facts.settings.tenancy not in (None, "default"):
        return "unsupported_tenancy", f"{facts.settings.tenancy} tenancy: Spot runs on shared (default) tenancy"
    chosen = choose_mode(mode, facts.inventory, load_balanced=load_balanced, probe=probe,
                         allow_downtime=rules.allow_downtime)
    if isinstance(chosen, tuple):
        return chosen
    carried = carry_plan(chosen, facts.inventory, facts.settings.describe(), probe)
    carried.hooks = None if hooks.is_default else hooks
    return carried


def exclusion_reason(facts: InstanceFacts) -> tuple[str, str] | None:
    """Why an instance must not move, as (reason code, human detail), or None."""
    if facts.state != "running":
        return "not_running", f"instance is {facts.state}"
    if facts.lifecycle == "spot":
        return "already_spot", "instance already runs on Spot"
    if facts.lifecycle == "scheduled":
        return "scheduled_instance", "scheduled reserved instance"
    if is_managed(facts.tags) and REVERTED_BY_TAG not in facts.tags:  # a revert's instance may return to Spot
        return "launched_by_product", "a replacement the product launched (an on-demand fallback returns to Spot " \
                                      "through the interruption handling, not a migration)"
    if facts.tags.get(STATEFUL_TAG, "").lower() == "true":
        return "stateful", f"tagged {STATEFUL_TAG}=true"
    if facts.instance_storage:
        return "instance_store", f"{facts.instance_type} has instance-store volumes whose data a replacement would lose"
    if AUTO_SCALING_GROUP_TAG in facts.tags:
        return "auto_scaling_group", f"member of Auto Scaling group {facts.tags[AUTO_SCALING_GROUP_TAG]}"
    if facts.billing.unsupported_reason:
        return "unsupported_product", facts.billing.unsupported_reason
    return None


def no_longer_eligible(instance: Instance, reverting: bool = False) -> tuple[str, str] | None:
    """Checked again right before a launch, days after the plan maybe: the owner may have
    opted out or marked the instance stateful since (the instance's type has not changed). A
    revert's instance must still be the Spot instance it planned."""
    if not is_opted_in(instance.tags):
        return "opted_out", f"no longer tagged {OPT_IN_TAG}=true"
    if reverting:
        return revert_exclusion(InstanceFacts.of(instance, None))
    return exclusion_reason(InstanceFacts.of(instance, None))


def revert_exclusion(facts: InstanceFacts) -> tuple[str, str] | None:
    """Why a migration's current instance cannot go back to on-demand, or None."""
    if facts.state != "running":
        return "not_running", f"instance is {facts.state}"
    if facts.lifecycle != "spot":
        return "already_on_demand", "instance already runs on-demand"
    if facts.tags.get(STATEFUL_TAG, "").lower() == "true":
        return "stateful", f"tagged {STATEFUL_TAG}=true"
    return None


def cpu_statistics(values: list[float]) -> tuple[float, float, float] | None:
    """(mean, p95, max) of CPU utilisation samples, or None without enough data."""
    if len(values) < MIN_CPU_SAMPLES:
        return None
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return statistics.fmean(ordered), p95, ordered[-1]


def classify_workload(values: list[float]) -> Workload:
    """stable: flat, predictable load; burst: mostly idle with sharp peaks; variable: the rest."""
    return _workload(values, cpu_statistics(values))


def _workload(values: list[float], stats: tuple[float, float, float] | None) -> Workload:
    """classify_workload, given cpu_statistics(values) (build_record has them already)."""
    if stats is None:
        return "unknown"
    mean, p95, peak = stats
    median = statistics.median(values)
    if peak >= 80 and (median < 25 or p95 >= 2.5 * max(median, 1.0)):
        return "burst"
    if p95 < 75 and _spread_below(values, mean, STABLE_SPREAD):
        return "stable"
    return "variable"


FLOAT_SAFE_MEAN = 1e-9  # a CPU mean (percent) above which the float standard deviation is exact enough


def _spread_below(values: list[float], mean: float, limit: float) -> bool:
    """Whether pstdev(values) / mean < limit, as statistics.pstdev decides it.

    statistics.pstdev sums exact fractions (~0.1 ms for a week of hourly values, the largest
    cost of the analysis per instance); the float sum errs by ~1e-15, so it decides alone
    unless it lands within SPREAD_TIE of the limit, where the exact one is asked."""
    if mean <= 0:
        return limit > 0.0  # no load at all: no spread
    if mean < FLOAT_SAFE_MEAN:  # squares of such tiny values underflow: only the exact sum is right
        return statistics.pstdev(values) / mean < limit
    spread = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values)) / mean
    if abs(spread - limit) > SPREAD_TIE:
        return spread < limit
    return statistics.pstdev(values) / mean < limit


def risk_level(workload: Workload, burstable: bool, cpu_p95: float | None, pool_count: int) -> Risk:
    """How risky moving this instance is; low-risk instances go in the first wave."""
    if workload == "burst" or pool_count < 2 or (cpu_p95 is not None and cpu_p95 >= 85):
        return "high"
    if workload in ("variable", "unknown") or burstable or pool_count < 3:
        return "medium"
    return "low"


def not_opted_in(facts: InstanceFacts) -> InstanceRecord:
    """Selected by id or tag, but its owner has not opted it in: recorded, never touched."""
    return InstanceRecord(
        instance_id=facts.instance_id, instance_type=facts.instance_type, availability_zone=facts.availability_zone,
        subnet_id=facts.subnet_id, name=facts.name, eligible=False, status="excluded",
        exclusion_reason="not_opted_in", exclusion_detail=f"not tagged {OPT_IN_TAG}=true",
    )


def build_record(
    facts: InstanceFacts,
    *,
    on_demand_hourly: float | None,
    pools: list[Pool],
    cpu_values: list[float],
    target_groups: list[TargetRef],
    min_savings_pct: float,
    rules: CarryRules = DEFAULT_RULES,
) -> InstanceRecord:
    """The plan record of one instance: eligible with its savings, or excluded with a reason.
    `pools`: every Spot pool it may run in, in order (domain/pools.py); the plan keeps the first
    ones within its max price."""
    stats = cpu_statistics(cpu_values)
    workload, p95 = _workload(cpu_values, stats), stats[1] if stats else None
    record = InstanceRecord(
        instance_id=facts.instance_id,
        instance_type=facts.instance_type,
        availability_zone=facts.availability_zone,
        subnet_id=facts.subnet_id,
        name=facts.name,
        workload=workload,
        **_rounded_cpu(stats),
        target_groups=target_groups,
        burstable=facts.burstable,
        on_demand_hourly=on_demand_hourly,
        pools=planned_pools(pools, None),
        risk=risk_level(workload, facts.burstable, p95, min(len(pools), MIGRATION_POOLS)),
        eligible=True,
    )
    excluded = exclusion_reason(facts) or _unpriced(facts, on_demand_hourly, pools)
    if excluded is not None:
        record.exclude(*excluded)
    if not record.eligible or not _carried(record, facts, rules) or not _spot_options(record, facts, rules, pools):
        return record
    assert on_demand_hourly is not None  # _unpriced said so
    record.risk = risk_level(workload, facts.burstable, p95, len(record.pools))  # of the pools within its max price
    # a stateful move takes the volumes along: the stopped original keeps none to pay for
    left_behind = () if record.mode == "stateful" else facts.volumes
    _price(record, on_demand_hourly, record.pools[0].spot_hourly, storage_monthly(left_behind))
    if record.savings_pct < min_savings_pct:
        record.exclude("insufficient_savings",
                       f"Spot saves {record.savings_pct:.1f} %, below the {min_savings_pct:g} % minimum")
    return record


def _rounded_cpu(stats: tuple[float, float, float] | None) -> dict[str, float | None]:
    values = [round(v, 2) for v in stats] if stats else [None, None, None]
    return dict(zip(("cpu_mean", "cpu_p95", "cpu_max"), values, strict=True))


def _carried(record: InstanceRecord, facts: InstanceFacts, rules: CarryRules) -> bool:
    """The record's mode and what it carries; False (excluded, with why) when it cannot move."""
    carry = how_it_moves(facts, rules, load_balanced=bool(record.target_groups))
    if isinstance(carry, tuple):
        record.exclude(*carry)
        return False
    record.mode, record.carry = carry.mode, carry
    return True


def _spot_options(record: InstanceRecord, facts: InstanceFacts, rules: CarryRules, pools: list[Pool]) -> bool:
    """The record's interruption behaviour, its max price and the pools within it; False
    (excluded, with why) when a tag is invalid, hibernation is missing or every pool costs more."""
    assert record.mode is not None and record.on_demand_hourly is not None  # moves, and is priced
    behavior = requested_behavior(facts.tags, rules.interruption_behavior)
    if not isinstance(behavior, tuple):
        behavior = interruption_behavior(behavior, record.mode, facts.settings.hibernation)
    asked = requested_max_price(facts.tags, rules.max_price)
    for answer in (behavior, asked):
        if isinstance(answer, tuple):
            record.exclude(*answer)
            return False
    assert not isinstance(behavior, tuple) and not isinstance(asked, tuple)
    record.interruption_behavior = behavior
    if asked is None:
        return True
    record.max_price = asked.hourly(record.on_demand_hourly)
    record.pools = planned_pools(pools, record.max_price)
    if not record.pools:
        record.exclude(*above_max_price(pools, record.max_price, asked))
        return False
    return True


def _unpriced(facts: InstanceFacts, on_demand_hourly: float | None, pools: list[Pool]) -> tuple[str, str] | None:
    if on_demand_hourly is None:
        product = f" ({facts.billing.name})" if facts.billing.licensed else ""
        return "no_on_demand_price", f"no on-demand price known for {facts.instance_type}{product}"
    if not pools:
        return "no_spot_pool", f"no Spot price for {facts.instance_type} or an equivalent in {facts.availability_zone}"
    return None


def _price(record: InstanceRecord, on_demand_hourly: float, spot_hourly: float, stopped_storage: float) -> None:
    """Savings net of what the migration leaves behind: the stopped original's volumes."""
    record.spot_hourly, record.stopped_storage_monthly = spot_hourly, stopped_storage
    record.monthly_on_demand = round(on_demand_hourly * HOURS_PER_MONTH, 2)
    record.monthly_savings = round((on_demand_hourly - spot_hourly) * HOURS_PER_MONTH - stopped_storage, 2)
    record.savings_pct = round(100.0 * record.monthly_savings / record.monthly_on_demand, 1)


def _total(records: Sequence[InstanceRecord | GroupRecord], field: str) -> float:
    return round(float(sum(getattr(r, field) for r in records)), 2)


def summarize(records: list[InstanceRecord], pricing_source: str, groups: Sequence[GroupRecord] = ()) -> PlanSummary:
    """What the plan promises, in the few numbers the payload carries; Auto Scaling groups count
    as candidates (one each) and add their savings."""
    eligible = [r for r in records if r.eligible]
    moving = [g for g in groups if g.eligible]
    monthly_od = round(_total(eligible, "monthly_on_demand") + _total(moving, "monthly_on_demand"), 2)
    savings = round(_total(eligible, "monthly_savings") + _total(moving, "monthly_savings"), 2)
    everything: list[InstanceRecord | GroupRecord] = [*records, *groups]
    excluded = [x.exclusion_reason for x in everything if not x.eligible]
    return PlanSummary(
        analysed=len(records) + len(groups),
        candidates=len(eligible) + len(moving),
        excluded=len(excluded),
        excluded_by_reason=dict(Counter(excluded)),
        groups=len(moving), groups_excluded=len(groups) - len(moving),
        monthly_on_demand=monthly_od,
        monthly_savings=savings,
        savings_pct=round(100.0 * savings / monthly_od, 1) if monthly_od else 0.0,
        monthly_stopped_storage=_total(eligible, "stopped_storage_monthly"),
        by_workload=dict(Counter(r.workload for r in eligible)),
        by_risk=dict(Counter(r.risk for r in eligible)),
        pricing_source=pricing_source,
    )
