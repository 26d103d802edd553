"""Scheduled: reports (or terminates) managed instances nothing accounts for, finishes
expired prewarms, retires instances swapped out after a rebalance, and retires the stopped
originals of completed migrations whose retention is over (snapshots, then termination)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.domain.orphans import SweepReport
from spot_core.entry.handler import handler
from spot_core.entry.observability import count, logger
from spot_core.entry.wiring import wiring


@handler(correlation=None, with_metrics=True)
def lambda_handler(event: dict, context: LambdaContext) -> SweepReport:
    report = wiring().sweeper.sweep()
    count("OrphansFound", len(report.orphans))
    if report.orphans:
        logger.warning("orphans found", extra=report.model_dump())
    retention = wiring().retention.run()
    count("OriginalsRetired", retention.terminated)
    if retention.migrations:
        logger.info("retention over", extra=retention.model_dump())
    return report.model_copy(update={"retention": retention.model_dump()})
