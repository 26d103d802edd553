"""The registry of instances the product launched, for the orphan sweeper: who launched
each one and whether it is still in use (active) or done with (retired)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...domain.batching import chunks
from ...domain.interruptions import UNCLAIMED, LaunchProfile
from ..aws import transient_errors
from .migrations import now_iso
from .schema import META, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, claim_key, managed_pk
from .table import batch_get, to_dynamo

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


def registry_item(instance_id: str, owner: str, status: str = "active") -> dict[str, str]:
    """The registry's item of one instance (the interruption handler writes it in the same
    transaction as the claim that names the instance)."""
    return {PARTITION_KEY: managed_pk(instance_id), SORT_KEY: META, "instance_id": instance_id, "owner": owner,
            "status": status, "updated_at": now_iso()}


# A profile outlives most instances: one still running after it expired is replaced after a
# read of what the profile held (its record, user data and target groups), as if it had none.
PROFILE_TTL_SECONDS = 365 * 86_400
TRANSACTION_ITEMS = 100  # DynamoDB's limit per TransactWriteItems


def profile_item(instance_id: str, profile: LaunchProfile) -> dict[str, Any]:
    """The launch profile of an instance, where the claim of its replacement goes (unclaimed)."""
    return {**claim_key(instance_id), "instance_id": instance_id, "status": UNCLAIMED,
            "profile": to_dynamo(profile.model_dump(exclude_none=True)),
            TTL_ATTRIBUTE: int(time.time()) + PROFILE_TTL_SECONDS}


def put_profile(table: str, instance_id: str, profile: LaunchProfile) -> dict[str, Any]:
    """A transaction's write of a launch profile, refused where the instance is claimed already."""
    return {"Put": {"TableName": table, "Item": profile_item(instance_id, profile),
                    "ConditionExpression": "attribute_not_exists(pk)"}}


class DynamoManagedRegistry:
    def __init__(self, table: Table):
        self.table = table

    def register(self, instance_id: str, owner: str, status: str = "active") -> None:
        with transient_errors():
            self.table.put_item(Item=registry_item(instance_id, owner, status))

    def register_all(self, instance_ids: list[str], owner: str,
                     profiles: Mapping[str, LaunchProfile] | None = None) -> None:
        """Several instances at once (a launch of several), with the launch profiles known:
        batch writes of 25, then transactions of 100 profiles, each refused (and left out) where
        the instance is claimed already."""
        with transient_errors(), self.table.batch_writer() as batch:
            for instance_id in instance_ids:
                batch.put_item(Item=registry_item(instance_id, owner))
        for chunk in chunks(sorted((profiles or {}).items()), TRANSACTION_ITEMS):
            self._put_profiles(dict(chunk))

    def _put_profiles(self, profiles: dict[str, LaunchProfile]) -> None:
        while profiles:
            try:
                with transient_errors():
                    self.table.meta.client.transact_write_items(TransactItems=[
                        put_profile(self.table.name, iid, p) for iid, p in profiles.items()])  # type: ignore[misc]
                return
            except Exception as exc:
                reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
                claimed = {iid for iid, r in zip(profiles, reasons, strict=False)
                           if r.get("Code") == "ConditionalCheckFailed"}
                if not claimed:
                    raise
                profiles = {iid: p for iid, p in profiles.items() if iid not in claimed}

    def statuses(self, instance_ids: list[str]) -> dict[str, str]:
        """instance id -> status, for the ids on record."""
        keys = [{PARTITION_KEY: managed_pk(iid), SORT_KEY: META} for iid in dict.fromkeys(instance_ids)]
        return {item["instance_id"]: item["status"] for item in batch_get(self.table, keys, consistent=True)}
