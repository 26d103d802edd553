"""Applies the agents' verdicts: a veto stops the migration, exclusions shrink the plan."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.domain.reviews import ReviewOutcome
from spot_core.entry.events import ConsolidateEvent
from spot_core.entry.handler import handler
from spot_core.entry.observability import logger
from spot_core.entry.wiring import wiring


@handler(ConsolidateEvent)
def lambda_handler(event: ConsolidateEvent, context: LambdaContext) -> ReviewOutcome:
    outcome = wiring().review.consolidate(event.migration_id)
    logger.info("reviews consolidated", extra={"approved": outcome.approved, "vetoed_by": outcome.vetoed_by})
    return outcome
