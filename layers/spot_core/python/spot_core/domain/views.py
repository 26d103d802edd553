"""What operators see of migrations (the migrations API and spotctl): the OpenAPI
document publishes these shapes. What they send is domain/request.py's StartMigration,
so the API refuses exactly what the state machine would refuse, before anything starts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .asg import GroupRecord
from .outcomes import realised_now
from .plan import AgentVerdict, InstanceRecord, PlanSummary
from .windows import OnDemandWindow

WaveState = Literal["pending", "migrating", "baking", "passed", "failed", "rolled_back"]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=1000, description="why; required to reject")


class WaveProgress(BaseModel):
    index: int
    percent: float
    bake_seconds: int
    target_count: int
    migrated: int = 0
    launching: int = 0
    failed: int = 0
    skipped: int = 0  # no longer eligible when their turn came (opted out, stateful, held by another migration)
    rolled_back: int = 0
    state: WaveState = "pending"
    gate: dict[str, Any] | None = None


class MigrationSummary(BaseModel):
    migration_id: str
    execution_status: str | None = None
    status: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    dry_run: bool | None = None
    candidates: int | None = None
    monthly_savings: float | None = None


class WindowView(BaseModel):
    """A scheduled on-demand window, as the operator sees it."""

    name: str
    start: str
    end: str
    timezone: str
    state: Literal["open", "closed", "opening", "closing"] = Field(description="open: its instances run on-demand "
                                                                   "now; opening/closing: waiting for the last "
                                                                   "revert or return to complete")
    next_open: str | None = None
    next_close: str | None = None
    revert_id: str | None = Field(None, description="the revert that opened it last")
    return_id: str | None = Field(None, description="the migration that returned its instances to Spot last")
    last_note: str | None = None


class MigrationDetail(MigrationSummary):
    current_state: str | None = None
    current_wave: int | None = None
    error: str | None = None
    cause: str | None = None
    request: dict[str, Any] | None = None
    summary: PlanSummary | None = None
    realised: dict[str, Any] | None = None
    waves: list[WaveProgress] = Field(default_factory=list)
    verdicts: list[AgentVerdict] = Field(default_factory=list)
    approval: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    retention: dict[str, Any] | None = Field(None, description="until when the stopped originals are kept, "
                                              "and their retirement (snapshots, then termination)")
    groups: list[GroupView] = Field(default_factory=list, description="the plan's Auto Scaling groups")
    reverts: str | None = Field(None, description="a revert: the migration whose instances it moves back to "
                                "on-demand")
    windows: list[WindowView] = Field(default_factory=list, description="scheduled on-demand windows")


def _window_phase(state: dict[str, Any], name: str) -> Literal["open", "closed", "opening", "closing"]:
    pending = (state.get("pending") or {}).get("action")
    if state.get("open") == name:
        return "closing" if pending == "close" else "open"
    return "opening" if pending == "open" and state.get("pending_window") == name else "closed"


def window_views(item: dict[str, Any], now: datetime | None) -> list[WindowView]:
    """The migration's windows, with when each fires next after `now` (none without a `now`)."""
    if now is None:
        return []
    request = item.get("request") or {}
    state = item.get("windows_state") or {}
    history = state.get("history") or []
    views = []
    for raw in request.get("windows") or []:
        window = OnDemandWindow.model_validate(raw)
        views.append(WindowView(
            name=window.name, start=window.start, end=window.end, timezone=window.timezone,
            state=_window_phase(state, window.name),
            next_open=iso_or_none(window.next("start", now)), next_close=iso_or_none(window.next("end", now)),
            revert_id=state.get("revert_id"), return_id=state.get("return_id"),
            last_note=history[-1]["note"] if history else None))
    return views


class GroupView(BaseModel):
    """An Auto Scaling group of the plan, as the operator sees it."""

    name: str
    eligible: bool
    exclusion_reason: str | None = None
    exclusion_detail: str | None = None
    desired: int = 0
    instance_types: list[str] = Field(default_factory=list, description="the policy's types (eligible groups), "
                                      "else the types in use")
    on_demand_base: int | None = None
    status: str
    monthly_savings: float = 0.0
    spot_share_by_wave: dict[str, float] = Field(default_factory=dict, description="wave index -> % of the "
                                                 "group's instances on Spot once the wave was done")
    last_note: str | None = None


def group_view(group: GroupRecord) -> GroupView:
    return GroupView(
        name=group.name, eligible=group.eligible, exclusion_reason=group.exclusion_reason,
        exclusion_detail=group.exclusion_detail, desired=group.desired,
        instance_types=group.policy.instance_types if group.policy else sorted(group.instance_types),
        on_demand_base=group.policy.on_demand_base if group.policy else None, status=group.status,
        monthly_savings=group.monthly_savings, spot_share_by_wave=dict(group.wave_spot_share),
        last_note=group.attempts[-1] if group.attempts else None)


class MigrationPage(BaseModel):
    items: list[MigrationSummary]
    next_token: str | None = None


