"""What the product knows of an EC2 instance, and what a replacement is launched with.

The EC2 adapter reads instances into these shapes; the services and rules never see an
API response. A replacement copies the original's launch settings into another pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from .plan import Pool

Market = Literal["spot", "on-demand"]
LIVE_STATES = ("pending", "running", "stopping", "stopped")
GONE_STATES = ("shutting-down", "terminated")

# Errors that mean "this Spot pool cannot serve the request now": try the next pool.
CAPACITY_ERRORS = frozenset({
    "InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded",
    "InsufficientCapacity", "Unsupported", "InsufficientHostCapacity", "SpotCapacityNotAvailable",
})


@dataclass(frozen=True)
class LaunchSettings:
    """The parts of an instance a replacement copies (besides image, subnet and tags)."""

    security_group_ids: tuple[str, ...] = ()
    key_name: str | None = None
    instance_profile_arn: str | None = None
    ebs_optimized: bool = False
    monitoring: bool = False
    metadata_http_tokens: str | None = None
    metadata_http_endpoint: str = "enabled"


@dataclass(frozen=True)
class Instance:
    instance_id: str
    instance_type: str
    availability_zone: str
    state: str
    subnet_id: str | None = None
    vpc_id: str | None = None
    image_id: str | None = None
    lifecycle: str | None = None  # "spot" | "scheduled" | None (on-demand)
    platform: str | None = None  # "windows" | None
    tags: Mapping[str, str] = field(default_factory=dict)
    launch_time: datetime | None = None
    settings: LaunchSettings = field(default_factory=LaunchSettings)
    state_reason: str | None = None  # the code of the last state change, e.g. "Server.SpotInstanceTermination"
    launch_index: int = 0  # AmiLaunchIndex: its place among the instances one RunInstances launched

    @property
    def name(self) -> str | None:
        return self.tags.get("Name")

    @property
    def pool_key(self) -> tuple[str, str]:
        return self.instance_type, self.availability_zone


@dataclass(frozen=True)
class TypeTraits:
    """What DescribeInstanceTypes says of a type that decides whether it may move."""

    instance_storage: bool = False
    burstable: bool = False


@dataclass(frozen=True)
class LaunchSpec:
    """One replacement to launch: the original's image, settings and subnet in another pool."""

    image_id: str
    instance_type: str
    subnet_id: str
    settings: LaunchSettings
    tags: Mapping[str, str]
    user_data: str | None = None  # base64, as EC2 reports the original's
    market: Market = "spot"

    @classmethod
    def replacing(cls, original: Instance, pool: Pool, tags: Mapping[str, str], user_data: str | None,
                  market: Market = "spot", subnet_id: str | None = None) -> LaunchSpec:
        return cls(
            image_id=original.image_id or "", instance_type=pool.instance_type,
            subnet_id=subnet_id or original.subnet_id or "", settings=original.settings,
            tags=tags, user_data=user_data, market=market,
        )
