"""Rolls every migrated instance back to on-demand; loops until done."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.domain.waves import RollbackResult
from spot_core.entry.events import RollbackEvent
from spot_core.entry.handler import budget, handler
from spot_core.entry.observability import count, logger
from spot_core.entry.wiring import wiring


@handler(RollbackEvent, with_metrics=True)
def lambda_handler(event: RollbackEvent, context: LambdaContext) -> RollbackResult:
    result = wiring().rollback.run(event.migration_id, event.failure, budget(context))
    if result.done:
        count("MigrationsRolledBack")
        count("InstancesRestored", result.restored)
    logger.warning("rollback progress", extra=result.model_dump())
    return result
