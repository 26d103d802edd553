"""Retention of the stopped originals: kept for `retention_days` after a migration completes (a
late rollback is still possible), then their volumes are snapshotted and they are terminated.

Only instances this migration stopped are ever retired: each original is tagged
`spot-migration:stopped-by=<migration>` when the migration stops it, and IAM lets the product
terminate an original only with that tag. An original someone started again, or that no longer
carries the tag, is kept and named. Snapshots are taken first and the original is terminated
only once they are complete, a step per scheduled run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .clock import iso
from .instances import Instance
from .plan import InstanceRecord

STOPPED_BY_TAG = "spot-migration:stopped-by"
SNAPSHOT_OF_TAG = "spot-migration:snapshot-of"  # on a retired original's snapshots: the instance they are of
DEFAULT_RETENTION_DAYS = 7
MAX_RETENTION_DAYS = 365
SNAPSHOT_GIB_MONTH = 0.05  # USD per GiB-month of EBS snapshot storage (us-east-1 list price, standard tier)
RetentionState = Literal["kept", "retiring", "retired"]
Step = Literal["snapshot", "terminate", "wait", "retired", "kept"]


class Retention(BaseModel):
    """On the migration item: until when the stopped originals are kept, and how their retirement went."""

    until: str
    state: RetentionState = "kept"
    retired: int = 0  # originals terminated (their volumes snapshotted)
    kept: list[str] = []  # originals left alone, with why

    @classmethod
    def starting(cls, now: datetime, days: int) -> Retention:
        return cls(until=iso(now + timedelta(days=days)))

    def due(self, now: datetime) -> bool:
        return self.state != "retired" and datetime.fromisoformat(self.until) <= now

    def extended(self, now: datetime, days: int) -> Retention:
        """Kept `days` more from now (0: retired at the next scheduled run)."""
        return self.model_copy(update={"until": iso(now + timedelta(days=days))})


class RetentionChange(BaseModel):
    """An operator's change: keep the stopped originals `days` more from now (0: retire them now)."""

    model_config = ConfigDict(extra="forbid")
    days: int = Field(ge=0, le=MAX_RETENTION_DAYS)


def next_step(record: InstanceRecord, original: Instance | None, migration_id: str,
              snapshot_states: dict[str, str]) -> tuple[Step, str]:
    """What retiring one migrated record's original needs now, and why."""
    if record.original_retired or original is None or original.state in ("shutting-down", "terminated"):
        return "retired", "terminated"
    why_kept = _kept(original, migration_id)
    if why_kept:
        return "kept", why_kept
    if not record.retired_snapshots:
        return "snapshot", "volumes to snapshot"
    return _after_snapshots(original, [snapshot_states.get(s, "missing") for s in record.retired_snapshots])


def _kept(original: Instance, migration_id: str) -> str | None:
    if original.tags.get(STOPPED_BY_TAG) != migration_id:
        return f"{original.instance_id} was not stopped by this migration ({STOPPED_BY_TAG} differs)"
    if original.state != "stopped":
        return f"{original.instance_id} is {original.state}: someone started it again"
    return None


def _after_snapshots(original: Instance, states: list[str]) -> tuple[Step, str]:
    if any(s in ("error", "missing") for s in states):
        return "kept", f"a snapshot of {original.instance_id} failed ({', '.join(states)}): not terminated"
    if all(s == "completed" for s in states):
        return "terminate", "snapshots complete"
    return "wait", "snapshots in progress"


def snapshot_monthly(record: InstanceRecord) -> float:
    """What the retired original's snapshots cost a month (their volumes' full size, the most)."""
    return round(record.retired_gib * SNAPSHOT_GIB_MONTH, 2)
