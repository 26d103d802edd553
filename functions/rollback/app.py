"""Rolls every migrated instance back to on-demand; loops until done."""

from spot_core.deps import deps
from spot_core.events import RollbackEvent, parse_event
from spot_core.observability import MetricUnit, logger, metrics
from spot_core.outcomes import finish
from spot_core.waves import Budget, WaveRunner, utc_now


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    parsed = parse_event(event, RollbackEvent)
    logger.set_correlation_id(parsed.migration_id)
    d = deps()
    d.store.update(parsed.migration_id, status="rolling_back", failure=_failure(parsed.failure))
    runner = WaveRunner(parsed.migration_id, ec2=d.ec2, elbv2=d.elbv2, store=d.store, budget=Budget.from_context(context))
    result = runner.rollback()
    if result["done"]:
        finish(parsed.migration_id, "rolled_back", _failure(parsed.failure), store=d.store, notifier=d.notifier, ec2=d.ec2, now=utc_now())
        metrics.add_metric(name="MigrationsRolledBack", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="InstancesRestored", unit=MetricUnit.Count, value=result["restored"])
    logger.warning("rollback progress", extra=result)
    return result


def _failure(failure):
    """Step Functions' Catch output: Error and Cause (the cause is the Lambda's error JSON)."""
    if not failure:
        return None
    return {"Error": failure.get("Error"), "Cause": str(failure.get("Cause", ""))[:1000]}
