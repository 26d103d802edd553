"""DynamoDB for the embedded runtime: each request atomic, and TransactWriteItems at the cost
DynamoDB has.

DynamoDB applies a request to an item at once: no reader ever sees half an update. moto
applies an UpdateItem's clauses to the stored item one after the other and serialises responses
from the stored items, so a request from another thread (concurrent Lambda invocations) could
read an item half-updated (a claim without its status). Requests here take turns.

moto's TransactWriteItems implementation deep-copies the whole table once per item of a transaction (to roll
back on failure), which makes locking a 10,000-instance plan take minutes. This one keeps
the semantics the product relies on (all or nothing; when a condition fails, nothing is
written and the cancellation reasons say which items failed) by checking every condition
before writing anything, so it never has to roll back.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import MultipleTransactionsException, TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler

_ORIGINAL = DynamoDBBackend.transact_write_items
_ORIGINAL_CALL = DynamoHandler.call_action
_ONE_REQUEST_AT_A_TIME = threading.Lock()
OPERATIONS = ("Put", "Delete", "Update", "ConditionCheck")


def _key(backend: DynamoDBBackend, operation: str, op: dict[str, Any]) -> dict[str, Any]:
    if operation != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _failed(backend: DynamoDBBackend, op: dict[str, Any], key: dict[str, Any]) -> bool:
    condition = op.get("ConditionExpression")
    if condition is None:
        return False
    expression = get_filter_expression(condition, op.get("ExpressionAttributeNames"),
                                       op.get("ExpressionAttributeValues"))
    return not expression.expr(backend.get_item(op["TableName"], key))


def _apply(backend: DynamoDBBackend, operation: str, op: dict[str, Any], key: dict[str, Any]) -> None:
    names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    if operation == "Put":
        backend.put_item(op["TableName"], op["Item"], expression_attribute_names=names,
                         expression_attribute_values=values)
    elif operation == "Delete":
        backend.delete_item(op["TableName"], key, expression_attribute_names=names,
                            expression_attribute_values=values)
    elif operation == "Update":
        backend.update_item(op["TableName"], key, update_expression=op["UpdateExpression"],
                            expression_attribute_names=names, expression_attribute_values=values)


def _supported(transact_items: list[dict[str, Any]]) -> bool:
    """What this version handles; anything else goes to moto's, with its validation errors."""
    return len(transact_items) <= 100 and all(len(item) == 1 and next(iter(item)) in OPERATIONS
                                              for item in transact_items)


def transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if not _supported(transact_items):
        return _ORIGINAL(backend, transact_items)
    steps = [(kind, op, _key(backend, kind, op)) for kind, op in (next(iter(i.items())) for i in transact_items)]
    if len({(op["TableName"], str(sorted(key.items()))) for _, op, key in steps}) < len(steps):
        raise MultipleTransactionsException()
    failed = [_failed(backend, op, key) for _, op, key in steps]
    if any(failed):
        raise TransactionCanceledException([_reason(f) for f in failed])
    for kind, op, key in steps:
        _apply(backend, kind, op, key)
    return None


def _reason(failed: bool) -> tuple[str | None, str | None, None]:
    return ("ConditionalCheckFailed", "The conditional request failed", None) if failed else (None, None, None)


def _atomic_call(handler: DynamoHandler) -> Any:
    with _ONE_REQUEST_AT_A_TIME:
        return _ORIGINAL_CALL(handler)


def install() -> None:
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    DynamoHandler.call_action = _atomic_call  # type: ignore[method-assign]


def uninstall() -> None:
    DynamoDBBackend.transact_write_items = _ORIGINAL  # type: ignore[method-assign]
    DynamoHandler.call_action = _ORIGINAL_CALL  # type: ignore[method-assign]
