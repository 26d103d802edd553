"""EC2 Auto Scaling for the embedded runtime: mixed instances groups, instance refresh and
Capacity Rebalancing, behind the real Auto Scaling API (moto's, completed here).

What moto 5.2.5 does: groups, launch configurations and templates, tags, target groups
(it registers the members of attached target groups), DescribeAutoScalingGroups, and a
mixed instances policy it stores but launches from as if every instance were On-Demand of
the first override, all in the group's first subnet. It has no instance refresh, ignores
CapacityRebalance on UpdateAutoScalingGroup, drops the mixed instances policy of a group
updated without one, and reports every member with the group's current launch template.

What this module simulates, as AWS documents it:

- Launches (create, scale-out, replacing an unhealthy or terminated member, a refresh's
  batches, rebalancing) follow the configuration the group launches from. With a mixed
  instances policy: the On-Demand base first, then OnDemandPercentageAboveBaseCapacity of
  the capacity above the base, "rounded up to the next integer in favor of On-Demand
  Instances", the rest Spot ("Scaling behavior" in
  https://docs.aws.amazon.com/autoscaling/ec2/userguide/mixed-instances-groups-set-up-overview.html);
  each launch is the next instance of that split over the members kept. Each goes to the
  group's Availability Zone with the fewest members, the next one when it has no capacity.
  On-Demand takes the overrides in order (prioritized); Spot (price-capacity-optimized, and
  the other strategies alike) the cheapest pool of the runtime's market (market.py) that has
  capacity: a pool the market refuses is skipped. Spot members are Spot instances in moto
  (lifecycle spot, a fulfilled one-time request), tagged with the group's PropagateAtLaunch
  tags and aws:autoscaling:groupName, registered in the group's target groups, deregistered
  when the group terminates them. Scale-in terminates from the market above its share first,
  then from the zone with the most members, members that do not match the configuration
  first, then the oldest (same page, "When the size of the group decreases").
- Purchase options: "When you update a group to specify a mixed instances policy [...] existing
  instances may be replaced to match the new purchasing options [...] gradually terminated and
  relaunched [...] launches new instances before terminating the old ones" (UpdateAutoScalingGroup
  API reference). A group whose members are off its split replaces the surplus market by itself, a
  tenth of the group (one at least) at a time, each old one terminated once the new ones are
  InService and past the group's warmup (DefaultInstanceWarmup, else HealthCheckGracePeriod);
  never while a refresh runs.
- Health: a member EC2 stopped or terminated, or set Unhealthy, is terminated and replaced.
  DescribeScalingActivities lists the launches (failed ones with EC2's error) and terminations.
- Each member reports the launch template version (or launch configuration) it was launched
  from; a group with a mixed instances policy reports no top-level LaunchTemplate; an update
  that names no configuration keeps it; CapacityRebalance and DefaultInstanceWarmup are kept.
- Instance refresh (Rolling; https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-overview.html
  and the RefreshPreferences API reference): one refresh at a time (InstanceRefreshInProgress).
  Batches keep ceil(MinHealthyPercentage x desired) members in service and at most
  floor(MaxHealthyPercentage x desired) in the group: with 100/110 one new instance is launched
  above desired, and its old one is terminated once the new one is InService and past
  InstanceWarmup (default: DefaultInstanceWarmup, else HealthCheckGracePeriod); when the bounds
  leave no room, an explicit MaxHealthyPercentage launches one first, an omitted one terminates
  and launches at once. SkipMatching replaces only what does not match: launch template id and
  version (or launch configuration), an instance type among the overrides, and the market the
  distribution needs (a refresh to a 50 % Spot share replaces only the On-Demand members above
  it; asg-instance-refresh-skip-matching.html). A DesiredConfiguration is launched from during
  the refresh and saved on the group when it succeeds. CheckpointPercentages pause it for
  CheckpointDelay (default 3600 s); BakeTime ends it through Baking. Status Pending ->
  InProgress -> Successful | Failed | Cancelled; PercentageComplete counts replacements healthy
  and warmed up. A batch waits for any other replacement in flight to end (the refresh stays
  Pending until its first batch can start). A refresh that cannot launch what it misses for an
  hour fails (AutoRollback rolls it back).
  RollbackInstanceRefresh (instance-refresh-rollback.html) replaces back, to the configuration
  the group had when the refresh started, what the refresh deployed; as on AWS it is refused
  (IrreversibleInstanceRefresh) for a refresh started without a DesiredConfiguration or a group
  on a launch template's $Latest or $Default version. CancelInstanceRefresh lets the batch in
  flight finish (Cancelling -> Cancelled) and keeps what was replaced.
- Capacity Rebalancing (https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-capacity-rebalancing.html):
  on a rebalance recommendation or an interruption notice for a Spot member (the runtime's
  `simulate`), a group with CapacityRebalance launches a replacement in another pool at once
  and terminates the member when the replacement passes its health check; without it the
  member is replaced after EC2 takes it back, like any unhealthy member.

Time is the runtime's (health.py `runtime_clock`): its virtual clock in timing mode, else real
time plus the fast-forwarded Waits. Nothing runs in the background: what a group did by now
(launches, terminations, a refresh's batches, back-dated to when they happened) is worked out
when any Auto Scaling call or DescribeInstances is answered. A member is InService when EC2 says
it runs (at once without the timing model, after its boot with it); a group whose health check
type is ELB also waits for its target groups to say healthy.

Not simulated: weights, InstanceRequirements, warm pools, lifecycle hooks, alarms of a refresh,
the ReplaceRootVolume strategy, suspended processes, scaling activities' full causes, exceeding
MaxSize. Guessed where AWS gives no number: the pace of the purchase-option replacement
("gradually"), and which members a batch takes (the oldest). In timing mode a batch can only be
launched when the group is next looked at (EC2's boot cannot be back-dated), so a refresh there
may take up to one poll interval longer per batch than on AWS; an ELB health check is seen
healthy when looked at, its moment not back-dated.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.exceptions import ServiceException

from .health import runtime_clock
from .market import _spot_request
from .patches import Patches

ON_DEMAND, SPOT = "on-demand", "spot"
GROUP_TAG = "aws:autoscaling:groupName"
ROLLING_BACK, CANCELLING = "RollbackInProgress", "Cancelling"
REBALANCE, PURCHASE_OPTIONS = "capacity rebalancing", "purchase options"  # why a member retires, besides a refresh
ACTIVE = frozenset({"Pending", "InProgress", CANCELLING, ROLLING_BACK, "Baking"})
UNPINNED_VERSIONS = (None, "$Latest", "$Default")  # a rollback cannot return to these
STALL_SECONDS = 3600.0  # a refresh that cannot launch healthy instances fails after an hour
CHECKPOINT_DELAY = 3600  # CheckpointDelay when CheckpointPercentages come without one
NOT_COUNTED = ("Standby", "EnteringStandby", "Detaching", "Detached")  # lifecycle states outside the capacity
ALIVE = ("pending", "running")
MAX_ACTIVITIES = 1000  # scaling activities kept per group, newest first
MAX_STEPS = 10_000  # events worked out per look at a group (a safety net, never reached in practice)
# What AWS reports for what a mixed instances policy leaves out (InstancesDistribution API reference).
DEFAULT_DISTRIBUTION = {"OnDemandAllocationStrategy": "prioritized", "OnDemandBaseCapacity": 0,
                        "OnDemandPercentageAboveBaseCapacity": 100, "SpotAllocationStrategy": "lowest-price",
                        "SpotInstancePools": 2}


def on_demand_count(capacity: int, base: int, percentage: int) -> int:
    """On-Demand instances in a group of `capacity`: the base first, then `percentage` of the rest,
    rounded up in favour of On-Demand."""
    in_base = min(capacity, base)
    return in_base + -(-(capacity - in_base) * percentage // 100)


def _error(code: str, message: str) -> ServiceException:
    from moto.autoscaling.exceptions import AutoscalingClientError

    return AutoscalingClientError(code, message)


# --- what a group launches -------------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchSpec:
    """A launch template (id and version as configured) or a launch configuration, the instance
    types a mixed instances policy overrides it with, and its On-Demand/Spot distribution."""

    template_id: str | None = None
    version: str | None = None  # "3", "$Latest", "$Default"; None: $Default
    configuration: str | None = None  # a launch configuration's name
    overrides: tuple[str, ...] = ()
    base: int = 0
    percentage: int = 100

    def on_demand(self, capacity: int) -> int:
        return on_demand_count(capacity, self.base, self.percentage)

    @property
    def pinned(self) -> bool:
        """A configuration a rollback can return to: not a template's $Latest or $Default."""
        return self.configuration is not None or self.version not in UNPINNED_VERSIONS


