"""EC2 Spot interruption warnings, rebalance recommendations and reclaims without a warning
(instance state changes) -> a replacement that keeps the capacity of the managed instance
whole. The events come in batches from the interruption queue (each message handled on its
own, failed ones retried, then kept with their reason in the dead-letter queue), or one at a
time when invoked directly with an EventBridge event. Instances the product does not manage,
and stops or terminations EC2 did not initiate, are ignored (a log line; a metric, but for
state changes, which every instance in the account sends); a malformed event is rejected
and launches nothing."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.entry.events import Ec2InstanceEvent, parse_event
from spot_core.entry.handler import handler
from spot_core.entry.interruption_queue import QueueBatch, handle_event, is_queue_batch
from spot_core.entry.observability import logger
from spot_core.entry.wiring import wiring


@handler(None, correlation=None, with_metrics=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict:
    root = wiring()
    if is_queue_batch(event):
        return QueueBatch(root.interruptions(context), root.queues, root.settings.dead_letter_queue_url,
                          context).run(event)
    parsed = parse_event(event, Ec2InstanceEvent)
    logger.set_correlation_id(parsed.id)
    return handle_event(root.interruptions(context), parsed).model_dump(mode="json", exclude_none=True)
