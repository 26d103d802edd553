"""Ends a migration whose execution stopped, failed or timed out before its own last step."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.domain.outcomes import FinalOutcome
from spot_core.entry.events import ExecutionEndedEvent
from spot_core.entry.handler import handler
from spot_core.entry.wiring import wiring


@handler(ExecutionEndedEvent, with_metrics=True)
def lambda_handler(event: ExecutionEndedEvent, context: LambdaContext) -> FinalOutcome:
    return wiring().end_execution.run(event.migration_id, event.detail.status, event.detail.cause)
