"""MigrateWave: replace a wave's on-demand instances with Spot, make-before-break.

Every step is recorded per instance before the next one starts, so an invocation that
times out or is retried resumes where the last one stopped. A replacement takes traffic
before its original stops: it must be running and healthy in every target group of the
original first; only then is the original deregistered, drained and stopped (never
terminated).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.analysis import no_longer_eligible
from ..domain.batching import chunks
from ..domain.clock import Budget, Clock, iso
from ..domain.errors import WaveFailed
from ..domain.instances import Instance, LaunchSpec
from ..domain.locks import InstanceLock
from ..domain.outcomes import ended_early
from ..domain.plan import IN_FLIGHT, InstanceRecord, WaveSpec, group_by_target_group
from ..domain.request import MigrationRequest
from ..domain.tags import migration_replacement_tags
from ..domain.waves import WaveResult
from ..ports import Fleet, InstanceLocks, LoadBalancer, ManagedRegistry, MigrationRepository, PlanRepository
from .launching import launch_in_first_pool
from .traffic import Traffic

CHUNK = 50  # instances moved together: launched, then swapped in one batch per target group


@dataclass
class MigrateWave:
    fleet: Fleet
    load_balancer: LoadBalancer
    migrations: MigrationRepository
    plans: PlanRepository
    registry: ManagedRegistry
    locks: InstanceLocks
    clock: Clock

    def run(self, migration_id: str, wave: WaveSpec, budget: Budget) -> WaveResult:
        """Advance the wave as far as the invocation's budget allows; WaveFailed when it is
        done with too few instances moved."""
        item = self.migrations.get(migration_id)
        records = [r for r in self.plans.records(migration_id) if r.eligible and r.wave == wave.index]
        if ended_early(item):  # the execution was stopped while this invocation was on its way: change nothing
            return WaveResult.of(wave, records, iso(self.clock.now()))
        self.migrations.update(migration_id, status="migrating", current_wave=wave.index)
        request = MigrationRequest.model_validate(item["request"])
        self._advance(migration_id, wave, records, budget)
        result = WaveResult.of(wave, records, iso(self.clock.now()))
        # Progress after every invocation, so status and watch read one item, not the plan.
        self.migrations.set_wave_result(migration_id, wave.index, "migration", result.model_dump())
        if result.below(request.wave_success_ratio):
            raise WaveFailed(
                f"wave {wave.index + 1} ({wave.percent:g} %) migrated {result.migrated} of {result.total} instances, "
                f"below the required {request.wave_success_ratio:.0%}"
            )
        return result


    def _advance(self, migration_id: str, wave: WaveSpec, records: list[InstanceRecord], budget: Budget) -> None:
        """Chunk after chunk while the budget lasts and the execution was not stopped meanwhile
        (Step Functions does not stop a running Lambda)."""
        step = _WaveStep(self, migration_id, wave.index, budget)
        for chunk in chunks([r for r in records if r.status in IN_FLIGHT], CHUNK):
            if budget.exhausted() or ended_early(self.migrations.get(migration_id)):
                return
            step.advance(chunk)


class _WaveStep:
    """One chunk of a wave, launched and swapped; each record is stored after each of its steps."""

    def __init__(self, service: MigrateWave, migration_id: str, wave: int, budget: Budget):
        self.s, self.mid, self.wave, self.budget = service, migration_id, wave, budget
        self.traffic = Traffic(service.fleet, service.load_balancer, service.clock)

    def advance(self, chunk: list[InstanceRecord]) -> None:
        """Launch what is planned, then swap what runs: replacement in, original out."""
        planned = [r for r in chunk if r.status == "planned"]
        if planned:
            self._launch_all(planned)
        launching = [r for r in chunk if r.status == "launching"]
        if launching:
            self._switch_traffic(self._running(launching))

    def _launch_all(self, planned: list[InstanceRecord]) -> None:
        ids = [r.instance_id for r in planned]
        originals = self.s.fleet.describe(ids)
        launched = self.s.fleet.find_replacements(self.mid, ids)
        locks = self.s.locks.locks(ids)
        for record in planned:
            original, existing = originals.get(record.instance_id), launched.get(record.instance_id)
            why = None if existing else self._may_not_move(original, locks.get(record.instance_id))
            if why:
                self._skip(record, *why)
            else:
                self._launch(record, original, existing)

    def _may_not_move(self, original: Instance | None, lock: InstanceLock | None) -> tuple[str, str] | None:
        """Why an instance planned for this wave must not move now (checked right before its launch)."""
        if lock is None or lock.migration_id != self.mid:
            holder = lock.migration_id if lock and lock.migration_id else "no migration"
            return "lock_lost", f"this migration no longer holds the instance ({holder} does)"
        if original is None or original.state != "running":
            return None  # _launch fails it: the original is gone or stopped
        return no_longer_eligible(original)

    def _skip(self, record: InstanceRecord, reason: str, detail: str) -> None:
        record.skip(reason, detail)
        self.s.plans.put_record(self.mid, record)

    def _running(self, launching: list[InstanceRecord]) -> list[InstanceRecord]:
        """The replacements that reach running in time; the others are given up."""
        deadline = self.budget.step_deadline()
        states = self.traffic.wait_for_states([r.replacement for r in launching], "running", deadline)
        for r in launching:
            if states.get(r.replacement) != "running":
                self._abandon(r, f"replacement {r.replacement} did not reach running ({states.get(r.replacement)})")
        return [r for r in launching if states.get(r.replacement) == "running"]

    def _launch(self, record: InstanceRecord, original: Instance | None, existing: Instance | None) -> None:
        if original is None or original.state != "running":
            self._fail(record, f"original is {original.state if original else 'gone'}; left as it is")
            return
        if existing:  # a previous invocation launched it but died before recording it
            pool = next((p for p in record.pools if p.instance_type == existing.instance_type), record.pools[0])
            where = pool.model_copy(update={"availability_zone": existing.availability_zone})
            record.launched(existing.instance_id, where, f"found {existing.instance_id} launched by an earlier attempt")
            self._recorded(record)
            return
        tags = migration_replacement_tags(original.tags, original.instance_id, self.mid, self.wave)
        user_data = self.s.fleet.user_data(record.instance_id)
        launch = launch_in_first_pool(self.s.fleet, record.pools,
                                      lambda pool: LaunchSpec.replacing(original, pool, tags, user_data),
                                      f"{self.mid}-{record.instance_id}")
        record.attempts += launch.refused
        if launch.failure is not None:  # not about the pool (no free address, bad parameter)
            self._fail(record, f"launch refused: {launch.failure}"[:300])
            return
        if launch.instance_id is None or launch.pool is None:
            self._fail(record, f"Spot capacity refused in all {len(record.pools)} pools")
            return
        record.launched(launch.instance_id, launch.pool, f"{launch.pool}: launched {launch.instance_id}")
        self._recorded(record)

    def _recorded(self, record: InstanceRecord) -> None:
        """A launched replacement is in the registry (the sweeper leaves it alone), then on its
        record: a retry after a crash between the two finds it by its tags and registers it again."""
        self.s.registry.register(record.replacement, f"migration {self.mid} wave {self.wave}")
        self.s.plans.put_record(self.mid, record)

    def _switch_traffic(self, running: list[InstanceRecord]) -> None:
        """Register replacements, wait healthy, deregister originals, wait drained, stop originals."""
        healthy = self._healthy(running)
        old_groups = group_by_target_group((r.instance_id, ref) for r in healthy for ref in r.target_groups)
        self.s.load_balancer.deregister(old_groups)
        self.traffic.wait_for_targets(old_groups, {"unused"}, self.budget.step_deadline())
        if healthy:
            self.s.fleet.stop([r.instance_id for r in healthy])
        for r in healthy:
            r.status = "migrated"
            self.s.plans.put_record(self.mid, r)

    def _healthy(self, running: list[InstanceRecord]) -> list[InstanceRecord]:
        """Register the replacements; those not healthy in every target group of their original are given up."""
        new_groups = group_by_target_group((r.replacement, ref) for r in running for ref in r.target_groups)
        self.s.load_balancer.register(new_groups)
        health = self.traffic.wait_for_targets(new_groups, {"healthy"}, self.budget.step_deadline())
        healthy = []
        for r in running:
            bad = [ref.arn for ref in r.target_groups if health.get((ref.arn, r.replacement)) != "healthy"]
            if bad:
                self.s.load_balancer.deregister(group_by_target_group((r.replacement, ref) for ref in r.target_groups))
                self._abandon(r, f"replacement {r.replacement_id} not healthy in {len(bad)} target group(s)")
            else:
                healthy.append(r)
        return healthy

    def _abandon(self, record: InstanceRecord, why: str) -> None:
        self.s.fleet.terminate([record.replacement])
        self.s.registry.register(record.replacement, f"migration {self.mid}", status="retired")
        self._fail(record, why)

    def _fail(self, record: InstanceRecord, why: str) -> None:
        record.fail(why)
        self.s.plans.put_record(self.mid, record)
