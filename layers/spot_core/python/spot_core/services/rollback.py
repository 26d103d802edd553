"""Rollback: every original back in service, then every instance launched for it terminated.

Never loses capacity: a replacement is terminated only after its original runs and is
healthy again in every target group; an original that cannot come back keeps one Spot
replacement serving, and its record, the migration item and the notification say why.
EC2 may refuse to start an original: a capacity refusal is tried again for a while
(on-demand capacity comes back), any other refusal ends that instance's rollback at once;
the others are restored either way. Every instance launched for the migration counts,
not only the recorded replacement: an interruption or rebalance replacement of a
replacement keeps the migration's tags, and a launch a crash left unrecorded has them too.
A stateful original that cannot come back has its disks moved back onto the Spot instance it
keeps, which starts and serves again, before its record says why (that Spot instance has none
of its own: it would keep nothing serving otherwise).
Loops (the state machine calls again) until every record is handled.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from ..domain.batching import chunks
from ..domain.clock import Budget, Clock, iso
from ..domain.errors import CapacityRefused, RollbackIncomplete, StartRefused
from ..domain.instances import LIVE_STATES, Instance
from ..domain.outcomes import ended_early
from ..domain.plan import ROLLBACK_SCOPE, InstanceRecord, group_by_target_group
from ..domain.stateful import Converged, InterfaceAt, Observed, StatefulMove, VolumeAt, missing_pieces
from ..domain.tags import LAUNCH_BATCH_TAG, REPLACES_TAG, RETIRED_BY_TAG, SUCCEEDS_TAG
from ..domain.waves import RollbackResult
from ..ports import AutoScaling, Fleet, LoadBalancer, ManagedRegistry, MigrationRepository, PlanRepository
from .finalize import Finalize
from .group_rollback import GroupRollback, GroupsRestored
from .stateful import StatefulMoves
from .traffic import POLL_SECONDS, Traffic

CHUNK = 50
NAMED = 20  # instances named in the error and the migration item
RESTORE_RETRY_SECONDS = 1800  # how long a capacity refusal to start an original is tried again
RETURN_SECONDS = 900  # how long a stateful original's disks may take to get back onto its Spot instance


def failure_detail(failure: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Step Functions' Catch output: Error and Cause (the cause is the Lambda's error JSON)."""
    if not failure:
        return None
    return {"Error": failure.get("Error"), "Cause": str(failure.get("Cause", ""))[:1000]}


@dataclass
class Rollback:
    fleet: Fleet
    load_balancer: LoadBalancer
    migrations: MigrationRepository
    plans: PlanRepository
    registry: ManagedRegistry
    finalize: Finalize
    clock: Clock
    autoscaling: AutoScaling
    restore_retry_seconds: int = RESTORE_RETRY_SECONDS

    def run(self, migration_id: str, failure: Mapping[str, Any] | None, budget: Budget) -> RollbackResult:
        detail = failure_detail(failure)
        item = self.migrations.get(migration_id)
        if ended_early(item):  # stopped meanwhile: the operator decides now
            return RollbackResult(done=True, restored=0, terminated=0)
        self.migrations.update(migration_id, status="rolling_back", failure=detail)
        done = self._restore_all(migration_id, budget, reverting=bool((item.get("request") or {}).get("revert")))
        if done:
            self._late_launches(migration_id, budget)
        groups = GroupRollback(self.autoscaling, self.plans, self.clock).run(migration_id) \
            if (item.get("summary") or {}).get("groups") else GroupsRestored()
        result = self._progress(migration_id, done=done and groups.done, groups=groups)
        if result.done:
            self.finalize.finish(migration_id, "rolled_back", detail)
        return result

    def _restore_all(self, migration_id: str, budget: Budget, reverting: bool) -> bool:
        """Restore chunk after chunk while the budget lasts; whether every record is handled."""
        everything = self.plans.records(migration_id)
        launched = _by_original(self.fleet.launched_for(migration_id), everything)
        records = [r for r in everything if _to_undo(r, launched)]
        handled = 0
        for chunk in chunks(records, CHUNK):
            if budget.exhausted():
                break
            _Restore(self, migration_id, budget, launched, reverting).restore(chunk)
            handled += len(chunk)
        waiting = any(r.status in ROLLBACK_SCOPE for r in records)  # originals EC2 has no capacity for yet
        return handled == len(records) and not waiting

    def _late_launches(self, migration_id: str, budget: Budget) -> None:
        """Instances launched for the migration after this invocation looked (an interruption
        replacement of a replacement, launched meanwhile): none stays but the one an original
        that is not back keeps."""
        instances = self.fleet.launched_for(migration_id)
        if not instances:  # the common case: nothing launched for it runs any more, no plan to read again
            return
        everything = self.plans.records(migration_id)
        launched = _by_original(instances, everything)
        late = [r for r in everything if r.instance_id in launched and r.status in ("rolled_back", "rollback_failed")]
        if late:
            _Restore(self, migration_id, budget, launched).retire_late(late)

    def _progress(self, migration_id: str, done: bool, groups: GroupsRestored) -> RollbackResult:
        everything = self.plans.records(migration_id)
        restored = [r for r in everything if r.status == "rolled_back"]
        kept = [r for r in everything if r.status == "rollback_failed"]
        self.migrations.update(migration_id, rollback={
            "done": done, "restored": len(restored), "kept": len(kept), "by_wave": _by_wave(restored),
            "kept_instances": [_kept_instance(r) for r in kept[:NAMED]], **_groups_progress(groups),
        })
        if done and (kept or groups.failed):
            raise RollbackIncomplete("; ".join(_incomplete(kept, groups.failed)))
        return RollbackResult(done=done, restored=len(restored), terminated=len(restored))


