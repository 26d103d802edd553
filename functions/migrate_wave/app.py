"""Migrates the wave's instances to Spot, make-before-break, resuming where the last
invocation stopped (the state machine loops until `done`)."""

from spot_core.deps import deps
from spot_core.events import WaveEvent, parse_event
from spot_core.observability import MetricUnit, logger, metrics
from spot_core.waves import Budget, WaveRunner


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    parsed = parse_event(event, WaveEvent)
    logger.set_correlation_id(parsed.migration_id)
    d = deps()
    d.store.update(parsed.migration_id, status="migrating", current_wave=parsed.wave.index)
    runner = WaveRunner(parsed.migration_id, ec2=d.ec2, elbv2=d.elbv2, store=d.store, budget=Budget.from_context(context))
    result = runner.run(parsed.wave)
    if result["done"]:
        metrics.add_metric(name="InstancesMigrated", unit=MetricUnit.Count, value=result["migrated"])
        metrics.add_metric(name="InstancesFailed", unit=MetricUnit.Count, value=result["failed"])
    logger.info("wave progress", extra=result)
    return result
