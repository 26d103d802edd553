"""Keeps the capacity of managed Spot instances whole through interruption warnings,
rebalance recommendations and reclaims that came without a warning.

Exactly one replacement per interrupted instance, however often or concurrently events
arrive: the instance's one replacement is claimed with a conditional write before anything
is launched, and the claim names the event that holds it, so the claim is also what handles
each event once: a delivery of the holder's event while the holder may still be at work
(before its invocation's deadline) is retried later, one after it resumes the work, one
after the work is done is a duplicate. A claim is released again if launching fails, so
the retry can do the work. The replacement goes to a *different* pool (type and/or AZ of the
diversified set, avoiding pools interrupted recently), falls back to on-demand when no Spot
capacity is left, and takes over the interrupted instance's target-group registrations. An
instance that stops or hibernates on interruption has its persistent request cancelled once
replaced, and is terminated (and retired) once EC2 has stopped it: its stopped state change, or
the end of a takeover that found it stopped already.

Nothing launched is ever lost: the replacement's id goes onto the claim (status "launched")
and into the managed registry the moment RunInstances answers (one write), and every later
step (registration, swap, notification, the end of the claim with the migration record that
follows the replacement) can be repeated. When anything fails after the launch, the
invocation fails (and is retried; its holder gives the claim up at once to its own retry);
the retry, or any later event once the claim is stale, finds the claim unfinished and resumes
it: with the recorded replacement, or the one tagged as succeeding the instance (if the
holder died before recording it), or else by launching again with the holder's client tokens.

One event costs a fixed number of AWS calls whatever the size of the migration that launched
the instance: when the product launches an instance, it writes the instance's launch profile
(target groups, user data, the migration record the instance is the replacement of) where the
claim of its replacement goes, and the claim's conditional write returns it. An instance without
a profile (launched by an earlier version, or whose launch was resumed after a crash) costs a
read of its migration record by key (never the whole plan), of its user data and, when no record
knows it, of its target groups. A warm execution environment keeps the VPC's subnets and the
recently interrupted pools for a minute. A batch of events (`prefetch`) shares one describe of
its instances.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..domain.caching import TtlCache
from ..domain.clock import Clock
from ..domain.errors import EventInProgress
from ..domain.hooks import WEBHOOK_TIMEOUT_SECONDS, hooks_at_interruption
from ..domain.instances import Instance, LaunchSpec, Market
from ..domain.interruptions import (
    CLAIM_STALE_SECONDS,
    GROUP_REPLACES_IT,
    HOLDER_EXPIRY,
    KIND_LABELS,
    STATEFUL_REHOMED,
    InterruptionOutcome,
    LaunchProfile,
    Notice,
    RebalancePolicy,
    RecordFollow,
    RecordRef,
    ReplacementBooting,
    ReplacementInProgress,
    follow_record,
    handled_by,
    holder_alive,
    is_stale,
    is_unfinished,
    launch_subnets,
    left_stopped,
    rebalance_policy,
    record_key,
    taken_back,
    why_ignored,
)
from ..domain.plan import InstanceRecord, Pool, TargetRef, group_by_target_group
from ..domain.pools import PoolKey, candidate_types, interruption_pools
from ..domain.spot_options import SpotTerms, is_persistent
from ..domain.tags import MIGRATION_ID_TAG, REPLACES_TAG, interruption_replacement_tags
from ..ports import (
    ExecutionStarter,
    Fleet,
    LoadBalancer,
    ManagedRegistry,
    Notifier,
    PlanRepository,
    PoolMemory,
    ReplacementClaims,
    SpotPrices,
)
from .interruption_hooks import Departure, HookRunner
from .launching import launch_in_first_pool

PRICE_LOOKBACK_HOURS = 6
STOPPED_RETIRED = ("stopped by EC2 after its replacement took over (interruption behaviour stop or hibernate): "
                   "terminated, so its volumes are not billed for ever")
WARM_SECONDS = 60.0  # how long a warm environment trusts the subnets and the interrupted pools it read
HOLDER_SECONDS = 90.0  # the replacement function's timeout: how long an invocation may hold a claim
# A launched replacement runs after 30-40 s: ELB registers it only then. A refused registration looks
# again after BOOT_WAIT_SECONDS, then every POLL_SECONDS, while the invocation has time to hand over.
BOOT_WAIT_SECONDS = 20.0
POLL_SECONDS = 5.0
HAND_OVER_MARGIN_SECONDS = 15.0
Claim = Mapping[str, Any]


@dataclass
class Replacement:
    """A launched replacement: where it runs and what the pools said on the way."""

    instance_id: str
    pool: Pool
    market: Market
    refused: list[str]


@dataclass
class Takeover:
    """A replacement launched (or found) and recorded for an event, whose traffic is still to move."""

    notice: Notice
    instance: Instance
    claim: Claim
    replacement: Replacement
    groups: list[TargetRef]
    record: RecordRef | None  # the migration record the interrupted instance is the replacement of
    launched_at: datetime
    pool: PoolKey | None  # the interrupted pool, still to remember when the takeover ends
    resumed: bool
    swap: bool
    policy: RebalancePolicy | None = None
    departure: Departure | None = None  # the interruption hooks of a swap (None: replaced as by default)


@dataclass
class WarmCache:
    """What a warm execution environment keeps between events for a minute: a storm reads the
    subnets of a VPC and the recently interrupted pools once. A pool this environment saw
    interrupted is added at once; one another environment saw is known within a minute."""

    subnets: TtlCache[str, dict[str, str]] = field(default_factory=lambda: TtlCache(WARM_SECONDS))
    pools: TtlCache[str, set[PoolKey]] = field(default_factory=lambda: TtlCache(WARM_SECONDS))

    def interrupted(self, pool: PoolKey) -> None:
        kept = self.pools.peek("recent")
        if kept is not None:
            kept.add(pool)


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
    clock: Clock
    rehomes: ExecutionStarter  # the re-home state machine of stateful instances
    default_policy: RebalancePolicy = "prewarm"
    prewarm_seconds: int = 900
    claim_stale_seconds: int = CLAIM_STALE_SECONDS
    holder_seconds: float = HOLDER_SECONDS  # the invocation's time left: how long it holds what it claims
    warm: WarmCache | None = None
    hook_runner: HookRunner | None = None  # checkpoint, drain, webhook (services/interruption_hooks.py)
    # what a batch described at once (prefetch); each event describes what is missing
    _described: dict[str, Instance | None] = field(default_factory=dict, init=False, repr=False)
    _records: dict[tuple[str, str], InstanceRecord | None] = field(default_factory=dict, init=False, repr=False)
    _user_datas: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)
    _held: bool = field(default=False, init=False, repr=False)
    _deadline: float = field(default=0.0, init=False, repr=False)  # this invocation's, on the monotonic clock

    def __post_init__(self) -> None:
        self._deadline = self.clock.monotonic() + self.holder_seconds

    # --- a batch of events --------------------------------------------------------------------------------
    def prefetch(self, notices: Iterable[Notice]) -> None:
        """Describe the instances of a batch of events at once."""
        ids = sorted({n.instance_id for n in notices})
        described = self.fleet.describe(ids)
        self._described.update({iid: described.get(iid) for iid in ids})

    # --- events -------------------------------------------------------------------------------------------
    def handle(self, notice: Notice) -> InterruptionOutcome:
        [result] = self.handle_all([notice])
        if isinstance(result, Exception):
            raise result
        return result

    def handle_all(self, notices: list[Notice]) -> list[InterruptionOutcome | Exception]:
        """Each event's outcome, or the exception it failed with. Each is claimed, launched for
        and recorded on its own, one after the other; then the traffic of all the replacements
        launched moves at once (one registration and one deregistration per target group, one
        notification), and each takeover ends on its own claim. A failure fails its event only,
        or, in the common steps, the events that shared them: their holders give their claims up
        to their retries, which resume them."""
        results: list[InterruptionOutcome | Exception | Takeover] = []
        for notice in notices:
            try:
                results.append(self._begin(notice))
            except Exception as exc:  # noqa: BLE001 - the event's failure, reported as its result
                results.append(exc)
        started = [r for r in results if isinstance(r, Takeover)]
        ended = iter(self._complete(started) if started else [])
        return [next(ended) if isinstance(r, Takeover) else r for r in results]

    def _begin(self, notice: Notice) -> InterruptionOutcome | Takeover:
        iid = notice.instance_id
        instance = self._described[iid] if iid in self._described else self.fleet.describe([iid]).get(iid)
        ignored = self._ignored(notice, instance)
        if ignored is not None or instance is None:
            return ignored or InterruptionOutcome(action="ignored", instance_id=iid)
        policy = None if notice.is_interruption else rebalance_policy(instance.tags, self.default_policy)
        if policy == "ignore":
            return InterruptionOutcome(action="ignored_by_policy", instance_id=iid, policy=policy)
        result = self._respond_holding(notice, instance, swap=policy != "prewarm")
        if isinstance(result, Takeover):
            result.policy = policy
            return result
        return result.model_copy(update={"policy": policy}) if policy else result

    def _respond_holding(self, notice: Notice, instance: Instance, swap: bool) -> InterruptionOutcome | Takeover:
        """`_respond`, giving up a claim it took if it fails."""
        self._held = False
        try:
            return self._respond(notice, instance, swap)
        except Exception:
            if self._held:  # its own retry may resume at once (other events wait until the claim is stale)
                self.claims.abandon(instance.instance_id, notice.event_id)
            raise

    def _ignored(self, notice: Notice, instance: Instance | None) -> InterruptionOutcome | None:
        """The outcome of an event nothing is launched for (None: the instance is replaced)."""
        why = why_ignored(notice, instance)
        if why == STATEFUL_REHOMED and instance is not None:
            return self._stateful(notice, instance)
        if why == GROUP_REPLACES_IT and instance is not None:
            return self._group_member(notice, instance)
        return InterruptionOutcome(action="ignored", instance_id=notice.instance_id, reason=why) if why else None

    def _group_member(self, notice: Notice, instance: Instance) -> InterruptionOutcome:
        """An Auto Scaling group replaces its own members (Capacity Rebalancing launches before
        the warned one goes); a Spot member's warning or reclaim is remembered in pool memory,
        so plans and the group's next policy avoid the pool."""
        if instance.lifecycle == "spot" and taken_back(notice, instance):
            self.pool_memory.record_interruption(*_pool(instance), instance.instance_id)
            if self.warm is not None:
                self.warm.interrupted(_pool(instance))
        return InterruptionOutcome(action="group_replaces", instance_id=instance.instance_id, reason=GROUP_REPLACES_IT)

    def _stateful(self, notice: Notice, instance: Instance) -> InterruptionOutcome:
        """A stateful move's Spot instance is taken back: EC2 stops it with its disks, which move on
        to a new instance in the re-home state machine (one execution per interrupted instance,
        named after it, so the warning and the state changes that follow start it once). The first
        event remembers its pool (plans and replacements avoid it) and tells its owner."""
        iid = instance.instance_id
        outcome = InterruptionOutcome(action="rehoming", instance_id=iid, reason=STATEFUL_REHOMED)
        if not notice.is_interruption:  # a rebalance recommendation: it runs until EC2 warns
            return outcome.model_copy(update={"action": "ignored"})
        migration_id, original_id = instance.tags.get(MIGRATION_ID_TAG), instance.tags.get(REPLACES_TAG)
        if not migration_id or not original_id:
            return outcome.model_copy(update={"action": "ignored", "reason": "a stateful instance no migration names"})
        started = self.rehomes.start(f"rehome-{iid}", json.dumps(
            {"migration_id": migration_id, "original_id": original_id, "interrupted": iid}))
        if started is None:
            return outcome.model_copy(update={"action": "duplicate"})
        self.pool_memory.record_interruption(*_pool(instance), iid)
        self.notifier.publish(iid, "stateful-interrupted",
                              f"{iid} (stateful, {instance.instance_type}) is being stopped by EC2: its disks move "
                              f"to a new instance in {instance.availability_zone}",
                              [STATEFUL_REHOMED], {"instance_id": iid, "migration_id": migration_id,
                                                   "original_id": original_id,
                                                   "pool": f"{instance.instance_type}/{instance.availability_zone}"})
        return outcome

    def _respond(self, notice: Notice, instance: Instance, swap: bool) -> InterruptionOutcome | Takeover:
        """Claim the instance's replacement, or act on the claim that exists. A reclaim reads
        the claim first (it mostly follows a warning that claimed it: no write then) and is
        ignored when the product retired the instance itself."""
        iid = instance.instance_id
        if notice.kind == "state-change":
            claim = self.claims.get(iid)
            if claim is not None:
                return self._claimed(notice, instance, claim)
            if self.registry.statuses([iid]).get(iid) == "retired":
                return InterruptionOutcome(action="ignored", instance_id=iid, reason="retired by the product")
        fields = {"kind": notice.kind, "swap": swap, "event_time": notice.time.isoformat(),
                  "launch_token": f"intr-{iid}", HOLDER_EXPIRY: self._holder_expiry()}
        claimed, claim = self.claims.claim_or_get(iid, notice.event_id, **fields)
        if not claimed:  # another event claimed it (or this one, delivered again)
            return self._claimed(notice, instance, claim)
        self._held = True
        return self._take_over(notice, instance, claim, None, resumed=False)

    def _claimed(self, notice: Notice, instance: Instance, claim: Claim) -> InterruptionOutcome | Takeover:
        iid = instance.instance_id
        if is_unfinished(claim):
            return self._unfinished(notice, instance, claim)
        if left_stopped(instance, claim.get("status")):  # the stop EC2 tells once the replacement serves
            self._retire_stopped(instance)
            return InterruptionOutcome(action="terminated_stopped", instance_id=iid, event_id=notice.event_id,
                                       replacement_id=claim.get("replacement_id"), reason=STOPPED_RETIRED)
        if handled_by(claim, notice.event_id):
            return InterruptionOutcome(action="duplicate", instance_id=iid, event_id=notice.event_id)
        if claim["status"] == "prewarmed" and notice.is_interruption:
            return self._swap_prewarmed(notice, instance, claim)
        if notice.is_interruption and claim.get("kind") == "rebalance":  # replaced after a recommendation
            self.pool_memory.record_interruption(*_pool(instance), iid)
        return _already_replaced(iid, claim)

    def _unfinished(self, notice: Notice, instance: Instance, claim: Claim) -> InterruptionOutcome | Takeover:
        """A claim without its takeover done. Its holder may still be at work until its
        invocation's deadline: a delivery of the same event meanwhile is retried later. Past it
        (or once the holder gave it up), the holder's own event resumes it at once; any other
        event once the claim is stale. Otherwise the holder is still at work."""
        iid, now = instance.instance_id, self.clock.now()
        own = claim.get("event_id") == notice.event_id
        if own and holder_alive(claim, now):
            raise EventInProgress(f"event {notice.event_id} is being handled by another invocation; retried later")
        if not own and not is_stale(claim, now, self.claim_stale_seconds):
            if notice.is_interruption and claim.get("swap") is False:
                raise ReplacementInProgress(f"{iid}: the prewarm claimed by event {claim.get('event_id')} is still "
                                            "being launched; retried to move the traffic once it serves")
            return _in_progress(iid, claim)
        if not self.claims.take_over(iid, claim, notice.event_id, **{HOLDER_EXPIRY: self._holder_expiry()}):
            return _in_progress(iid, claim)  # another event resumes it right now
        self._held = True
        return self._take_over(notice, instance, claim, self._launched(iid, claim), resumed=True)

    def _take_over(self, notice: Notice, instance: Instance, claim: Claim, launched: Replacement | None,
                   resumed: bool) -> Takeover:
        """Launch (unless an earlier attempt `launched` the replacement already) and record the
        replacement at once; the traffic moves next (`_complete`). Every step after the launch
        can be repeated."""
        profile = _profile(claim)
        terms = self._spot_terms(instance, profile)
        replacement = launched or self._launch_or_release(instance, claim, profile, terms)
        groups = self._groups(instance, claim, profile)
        record = profile.record if profile else self._record_ref(instance)
        successor = LaunchProfile(target_groups=groups, record=record.moved_to(
            replacement.market, replacement.pool.spot_hourly) if record else None,
            spot=terms, hooks=profile.hooks if profile else None)
        pool = _pool(instance) if notice.is_interruption and not claim.get("pool_remembered") else None
        launched_at, remembered = self._record(instance, claim, replacement, successor, pool)
        self._keep_down(instance, terms)
        swap = bool(claim.get("swap", True)) or notice.is_interruption
        departure = self._departure(notice, instance, profile, groups, _replacement_facts(replacement)) \
            if swap else None
        return Takeover(notice, instance, claim, replacement, groups, record, launched_at,
                        None if remembered else pool, resumed, swap=swap, departure=departure)

    def _complete(self, takeovers: list[Takeover]) -> list[InterruptionOutcome | Exception]:
        """The replacements join their target groups and the interrupted instances that are
        swapped drain (one call per target group for them all), one notification tells it, then
        each takeover ends on its claim (with the migration record that follows it)."""
        departures = [t.departure for t in takeovers if t.departure is not None]
        try:
            self._hooks_begin(departures)
            self._register(takeovers)
            self.load_balancer.deregister(group_by_target_group(
                (t.instance.instance_id, ref) for t in takeovers if _leaving(t) for ref in t.groups))
            self._hooks_end(departures)
            self._notify_replaced(takeovers)
        except Exception as exc:  # noqa: BLE001 - every takeover that shared the step fails with it
            for t in takeovers:  # their own retries may resume them at once
                self.claims.abandon(t.instance.instance_id, t.notice.event_id)
            return [exc for _ in takeovers]
        return [self._end(t) for t in takeovers]

    def _register(self, takeovers: list[Takeover]) -> None:
        """The replacements join their target groups once they run: ELB refuses an instance still
        booting, so a refused registration waits for them (within this invocation's time; past
        it, the takeovers are retried and resume)."""
        joining = group_by_target_group((t.replacement.instance_id, ref) for t in takeovers for ref in t.groups)
        if not joining or self.load_balancer.register_if_running(joining):
            return
        self._await_running(sorted({t.replacement.instance_id for t in takeovers}))
        self.load_balancer.register(joining)

    def _await_running(self, instance_ids: list[str]) -> None:
        self.clock.sleep(BOOT_WAIT_SECONDS)
        while True:
            found = self.fleet.describe(instance_ids)
            if all(found[i].state == "running" for i in instance_ids if i in found) and len(found) == len(instance_ids):
                return
            if self.clock.monotonic() + POLL_SECONDS >= self._deadline - HAND_OVER_MARGIN_SECONDS:
                raise ReplacementBooting(f"{', '.join(instance_ids)} not running yet; the takeover resumes on retry")
            self.clock.sleep(POLL_SECONDS)

    def _end(self, t: Takeover) -> InterruptionOutcome | Exception:
        iid = t.instance.instance_id
        done = {"status": "swapped", "swapped_at": self.clock.now().isoformat()} if t.swap else {
            "status": "prewarmed", "prewarm_until": int(t.launched_at.timestamp()) + self.prewarm_seconds}
        hooks = t.departure.summary() if t.departure is not None else {}
        done.update(hooks)
        try:
            self.claims.finish(iid, _follow(t), t.pool, **done)
            retired = self._retired_if_stopped(t)
        except Exception as exc:  # noqa: BLE001 - this takeover's failure only (a retry finds what is left)
            self.claims.abandon(iid, t.notice.event_id)
            return exc
        event_time = datetime.fromisoformat(t.claim.get("event_time") or t.notice.time.isoformat())
        outcome = InterruptionOutcome(
            action="replaced" if t.swap else "prewarmed", instance_id=iid, replacement_id=t.replacement.instance_id,
            instance_type=t.replacement.pool.instance_type, availability_zone=t.replacement.pool.availability_zone,
            market=t.replacement.market, launched=True, refused_pools=t.replacement.refused,
            seconds_from_event_to_launch=round((t.launched_at - event_time).total_seconds(), 3),
            resumed=t.resumed or None, reason=STOPPED_RETIRED if retired else None, **hooks,
        )
        return outcome.model_copy(update={"policy": t.policy}) if t.policy else outcome

    def _notify_replaced(self, takeovers: list[Takeover]) -> None:
        """One notification: of the one replacement, or of all those of a batch (one line each)."""
        lines = [f"{t.instance.instance_id} ({t.instance.instance_type} in {t.instance.availability_zone}, "
                 f"{KIND_LABELS[t.notice.kind]}): replacement {t.replacement.instance_id} launched as "
                 f"{t.replacement.market} {t.replacement.pool.instance_type} in "
                 f"{t.replacement.pool.availability_zone}" + (" (resumed after an earlier attempt failed)"
                                                              if t.resumed else "")
                 + (f"; hooks: {t.departure.lines()}" if t.departure else "") for t in takeovers]
        hooks = {t.instance.instance_id: t.departure.summary() for t in takeovers if t.departure is not None}
        if len(takeovers) == 1:
            [t] = takeovers
            self.notifier.publish(t.instance.instance_id, f"{t.notice.kind}-replaced", lines[0], [],
                                  {"instance_id": t.instance.instance_id, **hooks.get(t.instance.instance_id, {})})
            return
        self.notifier.publish("interruptions", "replaced", f"{len(takeovers)} interrupted instances replaced", lines,
                              {"replaced": {t.instance.instance_id: t.replacement.instance_id for t in takeovers},
                               **({"hooks": hooks} if hooks else {})})

    def _leave_for_prewarmed(self, notice: Notice, instance: Instance, existing: Claim) -> Departure | None:
        """The interrupted instance leaves its target groups, its hooks around it (None: it has none)."""
        iid = instance.instance_id
        refs = [TargetRef.model_validate(t) for t in existing.get("target_groups", [])]
        departure = self._departure(notice, instance, _profile(existing), refs, {
            "id": existing["replacement_id"], "instance_type": existing.get("instance_type"),
            "availability_zone": existing.get("availability_zone"), "market": existing.get("market") or "spot"})
        departures = [departure] if departure is not None else []
        self._hooks_begin(departures)
        if departure is None or not departure.left:
            self.load_balancer.deregister(group_by_target_group((iid, ref) for ref in refs))
        self._hooks_end(departures)
        return departure

    # --- interruption hooks (services/interruption_hooks.py) ---------------------------------------------------
    def _departure(self, notice: Notice, instance: Instance, profile: LaunchProfile | None, groups: list[TargetRef],
                   replacement: dict[str, Any]) -> Departure | None:
        """The hooks the instance's owner asked for (its tags over the plan's), None when it is
        replaced as by default: then nothing more is called."""
        if self.hook_runner is None:
            return None
        hooks, note = hooks_at_interruption(instance.tags, profile.hooks if profile else None)
        if hooks.is_default and note is None:
            return None
        return Departure(notice, instance, replacement, groups, hooks, note)

    def _hooks_begin(self, departures: list[Departure]) -> None:
        """Checkpoints sent and drains begun, then the drains awaited: all done before the
        hand-over margin and the one webhook call the end keeps room for."""
        if self.hook_runner is None or not departures:
            return
        self.hook_runner.start(departures, self._deadline - HAND_OVER_MARGIN_SECONDS - WEBHOOK_TIMEOUT_SECONDS)
        self.hook_runner.await_drained(departures)

    def _hooks_end(self, departures: list[Departure]) -> None:
        """Once the replacements took over: the checkpoints' results awaited, the webhooks called."""
        if self.hook_runner is not None and departures:
            self.hook_runner.finish(departures)

    def _launch_or_release(self, instance: Instance, claim: Claim, profile: LaunchProfile | None,
                           terms: SpotTerms) -> Replacement:
        """Nothing launched means nothing to lose: a failed launch gives the claim back, so the retry launches."""
        try:
            return self._launch(instance, self._token(claim), self._user_data(instance, profile), terms)
        except Exception:
            self.claims.release(instance.instance_id)
            raise

    def _record(self, instance: Instance, claim: Claim, replacement: Replacement, successor: LaunchProfile,
                pool: PoolKey | None) -> tuple[datetime, bool]:
        """The replacement goes onto the claim ("launched") and into the registry the moment it
        is known, in one write with its own launch profile (the `successor` profile, with the
        interrupted instance's user data) and the interrupted `pool`, so that neither a retry nor
        the sweeper can lose it; when it was launched, and whether this wrote it."""
        iid, groups = instance.instance_id, successor.target_groups
        if claim.get("replacement_id") == replacement.instance_id and claim.get("launched_at"):
            return datetime.fromisoformat(claim["launched_at"]), False
        successor.user_data = self._user_data(instance, _profile(claim))
        launched_at = self.clock.now()
        self.claims.record_launch(
            iid, f"replacement of {iid}", interrupted_pool=pool, profile=successor, status="launched",
            replacement_id=replacement.instance_id, instance_type=replacement.pool.instance_type,
            availability_zone=replacement.pool.availability_zone, spot_hourly=replacement.pool.spot_hourly,
            market=replacement.market, refused=replacement.refused, launched_at=launched_at.isoformat(),
            target_groups=[g.model_dump() for g in groups], **({"pool_remembered": True} if pool else {}),
        )
        if pool and self.warm is not None:
            self.warm.interrupted(pool)
        return launched_at, True

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
        return self._as_replacement(found) if found is not None and found.instance_id != recorded else None

    def _as_replacement(self, found: Instance) -> Replacement:
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

    # --- what the product knows of the instance -------------------------------------------------------------
    def _groups(self, instance: Instance, claim: Claim, profile: LaunchProfile | None) -> list[TargetRef]:
        """The interrupted instance's target groups: as recorded on its claim (a resumed takeover:
        the instance may have left them already), else as the product put it in them: on its
        launch profile, or on the migration record of the original it replaces. Only an instance
        nothing knows is looked up in the load balancer."""
        if "target_groups" in claim:
            return [TargetRef.model_validate(t) for t in claim["target_groups"]]
        if profile is not None:
            return list(profile.target_groups)
        record = self._record_of(instance)
        return list(record.target_groups) if record else self.load_balancer.target_groups_of(instance.instance_id)

    def _record_of(self, instance: Instance) -> InstanceRecord | None:
        """The migration record naming `instance` as the replacement of its original, read once by key."""
        key = record_key(instance)
        if key is None:
            return None
        if key not in self._records:
            self._records.update(self.plans.records_by_key([key]))
        record = self._records.get(key)
        return record if record is not None and record.replacement_id == instance.instance_id else None

    def _record_ref(self, instance: Instance) -> RecordRef | None:
        key, record = record_key(instance), self._record_of(instance)
        return RecordRef.of(key[0], record) if key and record else None

    def _spot_terms(self, instance: Instance, profile: LaunchProfile | None) -> SpotTerms:
        """The interrupted instance's Spot terms: on its launch profile, else on the migration
        record it follows (read once), else EC2's defaults (an instance launched before they existed)."""
        if profile is not None and profile.spot is not None:
            return profile.spot
        record = self._record_of(instance) if profile is None else None
        return record.spot_terms if record is not None else SpotTerms()

    def _keep_down(self, instance: Instance, terms: SpotTerms) -> None:
        """An instance that stops or hibernates on interruption has a persistent Spot request, which
        EC2 would fulfil again (start it) once capacity returns: a second live instance next to its
        replacement. Cancelled now that it is replaced; the instance is terminated once EC2 has
        stopped it (`_retire_stopped`)."""
        if is_persistent(terms.interruption_behavior):
            self.fleet.cancel_spot_requests([instance.instance_id])

    def _retired_if_stopped(self, t: Takeover) -> bool:
        """A swap whose instance EC2 had stopped already (a reclaim's state change) retires it at once;
        a retry of a failure here finds the claim done and the instance stopped (`_claimed`)."""
        if not (t.swap and left_stopped(t.instance, "swapped")):
            return False
        self._retire_stopped(t.instance)
        return True

    def _retire_stopped(self, instance: Instance) -> None:
        """A stateless instance EC2 stopped after its replacement took over (domain left_stopped):
        nothing would ever start it again and its volumes would be billed for ever. Terminated (its
        Spot request cancelled first), retired in the registry and on its claim."""
        iid = instance.instance_id
        self.fleet.terminate([iid])
        self.registry.register(iid, "stopped by EC2 after its replacement took over", status="retired")
        self.claims.update(iid, status="retired")

    def _user_data(self, instance: Instance, profile: LaunchProfile | None) -> str | None:
        """The interrupted instance's user data: on its launch profile, else read (once)."""
        if profile is not None:
            return profile.user_data
        if instance.instance_id not in self._user_datas:
            self._user_datas[instance.instance_id] = self.fleet.user_data(instance.instance_id)
        return self._user_datas[instance.instance_id]

    # --- the steps ------------------------------------------------------------------------------------------
    def _swap_prewarmed(self, notice: Notice, instance: Instance, existing: Claim) -> InterruptionOutcome:
        """The warning (or the reclaim) came after a rebalance recommendation: the prewarmed
        replacement serves already, so the interrupted instance only leaves its target groups
        (with its interruption hooks around it)."""
        iid, new_id = instance.instance_id, existing["replacement_id"]
        departure = self._leave_for_prewarmed(notice, instance, existing)
        hooks = departure.summary() if departure is not None else {}
        pool = None if existing.get("pool_remembered") else _pool(instance)
        self.claims.finish(iid, None, pool, status="swapped", swapped_at=self.clock.now().isoformat(),
                           swapped_by=notice.event_id, **({"pool_remembered": True} if pool else {}), **hooks)
        if left_stopped(instance, "swapped"):  # a reclaim's state change: stopped already
            self._retire_stopped(instance)
        self.notifier.publish(iid, "prewarmed-swap", f"{iid} is being reclaimed ({KIND_LABELS[notice.kind]}); its "
                              f"prewarmed replacement {new_id} took over" + (f"; hooks: {departure.lines()}"
                                                                             if departure is not None else ""),
                              [], {"instance_id": iid, **hooks})
        return InterruptionOutcome(action="swapped_prewarmed", instance_id=iid, replacement_id=new_id, launched=False,
                                   **hooks)

    def _launch(self, instance: Instance, token: str, user_data: str | None, terms: SpotTerms) -> Replacement:
        """In the first pool that serves (within the max price); on-demand in the original pool when
        no Spot pool does. A Spot replacement keeps the interrupted instance's Spot terms."""
        subnets = launch_subnets(instance, self._subnets(instance.vpc_id or ""))
        types = candidate_types(instance.instance_type)
        prices = self.spot_prices.statistics(types, self.clock.now(), PRICE_LOOKBACK_HOURS)
        pools = interruption_pools(instance.instance_type, instance.availability_zone, subnets, prices,
                                   self._recent_pools(), terms.max_price)
        tags = interruption_replacement_tags(instance.tags, instance.instance_id)
        def in_pool(pool: Pool) -> LaunchSpec:
            return LaunchSpec.replacing(instance, pool, tags, user_data, subnet_id=subnets[pool.availability_zone],
                                        spot=terms)

        launch = launch_in_first_pool(self.fleet, pools, in_pool, token)
        if launch.failure is not None:
            raise launch.failure
        if launch.instance_id is not None and launch.pool is not None:
            return Replacement(launch.instance_id, launch.pool, "spot", launch.refused)
        # No Spot capacity anywhere: keep the capacity whole on-demand, in the original pool.
        pool = Pool(instance_type=instance.instance_type, availability_zone=instance.availability_zone, spot_hourly=0.0)
        spec = LaunchSpec.replacing(instance, pool, tags, user_data, market="on-demand")
        return Replacement(self.fleet.launch(spec, f"{token}-od"), pool, "on-demand", launch.refused)

    def _subnets(self, vpc_id: str) -> dict[str, str]:
        if self.warm is None:
            return self.fleet.subnets_by_zone(vpc_id)
        return self.warm.subnets.get(vpc_id, lambda: self.fleet.subnets_by_zone(vpc_id))

    def _recent_pools(self) -> set[PoolKey]:
        if self.warm is None:
            return self.pool_memory.recent_interruptions()
        return self.warm.pools.get("recent", self.pool_memory.recent_interruptions)

    def _holder_expiry(self) -> int:
        """This invocation's deadline (epoch milliseconds): until then it may hold what it claims."""
        return int((self.clock.now().timestamp() + self.holder_seconds) * 1000)

    def _notify(self, instance_id: str, event: str, headline: str) -> None:
        self.notifier.publish(instance_id, event, headline, [], {"instance_id": instance_id})


