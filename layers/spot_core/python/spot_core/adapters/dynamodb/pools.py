"""Pool memory: every Spot interruption per (instance type, AZ), remembered for a week, so
analysis and replacements put recently interrupted pools last."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key

from ..aws import transient_errors
from .migrations import now_iso
from .schema import PARTITION_KEY, POOLS, SORT_KEY, TTL_ATTRIBUTE
from .table import query

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

MEMORY_SECONDS = 7 * 86400


def pool_item(instance_type: str, availability_zone: str, instance_id: str,
              memory_seconds: int = MEMORY_SECONDS) -> dict[str, Any]:
    """The item remembering one interruption (the interruption handler writes it in the same
    transaction as the claim it records the replacement on)."""
    when = now_iso()
    return {PARTITION_KEY: POOLS, SORT_KEY: f"{instance_type}#{availability_zone}#{when}#{instance_id}",
            "instance_type": instance_type, "availability_zone": availability_zone, "instance_id": instance_id,
            "interrupted_at": when, TTL_ATTRIBUTE: int(time.time()) + memory_seconds}


class DynamoPoolMemory:
    def __init__(self, table: Table, memory_seconds: int = MEMORY_SECONDS):
        self.table, self.memory_seconds = table, memory_seconds

    def record_interruption(self, instance_type: str, availability_zone: str, instance_id: str) -> None:
        with transient_errors():
            self.table.put_item(Item=pool_item(instance_type, availability_zone, instance_id, self.memory_seconds))

    def recent_interruptions(self) -> set[tuple[str, str]]:
        """Pools interrupted within their memory window (expired items may linger until TTL
        deletes them, so the expiry is checked here too)."""
        now = int(time.time())
        return {(item["instance_type"], item["availability_zone"])
                for item in query(self.table, KeyConditionExpression=Key(PARTITION_KEY).eq(POOLS))
                if int(item.get(TTL_ATTRIBUTE, 0)) > now}
