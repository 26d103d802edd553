"""MigrateWave: replace a wave's on-demand instances with Spot, make-before-break.

One invocation is one short pass over the wave; it never waits. It launches what EC2's
launch rate allows now (several replacements per RunInstances where their originals share
a configuration), then moves every launched replacement one step on, as far as EC2 and the
load balancer already are: booted -> registered in every target group of its original ->
healthy there -> original deregistered -> original drained (the target group's
deregistration delay) -> original stopped (never terminated). It returns how long the state
machine should wait before the next pass (a Wait state: boot, health checks and draining
cost no Lambda time), so no replacement is ever given up because an invocation ran out of
time. Every step is recorded per instance before the next one starts, and a launch is
written ahead (its batch on the records, then RunInstances with that batch as client
token and tag), so a pass that crashes or is retried resumes where the last one stopped.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..domain.analysis import no_longer_eligible
from ..domain.carry import MODE_TAG, Inventory, stateful_blockers, stateless_blockers
from ..domain.clock import Budget, Clock, iso
from ..domain.errors import (
    CapacityRefused,
    LaunchRefused,
    LaunchThrottled,
    TransientAwsError,
    WaveFailed,
)
from ..domain.health import ProbeResult, Verdict, health_verdict
from ..domain.instances import GONE_STATES, Instance, LaunchSpec, Market
from ..domain.interruptions import LaunchProfile, RecordRef
from ..domain.launch_rate import LaunchRate
from ..domain.locks import InstanceLock
from ..domain.outcomes import ended_early
from ..domain.plan import InstanceRecord, Pool, TargetGroups, TargetRef, WaveSpec, group_by_target_group, unfinished
from ..domain.request import MigrationRequest
from ..domain.retention import STOPPED_BY_TAG
from ..domain.stateful import StatefulMove
from ..domain.tags import LAUNCH_BATCH_TAG, RETIRED_BY_TAG, migration_replacement_tags
from ..domain.waves import WaveResult
from ..ports import (
    AutoScaling,
    Fleet,
    InstanceLocks,
    LoadBalancer,
    ManagedRegistry,
    MigrationRepository,
    PlanRepository,
    Probes,
)
from .group_wave import GroupsProgress, GroupWaves
from .probing import probe_of, probe_results, send_probes
from .stateful_wave import StatefulPass

BOOT_TIMEOUT = 600  # seconds for a replacement to reach running before it is given up
HEALTH_TIMEOUT = 900  # seconds for a registered replacement to be healthy in every group of its original
DRAIN_MARGIN = 120  # seconds past the deregistration delay after which a deregistration is sent again
POLL_SECONDS = 15  # the wait while replacements boot or health checks run
MIN_WAIT, MAX_WAIT = 2, 60
LAUNCHES_PER_PASS = 100  # one user-data read each: within EC2's burst for the call; the first ones boot meanwhile
TAGS_PER_PASS = 50  # CreateTags calls a pass makes at most: EC2's burst for mutating calls (refilled at 5 a second)
TAG_WAIT = 10  # seconds between passes while replacements wait for their own tags (the bucket refills)
LIVE = ("pending", "running")
GIVEN_UP = ("failed", "skipped")  # records whose original stays as it is
NOT_SWAPPED = ("initial", "healthy", "unhealthy", "draining", "unavailable")  # an original still in its group


@dataclass
class MigrateWave:
    fleet: Fleet
    load_balancer: LoadBalancer
    migrations: MigrationRepository
    plans: PlanRepository
    registry: ManagedRegistry
    locks: InstanceLocks
    clock: Clock
    probes: Probes
    autoscaling: AutoScaling

    def run(self, migration_id: str, wave: WaveSpec, budget: Budget) -> WaveResult:
        """Move the wave on as far as EC2 and the load balancer are; WaveFailed when it is done
        with too few instances moved."""
        item = self.migrations.get(migration_id)
        if ended_early(item):  # the execution was stopped while this invocation was on its way: change nothing
            return WaveResult.of(wave, self._wave(migration_id, wave), iso(self.clock.now()))
        self.migrations.update(migration_id, status="migrating", current_wave=wave.index)
        request = MigrationRequest.model_validate(item["request"])
        rate = LaunchRate.model_validate(item.get("launch_rate") or {})
        in_flight = self.plans.in_flight(migration_id, wave.index)  # the records done with are not read again
        before = {r.instance_id: r.status for r in in_flight}
        step = _WaveStep(self, migration_id, wave.index, budget, rate, request.reverting)
        step.advance(in_flight)
        self.migrations.update(migration_id, launch_rate=rate.model_dump())
        groups = self._groups(migration_id, item, wave, request)
        if any(unfinished(r) for r in in_flight) or not groups.done:
            previous = (item.get("wave_results") or {}).get(str(wave.index), {}).get("migration")
            moved = [r for r in in_flight if r.status != before[r.instance_id]]
            result = WaveResult.so_far(wave, moved, _in(in_flight, "launching"), previous,
                                       _next_look(step, in_flight, groups))
        else:  # done: judged on every record of the wave
            result = WaveResult.of(wave, self._wave(migration_id, wave), iso(self.clock.now()))
        result = result.model_copy(update={"groups": groups.moved, "failures": [*groups.failed, *result.failures]})
        # Progress after every invocation, so status and watch read one item, not the plan.
        self.migrations.set_wave_result(migration_id, wave.index, "migration", result.model_dump())
        _judge(wave, result, groups, request.wave_success_ratio)
        return result

    def _groups(self, migration_id: str, item: Mapping[str, Any], wave: WaveSpec,
                request: MigrationRequest) -> GroupsProgress:
        """The wave's step for the plan's Auto Scaling groups (no read when the plan has none)."""
        if not (item.get("summary") or {}).get("groups"):
            return GroupsProgress()
        return GroupWaves(self.autoscaling, self.plans, self.clock).advance(migration_id, wave,
                                                                            request.asg.on_demand_base)

    def _wave(self, migration_id: str, wave: WaveSpec) -> list[InstanceRecord]:
        return [r for r in self.plans.records(migration_id) if r.eligible and r.wave == wave.index]


@dataclass
class _Group:
    """Planned records whose replacements one RunInstances can launch: the same pools and the
    same launch configuration; what differs per replacement is tagged on it afterwards."""

    records: list[InstanceRecord]
    spec_for: dict[str, LaunchSpec]  # original id -> its replacement's full spec in the first pool
    tried: dict[str, list[str]] = field(default_factory=dict)  # original id -> refusals so far


class _WaveStep:
    """One pass over the wave; each record is stored after each of its steps."""

    def __init__(self, service: MigrateWave, migration_id: str, wave: int, budget: Budget, rate: LaunchRate,
                 reverting: bool = False):
        self.s, self.mid, self.wave, self.budget, self.rate = service, migration_id, wave, budget, rate
        self.reverting = reverting  # a revert: Spot instances replaced by on-demand ones, and kept running
        self.delays: dict[str, int] = {}

    # --- the pass -------------------------------------------------------------------------
    def advance(self, records: list[InstanceRecord]) -> None:
        """Launch, then move each launched replacement on, in the order of its steps (so a step
        EC2 and the load balancer finish at once is followed by the next one in the same pass)."""
        moving = [r for r in records if r.status not in GIVEN_UP]
        self._resume_launches([r for r in _in(records, "planned") if r.launch_batch])
        self._launch(_in(records, "planned"))
        self._tag([r for r in records if r.status in ("launching", "migrated") and not r.replacement_tagged])
        self._swap(records)
        self._unretire([r for r in moving if r.status in GIVEN_UP])

    def _swap(self, records: list[InstanceRecord]) -> None:
        stateless = [r for r in records if r.mode != "stateful"]
        for phase, step in (("booting", self._booted), ("registering", self._healthy), ("draining", self._drained)):
            due = _in_phase(stateless, phase)
            if due and not self.budget.exhausted():
                step(due)
        stateful = [r for r in _in(records, "launching") if r.mode == "stateful"]
        if stateful and not self.budget.exhausted():
            StatefulPass(self).advance(stateful)

    def wait_seconds(self, records: list[InstanceRecord]) -> int:
        """Until the next thing worth a pass: a launch the rate allows, a boot or health check,
        the end of a drain."""
        now = self._now()
        planned = _in(records, "planned")
        waits = [self.rate.seconds_until(min(len(planned), 50), now.timestamp())] if planned else []
        waits += [self._drain_left(r, now) if r.phase == "draining" else POLL_SECONDS
                  for r in _in(records, "launching")]
        waits += [TAG_WAIT] if any(not r.replacement_tagged for r in _in(records, "migrated")) else []
        return int(max(MIN_WAIT, min([MAX_WAIT, *waits])))

    def _drain_left(self, record: InstanceRecord, now: datetime) -> float:
        return max((self._delay(ref.arn) for ref in record.target_groups), default=0) - _age(record, now)

    # --- launching --------------------------------------------------------------------------
    def _launch(self, planned: list[InstanceRecord]) -> None:
        allowed = self.rate.available(self._now().timestamp())
        if not planned or allowed < 1 or self.budget.exhausted():
            return
        if ended_early(self.s.migrations.get(self.mid)):  # stopped meanwhile: launch nothing more
            return
        for group in self._groups(self._movable(planned[:min(allowed, LAUNCHES_PER_PASS)])):
            if not self._launch_group(group):
                return

    def _movable(self, todo: list[InstanceRecord]) -> list[_Movable]:
        """The records that may move now, with their originals and what they carry as they are
        now; the others are skipped (no longer eligible, held by another migration, or carrying
        what their mode cannot) or failed (original gone)."""
        running = self._running(todo)
        inventories = self.s.fleet.inventory([o for _, o in running]) if running else {}
        movable = [_Movable(r, o, inventories.get(r.instance_id, Inventory())) for r, o in running]
        movable = [m for m in movable if m.still_carried()]
        self._store([r for r in todo if r.status != "planned"])
        return movable

    def _running(self, todo: list[InstanceRecord]) -> list[tuple[InstanceRecord, Instance]]:
        """The records whose originals still run and may move, with them; the others skipped or failed."""
        ids = [r.instance_id for r in todo]
        originals, locks = self.s.fleet.describe(ids), self.s.locks.locks(ids)
        replaced = self._replaced_meanwhile(ids)
        running: list[tuple[InstanceRecord, Instance]] = []
        for record in todo:
            original = originals.get(record.instance_id)
            why = replaced.get(record.instance_id) or self._may_not_move(original, locks.get(record.instance_id))
            if why:
                record.skip(*why)
            elif original is None or original.state != "running":
                record.fail(f"original is {original.state if original else 'gone'}; left as it is")
            else:
                running.append((record, original))
        return running

    def _replaced_meanwhile(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """A revert's Spot instances are marked retired first, so an interruption of one launches
        nothing from then on; one the interruption handler replaced before that is left to its
        replacement (a second one, on-demand, would serve for the same original)."""
        if not self.reverting or not ids:
            return {}
        self.s.fleet.tag_all(ids, {RETIRED_BY_TAG: self.mid})
        return {iid: ("interrupted", f"EC2 is taking {iid} back: {successor.instance_id} replaced it")
                for iid, successor in self.s.fleet.find_successors(ids).items()}

    def _unretire(self, given_up: list[InstanceRecord]) -> None:
        """A revert gave these up: their Spot instances serve on, and an interruption of one is handled again."""
        if self.reverting and given_up:
            self.s.fleet.untag_all([r.instance_id for r in given_up], [RETIRED_BY_TAG])

    def _may_not_move(self, original: Instance | None, lock: InstanceLock | None) -> tuple[str, str] | None:
        """Why an instance planned for this wave must not move now (checked right before its launch)."""
        if lock is None or lock.migration_id != self.mid:
            holder = lock.migration_id if lock and lock.migration_id else "no migration"
            return "lock_lost", f"this migration no longer holds the instance ({holder} does)"
        if original is None or original.state != "running":
            return None  # _launch fails it: the original is gone or stopped
        return no_longer_eligible(original, self.reverting)

    def _groups(self, movable: list[_Movable]) -> list[_Group]:
        """The records one launch configuration serves, each with its full spec."""
        groups: dict[tuple[object, ...], _Group] = {}
        user_data = self.s.fleet.user_data_of([m.record.instance_id for m in movable])
        for record, original, inventory in ((m.record, m.original, m.inventory) for m in movable):
            tags = migration_replacement_tags(original.tags, original.instance_id, self.mid, self.wave, self.reverting)
            spec = LaunchSpec.replacing(original, record.pools[0], tags, user_data[record.instance_id],
                                        market=record.pools[0].market, inventory=inventory, spot=record.spot_terms)
            if record.mode == "stateful":  # takes the original's disks (and user data) once stopped
                spec = replace(spec, user_data=None, tags={**tags, MODE_TAG: "stateful"})
            key = (tuple(p.key for p in record.pools), spec.image_id, spec.subnet_id, spec.settings, spec.user_data,
                   spec.interruption_behavior, spec.max_price)
            group = groups.setdefault(key, _Group([], {}))
            group.records.append(record)
            group.spec_for[record.instance_id] = spec
        return list(groups.values())

    def _launch_group(self, group: _Group) -> bool:
        """Try the group's pools in order; False when launching must stop for this pass (the
        rate is spent, EC2 throttled, or an answer that may yet be a launch)."""
        waiting = sorted(group.records, key=lambda r: r.instance_id)
        pools = waiting[0].pools
        for attempt, pool in enumerate(pools):
            waiting, go_on = self._launch_in_pool(group, waiting, pool, attempt)
            if not go_on:
                return False
            if not waiting:
                return True
        for record in waiting:  # every pool was offered them and had no capacity
            record.attempts += group.tried.pop(record.instance_id, [])
            record.fail(f"{'Spot' if pools[0].market == 'spot' else 'on-demand'} capacity refused in all "
                        f"{len(pools)} pools")
        self._store(waiting)
        return True

    def _launch_in_pool(self, group: _Group, waiting: list[InstanceRecord], pool: Pool,
                        attempt: int) -> tuple[list[InstanceRecord], bool]:
        """Launch `waiting` in `pool`, as many at once as the rate allows: those left for the
        next pool, and whether launching may go on."""
        left: list[InstanceRecord] = []
        while waiting:
            count = min(len(waiting), self.rate.available(self._now().timestamp()))
            if count < 1 or self.budget.exhausted():
                return left + waiting, False
            batch, waiting = waiting[:count], waiting[count:]
            launched = self._launch_batch(group, batch, pool, attempt)
            if launched is None:
                return left + [r for r in batch + waiting if r.status == "planned"], False
            left += [r for r in batch if r.status == "planned"]
            if len(launched) < len(batch):  # the pool ran short: the others try the next one
                return left + waiting, True
        return left, True

    def _launch_batch(self, group: _Group, batch: list[InstanceRecord], pool: Pool,
                      attempt: int) -> list[str] | None:
        """One RunInstances for `batch` in `pool`, written ahead on the records: the launched
        ids (fewer when capacity ran short, none when refused), or None to stop launching."""
        token = _batch_token(self.mid, batch, pool, attempt)
        for record in batch:
            record.launch_batch = token
        self._store(batch)
        now = self._now().timestamp()
        try:
            launched = self.s.fleet.launch_many(_shared_spec(group, batch, pool, token), len(batch), token)
        except CapacityRefused as refused:
            self._refused(group, batch, f"{pool}: {refused.code}")
            return []
        except LaunchThrottled:
            self.rate.throttled(len(batch), now)
            self._refused(group, batch, None)
            return None
        except LaunchRefused as refused:  # not about the pool (no free address, bad parameter)
            for record in batch:
                record.attempts += group.tried.pop(record.instance_id, [])
                record.fail(f"launch refused: {refused}"[:300])
            self._store(batch)
            return []
        except TransientAwsError:  # it may have launched: the next pass looks for the batch first
            return None
        self.rate.spend(len(launched), now)
        self._launched(group, list(zip(batch, launched, strict=False)), pool)
        short = batch[len(launched):]
        self._refused(group, short, f"{pool}: capacity for {len(launched)} of {len(batch)}")
        return launched

    def _refused(self, group: _Group, batch: list[InstanceRecord], note: str | None) -> None:
        if not batch:
            return
        for record in batch:
            record.launch_batch = None
            if note:
                group.tried.setdefault(record.instance_id, []).append(note)
        self._store(batch)

    def _launched(self, group: _Group, pairs: list[tuple[InstanceRecord, str]], pool: Pool) -> None:
        """Registry (with each replacement's launch profile: what an interruption warning about
        it needs), then records (a crash in between leaves instances the next pass finds by
        their batch); each replacement's own tags follow (`_tag`)."""
        profiles = {i: LaunchProfile(target_groups=r.target_groups, user_data=group.spec_for[r.instance_id].user_data,
                                     record=RecordRef.of(self.mid, r).moved_to(pool.market, pool.spot_hourly),
                                     spot=r.spot_terms, hooks=r.carry.hooks if r.carry else None)
                    for r, i in pairs}
        self.s.registry.register_all([i for _, i in pairs], f"migration {self.mid} wave {self.wave}", profiles)
        if self.reverting:  # a revert's on-demand instances are its own until it ends: no other migration plans them
            self.s.locks.acquire(self.mid, [i for _, i in pairs], self._now())
        now = iso(self._now())
        for record, instance_id in pairs:
            record.attempts += group.tried.pop(record.instance_id, [])
            record.launched(instance_id, pool, f"{pool}: launched {instance_id}", now)
        self._store([r for r, _ in pairs])

    def _tag(self, untagged: list[InstanceRecord]) -> None:
        """Each replacement launched with others gets its own tags (the original it replaces,
        its name, the original's other tags as they are now), the oldest first, off the path
        of the swap: one CreateTags per replacement, TAGS_PER_PASS a pass. The wave is done only
        once every replacement has them (until then, the records name each one)."""
        if not untagged or self.budget.exhausted():
            return
        todo = sorted(untagged, key=lambda r: r.phase_since or "")[:TAGS_PER_PASS]
        originals = self.s.fleet.describe([r.instance_id for r in todo])
        self.s.fleet.tag_each({r.replacement: self._own_tags(r, originals.get(r.instance_id)) for r in todo})
        for record in todo:
            record.replacement_tagged = True
        self._store(todo)

    def _own_tags(self, record: InstanceRecord, original: Instance | None) -> dict[str, str]:
        """A replacement's own tags; a stateful one says so whatever mode tag its original carries
        (the interruption handler moves its disks on rather than replacing it)."""
        tags = migration_replacement_tags(getattr(original, "tags", {}), record.instance_id, self.mid, self.wave,
                                          self.reverting)
        if record.mode == "stateful":
            tags[MODE_TAG] = "stateful"
        return tags

    def _resume_launches(self, written_ahead: list[InstanceRecord]) -> None:
        """Launches a crash interrupted between RunInstances and the records: the instances
        carry the batch's tag; the records without one launch again (same client token)."""
        by_batch: dict[str, list[InstanceRecord]] = defaultdict(list)
        for record in written_ahead:
            by_batch[record.launch_batch or ""].append(record)
        for token, batch in by_batch.items():
            found = self.s.fleet.launched_in_batch(self.mid, token)
            batch.sort(key=lambda r: r.instance_id)
            self.s.registry.register_all([i.instance_id for i in found], f"migration {self.mid} wave {self.wave}")
            for record, instance in zip(batch, found, strict=False):
                pool = next((p for p in record.pools if p.key == instance.pool_key), record.pools[0])
                record.launched(instance.instance_id, pool, f"{pool}: found {instance.instance_id} launched by an "
                                "earlier attempt", iso(self._now()))
            for record in batch[len(found):]:
                record.launch_batch = None
            self._store(batch)

    # --- swapping ---------------------------------------------------------------------------
    def _booted(self, booting: list[InstanceRecord]) -> None:
        """Replacements that run are registered in every target group of their original; those
        gone, or still pending after BOOT_TIMEOUT, are given up."""
        now = self._now()
        replacements = self.s.fleet.describe([r.replacement for r in booting])
        self._follow_successors(booting, replacements)
        states = {r.instance_id: getattr(replacements.get(r.replacement), "state", "gone") for r in booting}
        running = [r for r in booting if states[r.instance_id] == "running"]
        for record in booting:
            why = _not_booting(record, states[record.instance_id], now)
            if why:
                self._abandon(record, why)
        self.s.load_balancer.register(_targets(running, of_replacement=True))
        for record in running:
            record.enter("registering", iso(now))
        self._store(running)

    def _follow_successors(self, booting: list[InstanceRecord], replacements: dict[str, Instance]) -> None:
        """A replacement EC2 took back while booting, before it had its own tags: the interruption
        handler could not tell which record to follow, so the record follows the instance that
        succeeds it here (found by the tag naming the instance it succeeds)."""
        gone = [r for r in booting if getattr(replacements.get(r.replacement), "state", "gone") not in LIVE]
        successors = self.s.fleet.find_successors([r.replacement for r in gone]) if gone else {}
        followed = [r for r in gone if r.replacement in successors]
        for record in followed:
            successor = successors[record.replacement]
            _follow(record, successor)
            replacements[successor.instance_id] = successor
        self._store(followed)

    def _healthy(self, registering: list[InstanceRecord]) -> None:
        """Replacements proven healthy (every target group of their original, EC2's status checks,
        the probe when one is wanted) take their original's place: its Elastic IPs move to them,
        the original is deregistered and drains. Those that fail a check, or are not healthy
        after HEALTH_TIMEOUT, are given up (the original serves on, untouched)."""
        now = self._now()
        verdicts = self._verdicts(registering)
        healthy = [r for r in registering if verdicts[r.instance_id][0] == "healthy"]
        self._give_up(registering, verdicts, now)
        self._take_over(healthy)
        self.s.load_balancer.deregister(_targets(healthy, of_replacement=False))
        for record in healthy:
            record.enter("draining", iso(now))
        self._store(healthy)

    def _give_up(self, registering: list[InstanceRecord], verdicts: dict[str, tuple[Verdict, str]],
                 now: datetime) -> None:
        """Replacements that failed a check, or are still not healthy after HEALTH_TIMEOUT."""
        why = {r.instance_id: _sick(verdicts[r.instance_id], _age(r, now)) for r in registering}
        sick = [r for r in registering if why[r.instance_id]]
        if sick:
            self.s.load_balancer.deregister(_targets(sick, of_replacement=True))
        for record in sick:
            self._abandon(record, f"replacement {record.replacement_id} {why[record.instance_id]}")

    def _verdicts(self, registering: list[InstanceRecord]) -> dict[str, tuple[Verdict, str]]:
        """Original id -> whether its replacement has proven itself healthy (or why not yet)."""
        health = self.s.load_balancer.target_states(_targets(registering, of_replacement=True))
        checks = self.s.fleet.status_checks([r.replacement for r in registering])
        ready = [r for r in registering if probe_of(r) and not r.probe_command and not _unhealthy_in(r, health)
                 and getattr(checks.get(r.replacement), "passed", False)]
        probes = {**self._probe_results([r for r in registering if r.probe_command]), **self._send_probes(ready)}
        return {r.instance_id: health_verdict(_unhealthy_in(r, health), checks.get(r.replacement),
                                              probes.get(r.instance_id), probe_of(r) is not None)
                for r in registering}

    def _send_probes(self, ready: list[InstanceRecord]) -> dict[str, ProbeResult]:
        """Probe the replacements healthy in their groups and passing their status checks (their
        services are up by then); those SSM cannot reach fail at once."""
        sent, refused = send_probes(self.s.probes, {r.replacement: p for r in ready if (p := probe_of(r))})
        for record in ready:
            record.probe_command = sent.get(record.replacement)
        self._store([r for r in ready if r.probe_command])
        return {r.instance_id: refused[r.replacement] for r in ready if r.replacement in refused}

    def _probe_results(self, probed: list[InstanceRecord]) -> dict[str, ProbeResult]:
        """Original id -> its replacement's probe result so far."""
        by_replacement = probe_results(self.s.probes, {r.replacement: r.probe_command or "" for r in probed})
        return {r.instance_id: by_replacement[r.replacement] for r in probed if r.replacement in by_replacement}

    def _take_over(self, healthy: list[InstanceRecord]) -> None:
        """What only one instance can hold moves to the replacement before the original goes: its
        Elastic IPs (written ahead on the record, so a rollback moves back what may have moved),
        and a source/destination check switched off (a NAT or router instance)."""
        self._move_addresses([r for r in healthy if r.carry and r.carry.elastic_ips and not r.moved_addresses])
        for record in [r for r in healthy if r.carry and not r.carry.source_dest_check]:
            self.s.fleet.set_source_dest_check(record.replacement, False)

    def _move_addresses(self, moving: list[InstanceRecord]) -> None:
        for record in moving:
            record.moved_addresses = list(record.carry.elastic_ips) if record.carry else []
        self._store(moving)
        for record in moving:
            for address in record.moved_addresses:
                self.s.fleet.associate_address(address.allocation_id, record.replacement)
            record.attempts.append("Elastic IP(s) moved to the replacement: "
                                   + ", ".join(a.public_ip for a in record.moved_addresses))

    def _drained(self, draining: list[InstanceRecord]) -> None:
        """Originals out of every group (drained) are stopped: the record is migrated. One still
        registered well past its delay is deregistered again (the first one did not hold)."""
        now = self._now()
        states = self.s.load_balancer.target_states(_targets(draining, of_replacement=False))
        left = {r.instance_id: _still_in(r, states) for r in draining}
        done = [r for r in draining if not left[r.instance_id]]
        self._deregister_again(draining, left, states, now)
        if done:
            self._retire_originals([r.instance_id for r in done])
        for record in done:
            record.migrated()
        self._store(done)

    def _retire_originals(self, ids: list[str]) -> None:
        """Tagged first: only what this migration stopped is ever retired (domain/retention.py). A
        revert's Spot originals are not stopped (EC2 cannot stop a one-time Spot instance): they run
        on out of service, marked retired since their launch, until the revert ends (domain/revert.py)."""
        if self.reverting:
            return
        self.s.fleet.tag_all(ids, {STOPPED_BY_TAG: self.mid})
        self.s.fleet.stop(ids)

    def _deregister_again(self, draining: list[InstanceRecord], left: dict[str, list[TargetRef]],
                          states: dict[tuple[str, str], str], now: datetime) -> None:
        """Originals still registered (not draining) well past the delay: the deregistration did
        not hold (someone registered them again); send it again rather than stop a serving one."""
        again = [(r.instance_id, ref) for r in draining for ref in left[r.instance_id]
                 if states.get((ref.arn, r.instance_id)) != "draining"
                 and _age(r, now) > self._delay(ref.arn) + DRAIN_MARGIN]
        if again:
            self.s.load_balancer.deregister(group_by_target_group(again))

    def _delay(self, arn: str) -> int:
        """The target group's deregistration delay, read once a pass."""
        if arn not in self.delays:
            self.delays.update(self.s.load_balancer.deregistration_delays([arn]))
        return self.delays.get(arn, 0)

    def _abandon(self, record: InstanceRecord, why: str) -> None:
        self.s.fleet.terminate([record.replacement])
        self.s.registry.register(record.replacement, f"migration {self.mid}", status="retired")
        record.fail(why)
        self._store([record])

    def _store(self, records: Iterable[InstanceRecord]) -> None:
        records = list(records)
        if records:
            self.s.plans.put_records(self.mid, records)

    def _now(self) -> datetime:
        return self.s.clock.now()


