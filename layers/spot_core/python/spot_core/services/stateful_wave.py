"""The wave engine's pass over stateful moves (services/migrate_wave.py hands them over).

Per record, one step a pass, each stored before the next: the Spot instance (a persistent
request that stops on interruption, launched next to the original with its settings but not
its user data, so nothing of the workload starts on a throwaway disk) boots, then is stopped
(parking; it takes the original's user data); the original leaves its target groups (draining);
the maintenance step begins: the original stops, its volumes (root included), secondary
interfaces and Elastic IPs move onto the Spot instance at the same devices, which starts
(moving); it proves its health (proving) and the record is migrated, with its measured downtime.
A move that fails puts every piece back on the original and starts it (restoring).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..domain.carry import Inventory
from ..domain.clock import iso
from ..domain.plan import InstanceRecord, Phase, TargetGroups, group_by_target_group
from ..domain.retention import STOPPED_BY_TAG
from ..domain.stateful import Observed, StatefulMove
from .stateful import StatefulMoves

if TYPE_CHECKING:
    from .migrate_wave import _WaveStep

BOOT_TIMEOUT = 600
MOVE_TIMEOUT = 900  # stop, detach, attach and start: minutes at most on EC2
HEALTH_TIMEOUT = 900


class StatefulPass:
    def __init__(self, step: _WaveStep):
        self.step, self.fleet = step, step.s.fleet
        self.moves = StatefulMoves(step.s.fleet)

    def advance(self, records: list[InstanceRecord]) -> None:
        seen = self.moves.observe(records)
        for phase, handle in (("booting", self._booted), ("parking", self._parked), ("draining", self._drained),
                              ("moving", self._moved), ("restoring", self._restored)):
            for record in [r for r in records if r.status == "launching" and r.phase == phase]:
                handle(record, seen)
        proving = [r for r in records if r.status == "launching" and r.phase == "proving"]
        if proving:
            self._proven(proving)

    # --- forward ------------------------------------------------------------------------------
    def _booted(self, record: InstanceRecord, seen: Observed) -> None:
        """Running: stopped again at once (its disk is swapped for the original's)."""
        state = seen.states.get(record.replacement, "gone")
        if state == "running":
            self.fleet.stop([record.replacement])
            self._enter(record, "parking")
        elif state != "pending" or self._age(record) > BOOT_TIMEOUT:
            self.step._abandon(record, f"Spot instance {record.replacement_id} is {state}, not running")

    def _parked(self, record: InstanceRecord, seen: Observed) -> None:
        """Stopped: it notes its own volumes (to make room and delete later), takes the original's
        user data, and the original leaves its target groups."""
        if seen.states.get(record.replacement) != "stopped":
            if self._age(record) > MOVE_TIMEOUT:  # nothing has moved yet: the original is untouched
                self.step._abandon(record, f"Spot instance {record.replacement_id} did not stop in {MOVE_TIMEOUT} s")
            return
        own = self.fleet.inventory(list(self.fleet.describe([record.replacement]).values()))
        move = record.stateful or StatefulMove()
        record.stateful = move.model_copy(update={"spare_volumes": [
            v.volume_id for v in own.get(record.replacement, _NOTHING).volumes]})
        user_data = self.fleet.user_data(record.instance_id)
        if user_data:
            self.fleet.set_user_data(record.replacement, user_data)
        self.step.s.load_balancer.deregister(_groups_of(record, record.instance_id))
        self._enter(record, "draining")

    def _drained(self, record: InstanceRecord, seen: Observed) -> None:
        """Out of every group: the maintenance step begins (the original stops now)."""
        states = self.step.s.load_balancer.target_states(_groups_of(record, record.instance_id))
        if any(states.get((ref.arn, record.instance_id)) not in (None, "unused") for ref in record.target_groups):
            return
        record.stateful = (record.stateful or StatefulMove()).model_copy(update={"stopped_at": iso(self._now())})
        self.fleet.tag_all([record.instance_id], {STOPPED_BY_TAG: self.step.mid})  # before the move stops it
        record.attempts.append(f"maintenance: {record.instance_id} stops; its disks move to {record.replacement}")
        self._enter(record, "moving")

    def _moved(self, record: InstanceRecord, seen: Observed) -> None:
        progress, refused = self.moves.onto(record, record.replacement, record.instance_id, seen)
        if refused or (progress != "done" and self._age(record) > MOVE_TIMEOUT):
            self._restore(record, f"moving the disks did not finish: {refused or f'not done in {MOVE_TIMEOUT} s'}")
        elif progress == "done":
            self.step.s.load_balancer.register(_groups_of(record, record.replacement))
            self._enter(record, "proving")
        else:
            self.step._store([record])

    def _proven(self, proving: list[InstanceRecord]) -> None:
        """Healthy with the original's disks: migrated, with the downtime it took."""
        verdicts = self.step._verdicts(proving)
        now = self._now()
        for record in proving:
            state, why = verdicts[record.instance_id]
            if state == "healthy":
                self._migrated(record, now)
            elif state == "failed" or self._age(record) > HEALTH_TIMEOUT:
                self._restore(record, f"the Spot instance with the original's disks is not healthy: {why}")

    def _migrated(self, record: InstanceRecord, now: datetime) -> None:
        move = record.stateful or StatefulMove()
        began = datetime.fromisoformat(move.stopped_at) if move.stopped_at else now
        record.stateful = move.model_copy(update={"downtime_seconds": round((now - began).total_seconds(), 1)})
        record.moved_addresses = list(move.addresses)
        self.fleet.delete_volumes(move.spare_volumes)
        record.attempts.append(f"moved with its disks to {record.replacement}: down "
                               f"{record.stateful.downtime_seconds:.0f} s")
        record.migrated()
        self.step._store([record])

    # --- back ---------------------------------------------------------------------------------
    def _restore(self, record: InstanceRecord, why: str) -> None:
        """Every piece goes back on the original, which starts; then the Spot instance goes."""
        self.step.s.load_balancer.deregister(_groups_of(record, record.replacement))
        record.attempts.append(why[:300])
        self._enter(record, "restoring")

    def _restored(self, record: InstanceRecord, seen: Observed) -> None:
        progress, refused = self.moves.onto(record, record.instance_id, record.replacement, seen)
        if progress != "done":
            if refused:
                record.attempts.append(f"restoring: starting {record.instance_id} refused ({refused}); trying again")
            self.step._store([record])
            return
        self.step.s.load_balancer.register(_groups_of(record, record.instance_id))
        self.fleet.delete_volumes((record.stateful or StatefulMove()).spare_volumes)
        self.step._abandon(record, f"restored: {record.instance_id} runs with its disks again")

    def _enter(self, record: InstanceRecord, phase: Phase) -> None:
        record.enter(phase, iso(self._now()))
        self.step._store([record])

    def _age(self, record: InstanceRecord) -> float:
        since = datetime.fromisoformat(record.phase_since) if record.phase_since else self._now()
        return (self._now() - since).total_seconds()

    def _now(self) -> datetime:
        return self.step.s.clock.now()


def _groups_of(record: InstanceRecord, instance_id: str) -> TargetGroups:
    return group_by_target_group((instance_id, ref) for ref in record.target_groups)


_NOTHING = Inventory()
