"""Applies the agents' verdicts: a veto stops the migration, exclusions shrink the plan."""

from spot_core.consolidation import consolidate
from spot_core.deps import deps
from spot_core.events import ConsolidateEvent, parse_event
from spot_core.observability import logger


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    migration_id = parse_event(event, ConsolidateEvent).migration_id
    logger.set_correlation_id(migration_id)
    result = consolidate(migration_id, store=deps().store)
    logger.info("reviews consolidated", extra={"approved": result["approved"], "vetoed_by": result["vetoed_by"]})
    return result
