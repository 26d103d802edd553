"""DynamoDB persistence of migrations: one item per migration, one per instance of the plan,
one per agent verdict, and the approval task token in an item of its own.

Keys: pk = MIGRATION#<id>; sk = META | INSTANCE#<instance id> | VERDICT#<agent> | APPROVAL_TOKEN.
The META item is also indexed by the `by_status` GSI (gsi1pk = MIGRATION, gsi1sk = created).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from .aws import from_dynamo, to_dynamo, transient_errors
from .errors import ApprovalNotPending, MigrationNotFound
from .models import AgentVerdict, InstanceRecord


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _pk(migration_id: str) -> str:
    return f"MIGRATION#{migration_id}"


class MigrationStore:
    def __init__(self, table: Any):
        self.table = table

    # --- the migration item -------------------------------------------------
    def create(self, migration_id: str, request: dict, status: str = "analysing") -> None:
        """Create the migration item; a retried analysis may rewrite one still analysing."""
        created = now_iso()
        with transient_errors():
            try:
                self.table.put_item(
                    Item=to_dynamo({
                        "pk": _pk(migration_id), "sk": "META", "migration_id": migration_id,
                        "status": status, "request": request, "created_at": created, "updated_at": created,
                        "gsi1pk": "MIGRATION", "gsi1sk": f"{created}#{migration_id}",
                    }),
                    ConditionExpression=Attr("pk").not_exists() | Attr("status").eq("analysing"),
                )
            except self.table.meta.client.exceptions.ConditionalCheckFailedException:
                from .errors import InvalidMigrationRequest

                raise InvalidMigrationRequest(f"migration id {migration_id!r} was already used") from None

    def get(self, migration_id: str) -> dict:
        with transient_errors():
            item = self.table.get_item(Key={"pk": _pk(migration_id), "sk": "META"}, ConsistentRead=True).get("Item")
        if not item:
            raise MigrationNotFound(f"no migration {migration_id!r}")
        return from_dynamo(item)

    def update(self, migration_id: str, **fields: Any) -> None:
        """Set top-level attributes of the migration item (it must exist)."""
        fields["updated_at"] = now_iso()
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": to_dynamo(v) for i, v in enumerate(fields.values())}
        expr = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        with transient_errors():
            try:
                self.table.update_item(
                    Key={"pk": _pk(migration_id), "sk": "META"}, UpdateExpression=expr,
                    ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                    ConditionExpression=Attr("pk").exists(),
                )
            except self.table.meta.client.exceptions.ConditionalCheckFailedException:
                raise MigrationNotFound(f"no migration {migration_id!r}") from None

    def set_wave_result(self, migration_id: str, wave: int, key: str, result: dict) -> None:
        """Store one wave's migration or gate result under wave_results.<wave>.<key>."""
        item = self.get(migration_id)
        results = item.get("wave_results") or {}
        results.setdefault(str(wave), {})[key] = result
        self.update(migration_id, wave_results=results)

    # --- instance records ----------------------------------------------------
    def put_records(self, migration_id: str, records: Iterable[InstanceRecord]) -> int:
        count = 0
        with transient_errors(), self.table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
            for record in records:
                batch.put_item(Item=self._record_item(migration_id, record))
                count += 1
        return count

    def put_record(self, migration_id: str, record: InstanceRecord) -> None:
        record.updated_at = now_iso()
        with transient_errors():
            self.table.put_item(Item=self._record_item(migration_id, record))

    @staticmethod
    def _record_item(migration_id: str, record: InstanceRecord) -> dict:
        return to_dynamo({"pk": _pk(migration_id), "sk": f"INSTANCE#{record.instance_id}", **record.model_dump()})

    def records(self, migration_id: str) -> list[InstanceRecord]:
        return [InstanceRecord.model_validate(i) for i in self._query(migration_id, "INSTANCE#")]

    def _query(self, migration_id: str, prefix: str) -> Iterable[dict]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(_pk(migration_id)) & Key("sk").begins_with(prefix),
        }
        while True:
            with transient_errors():
                page = self.table.query(**kwargs)
            for item in page.get("Items", []):
                item = from_dynamo(item)
                item.pop("pk", None)
                item.pop("sk", None)
                yield item
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- agent verdicts --------------------------------------------------------
    def put_verdict(self, migration_id: str, verdict: AgentVerdict) -> None:
        with transient_errors():
            self.table.put_item(Item=to_dynamo({"pk": _pk(migration_id), "sk": f"VERDICT#{verdict.agent}", **verdict.model_dump()}))

    def verdicts(self, migration_id: str) -> list[AgentVerdict]:
        return [AgentVerdict.model_validate(i) for i in self._query(migration_id, "VERDICT#")]

    # --- pool memory: recent Spot interruptions per (instance type, AZ) ----------------
    def record_interruption(self, instance_type: str, availability_zone: str, instance_id: str, ttl_seconds: int = 7 * 86400) -> None:
        when = now_iso()
        with transient_errors():
            self.table.put_item(Item={
                "pk": "POOLS", "sk": f"{instance_type}#{availability_zone}#{when}#{instance_id}",
                "instance_type": instance_type, "availability_zone": availability_zone, "instance_id": instance_id,
                "interrupted_at": when, "expires_at": int(time.time()) + ttl_seconds,
            })

    def recent_interruptions(self) -> set[tuple[str, str]]:
        """Pools interrupted within their memory window (expired items may linger until TTL
        deletes them, so the expiry is checked here too)."""
        pools: set[tuple[str, str]] = set()
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq("POOLS")}
        now = int(time.time())
        while True:
            with transient_errors():
                page = self.table.query(**kwargs)
            for item in page.get("Items", []):
                if int(item.get("expires_at", 0)) > now:
                    pools.add((item["instance_type"], item["availability_zone"]))
            if "LastEvaluatedKey" not in page:
                return pools
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- the approval task token (never leaves the table but to Step Functions) ---
    def put_token(self, migration_id: str, token: str, expires_at: int) -> None:
        with transient_errors():
            self.table.put_item(Item={
                "pk": _pk(migration_id), "sk": "APPROVAL_TOKEN", "token": token,
                "created_at": now_iso(), "expires_at": expires_at,
            })

    def take_token(self, migration_id: str) -> str:
        """Remove and return the pending token; a second decision finds none."""
        with transient_errors():
            try:
                old = self.table.delete_item(
                    Key={"pk": _pk(migration_id), "sk": "APPROVAL_TOKEN"},
                    ConditionExpression=Attr("pk").exists(), ReturnValues="ALL_OLD",
                )
            except self.table.meta.client.exceptions.ConditionalCheckFailedException:
                raise ApprovalNotPending(f"migration {migration_id!r} is not waiting for a decision") from None
        return old["Attributes"]["token"]
