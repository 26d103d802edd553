"""Scheduled: returns the on-demand fallbacks of interruptions to Spot, make-before-break, once a
healthy Spot pool has capacity again (spot_core/services/return_fallbacks.py)."""

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.domain.fallbacks import ReturnReport
from spot_core.entry.handler import budget, handler
from spot_core.entry.observability import count, logger
from spot_core.entry.wiring import wiring


@handler(EventBridgeModel, correlation="id", with_metrics=True)
def lambda_handler(event: EventBridgeModel, context: LambdaContext) -> ReturnReport:
    report = wiring().return_fallbacks.run(budget(context), run_id=event.id)
    count("FallbacksReturned", len(report.returned))
    count("FallbacksLeftAlone", len(report.left_alone))
    if report.returned or report.left_alone:
        logger.info("fallbacks", extra=report.model_dump())
    return report