def _profile(claim: Claim) -> LaunchProfile | None:
    """The launch profile the claim found in place (None: the instance was launched without one)."""
    profile = claim.get("profile")
    return LaunchProfile.model_validate(profile) if profile is not None else None


def _follow(t: Takeover) -> RecordFollow | None:
    """If the interrupted instance replaces an original of a migration, the migration's record
    points at the new instance from now on (so a rollback terminates the right one), and the
    migration's realised savings follow the market it runs in (an on-demand fallback costs
    on-demand), at the price it was launched at."""
    if t.record is None:
        return None
    r = t.replacement
    note = f"{t.instance.instance_id} interrupted; replaced by {r.instance_id} ({r.market})" + (
        f"; hooks: {t.departure.lines()}" if t.departure else "")
    return follow_record(t.record, t.instance.instance_id, r.instance_id, r.pool.instance_type,
                         r.pool.availability_zone, t.record.moved_to(r.market, r.pool.spot_hourly), note)


def _leaving(t: Takeover) -> bool:
    """The interrupted instance is to leave its target groups now (it was not drained already)."""
    return t.swap and (t.departure is None or not t.departure.left)


def _replacement_facts(r: Replacement) -> dict[str, Any]:
    """What a webhook is told of the replacement."""
    return {"id": r.instance_id, "instance_type": r.pool.instance_type,
            "availability_zone": r.pool.availability_zone, "market": r.market}


def _pool(instance: Instance) -> PoolKey:
    return instance.instance_type, instance.availability_zone


def _already_replaced(instance_id: str, existing: Claim) -> InterruptionOutcome:
    return InterruptionOutcome(action="already_replaced", instance_id=instance_id,
                               replacement_id=existing.get("replacement_id"))


def _in_progress(instance_id: str, claim: Claim) -> InterruptionOutcome:
    return InterruptionOutcome(action="in_progress", instance_id=instance_id, event_id=claim.get("event_id"),
                               replacement_id=claim.get("replacement_id"),
                               reason="another event's handling is replacing the instance")
