"""Wave migration and rollback: make-before-break replacement of on-demand instances by Spot.

Every step is recorded per instance in DynamoDB before the next one starts, so an
invocation that times out or is retried resumes where the last one stopped:
planned -> launching (replacement launched) -> migrated (replacement serving, original
stopped) | failed (original untouched, replacement terminated).
A replacement takes traffic before its original stops: it must be running and healthy
in every target group of the original first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import fleet
from .errors import RollbackIncomplete, WaveFailed
from .models import InstanceRecord, MigrationRequest, WaveSpec
from .store import MigrationStore, now_iso

CHUNK = 50
STEP_TIMEOUT = 300  # seconds to reach running / healthy / drained before giving up on a step


@dataclass
class Budget:
    """The invocation's time left (monotonic); a chunk starts only with enough margin."""

    end: float
    margin: float = 120.0

    @classmethod
    def from_context(cls, context: Any, default_ms: int = 900_000) -> Budget:
        remaining = context.get_remaining_time_in_millis() if context else default_ms
        return cls(end=time.monotonic() + remaining / 1000.0)

    def exhausted(self) -> bool:
        return time.monotonic() >= self.end - self.margin

    def step_deadline(self) -> float:
        return min(time.monotonic() + STEP_TIMEOUT, self.end - self.margin / 2)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class WaveRunner:
    def __init__(self, migration_id: str, *, ec2: Any, elbv2: Any, store: MigrationStore, budget: Budget):
        self.mid, self.ec2, self.elbv2, self.store, self.budget = migration_id, ec2, elbv2, store, budget

    # --- migrate -------------------------------------------------------------------
    def run(self, wave: WaveSpec) -> dict:
        request = MigrationRequest.model_validate(self.store.get(self.mid)["request"])
        records = [r for r in self.store.records(self.mid) if r.eligible and r.wave == wave.index]
        for chunk in _chunks([r for r in records if r.status in ("planned", "launching")], CHUNK):
            if self.budget.exhausted():
                break
            self._advance(chunk, wave)
        pending = sum(1 for r in records if r.status in ("planned", "launching"))
        migrated = sum(1 for r in records if r.status == "migrated")
        result = {
            "wave": wave.index, "percent": wave.percent, "total": len(records), "migrated": migrated,
            "failed": sum(1 for r in records if r.status == "failed"),
            "launching": sum(1 for r in records if r.status == "launching"), "done": pending == 0,
            "completed_at": now_iso() if pending == 0 else None,
            "failures": [f"{r.instance_id}: {r.attempts[-1] if r.attempts else 'failed'}" for r in records if r.status == "failed"][:20],
        }
        # Progress after every invocation, so status and watch read one item, not the plan.
        self.store.set_wave_result(self.mid, wave.index, "migration", result)
        if pending == 0:
            if records and migrated / len(records) < request.wave_success_ratio:
                raise WaveFailed(
                    f"wave {wave.index + 1} ({wave.percent:g} %) migrated {migrated} of {len(records)} instances, "
                    f"below the required {request.wave_success_ratio:.0%}"
                )
        return result

    def _advance(self, chunk: list[InstanceRecord], wave: WaveSpec) -> None:
        originals = fleet.describe(self.ec2, [r.instance_id for r in chunk])
        planned = [r for r in chunk if r.status == "planned"]
        launched = fleet.find_replacements(self.ec2, self.mid, [r.instance_id for r in planned]) if planned else {}
        for record in planned:
            self._launch(record, originals.get(record.instance_id), launched.get(record.instance_id), wave)
        launching = [r for r in chunk if r.status == "launching"]
        if not launching:
            return
        states = fleet.wait_for_states(self.ec2, [r.replacement_id for r in launching], "running", self.budget.step_deadline())
        running = []
        for r in launching:
            if states.get(r.replacement_id) == "running":
                running.append(r)
            else:
                self._abandon(r, f"replacement {r.replacement_id} did not reach running ({states.get(r.replacement_id)})")
        self._switch_traffic(running)

    def _launch(self, record: InstanceRecord, original: dict | None, existing: dict | None, wave: WaveSpec) -> None:
        if original is None or original["State"]["Name"] != "running":
            state = original["State"]["Name"] if original else "gone"
            self._fail(record, f"original is {state}; left as it is")
            return
        if existing:  # a previous invocation launched it but died before recording it
            pool = next((p for p in record.pools if p.instance_type == existing["InstanceType"]), record.pools[0])
            record.status, record.replacement_id = "launching", existing["InstanceId"]
            record.replacement_type, record.replacement_az = existing["InstanceType"], existing["Placement"]["AvailabilityZone"]
            record.replacement_spot_hourly = pool.spot_hourly
            record.attempts.append(f"found {existing['InstanceId']} launched by an earlier attempt")
            self.store.put_record(self.mid, record)
            return
        tags = fleet.replacement_tags(original, self.mid, wave.index)
        user_data = fleet.user_data(self.ec2, record.instance_id)
        for attempt, pool in enumerate(record.pools):
            spec = fleet.launch_spec(original, pool, tags, user_data)
            try:
                replacement = fleet.run_instance(self.ec2, spec, pool, f"{self.mid}-{record.instance_id}-{attempt}")
            except fleet.CapacityRefused as refused:
                record.attempts.append(f"{pool.instance_type}/{pool.availability_zone}: {refused.code}")
                continue
            except fleet.LaunchRefused as refused:  # not about the pool (no free address, bad parameter)
                self._fail(record, f"launch refused: {refused}"[:300])
                return
            record.status = "launching"
            record.replacement_id, record.replacement_type = replacement, pool.instance_type
            record.replacement_az, record.replacement_spot_hourly = pool.availability_zone, pool.spot_hourly
            record.attempts.append(f"{pool.instance_type}/{pool.availability_zone}: launched {replacement}")
            self.store.put_record(self.mid, record)
            self.store.register_managed(replacement, f"migration {self.mid} wave {wave.index}")
            return
        self._fail(record, f"Spot capacity refused in all {len(record.pools)} pools")

    def _switch_traffic(self, running: list[InstanceRecord]) -> None:
        """Register replacements, wait healthy, deregister originals, wait drained, stop originals."""
        new_groups = fleet.group_by_target_group((r.replacement_id, ref) for r in running for ref in r.target_groups)
        fleet.register(self.elbv2, new_groups)
        health = fleet.wait_until(self.elbv2, new_groups, {"healthy"}, self.budget.step_deadline())
        healthy = []
        for r in running:
            bad = [ref.arn for ref in r.target_groups if health.get((ref.arn, r.replacement_id)) != "healthy"]
            if bad:
                fleet.deregister(self.elbv2, fleet.group_by_target_group((r.replacement_id, ref) for ref in r.target_groups))
                self._abandon(r, f"replacement {r.replacement_id} not healthy in {len(bad)} target group(s)")
            else:
                healthy.append(r)
        old_groups = fleet.group_by_target_group((r.instance_id, ref) for r in healthy for ref in r.target_groups)
        fleet.deregister(self.elbv2, old_groups)
        fleet.wait_until(self.elbv2, old_groups, {"unused"}, self.budget.step_deadline())
        if healthy:
            fleet.stop(self.ec2, [r.instance_id for r in healthy])
        for r in healthy:
            r.status = "migrated"
            self.store.put_record(self.mid, r)

    def _abandon(self, record: InstanceRecord, why: str) -> None:
        fleet.terminate(self.ec2, [record.replacement_id])
        self.store.register_managed(record.replacement_id, f"migration {self.mid}", status="retired")
        self._fail(record, why)

    def _fail(self, record: InstanceRecord, why: str) -> None:
        record.status = "failed"
        record.attempts.append(why)
        self.store.put_record(self.mid, record)

    # --- rollback ------------------------------------------------------------------
    def rollback(self) -> dict:
        """Put every original back in service, then terminate its Spot replacement.

        Never loses capacity: a replacement is terminated only after its original runs
        and is healthy again; an original that cannot start keeps its replacement."""
        records = [r for r in self.store.records(self.mid) if r.replacement_id and r.status in ("launching", "migrated", "failed")]
        handled = 0
        for chunk in _chunks(records, CHUNK):
            if self.budget.exhausted():
                break
            self._restore(chunk)
            handled += len(chunk)
        done = handled == len(records)
        everything = self.store.records(self.mid)
        restored = sum(1 for r in everything if r.status == "rolled_back")
        kept = [r for r in everything if r.status == "rollback_failed"]
        by_wave: dict[str, int] = {}
        for r in everything:
            if r.status == "rolled_back" and r.wave is not None:
                by_wave[str(r.wave)] = by_wave.get(str(r.wave), 0) + 1
        self.store.update(self.mid, rollback={"done": done, "restored": restored, "kept": len(kept), "by_wave": by_wave})
        if done and kept:
            raise RollbackIncomplete(
                f"{len(kept)} original(s) could not be restored and keep their Spot replacement: "
                + ", ".join(r.instance_id for r in kept[:20])
            )
        return {"done": done, "restored": restored, "terminated": restored}

    def _restore(self, chunk: list[InstanceRecord]) -> tuple[list[InstanceRecord], list[InstanceRecord]]:
        originals = fleet.describe(self.ec2, [r.instance_id for r in chunk])
        stopping = [i for i, o in originals.items() if o["State"]["Name"] == "stopping"]
        if stopping:
            fleet.wait_for_states(self.ec2, stopping, "stopped", self.budget.step_deadline())
            originals = fleet.describe(self.ec2, [r.instance_id for r in chunk])
        to_start = [i for i, o in originals.items() if o["State"]["Name"] == "stopped"]
        if to_start:
            fleet.start(self.ec2, to_start)
        states = fleet.wait_for_states(self.ec2, [r.instance_id for r in chunk], "running", self.budget.step_deadline())
        back = [r for r in chunk if states.get(r.instance_id) == "running"]
        lost = [r for r in chunk if r not in back]

        old_groups = fleet.group_by_target_group((r.instance_id, ref) for r in back for ref in r.target_groups)
        fleet.register(self.elbv2, old_groups)
        health = fleet.wait_until(self.elbv2, old_groups, {"healthy"}, self.budget.step_deadline())
        serving = [r for r in back if all(health.get((ref.arn, r.instance_id)) == "healthy" for ref in r.target_groups)]
        lost += [r for r in back if r not in serving]

        new_groups = fleet.registered_only(self.elbv2, fleet.group_by_target_group(
            (r.replacement_id, ref) for r in serving for ref in r.target_groups))  # a "launching" one may never have been
        fleet.deregister(self.elbv2, new_groups)
        fleet.wait_until(self.elbv2, new_groups, {"unused"}, self.budget.step_deadline())
        if serving:
            fleet.terminate(self.ec2, [r.replacement_id for r in serving])
        for r in serving:
            self.store.register_managed(r.replacement_id, f"migration {self.mid}", status="retired")
            r.status = "rolled_back"
            r.attempts.append(f"rolled back: {r.instance_id} restored, {r.replacement_id} terminated")
            self.store.put_record(self.mid, r)
        for r in lost:
            r.status = "rollback_failed"
            r.attempts.append(f"rollback: {r.instance_id} did not return to service; {r.replacement_id} kept")
            self.store.put_record(self.mid, r)
        return serving, lost


def utc_now() -> datetime:
    return datetime.now(UTC)
