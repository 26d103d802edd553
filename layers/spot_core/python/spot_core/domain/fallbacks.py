"""On-demand fallbacks going back to Spot: which fallbacks the scheduled job may return, where
their Spot instance may run, and what a run did.

A fallback is what the interruption handler launched on-demand when no Spot pool had capacity:
a managed instance running on-demand that succeeds an interrupted one, and that the migration
record of its original names with replacement_market "on-demand". Once it has run for the
minimum age, it goes back to Spot in a healthy pool: priced below its cap (its Spot max price,
else the on-demand price it costs now), not interrupted recently, in any zone of its VPC (its
own subnet in its own zone), its own type first (its performance is known), then the cheapest.

An instance moved with its disks (the stateful mode) is never returned: the on-demand successor a
re-home launched holds the real volumes, interfaces and addresses, which a Spot instance launched
from the image would leave behind.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from .carry import MODE_TAG
from .instances import Instance
from .locks import InstanceLock
from .plan import InstanceRecord, Pool
from .pools import PoolKey, candidate_types, order_pools, priced_pools
from .pricing import HOURS_PER_MONTH, SpotPriceStat
from .spot_options import SpotTerms
from .tags import SUCCEEDS_TAG, is_managed

FallbackReturn = Literal["on", "off"]
DEFAULT_MIN_AGE_SECONDS = 3600
RETURN_KIND = "fallback-return"  # the `kind` of a claim the job holds on a fallback's replacement
MAX_RETURNS_PER_RUN = 10  # fallbacks one run begins to return (EC2's launch rate, one notification's length)
# A Spot instance launched for a fallback that is not healthy this long after its launch is given up:
# terminated, and the fallback (which served all along) is left for a later run.
GIVE_UP_SECONDS = 1200

# Why a fallback is left alone (the job's result counts them by reason)
TOO_YOUNG = "too_young"
# moved with its disks (the stateful mode): an on-demand successor of a re-home holds the real volumes,
# interfaces and addresses; a Spot instance from the image would leave the data behind, so it stays on-demand
STATEFUL = "stateful"
NOT_FOLLOWED = "no_migration_record_follows_it_on_demand"
NOT_MIGRATED = "migration_record_not_migrated"  # rolled back, reverted, failed
HELD = "held_by_migration"  # a running migration (or its rollback, or a revert) holds it or its original
CLAIMED = "claimed"  # its replacement is claimed already (another run, or an event)
NO_HEALTHY_POOL = "no_healthy_spot_pool"
CAPACITY_REFUSED = "spot_capacity_refused"
LAUNCH_REFUSED = "launch_refused"
DEFERRED = "deferred_to_next_run"
NOT_HEALTHY_YET = "spot_instance_not_healthy_yet"
DRAINING = "draining"
GIVEN_UP = "spot_instance_never_healthy"


def is_fallback(instance: Instance) -> bool:
    """A running on-demand instance the interruption handler launched for an interrupted one."""
    return (instance.state == "running" and instance.lifecycle is None and is_managed(instance.tags)
            and SUCCEEDS_TAG in instance.tags)


def why_left_alone(instance: Instance, record: InstanceRecord | None, locks: Mapping[str, InstanceLock],
                   now: datetime, min_age_seconds: int) -> str | None:
    """Why the job may not return this fallback now (None: it may), before any pool is looked at."""
    if is_stateful(instance, record):
        return STATEFUL
    launched = instance.launch_time or now
    if (now - launched).total_seconds() < min_age_seconds:
        return TOO_YOUNG
    if record is None or not follows_on_demand(record, instance.instance_id):
        return NOT_FOLLOWED
    if record.status != "migrated" or record.reverted_by:
        return NOT_MIGRATED
    return HELD if is_held(locks, instance.instance_id, record.instance_id) else None


def is_stateful(instance: Instance, record: InstanceRecord | None) -> bool:
    """Moved with its disks: its mode tag says so, or the migration record does (its mode, or a re-home
    that moved the disks onto it). Such an instance is never replaced from its image by this job."""
    if instance.tags.get(MODE_TAG, "").strip().lower() == "stateful":
        return True
    return record is not None and (record.mode == "stateful" or record.rehome is not None)


def follows_on_demand(record: InstanceRecord, fallback_id: str) -> bool:
    """The migration record names the fallback as its replacement, running on-demand."""
    return record.replacement_id == fallback_id and record.replacement_market == "on-demand"


def is_held(locks: Mapping[str, InstanceLock], *instance_ids: str) -> bool:
    """A migration (a running one, its rollback, a revert) holds one of the instances."""
    return any(locks[i].migration_id for i in instance_ids if i in locks)


def price_cap(terms: SpotTerms, record: InstanceRecord) -> float | None:
    """The most the Spot instance may cost an hour: the max price planned, else the on-demand price."""
    return terms.max_price or record.on_demand_hourly or record.replacement_spot_hourly or None


def return_pools(instance_type: str, zones: Collection[str], prices: Mapping[PoolKey, SpotPriceStat],
                 recent: Collection[PoolKey], cap: float | None) -> list[Pool]:
    """The healthy Spot pools for a fallback of `instance_type`, best first: priced below `cap`,
    not interrupted recently, in any of `zones`; its own type first, then the cheapest."""
    if not cap:
        return []
    pools = priced_pools(candidate_types(instance_type), sorted(zones), prices, exclude=recent)
    return order_pools([p for p in pools if p.spot_hourly < cap], prefer_type=instance_type)


def monthly_saving(on_demand_hourly: float, spot_hourly: float) -> float:
    return round((on_demand_hourly - spot_hourly) * HOURS_PER_MONTH, 2)


class ReturnedFallback(BaseModel):
    """A fallback that went back to Spot."""

    instance_id: str  # the on-demand fallback, terminated
    replacement_id: str  # the Spot instance serving in its place
    pool: str  # "type/zone"
    spot_hourly: float
    monthly_saving: float
    migration_id: str
    original_id: str
    resumed: bool = False  # finished after an earlier run launched it


class LeftAlone(BaseModel):
    instance_id: str
    reason: str
    detail: str | None = None


class ReturnReport(BaseModel):
    """What one run of the job did (its return value and log line)."""

    enabled: bool = True
    fallbacks: int = 0  # on-demand fallbacks found running
    returned: list[ReturnedFallback] = Field(default_factory=list)
    left_alone: list[LeftAlone] = Field(default_factory=list)

    def count(self, reason: str) -> int:
        return sum(1 for left in self.left_alone if left.reason == reason)
