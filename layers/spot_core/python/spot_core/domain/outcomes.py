"""The vocabulary of a migration's life: its statuses, how it can end, and what an ending says."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel

from .plan import InstanceRecord
from .pricing import HOURS_PER_MONTH, SpotPriceStat

# How a migration ends (the Finalize states of the state machine, and the rollback).
Outcome = Literal[
    "completed", "vetoed", "rejected", "approval_timed_out", "nothing_to_migrate", "planned", "rollback_failed",
    "rolled_back", "stopped", "timed_out", "failed",
]
# The outcomes of an execution that ended without its own last step, by its Step Functions status.
UNFINISHED: dict[str, Outcome] = {"ABORTED": "stopped", "TIMED_OUT": "timed_out", "FAILED": "failed"}
# Every status the migration item goes through; an outcome is also the final status.
MigrationStatus = Literal[
    "analysing", "planned", "reviewed", "awaiting_approval", "approved", "migrating", "rolling_back", "completed",
    "rolled_back", "rollback_failed", "rejected", "vetoed", "approval_timed_out", "nothing_to_migrate",
    "stopped", "timed_out", "failed",
]
MIGRATION_STATUSES: tuple[str, ...] = get_args(MigrationStatus)
OUTCOMES: tuple[str, ...] = get_args(Outcome)


def has_ended(item: Mapping[str, object]) -> bool:
    """Whether a migration item records its end. Not its status alone: a dry run ends as
    "planned", a status every migration passes through."""
    return bool(item.get("finished_at"))


def ended_early(item: Mapping[str, object]) -> bool:
    """Ended by its execution stopping, failing or timing out, not by its own last step: a
    Lambda still running for it (Step Functions does not stop one) must change nothing more."""
    return has_ended(item) and item.get("status") in UNFINISHED.values()
# Step Functions execution statuses (ListExecutions' filter)
EXECUTION_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
# Outcomes whose records say what happened to each instance
WITH_RECORDS: tuple[Outcome, ...] = ("completed", "rolled_back", "rollback_failed", "stopped", "timed_out", "failed")
# Outcomes after which the instances a rollback touched stay out of new plans for the cooldown
COOLED_DOWN: tuple[Outcome, ...] = ("rolled_back", "rollback_failed")

HEADLINES: dict[Outcome, str] = {
    "completed": "Migration {mid} completed: {migrated} instance(s) now run on Spot.",
    "vetoed": "Migration {mid} was vetoed by the agent review; nothing was changed.",
    "rejected": "Migration {mid} was rejected; nothing was changed.",
    "approval_timed_out": "Migration {mid} timed out waiting for approval; nothing was changed.",
    "nothing_to_migrate": "Migration {mid} found nothing to migrate.",
    "planned": "Dry run {mid}: the plan is ready; nothing was changed.",
    "rollback_failed": "Migration {mid}: ROLLBACK INCOMPLETE, some instances need attention.",
    "rolled_back": "Migration {mid} was rolled back: the fleet is back on on-demand.",
    "stopped": "Migration {mid} was stopped before it finished; its instances are as the records say.",
    "timed_out": "Migration {mid} timed out before it finished; its instances are as the records say.",
    "failed": "Migration {mid} failed before it finished; its instances are as the records say.",
}
# a revert (back to on-demand) says so where its words differ from a migration's
REVERT_HEADLINES: dict[Outcome, str] = {
    "completed": "Revert {mid} completed: {migrated} instance(s) run on-demand again.",
    "rolled_back": "Revert {mid} was rolled back: its instances run on Spot as before.",
    "nothing_to_migrate": "Revert {mid} found nothing to move back to on-demand.",
}


class Realised(BaseModel):
    """Monthly savings as the fleet runs now: each replacement priced by the market it runs in
    (today's Spot price of its pool, or the on-demand price of a fallback), less what the
    stopped originals' volumes cost on."""

    instances: int = 0
    groups: int = 0  # Auto Scaling groups, each as it runs now (its members' markets and types)
    on_spot: int = 0
    on_demand_fallbacks: int = 0
    monthly_on_demand: float = 0.0  # what the originals cost before
    monthly_spot: float = 0.0  # what the replacements cost now (a fallback at its on-demand price)
    monthly_stopped_storage: float = 0.0
    monthly_savings: float = 0.0
    savings_pct: float = 0.0

    @classmethod
    def of(cls, migrated: list[InstanceRecord], prices: Mapping[tuple[str, str], SpotPriceStat]) -> Realised:
        """``prices``: today's statistics per pool; a pool without any keeps the price it was launched at."""
        before = sum(r.on_demand_hourly or 0.0 for r in migrated) * HOURS_PER_MONTH
        now = sum(_hourly_now(r, prices) * HOURS_PER_MONTH for r in migrated)
        storage = sum(r.stopped_storage_monthly for r in migrated)
        savings = before - now - storage
        fallbacks = sum(1 for r in migrated if r.replacement_market == "on-demand")
        return cls(
            instances=len(migrated), on_spot=len(migrated) - fallbacks, on_demand_fallbacks=fallbacks,
            monthly_on_demand=round(before, 2), monthly_spot=round(now, 2), monthly_stopped_storage=round(storage, 2),
            monthly_savings=round(savings, 2), savings_pct=_pct(savings, before),
        )

    def with_groups(self, groups: list[tuple[float, float]]) -> Realised:
        """These savings with the migrated Auto Scaling groups' ((on-demand before, cost now) each)."""
        if not groups:
            return self
        before = self.monthly_on_demand + sum(b for b, _ in groups)
        now = self.monthly_spot + sum(n for _, n in groups)
        savings = before - now - self.monthly_stopped_storage
        return self.model_copy(update={"groups": self.groups + len(groups), "monthly_on_demand": round(before, 2),
                                       "monthly_spot": round(now, 2), "monthly_savings": round(savings, 2),
                                       "savings_pct": _pct(savings, before)})

    def with_storage(self, monthly_storage: float) -> Realised:
        """These savings once what the stopped originals leave behind costs `monthly_storage` (their
        volumes retired into snapshots)."""
        savings = self.monthly_on_demand - self.monthly_spot - monthly_storage
        return self.model_copy(update={"monthly_stopped_storage": round(monthly_storage, 2),
                                       "monthly_savings": round(savings, 2),
                                       "savings_pct": _pct(savings, self.monthly_on_demand)})

    def drifted(self, monthly_spot: float, fallbacks: int) -> Realised:
        """These savings after interruptions changed what the replacements cost by `monthly_spot`
        and moved `fallbacks` of them to on-demand (negative: back to Spot)."""
        spot, savings = self.monthly_spot + monthly_spot, self.monthly_savings - monthly_spot
        return self.model_copy(update={
            "monthly_spot": round(spot, 2), "monthly_savings": round(savings, 2),
            "on_demand_fallbacks": self.on_demand_fallbacks + fallbacks, "on_spot": self.on_spot - fallbacks,
            "savings_pct": _pct(savings, self.monthly_on_demand)})


# What interruptions changed in a migration's realised savings since it completed: top-level
# numbers of the migration item (DynamoDB adds to those in place, without reading the item),
# reset when the migration completes (its realised savings are computed from the records then).
DRIFT_MONTHLY_SPOT, DRIFT_FALLBACKS = "realised_drift_monthly_spot", "realised_drift_fallbacks"
NO_DRIFT = {DRIFT_MONTHLY_SPOT: 0, DRIFT_FALLBACKS: 0}


def realised_now(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """A completed migration's realised savings as its fleet runs now: as computed when it
    completed, and what interruptions changed since."""
    stored = item.get("realised")
    if not stored:
        return None
    realised = Realised.model_validate(stored).drifted(float(item.get(DRIFT_MONTHLY_SPOT) or 0),
                                                       int(item.get(DRIFT_FALLBACKS) or 0))
    return realised.model_dump()


def _pct(savings: float, before: float) -> float:
    return round(100 * savings / before, 1) if before else 0.0


def _hourly_now(record: InstanceRecord, prices: Mapping[tuple[str, str], SpotPriceStat]) -> float:
    if record.replacement_market == "on-demand":  # a fallback: its own on-demand price (same type as the original)
        return record.replacement_spot_hourly or record.on_demand_hourly or 0.0
    stat = prices.get((record.replacement_type or "", record.replacement_az or ""))
    return stat.median if stat else record.replacement_spot_hourly or 0.0


class FinalOutcome(BaseModel):
    status: Outcome
    realised: Realised | None = None
    locks_released: int = 0
