"""The vocabulary of a migration's life: its statuses, how it can end, and what an ending says."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel

# How a migration ends (the Finalize states of the state machine, and the rollback).
Outcome = Literal[
    "completed", "vetoed", "rejected", "approval_timed_out", "nothing_to_migrate", "planned", "rollback_failed",
    "rolled_back",
]
# Every status the migration item goes through; an outcome is also the final status.
MigrationStatus = Literal[
    "analysing", "planned", "reviewed", "awaiting_approval", "approved", "migrating", "rolling_back", "completed",
    "rolled_back", "rollback_failed", "rejected", "vetoed", "approval_timed_out", "nothing_to_migrate",
]
MIGRATION_STATUSES: tuple[str, ...] = get_args(MigrationStatus)
OUTCOMES: tuple[str, ...] = get_args(Outcome)
# Step Functions execution statuses (ListExecutions' filter)
EXECUTION_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
# Outcomes whose records say what happened to each instance
WITH_RECORDS: tuple[Outcome, ...] = ("completed", "rolled_back", "rollback_failed")

HEADLINES: dict[Outcome, str] = {
    "completed": "Migration {mid} completed: {migrated} instance(s) now run on Spot.",
    "vetoed": "Migration {mid} was vetoed by the agent review; nothing was changed.",
    "rejected": "Migration {mid} was rejected; nothing was changed.",
    "approval_timed_out": "Migration {mid} timed out waiting for approval; nothing was changed.",
    "nothing_to_migrate": "Migration {mid} found nothing to migrate.",
    "planned": "Dry run {mid}: the plan is ready; nothing was changed.",
    "rollback_failed": "Migration {mid}: ROLLBACK INCOMPLETE, some instances need attention.",
    "rolled_back": "Migration {mid} was rolled back: the fleet is back on on-demand.",
}


class Realised(BaseModel):
    """Monthly savings at today's Spot prices of the pools the replacements actually run in."""

    instances: int = 0
    monthly_on_demand: float = 0.0
    monthly_spot: float = 0.0
    monthly_savings: float = 0.0
    savings_pct: float = 0.0


class FinalOutcome(BaseModel):
    status: Outcome
    realised: Realised | None = None
