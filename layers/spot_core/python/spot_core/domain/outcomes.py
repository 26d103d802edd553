"""The vocabulary of a migration's life: its statuses, how it can end, and what an ending says."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from pydantic import BaseModel

from .plan import InstanceRecord
from .pricing import HOURS_PER_MONTH, SpotPriceStat

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

    @classmethod
    def of(cls, migrated: list[InstanceRecord], prices: Mapping[tuple[str, str], SpotPriceStat]) -> Realised:
        """``prices``: today's statistics per pool; a pool without any keeps the price it was launched at."""
        on_demand = sum(r.on_demand_hourly or 0.0 for r in migrated) * HOURS_PER_MONTH
        spot = sum(_spot_hourly(r, prices) * HOURS_PER_MONTH for r in migrated)
        return cls(
            instances=len(migrated), monthly_on_demand=round(on_demand, 2), monthly_spot=round(spot, 2),
            monthly_savings=round(on_demand - spot, 2),
            savings_pct=round(100 * (on_demand - spot) / on_demand, 1) if on_demand else 0.0,
        )


def _spot_hourly(record: InstanceRecord, prices: Mapping[tuple[str, str], SpotPriceStat]) -> float:
    stat = prices.get((record.replacement_type or "", record.replacement_az or ""))
    return stat.median if stat else record.replacement_spot_hourly or 0.0


class FinalOutcome(BaseModel):
    status: Outcome
    realised: Realised | None = None
