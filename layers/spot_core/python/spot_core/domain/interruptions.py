"""What EC2 tells about a managed instance (an interruption warning or a rebalance
recommendation), the owner's policy for rebalance recommendations, and what the product did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast, get_args

from pydantic import BaseModel

from .instances import Market
from .tags import ON_REBALANCE_TAG

NoticeKind = Literal["interruption", "rebalance"]
RebalancePolicy = Literal["ignore", "prewarm", "replace"]
REBALANCE_POLICIES: tuple[str, ...] = get_args(RebalancePolicy)
Action = Literal[
    "ignored",  # not an instance the product manages
    "duplicate",  # this event was handled (or is being handled) already
    "ignored_by_policy",  # a rebalance recommendation the owner asked to ignore
    "already_replaced",  # the instance has its one replacement already
    "swapped_prewarmed",  # the warning found a prewarmed replacement: traffic moved to it
    "replaced",  # a replacement was launched and took over the traffic
    "prewarmed",  # a replacement was launched next to the instance, which keeps serving
]
ReplacementStatus = Literal["launching", "prewarmed", "swapped", "retired"]


@dataclass(frozen=True)
class Notice:
    """One EC2 event about one instance."""

    event_id: str
    instance_id: str
    kind: NoticeKind
    time: datetime

    @property
    def is_interruption(self) -> bool:
        return self.kind == "interruption"


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
