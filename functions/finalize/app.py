"""Records the outcome and realised savings, notifies, emits metrics."""

from spot_core.deps import deps
from spot_core.events import FinalizeEvent, parse_event
from spot_core.observability import MetricUnit, logger, metrics
from spot_core.outcomes import finish
from spot_core.waves import utc_now


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    parsed = parse_event(event, FinalizeEvent)
    logger.set_correlation_id(parsed.migration_id)
    d = deps()
    result = finish(parsed.migration_id, parsed.outcome, parsed.detail, store=d.store, notifier=d.notifier, ec2=d.ec2, now=utc_now())
    metrics.add_dimension(name="Outcome", value=parsed.outcome)
    metrics.add_metric(name="Migrations", unit=MetricUnit.Count, value=1)
    if result["realised"]:
        metrics.add_metric(name="InstancesMigrated", unit=MetricUnit.Count, value=result["realised"]["instances"])
        metrics.add_metric(name="MonthlySavings", unit=MetricUnit.Count, value=result["realised"]["monthly_savings"])
    logger.info("migration finished", extra=result)
    return result