@dataclass
class _Movable:
    """A planned record whose original runs, with what the original carries right now."""

    record: InstanceRecord
    original: Instance
    inventory: Inventory

    def still_carried(self) -> bool:
        """Whether its mode still carries everything the original now has (a data volume attached
        since the plan would be left behind by a stateless replacement): skipped if not. The
        Elastic IPs to move are taken as they are now."""
        record = self.record
        if record.mode == "stateful":
            blocked = stateful_blockers(self.inventory)
            if blocked:
                record.skip("cannot_be_stateful", "since the plan: " + "; ".join(blocked))
                return False
            record.stateful = StatefulMove.of(self.inventory)
        elif record.mode == "stateless" and record.carry is not None:
            blocked = stateless_blockers(self.inventory)
            if blocked:
                record.skip("cannot_be_stateless", "since the plan it has: " + "; ".join(blocked))
                return False
            record.carry = record.carry.model_copy(update={"elastic_ips": list(self.inventory.addresses)})
        return True


def _judge(wave: WaveSpec, result: WaveResult, groups: GroupsProgress, success_ratio: float) -> None:
    """WaveFailed when the wave is done with a group that did not move, or too few instances."""
    if groups.failed and result.done:
        raise WaveFailed(f"wave {wave.index + 1} ({wave.percent:g} %): Auto Scaling group(s) did not move: "
                         + "; ".join(groups.failed[:5]))
    if result.below(success_ratio):
        raise WaveFailed(
            f"wave {wave.index + 1} ({wave.percent:g} %) migrated {result.migrated} of {result.total} instances, "
            f"below the required {success_ratio:.0%}"
        )


