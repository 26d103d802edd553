"""Captures latency and error rate before any instance changes."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.entry.events import MigrationEvent
from spot_core.entry.handler import handler
from spot_core.entry.observability import logger
from spot_core.entry.wiring import wiring

BASELINE_FIELDS = {"latency", "error_rate", "requests", "datapoints"}


@handler(MigrationEvent)
def lambda_handler(event: MigrationEvent, context: LambdaContext) -> dict:
    baseline = wiring().quality_gate.capture_baseline(event.migration_id).model_dump(include=BASELINE_FIELDS)
    logger.info("baseline captured", extra=baseline)
    return baseline
