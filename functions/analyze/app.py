"""Analysis: select the opted-in instances, price them, classify them, write the plan."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.domain.request import parse_request
from spot_core.entry.events import AnalyzeEvent
from spot_core.entry.handler import handler
from spot_core.entry.observability import logger
from spot_core.entry.wiring import wiring


@handler(AnalyzeEvent)
def lambda_handler(event: AnalyzeEvent, context: LambdaContext) -> dict:
    request = parse_request(event.request)  # validated before anything is written
    summary = wiring().analyze().run(event.migration_id, request)
    logger.info("plan written", extra={"summary": summary.model_dump()})
    return {"migration_id": event.migration_id, "request": request.model_dump(), "plan": summary.model_dump()}
