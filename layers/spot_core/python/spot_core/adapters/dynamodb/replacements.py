"""The one replacement of an interrupted (or rebalanced) instance: a conditional write per
instance, so only the first of concurrent or repeated events launches it (the refused write
returns the claim that exists: no read before the write); a conditional take-over, so only
one event resumes a claim whose holder died.

The handling of one event writes three times, each write one call: the claim (an update that
returns the launch profile the product wrote there when it launched the instance: what the
handling needs to know); then, the moment RunInstances answered, the replacement onto the claim
together with its registry item, its own launch profile and the interrupted pool (one
transaction); then the end of the takeover together with the migration record that follows
the replacement and the migration's realised savings (one transaction)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import TypeDeserializer

from ...domain.interruptions import HOLDER_EXPIRY, UNCLAIMED, UNFINISHED, LaunchProfile, RecordFollow
from ..aws import error_code, transient_errors
from .migrations import drift_update, now_iso
from .pools import pool_item
from .registry import profile_item, put_profile, registry_item
from .schema import (
    INDEX_PARTITION_KEY,
    INDEX_SORT_KEY,
    PARTITION_KEY,
    RECORD_PREFIX,
    REPLACEMENTS_INDEX_PK,
    SORT_KEY,
    STATUS_INDEX,
    TTL_ATTRIBUTE,
    claim_key,
    migration_pk,
)
from .table import Item, batch_get, from_dynamo, is_condition_failure, query, set_fields, to_dynamo

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


PoolKey = tuple[str, str]
_DESERIALIZER = TypeDeserializer()


_key = claim_key


def _claim(item: Item | None) -> Item | None:
    """A claim as stored: None for an item that holds only a launch profile."""
    return item if item and item.get("status") != UNCLAIMED else None


def _returned(raw: Mapping[str, Any] | None) -> Item | None:
    """An item DynamoDB returned with an error (ReturnValuesOnConditionCheckFailure), in its wire format."""
    return from_dynamo({k: _DESERIALIZER.deserialize(v) for k, v in raw.items()}) if raw else None


def _sets(fields: Mapping[str, Any], prefix: str = "f") -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """SET clauses, names and values for `fields` (names as placeholders: some are reserved words)."""
    clauses = [f"#{prefix}{i} = :{prefix}{i}" for i in range(len(fields))]
    names = {f"#{prefix}{i}": k for i, k in enumerate(fields)}
    values = {f":{prefix}{i}": to_dynamo(v) for i, v in enumerate(fields.values())}
    return clauses, names, values


def _update(table: str, key: Mapping[str, str], fields: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    clauses, names, values = _sets(fields)
    return {"Update": {"TableName": table, "Key": dict(key), "UpdateExpression": "SET " + ", ".join(clauses),
                       "ExpressionAttributeNames": names, "ExpressionAttributeValues": values, **extra}}


def _refused(exc: BaseException, first: int) -> bool:
    """A cancelled transaction whose items from `first` on failed their condition."""
    reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
    return error_code(exc) == "TransactionCanceledException" and any(
        r.get("Code") == "ConditionalCheckFailed" for r in reasons[first:])


def _follow(table: str, follow: RecordFollow) -> list[dict[str, Any]]:
    """The record's replacement fields and one more attempt note, if it still names the interrupted
    instance; the drift of the migration's realised savings, by difference."""
    clauses, names, values = _sets({**follow.fields, "updated_at": now_iso()})
    record = {"Update": {
        "TableName": table, "Key": {PARTITION_KEY: migration_pk(follow.migration_id),
                                    SORT_KEY: f"{RECORD_PREFIX}{follow.original_id}"},
        "UpdateExpression": "SET " + ", ".join([*clauses, "#att = list_append(if_not_exists(#att, :none), :note)"]),
        "ConditionExpression": "#rid = :interrupted",
        "ExpressionAttributeNames": {**names, "#att": "attempts", "#rid": "replacement_id"},
        "ExpressionAttributeValues": {**values, ":none": [], ":note": [follow.note],
                                      ":interrupted": follow.interrupted_id},
    }}
    if not follow.monthly_spot and not follow.fallbacks:
        return [record]
    return [record, drift_update(table, follow.migration_id, follow.monthly_spot, follow.fallbacks)]


