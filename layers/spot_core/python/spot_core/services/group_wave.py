"""The wave engine's pass over Auto Scaling groups (services/migrate_wave.py hands them over).

Per group and wave, one step a pass, each stored before the next: the group gets the wave's
whole MixedInstancesPolicy (the diversified types, price-capacity-optimized, the on-demand
share that puts the wave's percentage of its instances on Spot, from the capacity it has now)
and Capacity Rebalancing, and is tagged with the migration and the wave (propagated, so its
members say whose they are and when they came); then an instance refresh replaces the members
that do not match, launching before it terminates (MinHealthyPercentage 100), with the group's
own health checks and grace period. A refresh that skipped members it should have moved (skip
matching compares the launch template and the instance types, and on-demand members of a
listed type match them) is followed by one that replaces every member. The wave is done for
the group once its InService members run the wave's Spot share; a refresh that fails fails
the wave (and the rollback restores the group). A group on a launch configuration gets a
launch template made from it first (a mixed instances policy needs one); the configuration
itself stays, for the rollback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..domain.asg import GroupRecord, mixed_instances_policy, spot_count, spot_target, wave_distribution
from ..domain.clock import Clock, iso
from ..domain.plan import WaveSpec
from ..domain.tags import GROUP_MIGRATION_TAG, MANAGED_TAG, MIGRATION_ID_TAG, WAVE_TAG
from ..ports import AutoScaling, PlanRepository

REFRESH_POLL_SECONDS = 30
REFRESH_TIMEOUT = 4 * 3600  # a refresh still running after this long is given up (the wave fails)
MIN_WARMUP_SECONDS = 60  # a group without a grace period still gets a minute before the next batch
MAX_REAPPLIED = 3  # a wave sets its share again at most this often for a capacity that changed meanwhile
WAITING = "waiting"


@dataclass
class GroupsProgress:
    """The groups' side of a wave: done when every eligible group reached the wave's Spot share
    (or failed); how long until the next look."""

    done: bool = True
    failed: list[str] = field(default_factory=list)
    wait_seconds: int = 0
    moved: int = 0  # groups done with the wave


@dataclass
class GroupWaves:
    groups: AutoScaling
    plans: PlanRepository
    clock: Clock

    def advance(self, migration_id: str, wave: WaveSpec, on_demand_base: int) -> GroupsProgress:
        progress = GroupsProgress()
        for group in [g for g in self.plans.groups(migration_id) if g.eligible]:
            state = _GroupStep(self, migration_id, group, wave, on_demand_base).run()
            if state == "failed":
                progress.failed.append(f"{group.name}: {group.attempts[-1] if group.attempts else 'failed'}")
            elif state == WAITING:
                progress.done, progress.wait_seconds = False, REFRESH_POLL_SECONDS
            else:
                progress.moved += 1
        return progress


class _GroupStep:
    def __init__(self, service: GroupWaves, migration_id: str, group: GroupRecord, wave: WaveSpec, base: int):
        self.s, self.mid, self.g, self.wave, self.base = service, migration_id, group, wave, base
        self.now = service.clock.now()

    def run(self) -> str:
        """"done", "failed" or WAITING, after at most one step."""
        g, key = self.g, str(self.wave.index)
        if g.status == "failed":
            return "failed"
        if key in g.wave_spot_share:
            return "done"
        if g.refresh_id is None or g.wave != self.wave.index:
            g.reapplied = 0
            self._start()
            return WAITING
        return self._follow()

    def _start(self) -> None:
        """The wave's policy on the group, then its refresh (written ahead: a retried pass finds
        the refresh running and takes it over)."""
        template = self._template()
        facts = next(iter(self.s.groups.find(names=[self.g.name])), None)
        desired = facts.desired if facts else self.g.desired
        distribution = wave_distribution(desired, self.base, self.wave.percent)
        policy = self.g.policy
        assert policy is not None  # eligible groups have one
        self.s.groups.configure(self.g.name, MixedInstancesPolicy=mixed_instances_policy(template, policy,
                                                                                            distribution),
                                CapacityRebalance=policy.capacity_rebalance)
        self.s.groups.tag(self.g.name, {GROUP_MIGRATION_TAG: self.mid, WAVE_TAG: str(self.wave.index)})
        warmup = max(facts.health_check_grace_period if facts else 0, MIN_WARMUP_SECONDS)
        self.g.refresh_id = self.s.groups.start_refresh(self.g.name, warmup)
        self.g.wave, self.g.phase_since, self.g.status, self.g.full_refresh = self.wave.index, iso(self.now), \
            "migrating", False
        self.g.capacity_at_wave, self.g.distribution = desired, dict(distribution)
        self.g.attempts.append(f"wave {self.wave.index + 1}: {distribution['OnDemandPercentageAboveBaseCapacity']} % "
                               f"on-demand above a base of {distribution['OnDemandBaseCapacity']} "
                               f"(of {desired}); refresh {self.g.refresh_id}")
        self._store()

    def _follow(self) -> str:
        g = self.g
        refresh = self.s.groups.refresh(g.name, g.refresh_id or "")
        if refresh is None or refresh.running:
            if self._age() > REFRESH_TIMEOUT:
                self.s.groups.cancel_refresh(g.name)
                return self._fail(f"refresh {g.refresh_id} still {refresh.status if refresh else 'unknown'} "
                                  f"after {REFRESH_TIMEOUT // 3600} h")
            return WAITING
        if not refresh.succeeded:
            return self._fail(f"refresh {g.refresh_id} {refresh.status}: {refresh.reason or 'no reason given'}")
        return self._measure()

    def _measure(self) -> str:
        """The refresh is over: the wave is done once the group runs its Spot share; short of it
        (members skip matching kept), one refresh replaces every member."""
        g = self.g
        spot, members = self.s.groups.spot_share(g.name)
        if members != g.capacity_at_wave and g.reapplied < MAX_REAPPLIED:  # a scaling policy changed it meanwhile
            g.reapplied += 1
            g.attempts.append(f"wave {self.wave.index + 1}: capacity {g.capacity_at_wave} -> {members}: "
                              "the wave's share is set again for it")
            self._start()
            return WAITING
        target = spot_target(members, self.base, self.wave.percent) if members == g.capacity_at_wave \
            else spot_count(members, g.distribution)  # it keeps changing: the share the group was given
        if spot < target and not g.full_refresh:
            g.refresh_id = self.s.groups.start_refresh(g.name, MIN_WARMUP_SECONDS, skip_matching=False)
            g.full_refresh, g.phase_since = True, iso(self.now)
            g.attempts.append(f"wave {self.wave.index + 1}: {spot} of {members} on Spot, {target} wanted: "
                              f"refresh {g.refresh_id} replaces every member")
            self._store()
            return WAITING
        if spot < target:
            return self._fail(f"{spot} of {members} members on Spot after the refreshes, {target} wanted")
        g.wave_spot_share[str(self.wave.index)] = round(100 * spot / members, 1) if members else 0.0
        g.status = "migrated" if self.wave.percent >= 100 else "migrating"
        g.attempts.append(f"wave {self.wave.index + 1}: {spot} of {members} members on Spot")
        self._store()
        return "done"

    def _template(self) -> dict[str, str]:
        """The launch template the policy launches from: the group's own, or one made from its
        launch configuration (once: the client token returns the same template again)."""
        template = self.g.template()
        if template is not None:
            return template
        name = self.g.config.launch_configuration_name or ""
        configuration = self.s.groups.launch_configurations([name]).get(name)
        if configuration is None:
            raise ValueError(f"{self.g.name}: launch configuration {name} no longer exists")
        self.g.created_launch_template = self.s.groups.create_launch_template(
            configuration, f"spot-migration-{self.g.name}"[:120], {MANAGED_TAG: "true", MIGRATION_ID_TAG: self.mid},
            client_token=f"{self.mid}-{self.g.name}"[:64])
        self.g.attempts.append(f"launch template {self.g.created_launch_template} made from {name}")
        self._store()
        return self.g.template() or {}

    def _fail(self, why: str) -> str:
        self.g.status = "failed"
        self.g.attempts.append(why[:300])
        self._store()
        return "failed"

    def _age(self) -> float:
        since = datetime.fromisoformat(self.g.phase_since) if self.g.phase_since else self.now
        return (self.now - since).total_seconds()

    def _store(self) -> None:
        self.s.plans.put_group(self.mid, self.g)
