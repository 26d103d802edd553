"""EC2 events handled once, however often or concurrently EventBridge delivers them:
Powertools Idempotency on the event id, in the product's table.

The first delivery writes an in-progress record (conditional put), does the work and
stores its outcome; a later delivery finds the record and does nothing; a delivery while
the first still runs raises EventInProgress, so Lambda retries it later. If the work
fails, the record is deleted, so the retry does the work. A crashed invocation's
in-progress record expires with its Lambda timeout, and the retry after it resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from ...domain.errors import EventInProgress
from ..aws import CLIENT_CONFIG
from .schema import EVENTS, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

M = TypeVar("M", bound=BaseModel)
REMEMBER_SECONDS = 14 * 86400  # far beyond EventBridge's and Lambda's retries (1 h of event age)
KEY_PREFIX = "ec2-event"


class IdempotentEvents:
    def __init__(self, table_name: str, remember_seconds: int = REMEMBER_SECONDS):
        self.persistence = DynamoDBPersistenceLayer(
            table_name=table_name, key_attr=PARTITION_KEY, sort_key_attr=SORT_KEY, static_pk_value=EVENTS,
            expiry_attr=TTL_ATTRIBUTE, boto_config=CLIENT_CONFIG,
        )
        self.config = IdempotencyConfig(event_key_jmespath="event_id", raise_on_no_idempotency_key=True,
                                        expires_after_seconds=remember_seconds)

    def bind(self, context: LambdaContext | None) -> IdempotentEvents:
        """An in-progress record outlives a crashed invocation only until its timeout."""
        if context is not None:
            self.config.register_lambda_context(context)
        return self

    def run(self, event_id: str, work: Callable[[], M], on_duplicate: Callable[[], M]) -> M:
        done: list[M] = []

        def handle(event: dict[str, Any]) -> dict[str, Any]:
            done.append(work())
            return done[0].model_dump(mode="json")

        once = idempotent_function(handle, data_keyword_argument="event", config=self.config,
                                   persistence_store=self.persistence, key_prefix=KEY_PREFIX)
        try:
            once(event={"event_id": event_id})
        except IdempotencyAlreadyInProgressError:
            raise EventInProgress(f"event {event_id} is being handled by another invocation; retried later") from None
        return done[0] if done else on_duplicate()
