"""Stores the task token server-side and asks for approval. The event is never logged:
it carries the token."""

from spot_core.approvals import request_approval
from spot_core.deps import deps
from spot_core.events import ApprovalEvent, parse_event
from spot_core.observability import logger


@logger.inject_lambda_context(clear_state=True, log_event=False)
def lambda_handler(event, context):
    parsed = parse_event(event, ApprovalEvent)
    logger.set_correlation_id(parsed.migration_id)
    d = deps()
    requested = request_approval(parsed.migration_id, parsed.task_token, store=d.store, notifier=d.notifier,
                                 execution_arn=parsed.execution_arn)
    logger.info("approval requested", extra={"timeout_seconds": requested["timeout_seconds"]})
    return requested
