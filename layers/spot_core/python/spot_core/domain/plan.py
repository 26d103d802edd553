"""The plan: one record per instance (stored in DynamoDB), the pools a replacement may
run in, the agents' verdicts and the waves.

A record moves through its statuses one step at a time, each step stored before the
next AWS call, so a retried invocation resumes where the last one stopped:
planned -> launching (replacement launched; its phase: booting -> registering -> draining, the
original's deregistration) -> migrated (replacement serving, original stopped) | failed
(original untouched) | skipped (no longer eligible when its turn came:
nothing launched, and it does not count against the wave); on rollback, launching/migrated/failed ->
rolled_back (original serving, replacement terminated) | rollback_failed (replacement kept).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field

from .carry import CarryPlan, ElasticIp, Mode
from .rehome import Rehome
from .spot_options import InterruptionBehavior, SpotTerms
from .stateful import StatefulMove

Risk = Literal["low", "medium", "high"]
Workload = Literal["stable", "variable", "burst", "unknown"]
RecordStatus = Literal["planned", "excluded", "skipped", "launching", "migrated", "failed", "rolled_back",
                       "rollback_failed"]
# where a launching record's swap stands; stateful moves: booting -> parking (the Spot instance
# stopped) -> draining (the original leaves its groups) -> moving (pieces move, the Spot instance
# starts) -> proving (health) -> migrated, or restoring (pieces back on the original) -> failed
Phase = Literal["booting", "registering", "draining", "parking", "moving", "proving", "restoring"]
IN_FLIGHT: tuple[RecordStatus, ...] = ("planned", "launching")  # a wave is done when none of its records is
ROLLBACK_SCOPE: tuple[RecordStatus, ...] = ("launching", "migrated", "failed")  # records with a replacement to undo
AGENTS = ("performance", "capacity", "application")
Agent = Literal["performance", "capacity", "application"]


def unfinished(record: InstanceRecord) -> bool:
    """Still to move, or moved with a replacement that lacks its own tags yet: what a pass of the
    wave engine works on (a wave is done when none of its records is)."""
    return record.status in IN_FLIGHT or (record.status == "migrated" and not record.replacement_tagged)


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
    """A capacity pool: an instance type in an Availability Zone, with its price. A Spot pool
    unless a revert plans it: then it is the on-demand pool its instance goes back to (and its
    price the on-demand price)."""

    instance_type: str
    availability_zone: str
    spot_hourly: float
    market: Literal["spot", "on-demand"] = "spot"

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
    replacement_spot_hourly: float | None = None  # what the replacement costs an hour (on-demand price if a fallback)
    replacement_market: Literal["spot", "on-demand"] = "spot"  # an interruption may fall back to on-demand
    stopped_storage_monthly: float = 0.0  # the original's EBS volumes, which cost on while it is stopped
    attempts: list[str] = Field(default_factory=list)
    restore_refused_since: str | None = None  # rollback: when EC2 first refused to start the original (capacity)
    restore_given_up: str | None = None  # rollback: why the original cannot come back (stateful: disks to the Spot)
    restore_given_up_at: str | None = None  # when it was given up (its disks have a while to reach the Spot)
    phase: Phase | None = None  # launching: the step of the swap it waits for
    phase_since: str | None = None  # when that step began
    launch_batch: str | None = None  # planned: the RunInstances call (client token) launching it right now
    replacement_tagged: bool = True  # False while a replacement launched with others lacks its own tags
    mode: Mode | None = None  # how it moves (eligible records)
    carry: CarryPlan | None = None  # what moves with it, what changes
    max_price: float | None = None  # USD an hour its Spot replacements may cost at most (None: EC2's default)
    interruption_behavior: InterruptionBehavior = "terminate"  # what EC2 does with its Spot replacement on interruption
    probe_command: str | None = None  # registering: the SSM command probing the replacement's health
    moved_addresses: list[ElasticIp] = Field(default_factory=list)  # Elastic IPs moved to the replacement
    stateful: StatefulMove | None = None  # stateful mode: what moves with the instance, and the downtime
    retired_snapshots: list[str] = Field(default_factory=list)  # retention: the original's volumes, snapshotted
    retired_gib: int = 0  # the size of those volumes
    original_retired: bool = False  # retention over: the stopped original terminated
    rehome: Rehome | None = None  # stateful: the disks moving on from a Spot instance EC2 took back
    reverted_by: str | None = None  # migrated, then a revert put it back on-demand (its replacement is gone)
    updated_at: str | None = None

    @property
    def spot_terms(self) -> SpotTerms:
        """What its Spot replacements are launched with (a stateful move's always keep its disks)."""
        terms = SpotTerms(interruption_behavior=self.interruption_behavior, max_price=self.max_price)
        return terms.stateful() if self.mode == "stateful" else terms

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

    def skip(self, reason: str, detail: str) -> None:
        """No longer eligible right before its launch (opted out, marked stateful, another holder)."""
        self.status, self.exclusion_reason, self.exclusion_detail = "skipped", reason, detail
        self.attempts.append(f"skipped: {detail}")

    def launched(self, replacement_id: str, pool: Pool, note: str, now: str | None = None) -> None:
        self.status, self.replacement_id, self.launch_batch = "launching", replacement_id, None
        self.enter("booting", now)
        self.follow(replacement_id, pool, pool.spot_hourly, note, pool.market)
        self.replacement_tagged = False  # launched with the tags its batch shares; its own come next

    def enter(self, phase: Phase, now: str | None) -> None:
        self.phase, self.phase_since = phase, now

    def migrated(self) -> None:
        self.status, self.phase, self.phase_since = "migrated", None, None

    def follow(self, replacement_id: str, pool: Pool, hourly: float | None, note: str,
               market: Literal["spot", "on-demand"] = "spot") -> None:
        """The replacement is now `replacement_id` in `pool` (an interruption replaced the last one)."""
        self.replacement_id, self.replacement_type = replacement_id, pool.instance_type
        self.replacement_az, self.replacement_spot_hourly = pool.availability_zone, hourly
        self.replacement_market = market
        self.attempts.append(note)

    def revert_done(self, revert_id: str, revert: InstanceRecord) -> None:
        """A revert replaced this record's Spot instance with an on-demand one: the record follows it."""
        pool = Pool(instance_type=revert.replacement_type or self.instance_type,
                    availability_zone=revert.replacement_az or self.availability_zone,
                    spot_hourly=revert.on_demand_hourly or 0.0, market="on-demand")
        self.reverted_by = revert_id
        self.follow(revert.replacement, pool, revert.on_demand_hourly, f"reverted by {revert_id}: back on-demand "
                    f"on {revert.replacement_id}, {self.replacement_id} terminated", "on-demand")

    def fail(self, why: str) -> None:
        self.status, self.phase, self.phase_since, self.launch_batch = "failed", None, None, None
        self.attempts.append(why)

    def rolled_back(self, terminated: list[str]) -> None:
        self.status, self.restore_refused_since = "rolled_back", None
        gone = ", ".join(terminated) or "no replacement running"
        self.attempts.append(f"rolled back: {self.instance_id} restored; terminated {gone}")

    def restore_waits(self, why: str, since: str) -> None:
        """EC2 has no on-demand capacity to start the original now: the rollback tries again."""
        self.restore_refused_since = self.restore_refused_since or since
        self.attempts.append(f"rollback: starting {self.instance_id} refused ({why}); trying again")

    def disks_return(self, why: str, spot: str, now: str) -> None:
        """A stateful original cannot come back (`why`): its disks go back onto its Spot instance."""
        self.restore_given_up, self.restore_given_up_at = why, now
        self.attempts.append(f"rollback: {self.instance_id} cannot be restored ({why}); its disks go back onto {spot}")

    def rollback_failed(self, why: str, kept: str | None, serving: bool = True) -> None:
        self.status, self.replacement_id = "rollback_failed", kept
        held = "serving" if serving else "(not serving)"
        self.attempts.append(f"rollback: {self.instance_id} not restored ({why}); "
                             + (f"Spot {kept} kept {held}" if kept else "no replacement running"))


class PlanSummary(BaseModel):
    """The small summary that travels in the state machine payload."""

    analysed: int
    candidates: int
    excluded: int
    excluded_by_reason: dict[str, int]
    monthly_on_demand: float
    monthly_savings: float  # net of the stopped originals' volumes
    savings_pct: float
    monthly_stopped_storage: float = 0.0  # what the stopped originals' EBS volumes cost on
    by_workload: dict[str, int]
    by_risk: dict[str, int]
    pricing_source: str
    groups: int = 0  # Auto Scaling groups that move (counted in candidates too, with their savings)
    groups_excluded: int = 0


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
