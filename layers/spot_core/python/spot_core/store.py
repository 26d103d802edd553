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
from .errors import ApprovalNotPending, InvalidMigrationRequest, MigrationNotFound
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
        """Create the migration item. A retried analysis (same request, nothing changed in
        the fleet yet) may start again; another migration's id is refused."""
        created = now_iso()
        with transient_errors():
            try:
                self.table.put_item(
                    Item=to_dynamo({
                        "pk": _pk(migration_id), "sk": "META", "migration_id": migration_id,
                        "status": status, "request": request, "created_at": created, "updated_at": created,
                        "gsi1pk": "MIGRATION", "gsi1sk": f"{created}#{migration_id}",
                    }),
                    ConditionExpression=Attr("pk").not_exists() | (
                        Attr("status").is_in(["analysing", "planned"]) & Attr("request").eq(to_dynamo(request))),
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

    def records_page(self, migration_id: str, limit: int, start_key: dict | None = None) -> tuple[list[InstanceRecord], dict | None]:
        """One page of the plan, in instance-id order, and the key to continue from."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(_pk(migration_id)) & Key("sk").begins_with("INSTANCE#"), "Limit": limit,
        }
        if start_key:
            # DynamoDB refuses a start key outside the query (moto does not): refuse it here, the same everywhere.
            if start_key.get("pk") != _pk(migration_id) or not str(start_key.get("sk", "")).startswith("INSTANCE#"):
                raise InvalidMigrationRequest("next_token is not valid")
            kwargs["ExclusiveStartKey"] = start_key
        with transient_errors():
            page = self.table.query(**kwargs)
        records = [InstanceRecord.model_validate(from_dynamo(i)) for i in page.get("Items", [])]
        return records, page.get("LastEvaluatedKey")

    # --- listing migrations --------------------------------------------------------
    def migrations_page(self, limit: int, start_key: dict | None = None, status: str | None = None) -> tuple[list[dict], dict | None]:
        """Migration items, newest first, optionally only those with `status`. A page holds at
        most `limit` items (fewer when the status filter drops some) and the key to go on."""
        kwargs: dict[str, Any] = {
            "IndexName": "by_status", "KeyConditionExpression": Key("gsi1pk").eq("MIGRATION"),
            "ScanIndexForward": False, "Limit": limit,
        }
        if status:
            kwargs["FilterExpression"] = Attr("status").eq(status)
        if start_key:
            if start_key.get("gsi1pk") != "MIGRATION" or not str(start_key.get("pk", "")).startswith("MIGRATION#"):
                raise InvalidMigrationRequest("next_token is not valid")
            kwargs["ExclusiveStartKey"] = start_key
        with transient_errors():
            page = self.table.query(**kwargs)
        return [from_dynamo(i) for i in page.get("Items", [])], page.get("LastEvaluatedKey")

    def get_many(self, migration_ids: list[str]) -> dict[str, dict]:
        """migration id -> migration item, for the ids that have one."""
        keys = [{"pk": _pk(mid), "sk": "META"} for mid in dict.fromkeys(migration_ids)]
        return {item["migration_id"]: item for item in self._batch_get(keys, consistent=False)}

    def _batch_get(self, keys: list[dict], consistent: bool) -> list[dict]:
        """The items of `keys` that exist, 100 keys a BatchGetItem call, unprocessed keys retried."""
        found: list[dict] = []
        client = self.table.meta.client
        for i in range(0, len(keys), 100):
            request = {self.table.name: {"Keys": keys[i:i + 100], "ConsistentRead": consistent}}
            while request:
                with transient_errors():
                    page = client.batch_get_item(RequestItems=request)
                found += [from_dynamo(item) for item in page["Responses"].get(self.table.name, [])]
                request = page.get("UnprocessedKeys") or None
        return found

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

    # --- interruption handling: claims, replacements, the registry of managed instances ----
    CLAIM_EXPIRY = 300  # a claim whose handler died is taken over after this many seconds

    def claim(self, sk: str, instance_id: str) -> bool:
        """Claim (instance, key) for this invocation; False if done or in progress elsewhere."""
        now = int(time.time())
        with transient_errors():
            try:
                self.table.put_item(
                    Item={"pk": f"INSTANCE#{instance_id}", "sk": sk, "status": "in_progress", "claimed_at": now,
                          "expires_at": now + 14 * 86400},
                    ConditionExpression=Attr("pk").not_exists() | (Attr("status").eq("in_progress") & Attr("claimed_at").lt(now - self.CLAIM_EXPIRY)),
                )
                return True
            except self.table.meta.client.exceptions.ConditionalCheckFailedException:
                return False

    def release(self, sk: str, instance_id: str) -> None:
        with transient_errors():
            self.table.delete_item(Key={"pk": f"INSTANCE#{instance_id}", "sk": sk})

    def finish_claim(self, sk: str, instance_id: str, outcome: str) -> None:
        with transient_errors():
            self.table.update_item(Key={"pk": f"INSTANCE#{instance_id}", "sk": sk},
                                   UpdateExpression="SET #s = :s, outcome = :o",
                                   ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": "done", ":o": outcome})

    def claim_replacement(self, instance_id: str, event_id: str) -> bool:
        """The one replacement of an instance: only the first claimant launches it."""
        now = int(time.time())
        with transient_errors():
            try:
                self.table.put_item(
                    Item={"pk": f"INSTANCE#{instance_id}", "sk": "REPLACEMENT", "instance_id": instance_id,
                          "status": "launching", "event_id": event_id, "claimed_at": now,
                          "gsi1pk": "REPLACEMENT", "gsi1sk": f"{now}#{instance_id}"},
                    ConditionExpression=Attr("pk").not_exists() | (Attr("status").eq("launching") & Attr("claimed_at").lt(now - self.CLAIM_EXPIRY)),
                )
                return True
            except self.table.meta.client.exceptions.ConditionalCheckFailedException:
                return False

    def release_replacement(self, instance_id: str) -> None:
        with transient_errors():
            self.table.delete_item(Key={"pk": f"INSTANCE#{instance_id}", "sk": "REPLACEMENT"},
                                   ConditionExpression=Attr("status").eq("launching"))

    def replacement_for(self, instance_id: str) -> dict | None:
        with transient_errors():
            item = self.table.get_item(Key={"pk": f"INSTANCE#{instance_id}", "sk": "REPLACEMENT"}, ConsistentRead=True).get("Item")
        return from_dynamo(item) if item and item.get("replacement_id") else None

    def update_replacement(self, instance_id: str, **fields: Any) -> None:
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": to_dynamo(v) for i, v in enumerate(fields.values())}
        with transient_errors():
            self.table.update_item(
                Key={"pk": f"INSTANCE#{instance_id}", "sk": "REPLACEMENT"},
                UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            )

    def replacements(self) -> list[dict]:
        """Every interruption/rebalance replacement on record (the sweeper reads them)."""
        out, kwargs = [], {"IndexName": "by_status", "KeyConditionExpression": Key("gsi1pk").eq("REPLACEMENT")}
        while True:
            with transient_errors():
                page = self.table.query(**kwargs)
            out += [from_dynamo(i) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def register_managed(self, instance_id: str, owner: str, status: str = "active") -> None:
        """The registry of instances this product launched, for the orphan sweeper."""
        with transient_errors():
            self.table.put_item(Item={"pk": f"MANAGED#{instance_id}", "sk": "META", "instance_id": instance_id,
                                      "owner": owner, "status": status, "updated_at": now_iso()})

    def managed_status(self, instance_ids: list[str]) -> dict[str, dict]:
        """instance id -> registry item."""
        keys = [{"pk": f"MANAGED#{iid}", "sk": "META"} for iid in dict.fromkeys(instance_ids)]
        return {item["instance_id"]: item for item in self._batch_get(keys, consistent=True)}

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