def spec_of_group(group: Any) -> LaunchSpec:
    """What the group launches from, as saved on it."""
    if group.mixed_instances_policy:
        return _spec_of_policy(group.mixed_instances_policy, group.ec2_backend)
    if group.ec2_launch_template is not None:
        return LaunchSpec(template_id=group.ec2_launch_template.id, version=group.launch_template_version)
    return LaunchSpec(configuration=group.launch_config.name)


def spec_of_desired(desired: dict[str, Any] | None, ec2: Any) -> LaunchSpec | None:
    """A refresh's DesiredConfiguration (None: the group's own)."""
    if not desired:
        return None
    if desired.get("MixedInstancesPolicy"):
        return _spec_of_policy(desired["MixedInstancesPolicy"], ec2)
    template = desired.get("LaunchTemplate") or {}
    return LaunchSpec(template_id=_template_id(template, ec2), version=template.get("Version"))


def _spec_of_policy(policy: dict[str, Any], ec2: Any) -> LaunchSpec:
    template = policy["LaunchTemplate"]
    distribution = {**DEFAULT_DISTRIBUTION, **(policy.get("InstancesDistribution") or {})}
    return LaunchSpec(
        template_id=_template_id(template["LaunchTemplateSpecification"], ec2),
        version=template["LaunchTemplateSpecification"].get("Version"),
        overrides=tuple(o["InstanceType"] for o in template.get("Overrides") or [] if o.get("InstanceType")),
        base=int(distribution["OnDemandBaseCapacity"]),
        percentage=int(distribution["OnDemandPercentageAboveBaseCapacity"]))


def _template_id(specification: dict[str, Any], ec2: Any) -> str:
    if specification.get("LaunchTemplateId"):
        return str(specification["LaunchTemplateId"])
    return str(ec2.get_launch_template_by_name(specification["LaunchTemplateName"]).id)


def _with_default_distribution(policy: dict[str, Any]) -> dict[str, Any]:
    return {**policy, "InstancesDistribution": {**DEFAULT_DISTRIBUTION, **(policy.get("InstancesDistribution") or {})}}


# --- members ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Launch:
    """How a member was launched: when (the runtime's seconds) and from what."""

    at: float
    template_id: str | None = None
    version: str | None = None  # the number it was launched from
    configuration: str | None = None


@dataclass(frozen=True)
class Member:
    state: Any  # moto's InstanceState: the membership DescribeAutoScalingGroups shows
    launch: Launch

    @property
    def instance(self) -> Any:
        return self.state.instance

    @property
    def id(self) -> str:
        return str(self.state.instance.id)

    @property
    def market(self) -> str:
        return SPOT if self.instance.lifecycle == "spot" else ON_DEMAND

    @property
    def az(self) -> str:
        return str(self.state.availability_zone)

    @property
    def instance_type(self) -> str:
        return str(self.instance.instance_type)


@dataclass(frozen=True)
class Retirement:
    """A member on its way out: it serves until the instances launched since `since` are ready
    (InService, healthy, `warmup` seconds later); `owner`: a refresh's id, REBALANCE or PURCHASE_OPTIONS."""

    since: float
    warmup: float
    owner: str


# --- instance refresh ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preferences:
    """A refresh's preferences, with AWS's defaults (RefreshPreferences API reference)."""

    min_healthy: int = 90
    max_healthy: int | None = None  # None: not given (100, and terminate-and-launch when there is no room)
    warmup: float = 0.0
    skip_matching: bool = False
    checkpoints: tuple[int, ...] = ()
    checkpoint_delay: int = CHECKPOINT_DELAY
    auto_rollback: bool = False
    bake_time: int = 0

    @classmethod
    def of(cls, raw: dict[str, Any], group: Any) -> Preferences:
        _validate(raw)
        warmup = raw.get("InstanceWarmup")
        if warmup is None:
            warmup = getattr(group, "default_instance_warmup", None) or group.health_check_grace_period or 0
        return cls(min_healthy=int(raw.get("MinHealthyPercentage", 90)),
                   max_healthy=int(raw["MaxHealthyPercentage"]) if "MaxHealthyPercentage" in raw else None,
                   warmup=float(warmup), skip_matching=bool(raw.get("SkipMatching", False)),
                   checkpoints=tuple(int(c) for c in raw.get("CheckpointPercentages") or ()),
                   checkpoint_delay=int(raw.get("CheckpointDelay", CHECKPOINT_DELAY)),
                   auto_rollback=bool(raw.get("AutoRollback", False)), bake_time=int(raw.get("BakeTime", 0)))

    def bounds(self, desired: int) -> tuple[int, int]:
        """(members kept in service, members at most) while replacing."""
        floor = -(-desired * self.min_healthy // 100)
        ceiling = desired * (self.max_healthy or 100) // 100
        if ceiling > floor:
            return floor, ceiling
        if self.max_healthy is not None:  # launch one before terminating one
            return floor, floor + 1
        return max(0, ceiling - 1), max(ceiling, 1)  # terminate one and launch its replacement at once

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"MinHealthyPercentage": self.min_healthy, "InstanceWarmup": int(self.warmup),
                               "SkipMatching": self.skip_matching, "AutoRollback": self.auto_rollback,
                               "ScaleInProtectedInstances": "Ignore", "StandbyInstances": "Ignore",
                               "BakeTime": self.bake_time}
        if self.max_healthy is not None:
            out["MaxHealthyPercentage"] = self.max_healthy
        if self.checkpoints:
            out |= {"CheckpointPercentages": list(self.checkpoints), "CheckpointDelay": self.checkpoint_delay}
        return out


def _validate(raw: dict[str, Any]) -> None:
    _validate_healthy(raw)
    _validate_checkpoints(raw)


def _validate_healthy(raw: dict[str, Any]) -> None:
    minimum, maximum = raw.get("MinHealthyPercentage"), raw.get("MaxHealthyPercentage")
    if maximum is not None and minimum is None:
        raise _error("ValidationError", "MinHealthyPercentage must be specified when MaxHealthyPercentage is.")
    if maximum is not None and not (100 <= int(maximum) <= 200 and int(maximum) - int(minimum or 0) <= 100):
        raise _error("ValidationError", "MaxHealthyPercentage must be between 100 and 200, and at most 100 "
                                        "above MinHealthyPercentage.")


def _validate_checkpoints(raw: dict[str, Any]) -> None:
    checkpoints = [int(c) for c in raw.get("CheckpointPercentages") or ()]
    if checkpoints != sorted(set(checkpoints)) or any(not 0 < c <= 100 for c in checkpoints):
        raise _error("ValidationError", "CheckpointPercentages must be unique, ascending, between 1 and 100.")
    if "CheckpointDelay" in raw and not checkpoints:
        raise _error("ValidationError", "CheckpointDelay requires CheckpointPercentages.")


