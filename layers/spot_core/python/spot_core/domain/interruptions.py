"""What EC2 tells about a managed instance (an interruption warning, a rebalance
recommendation, or a state change: a reclaim that came without a warning), the owner's policy
for rebalance recommendations, the rules of the one replacement claim per instance, and what
the product did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel

from .carry import MODE_TAG
from .errors import SpotMigrationError
from .hooks import HookResult, InterruptionHooks
from .instances import Instance, Market
from .plan import InstanceRecord, TargetRef
from .pricing import HOURS_PER_MONTH
from .spot_options import SpotTerms
from .tags import MIGRATION_ID_TAG, ON_REBALANCE_TAG, REPLACES_TAG, RETIRED_BY_TAG, is_group_member, is_managed

NoticeKind = Literal["interruption", "rebalance", "state-change"]
KIND_LABELS: dict[str, str] = {"interruption": "interruption warning", "rebalance": "rebalance recommendation",
                               "state-change": "reclaimed without a warning"}
RebalancePolicy = Literal["ignore", "prewarm", "replace"]
REBALANCE_POLICIES: tuple[str, ...] = get_args(RebalancePolicy)
Action = Literal[
    "ignored",  # not an instance the product manages
    "duplicate",  # this event was handled (or is being handled) already
    "ignored_by_policy",  # a rebalance recommendation the owner asked to ignore
    "already_replaced",  # the instance has its one replacement already
    "in_progress",  # another event's handling is replacing the instance right now
    "swapped_prewarmed",  # the warning found a prewarmed replacement: traffic moved to it
    "replaced",  # a replacement was launched and took over the traffic
    "prewarmed",  # a replacement was launched next to the instance, which keeps serving
    "rehoming",  # a stateful move's Spot instance: its disks move on to a new instance (domain/rehome.py)
    "group_replaces",  # a member of a migrated Auto Scaling group: the group replaces it; its pool is remembered
    "terminated_stopped",  # replaced already, then stopped by EC2 (stop, hibernate): terminated (left_stopped)
]
# A claim is "launching" from the conditional write until the replacement exists, "launched"
# once its id is recorded (right after RunInstances answered), then "prewarmed" or "swapped"
# when the takeover is complete; "retired" once the swapped-out instance is gone.
ReplacementStatus = Literal["launching", "launched", "prewarmed", "swapped", "retired"]
UNFINISHED: tuple[str, ...] = ("launching", "launched")  # a takeover that is still going on, or died
TAKEN_OVER: tuple[str, ...] = ("swapped", "retired")  # the replacement serves in the instance's place
# The invocation holding a claim (its event) may still be at work until this moment (epoch
# milliseconds, the invocation's deadline; the attribute name Powertools Idempotency gives it):
# a delivery of the same event before then is a duplicate running concurrently, after it (or
# once the holder abandoned the claim on an error) the retry of a holder that is gone.
HOLDER_EXPIRY = "in_progress_expiration"
# A claim whose holder has not finished after this long is taken over (and resumed) by another event:
# the replacement function's timeout (90 s) and a margin, so the holder is surely dead by then, and
# before the reclaim (two minutes after the warning) leaves the capacity short for long.
CLAIM_STALE_SECONDS = 120
# The reasons EC2 gives when it takes a Spot instance back (DescribeInstances StateReason.Code);
# anything else (Client.UserInitiatedShutdown: the API, the product itself; Client.InstanceInitiatedShutdown:
# from the OS) is someone's decision, not a reclaim.
RECLAIM_REASONS = frozenset({"Server.SpotInstanceTermination", "Server.SpotInstanceShutdown"})
RECLAIMED_STATES = ("stopping", "stopped", "shutting-down", "terminated")


class ReplacementInProgress(SpotMigrationError):
    """A warning came while a prewarm of the instance was still being launched by another event:
    raised so that the warning is retried, and then moves the traffic to the prewarmed replacement."""


class ReplacementBooting(SpotMigrationError):
    """The replacement launched is not running yet and this invocation's time is nearly out:
    retried, the takeover resumes with it (ELB registers only running instances)."""


@dataclass(frozen=True)
class Notice:
    """One EC2 event about one instance."""

    event_id: str
    instance_id: str
    kind: NoticeKind
    time: datetime
    state: str | None = None  # a state change's new state

    @property
    def is_interruption(self) -> bool:
        """EC2 takes the instance back: a warning, or a reclaim that came without one."""
        return self.kind != "rebalance"


STATEFUL_REHOMED = (
    "a stateful move's Spot instance: EC2 stops it with its disks (interruption behaviour stop), which move to "
    "a new instance in the same Availability Zone; no copy is launched from its image")


def taken_back(notice: Notice, instance: Instance) -> bool:
    """EC2 takes the instance back: its warning, or a state change EC2 gives the Spot reason for."""
    if notice.kind == "state-change":
        return instance.state in RECLAIMED_STATES and instance.state_reason in RECLAIM_REASONS
    return notice.is_interruption


GROUP_REPLACES_IT = ("a member of an Auto Scaling group a migration moved to Spot: the group replaces it "
                     "(Capacity Rebalancing); no second replacement is launched")


def why_ignored(notice: Notice, instance: Instance | None) -> str | None:
    """Why the event concerns nothing the product should replace (None: it does). A state
    change is a reclaim only when EC2 says so; stopping or terminating an instance through
    the API (the product's rollbacks and sweeps, an operator) or from its OS is not."""
    if instance is not None and is_group_member(instance.tags):
        return GROUP_REPLACES_IT
    if instance is None or not is_managed(instance.tags):
        return "not managed by spot-migration"
    if RETIRED_BY_TAG in instance.tags:
        return (f"retired by revert {instance.tags[RETIRED_BY_TAG]}: its on-demand replacement takes its place, "
                "so nothing is launched for it")
    if notice.kind == "state-change" and not taken_back(notice, instance):
        return f"{instance.state} ({instance.state_reason or 'no reason given'}): not a Spot reclaim"
    if instance.tags.get(MODE_TAG) == "stateful":
        return STATEFUL_REHOMED
    return None


def left_stopped(instance: Instance, status: str | None) -> bool:
    """A stateless instance EC2 stopped (interruption behaviour stop or hibernate) after its
    replacement took over (`status`: its claim's). Its persistent Spot request was cancelled, so
    nothing will start it again, and its volumes would be billed for ever: it is terminated. A
    stateful move's instance is never one: its disks move on in the re-home (STATEFUL_REHOMED)."""
    return (status in TAKEN_OVER and instance.state == "stopped"
            and instance.tags.get(MODE_TAG, "").strip().lower() != "stateful")


def is_unfinished(claim: Mapping[str, Any]) -> bool:
    return claim.get("status") in UNFINISHED


def is_stale(claim: Mapping[str, Any], now: datetime, stale_seconds: int = CLAIM_STALE_SECONDS) -> bool:
    """An unfinished claim whose holder cannot be working on it any more."""
    return now.timestamp() - float(claim.get("claimed_at") or 0) > stale_seconds


def holder_alive(claim: Mapping[str, Any], now: datetime) -> bool:
    """The invocation holding an unfinished claim may still be at work (its deadline has not passed)."""
    return float(claim.get(HOLDER_EXPIRY) or 0) > now.timestamp() * 1000


def handled_by(claim: Mapping[str, Any], event_id: str) -> bool:
    """`event_id` is the event that holds the claim, or the one that swapped its prewarmed replacement in."""
    return event_id in (claim.get("event_id"), claim.get("swapped_by"))


def rebalance_policy(tags: Mapping[str, str], default: RebalancePolicy) -> RebalancePolicy:
    """The instance's own tag, when it names a policy; the deployment's default otherwise."""
    wanted = tags.get(ON_REBALANCE_TAG)
    return cast(RebalancePolicy, wanted) if wanted in REBALANCE_POLICIES else default


class InterruptionOutcome(BaseModel):
    """What the replacement function did with one event (its return value and log line)."""

    action: Action
    instance_id: str
    reason: str | None = None
    event_id: str | None = None
    policy: RebalancePolicy | None = None
    replacement_id: str | None = None
    instance_type: str | None = None
    availability_zone: str | None = None
    market: Market | None = None
    launched: bool | None = None
    refused_pools: list[str] | None = None
    seconds_from_event_to_launch: float | None = None
    resumed: bool | None = None  # the takeover was finished after an earlier attempt died past the launch
    on_interruption: str | None = None  # the hooks' mode, when not the default replace
    hooks: list[HookResult] | None = None  # how the interruption hooks ended (domain/hooks.py)
    hooks_note: str | None = None  # why no hooks ran (invalid tags)


class RecordRef(BaseModel):
    """The migration record an instance is the replacement of (the record's `replacement_id`
    names it), with what following it to a new instance changes: the market and the hourly price
    the instance runs at, and the original's on-demand price (what an on-demand fallback costs)."""

    migration_id: str
    original_id: str
    market: Market = "spot"
    hourly: float = 0.0
    on_demand_hourly: float = 0.0

    @classmethod
    def of(cls, migration_id: str, record: InstanceRecord) -> RecordRef:
        market: Market = record.replacement_market or "spot"
        hourly = record.replacement_spot_hourly or (record.on_demand_hourly if market == "on-demand" else 0.0)
        return cls(migration_id=migration_id, original_id=record.instance_id, market=market, hourly=hourly or 0.0,
                   on_demand_hourly=record.on_demand_hourly or 0.0)

    def moved_to(self, market: Market, spot_hourly: float) -> RecordRef:
        """The same record once it names a replacement running in `market` (at `spot_hourly` on Spot)."""
        hourly = spot_hourly if market == "spot" else self.on_demand_hourly
        return self.model_copy(update={"market": market, "hourly": hourly})


class LaunchProfile(BaseModel):
    """What the product knew of an instance when it launched it, written ahead where the claim of
    the instance's own replacement goes: the claim's conditional write returns it, so that an
    interruption warning needs no other read to replace the instance (its target groups, its
    user data, the migration record that follows it)."""

    target_groups: list[TargetRef] = []
    user_data: str | None = None
    record: RecordRef | None = None
    spot: SpotTerms | None = None  # its interruption behaviour and max price, which its replacement keeps
    hooks: InterruptionHooks | None = None  # as planned (request and tags); the instance's tags override them


# The status of an item that holds a launch profile and no claim yet: claiming it is allowed.
UNCLAIMED = "unclaimed"


@dataclass(frozen=True)
class RecordFollow:
    """A migration's record follows its interrupted replacement to the new one: the record of
    `original_id` changes only if it still names `interrupted_id`; the migration's realised
    savings drift by `monthly_spot` and `fallbacks` (additive: see outcomes.realised_now)."""

    migration_id: str
    original_id: str
    interrupted_id: str
    fields: dict[str, Any]
    note: str
    monthly_spot: float = 0.0
    fallbacks: int = 0


def follow_record(before: RecordRef, interrupted_id: str, replacement_id: str, instance_type: str,
                  availability_zone: str, after: RecordRef, note: str) -> RecordFollow:
    """What changes when the record `before` (naming the interrupted instance) names its
    replacement, running as `after` says; the realised savings change by the difference the one
    record makes, without reading the rest of the plan."""
    fields = {"replacement_id": replacement_id, "replacement_type": instance_type,
              "replacement_az": availability_zone, "replacement_spot_hourly": after.hourly,
              "replacement_market": after.market}
    monthly = round((after.hourly - before.hourly) * HOURS_PER_MONTH, 2)
    fallbacks = int(after.market == "on-demand") - int(before.market == "on-demand")
    return RecordFollow(before.migration_id, before.original_id, interrupted_id, fields, note, monthly, fallbacks)


def record_key(instance: Instance) -> tuple[str, str] | None:
    """(migration id, original) of the migration record the instance's tags say it serves."""
    migration_id, original = instance.tags.get(MIGRATION_ID_TAG), instance.tags.get(REPLACES_TAG)
    return (migration_id, original) if migration_id and original else None


def launch_subnets(instance: Instance, vpc_subnets: Mapping[str, str]) -> dict[str, str]:
    """zone -> subnet a replacement of `instance` launches in: its own subnet in its own zone, the
    VPC's elsewhere (the interruption handler's rule)."""
    return {instance.availability_zone: instance.subnet_id or "",
            **{z: s for z, s in vpc_subnets.items() if z != instance.availability_zone}}
