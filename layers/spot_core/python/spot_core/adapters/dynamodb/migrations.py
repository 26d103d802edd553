"""The migration item (request, status, summary, waves, progress, outcome) and the plan
(one record per instance, one verdict per agent)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from ...domain.asg import GroupRecord
from ...domain.clock import iso, utc_now
from ...domain.errors import InvalidMigrationRequest, MigrationNotFound
from ...domain.outcomes import DRIFT_FALLBACKS, DRIFT_MONTHLY_SPOT
from ...domain.plan import AgentVerdict, InstanceRecord, unfinished
from ..aws import transient_errors
from .schema import (
    GROUP_PREFIX,
    INDEX_PARTITION_KEY,
    INDEX_SORT_KEY,
    META,
    MIGRATIONS_INDEX_PK,
    PARTITION_KEY,
    RECORD_PREFIX,
    SORT_KEY,
    STATUS_INDEX,
    VERDICT_PREFIX,
    migration_pk,
    unfinished_index_pk,
)
from .table import Item, batch_get, from_dynamo, is_condition_failure, query, query_page, set_fields, to_dynamo

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from ...ports import Page

RESTARTABLE = ("analysing", "planned")  # a retried analysis may start again while nothing has changed yet


def now_iso() -> str:
    return iso(utc_now())


def drift_update(table: str, migration_id: str, monthly_spot: float, fallbacks: int) -> dict[str, Any]:
    """A transaction item: the migration's realised savings drift by a record's change (DynamoDB
    ADD, so concurrent changes add up without reading the migration)."""
    return {"Update": {
        "TableName": table, "Key": _key(migration_id),
        "UpdateExpression": "ADD #spot :spot, #fallbacks :fallbacks", "ConditionExpression": "attribute_exists(#pk)",
        "ExpressionAttributeNames": {"#spot": DRIFT_MONTHLY_SPOT, "#fallbacks": DRIFT_FALLBACKS, "#pk": PARTITION_KEY},
        "ExpressionAttributeValues": {":spot": to_dynamo(monthly_spot), ":fallbacks": fallbacks},
    }}


def _key(migration_id: str, sk: str = META) -> dict[str, str]:
    return {PARTITION_KEY: migration_pk(migration_id), SORT_KEY: sk}


def _check_start_key(start_key: dict[str, Any], valid: bool) -> dict[str, Any]:
    """DynamoDB refuses a start key outside the query (moto does not): refuse it here, the same everywhere."""
    if not valid:
        raise InvalidMigrationRequest("next_token is not valid")
    return start_key


class DynamoMigrations:
    def __init__(self, table: Table):
        self.table = table

    def create(self, migration_id: str, request: dict[str, Any], status: str = "analysing") -> None:
        """Create the migration item. A retried analysis (same request, nothing changed in
        the fleet yet) may start again; another migration's id is refused."""
        created = now_iso()
        item = {**_key(migration_id), "migration_id": migration_id, "status": status, "request": request,
                "created_at": created, "updated_at": created,
                INDEX_PARTITION_KEY: MIGRATIONS_INDEX_PK, INDEX_SORT_KEY: f"{created}#{migration_id}"}
        with transient_errors():
            try:
                self.table.put_item(
                    Item=to_dynamo(item),
                    ConditionExpression=Attr(PARTITION_KEY).not_exists() | (
                        Attr("status").is_in(list(RESTARTABLE)) & Attr("request").eq(to_dynamo(request))),
                )
            except Exception as exc:
                if is_condition_failure(self.table, exc):
                    raise InvalidMigrationRequest(f"migration id {migration_id!r} was already used") from None
                raise

    def get(self, migration_id: str) -> Item:
        with transient_errors():
            item = self.table.get_item(Key=_key(migration_id), ConsistentRead=True).get("Item")
        if not item:
            raise MigrationNotFound(f"no migration {migration_id!r}")
        found: Item = from_dynamo(item)
        return found

    def update(self, migration_id: str, **fields: Any) -> None:
        """Set top-level attributes of the migration item (it must exist)."""
        try:
            set_fields(self.table, _key(migration_id), {**fields, "updated_at": now_iso()},
                       ConditionExpression=Attr(PARTITION_KEY).exists())
        except Exception as exc:
            if is_condition_failure(self.table, exc):
                raise MigrationNotFound(f"no migration {migration_id!r}") from None
            raise

    def set_wave_result(self, migration_id: str, wave: int, key: str, result: dict[str, Any]) -> None:
        """Store one wave's migration or gate result under wave_results.<wave>.<key>."""
        results = self.get(migration_id).get("wave_results") or {}
        results.setdefault(str(wave), {})[key] = result
        self.update(migration_id, wave_results=results)

    def page(self, limit: int, start_key: dict[str, Any] | None = None, status: str | None = None) -> Page[Item]:
        """Migration items, newest first, optionally only those with `status`. A page holds at
        most `limit` items (fewer when the status filter drops some) and the key to go on."""
        kwargs: dict[str, Any] = {
            "IndexName": STATUS_INDEX, "KeyConditionExpression": Key(INDEX_PARTITION_KEY).eq(MIGRATIONS_INDEX_PK),
            "ScanIndexForward": False, "Limit": limit,
        }
        if status:
            kwargs["FilterExpression"] = Attr("status").eq(status)
        if start_key:
            ours = start_key.get(INDEX_PARTITION_KEY) == MIGRATIONS_INDEX_PK \
                and str(start_key.get(PARTITION_KEY, "")).startswith(migration_pk(""))
            kwargs["ExclusiveStartKey"] = _check_start_key(start_key, ours)
        return query_page(self.table, **kwargs)

    def get_many(self, migration_ids: list[str], consistent: bool = False) -> dict[str, Item]:
        """migration id -> migration item, for the ids that have one."""
        keys = [_key(mid) for mid in dict.fromkeys(migration_ids)]
        return {item["migration_id"]: item for item in batch_get(self.table, keys, consistent=consistent)}


