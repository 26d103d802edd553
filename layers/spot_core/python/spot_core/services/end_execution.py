"""EndExecution: a migration whose execution ended without its own last step (stopped from
the console, a step failing for good, the execution timing out) still ends: a terminal
status, its instance locks released, a notification that says where each instance was left.

Step Functions' execution status change (EventBridge) calls it for every execution that
ends FAILED, TIMED_OUT or ABORTED; an execution that failed after recording its outcome
(rejected, vetoed, rolled back, ...) only has its locks released, again, which is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.errors import MigrationNotFound
from ..domain.outcomes import UNFINISHED, FinalOutcome, Outcome, has_ended
from ..ports import MigrationRepository
from .finalize import Finalize


@dataclass
class EndExecution:
    migrations: MigrationRepository
    finalize: Finalize

    def run(self, migration_id: str, execution_status: str, cause: str | None) -> FinalOutcome:
        outcome: Outcome = UNFINISHED[execution_status]
        try:
            item = self.migrations.get(migration_id)
        except MigrationNotFound:  # refused before anything was written (an invalid request)
            return FinalOutcome(status=outcome)
        if item.get("status") == "rolling_back":  # it ended before its rollback did: not restored
            outcome = "rollback_failed"
        if has_ended(item):
            status = item["status"]
            return FinalOutcome(status=status, locks_released=self.finalize.release(migration_id, status))
        detail = {"Error": f"execution {execution_status}", "Cause": cause or ""}
        return self.finalize.finish(migration_id, outcome, detail)
