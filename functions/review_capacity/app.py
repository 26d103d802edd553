"""Capacity agent: pool diversity, AZ spread, recently interrupted pools."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.domain.plan import AgentVerdict
from spot_core.entry.events import MigrationEvent
from spot_core.entry.handler import handler
from spot_core.entry.wiring import wiring


@handler(MigrationEvent)
def lambda_handler(event: MigrationEvent, context: LambdaContext) -> AgentVerdict:
    return wiring().review.capacity(event.migration_id)