class PlanEntry(BaseModel):
    instance_id: str
    name: str | None = None
    instance_type: str
    availability_zone: str
    eligible: bool
    exclusion_reason: str | None = None
    exclusion_detail: str | None = None
    workload: str
    risk: str
    wave: int | None = None
    status: str
    on_demand_hourly: float | None = None
    spot_hourly: float | None = None
    monthly_on_demand: float
    monthly_savings: float
    savings_pct: float
    replacement_id: str | None = None
    replacement_type: str | None = None
    replacement_az: str | None = None
    mode: str | None = Field(None, description="stateless (make-before-break) or stateful (moves with its disks)")
    carried: list[str] = Field(default_factory=list, description="what the move carries")
    changed: list[str] = Field(default_factory=list, description="what will differ after the move")
    downtime_seconds: int = Field(0, description="the announced downtime of a stateful move")
    max_price: float | None = Field(None, description="USD an hour its Spot replacements may cost at most "
                                    "(none: EC2's default, the on-demand price)")
    interruption_behavior: str = Field("terminate", description="what EC2 does with its Spot replacement when it "
                                       "interrupts it: terminate, stop or hibernate")


class PlanPage(BaseModel):
    migration_id: str
    items: list[PlanEntry]
    next_token: str | None = None


class Started(BaseModel):
    migration_id: str
    execution_arn: str
    started_at: str
    created: bool = Field(description="false when the same request with this id had already started")


class DecisionResult(BaseModel):
    migration_id: str
    approved: bool
    decided_by: str
    decided_at: str
    reason: str | None = None


# --- building the views from the migration item -----------------------------------------------
def wave_progress(item: dict[str, Any]) -> list[WaveProgress]:
    """Per wave: how many instances are migrated, launching, failed or rolled back, and where
    the wave is; from the progress the wave and rollback steps record on the migration item
    (one read, whatever the size of the plan)."""
    results = item.get("wave_results") or {}
    rolled_back = (item.get("rollback") or {}).get("by_wave", {})
    out = []
    for wave in item.get("waves", []):
        result = results.get(str(wave["index"]), {})
        progress, gate = result.get("migration") or {}, result.get("gate")
        counts = {k: progress.get(k, 0) for k in ("migrated", "launching", "failed", "skipped")}
        counts["rolled_back"] = rolled_back.get(str(wave["index"]), 0)
        out.append(WaveProgress(index=wave["index"], percent=wave["percent"], bake_seconds=wave["bake_seconds"],
                                target_count=wave["target_count"], state=_wave_state(progress, gate, counts),
                                gate=gate, **counts))
    return out


def _wave_state(progress: dict[str, Any], gate: dict[str, Any] | None, counts: dict[str, int]) -> WaveState:
    if counts["rolled_back"]:
        return "rolled_back"
    if gate is not None:
        return "passed" if gate.get("passed") else "failed"
    if progress:
        return "baking" if progress.get("done") else "migrating"
    return "pending"


def migration_summary(migration_id: str, item: dict[str, Any], execution: dict[str, Any] | None) -> MigrationSummary:
    """One line of a list: the migration item joined with its execution (either may be missing)."""
    execution = execution or {}
    request = item.get("request") or execution_input(execution) or {}
    summary = item.get("summary") or {}
    realised = realised_now(item) or {}
    return MigrationSummary(
        migration_id=migration_id, execution_status=execution.get("status"), status=item.get("status"),
        started_at=iso_or_none(execution.get("startDate")) or item.get("created_at"),
        stopped_at=iso_or_none(execution.get("stopDate")) or item.get("finished_at"),
        dry_run=request.get("dry_run"), candidates=summary.get("candidates"),
        monthly_savings=realised.get("monthly_savings", summary.get("monthly_savings")),
    )


def _reverts(item: dict[str, Any]) -> str | None:
    return ((item.get("request") or {}).get("revert") or {}).get("migration_id")


def migration_detail(migration_id: str, item: dict[str, Any], execution: dict[str, Any] | None,
                     current_state: str | None, groups: Sequence[GroupRecord] = (),
                     now: datetime | None = None) -> MigrationDetail:
    """Everything about one migration: the item joined with its execution; ``current_state``
    (the state a running execution is in) and the current wave are given only while it runs."""
    waves = wave_progress(item)
    active = [w.index for w in waves if w.state in ("migrating", "baking")]
    running = (execution or {}).get("status") == "RUNNING"
    detail = migration_summary(migration_id, item, execution).model_dump()
    detail.update(
        current_state=current_state, current_wave=active[0] if running and active else None,
        error=(execution or {}).get("error"), cause=shortened((execution or {}).get("cause")),
        request=item.get("request") or execution_input(execution), summary=item.get("summary"),
        realised=realised_now(item), waves=waves, verdicts=item.get("verdicts", []), failure=item.get("failure"),
        retention=item.get("retention"), groups=[group_view(g) for g in groups],
        approval=public_approval(item.get("approval")),
        reverts=_reverts(item),
        windows=window_views(item, now),
    )
    return MigrationDetail.model_validate(detail)


def plan_entry(record: InstanceRecord) -> PlanEntry:
    carry = record.carry.model_dump(include={"carried", "changed", "downtime_seconds"}) if record.carry else {}
    return PlanEntry.model_validate({**record.model_dump(include=set(PlanEntry.model_fields)), **carry})


PUBLIC_APPROVAL = ("requested_at", "timeout_seconds", "approved", "decided_by", "decided_at", "reason")


def public_approval(approval: dict[str, Any] | None) -> dict[str, Any] | None:
    """The approval as operators see it (never anything but these fields)."""
    return {k: v for k, v in approval.items() if k in PUBLIC_APPROVAL} if approval else None


def execution_input(execution: dict[str, Any] | None) -> dict[str, Any] | None:
    try:
        parsed = json.loads(execution["input"]) if execution and execution.get("input") else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def iso_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)


def shortened(text: str | None, limit: int = 2000) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit] + " ..."
