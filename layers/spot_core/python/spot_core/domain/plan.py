"""The plan: one record per instance (stored in DynamoDB), the pools a replacement may
run in, the agents' verdicts and the waves.

A record moves through its statuses one step at a time, each step stored before the
next AWS call, so a retried invocation resumes where the last one stopped:
planned -> launching (replacement launched) -> migrated (replacement serving, original
stopped) | failed (original untouched); on rollback, launching/migrated/failed ->
rolled_back (original serving, replacement terminated) | rollback_failed (replacement kept).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field

Risk = Literal["low", "medium", "high"]
Workload = Literal["stable", "variable", "burst", "unknown"]
RecordStatus = Literal["planned", "excluded", "launching", "migrated", "failed", "rolled_back", "rollback_failed"]
IN_FLIGHT: tuple[RecordStatus, ...] = ("planned", "launching")  # a wave is done when none of its records is
ROLLBACK_SCOPE: tuple[RecordStatus, ...] = ("launching", "migrated", "failed")  # records with a replacement to undo
AGENTS = ("performance", "capacity", "application")
Agent = Literal["performance", "capacity", "application"]


class TargetRef(BaseModel):
    """A target group an instance is registered in, with its port when the registration names one."""

    arn: str
    port: int | None = None


class Target(NamedTuple):
    instance_id: str
    port: int | None


TargetGroups = dict[str, list[Target]]  # target group ARN -> targets


def group_by_target_group(pairs: Iterable[tuple[str, TargetRef]]) -> TargetGroups:
    """(instance id, target group) pairs -> the targets of each group."""
    groups: TargetGroups = defaultdict(list)
    for instance_id, ref in pairs:
        groups[ref.arn].append(Target(instance_id, ref.port))
    return dict(groups)


class Pool(BaseModel):
    """A Spot capacity pool: an instance type in an Availability Zone, with its price."""

    instance_type: str
    availability_zone: str
    spot_hourly: float

    @property
    def key(self) -> tuple[str, str]:
        return self.instance_type, self.availability_zone

    def __str__(self) -> str:
        return f"{self.instance_type}/{self.availability_zone}"


class InstanceRecord(BaseModel):
    """One instance of the plan, as stored in DynamoDB."""

    instance_id: str
    instance_type: str
    availability_zone: str
    subnet_id: str | None = None
    name: str | None = None
    eligible: bool
    exclusion_reason: str | None = None
    exclusion_detail: str | None = None
    workload: Workload = "unknown"
    cpu_mean: float | None = None
    cpu_p95: float | None = None
    cpu_max: float | None = None
    risk: Risk = "medium"
    on_demand_hourly: float | None = None
    spot_hourly: float | None = None
    monthly_on_demand: float = 0.0
    monthly_savings: float = 0.0
    savings_pct: float = 0.0
    pools: list[Pool] = Field(default_factory=list)
    target_groups: list[TargetRef] = Field(default_factory=list)
    burstable: bool = False
    wave: int | None = None
    status: RecordStatus = "planned"
    replacement_id: str | None = None
    replacement_type: str | None = None
    replacement_az: str | None = None
    replacement_spot_hourly: float | None = None
    attempts: list[str] = Field(default_factory=list)
    updated_at: str | None = None

    @property
    def replacement(self) -> str:
        """The replacement's id, for a record that has one (launching or later)."""
        if self.replacement_id is None:
            raise ValueError(f"{self.instance_id} has no replacement")
        return self.replacement_id

    # --- the steps of a record's life; each one notes what happened in `attempts` ---------
    def exclude(self, reason: str, detail: str | None) -> None:
        self.eligible, self.status = False, "excluded"
        self.exclusion_reason, self.exclusion_detail = reason, detail

    def launched(self, replacement_id: str, pool: Pool, note: str) -> None:
        self.status, self.replacement_id = "launching", replacement_id
        self.follow(replacement_id, pool, pool.spot_hourly, note)

    def follow(self, replacement_id: str, pool: Pool, hourly: float | None, note: str) -> None:
        """The replacement is now `replacement_id` in `pool` (an interruption replaced the last one)."""
        self.replacement_id, self.replacement_type = replacement_id, pool.instance_type
        self.replacement_az, self.replacement_spot_hourly = pool.availability_zone, hourly
        self.attempts.append(note)

    def fail(self, why: str) -> None:
        self.status = "failed"
        self.attempts.append(why)

    def rolled_back(self) -> None:
        self.status = "rolled_back"
        self.attempts.append(f"rolled back: {self.instance_id} restored, {self.replacement_id} terminated")

    def rollback_failed(self) -> None:
        self.status = "rollback_failed"
        self.attempts.append(f"rollback: {self.instance_id} did not return to service; {self.replacement_id} kept")


class PlanSummary(BaseModel):
    """The small summary that travels in the state machine payload."""

    analysed: int
    candidates: int
    excluded: int
    excluded_by_reason: dict[str, int]
    monthly_on_demand: float
    monthly_savings: float
    savings_pct: float
    by_workload: dict[str, int]
    by_risk: dict[str, int]
    pricing_source: str


class AgentVerdict(BaseModel):
    agent: Agent
    approved: bool
    confidence: float = Field(ge=0, le=1)
    concerns: list[str] = Field(default_factory=list)
    recommendations: list[str] = Field(default_factory=list)
    excluded_instance_ids: list[str] = Field(default_factory=list)
    excluded_count: int = 0
    excluded_ids_truncated: bool = False


class WaveSpec(BaseModel):
    index: int
    percent: float
    bake_seconds: int
    target_count: int  # instances in this wave
    cumulative: int
