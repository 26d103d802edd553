"""On-demand windows: schedules a completed migration's windows (its execution's success, from
EventBridge), and opens or closes a window when its EventBridge Scheduler schedule fires."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.entry.events import ExecutionSucceededEvent, WindowEvent, parse_event
from spot_core.entry.handler import handler
from spot_core.entry.observability import logger
from spot_core.entry.wiring import wiring


@handler(None, correlation=None, correlation_path="detail.name || migration_id")
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and event.get("source") == "aws.states":
        succeeded = parse_event(event, ExecutionSucceededEvent)
        # the schedules invoke this very function
        return wiring().windows.execution_succeeded(succeeded.migration_id, context.invoked_function_arn)
    fired = parse_event(event, WindowEvent)
    started = wiring().windows.fire(fired.migration_id, fired.window, fired.action, fired.scheduled_time)
    logger.info("window fired", extra={"window": fired.window, "action": fired.action, "started": started})
    return {"migration_id": fired.migration_id, "window": fired.window, "action": fired.action, "started": started}
