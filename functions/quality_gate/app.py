"""Compares the bake window with the baseline and runs the wave's health probes again; raises
QualityGateFailed to roll back. While the probes run it answers `pending` with `wait_seconds`:
the state machine waits, then calls it again."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.entry.events import GateEvent
from spot_core.entry.handler import handler
from spot_core.entry.observability import logger
from spot_core.entry.wiring import wiring


@handler(GateEvent)
def lambda_handler(event: GateEvent, context: LambdaContext) -> dict:
    result = wiring().quality_gate.run(event.migration_id, event.wave, event.since)
    if result.pending:
        logger.info("quality gate waits for health probes", extra={"wave": event.wave.index,
                                                                   "wait_seconds": result.wait_seconds})
    else:
        logger.info("quality gate passed", extra={"wave": event.wave.index, "score": result.score})
    return result.model_dump(include={"passed", "score", "reasons", "pending", "wait_seconds"})