def _groups_progress(groups: GroupsRestored) -> dict[str, list[str]]:
    """The groups' side of the rollback progress (nothing when the plan touched no group)."""
    if not groups.restored and not groups.failed:
        return {}
    return {"groups_restored": groups.restored, "groups_not_restored": groups.failed[:NAMED]}


def _incomplete(kept: list[InstanceRecord], groups: list[str]) -> list[str]:
    """What a rollback could not restore, and why: originals keeping a Spot replacement, groups."""
    found = []
    if kept:
        found.append(f"{len(kept)} original(s) could not be restored and keep their Spot replacement: "
                     + "; ".join(f"{r.instance_id} ({_last_note(r)})" for r in kept[:NAMED]))
    if groups:
        found.append(f"{len(groups)} Auto Scaling group(s) not restored: " + "; ".join(groups[:NAMED]))
    return found


def _by_wave(records: list[InstanceRecord]) -> dict[str, int]:
    return dict(Counter(str(r.wave) for r in records if r.wave is not None))


def _kept_instance(record: InstanceRecord) -> dict[str, str | None]:
    return {"instance_id": record.instance_id, "replacement_id": record.replacement_id, "reason": _last_note(record)}


def _last_note(record: InstanceRecord) -> str:
    return record.attempts[-1] if record.attempts else "not restored"


def _unstartable(ids: list[str], originals: Mapping[str, Instance]) -> dict[str, CapacityRefused | StartRefused]:
    """Originals that are gone or terminated: no start brings them back."""
    states = {i: originals[i].state if i in originals else "gone" for i in ids}
    return {i: StartRefused(f"the original is {state}") for i, state in states.items()
            if state not in ("stopped", "stopping", "pending", "running")}


def _by_original(instances: list[Instance], records: list[InstanceRecord]) -> dict[str, list[Instance]]:
    """Original id -> the live instances launched for it: by the tag that names the original or,
    for a launch a crash left without its own tags, by the record that names the instance, by
    the launch batch written ahead on the records (in launch order), or as the interruption
    replacement of the instance a record names."""
    by_replacement = {r.replacement_id: r.instance_id for r in records if r.replacement_id}
    batches: dict[str, list[str]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.instance_id):
        if record.launch_batch:
            batches[record.launch_batch].append(record.instance_id)
    found: dict[str, list[Instance]] = defaultdict(list)
    for instance in instances:
        batch = batches.get(instance.tags.get(LAUNCH_BATCH_TAG, ""), [])
        in_batch = batch[instance.launch_index] if instance.launch_index < len(batch) else ""
        succeeded = by_replacement.get(instance.tags.get(SUCCEEDS_TAG, ""), "")  # replaced a replacement on record
        original = instance.tags.get(REPLACES_TAG) or by_replacement.get(instance.instance_id) or in_batch or succeeded
        found[original].append(instance)
    return dict(found)


def _to_undo(record: InstanceRecord, launched: Mapping[str, list[Instance]]) -> bool:
    """A record with a replacement on record, or an instance launched for it that no record knows yet."""
    if record.status in ROLLBACK_SCOPE:
        return bool(record.replacement_id) or record.instance_id in launched
    return record.status in ("planned", "skipped") and record.instance_id in launched


