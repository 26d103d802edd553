"""The migration request: what the state machine, the API and spotctl accept.

Every input crosses these models before anything is read or changed, so bad input fails
fast with a message that names the field.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .carry import RequestedMode
from .errors import InvalidMigrationRequest
from .health import HealthProbe
from .hooks import InterruptionHooks
from .retention import DEFAULT_RETENTION_DAYS, MAX_RETENTION_DAYS
from .spot_options import InterruptionBehavior, MaxPrice, parse_max_price
from .tags import INTERRUPTION_BEHAVIOR_TAG, MAX_PRICE_TAG, OPT_IN_TAG
from .windows import MAX_WINDOWS, OnDemandWindow, check_windows

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}\Z")
MIGRATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}\Z")
GROUP_NAME = re.compile(r"^(?=\S)[^\x00-\x1f\x7f]{1,255}(?<=\S)\Z")
MIGRATION_ID_SCHEMA = MIGRATION_ID.pattern.replace(r"\Z", "$")  # the same rule, as JSON Schema writes it
MIGRATION_ID_RULE = "1-80 letters, digits, '-' or '_'"
DEFAULT_BAKE_SECONDS = (300, 600, 900)  # per wave; later waves bake as long as the third


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Selector(Strict):
    """What to consider: the instances and Auto Scaling groups carrying all `tags`, or exactly the
    ones named (`instance_ids`, `auto_scaling_groups`: naming either takes no other by its tags)."""

    tags: dict[str, str] = Field(default_factory=lambda: {OPT_IN_TAG: "true"})
    instance_ids: list[str] = Field(default_factory=list, max_length=10_000)
    auto_scaling_groups: list[str] = Field(default_factory=list, max_length=500,
                                           description="Auto Scaling group names (each still needs the opt-in tag)")

    @field_validator("auto_scaling_groups")
    @classmethod
    def _groups(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not GROUP_NAME.match(n)]
        if bad:
            raise ValueError(f"not Auto Scaling group names (1-255 characters, no control characters, no leading or "
                             f"trailing space): {', '.join(repr(n[:40]) for n in bad[:5])}")
        return sorted(set(names))

    @property
    def named(self) -> bool:
        return bool(self.instance_ids or self.auto_scaling_groups)

    @property
    def instances_by_tags(self) -> bool:
        return not self.named

    @field_validator("instance_ids")
    @classmethod
    def _ids(cls, ids: list[str]) -> list[str]:
        bad = [i for i in ids if not INSTANCE_ID.match(i)]
        if bad:
            raise ValueError(f"not EC2 instance ids: {', '.join(bad[:5])}")
        return sorted(set(ids))

    @model_validator(mode="after")
    def _not_empty(self) -> Selector:
        if not self.tags and not self.named:
            raise ValueError("selector needs tags, instance_ids or auto_scaling_groups")
        return self


class MetricQuery(Strict):
    namespace: str
    metric_name: str
    dimensions: dict[str, str] = Field(default_factory=dict)
    statistic: Literal["Average", "Sum", "Maximum", "p90", "p95", "p99"] = "Average"


class QualityConfig(Strict):
    """What the gates compare with the baseline.

    With `target_group_arn` and no explicit metrics, the ALB defaults apply:
    TargetResponseTime (Average) for latency and HTTPCode_Target_5XX_Count / RequestCount
    for the error rate.
    """

    target_group_arn: str | None = None
    latency: MetricQuery | None = None
    errors: MetricQuery | None = None
    requests: MetricQuery | None = None
    threshold_pct: float = Field(5.0, gt=0, le=100)
    alarm_names: list[str] = Field(default_factory=list, max_length=100)
    baseline_minutes: int = Field(60, ge=5, le=24 * 60)

    @field_validator("target_group_arn")
    @classmethod
    def _tg(cls, arn: str | None) -> str | None:
        if arn is not None and ":targetgroup/" not in arn:
            raise ValueError("target_group_arn must be an ELBv2 target group ARN")
        return arn

    @model_validator(mode="after")
    def _pairs(self) -> QualityConfig:
        if (self.errors is None) != (self.requests is None):
            raise ValueError("errors and requests metrics go together (error rate = errors / requests)")
        return self


class GroupOptions(Strict):
    """How Auto Scaling groups move."""

    on_demand_base: int = Field(0, ge=0, le=100_000, description="instances each group keeps on-demand "
                                "(OnDemandBaseCapacity); the rest moves to Spot wave by wave")


class RevertOf(Strict):
    """A revert: the instances a completed migration moved to Spot go back to on-demand, through
    the same waves, gates and approval as a migration (its own execution, records and graph)."""

    migration_id: str = Field(pattern=MIGRATION_ID_SCHEMA, description="the completed migration whose instances "
                              "go back to on-demand")
    instance_ids: list[str] = Field(default_factory=list, max_length=10_000, description="only these (original "
                                    "or current instance ids); every instance the migration moved when empty")

    @field_validator("instance_ids")
    @classmethod
    def _ids(cls, ids: list[str]) -> list[str]:
        return Selector._ids(ids)


class ApprovalConfig(Strict):
    auto_approve: bool = False
    timeout_seconds: int = Field(24 * 3600, ge=1, le=7 * 24 * 3600)


class MigrationRequest(Strict):
    """The state machine input, documented in the README."""

    selector: Selector = Field(default_factory=Selector)
    waves: list[float] = Field(default_factory=lambda: [10.0, 50.0, 100.0], min_length=1, max_length=10)
    bake_seconds: list[int] | None = None
    quality: QualityConfig = Field(default_factory=QualityConfig)
    approval: ApprovalConfig = Field(default_factory=ApprovalConfig)
    dry_run: bool = False
    wave_success_ratio: float = Field(0.95, gt=0, le=1)
    min_savings_pct: float = Field(10.0, ge=0, lt=100)
    mode: RequestedMode = Field("auto", description="how instances move: auto | stateless | stateful; "
                                "the tag spot-migration:mode overrides it per instance")
    allow_downtime: bool = Field(False, description="auto mode may move an instance with its disks (stateful), "
                                 "with the short downtime the plan announces")
    retention_days: int = Field(DEFAULT_RETENTION_DAYS, ge=0, le=MAX_RETENTION_DAYS,
                                description="days the stopped originals are kept after the migration completes "
                                "(a late rollback stays possible); then their volumes are snapshotted and they "
                                "are terminated")
    asg: GroupOptions = Field(default_factory=GroupOptions)
    health_probe: HealthProbe | None = Field(None, description="a shell command run on each replacement by SSM "
                                             "Run Command; exit 0 = healthy (tag spot-migration:health-probe "
                                             "overrides it)")
    spot_max_price: str | float | None = Field(
        None, description="the most a Spot replacement may cost: USD an hour (\"0.05\") or a percentage of the "
        "on-demand price (\"80%\"); pools above it are not planned; none: EC2's default, the on-demand price "
        f"(tag {MAX_PRICE_TAG} overrides it)")
    interruption_behavior: InterruptionBehavior = Field(
        "terminate", description="what EC2 does with a Spot replacement it interrupts: terminate | stop | hibernate "
        "(hibernate needs an original launched with hibernation; stateful moves always stop or hibernate; "
        f"tag {INTERRUPTION_BEHAVIOR_TAG} overrides it)")

    @field_validator("spot_max_price", mode="before")
    @classmethod
    def _max_price(cls, value: object) -> str | None:
        """Kept as its canonical text ("0.05", "80%"): the stored request reads back the same."""
        return None if value is None else str(parse_max_price(value))

    @property
    def max_price(self) -> MaxPrice | None:
        return None if self.spot_max_price is None else parse_max_price(self.spot_max_price)
    interruption: InterruptionHooks = Field(default_factory=InterruptionHooks, description="what runs when EC2 "
                                            "takes a migrated instance back: replace | checkpoint | drain, a "
                                            "checkpoint, a webhook (the spot-migration:on-interruption, "
                                            "checkpoint-command, checkpoint-timeout and webhook tags override it)")
    revert: RevertOf | None = Field(None, description="set by POST /migrations/{id}/revert (spotctl revert): "
                                    "this migration moves that migration's instances back to on-demand")
    windows: list[OnDemandWindow] = Field(default_factory=list, max_length=MAX_WINDOWS, description="recurring "
                                          "times the migrated instances run on-demand: once the migration completes, "
                                          "a schedule reverts them at each window's start and returns them to Spot "
                                          "at its end")
    window_of: str | None = Field(None, pattern=MIGRATION_ID_SCHEMA, description="set by a window's schedule: "
                                  "the migration whose on-demand window this revert or return serves")

    @property
    def reverting(self) -> bool:
        return self.revert is not None

    @field_validator("windows")
    @classmethod
    def _windows(cls, windows: list[OnDemandWindow]) -> list[OnDemandWindow]:
        return check_windows(windows)

    @model_validator(mode="after")
    def _revert_names_its_instances(self) -> MigrationRequest:
        if self.revert is not None and self.selector != Selector():
            raise ValueError("a revert takes the instances of the migration it reverts (revert.instance_ids), "
                             "not a selector")
        if self.revert is not None and self.windows:
            raise ValueError("windows belong to the migration that moves instances to Spot, not to a revert")
        return self

    @field_validator("waves")
    @classmethod
    def _waves(cls, waves: list[float]) -> list[float]:
        if any(not 0 < w <= 100 for w in waves):
            raise ValueError("each wave is a cumulative percentage in (0, 100]")
        if any(b <= a for a, b in zip(waves, waves[1:], strict=False)):
            raise ValueError("waves must increase strictly")
        if waves[-1] != 100:
            raise ValueError("the last wave must be 100 (the whole plan)")
        return waves

    @model_validator(mode="after")
    def _bakes(self) -> MigrationRequest:
        if self.bake_seconds is None:
            last = len(DEFAULT_BAKE_SECONDS) - 1
            self.bake_seconds = [DEFAULT_BAKE_SECONDS[min(i, last)] for i in range(len(self.waves))]
        if len(self.bake_seconds) != len(self.waves):
            raise ValueError("bake_seconds needs one value per wave")
        if any(not 0 <= b <= 86_400 for b in self.bake_seconds):
            raise ValueError("bake_seconds must be between 0 and 86400")
        return self


class StartMigration(MigrationRequest):
    """A migration request, with an optional id. The id is the Step Functions execution
    name: sending the same request with the same id again starts nothing new."""

    migration_id: str | None = Field(None, pattern=MIGRATION_ID_SCHEMA,
                                     description=f"{MIGRATION_ID_RULE}; generated when absent")


class RevertMigration(Strict):
    """POST /migrations/{id}/revert: that completed migration's instances (all, or those named) go
    back to on-demand, in a migration of their own (waves, bakes, gates and approval as any)."""

    migration_id: str | None = Field(None, pattern=MIGRATION_ID_SCHEMA,
                                     description=f"the revert's own id ({MIGRATION_ID_RULE}); generated when absent")
    instance_ids: list[str] = Field(default_factory=list, max_length=10_000,
                                    description="only these (original or current instance ids); all when empty")
    waves: list[float] = Field(default_factory=lambda: [10.0, 50.0, 100.0], min_length=1, max_length=10)
    bake_seconds: list[int] | None = None
    quality: QualityConfig | None = Field(None, description="the gates' metrics; the reverted migration's when absent")
    approval: ApprovalConfig = Field(default_factory=ApprovalConfig)
    dry_run: bool = False
    wave_success_ratio: float = Field(0.95, gt=0, le=1)

    @field_validator("instance_ids")
    @classmethod
    def _ids(cls, ids: list[str]) -> list[str]:
        return Selector._ids(ids)

    @field_validator("waves")
    @classmethod
    def _waves(cls, waves: list[float]) -> list[float]:
        return MigrationRequest._waves(waves)

    def as_start(self, source_id: str, source_quality: QualityConfig) -> StartMigration:
        """The migration this revert is (waves and bakes validated as any migration's)."""
        return StartMigration(
            migration_id=self.migration_id, waves=self.waves, bake_seconds=self.bake_seconds,
            quality=self.quality or source_quality, approval=self.approval, dry_run=self.dry_run,
            wave_success_ratio=self.wave_success_ratio, min_savings_pct=0.0,
            revert=RevertOf(migration_id=source_id, instance_ids=self.instance_ids),
        )


def describe_errors(exc: ValidationError, where: str) -> str:
    """Every problem of a validation error, each with the field it is about (never the value)."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or where}: {err['msg']}" for err in exc.errors())


JSON_TYPES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (type(None), "null"), (bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (list, "an array"),
)


def json_type(value: object) -> str:
    """What kind of JSON value ``value`` is, in words ("an array", "null", ...)."""
    return next((name for kinds, name in JSON_TYPES if isinstance(value, kinds)), type(value).__name__)


def parse_request(payload: object) -> MigrationRequest:
    """Validate the user's input, which may be any JSON value; raises InvalidMigrationRequest
    with every problem listed. Only an object is a request (an empty one takes every default)."""
    if not isinstance(payload, dict):
        raise InvalidMigrationRequest("invalid migration request: input: must be a JSON object (the migration "
                                      f"request), not {json_type(payload)}")
    try:
        return MigrationRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidMigrationRequest(f"invalid migration request: {describe_errors(exc, 'input')}") from None


def check_migration_id(migration_id: object) -> str:
    if not isinstance(migration_id, str) or not MIGRATION_ID.match(migration_id):
        raise InvalidMigrationRequest(f"migration_id must be {MIGRATION_ID_RULE}")
    return migration_id
