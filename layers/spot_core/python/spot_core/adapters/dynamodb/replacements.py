"""The one replacement of an interrupted (or rebalanced) instance: a conditional write per
instance, so only the first of concurrent or repeated events launches it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from ..aws import transient_errors
from .schema import (
    INDEX_PARTITION_KEY,
    INDEX_SORT_KEY,
    PARTITION_KEY,
    REPLACEMENT,
    REPLACEMENTS_INDEX_PK,
    SORT_KEY,
    STATUS_INDEX,
    instance_pk,
)
from .table import Item, from_dynamo, is_condition_failure, query, set_fields

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

CLAIM_EXPIRY = 300  # a claim whose handler died (still "launching") is taken over after this many seconds


def _key(instance_id: str) -> dict[str, str]:
    return {PARTITION_KEY: instance_pk(instance_id), SORT_KEY: REPLACEMENT}


class DynamoReplacementClaims:
    def __init__(self, table: Table):
        self.table = table

    def claim(self, instance_id: str, event_id: str) -> bool:
        """The one replacement of an instance: only the first claimant launches it."""
        now = int(time.time())
        try:
            with transient_errors():
                self.table.put_item(
                    Item={**_key(instance_id), "instance_id": instance_id, "status": "launching", "event_id": event_id,
                          "claimed_at": now, INDEX_PARTITION_KEY: REPLACEMENTS_INDEX_PK,
                          INDEX_SORT_KEY: f"{now}#{instance_id}"},
                    ConditionExpression=Attr(PARTITION_KEY).not_exists() | (
                        Attr("status").eq("launching") & Attr("claimed_at").lt(now - CLAIM_EXPIRY)),
                )
        except Exception as exc:
            if is_condition_failure(self.table, exc):
                return False
            raise
        return True

    def release(self, instance_id: str) -> None:
        """Give a claim back when launching failed, so a retry can do the work."""
        with transient_errors():
            self.table.delete_item(Key=_key(instance_id), ConditionExpression=Attr("status").eq("launching"))

    def replacement_for(self, instance_id: str) -> Item | None:
        with transient_errors():
            item = self.table.get_item(Key=_key(instance_id), ConsistentRead=True).get("Item")
        found: Item | None = from_dynamo(item) if item and item.get("replacement_id") else None
        return found

    def update(self, instance_id: str, **fields: Any) -> None:
        set_fields(self.table, _key(instance_id), fields)

    def all(self) -> list[Item]:
        """Every interruption/rebalance replacement on record (the sweeper reads them)."""
        return list(query(self.table, IndexName=STATUS_INDEX,
                          KeyConditionExpression=Key(INDEX_PARTITION_KEY).eq(REPLACEMENTS_INDEX_PK)))
