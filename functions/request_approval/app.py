"""Stores the task token server-side and asks for approval. The event is never logged:
it carries the token."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.entry.events import ApprovalEvent
from spot_core.entry.handler import handler
from spot_core.entry.observability import logger
from spot_core.entry.wiring import wiring
from spot_core.services.approval import ApprovalRequested


@handler(ApprovalEvent)
def lambda_handler(event: ApprovalEvent, context: LambdaContext) -> ApprovalRequested:
    requested = wiring().approval.request(event.migration_id, event.task_token, event.execution_arn)
    logger.info("approval requested", extra={"timeout_seconds": requested.timeout_seconds})
    return requested
