"""The registry of instances the product launched, for the orphan sweeper: who launched
each one and whether it is still in use (active) or done with (retired)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..aws import transient_errors
from .migrations import now_iso
from .schema import META, PARTITION_KEY, SORT_KEY, managed_pk
from .table import batch_get

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


def registry_item(instance_id: str, owner: str, status: str = "active") -> dict[str, str]:
    """The registry's item of one instance (the interruption handler writes it in the same
    transaction as the claim that names the instance)."""
    return {PARTITION_KEY: managed_pk(instance_id), SORT_KEY: META, "instance_id": instance_id, "owner": owner,
            "status": status, "updated_at": now_iso()}


class DynamoManagedRegistry:
    def __init__(self, table: Table):
        self.table = table

    def register(self, instance_id: str, owner: str, status: str = "active") -> None:
        with transient_errors():
            self.table.put_item(Item=registry_item(instance_id, owner, status))

    def register_all(self, instance_ids: list[str], owner: str) -> None:
        """Several instances at once (a launch of several): batch writes of 25."""
        with transient_errors(), self.table.batch_writer() as batch:
            for instance_id in instance_ids:
                batch.put_item(Item=registry_item(instance_id, owner))

    def statuses(self, instance_ids: list[str]) -> dict[str, str]:
        """instance id -> status, for the ids on record."""
        keys = [{PARTITION_KEY: managed_pk(iid), SORT_KEY: META} for iid in dict.fromkeys(instance_ids)]
        return {item["instance_id"]: item["status"] for item in batch_get(self.table, keys, consistent=True)}