@dataclass
class Refresh:
    refresh_id: str
    group_name: str
    started_at: float
    preferences: Preferences
    previous: LaunchSpec  # the group's configuration when it started: what a rollback returns to
    target: LaunchSpec | None  # its DesiredConfiguration, if it has one
    desired: dict[str, Any] | None
    originals: frozenset[str]  # the members when it started (what it replaces without SkipMatching)
    status: str = "Pending"
    reason: str | None = None
    ended_at: float | None = None
    step_at: float = 0.0  # when its last batch started
    total: int | None = None  # instances to update when it started
    replacements: set[str] = field(default_factory=set)  # what its batches launched
    stalled_since: float | None = None  # since when the group misses instances it could not launch
    paused_until: float | None = None  # a checkpoint, or the bake time
    checkpoints_passed: int = 0
    baked: bool = False
    rollback: dict[str, Any] | None = None  # RollbackDetails (times as the runtime's seconds)
    final: tuple[int, int] | None = None  # (InstancesToUpdate, PercentageComplete) once it ended

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def reversible(self) -> bool:
        return self.target is not None and self.previous.pinned

    def next_checkpoint(self) -> int | None:
        ahead = [c for c in self.preferences.checkpoints[self.checkpoints_passed:] if c < 100]
        return ahead[0] if ahead else None


@dataclass
class GroupState:
    """What the simulator keeps about a group besides moto's model."""

    retiring: dict[str, Retirement] = field(default_factory=dict)
    refreshes: list[Refresh] = field(default_factory=list)  # newest first
    activities: list[dict[str, Any]] = field(default_factory=list)  # newest first
    last_error: str | None = None
    markets_from: float | None = None  # when the last batch replacing purchase options ended

    def active_refresh(self) -> Refresh | None:
        return next((r for r in self.refreshes if r.active), None)


