"""Application agent: statefulness hints, load-balancer membership, quality baseline."""

from datetime import timedelta

from spot_core import telemetry
from spot_core.deps import deps
from spot_core.events import MigrationEvent, parse_event
from spot_core.models import MigrationRequest
from spot_core.observability import logger
from spot_core.reviews import review_application
from spot_core.verdicts import record_verdict
from spot_core.waves import utc_now


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    migration_id = parse_event(event, MigrationEvent).migration_id
    logger.set_correlation_id(migration_id)
    d = deps()
    request = MigrationRequest.model_validate(d.store.get(migration_id)["request"])
    metrics = telemetry.resolve_quality_metrics(request.quality, d.elbv2)
    now = utc_now()
    baseline = telemetry.quality_sample(d.cloudwatch, metrics, now - timedelta(minutes=request.quality.baseline_minutes), now) if metrics else None
    candidates = [r for r in d.store.records(migration_id) if r.eligible]
    return record_verdict(d.store, migration_id, review_application(candidates, baseline, quality_configured=bool(metrics)))
