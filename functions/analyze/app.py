"""Analysis: select the opted-in instances, price them, classify them, write the plan."""

from spot_core.deps import deps
from spot_core.events import AnalyzeEvent, parse_event
from spot_core.models import check_migration_id, parse_request
from spot_core.observability import logger
from spot_core.planning import analyse
from spot_core.waves import utc_now


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    parsed = parse_event(event, AnalyzeEvent)
    migration_id = check_migration_id(parsed.migration_id)
    logger.set_correlation_id(migration_id)
    request = parse_request(parsed.request)  # validated before anything is written
    d = deps()
    summary = analyse(
        migration_id, request, ec2=d.ec2, cloudwatch=d.cloudwatch, elbv2=d.elbv2,
        pricer=d.pricer(), store=d.store, now=utc_now(),
        recently_interrupted=d.store.recent_interruptions(),
    )
    logger.info("plan written", extra={"summary": summary.model_dump()})
    return {"migration_id": migration_id, "request": request.model_dump(), "plan": summary.model_dump()}
