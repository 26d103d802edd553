"""Scheduled: reports (or terminates) managed instances nothing accounts for, finishes
expired prewarms and retires instances swapped out after a rebalance."""

from spot_core.deps import deps
from spot_core.observability import MetricUnit, logger, metrics
from spot_core.sweeper import sweep


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    d = deps()
    result = sweep(ec2=d.ec2, elbv2=d.elbv2, store=d.store, mode=d.settings.sweeper_mode,
                   grace_seconds=d.settings.sweeper_grace_seconds)
    metrics.add_metric(name="OrphansFound", unit=MetricUnit.Count, value=len(result["orphans"]))
    if result["orphans"]:
        lines = [f"{o['instance_id']} ({o['instance_type']}, launched {o['launched']})" for o in result["orphans"]]
        action = "terminated" if result["mode"] == "terminate" else "reported (set SWEEPER_MODE=terminate to remove them)"
        d.notifier.publish("sweeper", "orphans", f"{len(lines)} managed instance(s) nothing accounts for: {action}", lines, result)
        logger.warning("orphans found", extra=result)
    return result
