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

from .errors import SpotMigrationError
from .instances import Instance, Market
from .plan import InstanceRecord
from .pricing import HOURS_PER_MONTH
from .tags import ON_REBALANCE_TAG, is_managed

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
]
# A claim is "launching" from the conditional write until the replacement exists, "launched"
# once its id is recorded (right after RunInstances answered), then "prewarmed" or "swapped"
# when the takeover is complete; "retired" once the swapped-out instance is gone.
ReplacementStatus = Literal["launching", "launched", "prewarmed", "swapped", "retired"]
UNFINISHED: tuple[str, ...] = ("launching", "launched")  # a takeover that is still going on, or died
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


def why_ignored(notice: Notice, instance: Instance | None) -> str | None:
    """Why the event concerns nothing the product should replace (None: it does). A state
    change is a reclaim only when EC2 says so; stopping or terminating an instance through
    the API (the product's rollbacks and sweeps, an operator) or from its OS is not."""
    if instance is None or not is_managed(instance.tags):
        return "not managed by spot-migration"
    if notice.kind != "state-change":
        return None
    if instance.state not in RECLAIMED_STATES or instance.state_reason not in RECLAIM_REASONS:
        return f"{instance.state} ({instance.state_reason or 'no reason given'}): not a Spot reclaim"
    return None


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


@dataclass(frozen=True)
class RecordFollow:
    """A migration's record follows its interrupted replacement to the new one: the record of
    `original_id` changes only if it still names `interrupted_id`; a completed migration's
    realised savings change by `realised` (additive, per field) and take `savings_pct`."""

    migration_id: str
    original_id: str
    interrupted_id: str
    fields: dict[str, Any]
    note: str
    realised: dict[str, float] | None = None
    savings_pct: float | None = None


def _hourly(record: InstanceRecord) -> float:
    if record.replacement_market == "on-demand":
        return record.replacement_spot_hourly or record.on_demand_hourly or 0.0
    return record.replacement_spot_hourly or 0.0


def follow_record(migration_id: str, before: InstanceRecord, after: InstanceRecord, interrupted_id: str,
                  migration: Mapping[str, Any] | None) -> RecordFollow:
    """What changes when `before` (the record naming the interrupted replacement) becomes `after`
    (record.follow applied). A completed migration's realised savings change by the difference
    the one record makes (its market and hourly price), without reading the rest of the plan;
    the percentage is recomputed from the realised savings as read."""
    fields = {k: getattr(after, k) for k in ("replacement_id", "replacement_type", "replacement_az",
                                            "replacement_spot_hourly", "replacement_market")}
    note = after.attempts[-1] if after.attempts else ""
    completed = migration is not None and migration.get("status") == "completed"
    realised = migration.get("realised") if completed and migration is not None else None
    if not realised or before.status != "migrated":
        return RecordFollow(migration_id, before.instance_id, interrupted_id, fields, note)
    delta, pct = _restated(realised, before, after)
    return RecordFollow(migration_id, before.instance_id, interrupted_id, fields, note, delta, pct)


def _restated(realised: Mapping[str, Any], before: InstanceRecord, after: InstanceRecord
              ) -> tuple[dict[str, float], float]:
    """What one record changes in the realised savings (additive, per field), and the percentage."""
    monthly = round((_hourly(after) - _hourly(before)) * HOURS_PER_MONTH, 2)
    fallbacks = int(after.replacement_market == "on-demand") - int(before.replacement_market == "on-demand")
    delta = {"monthly_spot": monthly, "monthly_savings": -monthly, "on_demand_fallbacks": fallbacks,
             "on_spot": -fallbacks}
    before_total = float(realised.get("monthly_on_demand") or 0.0)
    savings = float(realised.get("monthly_savings") or 0.0) - monthly
    pct = round(100 * savings / before_total, 1) if before_total else 0.0
    return {k: v for k, v in delta.items() if v}, pct
