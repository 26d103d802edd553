"""Keeps the capacity of managed Spot instances whole through interruption warnings,
rebalance recommendations and reclaims that came without a warning.

Exactly one replacement per interrupted instance, however often or concurrently events
arrive: each event is handled once (EventOnce, on its id), and the instance's one
replacement is claimed with a conditional write before anything is launched; a claim is
released again if launching fails, so the retry can do the work. The replacement goes to
a *different* pool (type and/or AZ of the diversified set, avoiding pools interrupted
recently), falls back to on-demand when no Spot capacity is left, and takes over the
interrupted instance's target-group registrations.

Nothing launched is ever lost: the replacement's id goes onto the claim (status "launched")
and into the managed registry the moment RunInstances answers, and every later step
(registration, swap, migration record, notification) can be repeated. When anything fails
after the launch, the invocation fails (Lambda retries it, then hands it to the on-failure
destination); the retry, or any later event once the claim is stale, finds the claim
unfinished and resumes it: with the recorded replacement, or the one tagged as succeeding
the instance (if the holder died before recording it), or else by launching again with the
holder's client tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..domain.clock import Clock
from ..domain.instances import Instance, LaunchSpec, Market
from ..domain.interruptions import (
    CLAIM_STALE_SECONDS,
    KIND_LABELS,
    InterruptionOutcome,
    Notice,
    RebalancePolicy,
    ReplacementInProgress,
    is_stale,
    is_unfinished,
    rebalance_policy,
    why_ignored,
)
from ..domain.outcomes import Realised
from ..domain.plan import InstanceRecord, Pool, TargetRef, group_by_target_group
from ..domain.pools import candidate_types, interruption_pools
from ..domain.tags import MIGRATION_ID_TAG, REPLACES_TAG, SUCCEEDS_TAG, interruption_replacement_tags
from ..ports import (
    EventOnce,
    Fleet,
    LoadBalancer,
    ManagedRegistry,
    MigrationRepository,
    Notifier,
    PlanRepository,
    PoolMemory,
    ReplacementClaims,
    SpotPrices,
)
from .launching import launch_in_first_pool

PRICE_LOOKBACK_HOURS = 6
Claim = Mapping[str, Any]


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
    claim_stale_seconds: int = CLAIM_STALE_SECONDS
    migrations: MigrationRepository | None = None  # to restate a completed migration's realised savings

    def handle(self, notice: Notice) -> InterruptionOutcome:
        iid = notice.instance_id
        instance = self.fleet.describe([iid]).get(iid)
        why = why_ignored(notice, instance)
        if why or instance is None:
            return InterruptionOutcome(action="ignored", instance_id=iid, reason=why)
        return self.once.run(
            notice.event_id, lambda: self._respond(notice, instance),
            lambda: InterruptionOutcome(action="duplicate", instance_id=iid, event_id=notice.event_id),
        )

    def _respond(self, notice: Notice, instance: Instance) -> InterruptionOutcome:
        claim = self.claims.get(notice.instance_id)
        if not notice.is_interruption:
            return self._rebalance(notice, instance, claim)
        self._remember_pool(instance, claim)
        if claim is None:
            return self._first(notice, instance, swap=True)
        return self._claimed(notice, instance, claim)

    def _rebalance(self, notice: Notice, instance: Instance, claim: Claim | None) -> InterruptionOutcome:
        policy = rebalance_policy(instance.tags, self.default_policy)
        if policy == "ignore":
            return InterruptionOutcome(action="ignored_by_policy", instance_id=notice.instance_id, policy=policy)
        if claim is None:
            outcome = self._first(notice, instance, swap=policy == "replace")
        else:
            outcome = self._claimed(notice, instance, claim)
        return outcome.model_copy(update={"policy": policy})

    def _remember_pool(self, instance: Instance, claim: Claim | None) -> None:
        """The pool is remembered as interrupted once per instance (the first warning or reclaim)."""
        if claim is None or claim.get("kind") == "rebalance":
            self.pool_memory.record_interruption(instance.instance_type, instance.availability_zone,
                                                 instance.instance_id)

    def _first(self, notice: Notice, instance: Instance, swap: bool) -> InterruptionOutcome:
        """No claim yet: unless the product retired the instance itself, claim it and replace it."""
        iid = instance.instance_id
        if notice.kind == "state-change" and self.registry.statuses([iid]).get(iid) == "retired":
            return InterruptionOutcome(action="ignored", instance_id=iid, reason="retired by the product")
        groups = self.load_balancer.target_groups_of(iid)
        if not groups and notice.kind == "state-change":  # reclaimed: the load balancer let it go already
            groups = self._groups_on_record(instance)
        fields = {"kind": notice.kind, "swap": swap, "target_groups": [g.model_dump() for g in groups],
                  "event_time": notice.time.isoformat(), "launch_token": f"intr-{iid}"}
        if not self.claims.claim(iid, notice.event_id, **fields):  # another event claimed it a moment ago
            return _in_progress(iid, self.claims.get(iid) or {})
        claim = {**fields, "instance_id": iid, "status": "launching", "event_id": notice.event_id}
        return self._take_over(notice, instance, claim, None, resumed=False)

    def _claimed(self, notice: Notice, instance: Instance, claim: Claim) -> InterruptionOutcome:
        iid = instance.instance_id
        if is_unfinished(claim):
            return self._unfinished(notice, instance, claim)
        if claim["status"] == "prewarmed" and notice.is_interruption:
            return self._swap_prewarmed(notice, instance, claim)
        return _already_replaced(iid, claim)

    def _unfinished(self, notice: Notice, instance: Instance, claim: Claim) -> InterruptionOutcome:
        """A claim without its takeover done. Its holder is dead when this is the retry of the
        holder's own event (EventOnce runs an event once at a time) or when the claim is stale:
        then this event resumes it. Otherwise the holder is still at work."""
        iid = instance.instance_id
        if claim.get("event_id") != notice.event_id and not is_stale(claim, self.clock.now(),
                                                                      self.claim_stale_seconds):
            if notice.is_interruption and claim.get("swap") is False:
                raise ReplacementInProgress(f"{iid}: the prewarm claimed by event {claim.get('event_id')} is still "
                                            "being launched; retried to move the traffic once it serves")
            return _in_progress(iid, claim)
        if not self.claims.take_over(iid, claim, notice.event_id):  # another event resumes it right now
            return _in_progress(iid, claim)
        return self._take_over(notice, instance, claim, self._launched(iid, claim), resumed=True)

    def _take_over(self, notice: Notice, instance: Instance, claim: Claim, launched: Replacement | None,
                   resumed: bool) -> InterruptionOutcome:
        """Launch (unless an earlier attempt `launched` the replacement already), record the
        replacement at once, then hand the traffic over; every step after the launch can be repeated."""
        iid = instance.instance_id
        replacement = launched or self._launch_or_release(instance, claim)
        launched_at = self._record(iid, claim, replacement)
        swap = bool(claim.get("swap", True)) or notice.is_interruption
        self._hand_over(iid, replacement.instance_id, self._groups(iid, claim), swap)
        self._follow_migration(instance, replacement)
        self._notify(iid, f"{notice.kind}-replaced",
                     f"{iid} ({instance.instance_type} in {instance.availability_zone}, {KIND_LABELS[notice.kind]}): "
                     f"replacement {replacement.instance_id} launched as {replacement.market} "
                     f"{replacement.pool.instance_type} in {replacement.pool.availability_zone}"
                     + (" (resumed after an earlier attempt failed)" if resumed else ""))
        done = self.clock.now().isoformat()
        self.claims.update(iid, **({"status": "swapped", "swapped_at": done} if swap else {
            "status": "prewarmed", "prewarm_until": int(launched_at.timestamp()) + self.prewarm_seconds}))
        event_time = datetime.fromisoformat(claim.get("event_time") or notice.time.isoformat())
        return InterruptionOutcome(
            action="replaced" if swap else "prewarmed", instance_id=iid, replacement_id=replacement.instance_id,
            instance_type=replacement.pool.instance_type, availability_zone=replacement.pool.availability_zone,
            market=replacement.market, launched=True, refused_pools=replacement.refused,
            seconds_from_event_to_launch=round((launched_at - event_time).total_seconds(), 3),
            resumed=resumed or None,
        )

    def _hand_over(self, iid: str, new_id: str, groups: list[TargetRef], swap: bool) -> None:
        """The replacement joins the target groups; on a swap the interrupted instance drains."""
        self.load_balancer.register(group_by_target_group((new_id, ref) for ref in groups))
        if swap:
            self.load_balancer.deregister(group_by_target_group((iid, ref) for ref in groups))

    def _launch_or_release(self, instance: Instance, claim: Claim) -> Replacement:
        """Nothing launched means nothing to lose: a failed launch gives the claim back, so the retry launches."""
        try:
            return self._launch(instance, self._token(claim))
        except Exception:
            self.claims.release(instance.instance_id)
            raise

    def _record(self, iid: str, claim: Claim, replacement: Replacement) -> datetime:
        """The replacement goes onto the claim ("launched") and into the registry the moment it
        is known, so that neither a retry nor the sweeper can lose it; when it was launched."""
        if claim.get("replacement_id") == replacement.instance_id and claim.get("launched_at"):
            launched_at = datetime.fromisoformat(claim["launched_at"])
        else:
            launched_at = self.clock.now()
            self.claims.update(
                iid, status="launched", replacement_id=replacement.instance_id,
                instance_type=replacement.pool.instance_type, availability_zone=replacement.pool.availability_zone,
                spot_hourly=replacement.pool.spot_hourly, market=replacement.market, refused=replacement.refused,
                launched_at=launched_at.isoformat(),
            )
        self.registry.register(replacement.instance_id, f"replacement of {iid}")
        return launched_at

    def _launched(self, iid: str, claim: Claim) -> Replacement | None:
        """What an earlier attempt launched: the replacement on the claim unless EC2 says it is
        gone, else the one tagged as succeeding the instance (launched, but not recorded)."""
        recorded = claim.get("replacement_id")
        if recorded:
            instance = self.fleet.describe([recorded]).get(recorded)
            if instance is None or instance.state in ("pending", "running"):  # not visible yet: as recorded
                pool = Pool(instance_type=claim["instance_type"], availability_zone=claim["availability_zone"],
                            spot_hourly=float(claim.get("spot_hourly") or 0.0))
                return Replacement(recorded, pool, claim.get("market") or "spot", list(claim.get("refused", [])))
        found = self.fleet.find_successors([iid]).get(iid)
        return self._described(found) if found is not None and found.instance_id != recorded else None

    def _described(self, found: Instance) -> Replacement:
        market: Market = "spot" if found.lifecycle == "spot" else "on-demand"
        stats = self.spot_prices.statistics([found.instance_type], self.clock.now(), PRICE_LOOKBACK_HOURS) \
            if market == "spot" else {}
        stat = stats.get(found.pool_key)
        pool = Pool(instance_type=found.instance_type, availability_zone=found.availability_zone,
                    spot_hourly=round(stat.median, 5) if stat else 0.0)
        return Replacement(found.instance_id, pool, market, [])

    @staticmethod
    def _token(claim: Claim) -> str:
        """The holder's client tokens, so that launching again returns what it launched (EC2's
        idempotency); other ones when the replacement it recorded is gone."""
        token = str(claim.get("launch_token") or f"intr-{claim.get('event_id')}")
        return f"{token}-again" if claim.get("replacement_id") else token

    def _groups(self, iid: str, claim: Claim) -> list[TargetRef]:
        """The interrupted instance's target groups, as they were when it was claimed."""
        if "target_groups" in claim:
            return [TargetRef.model_validate(t) for t in claim["target_groups"]]
        return self.load_balancer.target_groups_of(iid)

    def _groups_on_record(self, instance: Instance) -> list[TargetRef]:
        """The target groups the product put `instance` in: on the claim of the instance it
        succeeds, or on the record of the migration that launched it."""
        iid, predecessor = instance.instance_id, instance.tags.get(SUCCEEDS_TAG)
        claim = self.claims.get(predecessor) if predecessor else None
        if claim and claim.get("replacement_id") == iid:
            return [TargetRef.model_validate(t) for t in claim.get("target_groups", [])]
        migration_id, original = instance.tags.get(MIGRATION_ID_TAG), instance.tags.get(REPLACES_TAG)
        records = self.plans.records(migration_id) if migration_id and original else []
        return next((list(r.target_groups) for r in records
                     if r.instance_id == original and r.replacement_id == iid), [])

    def _swap_prewarmed(self, notice: Notice, instance: Instance, existing: Claim) -> InterruptionOutcome:
        """The warning (or the reclaim) came after a rebalance recommendation: the prewarmed
        replacement serves already, so the interrupted instance only leaves its target groups."""
        iid, new_id = instance.instance_id, existing["replacement_id"]
        refs = [TargetRef.model_validate(t) for t in existing.get("target_groups", [])]
        self.load_balancer.deregister(group_by_target_group((iid, ref) for ref in refs))
        self.claims.update(iid, status="swapped", swapped_at=self.clock.now().isoformat())
        self._notify(iid, "prewarmed-swap", f"{iid} is being reclaimed ({KIND_LABELS[notice.kind]}); its prewarmed "
                                            f"replacement {new_id} took over")
        return InterruptionOutcome(action="swapped_prewarmed", instance_id=iid, replacement_id=new_id, launched=False)

    def _launch(self, instance: Instance, token: str) -> Replacement:
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

        launch = launch_in_first_pool(self.fleet, pools, in_pool, token)
        if launch.failure is not None:
            raise launch.failure
        if launch.instance_id is not None and launch.pool is not None:
            return Replacement(launch.instance_id, launch.pool, "spot", launch.refused)
        # No Spot capacity anywhere: keep the capacity whole on-demand, in the original pool.
        pool = Pool(instance_type=instance.instance_type, availability_zone=instance.availability_zone, spot_hourly=0.0)
        spec = LaunchSpec.replacing(instance, pool, tags, user_data, market="on-demand")
        return Replacement(self.fleet.launch(spec, f"{token}-od"), pool, "on-demand", launch.refused)

    def _follow_migration(self, interrupted: Instance, replacement: Replacement) -> None:
        """If the interrupted instance replaces an original of a migration, the migration's
        record now points at the new instance (so a rollback terminates the right one)."""
        migration_id, original = interrupted.tags.get(MIGRATION_ID_TAG), interrupted.tags.get(REPLACES_TAG)
        if not migration_id or not original:
            return
        records = self.plans.records(migration_id)
        for record in records:
            if record.instance_id == original and record.replacement_id == interrupted.instance_id:
                hourly = replacement.pool.spot_hourly if replacement.market == "spot" else record.on_demand_hourly
                record.follow(replacement.instance_id, replacement.pool, hourly,
                              f"{interrupted.instance_id} interrupted; replaced by {replacement.instance_id} "
                              f"({replacement.market})", market=replacement.market)
                self.plans.put_record(migration_id, record)
                self._restate_savings(migration_id, records)

    def _restate_savings(self, migration_id: str, records: list[InstanceRecord]) -> None:
        """A completed migration's realised savings follow the market its replacements run in now
        (an on-demand fallback costs on-demand), at the prices they were launched at."""
        if self.migrations is None or self.migrations.get(migration_id).get("status") != "completed":
            return
        migrated = [r for r in records if r.status == "migrated" and r.replacement_type]
        self.migrations.update(migration_id, realised=Realised.of(migrated, {}).model_dump())

    def _notify(self, instance_id: str, event: str, headline: str) -> None:
        self.notifier.publish(instance_id, event, headline, [], {"instance_id": instance_id})


def _already_replaced(instance_id: str, existing: Claim) -> InterruptionOutcome:
    return InterruptionOutcome(action="already_replaced", instance_id=instance_id,
                               replacement_id=existing.get("replacement_id"))


def _in_progress(instance_id: str, claim: Claim) -> InterruptionOutcome:
    return InterruptionOutcome(action="in_progress", instance_id=instance_id, event_id=claim.get("event_id"),
                               replacement_id=claim.get("replacement_id"),
                               reason="another event's handling is replacing the instance")
