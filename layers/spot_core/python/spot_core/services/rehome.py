"""Re-homing a stateful Spot instance EC2 takes back: one short pass per invocation of the
re-home state machine, which waits between passes (see domain/rehome.py for the steps).

Each pass reads the migration record by key, looks at the instances and the pieces, takes one
step and stores the record before returning; it never sleeps. The interruption handler starts
the state machine once per interrupted instance (the execution is named after it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.clock import Clock
from ..domain.health import ProbeResult, health_verdict
from ..domain.instances import GONE_STATES, Instance, LaunchSpec, Market
from ..domain.interruptions import RecordRef, follow_record
from ..domain.plan import InstanceRecord, Pool, TargetGroups, group_by_target_group
from ..domain.pools import candidate_types, interruption_pools
from ..domain.rehome import (
    BOOT_TIMEOUT,
    HEALTH_TIMEOUT,
    LAUNCH_TIMEOUT,
    MOVE_TIMEOUT,
    STOP_TIMEOUT,
    Rehome,
    RehomeProgress,
)
from ..domain.stateful import Observed, StatefulMove
from ..domain.tags import interruption_replacement_tags
from ..ports import (
    Fleet,
    LoadBalancer,
    ManagedRegistry,
    MigrationRepository,
    Notifier,
    PlanRepository,
    PoolMemory,
    Probes,
    SpotPrices,
)
from .launching import launch_in_first_pool
from .probing import probe_of, probe_results, send_probes
from .stateful import StatefulMoves

PRICE_LOOKBACK_HOURS = 6
ROLLING_BACK = ("rolling_back", "rolled_back")


@dataclass
class Rehomes:
    fleet: Fleet
    load_balancer: LoadBalancer
    spot_prices: SpotPrices
    pool_memory: PoolMemory
    registry: ManagedRegistry
    migrations: MigrationRepository
    plans: PlanRepository
    notifier: Notifier
    probes: Probes
    clock: Clock

    def step(self, migration_id: str, original_id: str, interrupted: str) -> RehomeProgress:
        record = self.plans.records_by_key([(migration_id, original_id)]).get((migration_id, original_id))
        if record is None:
            return RehomeProgress.of(None, f"no record of {original_id} in migration {migration_id}")
        rehome = record.rehome if record.rehome and record.rehome.interrupted == interrupted else None
        if rehome is None:
            why_not = self._not_ours(migration_id, record, interrupted)
            if why_not:
                return RehomeProgress.of(None, why_not)
            rehome = record.rehome = Rehome.begin(interrupted, self.clock.now())
            record.attempts.append(f"{interrupted} interrupted: its disks move to a new instance in "
                                   f"{record.availability_zone}")
            self.plans.put_record(migration_id, record)
        if not rehome.ended:
            _Pass(self, migration_id, record, rehome).run()
        return RehomeProgress.of(rehome)

    def give_up(self, migration_id: str, original_id: str, interrupted: str, error: str) -> RehomeProgress:
        """The state machine's retries are spent: the re-home ends failed, saying where the disks are."""
        record = self.plans.records_by_key([(migration_id, original_id)]).get((migration_id, original_id))
        if record is None or record.rehome is None or record.rehome.interrupted != interrupted:
            # it stopped before its first step was stored: EC2 keeps the disks on the stopped instance
            self.notifier.publish(original_id, "stateful-rehome-failed",
                                  f"the disks of {original_id} did not move on from {interrupted}: {error}"[:300],
                                  [f"interrupted: {interrupted}", f"the disks stay on {interrupted} (stopped by EC2)"],
                                  {"migration_id": migration_id, "instance_id": original_id,
                                   "interrupted": interrupted, "holder": interrupted})
            return RehomeProgress.of(None, error)
        if not record.rehome.ended:
            _Pass(self, migration_id, record, record.rehome).fail(f"the re-home stopped on an error: {error}")
        return RehomeProgress.of(record.rehome)

    def _not_ours(self, migration_id: str, record: InstanceRecord, interrupted: str) -> str | None:
        """Why the record's disks do not move on from `interrupted` (None: they do)."""
        if record.replacement_id != interrupted or record.mode != "stateful":
            return f"the record of {record.instance_id} no longer names {interrupted}"
        if record.status not in ("migrated", "rollback_failed"):  # mid-swap, the wave engine owns it
            return f"the record of {record.instance_id} is {record.status}"
        if self.migrations.get(migration_id).get("status") in ROLLING_BACK:
            return "the migration is rolling back: the rollback puts the disks back on the original"
        return None


