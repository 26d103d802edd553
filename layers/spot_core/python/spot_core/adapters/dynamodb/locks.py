"""Per-instance locks in the table: conditional writes, 100 to a transaction.

The common case (no other migration holds any of the instances) costs one
TransactWriteItems per 100 instances; a transaction cancelled by a held lock is written
again without the refused instances.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key

from ...domain.batching import chunks
from ...domain.errors import TransientAwsError
from ...domain.locks import InstanceLock
from ..aws import error_code, transient_errors
from .schema import (
    INDEX_PARTITION_KEY,
    INDEX_SORT_KEY,
    LOCK,
    PARTITION_KEY,
    SORT_KEY,
    STATUS_INDEX,
    TTL_ATTRIBUTE,
    instance_pk,
    locks_index_pk,
)
from .table import batch_get, query

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

TRANSACTION_ITEMS = 100  # TransactWriteItems' limit
FREE = ("attribute_not_exists(pk) OR migration_id = :m OR (attribute_not_exists(migration_id) AND "
        "(attribute_not_exists(cooldown_until) OR cooldown_until <= :now))")


def _key(instance_id: str) -> dict[str, str]:
    return {PARTITION_KEY: instance_pk(instance_id), SORT_KEY: LOCK}


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _lock(item: dict[str, Any]) -> InstanceLock:
    until = item.get("cooldown_until")
    return InstanceLock(instance_id=item["instance_id"], migration_id=item.get("migration_id"),
                        cooldown_until=datetime.fromtimestamp(until, UTC) if until else None,
                        cooldown_after=item.get("cooldown_after"))


class DynamoInstanceLocks:
    def __init__(self, table: Table):
        self.table = table

    def acquire(self, migration_id: str, instance_ids: list[str], now: datetime,
                attempts: int = 3) -> dict[str, InstanceLock]:
        """Hold every instance that is free; the others -> the lock that keeps them. A lock freed
        between the refusal and its read is tried again."""
        refused: set[str] = set()
        for batch in chunks(sorted(set(instance_ids)), TRANSACTION_ITEMS):
            while batch:
                failed = self._transact(migration_id, batch, now)
                if not failed:
                    break
                refused.update(failed)
                batch = [i for i in batch if i not in failed]
        holding = {i: lock for i, lock in self.locks(sorted(refused)).items() if lock.refusal(migration_id, now)}
        freed = sorted(refused - holding.keys())
        if freed and attempts > 1:
            holding.update(self.acquire(migration_id, freed, now, attempts - 1))
        return holding

    def take_over(self, migration_id: str, instance_id: str, ended_holder: str, now: datetime) -> bool:
        """Hold an instance whose holder ended without releasing it (checked by the caller)."""
        try:
            with transient_errors():
                self.table.put_item(Item=self._held(migration_id, instance_id, now),
                                    ConditionExpression="migration_id = :old",
                                    ExpressionAttributeValues={":old": ended_holder})
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def locks(self, instance_ids: Iterable[str]) -> dict[str, InstanceLock]:
        keys = [_key(i) for i in dict.fromkeys(instance_ids)]
        return {item["instance_id"]: _lock(item) for item in batch_get(self.table, keys, consistent=True)}

    def held(self, migration_id: str) -> list[str]:
        return [item["instance_id"] for item in query(
            self.table, IndexName=STATUS_INDEX, KeyConditionExpression=Key(INDEX_PARTITION_KEY).eq(
                locks_index_pk(migration_id)))]

    def release(self, migration_id: str, cooldown_until: datetime | None = None, cooled: Iterable[str] = ()) -> int:
        """Give back every lock the migration holds; the `cooled` instances cool down until `cooldown_until`."""
        cooled = set(cooled) if cooldown_until else set()
        released = 0
        for instance_id in self.held(migration_id):
            if instance_id in cooled and cooldown_until:
                item = {**_key(instance_id), "instance_id": instance_id, "cooldown_until": _epoch(cooldown_until),
                        "cooldown_after": migration_id, TTL_ATTRIBUTE: _epoch(cooldown_until)}
                self._put_if_held(item, migration_id)
            else:
                self._delete_if_held(instance_id, migration_id)
            released += 1
        return released

    # --- writes ---------------------------------------------------------------------------------
    @staticmethod
    def _held(migration_id: str, instance_id: str, now: datetime) -> dict[str, Any]:
        return {**_key(instance_id), "instance_id": instance_id, "migration_id": migration_id,
                "held_since": _epoch(now), INDEX_PARTITION_KEY: locks_index_pk(migration_id),
                INDEX_SORT_KEY: instance_id}

    def _transact(self, migration_id: str, batch: list[str], now: datetime) -> set[str]:
        """One transaction; the instances whose condition failed when it was cancelled."""
        values = {":m": migration_id, ":now": _epoch(now)}
        items: list[Any] = [{"Put": {"TableName": self.table.name, "Item": self._held(migration_id, i, now),
                                     "ConditionExpression": FREE, "ExpressionAttributeValues": values}}
                            for i in batch]
        try:
            with transient_errors():
                self.table.meta.client.transact_write_items(TransactItems=items)
        except Exception as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
            failed = {i for i, r in zip(batch, reasons, strict=False) if r.get("Code") == "ConditionalCheckFailed"}
            if not failed:  # cancelled by a concurrent transaction on the same items: retried with backoff
                raise TransientAwsError(f"lock transaction cancelled: {reasons}") from exc
            return failed
        return set()

    def _put_if_held(self, item: dict[str, Any], migration_id: str) -> None:
        try:
            with transient_errors():
                self.table.put_item(Item=item, ConditionExpression="migration_id = :m",
                                    ExpressionAttributeValues={":m": migration_id})
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def _delete_if_held(self, instance_id: str, migration_id: str) -> None:
        try:
            with transient_errors():
                self.table.delete_item(Key=_key(instance_id), ConditionExpression="migration_id = :m",
                                       ExpressionAttributeValues={":m": migration_id})
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
