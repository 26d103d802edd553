"""Compares the bake window with the baseline; raises QualityGateFailed to roll back."""

from spot_core.deps import deps
from spot_core.events import GateEvent, parse_event
from spot_core.gates import run_gate
from spot_core.observability import logger
from spot_core.waves import utc_now


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    parsed = parse_event(event, GateEvent)
    logger.set_correlation_id(parsed.migration_id)
    d = deps()
    result = run_gate(
        parsed.migration_id, parsed.wave, parsed.since,
        cloudwatch=d.cloudwatch, ec2=d.ec2, elbv2=d.elbv2, store=d.store, now=utc_now(),
    )
    logger.info("quality gate passed", extra={"wave": parsed.wave.index, "score": result.score})
    return {"passed": result.passed, "score": result.score, "reasons": result.reasons}
