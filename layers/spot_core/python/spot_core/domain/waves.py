"""Waves: which instances move together, in what order, and when a wave has succeeded."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from .plan import IN_FLIGHT, InstanceRecord, WaveSpec

RISK_ORDER = {"low": 0, "medium": 1, "high": 2}
FAILURES_SHOWN = 20


def wave_order(records: list[InstanceRecord]) -> list[InstanceRecord]:
    """Least risky first; among equals, the largest savings first."""
    return sorted(records, key=lambda r: (RISK_ORDER[r.risk], -r.monthly_savings, r.instance_id))


def plan_waves(candidate_count: int, percents: list[float], bake_seconds: list[int],
               keep_every_wave: bool = False) -> list[WaveSpec]:
    """Cumulative wave sizes; a wave that would add no instance (tiny fleets) is dropped, unless
    every wave is kept (Auto Scaling groups move through each percentage, whatever the instances)."""
    waves: list[WaveSpec] = []
    done = 0
    for percent, bake in zip(percents, bake_seconds, strict=False):
        cumulative = min(candidate_count, math.ceil(candidate_count * percent / 100.0 - 1e-9))
        if cumulative > done or keep_every_wave:
            waves.append(WaveSpec(index=len(waves), percent=percent, bake_seconds=bake,
                                  target_count=cumulative - done, cumulative=cumulative))
            done = cumulative
    return waves


class WaveResult(BaseModel):
    """A wave's progress after one MigrateWave invocation (the state machine loops until done)."""

    wave: int
    percent: float
    total: int
    migrated: int
    failed: int
    launching: int
    skipped: int = 0  # no longer eligible when their turn came: not counted against the wave
    done: bool
    completed_at: str | None = None
    failures: list[str] = Field(default_factory=list)
    wait_seconds: int = 0  # how long the state machine waits before the next invocation (not done)
    groups: int = 0  # Auto Scaling groups done with the wave (their Spot share is on their plan records)

    @classmethod
    def of(cls, wave: WaveSpec, records: list[InstanceRecord], now_iso: str, wait_seconds: int = 0) -> WaveResult:
        counts = Counter(r.status for r in records)
        done = not any(counts[s] for s in IN_FLIGHT)
        return cls(
            wave=wave.index, percent=wave.percent, total=len(records), migrated=counts["migrated"],
            failed=counts["failed"], launching=counts["launching"], skipped=counts["skipped"], done=done,
            completed_at=now_iso if done else None, wait_seconds=0 if done else wait_seconds,
            failures=[f"{r.instance_id}: {r.attempts[-1] if r.attempts else 'failed'}"
                      for r in records if r.status == "failed"][:FAILURES_SHOWN],
        )

    @classmethod
    def so_far(cls, wave: WaveSpec, moved: list[InstanceRecord], launching: list[InstanceRecord],
               previous: Mapping[str, Any] | None, wait_seconds: int) -> WaveResult:
        """Progress of an unfinished wave from the records this pass moved (`moved`: those whose
        status it changed), those launching now, and the progress stored by the last pass: no
        need to read the wave's other records.
        (A crash between a record and this progress leaves it behind by that record until the
        wave is done, when WaveResult.of counts every record.)"""
        last = cls.model_validate(previous) if previous else cls(
            wave=wave.index, percent=wave.percent, total=wave.target_count, migrated=0, failed=0, launching=0,
            done=False)
        now = Counter(r.status for r in moved)
        failures = [f"{r.instance_id}: {r.attempts[-1] if r.attempts else 'failed'}"
                    for r in moved if r.status == "failed"]
        return last.model_copy(update={
            "migrated": last.migrated + now["migrated"], "failed": last.failed + now["failed"],
            "skipped": last.skipped + now["skipped"], "launching": len(launching), "done": False,
            "completed_at": None, "wait_seconds": wait_seconds, "failures": (last.failures + failures)[:FAILURES_SHOWN],
        })

    def below(self, success_ratio: float) -> bool:
        """A finished wave fails when too few of the instances it could move moved."""
        movable = self.total - self.skipped
        return self.done and movable > 0 and self.migrated / movable < success_ratio


class RollbackResult(BaseModel):
    """Rollback progress after one invocation (the state machine loops until done)."""

    done: bool
    restored: int
    terminated: int
