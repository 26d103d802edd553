"""What the operator interface (the migrations API and spotctl) accepts and returns.

The request side reuses the workflow's MigrationRequest, so the API refuses exactly what
the state machine would refuse, before anything starts. The response side is what the
OpenAPI document publishes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .models import MIGRATION_ID, AgentVerdict, MigrationRequest, PlanSummary

EXECUTION_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
MIGRATION_STATUSES = (
    "analysing", "planned", "reviewed", "awaiting_approval", "approved", "migrating", "rolling_back", "completed", "rolled_back",
    "rollback_failed", "rejected", "vetoed", "approval_timed_out", "nothing_to_migrate",
)


class StartMigration(MigrationRequest):
    """A migration request, with an optional id. The id is the Step Functions execution
    name: sending the same request with the same id again starts nothing new."""

    migration_id: str | None = Field(None, pattern=MIGRATION_ID.pattern.replace(r"\Z", "$"),
                                     description="1-80 letters, digits, '-' or '_'; generated when absent")


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
    rolled_back: int = 0
    state: Literal["pending", "migrating", "baking", "passed", "failed", "rolled_back"] = "pending"
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