class _Restore:
    """One chunk: originals started and healthy again, then the instances launched for them
    drained and terminated."""

    def __init__(self, service: Rollback, migration_id: str, budget: Budget, launched: dict[str, list[Instance]],
                 reverting: bool = False):
        self.s, self.mid, self.budget, self.launched = service, migration_id, budget, launched
        self.reverting = reverting  # a revert's originals are Spot instances it marked retired
        self.traffic = Traffic(service.fleet, service.load_balancer, service.clock)

    def restore(self, chunk: list[InstanceRecord]) -> None:
        """Originals back; stateful ones given up in an earlier pass go on moving onto their Spot instance."""
        returning = [r for r in chunk if r.restore_given_up]
        others = [r for r in chunk if not r.restore_given_up]
        if others:
            returning += self._originals_back(others)
        _DisksToSpot(self).carry(returning)

    def _originals_back(self, chunk: list[InstanceRecord]) -> list[InstanceRecord]:
        """Originals started and serving again, their replacements retired; the stateful ones given
        up now are returned (their disks go back onto their Spot instance)."""
        self._disks_back([r for r in chunk if r.stateful and r.replacement_id])
        back, refused = self._start_originals(chunk)
        serving = self._serving_again(back)
        if self.reverting and serving:  # serving again: an interruption of one is replaced again
            self.s.fleet.untag_all([r.instance_id for r in serving], [RETIRED_BY_TAG])
        self._addresses_back(serving)
        terminated = self.retire(serving, keep={})
        for r in serving:
            r.rolled_back(terminated.get(r.instance_id, []))
            self.s.plans.put_record(self.mid, r)
        return self._not_back([r for r in chunk if r not in serving], refused)

    def _not_back(self, unrestored: list[InstanceRecord], refused: Mapping[str, CapacityRefused | StartRefused]
                  ) -> list[InstanceRecord]:
        """Originals not serving again: tried again later, or given up keeping one replacement; a
        stateful one given up is returned: its disks go back onto that replacement first."""
        now = self.s.clock.now()
        kept = {r.instance_id: self.kept(r) for r in unrestored}
        self.retire(unrestored, keep=kept)
        returning = []
        for r in unrestored:
            why = refused.get(r.instance_id)
            if not isinstance(why, StartRefused) and self._may_wait(r, now):  # no capacity yet, or not back in time
                r.restore_waits(why.code if why else "not running and healthy yet", iso(now))
            elif _carries_disks(r):
                r.disks_return(self._reason(why), r.replacement, iso(now))
                returning.append(r)
            else:
                r.rollback_failed(self._reason(why), kept[r.instance_id])
            self.s.plans.put_record(self.mid, r)
        return returning

    def _disks_back(self, stateful: list[InstanceRecord]) -> None:
        """Stateful moves: every volume, interface and address goes back onto its original (both
        stopped meanwhile), which starts; then they are restored like the others. What is not
        back by the step's deadline goes on in the next invocation (the state machine loops).
        An original EC2 refuses to start, or no longer has, is left to `_start_originals` to judge."""
        moves, deadline = StatefulMoves(self.s.fleet), self.budget.step_deadline()
        while stateful:
            seen = moves.observe(stateful)
            stateful = [r for r in stateful if seen.states.get(r.instance_id) in LIVE_STATES
                        and _moving(moves.onto(r, r.instance_id, r.replacement, seen))]
            if not stateful or self.s.clock.monotonic() >= deadline:
                return
            self.s.clock.sleep(POLL_SECONDS)

    def _addresses_back(self, serving: list[InstanceRecord]) -> None:
        """Elastic IPs the migration moved (or was about to move) point at their original again,
        before its replacement goes; an original that is not back keeps its address on the Spot
        instance that serves for it."""
        for record in serving:
            for address in record.moved_addresses:
                self.s.fleet.associate_address(address.allocation_id, record.instance_id, address.interface_id,
                                               address.private_ip)
            if record.moved_addresses:
                record.attempts.append("rollback: Elastic IP(s) back on the original: "
                                       + ", ".join(a.public_ip for a in record.moved_addresses))

    def _reason(self, why: CapacityRefused | StartRefused | None) -> str:
        if isinstance(why, CapacityRefused):
            return f"no on-demand capacity to start it ({why.code}) for {self.s.restore_retry_seconds // 60} min"
        if why is not None:
            return f"EC2 refused to start it: {str(why)[:200]}"
        return f"not running and healthy in every target group within {self.s.restore_retry_seconds // 60} min"

    def retire_late(self, late: list[InstanceRecord]) -> None:
        kept = {r.instance_id: self.kept(r) for r in late if r.status == "rollback_failed"}
        self.retire(late, kept)
        for r in late:
            if r.instance_id in kept and kept[r.instance_id] != r.replacement_id:
                r.rollback_failed("its replacement was interrupted during the rollback", kept[r.instance_id])
                self.s.plans.put_record(self.mid, r)

    def _may_wait(self, record: InstanceRecord, now: datetime) -> bool:
        since = datetime.fromisoformat(record.restore_refused_since) if record.restore_refused_since else now
        return now - since < timedelta(seconds=self.s.restore_retry_seconds)

    def kept(self, record: InstanceRecord) -> str | None:
        """The one replacement an original that is not back keeps: the newest live one (an
        interruption or rebalance replacement succeeds the one on record; the older one is being
        reclaimed, or serves next to it)."""
        def age(i: Instance) -> tuple[str, bool]:
            return iso(i.launch_time) if i.launch_time else "", i.instance_id == record.replacement_id

        live = sorted(self.launched.get(record.instance_id, []), key=age)
        if _carries_disks(record):  # only its own Spot instance can take its disks back
            live = [i for i in live if i.instance_id == record.replacement_id]
        return live[-1].instance_id if live else None

    def _start_originals(self, chunk: list[InstanceRecord]
                         ) -> tuple[list[InstanceRecord], dict[str, CapacityRefused | StartRefused]]:
        """Start the stopped originals (waiting for any still stopping); those running come back."""
        ids = [r.instance_id for r in chunk]
        originals = self._stopped_or_running(ids)
        to_start = [i for i, o in originals.items() if o.state == "stopped"]
        refused = {**_unstartable(ids, originals), **(self.s.fleet.start(to_start) if to_start else {})}
        waiting = [i for i in ids if i not in refused]
        states = self.traffic.wait_for_states(waiting, "running", self.budget.step_deadline()) if waiting else {}
        return [r for r in chunk if states.get(r.instance_id) == "running"], refused

    def _stopped_or_running(self, ids: list[str]) -> dict[str, Instance]:
        """The originals, after waiting for any still stopping (a stopping instance cannot start)."""
        originals = self.s.fleet.describe(ids)
        stopping = [i for i, o in originals.items() if o.state == "stopping"]
        if not stopping:
            return originals
        self.traffic.wait_for_states(stopping, "stopped", self.budget.step_deadline())
        return self.s.fleet.describe(ids)

    def _serving_again(self, back: list[InstanceRecord]) -> list[InstanceRecord]:
        """Register the originals again; those healthy in every target group serve again."""
        old_groups = group_by_target_group((r.instance_id, ref) for r in back for ref in r.target_groups)
        self.s.load_balancer.register(old_groups)
        health = self.traffic.wait_for_targets(old_groups, {"healthy"}, self.budget.step_deadline())
        return [r for r in back if all(health.get((ref.arn, r.instance_id)) == "healthy" for ref in r.target_groups)]

    def delete_spares(self, records: list[InstanceRecord]) -> None:
        """A stateful move's Spot root volumes swapped out: detached, so not deleted with their instance."""
        spares = [v for r in records if r.stateful for v in r.stateful.spare_volumes]
        if spares:
            volumes, _ = self.s.fleet.pieces(spares, [])
            self.s.fleet.delete_volumes([v for v, at in volumes.items() if at.state == "available"])

    def retire(self, records: list[InstanceRecord], keep: Mapping[str, str | None]) -> dict[str, list[str]]:
        """Drain and terminate every instance launched for these originals but the one each keeps
        (only registered targets are deregistered: a launched one may never have been)."""
        retired = {r.instance_id: sorted({i.instance_id for i in self.launched.get(r.instance_id, [])}
                                         - {keep.get(r.instance_id)}) for r in records}
        pairs = [(iid, ref) for r in records for iid in retired[r.instance_id] for ref in r.target_groups]
        new_groups = self.traffic.registered_only(group_by_target_group(pairs))
        self.s.load_balancer.deregister(new_groups)
        self.traffic.wait_for_targets(new_groups, {"unused"}, self.budget.step_deadline())
        doomed = [iid for ids in retired.values() for iid in ids]
        if doomed:
            self.s.fleet.terminate(doomed)
        self.delete_spares(records)
        for iid in doomed:
            self.s.registry.register(iid, f"migration {self.mid}", status="retired")
        return retired


