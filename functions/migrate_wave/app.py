"""Migrates the wave's instances to Spot, make-before-break, resuming where the last
invocation stopped (the state machine loops until `done`)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.domain.waves import WaveResult
from spot_core.entry.events import WaveEvent
from spot_core.entry.handler import budget, handler
from spot_core.entry.observability import count, logger
from spot_core.entry.wiring import wiring


@handler(WaveEvent, with_metrics=True)
def lambda_handler(event: WaveEvent, context: LambdaContext) -> WaveResult:
    result = wiring().migrate_wave.run(event.migration_id, event.wave, budget(context))
    if result.done:
        count("InstancesMigrated", result.migrated)
        count("InstancesFailed", result.failed)
    logger.info("wave progress", extra=result.model_dump())
    return result