def _in_flight(record: InstanceRecord) -> bool:
    return record.eligible and unfinished(record)


class DynamoPlans:
    def __init__(self, table: Table):
        self.table = table

    def put_records(self, migration_id: str, records: Iterable[InstanceRecord]) -> int:
        count = 0
        with transient_errors(), self.table.batch_writer(overwrite_by_pkeys=[PARTITION_KEY, SORT_KEY]) as batch:
            for record in records:
                batch.put_item(Item=self._item(migration_id, record))
                count += 1
        return count

    def put_record(self, migration_id: str, record: InstanceRecord) -> None:
        record.updated_at = now_iso()
        with transient_errors():
            self.table.put_item(Item=self._item(migration_id, record))

    def put_record_drifting(self, migration_id: str, record: InstanceRecord, monthly_spot: float,
                            fallbacks: int) -> None:
        """The record, and the drift of the migration's realised savings it makes, at once."""
        if not monthly_spot and not fallbacks:
            self.put_record(migration_id, record)
            return
        record.updated_at = now_iso()
        items: list[Any] = [{"Put": {"TableName": self.table.name, "Item": self._item(migration_id, record)}},
                            drift_update(self.table.name, migration_id, monthly_spot, fallbacks)]
        with transient_errors():
            self.table.meta.client.transact_write_items(TransactItems=items)

    @staticmethod
    def _item(migration_id: str, record: InstanceRecord) -> Any:
        """The record's item; one still unfinished in a wave is also in the index, under the wave."""
        item = {**_key(migration_id, f"{RECORD_PREFIX}{record.instance_id}"), **record.model_dump()}
        if _in_flight(record) and record.wave is not None:
            item.update({INDEX_PARTITION_KEY: unfinished_index_pk(migration_id, record.wave),
                         INDEX_SORT_KEY: record.instance_id})
        return to_dynamo(item)

    def records(self, migration_id: str) -> list[InstanceRecord]:
        return [InstanceRecord.model_validate(i) for i in self._query(migration_id, RECORD_PREFIX)]

    def in_flight(self, migration_id: str, wave: int) -> list[InstanceRecord]:
        """The wave's unfinished records (domain.plan.unfinished), as they are now: the index
        names them (only unfinished records are in it, so a pass over a large wave near its end
        reads a few), then they are read by key, consistently. A record stays unfinished from
        its planning until it is done, so the index, eventually consistent, may only still name
        a record just finished: the read by key leaves it out."""
        names = query(self.table, IndexName=STATUS_INDEX, ProjectionExpression=INDEX_SORT_KEY,
                      KeyConditionExpression=Key(INDEX_PARTITION_KEY).eq(unfinished_index_pk(migration_id, wave)))
        keys = [_key(migration_id, f"{RECORD_PREFIX}{n[INDEX_SORT_KEY]}") for n in names]
        records = [InstanceRecord.model_validate(i) for i in batch_get(self.table, keys, consistent=True)]
        return sorted((r for r in records if _in_flight(r) and r.wave == wave), key=lambda r: r.instance_id)

    def records_by_key(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], InstanceRecord | None]:
        """(migration id, instance id) -> the instance's record (None where there is none), read
        by key: one BatchGetItem per 100 records, however large the plans are."""
        wanted = list(dict.fromkeys(keys))
        items = batch_get(self.table, [_key(mid, f"{RECORD_PREFIX}{iid}") for mid, iid in wanted], consistent=True)
        found = {(item[PARTITION_KEY], item[SORT_KEY]): item for item in items}
        records = {(mid, iid): found.get((migration_pk(mid), f"{RECORD_PREFIX}{iid}")) for mid, iid in wanted}
        return {key: InstanceRecord.model_validate(item) if item else None for key, item in records.items()}

    def records_page(self, migration_id: str, limit: int,
                     start_key: dict[str, Any] | None = None) -> Page[InstanceRecord]:
        """One page of the plan, in instance-id order, and the key to continue from."""
        kwargs: dict[str, Any] = {"KeyConditionExpression": self._condition(migration_id, RECORD_PREFIX),
                                  "Limit": limit}
        if start_key:
            ours = start_key.get(PARTITION_KEY) == migration_pk(migration_id) \
                and str(start_key.get(SORT_KEY, "")).startswith(RECORD_PREFIX)
            kwargs["ExclusiveStartKey"] = _check_start_key(start_key, ours)
        items, last = query_page(self.table, **kwargs)
        return [InstanceRecord.model_validate(i) for i in items], last

    def put_groups(self, migration_id: str, groups: Iterable[GroupRecord]) -> None:
        with transient_errors(), self.table.batch_writer(overwrite_by_pkeys=[PARTITION_KEY, SORT_KEY]) as batch:
            for group in groups:
                batch.put_item(Item=to_dynamo({**_key(migration_id, f"{GROUP_PREFIX}{group.name}"),
                                               **group.model_dump()}))

    def put_group(self, migration_id: str, group: GroupRecord) -> None:
        with transient_errors():
            self.table.put_item(Item=to_dynamo({**_key(migration_id, f"{GROUP_PREFIX}{group.name}"),
                                                **group.model_dump()}))

    def groups(self, migration_id: str) -> list[GroupRecord]:
        """The plan's Auto Scaling groups, by name (a plan has tens of them, not thousands)."""
        return [GroupRecord.model_validate(i) for i in self._query(migration_id, GROUP_PREFIX)]

    def put_verdict(self, migration_id: str, verdict: AgentVerdict) -> None:
        with transient_errors():
            self.table.put_item(Item=to_dynamo({**_key(migration_id, f"{VERDICT_PREFIX}{verdict.agent}"),
                                                **verdict.model_dump()}))

    def verdicts(self, migration_id: str) -> list[AgentVerdict]:
        return [AgentVerdict.model_validate(i) for i in self._query(migration_id, VERDICT_PREFIX)]

    @staticmethod
    def _condition(migration_id: str, prefix: str) -> Any:
        return Key(PARTITION_KEY).eq(migration_pk(migration_id)) & Key(SORT_KEY).begins_with(prefix)

    def _query(self, migration_id: str, prefix: str) -> Iterable[Item]:
        return query(self.table, KeyConditionExpression=self._condition(migration_id, prefix))