class _Pass:
    """One step of one re-home; the record is stored after it."""

    def __init__(self, service: Rehomes, migration_id: str, record: InstanceRecord, rehome: Rehome):
        self.s, self.mid, self.record, self.rehome = service, migration_id, record, rehome
        self.move = record.stateful or StatefulMove()
        self.now = service.clock.now()
        self.moves = StatefulMoves(service.fleet)

    def run(self) -> None:
        if self.s.migrations.get(self.mid).get("status") in ROLLING_BACK:
            self._end("done", "the migration is rolling back: the rollback puts the disks back on the original")
            return
        seen = self._look()
        {"launching": self._launch, "booting": self._booted, "parking": self._parked, "moving": self._moved,
         "proving": self._proven}[self.rehome.phase](seen)
        self._store()

    # --- the steps ----------------------------------------------------------------------------
    def _launch(self, seen: Observed) -> None:
        """A successor in another pool of the AZ, Spot first, then on-demand; launched stopped
        on interruption and without user data (it is stopped as soon as it runs)."""
        template = self._template()
        if template is None:
            self.fail("neither the interrupted instance nor the original is known to EC2: nothing to launch from")
            return
        token = f"rehome-{self.rehome.interrupted}-{self.rehome.launched}"
        tags = interruption_replacement_tags(template.tags, self.rehome.interrupted)
        inventory = self.s.fleet.inventory([template]).get(template.instance_id)

        def spec(pool: Pool, market: Market = "spot") -> LaunchSpec:
            return LaunchSpec.replacing(template, pool, tags, None, market=market, inventory=inventory,
                                        spot=self.record.spot_terms)

        launch = launch_in_first_pool(self.s.fleet, self._spot_pools(template), spec, token)
        market: Market = "spot"
        if launch.instance_id is None and launch.failure is None:  # no Spot capacity in the AZ
            od = Pool(instance_type=self.record.instance_type, availability_zone=self.record.availability_zone,
                      spot_hourly=0.0)
            market, launch = "on-demand", launch_in_first_pool(self.s.fleet, [od], lambda p: spec(p, "on-demand"),
                                                               f"{token}-od")
        if launch.instance_id is None or launch.pool is None:
            why = str(launch.failure) if launch.failure else "; ".join(launch.refused) or "no pool"
            if launch.failure is not None or self.rehome.since_warning(self.now) > LAUNCH_TIMEOUT:
                self.fail(f"no successor could be launched in {self.record.availability_zone}: {why}")
            else:
                self.record.attempts.append(f"re-home: no capacity in {self.record.availability_zone} yet ({why})")
            return
        self._launched(launch.instance_id, launch.pool, market)

    def _launched(self, successor: str, pool: Pool, market: Market) -> None:
        rehome = self.rehome
        rehome.successor, rehome.successor_type, rehome.successor_market = successor, pool.instance_type, market
        rehome.successor_hourly = pool.spot_hourly if market == "spot" else (self.record.on_demand_hourly or 0.0)
        rehome.launched += 1
        self.s.registry.register(successor, f"migration {self.mid}")
        self.record.attempts.append(f"re-home: {successor} launched ({market}, {pool})")
        rehome.enter("booting", self.now)

    def _booted(self, seen: Observed) -> None:
        """Running: stopped at once; its own root volume makes room for the original's."""
        state = seen.states.get(self._successor, "gone")
        if state == "running":
            self.s.fleet.stop([self._successor])
            self.rehome.enter("parking", self.now)
        elif state != "pending" or self.rehome.age(self.now) > BOOT_TIMEOUT:
            self._give_up_successor(f"{self._successor} is {state}, not running")

    def _parked(self, seen: Observed) -> None:
        """Stopped: it notes its own volumes and takes the user data; once EC2 has stopped the
        interrupted instance, the disks move (its Spot request cancelled first: only EC2 could
        start it again, and it would start without its disks)."""
        rehome = self.rehome
        if seen.states.get(self._successor) != "stopped":
            if rehome.age(self.now) > MOVE_TIMEOUT:
                self._give_up_successor(f"{self._successor} did not stop in {MOVE_TIMEOUT} s")
            return
        if not rehome.user_data_set:
            self._prepare_successor()
        if rehome.source == rehome.interrupted and not self._taken_back(seen):
            return
        self.s.fleet.cancel_spot_requests([rehome.source])
        self.s.load_balancer.deregister(self._groups(rehome.source))
        self._names(self._successor)  # written ahead: a rollback from now on looks for the disks here too
        self.record.attempts.append(f"re-home: {rehome.source} stopped; its disks move to {self._successor}")
        rehome.enter("moving", self.now)

    def _taken_back(self, seen: Observed) -> bool:
        """Whether EC2 has stopped the interrupted instance (the workload is down from the first
        pass that sees it stopping); one still running long after the warning keeps its disks."""
        state = seen.states.get(self.rehome.interrupted, "gone")
        if state in ("pending", "running"):
            if self.rehome.since_warning(self.now) > STOP_TIMEOUT:
                self._not_taken_back()
            return False
        self.rehome.went_down(self.now)
        return state != "stopping"

    def _moved(self, seen: Observed) -> None:
        progress, refused = self.moves.put_on(self.move, self._successor, self.rehome.source, seen,
                                                  tuple(self.rehome.spare_volumes))
        if refused:
            self._give_up_successor(f"EC2 refused to start {self._successor}: {refused}")
        elif progress == "done":
            self.s.load_balancer.register(self._groups(self._successor))
            self.record.probe_command = None
            self.rehome.enter("proving", self.now)
        elif self.rehome.age(self.now) > MOVE_TIMEOUT:
            self._give_up_successor(f"moving the disks to {self._successor} did not finish in {MOVE_TIMEOUT} s")

    def _proven(self, seen: Observed) -> None:
        verdict, why = self._verdict()
        if verdict == "healthy":
            self._rehomed()
        elif verdict == "failed" or self.rehome.age(self.now) > HEALTH_TIMEOUT:
            self.s.load_balancer.deregister(self._groups(self._successor))
            self._give_up_successor(f"{self._successor} with the disks is not healthy: {why or 'timed out'}")

    # --- the end ------------------------------------------------------------------------------
    def _rehomed(self) -> None:
        rehome, successor = self.rehome, self._successor
        down = rehome.measure_downtime(self.now)
        self._retire([rehome.interrupted, *rehome.given_up])
        self._delete_spares()
        self._end("done", f"{self.record.instance_id}'s disks moved from {rehome.interrupted} to {successor} "
                          f"({rehome.successor_market}, {rehome.successor_type}): down {down:.0f} s")
        self.s.notifier.publish(self.record.instance_id, "stateful-rehomed", rehome.outcome or "",
                                [f"interrupted: {rehome.interrupted}", f"now on: {successor}",
                                 f"volumes: {', '.join(self.move.volume_ids())}"],
                                {"migration_id": self.mid, "instance_id": self.record.instance_id,
                                 "interrupted": rehome.interrupted, "successor": successor,
                                 "market": rehome.successor_market, "downtime_seconds": down})

    def fail(self, why: str) -> None:
        """No successor took the disks: they stay where they are (named), and the owner is told."""
        rehome = self.rehome
        holder = self._holder()
        self._retire([i for i in (rehome.interrupted, *rehome.given_up, rehome.successor) if i and i != holder])
        where = f"the disks are on {holder}" if holder else "the disks are detached (available)"
        self._end("failed", f"{why}; {where}")
        self.s.notifier.publish(self.record.instance_id, "stateful-rehome-failed", rehome.outcome or "",
                                [f"interrupted: {rehome.interrupted}", where,
                                 f"volumes: {', '.join(self.move.volume_ids())}"],
                                {"migration_id": self.mid, "instance_id": self.record.instance_id,
                                 "interrupted": rehome.interrupted, "holder": holder})
        self._store()

    def _not_taken_back(self) -> None:
        """The warning was not followed by a stop: the instance keeps its disks, the successor goes."""
        self._retire([i for i in (self.rehome.successor, *self.rehome.given_up) if i])
        self._end("done", f"{self.rehome.interrupted} was not stopped by EC2 within {STOP_TIMEOUT} s: "
                          "it keeps its disks")

    def _end(self, phase: str, outcome: str) -> None:
        self.rehome.finish("done" if phase == "done" else "failed", outcome, self.now)
        self.record.attempts.append(f"re-home: {outcome}"[:300])

    # --- helpers ------------------------------------------------------------------------------
    @property
    def _successor(self) -> str:
        if not self.rehome.successor:
            raise ValueError("no successor launched")
        return self.rehome.successor

    def _look(self) -> Observed:
        rehome = self.rehome
        ids = [i for i in dict.fromkeys((rehome.interrupted, *rehome.given_up, rehome.successor)) if i]
        return self.moves.look(ids, self.move.volume_ids() + rehome.spare_volumes, self.move.interface_ids())

    def _template(self) -> Instance | None:
        """What the successor is launched like: the interrupted instance (its settings are the
        original's), or the original."""
        described = self.s.fleet.describe([self.rehome.interrupted, self.record.instance_id])
        return described.get(self.rehome.interrupted) or described.get(self.record.instance_id)

    def _spot_pools(self, template: Instance) -> list[Pool]:
        """Other Spot pools of the AZ: not the interrupted one, nor those of successors given up,
        recently interrupted pools last."""
        tried = {i.pool_key for i in self.s.fleet.describe(self.rehome.given_up).values()}
        zone = self.record.availability_zone
        prices = self.s.spot_prices.statistics(candidate_types(template.instance_type), self.now,
                                               PRICE_LOOKBACK_HOURS)
        pools = interruption_pools(template.instance_type, zone, [zone], prices,
                                   self.s.pool_memory.recent_interruptions(), self.record.max_price)
        return [p for p in pools if p.key not in tried]

    def _prepare_successor(self) -> None:
        own = self.s.fleet.inventory(list(self.s.fleet.describe([self._successor]).values()))
        volumes = own[self._successor].volumes if self._successor in own else ()
        self.rehome.spare_volumes += [v.volume_id for v in volumes if v.volume_id not in self.move.volume_ids()]
        user_data = self.s.fleet.user_data(self.rehome.interrupted) or self.s.fleet.user_data(self.record.instance_id)
        if user_data:
            self.s.fleet.set_user_data(self._successor, user_data)
        self.rehome.user_data_set = True

    def _names(self, successor: str) -> None:
        """The record names the successor (type, AZ, market, price), and the realised savings
        drift by the difference, at once."""
        before = RecordRef.of(self.mid, self.record)
        after = before.moved_to(self.rehome.successor_market, self.rehome.successor_hourly)
        follow = follow_record(before, self.rehome.source, successor, self.rehome.successor_type or "",
                               self.record.availability_zone, after, "")
        for name, value in follow.fields.items():
            setattr(self.record, name, value)
        self.s.plans.put_record_drifting(self.mid, self.record, follow.monthly_spot, follow.fallbacks)

    def _verdict(self) -> tuple[str, str]:
        """Healthy in every target group of the original, both status checks passed and, when the
        instance has one, its probe succeeded (sent once the rest is proven)."""
        successor, record = self._successor, self.record
        health = self.s.load_balancer.target_states(self._groups(successor)) if record.target_groups else {}
        unhealthy = [ref.arn for ref in record.target_groups if health.get((ref.arn, successor)) != "healthy"]
        checks = self.s.fleet.status_checks([successor]).get(successor)
        probe = probe_of(record)
        result: ProbeResult | None = None
        if probe is not None and not unhealthy and checks is not None and checks.passed:
            if record.probe_command is None:
                sent, refused = send_probes(self.s.probes, {successor: probe})
                record.probe_command, result = sent.get(successor), refused.get(successor)
            if record.probe_command:
                result = probe_results(self.s.probes, {successor: record.probe_command}).get(successor)
        return health_verdict(unhealthy, checks, result, probe is not None)

    def _give_up_successor(self, why: str) -> None:
        self.record.attempts.append(f"re-home: {why}"[:300])
        if not self.rehome.give_up_successor(self.now):
            self.fail(f"{self.rehome.launched} successor(s) tried; the last: {why}")

    def _holder(self) -> str | None:
        """The instance the root volume is attached to, if any."""
        seen = self._look()
        root = self.move.volumes[0].volume_id if self.move.volumes else None
        at = seen.volumes.get(root) if root else None
        return at.instance_id if at is not None else None

    def _retire(self, instance_ids: list[str]) -> None:
        """Terminate instances that no longer hold any of the disks (a Spot request cancelled first)."""
        seen = self._look()
        holding = _holders(seen, set(self.move.volume_ids()))
        doomed = [i for i in dict.fromkeys(instance_ids)
                  if i not in holding and seen.states.get(i, "gone") not in (*GONE_STATES, "gone")]
        if doomed:
            self.s.fleet.terminate(doomed)
            for instance_id in doomed:
                self.s.registry.register(instance_id, f"migration {self.mid}", status="retired")

    def _groups(self, instance_id: str) -> TargetGroups:
        return group_by_target_group((instance_id, ref) for ref in self.record.target_groups)

    def _store(self) -> None:
        self.s.plans.put_record(self.mid, self.record)

    def _delete_spares(self) -> None:
        """The successors' own root volumes, detached to make room: deleted (those still attached
        go with their instance)."""
        volumes, _ = self.s.fleet.pieces(self.rehome.spare_volumes, [])
        spare = [v for v, at in volumes.items() if at.state == "available"]
        if spare:
            self.s.fleet.delete_volumes(spare)


def _holders(seen: Observed, pieces: set[str]) -> set[str]:
    """The instances the move's volumes or interfaces are attached to."""
    volumes = {at.instance_id for v, at in seen.volumes.items() if v in pieces}
    return {i for i in volumes | {at.instance_id for at in seen.interfaces.values()} if i}
