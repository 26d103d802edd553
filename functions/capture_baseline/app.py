"""Captures latency and error rate before any instance changes."""

from spot_core.deps import deps
from spot_core.events import MigrationEvent, parse_event
from spot_core.gates import capture_baseline
from spot_core.observability import logger
from spot_core.waves import utc_now


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    migration_id = parse_event(event, MigrationEvent).migration_id
    logger.set_correlation_id(migration_id)
    d = deps()
    baseline = capture_baseline(migration_id, cloudwatch=d.cloudwatch, elbv2=d.elbv2, store=d.store, now=utc_now())
    logger.info("baseline captured", extra=baseline)
    return baseline