class DynamoReplacementClaims:
    def __init__(self, table: Table):
        self.table = table

    def claim(self, instance_id: str, event_id: str, **fields: Any) -> bool:
        """The one replacement of an instance: only the first claimant launches it. A claim
        whose holder died is never claimed again, it is taken over (take_over) and resumed."""
        return self.claim_or_get(instance_id, event_id, **fields)[0]

    def claim_or_get(self, instance_id: str, event_id: str, **fields: Any) -> tuple[bool, Item]:
        """Claim the instance's replacement (True, and the claim with the launch profile it
        found), or not (False, and the claim that exists): one conditional update, which returns
        what was there either way."""
        for _ in range(2):  # a claim released between the refused write and its read: claim again
            now = int(time.time())
            written = {**{k: v for k, v in fields.items() if v is not None}, "instance_id": instance_id,
                       "status": "launching", "event_id": event_id, "claimed_at": now,
                       INDEX_PARTITION_KEY: REPLACEMENTS_INDEX_PK, INDEX_SORT_KEY: f"{now}#{instance_id}"}
            clauses, names, values = _sets(written)
            try:
                with transient_errors():
                    found = self.table.update_item(
                        Key=_key(instance_id), UpdateExpression=f"SET {', '.join(clauses)} REMOVE #ttl",
                        ConditionExpression="attribute_not_exists(#pk) OR #status = :unclaimed",
                        ExpressionAttributeNames={**names, "#ttl": TTL_ATTRIBUTE, "#pk": PARTITION_KEY,
                                                  "#status": "status"},
                        ExpressionAttributeValues={**values, ":unclaimed": UNCLAIMED},
                        ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    ).get("Attributes")
            except Exception as exc:
                if not is_condition_failure(self.table, exc):
                    raise
                existing = _returned(getattr(exc, "response", {}).get("Item")) or self.get(instance_id)
                if existing:
                    return False, existing
                continue
            return True, {**(from_dynamo(found) if found else {}), **written}
        existing = self.get(instance_id)
        return (False, existing) if existing else (True, {})

    def record_launch(self, instance_id: str, owner: str, interrupted_pool: PoolKey | None = None,
                      profile: LaunchProfile | None = None, **fields: Any) -> None:
        """The replacement onto the claim, its registry item (`owner`), its launch `profile` and
        the interrupted pool, at once (the profile left out where the replacement is claimed
        already: it was interrupted in the meantime)."""
        replacement = fields["replacement_id"]
        items = [_update(self.table.name, _key(instance_id), fields),
                 {"Put": {"TableName": self.table.name, "Item": registry_item(replacement, owner)}}]
        if interrupted_pool:
            items.append({"Put": {"TableName": self.table.name, "Item": pool_item(*interrupted_pool, instance_id)}})
        if profile is None:
            self._transact(items)
            return
        try:
            self._transact([*items, put_profile(self.table.name, replacement, profile)])
        except Exception as exc:
            if not _refused(exc, len(items)):
                raise
            self._transact(items)

    def finish(self, instance_id: str, follow: RecordFollow | None = None, interrupted_pool: PoolKey | None = None,
               **fields: Any) -> bool:
        """The end of the takeover on the claim, with the migration record following the
        replacement (and the interrupted pool, if not remembered yet), at once. A record that no
        longer names the interrupted instance (a rollback or another handling changed it
        meanwhile) is left as it is: the claim is finished alone. Whether the record followed."""
        base = [_update(self.table.name, _key(instance_id), fields)]
        if interrupted_pool:
            base.append({"Put": {"TableName": self.table.name, "Item": pool_item(*interrupted_pool, instance_id)}})
        extra = _follow(self.table.name, follow) if follow is not None else []
        try:
            self._transact(base + extra)
        except Exception as exc:
            if not extra or not _refused(exc, len(base)):
                raise
            self._transact(base)
            return False
        return bool(extra)

    def _transact(self, items: list[Any]) -> None:
        with transient_errors():
            self.table.meta.client.transact_write_items(TransactItems=items)

    def abandon(self, instance_id: str, event_id: str) -> None:
        """The holder `event_id` gave up on an error: its own retry may resume the claim at once
        (other events still wait until the claim is stale)."""
        try:
            with transient_errors():
                self.table.update_item(
                    Key=_key(instance_id), UpdateExpression="SET #h = :gone",
                    ConditionExpression=Attr("event_id").eq(event_id) & Attr("status").is_in(list(UNFINISHED)),
                    ExpressionAttributeNames={"#h": HOLDER_EXPIRY}, ExpressionAttributeValues={":gone": 0},
                )
        except Exception as exc:
            if not is_condition_failure(self.table, exc):
                raise

    def get_many(self, instance_ids: Iterable[str]) -> dict[str, Item]:
        """instance id -> its claim, for those that have one (one BatchGetItem per 100)."""
        keys = [_key(iid) for iid in dict.fromkeys(instance_ids)]
        return {item["instance_id"]: item for item in batch_get(self.table, keys, consistent=True) if _claim(item)}

    def get(self, instance_id: str) -> Item | None:
        """The claim, whatever its status."""
        with transient_errors():
            item = self.table.get_item(Key=_key(instance_id), ConsistentRead=True).get("Item")
        return _claim(from_dynamo(item) if item else None)

    def take_over(self, instance_id: str, held: Mapping[str, Any], event_id: str, **fields: Any) -> bool:
        """`event_id` holds the unfinished claim from now on (with `fields`), if it is still as
        `held` read it (same holder, same claim time): of two events resuming it at once, one does."""
        clauses, names, values = _sets(fields)
        extra: Any = {"ExpressionAttributeNames": names} if names else {}
        try:
            with transient_errors():
                self.table.update_item(
                    Key=_key(instance_id), UpdateExpression="SET " + ", ".join(
                        ["event_id = :event", "claimed_at = :now", *clauses]),
                    ConditionExpression=Attr("status").is_in(list(UNFINISHED))
                    & Attr("event_id").eq(held.get("event_id")) & Attr("claimed_at").eq(held.get("claimed_at")),
                    ExpressionAttributeValues={":event": event_id, ":now": int(time.time()), **values}, **extra,
                )
        except Exception as exc:
            if is_condition_failure(self.table, exc):
                return False
            raise
        return True

    def release(self, instance_id: str) -> None:
        """Give a claim back when launching failed, so a retry can do the work (the launch profile
        it held goes back in place, unless another event claimed the instance meanwhile); a
        claim that records a replacement already is kept (nothing happens)."""
        try:
            with transient_errors():
                old = self.table.delete_item(Key=_key(instance_id), ConditionExpression=Attr("status").eq("launching"),
                                             ReturnValues="ALL_OLD").get("Attributes")
            profile = from_dynamo(old or {}).get("profile")
            if profile:
                with transient_errors():
                    self.table.put_item(Item=profile_item(instance_id, LaunchProfile.model_validate(profile)),
                                        ConditionExpression=Attr(PARTITION_KEY).not_exists())
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
