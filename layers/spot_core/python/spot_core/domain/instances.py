"""What the product knows of an EC2 instance, and what a replacement is launched with.

The EC2 adapter reads instances into these shapes; the services and rules never see an
API response. A replacement copies the original's launch settings into another pool.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from .carry import Interface, Inventory, VolumeSettings
from .plan import Pool
from .spot_options import InterruptionBehavior, SpotTerms

Market = Literal["spot", "on-demand"]
LIVE_STATES = ("pending", "running", "stopping", "stopped")
GONE_STATES = ("shutting-down", "terminated")

# Errors that mean "this Spot pool cannot serve the request now": try the next pool.
CAPACITY_ERRORS = frozenset({
    "InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded",
    "InsufficientCapacity", "Unsupported", "InsufficientHostCapacity", "SpotCapacityNotAvailable",
})


BURSTABLE_FAMILY = re.compile(r"t\d")  # t2, t3, t3a, t4g: not trn1 (Trainium)


def burstable_family(instance_type: str) -> bool:
    """Whether the type is of a burstable (T) family, which alone takes CPU credit settings."""
    return bool(BURSTABLE_FAMILY.match(instance_type))


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
    metadata_hop_limit: int | None = None
    placement_group: str | None = None
    tenancy: str | None = None  # "default" | "dedicated" | "host"
    hibernation: bool = False
    cpu_credits: str | None = None  # burstable types: "standard" | "unlimited"
    root_volume: VolumeSettings | None = None  # the original's root volume settings (from the inventory)

    def describe(self) -> list[str]:
        """The launch settings a replacement copies, in words (the plan shows them)."""
        optional = [
            (bool(self.metadata_http_tokens or self.metadata_hop_limit),
             f"instance metadata: tokens {self.metadata_http_tokens or 'optional'}, "
             f"hop limit {self.metadata_hop_limit or 1}"),
            (bool(self.placement_group), f"placement group {self.placement_group}"),
            (self.tenancy not in (None, "default"), f"tenancy {self.tenancy}"),
            (bool(self.cpu_credits), f"CPU credits {self.cpu_credits}"),
            (self.hibernation, "hibernation configured"),
        ]
        return ["image, subnet, security groups, key pair, instance profile, user data and tags",
                *(note for present, note in optional if present)]


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
    root_device: str | None = None
    block_devices: tuple[tuple[str, str, bool], ...] = ()  # (device, volume id, delete on termination)
    interfaces: tuple[Interface, ...] = ()
    source_dest_check: bool = True
    product: str | None = None  # PlatformDetails: the billing product ("Linux/UNIX", "Red Hat Enterprise Linux", ...)
    spot_request_id: str | None = None
    usage_operation: str | None = None

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
    # Spot only: what EC2 does on interruption (stop and hibernate: a persistent request; a
    # stateful move always stops or hibernates), and the most it may cost (None: EC2's default)
    interruption_behavior: InterruptionBehavior = "terminate"
    max_price: float | None = None

    @classmethod
    def replacing(cls, original: Instance, pool: Pool, tags: Mapping[str, str], user_data: str | None,
                  market: Market = "spot", subnet_id: str | None = None,
                  inventory: Inventory | None = None, spot: SpotTerms | None = None) -> LaunchSpec:
        """With the inventory, the replacement also copies the root volume's settings (and the
        CPU credit mode, which only DescribeInstanceCreditSpecifications tells); with `spot`, the
        interruption behaviour and max price planned for the original."""
        terms = spot if spot is not None and market == "spot" else SpotTerms()
        return cls(
            image_id=original.image_id or "", instance_type=pool.instance_type,
            subnet_id=subnet_id or original.subnet_id or "", settings=carried_settings(original, inventory),
            tags=tags, user_data=user_data, market=market,
            interruption_behavior=terms.interruption_behavior, max_price=terms.max_price,
        )


def carried_settings(original: Instance, inventory: Inventory | None) -> LaunchSettings:
    if inventory is None:
        return original.settings
    root = inventory.root
    credits = inventory.cpu_credits or original.settings.cpu_credits
    if root is None:
        return replace(original.settings, cpu_credits=credits)
    return replace(original.settings, cpu_credits=credits, root_volume=root.settings)