def _next_look(step: _WaveStep, in_flight: list[InstanceRecord], groups: GroupsProgress) -> int:
    """The sooner of what the instances and the groups wait for."""
    waits = [w for w in (step.wait_seconds(in_flight) if any(unfinished(r) for r in in_flight) else 0,
                         0 if groups.done else groups.wait_seconds) if w]
    return min(waits) if waits else MIN_WAIT


def _sick(verdict: tuple[Verdict, str], age: float) -> str | None:
    state, why = verdict
    if state == "failed":
        return why
    if state == "waiting" and age > HEALTH_TIMEOUT:
        return f"not proven healthy in {HEALTH_TIMEOUT} s: {why}"
    return None


def _in(records: list[InstanceRecord], status: str) -> list[InstanceRecord]:
    return [r for r in records if r.status == status]


def _follow(record: InstanceRecord, successor: Instance) -> None:
    """The record names the instance that succeeded its interrupted replacement."""
    pool = next((p for p in record.pools if p.key == successor.pool_key), record.pools[0])
    where = pool.model_copy(update={"availability_zone": successor.availability_zone})
    market: Market = "spot" if successor.lifecycle == "spot" else "on-demand"
    note = f"{record.replacement_id} interrupted while booting: follows {successor.instance_id}"
    record.follow(successor.instance_id, where, pool.spot_hourly, note, market)
    record.replacement_tagged = False


