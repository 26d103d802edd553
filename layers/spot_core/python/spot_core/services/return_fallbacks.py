"""The scheduled job that returns on-demand fallbacks to Spot, make-before-break.

Each run reads what it needs at once: one DescribeInstances by tag for the running on-demand
fallbacks (`Fleet.fallbacks`), then by key their replacement claims, the migration records that
follow them and the locks of the migrations that may hold them. A fallback old enough, followed
on-demand by a migrated record that no migration holds, not moved with its disks (a stateful
move's on-demand successor holds them: left alone, reason "stateful"), whose VPC has a healthy Spot
pool, goes back to Spot in two phases, each of which a later run resumes where a run stopped:

1. *Joining* (the claim of the fallback's replacement, status "launching" then "launched"): the
   same per-instance claim the interruption handler takes (so a second run, or an event, never
   launches a second Spot instance), a Spot launch with the fallback's launch configuration and
   client tokens kept on the claim (a retried run gets what it launched, or finds it by its
   succeeds tag), recorded at once with its launch profile; it joins every target group of the
   fallback and must be healthy in all of them (status checks without target groups). Then the
   claim ends ("swapped") together with the migration record, which follows the Spot instance
   (market, price, the realised-savings drift), in one transaction.
2. *Leaving* (claim "swapped", the fallback still running): the fallback leaves its target groups,
   drains and is terminated; the return is notified then (one notification per run).

The fallback serves until its Spot instance is healthy, so the capacity never drops. A Spot
instance that is not healthy GIVE_UP_SECONDS after its launch, or whose record was taken by a
rollback meanwhile, is terminated and the claim given back (the fallback is left as it was).
Boot, health and drain take minutes: a run waits within its own time (the function's timeout)
and leaves what is not done to the next run, which resumes it from the claim.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..domain.clock import Budget, Clock
from ..domain.fallbacks import (
    CAPACITY_REFUSED,
    CLAIMED,
    DEFERRED,
    DRAINING,
    GIVE_UP_SECONDS,
    GIVEN_UP,
    HELD,
    LAUNCH_REFUSED,
    MAX_RETURNS_PER_RUN,
    NO_HEALTHY_POOL,
    NOT_HEALTHY_YET,
    RETURN_KIND,
    STATEFUL,
    LeftAlone,
    ReturnedFallback,
    ReturnReport,
    is_held,
    is_stateful,
    monthly_saving,
    price_cap,
    return_pools,
    why_left_alone,
)
from ..domain.instances import Instance, LaunchSpec
from ..domain.interruptions import (
    HOLDER_EXPIRY,
    LaunchProfile,
    RecordFollow,
    RecordRef,
    follow_record,
    holder_alive,
    is_unfinished,
    launch_subnets,
    record_key,
)
from ..domain.locks import InstanceLock
from ..domain.plan import InstanceRecord, Pool, TargetGroups, TargetRef, group_by_target_group
from ..domain.pools import PoolKey, candidate_types
from ..domain.pricing import SpotPriceStat
from ..domain.spot_options import SpotTerms
from ..domain.tags import interruption_replacement_tags
from ..ports import (
    Fleet,
    InstanceLocks,
    LoadBalancer,
    ManagedRegistry,
    Notifier,
    PlanRepository,
    PoolMemory,
    ReplacementClaims,
    SpotPrices,
)
from .interruptions import PRICE_LOOKBACK_HOURS, Claim, Replacement
from .launching import launch_in_first_pool
from .traffic import POLL_SECONDS, Traffic


@dataclass
class Returning:
    """A fallback whose Spot instance is being launched or proves its health (phase 1)."""

    fallback: Instance
    record: InstanceRecord
    claim: Claim
    resumed: bool
    replacement: Replacement | None = None
    launched_at: datetime | None = None

    @property
    def fallback_id(self) -> str:
        return self.fallback.instance_id

    @property
    def new_id(self) -> str:
        """The Spot instance's id (once launched or found)."""
        assert self.replacement is not None
        return self.replacement.instance_id

    @property
    def profile(self) -> LaunchProfile | None:
        """The fallback's launch profile (the interruption handler wrote it where the claim goes)."""
        profile = self.claim.get("profile")
        return LaunchProfile.model_validate(profile) if profile is not None else None

    @property
    def terms(self) -> SpotTerms:
        profile = self.profile
        return profile.spot if profile is not None and profile.spot is not None else self.record.spot_terms

    @property
    def groups(self) -> list[TargetRef]:
        return [TargetRef.model_validate(t) for t in self.claim.get("target_groups", [])]


