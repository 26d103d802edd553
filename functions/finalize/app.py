"""Records the outcome and realised savings, notifies, emits metrics."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.domain.outcomes import FinalOutcome
from spot_core.entry.events import FinalizeEvent
from spot_core.entry.handler import handler
from spot_core.entry.observability import count, logger, metrics
from spot_core.entry.wiring import wiring


@handler(FinalizeEvent, with_metrics=True)
def lambda_handler(event: FinalizeEvent, context: LambdaContext) -> FinalOutcome:
    outcome = wiring().finalize.finish(event.migration_id, event.outcome, event.detail)
    metrics.add_dimension(name="Outcome", value=event.outcome)
    count("Migrations")
    if outcome.realised:
        count("InstancesMigrated", outcome.realised.instances)
        count("MonthlySavings", outcome.realised.monthly_savings)
    logger.info("migration finished", extra=outcome.model_dump())
    return outcome
