"""Orphans: instances the product launched that nothing accounts for any more."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from .instances import Instance
from .tags import SUCCEEDS_TAG

SweeperMode = Literal["report", "terminate"]
DRAIN_SECONDS = 300  # an instance swapped out after a rebalance is terminated once it has drained this long


class Orphan(BaseModel):
    instance_id: str
    instance_type: str
    launched: str
    registry: str  # what the registry of managed instances says of it ("retired", "unknown", ...)


class SweepReport(BaseModel):
    mode: SweeperMode
    managed: int
    orphans: list[Orphan] = Field(default_factory=list)
    terminated: int = 0
    prewarms_finished: list[str] = Field(default_factory=list)
    swapped_out_retired: list[str] = Field(default_factory=list)
    # interrupted instances whose replacement claim stayed unfinished (its handling failed for good)
    unfinished_replacements: list[str] = Field(default_factory=list)
    retention: dict[str, Any] | None = None  # the stopped originals retired in the same run


class Accounted(BaseModel):
    """What accounts for managed instances besides the registry."""

    serving: set[str] = Field(default_factory=set)  # registered in a target group
    claimed: set[str] = Field(default_factory=set)  # the replacement on a replacement claim
    resuming: set[str] = Field(default_factory=set)  # interrupted instances whose claim is unfinished

    def covers(self, instance: Instance, status: str | None) -> bool:
        """Active in the registry or serving; else (unless the registry retired it) a claim's
        replacement, or the replacement of an unfinished claim (launched, not yet recorded)."""
        if status == "active" or instance.instance_id in self.serving:
            return True
        if status == "retired":
            return False
        return instance.instance_id in self.claimed or instance.tags.get(SUCCEEDS_TAG) in self.resuming


def find_orphans(instances: list[Instance], now: datetime, grace_seconds: int, registry: Mapping[str, str],
                 accounted: Accounted) -> list[Orphan]:
    """Managed instances older than the grace period that are not active in the registry
    (``registry``: instance id -> status) and that nothing else accounts for."""
    orphans = []
    for instance in instances:
        launched = (instance.launch_time or now).astimezone(UTC)
        if (now - launched).total_seconds() < grace_seconds:
            continue
        status = registry.get(instance.instance_id)
        if accounted.covers(instance, status):
            continue
        orphans.append(Orphan(instance_id=instance.instance_id, instance_type=instance.instance_type,
                              launched=launched.isoformat(), registry=status or "unknown"))
    return orphans