@dataclass
class Leaving:
    """A fallback whose Spot instance took its place on the record: it drains and goes (phase 2)."""

    fallback: Instance
    claim: Claim
    resumed: bool

    @property
    def groups(self) -> list[TargetRef]:
        return [TargetRef.model_validate(t) for t in self.claim.get("target_groups", [])]


@dataclass
class Market:
    """What a run knows of the Spot market: prices, recently interrupted pools, the VPCs' subnets."""

    prices: Mapping[PoolKey, SpotPriceStat]
    recent: set[PoolKey]
    subnets: dict[str, dict[str, str]] = field(default_factory=dict)  # vpc -> zone -> subnet


@dataclass
class ReturnFallbacks:
    fleet: Fleet
    load_balancer: LoadBalancer
    spot_prices: SpotPrices
    claims: ReplacementClaims
    pool_memory: PoolMemory
    registry: ManagedRegistry
    plans: PlanRepository
    locks: InstanceLocks
    notifier: Notifier
    clock: Clock
    enabled: bool = True
    min_age_seconds: int = 3600
    max_per_run: int = MAX_RETURNS_PER_RUN
    _market: Market | None = field(default=None, init=False, repr=False)
    _fallbacks: list[Instance] = field(default_factory=list, init=False, repr=False)

    @property
    def traffic(self) -> Traffic:
        return Traffic(self.fleet, self.load_balancer, self.clock)

    def run(self, budget: Budget, run_id: str) -> ReturnReport:
        """One scheduled run (`run_id`: its event's id, which holds the claims it takes)."""
        report = ReturnReport(enabled=self.enabled)
        if not self.enabled:
            return report
        self._market, self._fallbacks = None, self.fleet.fallbacks()
        report.fallbacks = len(self._fallbacks)
        if not self._fallbacks:
            return report
        returning, leaving = self._sort(budget, run_id, report)
        try:
            held = self._launch_all(returning, budget, run_id, report)
            leaving += self._join(held, budget, report)
        except Exception:
            for r in returning:  # the next run (or this run's retry) resumes those it holds at once
                if r.claim.get("event_id") == run_id:
                    self.claims.abandon(r.fallback_id, run_id)
            raise
        report.returned += self._leave(leaving, budget, report)
        self._notify(report.returned)
        return report

    # --- what each fallback needs ---------------------------------------------------------------------------
    def _sort(self, budget: Budget, run_id: str, report: ReturnReport) -> tuple[list[Returning], list[Leaving]]:
        """The fallbacks to launch for or to resume (phase 1), and those whose Spot instance took over
        in an earlier run (phase 2); the others are left alone, with the reason."""
        ids = [f.instance_id for f in self._fallbacks]
        claims = self.claims.get_many(ids)
        keys = {k for f in self._fallbacks if (k := record_key(f)) is not None}
        records = self.plans.records_by_key(keys) if keys else {}
        locks = self.locks.locks([*ids, *(original for _, original in keys)])
        returning: list[Returning] = []
        leaving: list[Leaving] = []
        for fallback in self._fallbacks:
            key = record_key(fallback)
            record = records.get(key) if key else None
            why = self._triage(fallback, record, claims.get(fallback.instance_id), locks, budget, run_id,
                               returning, leaving)
            if why is not None:
                report.left_alone.append(LeftAlone(instance_id=fallback.instance_id, reason=why))
        return returning, leaving

    def _triage(self, fallback: Instance, record: InstanceRecord | None, claim: Claim | None,
                locks: Mapping[str, InstanceLock], budget: Budget, run_id: str, returning: list[Returning],
                leaving: list[Leaving]) -> str | None:
        """Where the fallback goes (a list), or why it is left alone."""
        if claim is None:
            why = why_left_alone(fallback, record, locks, self.clock.now(), self.min_age_seconds)
            if why is None and record is not None:
                returning.append(Returning(fallback, record, {}, resumed=False))
            return why
        if claim.get("kind") != RETURN_KIND:
            return CLAIMED  # by an interruption's handling
        if claim.get("status") == "swapped":
            if is_stateful(fallback, record):
                return STATEFUL  # it holds the disks: never terminated for a Spot instance from the image
            leaving.append(Leaving(fallback, claim, resumed=True))
            return None
        if is_unfinished(claim) and record is not None:
            return self._resume(fallback, record, claim, locks, budget, run_id, returning)
        return CLAIMED

    def _resume(self, fallback: Instance, record: InstanceRecord, claim: Claim, locks: Mapping[str, InstanceLock],
                budget: Budget, run_id: str, returning: list[Returning]) -> str | None:
        """An earlier run's unfinished return: taken over once its holder is gone (None), or why not.
        One that a migration holds now is undone (its Spot instance terminated, the claim given back)."""
        if holder_alive(claim, self.clock.now()):
            return CLAIMED
        if not self.claims.take_over(fallback.instance_id, claim, run_id, **{HOLDER_EXPIRY: self._expiry(budget)}):
            return CLAIMED
        r = Returning(fallback, record, self._with_groups(fallback.instance_id, claim), resumed=True)
        why = why_left_alone(fallback, record, locks, self.clock.now(), 0)
        if why is not None:
            self._undo(r, self._recorded(r))
            return why
        returning.append(r)
        return None

    # --- phase 1: the Spot instance launched, joining, proving healthy ---------------------------------------
    def _launch_all(self, returning: list[Returning], budget: Budget, run_id: str,
                    report: ReturnReport) -> list[Returning]:
        """Each fallback claimed (fresh ones, at most `max_per_run`) and its Spot instance launched
        (or found, resumed); those it holds with a Spot instance."""
        held: list[Returning] = []
        fresh = 0
        for r in returning:
            if not r.resumed:
                if fresh >= self.max_per_run:
                    report.left_alone.append(LeftAlone(instance_id=r.fallback_id, reason=DEFERRED))
                    continue
                fresh += 1
            why = self._launch(r, budget, run_id)
            if why is not None:
                report.left_alone.append(LeftAlone(instance_id=r.fallback_id, reason=why[0], detail=why[1]))
            else:
                held.append(r)
        return held

    def _launch(self, r: Returning, budget: Budget, run_id: str) -> tuple[str, str | None] | None:
        """The Spot instance of `r` launched (or found) and recorded; why not (the claim given back)."""
        r.replacement = self._launched_before(r) if r.resumed else None
        if r.replacement is not None:
            return None
        pools = self._pools(r)
        if not pools:
            self._give_back(r)
            return NO_HEALTHY_POOL, None
        if not r.resumed and not self._claim(r, budget, run_id):
            return CLAIMED, None
        launch = launch_in_first_pool(self.fleet, pools, self._spec(r), self._token(r))
        if launch.instance_id is None or launch.pool is None:
            self._give_back(r)
            return (LAUNCH_REFUSED, str(launch.failure)) if launch.failure else (CAPACITY_REFUSED, None)
        r.replacement = Replacement(launch.instance_id, launch.pool, "spot", launch.refused)
        self._record_launch(r)
        return None

    def _claim(self, r: Returning, budget: Budget, run_id: str) -> bool:
        """The fallback's one replacement, claimed as the interruption handler claims it (returning
        the fallback's launch profile, written there when it was launched)."""
        now = self.clock.now()
        claimed, claim = self.claims.claim_or_get(
            r.fallback_id, run_id, kind=RETURN_KIND, swap=True, event_time=now.isoformat(),
            launch_token=f"ret-{r.fallback_id}-{int(now.timestamp())}", **{HOLDER_EXPIRY: self._expiry(budget)})
        if not claimed:
            return False
        r.claim = self._with_groups(r.fallback_id, claim)
        return True

    def _with_groups(self, fallback_id: str, claim: Claim) -> Claim:
        """The claim with the fallback's target groups: as recorded on it with its Spot instance, else
        on the fallback's launch profile, else as the load balancer has them."""
        if "target_groups" in claim:
            return claim
        profile = claim.get("profile")
        groups = LaunchProfile.model_validate(profile).target_groups if profile is not None \
            else self.load_balancer.target_groups_of(fallback_id)
        return {**claim, "target_groups": [g.model_dump() for g in groups]}

    def _spec(self, r: Returning) -> Callable[[Pool], LaunchSpec]:
        fallback, terms = r.fallback, r.terms
        subnets = launch_subnets(fallback, self._vpc_subnets(fallback))
        tags = interruption_replacement_tags(fallback.tags, fallback.instance_id)
        profile = r.profile
        user_data = profile.user_data if profile is not None else self.fleet.user_data(fallback.instance_id)

        def in_pool(pool: Pool) -> LaunchSpec:
            return LaunchSpec.replacing(fallback, pool, tags, user_data, subnet_id=subnets[pool.availability_zone],
                                        spot=terms)
        return in_pool

    @staticmethod
    def _token(r: Returning) -> str:
        """The claim's client tokens (a retried launch gets the same instance); other ones when the
        Spot instance it recorded is gone."""
        token = str(r.claim["launch_token"])
        return f"{token}-again" if r.claim.get("replacement_id") else token

    def _record_launch(self, r: Returning) -> None:
        """The Spot instance onto the claim and into the registry at once, with its own launch profile
        (so its own interruption is handled like any other), the moment it is known."""
        assert r.replacement is not None
        new, pool = r.replacement, r.replacement.pool
        ref = self._ref(r)
        profile = r.profile
        successor = LaunchProfile(target_groups=r.groups, user_data=profile.user_data if profile else None,
                                  record=ref.moved_to("spot", pool.spot_hourly), spot=r.terms,
                                  hooks=profile.hooks if profile else None)
        r.launched_at = self.clock.now()
        self.claims.record_launch(
            r.fallback_id, f"return of on-demand fallback {r.fallback_id} to Spot", profile=successor,
            status="launched", replacement_id=new.instance_id, instance_type=pool.instance_type,
            availability_zone=pool.availability_zone, spot_hourly=pool.spot_hourly, market="spot",
            refused=new.refused, launched_at=r.launched_at.isoformat(),
            target_groups=[g.model_dump() for g in r.groups])

    def _launched_before(self, r: Returning) -> Replacement | None:
        """What an earlier run launched: the Spot instance on the claim, unless EC2 says it is gone;
        else one tagged as succeeding the fallback (launched, not recorded: recorded now), or the
        interruption handler's Spot replacement of the one it recorded (EC2 took that one back)."""
        recorded = self._recorded(r)
        if recorded is not None:
            r.launched_at = datetime.fromisoformat(r.claim["launched_at"])
            return recorded
        gone = r.claim.get("replacement_id")
        successors = self.fleet.find_successors([r.fallback_id, *([gone] if gone else [])])
        found = successors.get(r.fallback_id) or (successors.get(gone) if gone else None)
        if found is None or found.lifecycle != "spot":
            return None
        stat = self._market_view().prices.get(found.pool_key)
        pool = Pool(instance_type=found.instance_type, availability_zone=found.availability_zone,
                    spot_hourly=round(stat.median, 5) if stat else 0.0)
        r.replacement = Replacement(found.instance_id, pool, "spot", [])
        self._record_launch(r)
        return r.replacement

    def _recorded(self, r: Returning) -> Replacement | None:
        recorded = r.claim.get("replacement_id")
        if not recorded:
            return None
        instance = self.fleet.describe([recorded]).get(recorded)
        if instance is not None and instance.state not in ("pending", "running"):
            return None
        pool = Pool(instance_type=r.claim["instance_type"], availability_zone=r.claim["availability_zone"],
                    spot_hourly=float(r.claim.get("spot_hourly") or 0.0))
        return Replacement(recorded, pool, "spot", list(r.claim.get("refused", [])))

    def _join(self, held: list[Returning], budget: Budget, report: ReturnReport) -> list[Leaving]:
        """The Spot instances join the fallbacks' target groups once they run (ELB refuses one still
        booting) and must prove healthy there; each healthy one takes the fallback's place on the
        record (phase 2 follows)."""
        if not held:
            return []
        joining = self._register_running(held, budget)
        healthy = self._healthy(held, joining, budget.step_deadline())
        locks = self.locks.locks([i for r in held for i in (r.fallback_id, r.record.instance_id)])
        leaving: list[Leaving] = []
        for r in held:
            outcome = self._swap_in(r, r.fallback_id in healthy, locks)
            if isinstance(outcome, LeftAlone):
                report.left_alone.append(outcome)
            else:
                leaving.append(outcome)
        return leaving

    def _register_running(self, held: list[Returning], budget: Budget) -> TargetGroups:
        """The Spot instances registered in the fallbacks' target groups once they run (those still
        booting join in a later run)."""
        states = self.traffic.wait_for_states([r.new_id for r in held], "running", budget.step_deadline())
        running = group_by_target_group((r.new_id, ref) for r in held if states.get(r.new_id) == "running"
                                        for ref in r.groups)
        if running:
            self.load_balancer.register(running)
        return running

    def _healthy(self, held: list[Returning], joining: TargetGroups, deadline: float) -> set[str]:
        """The fallbacks whose Spot instance is healthy in every one of their target groups (passes
        its status checks, for a fallback in none)."""
        states = self.traffic.wait_for_targets(joining, {"healthy"}, deadline) if joining else {}
        checked = self._status_checks([r.new_id for r in held if not r.groups], deadline)
        return {r.fallback_id for r in held if (
            all(states.get((ref.arn, r.new_id)) == "healthy" for ref in r.groups) if r.groups else r.new_id in checked)}

    def _status_checks(self, instance_ids: list[str], deadline: float) -> set[str]:
        passed: set[str] = set()
        while instance_ids:
            passed |= {i for i, checks in self.fleet.status_checks(instance_ids).items() if checks.passed}
            if passed >= set(instance_ids) or self.clock.monotonic() >= deadline:
                break
            self.clock.sleep(POLL_SECONDS)
        return passed

    def _swap_in(self, r: Returning, healthy: bool, locks: Mapping[str, InstanceLock]) -> LeftAlone | Leaving:
        """A healthy Spot instance takes the fallback's place on the record (the claim ends with it);
        one not healthy yet waits for the next run, unless it never will; one whose record a
        migration took meanwhile is undone. The claim the fallback leaves with, or why it stays."""
        assert r.replacement is not None
        if not healthy:
            return self._not_healthy(r)
        if is_held(locks, r.fallback_id, r.record.instance_id):
            self._undo(r, r.replacement)
            return LeftAlone(instance_id=r.fallback_id, reason=HELD)
        returned = self._returned(r)
        done = {"status": "swapped", "swapped_at": self.clock.now().isoformat(), "returned": returned.model_dump()}
        if not self.claims.finish(r.fallback_id, self._follow(r), None, **done):
            self._undo(r, r.replacement)
            return LeftAlone(instance_id=r.fallback_id, reason=HELD, detail="its migration record changed meanwhile")
        return Leaving(r.fallback, {**r.claim, **done, "replacement_id": r.replacement.instance_id}, r.resumed)

    def _not_healthy(self, r: Returning) -> LeftAlone:
        assert r.replacement is not None
        launched = r.launched_at or self.clock.now()
        if (self.clock.now() - launched).total_seconds() < GIVE_UP_SECONDS:
            return LeftAlone(instance_id=r.fallback_id, reason=NOT_HEALTHY_YET, detail=r.replacement.instance_id)
        self._undo(r, r.replacement)
        return LeftAlone(instance_id=r.fallback_id, reason=GIVEN_UP, detail=r.replacement.instance_id)

    def _undo(self, r: Returning, replacement: Replacement | None) -> None:
        """The Spot instance leaves the target groups and is terminated; the claim is given back, so
        the fallback (which served all along) is as it was."""
        if replacement is not None:
            groups = group_by_target_group((replacement.instance_id, ref) for ref in r.groups)
            registered = self.traffic.registered_only(groups) if groups else {}
            if registered:
                self.load_balancer.deregister(registered)
            self.fleet.terminate([replacement.instance_id])
            self.registry.register(replacement.instance_id, f"given up returning {r.fallback_id} to Spot",
                                   status="retired")
        self._give_back(r)

    def _give_back(self, r: Returning) -> None:
        """The claim released (its launch profile back in place); a claim this run did not take is left."""
        if not r.claim.get("event_id"):
            return
        if r.claim.get("status") != "launching" or r.replacement is not None:
            self.claims.update(r.fallback_id, status="launching")
        self.claims.release(r.fallback_id)

    def _ref(self, r: Returning) -> RecordRef:
        key = record_key(r.fallback)
        assert key is not None  # the record was read by it
        return RecordRef.of(key[0], r.record)

    def _follow(self, r: Returning) -> RecordFollow:
        assert r.replacement is not None
        new, before = r.replacement, self._ref(r)
        note = (f"on-demand fallback {r.fallback_id} returned to Spot: {new.instance_id} in {new.pool} "
                f"at {new.pool.spot_hourly:g} USD/h")
        return follow_record(before, r.fallback_id, new.instance_id, new.pool.instance_type,
                             new.pool.availability_zone, before.moved_to("spot", new.pool.spot_hourly), note)

    def _returned(self, r: Returning) -> ReturnedFallback:
        assert r.replacement is not None
        ref, pool = self._ref(r), r.replacement.pool
        saving = monthly_saving(ref.hourly, pool.spot_hourly)
        return ReturnedFallback(instance_id=r.fallback_id, replacement_id=r.new_id, pool=str(pool),
                                spot_hourly=pool.spot_hourly, monthly_saving=saving, migration_id=ref.migration_id,
                                original_id=ref.original_id, resumed=r.resumed)

    # --- phase 2: the fallback leaves -------------------------------------------------------------------------
    def _leave(self, leaving: list[Leaving], budget: Budget, report: ReturnReport) -> list[ReturnedFallback]:
        """The fallbacks whose Spot instance took over leave their target groups, drain and are
        terminated; one still draining at the end of the run is left to the next."""
        draining = self._drain(leaving, budget)
        report.left_alone += [LeftAlone(instance_id=iid, reason=DRAINING) for iid in sorted(draining)]
        gone = [leave for leave in leaving if leave.fallback.instance_id not in draining]
        if gone:
            self.fleet.terminate([leave.fallback.instance_id for leave in gone])
        for leave in gone:
            self.registry.register(leave.fallback.instance_id, "on-demand fallback returned to Spot", status="retired")
        return [ReturnedFallback.model_validate({**leave.claim["returned"], "resumed": leave.resumed})
                for leave in gone]

    def _drain(self, leaving: list[Leaving], budget: Budget) -> set[str]:
        """The fallbacks deregistered (where they still are); those still draining at the deadline."""
        groups = group_by_target_group((leave.fallback.instance_id, ref) for leave in leaving for ref in leave.groups)
        if not groups:
            return set()
        registered = self.traffic.registered_only(groups)
        if registered:
            self.load_balancer.deregister(registered)
        states = self.traffic.wait_for_targets(groups, {"unused"}, budget.step_deadline())
        return {iid for (_, iid), state in states.items() if state != "unused"}

    def _notify(self, returned: list[ReturnedFallback]) -> None:
        """One notification per run, whatever the number of fallbacks it returned."""
        if not returned:
            return
        lines = [f"{r.instance_id} (on-demand) -> {r.replacement_id} on Spot in {r.pool}, "
                 f"{r.monthly_saving:.2f} USD a month less" for r in returned]
        total = round(sum(r.monthly_saving for r in returned), 2)
        subject = returned[0].instance_id if len(returned) == 1 else "fallbacks"
        single = returned[0].model_dump() if len(returned) == 1 else {}
        self.notifier.publish(subject, "fallback-returned",
                              f"{len(returned)} on-demand fallback(s) back on Spot: {total:.2f} USD a month less",
                              lines, {**single, "returned": [r.model_dump() for r in returned],
                                      "total_monthly_saving": total})

    # --- the market ----------------------------------------------------------------------------------------------
    def _pools(self, r: Returning) -> list[Pool]:
        market = self._market_view()
        zones = launch_subnets(r.fallback, self._vpc_subnets(r.fallback))
        return return_pools(r.fallback.instance_type, zones, market.prices, market.recent,
                            price_cap(r.terms, r.record))

    def _market_view(self) -> Market:
        """Read once per run, when a fallback needs it: the prices of the fallbacks' types and their
        equivalents, the recently interrupted pools."""
        if self._market is None:
            types = sorted({t for i in self._fallbacks for t in candidate_types(i.instance_type)})
            self._market = Market(self.spot_prices.statistics(types, self.clock.now(), PRICE_LOOKBACK_HOURS),
                                  self.pool_memory.recent_interruptions())
        return self._market

    def _vpc_subnets(self, instance: Instance) -> dict[str, str]:
        market = self._market_view()
        vpc = instance.vpc_id or ""
        if vpc not in market.subnets:
            market.subnets[vpc] = self.fleet.subnets_by_zone(vpc)
        return market.subnets[vpc]

    def _expiry(self, budget: Budget) -> int:
        """This run's deadline (epoch milliseconds): until then it holds what it claims."""
        left = max(0.0, budget.end - self.clock.monotonic())
        return int((self.clock.now().timestamp() + left) * 1000)