def _carries_disks(record: InstanceRecord) -> bool:
    """A stateful record whose maintenance step began: its disks may have left the original."""
    return bool(record.stateful and record.stateful.stopped_at and record.replacement_id)


def _moving(step: tuple[str, str | None]) -> bool:
    """Still moving: not done, and EC2 did not refuse to start the holder."""
    progress, refused = step
    return progress != "done" and refused is None


class _DisksToSpot:
    """Stateful originals that cannot come back: every piece goes back onto the Spot instance each
    keeps (its own root was deleted at the migration, so nothing there needs to make room), which
    starts and is registered again; only then is the record given up, naming why. Each pass
    resumes from what EC2 says; while the pieces move, the record keeps the rollback going."""

    def __init__(self, restore: _Restore):
        self.restore, self.s = restore, restore.s
        self.moves = StatefulMoves(restore.s.fleet)

    def carry(self, records: list[InstanceRecord]) -> None:
        deadline, arrived = self.restore.budget.step_deadline(), []
        while records:
            seen = self.moves.observe(records)
            steps = {r.instance_id: self._step(r, seen) for r in records}
            arrived += [r for r in records if steps[r.instance_id] == "done"]
            records = [r for r in records if steps[r.instance_id] in ("acting", "waiting")]
            if not records or self.s.clock.monotonic() >= deadline:
                break
            self.s.clock.sleep(POLL_SECONDS)
        if arrived:
            self._serving(arrived)

    def _step(self, record: InstanceRecord, seen: Observed) -> Converged | Literal["stranded"]:
        """One step towards its Spot instance: "done" once it runs with every piece, "stranded"
        (and given up) once it cannot get there."""
        spot, move = record.replacement, record.stateful or StatefulMove()
        if (state := seen.states.get(spot, "gone")) not in LIVE_STATES:
            return self._stranded(record, f"its Spot instance {spot} is {state} too", seen)
        if missing := missing_pieces(move, seen):
            return self._stranded(record, f"{', '.join(missing)} no longer exist(s)", seen)
        if self._overdue(record):
            return self._stranded(record, f"its disks did not get onto {spot} in {RETURN_SECONDS // 60} min", seen)
        progress, refused = self.moves.onto(record, spot, record.instance_id, seen)
        if refused:
            return self._stranded(record, f"EC2 refused to start {spot} too: {refused[:200]}", seen)
        return progress

    def _overdue(self, record: InstanceRecord) -> bool:
        now = self.s.clock.now()
        since = datetime.fromisoformat(record.restore_given_up_at) if record.restore_given_up_at else now
        return now - since > timedelta(seconds=RETURN_SECONDS)

    def _stranded(self, record: InstanceRecord, why: str, seen: Observed) -> Literal["stranded"]:
        """Neither instance can run with the disks: given up with both reasons and where each piece is."""
        spot = record.replacement
        kept = spot if seen.states.get(spot) in LIVE_STATES else None  # it may hold the disks: not terminated
        pieces = _pieces_at(record.stateful or StatefulMove(), seen)
        record.rollback_failed(f"{record.restore_given_up}; {why}; {pieces}", kept, serving=False)
        self.s.plans.put_record(self.restore.mid, record)
        return "stranded"

    def _serving(self, records: list[InstanceRecord]) -> None:
        """Every piece on its running Spot instance: registered again (the stopped original is
        not), then given up, naming why and that the Spot instance serves."""
        spots = group_by_target_group((r.replacement, ref) for r in records for ref in r.target_groups)
        originals = group_by_target_group((r.instance_id, ref) for r in records for ref in r.target_groups)
        self.s.load_balancer.register(spots)
        self.s.load_balancer.deregister(self.restore.traffic.registered_only(originals))
        health = self.restore.traffic.wait_for_targets(spots, {"healthy"}, self.restore.budget.step_deadline())
        self.restore.delete_spares(records)
        for record in records:
            spot = record.replacement
            healthy = all(health.get((ref.arn, spot)) == "healthy" for ref in record.target_groups)
            state = "which serves" if healthy else "which runs, registered again but not healthy yet"
            record.rollback_failed(f"{record.restore_given_up}; its disks are back on {spot}, {state}", spot)
            self.s.plans.put_record(self.restore.mid, record)


def _pieces_at(move: StatefulMove, seen: Observed) -> str:
    """Where each piece of a stateful move is now, for an operator to find them."""
    places: list[tuple[str, VolumeAt | InterfaceAt | None]] = [
        (v.volume_id, seen.volumes.get(v.volume_id)) for v in move.volumes]
    places += [(i.interface_id, seen.interfaces.get(i.interface_id)) for i in move.interfaces]
    named = [f"{piece} ({_place(at)})" for piece, at in places]
    named += [f"Elastic IP {a.public_ip}" for a in move.addresses]
    return "its pieces: " + ", ".join(named)


def _place(at: VolumeAt | InterfaceAt | None) -> str:
    if at is None:
        return "gone"
    if at.instance_id:
        return f"on {at.instance_id}"
    return at.state if isinstance(at, VolumeAt) else at.status
