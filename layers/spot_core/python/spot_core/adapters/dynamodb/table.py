"""What every repository does with the table: paginated queries, SET updates, batched reads,
and the conversions DynamoDB needs (no floats, no None)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ...domain.batching import chunks
from ...domain.errors import InvalidMigrationRequest
from ..aws import error_code, transient_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

BATCH_GET = 100  # keys per BatchGetItem
Item = dict[str, Any]


def to_dynamo(value: Any) -> Any:
    """Floats become Decimals (DynamoDB has no float type); None values are dropped."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


def query(table: Table, **kwargs: Any) -> Iterator[Item]:
    """Every item of a query, page after page, converted back from DynamoDB's types."""
    while True:
        with transient_errors():
            page: Any = table.query(**kwargs)
        yield from (from_dynamo(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def query_page(table: Table, **kwargs: Any) -> tuple[list[Item], dict[str, Any] | None]:
    """One page of a query that starts from an operator's paging token: a start key DynamoDB
    refuses (forged or stale) is the caller's error, not ours."""
    try:
        with transient_errors():
            page: Any = table.query(**kwargs)
    except Exception as exc:
        if error_code(exc) == "ValidationException":
            raise InvalidMigrationRequest("next_token is not valid") from None
        raise
    return [from_dynamo(item) for item in page.get("Items", [])], page.get("LastEvaluatedKey")


def set_fields(table: Table, key: Mapping[str, str], fields: Mapping[str, Any], **condition: Any) -> None:
    """SET each of `fields` on the item at `key` (``condition``: ConditionExpression=...)."""
    names = {f"#f{i}": k for i, k in enumerate(fields)}
    values = {f":v{i}": to_dynamo(v) for i, v in enumerate(fields.values())}
    with transient_errors():
        table.update_item(
            Key=dict(key), UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
            ExpressionAttributeNames=names, ExpressionAttributeValues=values, **condition,
        )


def batch_get(table: Table, keys: list[dict[str, str]], consistent: bool) -> list[Item]:
    """The items of `keys` that exist, 100 keys a BatchGetItem call, unprocessed keys retried."""
    found: list[Item] = []
    client = table.meta.client
    for batch in chunks(keys, BATCH_GET):
        request: Any = {table.name: {"Keys": batch, "ConsistentRead": consistent}}
        while request:
            with transient_errors():
                page: Any = client.batch_get_item(RequestItems=request)
            found += [from_dynamo(item) for item in page["Responses"].get(table.name, [])]
            request = page.get("UnprocessedKeys") or None
    return found


def is_condition_failure(table: Table, exc: BaseException) -> bool:
    return isinstance(exc, table.meta.client.exceptions.ConditionalCheckFailedException)
