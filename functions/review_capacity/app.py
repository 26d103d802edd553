"""Capacity agent: pool diversity, AZ spread, recently interrupted pools."""

from spot_core.deps import deps
from spot_core.events import MigrationEvent, parse_event
from spot_core.observability import logger
from spot_core.reviews import review_capacity
from spot_core.verdicts import record_verdict


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    migration_id = parse_event(event, MigrationEvent).migration_id
    logger.set_correlation_id(migration_id)
    store = deps().store
    store.get(migration_id)  # MigrationNotFound before any write
    candidates = [r for r in store.records(migration_id) if r.eligible]
    return record_verdict(store, migration_id, review_capacity(candidates, store.recent_interruptions()))
