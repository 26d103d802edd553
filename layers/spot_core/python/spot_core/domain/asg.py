"""Auto Scaling groups: which may move to Spot, the mixed instances policy they move to, each
wave's on-demand share, and what the move saves.

A group moves as a whole: its on-demand share above an optional base is lowered wave by wave
(10 % -> 50 % -> 100 % of its instances on Spot) and EC2 Auto Scaling replaces instances, launching
before it terminates. Its configuration as it was (``GroupConfig``) is saved in the plan, so a
rollback restores exactly that. No AWS call here: the services gather the facts through the ports.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from .instance_types import diversified_types, spec
from .pools import PoolKey, priced_pools
from .pricing import LINUX, BillingProduct, SpotPriceStat, monthly
from .tags import STATEFUL_TAG

POLICY_MIN_TYPES = 6  # diversification floor of a group's policy, where the catalog has that many
POLICY_MAX_TYPES = 20  # a bound of our own: the docs recommend >= 10 types, more only adds costlier sizes
PRICED_POOLS = 2  # the Spot estimate: the median of this many cheapest pools (see group_savings)
WAVE_EPSILON = 1e-9  # as plan_waves rounds a wave: 10 % of 30 is 3, not 4 through float noise

# Tags AWS services put on the groups they manage; the product leaves those groups to them.
EKS_TAGS = ("eks:cluster-name", "eks:nodegroup-name")  # EKS managed node groups (capacityType SPOT is theirs)
BEANSTALK_TAGS = ("elasticbeanstalk:environment-name", "elasticbeanstalk:environment-id")
ECS_MANAGED_TAG = "AmazonECSManaged"  # set by ECS when the group backs a capacity provider

GroupStatus = Literal["planned", "excluded", "migrating", "migrated", "failed", "rolling_back", "rolled_back",
                      "rollback_failed"]


class LaunchSource(BaseModel):
    """What the group launches from: a launch template (id and version as the group names it) or a
    launch configuration (a mixed instances policy needs a template: the product makes one)."""

    kind: Literal["launch_template", "launch_configuration"]
    name: str
    version: str | None = None  # "$Default", "$Latest" or a number
    instance_type: str | None = None
    image_id: str | None = None


class GroupConfig(BaseModel):
    """Exactly what a rollback restores: configuration, never instance counts (the group's own
    scaling owns those)."""

    launch_template: dict[str, str] | None = None  # e.g. {"LaunchTemplateId": ..., "Version": ...}
    launch_configuration_name: str | None = None
    mixed_instances_policy: dict[str, Any] | None = None  # as DescribeAutoScalingGroups returned it
    capacity_rebalance: bool = False


class GroupFacts(BaseModel):
    """What EC2 Auto Scaling says about one group, reduced to what the analysis needs."""

    name: str
    arn: str
    tags: dict[str, str] = Field(default_factory=dict)
    source: LaunchSource | None = None
    config: GroupConfig = Field(default_factory=GroupConfig)
    instance_types: dict[str, int] = Field(default_factory=dict)  # type -> running members
    desired: int
    min_size: int
    max_size: int
    on_demand_count: int = 0
    spot_count: int = 0
    availability_zones: list[str] = Field(default_factory=list)
    subnet_ids: list[str] = Field(default_factory=list)
    target_group_arns: list[str] = Field(default_factory=list)
    health_check_type: str = "EC2"
    health_check_grace_period: int = 0
    termination_policies: list[str] = Field(default_factory=list)
    lifecycle_hooks: list[str] = Field(default_factory=list)
    warm_pool: bool = False
    scaling_policies: list[str] = Field(default_factory=list)
    protected_from_scale_in: bool = False  # NewInstancesProtectedFromScaleIn
    stateful_members: int = 0  # members tagged spot-migration:stateful=true
    product: str = LINUX  # billing product (PlatformDetails) of the group's image


# --- what must not move ------------------------------------------------------------------


def group_exclusion(facts: GroupFacts) -> tuple[str, str] | None:
    """Why a group must not move, as (reason code, human detail), or None."""
    for rule in (_managed_elsewhere, _nothing_to_move, _policy_blockers, _data_at_risk):
        reason = rule(facts)
        if reason is not None:
            return reason
    return None


def _managed_elsewhere(facts: GroupFacts) -> tuple[str, str] | None:
    """Groups another AWS service owns: that service rewrites (or fights) a change made to the group."""
    tags = facts.tags
    if any(tag in tags for tag in EKS_TAGS):
        # https://docs.aws.amazon.com/eks/latest/userguide/managed-node-groups.html (Spot: capacityType SPOT)
        return "managed_by_eks", (f"EKS managed node group {tags.get('eks:nodegroup-name', '?')} of cluster "
                                  f"{tags.get('eks:cluster-name', '?')}: move it to Spot with the node group's "
                                  "capacity type")
    if any(tag in tags for tag in BEANSTALK_TAGS):
        # https://docs.aws.amazon.com/elasticbeanstalk/latest/dg/environments-cfg-autoscaling-spot-and-demand.html
        return "managed_by_beanstalk", (f"Elastic Beanstalk environment {tags.get(BEANSTALK_TAGS[0], '?')}: "
                                        "move it to Spot with the environment's EnableSpot option")
    if ECS_MANAGED_TAG in tags and facts.protected_from_scale_in:
        # managed termination protection needs scale-in protection on the group and each instance; ECS lifts it
        # only from instances without tasks, so a replacement could not terminate the others
        # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/managed-termination-protection.html
        return "managed_by_ecs", ("ECS capacity provider with managed termination protection: ECS decides which "
                                  "instances may be terminated")
    return None


def _nothing_to_move(facts: GroupFacts) -> tuple[str, str] | None:
    # a group scaled to 0 (max > 0) still moves: what it launches next comes from the policy
    if facts.max_size <= 0:
        return "empty_group", "maximum size 0: the group runs no instance and cannot launch one"
    if facts.source is None:
        return "no_launch_source", "the group names no launch template or launch configuration"
    if facts.spot_count > 0 and facts.on_demand_count == 0:
        return "already_spot", f"all {facts.spot_count} instances already run on Spot"
    return None


def _policy_blockers(facts: GroupFacts) -> tuple[str, str] | None:
    if facts.warm_pool:
        # PutWarmPool "cannot be called on an Auto Scaling group that has a mixed instances policy or a launch
        # template or launch configuration that requests Spot Instances": a warm pool and Spot exclude each other
        # https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutWarmPool.html
        return "warm_pool", "the group has a warm pool, which EC2 Auto Scaling does not allow with Spot Instances"
    unsupported = _unsupported_overrides(facts.config.mixed_instances_policy)
    if unsupported:
        return "unsupported_policy", (f"the group's mixed instances policy uses {', '.join(unsupported)}, which the "
                                      "product's policy (one instance = one unit, one launch template) would drop")
    billing = BillingProduct.named(facts.product)
    if billing.unsupported_reason:
        return "unsupported_product", billing.unsupported_reason
    return None


def _data_at_risk(facts: GroupFacts) -> tuple[str, str] | None:
    if facts.stateful_members or facts.tags.get(STATEFUL_TAG, "").lower() == "true":
        held = (f"{facts.stateful_members} members tagged {STATEFUL_TAG}=true" if facts.stateful_members
                else f"the group is tagged {STATEFUL_TAG}=true")
        return "stateful_members", f"{held}: an interruption would take their state"
    types = _types_in_use(facts)
    specs = [spec(t) for t in types]
    if types and all(s is not None and s.has_instance_storage for s in specs):
        return "instance_store_only", (f"every type in use ({', '.join(types)}) keeps data on instance store, "
                                       "which a Spot interruption loses")
    return None


def _unsupported_overrides(policy: Mapping[str, Any] | None) -> list[str]:
    """What an existing policy does that a list of instance types cannot say: weights (the waves count
    instances), attribute-based selection, a second launch template (another architecture, maybe)."""
    found = []
    for override in _overrides(policy):
        for key, what in (("WeightedCapacity", "instance weights"), ("InstanceRequirements", "attribute-based "
                          "instance types"), ("LaunchTemplateSpecification", "per-type launch templates")):
            if key in override and what not in found:
                found.append(what)
    return found


def _overrides(policy: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    overrides: list[Mapping[str, Any]] = ((policy or {}).get("LaunchTemplate") or {}).get("Overrides") or []
    return overrides


def _types_in_use(facts: GroupFacts) -> list[str]:
    """The types the group runs, most members first; the launch source's when none runs."""
    running = sorted((t for t, n in facts.instance_types.items() if n > 0), key=lambda t: (-facts.instance_types[t], t))
    if running:
        return running
    return [facts.source.instance_type] if facts.source and facts.source.instance_type else []


