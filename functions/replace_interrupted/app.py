"""EC2 Spot interruption warnings and rebalance recommendations -> a replacement that keeps
the capacity of the managed instance whole. Instances the product does not manage are
ignored (a log line and a metric); a malformed event is rejected and launches nothing."""

from spot_core.deps import deps
from spot_core.events import parse_event
from spot_core.interruptions import Ec2InstanceEvent, InterruptionResponder
from spot_core.observability import MetricUnit, logger, metrics


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True, correlation_id_path="id")
def lambda_handler(event, context):
    parsed = parse_event(event, Ec2InstanceEvent)
    d = deps()
    responder = InterruptionResponder(ec2=d.ec2, elbv2=d.elbv2, store=d.store, notifier=d.notifier,
                                      default_policy=d.settings.rebalance_policy, prewarm_seconds=d.settings.prewarm_seconds)
    result = responder.handle(parsed)
    kind = "Interruption" if parsed.is_interruption else "Rebalance"
    metrics.add_metric(name=f"{kind}Events", unit=MetricUnit.Count, value=1)
    if result["action"] == "ignored":
        metrics.add_metric(name="EventsIgnored", unit=MetricUnit.Count, value=1)
        logger.info("event for an instance this product does not manage: ignored", extra=result)
        return result
    if result.get("launched"):
        metrics.add_metric(name="ReplacementsLaunched", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="EventToLaunchSeconds", unit=MetricUnit.Seconds, value=result["seconds_from_event_to_launch"])
        if result["market"] == "on-demand":
            metrics.add_metric(name="OnDemandFallbacks", unit=MetricUnit.Count, value=1)
    logger.info("interruption handled", extra=result)
    return result
