"""EC2 Spot interruption warnings, rebalance recommendations and reclaims without a warning
(instance state changes) -> a replacement that keeps the capacity of the managed instance
whole. Instances the product does not manage, and stops or terminations EC2 did not
initiate, are ignored (a log line; a metric, but for state changes, which every instance in
the account sends); a malformed event is rejected and launches nothing."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.entry.events import Ec2InstanceEvent
from spot_core.entry.handler import handler
from spot_core.entry.observability import interruption_metrics, logger
from spot_core.entry.wiring import wiring


@handler(Ec2InstanceEvent, correlation="id", with_metrics=True)
def lambda_handler(event: Ec2InstanceEvent, context: LambdaContext) -> dict:
    notice = event.notice()
    outcome = wiring().interruptions(context).handle(notice)
    if notice.kind != "state-change" or outcome.action != "ignored":
        interruption_metrics(notice.is_interruption, outcome)  # a reclaim without a warning counts as one
    logger.info("interruption handled" if outcome.action != "ignored" else f"event ignored: {outcome.reason}",
                extra=outcome.model_dump())
    return outcome.model_dump(mode="json", exclude_none=True)