def _own_types(facts: GroupFacts) -> list[str]:
    """What the group runs or may run today: members' types, its launch source's, its policy's."""
    declared = [o["InstanceType"] for o in _overrides(facts.config.mixed_instances_policy) if "InstanceType" in o]
    source = [facts.source.instance_type] if facts.source and facts.source.instance_type else []
    return list(dict.fromkeys([*_types_in_use(facts), *source, *declared]))


# --- the policy --------------------------------------------------------------------------


class GroupPolicy(BaseModel):
    """The mixed instances policy a group moves to (its on-demand share is set per wave)."""

    instance_types: list[str]  # overrides, in priority order
    on_demand_base: int
    allocation_strategy: str = "price-capacity-optimized"
    capacity_rebalance: bool = True


def policy_candidates(facts: GroupFacts) -> list[str]:
    """Every type a group's policy may list (its own, then their diversified equivalents): the
    types whose Spot prices the analysis reads."""
    found = _own_types(facts)
    for original in list(found):
        found += [t for t in diversified_types(original, POLICY_MAX_TYPES) if t not in found]
    return found


def target_policy(facts: GroupFacts, prices: Mapping[PoolKey, SpotPriceStat], avoid: Collection[PoolKey],
                  on_demand_base: int) -> GroupPolicy:
    """The group's own types first, then their diversified equivalents (instance_types.diversified_types:
    same architecture, at least the vCPUs and the memory) that have a Spot price in one of the group's AZs.

    The own types stay first and stay in even when unpriced or interrupted: the on-demand part launches
    the first type (the default on-demand allocation is "prioritized"), and price-capacity-optimized
    ignores the order for Spot. An equivalent whose pools in the group's AZs were all interrupted
    recently only fills the list up to POLICY_MIN_TYPES, last; with enough others it is dropped (a
    shallow pool adds little but interruptions).
    Allocation strategies: https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_InstancesDistribution.html
    """
    zones = facts.availability_zones

    def priced(t: str) -> bool:
        return any((t, z) in prices for z in zones)

    def fresh(t: str) -> bool:
        return priced(t) and not all((t, z) in avoid for z in zones if (t, z) in prices)

    own = _own_types(facts)
    chosen = list(own)
    for original in own:
        chosen += [t for t in diversified_types(original, POLICY_MIN_TYPES - 1, fresh) if t not in chosen]
    for original in own:  # too few: the interrupted equivalents fill up to the minimum, last
        for candidate in diversified_types(original, POLICY_MIN_TYPES - 1, priced):
            if len(chosen) < POLICY_MIN_TYPES and candidate not in chosen:
                chosen.append(candidate)
    return GroupPolicy(instance_types=chosen[:POLICY_MAX_TYPES],
                       on_demand_base=min(max(on_demand_base, 0), max(facts.desired, 0)))