class AutoScalingSimulator:
    """EC2 Auto Scaling's launches, instance refresh and Capacity Rebalancing for one LocalRuntime
    (see the module docstring)."""

    def __init__(self, runtime: Any):
        self.runtime = runtime
        self.clock = runtime_clock(runtime)
        self._launches: dict[str, Launch] = {}
        self._registered: set[tuple[str, str]] = set()  # (member, target group) registrations made
        self._lock = threading.RLock()
        self._patches = Patches()
        self._epoch = datetime.now(UTC)

    # --- time ----------------------------------------------------------------------------------------
    def _wall(self, seconds: float) -> datetime:
        """The date a moment of the runtime's clock stands for."""
        timing = self.runtime.timing
        epoch: datetime = self._epoch if timing is None else timing.clock.epoch
        return epoch + timedelta(seconds=seconds)

    # --- members -------------------------------------------------------------------------------------
    def _state(self, group: Any) -> GroupState:
        state = getattr(group, "_simulated_state", None)
        if state is None:
            state = group._simulated_state = GroupState()
        return state

    def _launch_of(self, instance: Any) -> Launch:
        known = self._launches.get(instance.id)
        if known is not None:
            return known
        tags = {t.get("key"): t.get("value") for t in instance.get_tags()}  # attached, not launched by the group
        return Launch(float("-inf"), tags.get("aws:ec2launchtemplate:id"), tags.get("aws:ec2launchtemplate:version"))

    def _members(self, group: Any) -> list[Member]:
        return [Member(s, self._launch_of(s.instance)) for s in group.instance_states]

    def _live(self, group: Any, state: GroupState) -> list[Member]:
        """The members that make the group's capacity: alive, counted, not on their way out."""
        return [m for m in self._members(group) if m.id not in state.retiring and m.instance.state in ALIVE
                and m.state.lifecycle_state not in NOT_COUNTED]

    def _deficit(self, group: Any, state: GroupState) -> int:
        return int(group.desired_capacity or 0) - len(self._live(group, state))

    def _in_service_at(self, member: Member) -> float | None:
        """When the member went InService: when EC2 ran it (its boot, in timing mode)."""
        if member.instance.state != "running":
            return None
        timing = self.runtime.timing
        running = timing.lifecycle.running_at.get(member.id) if timing is not None else None
        return member.launch.at if running is None else max(member.launch.at, running)

    def _ready_at(self, group: Any, member: Member, warmup: float) -> float | None:
        """When the member is InService, healthy and warmed up; None: not yet known."""
        at = self._in_service_at(member)
        if at is None or not self._healthy_in_targets(group, member.id):
            return None
        return at + warmup

    def _healthy_in_targets(self, group: Any, instance_id: str) -> bool:
        if group.health_check_type != "ELB":
            return True
        elbv2 = group.autoscaling_backend.elbv2_backend
        for arn in group.target_group_arns:
            if arn in elbv2.target_groups:
                health = elbv2.describe_target_health(arn, [{"Id": instance_id}])
                if not health or health[0].status != "healthy":
                    return False
        return True

    # --- looking at a group: what it did by now ---------------------------------------------------------
    def settle(self, group: Any) -> None:
        """Work out what the group did up to now: its refresh's batches and the ends of retiring
        members (each at the moment it happened), then its health checks and its capacity."""
        with self._lock:
            state, now = self._state(group), self.clock()
            self._drop_unhealthy(group, state, now)
            for _ in range(MAX_STEPS):
                event = self._next_event(group, state, now)
                if event is None:
                    break
                at, happen = event
                happen(at)
            self._maintain(group, state, now)
            self._publish(group, now)
            if state.active_refresh() is not None or not self._purchase_surplus(group, state):
                state.markets_from = None

    def settle_all(self, backend: Any) -> None:
        for group in list(backend.autoscaling_groups.values()):
            self.settle(group)

    def _next_event(self, group: Any, state: GroupState, now: float) -> tuple[float, Callable[[float], None]] | None:
        events = (self._retirement_due(group, state), self._refresh_due(group, state),
                  self._purchase_options_due(group, state, now))
        due = [e for e in events if e is not None and e[0] <= now]
        return min(due, key=lambda e: e[0]) if due else None

    def _drop_unhealthy(self, group: Any, state: GroupState, now: float) -> None:
        """EC2 health checks (and SetInstanceHealth): a member EC2 stopped or terminated, or one set
        Unhealthy, is terminated; the capacity it leaves is launched again."""
        for member in self._members(group):
            if member.state.lifecycle_state in NOT_COUNTED:
                continue
            if member.instance.state not in ALIVE or member.state.health_status == "Unhealthy":
                self._terminate(group, state, member, now, "an EC2 health check indicating it has been "
                                                           f"{member.instance.state} or marked unhealthy")
        for instance_id in set(state.retiring) - {s.instance.id for s in group.instance_states}:
            del state.retiring[instance_id]

    def _maintain(self, group: Any, state: GroupState, at: float, avoid: frozenset[tuple[str, str]] = frozenset()
                  ) -> None:
        """Keep the desired capacity: launch what is missing (AWS keeps trying), scale in what is above."""
        deficit = self._deficit(group, state)
        if deficit > 0:
            launched = self._launch(group, state, deficit, at, avoid)
            refresh = state.active_refresh()
            if refresh is not None:  # a refresh waits for the capacity it misses, an hour at most
                refresh.stalled_since = None if len(launched) == deficit else (refresh.stalled_since or at)
        elif deficit < 0:
            self._scale_in(group, state, -deficit, at)

    def _publish(self, group: Any, now: float) -> None:
        """LifecycleState as DescribeAutoScalingGroups shows it: Pending until InService."""
        for member in self._members(group):
            if member.state.lifecycle_state in NOT_COUNTED:
                continue
            at = self._in_service_at(member)
            member.state.lifecycle_state = "InService" if at is not None and at <= now else "Pending"
            self._register(group, member.id)

    # --- retiring members ------------------------------------------------------------------------------
    def _retirement_due(self, group: Any, state: GroupState) -> tuple[float, Callable[[float], None]] | None:
        if not state.retiring or self._deficit(group, state) > 0:
            return None
        times = [t for t in (self._retires_at(group, state, r) for r in state.retiring.values()) if t is not None]
        if not times:
            return None
        return min(times), lambda at: self._retire(group, state, at)

    def _retires_at(self, group: Any, state: GroupState, retirement: Retirement) -> float | None:
        """When the instances launched since the member started retiring are all ready."""
        newcomers = [m for m in self._live(group, state) if m.launch.at >= retirement.since]
        ready = [self._ready_at(group, m, retirement.warmup) for m in newcomers]
        if any(t is None for t in ready):
            return None
        return max([retirement.since, *(t for t in ready if t is not None)])

    def _retire(self, group: Any, state: GroupState, at: float) -> None:
        for member in self._members(group):
            retirement = state.retiring.get(member.id)
            if retirement is not None:
                retires_at = self._retires_at(group, state, retirement)
                if retires_at is not None and retires_at <= at:
                    self._terminate(group, state, member, at, f"its replacement being ready ({retirement.owner})")
                    if retirement.owner == PURCHASE_OPTIONS:
                        state.markets_from = at

    # --- purchase options: a mixed group moves to its On-Demand/Spot split by itself ----------------------
    def _purchase_options_due(self, group: Any, state: GroupState, now: float
                              ) -> tuple[float, Callable[[float], None]] | None:
        """The next batch that moves the group to the split its mixed instances policy asks for: once the
        last one ended (as the policy changed: now), never while a refresh or another replacement runs."""
        if (not group.mixed_instances_policy or state.active_refresh() is not None or state.retiring
                or self._deficit(group, state) != 0 or not self._purchase_surplus(group, state)):
            return None
        at = now if state.markets_from is None else state.markets_from
        return at, lambda moment: self._replace_purchase_options(group, state, moment)

    def _purchase_surplus(self, group: Any, state: GroupState) -> list[Member]:
        """The members of the market above its share, oldest first (protected ones stay)."""
        spec = spec_of_group(group)
        desired = int(group.desired_capacity or 0)
        live = [m for m in self._live(group, state) if not m.state.protected_from_scale_in]
        share = {ON_DEMAND: spec.on_demand(desired), SPOT: desired - spec.on_demand(desired)}
        for market in (ON_DEMAND, SPOT):
            members = sorted((m for m in live if m.market == market), key=lambda m: m.launch.at)
            if len(members) > share[market]:
                return members[:len(members) - share[market]]
        return []

    def _replace_purchase_options(self, group: Any, state: GroupState, at: float) -> None:
        """A batch of a tenth of the group (one at least): launched first, the old ones terminated once
        the new ones are InService and past the group's warmup (DefaultInstanceWarmup, else
        HealthCheckGracePeriod)."""
        batch = self._purchase_surplus(group, state)[:max(1, int(group.desired_capacity or 0) // 10)]
        warmup = float(getattr(group, "default_instance_warmup", None) or group.health_check_grace_period or 0)
        for member in batch:
            state.retiring[member.id] = Retirement(at, warmup, PURCHASE_OPTIONS)
        self._launch(group, state, len(batch), at)

    # --- launching -------------------------------------------------------------------------------------
    def _launch_spec(self, group: Any, state: GroupState) -> LaunchSpec:
        refresh = state.active_refresh()
        return spec_of_group(group) if refresh is None else self._phase_spec(group, refresh)

    def _phase_spec(self, group: Any, refresh: Refresh) -> LaunchSpec:
        """What the group launches from while `refresh` runs: its DesiredConfiguration, or (rolling back,
        cancelling) the configuration it started from; without one, the group's own."""
        if refresh.target is None:
            return spec_of_group(group)
        return refresh.previous if refresh.status in (ROLLING_BACK, CANCELLING) else refresh.target

    def _launch(self, group: Any, state: GroupState, count: int, at: float,
                avoid: frozenset[tuple[str, str]] = frozenset()) -> list[str]:
        """Launch `count` instances, each the next one of the group's On-Demand/Spot split; stops at
        the first that cannot be launched anywhere (the group tries again later, as AWS does)."""
        spec = self._launch_spec(group, state)
        live = self._live(group, state)
        markets, zones = Counter(m.market for m in live), Counter(m.az for m in live)
        launched: list[str] = []
        for _ in range(count):
            market = ON_DEMAND if markets[ON_DEMAND] < spec.on_demand(markets.total() + 1) else SPOT
            instance = self._launch_one(group, state, spec, market, zones, at, avoid)
            if instance is None:
                self._activity(state, at, "Launching a new EC2 instance", f"Failed: {state.last_error}", "Failed")
                break
            markets[market] += 1
            zones[instance.placement.zone] += 1
            launched.append(instance.id)
        return launched

    def _launch_one(self, group: Any, state: GroupState, spec: LaunchSpec, market: str, zones: Counter[str],
                    at: float, avoid: frozenset[tuple[str, str]]) -> Any:
        """The zone with the fewest members first; in it, On-Demand by priority, Spot the cheapest pool
        with capacity; the next zone when none has any."""
        types = self._types(group, spec)
        order = {zone: n for n, zone in enumerate(group.availability_zones)}
        for zone in sorted(group.availability_zones, key=lambda z: (zones[z], order[z])):
            for instance_type in self._pools(types, market, zone, avoid):
                instance = self._run(group, state, spec, instance_type, zone, market, at)
                if instance is not None:
                    return instance
        return None

    def _pools(self, types: Iterable[str], market: str, zone: str, avoid: frozenset[tuple[str, str]]) -> list[str]:
        if market == ON_DEMAND:
            return list(types)
        prices = {t: self.runtime.market.price(t, zone) for t in types if (t, zone) not in avoid}
        return sorted(prices, key=lambda t: (prices[t] is None, prices[t] or 0.0))

    def _types(self, group: Any, spec: LaunchSpec) -> tuple[str, ...]:
        if spec.overrides:
            return spec.overrides
        if spec.template_id is not None:
            return (self._template_version(group, spec).instance_type,)
        return (group.autoscaling_backend.launch_configurations[spec.configuration].instance_type,)

    def _template_version(self, group: Any, spec: LaunchSpec) -> Any:
        return group.ec2_backend.get_launch_template(spec.template_id).get_version(spec.version or "$Default")

    def _run(self, group: Any, state: GroupState, spec: LaunchSpec, instance_type: str, zone: str, market: str,
             at: float) -> Any:
        """RunInstances of one instance as the group launches it; None when EC2 refuses it."""
        image, user_data, security_groups, kwargs = self._launch_arguments(group, spec)
        tags = {**group.get_propagated_tags(), GROUP_TAG: group.name}
        kwargs |= {"instance_type": instance_type, "placement": zone, "subnet_id": _subnet_in(group, zone),
                   "region_name": group.region, "is_instance_type_default": False, "tags": {"instance": tags}}
        if market == SPOT:
            kwargs["instance_market_options"] = "spot"
        try:
            instance = group.ec2_backend.run_instances(image, 1, user_data, security_groups, **kwargs).instances[0]
        except ServiceException as error:
            state.last_error = f"{error.code}: {error.message}"
            return None
        self._join(group, state, instance, spec, kwargs.get("launch_template"), at)
        return instance

    def _launch_arguments(self, group: Any, spec: LaunchSpec) -> tuple[Any, Any, list[str], dict[str, Any]]:
        """(image, user data, security groups, RunInstances arguments) of the template version or the
        launch configuration."""
        if spec.template_id is not None:
            version = self._template_version(group, spec)
            template = {"LaunchTemplateId": spec.template_id, "Version": str(version.number)}
            return version.image_id, None, [], {"launch_template": template}
        configuration = group.autoscaling_backend.launch_configurations[spec.configuration]
        return (configuration.image_id, configuration.user_data, configuration.security_groups,
                {"launch_config": configuration, "key_name": configuration.key_name,
                 "associate_public_ip": configuration.associate_public_ip_address})

    def _join(self, group: Any, state: GroupState, instance: Any, spec: LaunchSpec, template: dict[str, str] | None,
              at: float) -> None:
        """The launched instance becomes a member: recorded, its Spot request made, registered."""
        from moto.autoscaling.models import InstanceState

        instance.autoscaling_group = group
        group.instance_states.append(InstanceState(
            instance, lifecycle_state="Pending", protected_from_scale_in=group.new_instances_protected_from_scale_in))
        self._launches[instance.id] = Launch(at, (template or {}).get("LaunchTemplateId"),
                                             (template or {}).get("Version"), spec.configuration)
        if instance.lifecycle == "spot":
            _spot_request(group.ec2_backend, instance, {}, {})
        self._register(group, instance.id)
        self._activity(state, at, f"Launching a new EC2 instance: {instance.id}",
                       "an instance was started to keep the group at its desired capacity", "Successful")

    def _register(self, group: Any, instance_id: str) -> None:
        """Into each of the group's target groups once it runs (ELB takes running targets only), once."""
        instance = group.ec2_backend.get_instance_by_id(instance_id)
        if instance is None or instance.state != "running":
            return
        elbv2 = group.autoscaling_backend.elbv2_backend
        for arn in group.target_group_arns:
            target_group = elbv2.target_groups.get(arn)
            if target_group is not None and (instance_id, arn) not in self._registered:  # not deleted first
                self._registered.add((instance_id, arn))
                elbv2.register_targets(arn, [{"Id": instance_id, "Port": target_group.port}])

    def _deregister(self, group: Any, instance_id: str) -> None:
        elbv2 = group.autoscaling_backend.elbv2_backend
        for arn in group.target_group_arns:
            target_group = elbv2.target_groups.get(arn)
            if target_group is not None and instance_id in target_group.targets:
                elbv2.deregister_targets(arn, [{"Id": instance_id}])

    # --- terminating -----------------------------------------------------------------------------------
    def _terminate(self, group: Any, state: GroupState, member: Member, at: float, cause: str) -> None:
        group.instance_states = [s for s in group.instance_states if s is not member.state]
        state.retiring.pop(member.id, None)
        self._deregister(group, member.id)
        if member.instance.state in ALIVE or member.instance.state in ("stopping", "stopped"):
            group.ec2_backend.terminate_instances([member.id])
        self._activity(state, at, f"Terminating EC2 instance: {member.id}", f"in response to {cause}", "Successful")

    def _scale_in(self, group: Any, state: GroupState, count: int, at: float) -> None:
        spec = self._launch_spec(group, state)
        for _ in range(count):
            victim = self._scale_in_victim(group, state, spec)
            if victim is None:
                return
            self._terminate(group, state, victim, at, "a decrease of the desired capacity")

    def _scale_in_victim(self, group: Any, state: GroupState, spec: LaunchSpec) -> Member | None:
        """The market above its share first, then the zone with the most of it, members that do not
        match the configuration, the oldest."""
        live = self._live(group, state)
        candidates = [m for m in live if not m.state.protected_from_scale_in]
        if not candidates:
            return None
        on_demand = sum(m.market == ON_DEMAND for m in live)
        over = ON_DEMAND if on_demand > spec.on_demand(int(group.desired_capacity or 0)) else SPOT
        zones = Counter(m.az for m in candidates if m.market == over)
        version = self._resolved_version(group, spec)
        types = set(self._types(group, spec))
        return max(candidates, key=lambda m: (m.market == over, zones[m.az],
                                              not _fits(m, spec, version, types), -m.launch.at))

    # --- matching a configuration ---------------------------------------------------------------------------
    def _resolved_version(self, group: Any, spec: LaunchSpec) -> str | None:
        return None if spec.template_id is None else str(self._template_version(group, spec).number)

    def _outdated(self, group: Any, state: GroupState, refresh: Refresh) -> list[Member]:
        """What the refresh still has to replace, oldest first (members protected from scale in are
        left alone: ScaleInProtectedInstances Ignore)."""
        live = [m for m in self._live(group, state) if not m.state.protected_from_scale_in]
        if refresh.status != ROLLING_BACK and not refresh.preferences.skip_matching:
            return sorted((m for m in live if m.id in refresh.originals), key=lambda m: m.launch.at)
        return self._mismatched(group, self._matched_spec(group, refresh), live)

    def _matched_spec(self, group: Any, refresh: Refresh) -> LaunchSpec:
        """What the refresh deploys: the configuration it started from when rolling back, else its
        DesiredConfiguration or the group's own."""
        if refresh.status == ROLLING_BACK:
            return refresh.previous
        return refresh.target or spec_of_group(group)

    def _mismatched(self, group: Any, spec: LaunchSpec, live: list[Member]) -> list[Member]:
        """Members not launched from the configuration or not of its types, and, of those that are,
        the ones above their market's share (the newest are kept), oldest first."""
        version, types = self._resolved_version(group, spec), set(self._types(group, spec))
        fitting = [m for m in live if _fits(m, spec, version, types)]
        outdated = [m for m in live if not _fits(m, spec, version, types)]
        desired = int(group.desired_capacity or 0)
        share = {ON_DEMAND: spec.on_demand(desired), SPOT: desired - spec.on_demand(desired)}
        kept: Counter[str] = Counter()
        for member in sorted(fitting, key=lambda m: m.launch.at, reverse=True):
            kept[member.market] += 1
            if kept[member.market] > share[member.market]:
                outdated.append(member)
        return sorted(outdated, key=lambda m: m.launch.at)

    # --- a refresh's batches -----------------------------------------------------------------------------
    def _refresh_due(self, group: Any, state: GroupState) -> tuple[float, Callable[[float], None]] | None:
        """When the refresh takes its next step: its start, then once the last batch is ready (or a
        checkpoint's delay has passed); or its failure, an hour into launches it cannot make."""
        refresh = state.active_refresh()
        if refresh is None:
            return None
        if self._deficit(group, state) > 0:
            if refresh.stalled_since is None:
                return None
            return refresh.stalled_since + STALL_SECONDS, lambda at: self._fail(group, state, refresh, at)
        at = self._batch_done_at(group, state, refresh)
        return None if at is None else (at, lambda moment: self._refresh_step(group, state, refresh, moment))

    def _batch_done_at(self, group: Any, state: GroupState, refresh: Refresh) -> float | None:
        """When the last batch is done: no member retiring (its own or another replacement's), its
        replacements ready (and a pause over); None while that is not known yet."""
        if state.retiring:  # its own batch, or another replacement in flight
            return None
        ready = [self._ready_at(group, m, refresh.preferences.warmup) for m in self._live(group, state)
                 if m.id in refresh.replacements]
        if any(t is None for t in ready):
            return None
        paused = [] if refresh.paused_until is None else [refresh.paused_until]
        return max([refresh.step_at, *paused, *(t for t in ready if t is not None)])

    def _refresh_step(self, group: Any, state: GroupState, refresh: Refresh, at: float) -> None:
        if refresh.status == "Pending":
            refresh.status = "InProgress"
        refresh.step_at, refresh.paused_until, refresh.reason = at, None, None
        outdated = self._outdated(group, state, refresh)
        if refresh.total is None:
            refresh.total = len(outdated)
        if refresh.rollback is not None and refresh.rollback.get("total") is None:
            refresh.rollback["total"] = len(outdated)
        if refresh.status == CANCELLING or not outdated:
            self._finish(group, state, refresh, at)
        elif not self._at_checkpoint(group, state, refresh, at):
            self._replace_batch(group, state, refresh, outdated, at)

    def _replace_batch(self, group: Any, state: GroupState, refresh: Refresh, outdated: list[Member],
                       at: float) -> None:
        """Retire a batch the healthy bounds allow: what the minimum spares is terminated at once, the
        rest serves until its replacements are ready; the replacements are launched now."""
        desired = int(group.desired_capacity or 0)
        floor, ceiling = refresh.preferences.bounds(desired)
        batch = outdated[:min(ceiling - floor, self._checkpoint_room(group, state, refresh))]
        at_once = max(0, desired - floor)
        for member in batch[:at_once]:
            self._terminate(group, state, member, at, f"instance refresh {refresh.refresh_id}")
        for member in batch[at_once:]:
            state.retiring[member.id] = Retirement(at, refresh.preferences.warmup, refresh.refresh_id)
        launched = self._launch(group, state, len(batch), at)
        refresh.replacements.update(launched)
        refresh.stalled_since = None if len(launched) == len(batch) else (refresh.stalled_since or at)

    def _at_checkpoint(self, group: Any, state: GroupState, refresh: Refresh, at: float) -> bool:
        """A checkpoint reached pauses the refresh for its delay."""
        checkpoint = refresh.next_checkpoint()
        if refresh.status != "InProgress" or checkpoint is None:
            return False
        if self._progress(group, state, refresh)[1] < checkpoint:
            return False
        refresh.checkpoints_passed += 1
        refresh.paused_until = at + refresh.preferences.checkpoint_delay
        refresh.reason = f"Waiting for checkpoint {checkpoint}% ({refresh.preferences.checkpoint_delay} s)."
        return True

    def _checkpoint_room(self, group: Any, state: GroupState, refresh: Refresh) -> int:
        """Replacements left before the next checkpoint (batches do not run past it)."""
        checkpoint = refresh.next_checkpoint()
        if refresh.status != "InProgress" or checkpoint is None or not refresh.total:
            return len(group.instance_states) + 1
        done = refresh.total - self._progress(group, state, refresh)[0]
        return max(1, -(-refresh.total * checkpoint // 100) - done)

    def _finish(self, group: Any, state: GroupState, refresh: Refresh, at: float) -> None:
        if refresh.status == "InProgress" and refresh.preferences.bake_time and not refresh.baked:
            refresh.status, refresh.baked = "Baking", True
            refresh.paused_until = at + refresh.preferences.bake_time
            return
        ended = {CANCELLING: "Cancelled", ROLLING_BACK: "RollbackSuccessful"}.get(refresh.status, "Successful")
        refresh.final = self._progress(group, state, refresh)
        if ended == "Successful" and refresh.desired:
            _set_configuration(group, None, refresh.desired.get("LaunchTemplate") or {},
                               refresh.desired.get("MixedInstancesPolicy"))
        refresh.status, refresh.ended_at = ended, at

    def _fail(self, group: Any, state: GroupState, refresh: Refresh, at: float) -> None:
        reason = (f"Instances could not be launched for {int(STALL_SECONDS)} s: {state.last_error}")
        if refresh.status != ROLLING_BACK and refresh.preferences.auto_rollback and refresh.reversible:
            self._roll_back(group, state, refresh, at, f"Automatic rollback: {reason}")
            return
        refresh.final = self._progress(group, state, refresh)
        refresh.status = "RollbackFailed" if refresh.status == ROLLING_BACK else "Failed"
        refresh.ended_at, refresh.reason = at, reason
        self._release(state, refresh)

    def _release(self, state: GroupState, refresh: Refresh) -> None:
        """The refresh's retiring members stay (the group scales in what it then has above desired)."""
        for instance_id in [i for i, r in state.retiring.items() if r.owner == refresh.refresh_id]:
            del state.retiring[instance_id]

    def _roll_back(self, group: Any, state: GroupState, refresh: Refresh, at: float, reason: str) -> None:
        to_update, percentage = self._progress(group, state, refresh)
        refresh.rollback = {"RollbackReason": reason, "RollbackStartTime": at, "PercentageCompleteOnRollback":
                            percentage, "InstancesToUpdateOnRollback": to_update, "total": None}
        refresh.status, refresh.reason = ROLLING_BACK, None
        refresh.stalled_since = refresh.paused_until = None
        refresh.step_at, refresh.replacements = at, set()
        self._release(state, refresh)
        excess = -self._deficit(group, state)
        if excess > 0:
            self._scale_in(group, state, excess, at)

    def _progress(self, group: Any, state: GroupState, refresh: Refresh) -> tuple[int, int]:
        """(InstancesToUpdate, PercentageComplete): a replacement counts once healthy and warmed up;
        rolling back, the percentage goes back down to zero."""
        if refresh.final is not None:
            return refresh.final
        pending = self._pending(group, state, refresh)
        if refresh.rollback is not None:
            total = refresh.rollback.get("total") or pending or 1
            start = refresh.rollback["PercentageCompleteOnRollback"]
            return refresh.rollback["InstancesToUpdateOnRollback"], start * min(pending, total) // total
        total = refresh.total if refresh.total is not None else pending
        return pending, 100 if not total else 100 * (total - min(pending, total)) // total

    def _pending(self, group: Any, state: GroupState, refresh: Refresh) -> int:
        """Instances still to update: not replaced yet, or replaced by what is not ready yet."""
        now = self.clock()
        retiring = sum(r.owner == refresh.refresh_id for r in state.retiring.values())
        warming = sum(1 for m in self._live(group, state) if m.id in refresh.replacements
                      and not _reached(self._ready_at(group, m, refresh.preferences.warmup), now))
        return len(self._outdated(group, state, refresh)) + max(retiring, warming)

    # --- the refresh API -------------------------------------------------------------------------------
    def start_refresh(self, group: Any, strategy: str, raw_preferences: dict[str, Any],
                      desired: dict[str, Any] | None) -> str:
        with self._lock:
            self.settle(group)
            state = self._state(group)
            if state.active_refresh() is not None:
                raise _error("InstanceRefreshInProgress", "An Instance Refresh is already in progress and blocks "
                                                          "the execution of this Instance Refresh.")
            if strategy != "Rolling":
                raise _error("ValidationError", f"The {strategy} strategy is not simulated.")
            now = self.clock()
            refresh = Refresh(
                refresh_id=str(uuid.uuid4()), group_name=group.name, started_at=now, step_at=now,
                preferences=Preferences.of(raw_preferences, group), previous=spec_of_group(group),
                target=spec_of_desired(desired, group.ec2_backend), desired=desired or None,
                originals=frozenset(s.instance.id for s in group.instance_states))
            state.refreshes.insert(0, refresh)
            self.settle(group)
            return refresh.refresh_id

    def cancel_refresh(self, group: Any) -> str:
        with self._lock:
            self.settle(group)
            refresh = self._state(group).active_refresh()
            if refresh is None or refresh.status == CANCELLING:
                raise _error("ActiveInstanceRefreshNotFound", "No in progress or pending Instance Refresh found "
                                                              f"for Auto Scaling group {group.name}")
            refresh.status = CANCELLING
            self.settle(group)
            return refresh.refresh_id

    def roll_back_refresh(self, group: Any) -> str:
        with self._lock:
            self.settle(group)
            state = self._state(group)
            refresh = state.active_refresh()
            if refresh is None or refresh.status in (ROLLING_BACK, CANCELLING):
                raise _error("ActiveInstanceRefreshNotFound", "No in progress or pending Instance Refresh found "
                                                              f"for Auto Scaling group {group.name}")
            if not refresh.reversible:
                raise _error("IrreversibleInstanceRefresh", "The instance refresh cannot be rolled back: it has no "
                             "desired configuration, or the group uses a launch template's $Latest or $Default "
                             "version.")
            self._roll_back(group, state, refresh, self.clock(), "Rollback started by user")
            self.settle(group)
            return refresh.refresh_id

    def describe_refreshes(self, group: Any, refresh_ids: list[str]) -> list[dict[str, Any]]:
        with self._lock:
            self.settle(group)
            state = self._state(group)
            return [self._described(group, state, r) for r in state.refreshes
                    if not refresh_ids or r.refresh_id in refresh_ids]

    def _described(self, group: Any, state: GroupState, refresh: Refresh) -> dict[str, Any]:
        to_update, percentage = self._progress(group, state, refresh)
        out: dict[str, Any] = {
            "InstanceRefreshId": refresh.refresh_id, "AutoScalingGroupName": refresh.group_name,
            "Status": refresh.status, "StartTime": self._wall(refresh.started_at),
            "PercentageComplete": percentage, "InstancesToUpdate": to_update,
            "ProgressDetails": {"LivePoolProgress": {"PercentageComplete": percentage, "InstancesToUpdate": to_update}},
            "Preferences": refresh.preferences.describe(), "Strategy": "Rolling"}
        if refresh.reason:
            out["StatusReason"] = refresh.reason
        elif refresh.status == "Pending" and state.retiring:
            out["StatusReason"] = "Waiting for an in-progress replacement of instances to complete."
        if refresh.ended_at is not None:
            out["EndTime"] = self._wall(refresh.ended_at)
        if refresh.desired:
            out["DesiredConfiguration"] = refresh.desired
        if refresh.rollback is not None:
            details = {k: v for k, v in refresh.rollback.items() if k != "total"}
            out["RollbackDetails"] = details | {"RollbackStartTime": self._wall(details["RollbackStartTime"])}
        return out

    # --- Capacity Rebalancing ----------------------------------------------------------------------------
    def warned(self, instance_id: str, kind: str) -> None:
        """EC2 warned about an instance (kind "rebalance" or "interruption"): if it is a Spot member of a
        group with Capacity Rebalancing, the group launches its replacement now, in another pool, and
        terminates it once the replacement passes its health check."""
        if kind not in ("rebalance", "interruption"):
            return
        with self._lock:
            found = self._group_of(instance_id)
            if found is None:
                return
            group, member = found
            state = self._state(group)
            if member.market != SPOT or not group.capacity_rebalance or member.id in state.retiring:
                return
            self.settle(group)
            now = self.clock()
            state.retiring[member.id] = Retirement(now, 0.0, REBALANCE)
            self._maintain(group, state, now, avoid=frozenset({(member.instance_type, member.az)}))
            self._publish(group, now)

    def _group_of(self, instance_id: str) -> tuple[Any, Member] | None:
        for group in self._backend().autoscaling_groups.values():
            member = next((m for m in self._members(group) if m.id == instance_id), None)
            if member is not None:
                return group, member
        return None

    def _backend(self) -> Any:
        from moto.autoscaling.models import autoscaling_backends

        return autoscaling_backends[DEFAULT_ACCOUNT_ID][self.runtime.region]

    # --- scaling activities -----------------------------------------------------------------------------
    def _activity(self, state: GroupState, at: float, description: str, cause: str, status: str) -> None:
        """A scaling activity; a failure repeated as the group keeps trying is recorded once."""
        latest = state.activities[0] if state.activities else {}
        if status == "Failed" and latest.get("StatusCode") == "Failed" and latest.get("Cause") == cause:
            return
        del state.activities[MAX_ACTIVITIES - 1:]
        state.activities.insert(0, {
            "ActivityId": str(uuid.uuid4()), "Description": description, "Cause": cause,
            "StartTime": self._wall(at), "EndTime": self._wall(at), "StatusCode": status, "Progress": 100,
            "StatusMessage": cause if status == "Failed" else ""})

    def activities(self, group: Any) -> list[dict[str, Any]]:
        return [{**a, "AutoScalingGroupName": group.name} for a in self._state(group).activities]

    # --- wiring into moto ---------------------------------------------------------------------------------
    def install(self) -> None:
        from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup, InstanceState

        sim, patch = self, self._patches.set
        self._epoch = datetime.now(UTC) - timedelta(seconds=self.clock())
        patch(FakeAutoScalingGroup, "set_desired_capacity", lambda group, capacity: sim._set_desired(group, capacity))
        patch(FakeAutoScalingGroup, "replace_autoscaling_group_instances",
              lambda group, count, _tags: sim._launch(group, sim._state(group), count, sim.clock()))
        patch(FakeAutoScalingGroup, "update", lambda group, **kwargs: sim._update(group, **kwargs))
        patch(FakeAutoScalingGroup, "launch_template", _group_template(FakeAutoScalingGroup.launch_template))
        patch(InstanceState, "launch_template", property(lambda s: sim._member_template(s)))
        patch(InstanceState, "launch_configuration_name", property(lambda s: sim._launch_of(s.instance).configuration))
        patch(AutoScalingBackend, "notify_terminate_instances",
              lambda backend, instance_ids: sim._terminated(backend, instance_ids))
        patch(AutoScalingBackend, "update_attached_target_groups",
              lambda backend, name: sim._register_members(backend.autoscaling_groups[name]))
        self._install_responses()

    def uninstall(self) -> None:
        self._patches.restore()

    def _install_responses(self) -> None:
        from moto.autoscaling.responses import AutoScalingResponse
        from moto.ec2.responses.instances import InstanceResponse

        sim, patch = self, self._patches.set
        call_action, describe_instances = AutoScalingResponse.call_action, InstanceResponse.describe_instances
        create, update = AutoScalingResponse.create_auto_scaling_group, AutoScalingResponse.update_auto_scaling_group

        def settled(original: Callable[[Any], Any], backend_of: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def answer(response: Any) -> Any:
                sim.settle_all(backend_of(response))
                return original(response)
            return answer

        patch(AutoScalingResponse, "call_action", settled(call_action, lambda r: r.autoscaling_backend))
        patch(InstanceResponse, "describe_instances", settled(describe_instances, _autoscaling_backend_of))
        patch(AutoScalingResponse, "create_auto_scaling_group", _with_group_settings(create))
        patch(AutoScalingResponse, "update_auto_scaling_group", _with_group_settings(update))
        for name, action in _refresh_actions(self).items():
            patch(AutoScalingResponse, name, action)

    # --- moto's group, completed ----------------------------------------------------------------------
    def _set_desired(self, group: Any, capacity: int | None) -> None:
        group.desired_capacity = group.min_size if capacity is None else capacity
        self.settle(group)

    def _terminated(self, backend: Any, instance_ids: list[str]) -> None:
        """TerminateInstances reached members: their groups notice (and replace what they must)."""
        for group in list(backend.autoscaling_groups.values()):
            if any(s.instance.id in instance_ids for s in group.instance_states):
                self.settle(group)

    def _register_members(self, group: Any) -> None:
        for member_state in group.instance_states:
            self._register(group, member_state.instance.id)

    def _member_template(self, member_state: Any) -> dict[str, Any] | None:
        launch = self._launch_of(member_state.instance)
        if launch.template_id is None:
            return None
        ec2 = member_state.instance.ec2_backend
        name = ec2.launch_templates[launch.template_id].name if launch.template_id in ec2.launch_templates else None
        return {"LaunchTemplateId": launch.template_id, "LaunchTemplateName": name, "Version": launch.version}

    def _update(self, group: Any, availability_zones: list[str], desired_capacity: int | None,
                max_size: int | None, min_size: int | None, launch_config_name: str | None,
                launch_template: dict[str, Any] | None, vpc_zone_identifier: str | None,
                health_check_period: int | None, health_check_type: str | None,
                new_instances_protected_from_scale_in: bool | None = None,
                mixed_instances_policy: dict[str, Any] | None = None) -> None:
        """UpdateAutoScalingGroup: what it names changes, the rest stays (moto dropped a mixed
        instances policy the call did not repeat)."""
        with self._lock:
            self._refuse_during_desired_refresh(group, launch_config_name, launch_template, mixed_instances_policy)
            group._set_azs_and_vpcs(availability_zones, vpc_zone_identifier, update=True)
            desired = _desired_after(group, desired_capacity, min_size, max_size)
            group.min_size = group.min_size if min_size is None else min_size
            group.max_size = group.max_size if max_size is None else max_size
            _set_configuration(group, launch_config_name, launch_template, mixed_instances_policy)
            if health_check_period is not None:
                group.health_check_grace_period = health_check_period
            if health_check_type is not None:
                group.health_check_type = health_check_type
            if new_instances_protected_from_scale_in is not None:
                group.new_instances_protected_from_scale_in = new_instances_protected_from_scale_in
            self._set_desired(group, group.desired_capacity if desired is None else desired)

    def _refuse_during_desired_refresh(self, group: Any, *configuration: Any) -> None:
        refresh = self._state(group).active_refresh()
        if any(configuration) and refresh is not None and refresh.desired:
            raise _error("ValidationError", "An active instance refresh with a desired configuration exists. All "
                         "configuration options derived from the desired configuration are not available for "
                         "update while the instance refresh is active.")


def _fits(member: Member, spec: LaunchSpec, version: str | None, types: set[str]) -> bool:
    """Launched from the configuration (template and version, or launch configuration), of its types."""
    if member.instance_type not in types:
        return False
    if spec.configuration is not None:
        return member.launch.configuration == spec.configuration
    return member.launch.template_id == spec.template_id and member.launch.version == version


def _reached(moment: float | None, now: float) -> bool:
    return moment is not None and moment <= now


def _subnet_in(group: Any, zone: str) -> str | None:
    for subnet_id in (group.vpc_zone_identifier or "").split(","):
        if subnet_id and group.ec2_backend.get_subnet(subnet_id).availability_zone == zone:
            return subnet_id
    return None


def _desired_after(group: Any, desired: int | None, min_size: int | None, max_size: int | None) -> int | None:
    """The desired capacity an update leaves: as given, else pushed inside new bounds."""
    if desired is not None:
        return desired
    current = int(group.desired_capacity or 0)
    if min_size is not None and min_size > current:
        return min_size
    if max_size is not None and max_size < current:
        return max_size
    return None


def _set_configuration(group: Any, launch_config_name: str | None, launch_template: dict[str, Any] | None,
                       mixed_instances_policy: dict[str, Any] | None) -> None:
    """Switch the group to the launch configuration, launch template or mixed instances policy named
    (none named: it keeps its own)."""
    if mixed_instances_policy:
        _check_template(group, mixed_instances_policy["LaunchTemplate"]["LaunchTemplateSpecification"])
        group.mixed_instances_policy = _with_default_distribution(mixed_instances_policy)
        group.launch_config, group.launch_configuration_name = None, None
        group._set_launch_configuration(None, {}, group.mixed_instances_policy)
        specification = group.mixed_instances_policy["LaunchTemplate"]["LaunchTemplateSpecification"]
        group.provided_launch_template_version = specification.get("Version")
    elif launch_template:
        _check_template(group, launch_template)
        group.mixed_instances_policy = None
        group.launch_config, group.launch_configuration_name = None, None
        group._set_launch_configuration(None, launch_template, None)
    elif launch_config_name:
        if launch_config_name not in group.autoscaling_backend.launch_configurations:
            raise _error("ValidationError", f"Launch configuration name not found - {launch_config_name}")
        group.mixed_instances_policy, group.ec2_launch_template = None, None
        group.provided_launch_template_version = None
        group._set_launch_configuration(launch_config_name, {}, None)


def _check_template(group: Any, specification: dict[str, Any]) -> None:
    """The template exists (EC2's own error otherwise), before anything of the group changes."""
    template_id = _template_id(specification, group.ec2_backend)
    group.ec2_backend.get_launch_template(template_id).get_version(specification.get("Version") or "$Default")


def _group_template(original: Any) -> property:
    """A group with a mixed instances policy reports its template there only, as AWS does."""
    def launch_template(group: Any) -> Any:
        return None if group.mixed_instances_policy else original.fget(group)
    return property(launch_template)


def _autoscaling_backend_of(response: Any) -> Any:
    from moto.autoscaling.models import autoscaling_backends

    return autoscaling_backends[response.current_account][response.region]


def _with_group_settings(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Create/UpdateAutoScalingGroup, then what moto leaves out: CapacityRebalance on update,
    DefaultInstanceWarmup, and the distribution's defaults in a mixed instances policy."""
    def answer(response: Any) -> Any:
        result = original(response)
        group = response.autoscaling_backend.autoscaling_groups[response._get_param("AutoScalingGroupName")]
        if response._get_param("CapacityRebalance") is not None:
            group.capacity_rebalance = response._get_bool_param("CapacityRebalance")
        if response._get_param("DefaultInstanceWarmup") is not None:
            group.default_instance_warmup = response._get_int_param("DefaultInstanceWarmup")
        if group.mixed_instances_policy:
            group.mixed_instances_policy = _with_default_distribution(group.mixed_instances_policy)
        return result
    return answer


def _refresh_actions(sim: AutoScalingSimulator) -> dict[str, Callable[[Any], Any]]:
    """The instance refresh actions moto lacks, and DescribeScalingActivities from the simulator."""
    from moto.core.responses import ActionResult

    def group_of(response: Any) -> Any:
        name = response._get_param("AutoScalingGroupName")
        group = response.autoscaling_backend.autoscaling_groups.get(name)
        if group is None:
            raise _error("ValidationError", f"AutoScalingGroup name not found - AutoScalingGroup {name} not found")
        return group

    def start_instance_refresh(response: Any) -> Any:
        refresh_id = sim.start_refresh(group_of(response), response._get_param("Strategy") or "Rolling",
                                       response._get_param("Preferences") or {},
                                       response._get_param("DesiredConfiguration"))
        return ActionResult({"InstanceRefreshId": refresh_id})

    def describe_instance_refreshes(response: Any) -> Any:
        found = sim.describe_refreshes(group_of(response), response._get_param("InstanceRefreshIds") or [])
        start, size = int(response._get_param("NextToken") or 0), int(response._get_param("MaxRecords") or 50)
        page: dict[str, Any] = {"InstanceRefreshes": found[start:start + size]}
        if start + size < len(found):
            page["NextToken"] = str(start + size)
        return ActionResult(page)

    def describe_scaling_activities(response: Any) -> Any:
        name = response._get_param("AutoScalingGroupName")
        groups = [group_of(response)] if name else list(response.autoscaling_backend.autoscaling_groups.values())
        wanted = set(response._get_param("ActivityIds") or [])
        found = [a for g in groups for a in sim.activities(g) if not wanted or a["ActivityId"] in wanted]
        return ActionResult({"Activities": found[:int(response._get_param("MaxRecords") or 100)]})

    return {
        "start_instance_refresh": start_instance_refresh,
        "describe_instance_refreshes": describe_instance_refreshes,
        "cancel_instance_refresh": lambda r: ActionResult({"InstanceRefreshId": sim.cancel_refresh(group_of(r))}),
        "rollback_instance_refresh":
            lambda r: ActionResult({"InstanceRefreshId": sim.roll_back_refresh(group_of(r))}),
        "describe_scaling_activities": describe_scaling_activities,
    }
