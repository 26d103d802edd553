"""Orphans: instances the product launched that nothing accounts for any more."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from .instances import Instance

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


def find_orphans(instances: list[Instance], now: datetime, grace_seconds: int, registry: Mapping[str, str],
                 accounted_for: Collection[str]) -> list[Orphan]:
    """Managed instances older than the grace period that are not active in the registry
    (``registry``: instance id -> status) and not otherwise accounted for (a pending
    replacement, or serving in a target group)."""
    orphans = []
    for instance in instances:
        launched = (instance.launch_time or now).astimezone(UTC)
        if (now - launched).total_seconds() < grace_seconds:
            continue
        status = registry.get(instance.instance_id)
        if status == "active" or instance.instance_id in accounted_for:
            continue
        orphans.append(Orphan(instance_id=instance.instance_id, instance_type=instance.instance_type,
                              launched=launched.isoformat(), registry=status or "unknown"))
    return orphans