# --- the waves ---------------------------------------------------------------------------
# EC2 Auto Scaling "converts the percentage to the equivalent number of instances. If the result creates
# a fractional number, it rounds up to the next integer in favor of On-Demand Instances" (above the base;
# a base larger than the group is the whole group). https://docs.aws.amazon.com/autoscaling/ec2/userguide/
# mixed-instances-groups-set-up-overview.html#mixed-instances-group-scaling-behavior


def _on_demand_above(above: int, percentage: int) -> int:
    """On-demand instances above the base, as EC2 Auto Scaling rounds them (up)."""
    return -(-above * percentage // 100)


def _spot_under(desired: int, on_demand_base: int, percentage: int) -> int:
    """Spot instances EC2 Auto Scaling runs in a group of ``desired`` with this distribution."""
    above = desired - min(on_demand_base, desired)
    return above - _on_demand_above(above, percentage)


def wave_distribution(desired: int, on_demand_base: int, percent: float) -> dict[str, int]:
    """The InstancesDistribution numbers that put ``percent`` % of the group's instances on Spot.

    The wave's Spot count is rounded up as plan_waves rounds a wave (every wave moves at least one
    instance where it can), never more than the instances above the base; 100 % is all of them. The
    percentage is the largest whole on-demand share that reaches that count under EC2 Auto Scaling's
    rounding: exact up to 100 instances above the base, beyond that the nearest count above it.
    """
    if desired < 0 or on_demand_base < 0 or not 0 <= percent <= 100:
        raise ValueError(f"no distribution for desired {desired}, base {on_demand_base}, {percent} % on Spot")
    base = min(on_demand_base, desired)
    above = desired - base
    if above == 0:  # nothing to move now; what the group launches later gets the wave's share
        return {"OnDemandBaseCapacity": base, "OnDemandPercentageAboveBaseCapacity": math.floor(100 - percent)}
    spot = min(above, math.ceil(desired * percent / 100 - WAVE_EPSILON))
    return {"OnDemandBaseCapacity": base, "OnDemandPercentageAboveBaseCapacity": 100 * (above - spot) // above}


def spot_count(desired: int, distribution: Mapping[str, int]) -> int:
    """Spot instances EC2 Auto Scaling runs in a group of ``desired`` under ``distribution``."""
    return _spot_under(desired, distribution["OnDemandBaseCapacity"],
                       distribution["OnDemandPercentageAboveBaseCapacity"])


def spot_target(desired: int, on_demand_base: int, percent: float) -> int:
    """Spot instances the group runs once the wave's distribution is in place (EC2 Auto Scaling's count)."""
    distribution = wave_distribution(desired, on_demand_base, percent)
    return _spot_under(desired, distribution["OnDemandBaseCapacity"],
                       distribution["OnDemandPercentageAboveBaseCapacity"])


# --- savings -----------------------------------------------------------------------------


class GroupSavings(BaseModel):
    monthly_on_demand: float  # the group's desired instances, all on-demand
    monthly_spot: float  # the same instances with the policy: the base on-demand, the rest on Spot
    monthly_savings: float
    savings_pct: float


def group_savings(facts: GroupFacts, on_demand_hourly: Mapping[str, float], policy: GroupPolicy,
                  prices: Mapping[PoolKey, SpotPriceStat]) -> GroupSavings:
    """What the policy saves at 100 % (monthly maths and rounding as domain/analysis.py prices an instance).

    An instance costs the average on-demand price of the group's members (its launch source's type
    when none runs). The Spot estimate is the median of the PRICED_POOLS cheapest pools of the policy's
    types in the group's AZs: price-capacity-optimized takes the lowest priced of the pools with the most
    capacity, not always the cheapest pool, so the estimate sits between the cheapest and the next.
    Raises ValueError without an on-demand price for a type in use or a Spot price for the policy
    (plan_group checks first).
    """
    hourly_on_demand = _average_on_demand(facts, on_demand_hourly)
    spot_hourly = _expected_spot(facts, policy, prices)
    desired = max(facts.desired, 0)
    base = min(policy.on_demand_base, desired)
    on_demand = round(monthly(hourly_on_demand * desired), 2)
    spot = round(monthly(hourly_on_demand * base + spot_hourly * (desired - base)), 2)
    savings = round(monthly((hourly_on_demand - spot_hourly) * (desired - base)), 2)
    return GroupSavings(monthly_on_demand=on_demand, monthly_spot=spot, monthly_savings=savings,
                        savings_pct=round(100.0 * savings / on_demand, 1) if on_demand else 0.0)


def _average_on_demand(facts: GroupFacts, on_demand_hourly: Mapping[str, float]) -> float:
    types = _types_in_use(facts)
    missing = [t for t in types if t not in on_demand_hourly]
    if not types or missing:
        raise ValueError(f"no on-demand price for {', '.join(missing) or 'the group (no type known)'}")
    weights = {t: facts.instance_types.get(t, 0) or 1 for t in types}  # the launch source's type: weight 1
    return sum(on_demand_hourly[t] * n for t, n in weights.items()) / sum(weights.values())


def _expected_spot(facts: GroupFacts, policy: GroupPolicy, prices: Mapping[PoolKey, SpotPriceStat]) -> float:
    pools = priced_pools(policy.instance_types, facts.availability_zones, prices)
    if not pools:
        raise ValueError(f"no Spot price for {', '.join(policy.instance_types)} in "
                         f"{', '.join(facts.availability_zones) or 'no AZ'}")
    cheapest = sorted(p.spot_hourly for p in pools)[:PRICED_POOLS]
    return statistics.median(cheapest)


# --- the plan entry ----------------------------------------------------------------------


class GroupRecord(BaseModel):
    """One group of the plan, stored next to the InstanceRecords."""

    name: str
    arn: str
    eligible: bool
    exclusion_reason: str | None = None
    exclusion_detail: str | None = None
    desired: int = 0
    instance_types: dict[str, int] = Field(default_factory=dict)
    availability_zones: list[str] = Field(default_factory=list)
    target_group_arns: list[str] = Field(default_factory=list)
    config: GroupConfig = Field(default_factory=GroupConfig)  # saved for rollback
    policy: GroupPolicy | None = None  # eligible groups only
    monthly_on_demand: float = 0.0
    monthly_savings: float = 0.0
    savings_pct: float = 0.0
    status: GroupStatus = "planned"
    refresh_id: str | None = None
    wave_spot_share: dict[str, float] = Field(default_factory=dict)  # wave index -> the Spot share reached
    created_launch_template: str | None = None  # made from the group's launch configuration
    attempts: list[str] = Field(default_factory=list)
    wave: int | None = None  # the wave whose refresh `refresh_id` is (or the rollback's: None)
    phase_since: str | None = None  # when that refresh started
    full_refresh: bool = False  # the refresh replaces every member (skip matching left too few on Spot)
    restore_refresh_id: str | None = None  # the rollback's refresh back to the saved configuration
    capacity_at_wave: int | None = None  # the capacity the wave's share was set for
    distribution: dict[str, int] = Field(default_factory=dict)  # the wave's InstancesDistribution numbers
    reapplied: int = 0  # times the wave's share was set again for a capacity a scaling policy changed

    @property
    def touched(self) -> bool:
        """Whether a migration changed anything of the group (the rollback restores it)."""
        return self.status not in ("planned", "excluded") or bool(self.refresh_id or self.created_launch_template)

    def template(self) -> dict[str, str] | None:
        """The launch template (id and version) the group's mixed instances policy launches from."""
        if self.created_launch_template:
            return {"LaunchTemplateId": self.created_launch_template, "Version": "$Latest"}
        if self.config.launch_template:
            return dict(self.config.launch_template)
        spec = ((self.config.mixed_instances_policy or {}).get("LaunchTemplate") or {}).get(
            "LaunchTemplateSpecification") or {}
        return {k: str(v) for k, v in spec.items() if k in ("LaunchTemplateId", "Version")} or None

    def exclude(self, reason: str, detail: str) -> None:
        self.eligible, self.status, self.policy = False, "excluded", None
        self.exclusion_reason, self.exclusion_detail = reason, detail


def plan_group(facts: GroupFacts, *, on_demand_hourly: Mapping[str, float], prices: Mapping[PoolKey, SpotPriceStat],
               avoid: Collection[PoolKey] = (), on_demand_base: int = 0, min_savings_pct: float = 0.0) -> GroupRecord:
    """The plan record of one group: eligible with its policy and savings, or excluded with a reason
    (and no policy). A group at 0 instances has no savings to measure and is not held to the minimum."""
    record = GroupRecord(
        name=facts.name, arn=facts.arn, eligible=True, desired=facts.desired,
        instance_types=dict(facts.instance_types), availability_zones=list(facts.availability_zones),
        target_group_arns=list(facts.target_group_arns), config=facts.config.model_copy(deep=True),
    )
    excluded = group_exclusion(facts)
    if excluded is not None:
        record.exclude(*excluded)
        return record
    policy = target_policy(facts, prices, avoid, on_demand_base)
    unpriced = _unpriced(facts, on_demand_hourly, policy, prices)
    if unpriced is not None:
        record.exclude(*unpriced)
        return record
    savings = group_savings(facts, on_demand_hourly, policy, prices)
    record.policy = policy
    record.monthly_on_demand, record.monthly_savings = savings.monthly_on_demand, savings.monthly_savings
    record.savings_pct = savings.savings_pct
    if savings.monthly_on_demand and savings.savings_pct < min_savings_pct:
        record.exclude("insufficient_savings",
                       f"Spot saves {savings.savings_pct:.1f} %, below the {min_savings_pct:g} % minimum")
    return record


def _unpriced(facts: GroupFacts, on_demand_hourly: Mapping[str, float], policy: GroupPolicy,
              prices: Mapping[PoolKey, SpotPriceStat]) -> tuple[str, str] | None:
    types = _types_in_use(facts)
    missing = [t for t in types if t not in on_demand_hourly]
    if not types or missing:
        return "no_on_demand_price", f"no on-demand price known for {', '.join(missing) or 'the group (no type)'}"
    if not priced_pools(policy.instance_types, facts.availability_zones, prices):
        return "no_spot_pool", (f"no Spot price for {', '.join(policy.instance_types)} in "
                                f"{', '.join(facts.availability_zones) or 'the group (no AZ)'}")
    return None


# --- what the group is told ------------------------------------------------------------------


def mixed_instances_policy(template: Mapping[str, str], policy: GroupPolicy,
                           distribution: Mapping[str, int]) -> dict[str, Any]:
    """The whole MixedInstancesPolicy of a wave (a partial one would reset what it leaves out)."""
    return {
        "LaunchTemplate": {"LaunchTemplateSpecification": dict(template),
                           "Overrides": [{"InstanceType": t} for t in policy.instance_types]},
        "InstancesDistribution": {**distribution, "OnDemandAllocationStrategy": "prioritized",
                                  "SpotAllocationStrategy": policy.allocation_strategy},
    }


def restored_configuration(config: GroupConfig) -> dict[str, Any]:
    """UpdateAutoScalingGroup fields that put a group's saved configuration back: its own mixed
    instances policy, or its launch template or configuration (which drops the migration's policy:
    its overrides cannot be deleted, only replaced), and its Capacity Rebalancing."""
    fields: dict[str, Any] = {"CapacityRebalance": config.capacity_rebalance}
    if config.mixed_instances_policy:
        fields["MixedInstancesPolicy"] = config.mixed_instances_policy
    elif config.launch_template:
        fields["LaunchTemplate"] = dict(config.launch_template)
    elif config.launch_configuration_name:
        fields["LaunchConfigurationName"] = config.launch_configuration_name
    return fields


def realised_group(group: GroupRecord, facts: GroupFacts,
                   prices: Mapping[PoolKey, SpotPriceStat]) -> tuple[float, float]:
    """(monthly on-demand before, monthly cost now) of a migrated group as it runs now: its members
    on-demand at the price the plan had for its types (the plan's on-demand cost per instance), its
    Spot members at today's median Spot price of the types it runs, in its AZs (a type without a
    price there at the plan's per-instance Spot estimate)."""
    members = facts.on_demand_count + facts.spot_count
    per_instance = group.monthly_on_demand / group.desired if group.desired else 0.0
    planned_spot = (group.monthly_on_demand - group.monthly_savings) / group.desired if group.desired else 0.0
    priced = [prices[(t, z)].median for t in facts.instance_types for z in facts.availability_zones
              if (t, z) in prices]
    spot_each = monthly(statistics.median(priced)) if priced else planned_spot
    now = facts.on_demand_count * per_instance + facts.spot_count * spot_each
    return round(members * per_instance, 2), round(now, 2)
