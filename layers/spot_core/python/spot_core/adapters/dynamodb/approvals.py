"""The approval task token: stored in an item of its own while a decision is pending, taken
out (deleted) by the decision, so a second decision finds none. Never logged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr

from ...domain.errors import ApprovalNotPending
from ..aws import transient_errors
from .migrations import now_iso
from .schema import APPROVAL_TOKEN, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, migration_pk
from .table import is_condition_failure

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


class DynamoApprovalTokens:
    def __init__(self, table: Table):
        self.table = table

    def put(self, migration_id: str, token: str, expires_at: int) -> None:
        with transient_errors():
            self.table.put_item(Item={
                PARTITION_KEY: migration_pk(migration_id), SORT_KEY: APPROVAL_TOKEN, "token": token,
                "created_at": now_iso(), TTL_ATTRIBUTE: expires_at,
            })

    def take(self, migration_id: str) -> str:
        """Remove and return the pending token; a second decision finds none."""
        try:
            with transient_errors():
                old: Any = self.table.delete_item(
                    Key={PARTITION_KEY: migration_pk(migration_id), SORT_KEY: APPROVAL_TOKEN},
                    ConditionExpression=Attr(PARTITION_KEY).exists(), ReturnValues="ALL_OLD",
                )
        except Exception as exc:
            if is_condition_failure(self.table, exc):
                raise ApprovalNotPending(f"migration {migration_id!r} is not waiting for a decision") from None
            raise
        token: str = old["Attributes"]["token"]
        return token
