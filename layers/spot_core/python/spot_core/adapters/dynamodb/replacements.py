"""The one replacement of an interrupted (or rebalanced) instance: a conditional write per
instance, so only the first of concurrent or repeated events launches it; a conditional
take-over, so only one event resumes a claim whose holder died."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from ...domain.interruptions import UNFINISHED
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
from .table import Item, from_dynamo, is_condition_failure, query, set_fields, to_dynamo

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


def _key(instance_id: str) -> dict[str, str]:
    return {PARTITION_KEY: instance_pk(instance_id), SORT_KEY: REPLACEMENT}


class DynamoReplacementClaims:
    def __init__(self, table: Table):
        self.table = table

    def claim(self, instance_id: str, event_id: str, **fields: Any) -> bool:
        """The one replacement of an instance: only the first claimant launches it. A claim
        whose holder died is never claimed again, it is taken over (take_over) and resumed."""
        now = int(time.time())
        try:
            with transient_errors():
                self.table.put_item(
                    Item={**to_dynamo(dict(fields)), **_key(instance_id), "instance_id": instance_id,
                          "status": "launching", "event_id": event_id, "claimed_at": now,
                          INDEX_PARTITION_KEY: REPLACEMENTS_INDEX_PK, INDEX_SORT_KEY: f"{now}#{instance_id}"},
                    ConditionExpression=Attr(PARTITION_KEY).not_exists(),
                )
        except Exception as exc:
            if is_condition_failure(self.table, exc):
                return False
            raise
        return True

    def get(self, instance_id: str) -> Item | None:
        """The claim, whatever its status."""
        with transient_errors():
            item = self.table.get_item(Key=_key(instance_id), ConsistentRead=True).get("Item")
        return from_dynamo(item) if item else None

    def take_over(self, instance_id: str, held: Mapping[str, Any], event_id: str) -> bool:
        """`event_id` holds the unfinished claim from now on, if it is still as `held` read it
        (same holder, same claim time): of two events resuming it at once, one does."""
        try:
            with transient_errors():
                self.table.update_item(
                    Key=_key(instance_id), UpdateExpression="SET event_id = :event, claimed_at = :now",
                    ConditionExpression=Attr("status").is_in(list(UNFINISHED))
                    & Attr("event_id").eq(held.get("event_id")) & Attr("claimed_at").eq(held.get("claimed_at")),
                    ExpressionAttributeValues={":event": event_id, ":now": int(time.time())},
                )
        except Exception as exc:
            if is_condition_failure(self.table, exc):
                return False
            raise
        return True

    def release(self, instance_id: str) -> None:
        """Give a claim back when launching failed, so a retry can do the work; a claim that
        records a replacement already is kept (nothing happens)."""
        try:
            with transient_errors():
                self.table.delete_item(Key=_key(instance_id), ConditionExpression=Attr("status").eq("launching"))
        except Exception as exc:
            if not is_condition_failure(self.table, exc):
                raise

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
