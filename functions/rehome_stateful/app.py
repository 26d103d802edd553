"""Moves an interrupted stateful Spot instance's disks on to a new instance: one pass per
invocation of the re-home state machine, which waits `wait_seconds` between passes; with
`error` (its retries spent), the re-home ends failed, saying where the disks are."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.domain.rehome import RehomeProgress
from spot_core.entry.events import RehomeEvent
from spot_core.entry.handler import handler
from spot_core.entry.observability import count, logger
from spot_core.entry.wiring import wiring


@handler(RehomeEvent, with_metrics=True)
def lambda_handler(event: RehomeEvent, context: LambdaContext) -> RehomeProgress:
    rehomes = wiring().rehomes
    if event.error is not None:
        progress = rehomes.give_up(event.migration_id, event.original_id, event.interrupted,
                                   f"{event.error.get('Error')}: {str(event.error.get('Cause', ''))[:300]}")
    else:
        progress = rehomes.step(event.migration_id, event.original_id, event.interrupted)
    if progress.phase in ("done", "failed"):
        count("StatefulRehomed" if progress.phase == "done" else "StatefulRehomesFailed")
    logger.info("re-home progress", extra=progress.model_dump())
    return progress
