"""EC2 Spot interruption warnings and rebalance recommendations -> a replacement that keeps
the capacity of the managed instance whole. Instances the product does not manage are
ignored (a log line and a metric); a malformed event is rejected and launches nothing."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.entry.events import Ec2InstanceEvent
from spot_core.entry.handler import handler
from spot_core.entry.observability import interruption_metrics, logger
from spot_core.entry.wiring import wiring


@handler(Ec2InstanceEvent, correlation="id", with_metrics=True)
def lambda_handler(event: Ec2InstanceEvent, context: LambdaContext) -> dict:
    outcome = wiring().interruptions(context).handle(event.notice())
    interruption_metrics(event.is_interruption, outcome)
    logger.info("interruption handled" if outcome.action != "ignored"
                else "event for an instance this product does not manage: ignored", extra=outcome.model_dump())
    return outcome.model_dump(mode="json", exclude_none=True)