def _in_phase(records: list[InstanceRecord], phase: str) -> list[InstanceRecord]:
    return [r for r in _in(records, "launching") if (r.phase or "booting") == phase]


def _not_booting(record: InstanceRecord, state: str, now: datetime) -> str | None:
    """Why a replacement that does not run yet is given up: gone, or pending too long."""
    if state in GONE_STATES or state in ("stopping", "stopped", "gone"):
        return f"replacement {record.replacement_id} is {state}"
    if state != "running" and _age(record, now) > BOOT_TIMEOUT:
        return f"replacement {record.replacement_id} did not reach running ({state}) in {BOOT_TIMEOUT} s"
    return None


def _targets(records: list[InstanceRecord], of_replacement: bool) -> TargetGroups:
    """The targets of the records' replacements (or originals) in every group of the original."""
    return group_by_target_group((r.replacement if of_replacement else r.instance_id, ref)
                                 for r in records for ref in r.target_groups)


def _still_in(record: InstanceRecord, states: dict[tuple[str, str], str]) -> list[TargetRef]:
    """The groups an original is still in (registered, or draining)."""
    return [ref for ref in record.target_groups if states.get((ref.arn, record.instance_id)) in NOT_SWAPPED]


def _unhealthy_in(record: InstanceRecord, health: dict[tuple[str, str], str]) -> list[str]:
    """The target groups of its original in which a replacement is not healthy (yet)."""
    return [ref.arn for ref in record.target_groups if health.get((ref.arn, record.replacement)) != "healthy"]


def _age(record: InstanceRecord, now: datetime) -> float:
    """Seconds since the record entered its phase."""
    if not record.phase_since:
        return 0.0
    return (now - datetime.fromisoformat(record.phase_since)).total_seconds()


def _batch_token(migration_id: str, batch: list[InstanceRecord], pool: Pool, attempt: int) -> str:
    """The client token of one launch: the same records in the same pool give the same token,
    so a launch repeated after a crash returns what EC2 launched the first time."""
    digest = hashlib.sha256("|".join([migration_id, str(pool), *(r.instance_id for r in batch)]).encode())
    return f"{migration_id[-20:]}-{attempt}-{digest.hexdigest()[:32]}"


def _shared_spec(group: _Group, batch: list[InstanceRecord], pool: Pool, token: str) -> LaunchSpec:
    """The batch's launch: the configuration its originals share, in `pool`, with the tags they
    all have and the batch's own."""
    specs = [group.spec_for[r.instance_id] for r in batch]
    common = dict(set.intersection(*(set(s.tags.items()) for s in specs)))
    common[LAUNCH_BATCH_TAG] = token
    return replace(specs[0], instance_type=pool.instance_type, tags=dict(sorted(common.items())))
