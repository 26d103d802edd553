"""Keeps the capacity of managed Spot instances whole through interruption warnings and
rebalance recommendations.

Exactly one replacement per interrupted instance, however often or concurrently the
event arrives: the event id and the instance id are claimed with DynamoDB conditional
writes before anything is launched, and a claim is released again if the handling
fails, so the retry can do the work. The replacement goes to a *different* pool (type
and/or AZ of the diversified set, avoiding pools interrupted recently), falls back to
on-demand when no Spot capacity is left, and takes over the interrupted instance's
target-group registrations.
"""

from __future__ import annotations

import time
import weakref
from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field, field_validator

from . import MANAGED_TAG, MIGRATION_ID_TAG, ON_REBALANCE_TAG, REPLACES_TAG, SUCCEEDS_TAG, fleet
from .event_rules import INTERRUPTION_WARNING
from .instance_types import equivalent_types
from .models import INSTANCE_ID, Pool
from .pricing import fetch_spot_price_history, spot_price_statistics

Policy = Literal["ignore", "prewarm", "replace"]
PRICE_TTL = 300.0
# Per EC2 client (one per warm execution environment): types -> (read at, statistics)
_PRICE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class InstanceDetail(BaseModel):
    instance_id: str = Field(alias="instance-id")
    instance_action: str | None = Field(default=None, alias="instance-action")

    @field_validator("instance_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not INSTANCE_ID.match(value):
            raise ValueError(f"{value!r} is not an EC2 instance id")
        return value


class Ec2InstanceEvent(EventBridgeModel):
    source: Literal["aws.ec2"]
    detail_type: Literal["EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation"] = Field(alias="detail-type")
    detail: InstanceDetail

    @property
    def instance_id(self) -> str:
        return self.detail.instance_id

    @property
    def is_interruption(self) -> bool:
        return self.detail_type == INTERRUPTION_WARNING


def replacement_pools(original: dict, subnets_by_az: dict[str, str], prices: dict[tuple[str, str], Any],
                      avoid: set[tuple[str, str]]) -> list[Pool]:
    """Every pool but the interrupted one: equivalent types in every AZ the VPC has a
    subnet in, recently interrupted pools last, then the cheapest first."""
    itype, az = original["InstanceType"], original["Placement"]["AvailabilityZone"]
    pools = [
        Pool(instance_type=t, availability_zone=zone, spot_hourly=round(prices[(t, zone)].median, 5))
        for t in [itype, *equivalent_types(itype)]
        for zone in sorted(subnets_by_az)
        if (t, zone) != (itype, az) and (t, zone) in prices
    ]
    return sorted(pools, key=lambda p: ((p.instance_type, p.availability_zone) in avoid, p.spot_hourly, p.instance_type, p.availability_zone))


class InterruptionResponder:
    def __init__(self, *, ec2: Any, elbv2: Any, store: Any, notifier: Any, default_policy: Policy = "prewarm",
                 prewarm_seconds: int = 900):
        self.ec2, self.elbv2, self.store, self.notifier = ec2, elbv2, store, notifier
        self.default_policy, self.prewarm_seconds = default_policy, prewarm_seconds

    def handle(self, event: Ec2InstanceEvent, now: datetime | None = None) -> dict:
        now = now or datetime.now(UTC)
        iid = event.instance_id
        instance = fleet.describe(self.ec2, [iid]).get(iid)
        tags = fleet.tags_of(instance) if instance else {}
        if tags.get(MANAGED_TAG) != "true":
            return {"action": "ignored", "instance_id": iid, "reason": "not managed by spot-migration"}
        if not self.store.claim(f"EVENT#{event.id}", iid):
            return {"action": "duplicate", "instance_id": iid, "event_id": event.id}
        try:
            result = self._respond(event, instance, tags, now)
        except Exception:
            self.store.release(f"EVENT#{event.id}", iid)
            raise
        self.store.finish_claim(f"EVENT#{event.id}", iid, result["action"])
        return result

    def _respond(self, event: Ec2InstanceEvent, instance: dict, tags: dict, now: datetime) -> dict:
        iid = event.instance_id
        existing = self.store.replacement_for(iid)
        if not event.is_interruption:
            policy = tags.get(ON_REBALANCE_TAG, self.default_policy)
            if policy not in ("ignore", "prewarm", "replace"):
                policy = self.default_policy
            if policy == "ignore":
                return {"action": "ignored_by_policy", "instance_id": iid, "policy": policy}
            if existing:
                return {"action": "already_replaced", "instance_id": iid, "replacement_id": existing["replacement_id"]}
            result = self._replace(event, instance, tags, now, swap=(policy == "replace"))
            return {**result, "policy": policy}
        self.store.record_interruption(instance["InstanceType"], instance["Placement"]["AvailabilityZone"], iid)
        if existing and existing["status"] == "prewarmed":
            self._swap(instance, existing["replacement_id"], existing.get("target_groups", []))
            self.store.update_replacement(iid, status="swapped", swapped_at=now.isoformat())
            self._notify(iid, "prewarmed-swap", f"{iid} is being reclaimed; its prewarmed replacement {existing['replacement_id']} took over")
            return {"action": "swapped_prewarmed", "instance_id": iid, "replacement_id": existing["replacement_id"], "launched": False}
        if existing:
            return {"action": "already_replaced", "instance_id": iid, "replacement_id": existing["replacement_id"]}
        return self._replace(event, instance, tags, now, swap=True)

    def _replace(self, event: Ec2InstanceEvent, instance: dict, tags: dict, now: datetime, swap: bool) -> dict:
        iid = event.instance_id
        if not self.store.claim_replacement(iid, event.id):
            existing = self.store.replacement_for(iid) or {}
            return {"action": "already_replaced", "instance_id": iid, "replacement_id": existing.get("replacement_id")}
        try:
            groups = fleet.target_groups_of(self.elbv2, iid)
            new_id, pool, market, refused = self._launch(instance, tags, event)
        except Exception:
            self.store.release_replacement(iid)
            raise
        launched_at = datetime.now(UTC)
        latency = (launched_at - event.time).total_seconds()
        fleet.register(self.elbv2, fleet.group_by_target_group((new_id, ref) for ref in groups))
        if swap:
            self._swap(instance, new_id, [g.model_dump() for g in groups], registered=True)
        status = "swapped" if swap else "prewarmed"
        self.store.update_replacement(
            iid, status=status, replacement_id=new_id, instance_type=pool.instance_type, availability_zone=pool.availability_zone,
            market=market, target_groups=[g.model_dump() for g in groups], launched_at=launched_at.isoformat(),
            kind="interruption" if event.is_interruption else "rebalance",
            event_time=event.time.isoformat(), refused=refused, prewarm_until=int(time.time()) + self.prewarm_seconds,
        )
        self.store.register_managed(new_id, f"replacement of {iid}")
        self._follow_migration(tags, iid, new_id, pool, market)
        kind = "interruption" if event.is_interruption else "rebalance"
        self._notify(iid, f"{kind}-replaced", f"{iid} ({instance['InstanceType']} in {instance['Placement']['AvailabilityZone']}, {kind}): "
                     f"replacement {new_id} launched as {market} {pool.instance_type} in {pool.availability_zone}")
        return {"action": "replaced" if swap else "prewarmed", "instance_id": iid, "replacement_id": new_id,
                "instance_type": pool.instance_type, "availability_zone": pool.availability_zone, "market": market,
                "launched": True, "refused_pools": refused, "seconds_from_event_to_launch": round(latency, 3)}

    def _launch(self, instance: dict, tags: dict, event: Ec2InstanceEvent) -> tuple[str, Pool, str, list[str]]:
        subnets = self._subnets_by_az(instance)
        types = [instance["InstanceType"], *equivalent_types(instance["InstanceType"])]
        prices = self._prices(tuple(types))
        pools = replacement_pools(instance, subnets, prices, self.store.recent_interruptions())
        new_tags = [{"Key": k, "Value": v} for k, v in sorted({
            **{k: v for k, v in tags.items() if not k.startswith("aws:")}, SUCCEEDS_TAG: instance["InstanceId"], MANAGED_TAG: "true"}.items())]
        user_data = fleet.user_data(self.ec2, instance["InstanceId"])
        refused: list[str] = []
        for n, pool in enumerate(pools):
            spec = fleet.launch_spec({**instance, "SubnetId": subnets[pool.availability_zone]}, pool, new_tags, user_data)
            try:
                return fleet.run_instance(self.ec2, spec, pool, f"intr-{event.id}-{n}"[:64]), pool, "spot", refused
            except fleet.CapacityRefused as exc:
                refused.append(f"{pool.instance_type}/{pool.availability_zone}: {exc.code}")
        # No Spot capacity anywhere: keep the capacity whole on-demand, in the original pool.
        od_pool = Pool(instance_type=instance["InstanceType"], availability_zone=instance["Placement"]["AvailabilityZone"], spot_hourly=0.0)
        spec = fleet.launch_spec(instance, od_pool, new_tags, user_data, spot=False)
        return fleet.run_instance(self.ec2, spec, od_pool, f"intr-{event.id}-od"[:64]), od_pool, "on-demand", refused

    def _prices(self, types: tuple[str, ...]) -> dict:
        """Spot price statistics of the last 6 h, kept for PRICE_TTL in the warm execution
        environment: a storm of warnings for the same types reads them once."""
        cache = _PRICE_CACHE.setdefault(self.ec2, {})
        cached = cache.get(types)
        if cached and time.monotonic() - cached[0] < PRICE_TTL:
            return cached[1]
        now = datetime.now(UTC)
        prices = spot_price_statistics(fetch_spot_price_history(self.ec2, list(types), now, lookback_hours=6), now, lookback_hours=6)
        cache[types] = (time.monotonic(), prices)
        return prices

    def _subnets_by_az(self, instance: dict) -> dict[str, str]:
        """One subnet per AZ of the instance's VPC (its own subnet for its own AZ)."""
        subnets = {instance["Placement"]["AvailabilityZone"]: instance["SubnetId"]}
        page = self.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [instance["VpcId"]]}])
        for subnet in sorted(page["Subnets"], key=lambda s: s["SubnetId"]):
            subnets.setdefault(subnet["AvailabilityZone"], subnet["SubnetId"])
        return subnets

    def _swap(self, old: dict, new_id: str, target_groups: list[dict], registered: bool = True) -> None:
        """Traffic moves to the replacement; the interrupted instance drains."""
        from .models import TargetRef

        refs = [TargetRef.model_validate(t) for t in target_groups]
        if not registered:
            fleet.register(self.elbv2, fleet.group_by_target_group((new_id, r) for r in refs))
        fleet.deregister(self.elbv2, fleet.group_by_target_group((old["InstanceId"], r) for r in refs))

    def _follow_migration(self, tags: dict, old_id: str, new_id: str, pool: Pool, market: str) -> None:
        """If the interrupted instance replaces an original of a migration, the migration's
        record now points at the new instance (so a rollback terminates the right one)."""
        migration_id, original = tags.get(MIGRATION_ID_TAG), tags.get(REPLACES_TAG)
        if not migration_id or not original:
            return
        for record in self.store.records(migration_id):
            if record.instance_id == original and record.replacement_id == old_id:
                record.replacement_id, record.replacement_type = new_id, pool.instance_type
                record.replacement_az = pool.availability_zone
                record.replacement_spot_hourly = pool.spot_hourly if market == "spot" else record.on_demand_hourly
                record.attempts.append(f"{old_id} interrupted; replaced by {new_id} ({market})")
                self.store.put_record(migration_id, record)

    def _notify(self, instance_id: str, event: str, headline: str) -> None:
        self.notifier.publish(instance_id, event, headline, [], {"instance_id": instance_id})
