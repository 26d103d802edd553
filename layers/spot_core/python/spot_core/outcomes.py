"""The end of a migration: status, realised savings, notification, metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .notify import Notifier, money
from .pricing import HOURS_PER_MONTH, fetch_spot_price_history, spot_price_statistics
from .store import MigrationStore

STATUS = {
    "completed": "completed", "vetoed": "vetoed", "rejected": "rejected", "approval_timed_out": "approval_timed_out",
    "nothing_to_migrate": "nothing_to_migrate", "planned": "planned", "rollback_failed": "rollback_failed",
    "rolled_back": "rolled_back",
}
HEADLINES = {
    "completed": "Migration {mid} completed: {migrated} instance(s) now run on Spot.",
    "vetoed": "Migration {mid} was vetoed by the agent review; nothing was changed.",
    "rejected": "Migration {mid} was rejected; nothing was changed.",
    "approval_timed_out": "Migration {mid} timed out waiting for approval; nothing was changed.",
    "nothing_to_migrate": "Migration {mid} found nothing to migrate.",
    "planned": "Dry run {mid}: the plan is ready; nothing was changed.",
    "rollback_failed": "Migration {mid}: ROLLBACK INCOMPLETE, some instances need attention.",
    "rolled_back": "Migration {mid} was rolled back: the fleet is back on on-demand.",
}


def realised_savings(records: list, ec2: Any, now: datetime) -> dict:
    """Monthly savings at today's Spot prices of the pools the replacements actually run in."""
    migrated = [r for r in records if r.status == "migrated" and r.replacement_type]
    if not migrated:
        return {"instances": 0, "monthly_on_demand": 0.0, "monthly_spot": 0.0, "monthly_savings": 0.0, "savings_pct": 0.0}
    stats = spot_price_statistics(fetch_spot_price_history(ec2, sorted({r.replacement_type for r in migrated}), now, lookback_hours=6), now)
    od = sum(r.on_demand_hourly for r in migrated) * HOURS_PER_MONTH
    spot = 0.0
    for r in migrated:
        stat = stats.get((r.replacement_type, r.replacement_az))
        spot += (stat.median if stat else r.replacement_spot_hourly) * HOURS_PER_MONTH
    return {
        "instances": len(migrated), "monthly_on_demand": round(od, 2), "monthly_spot": round(spot, 2),
        "monthly_savings": round(od - spot, 2), "savings_pct": round(100 * (od - spot) / od, 1) if od else 0.0,
    }


def finish(migration_id: str, outcome: str, detail: dict | None, *, store: MigrationStore, notifier: Notifier,
           ec2: Any, now: datetime) -> dict:
    item = store.get(migration_id)
    records = store.records(migration_id) if outcome in ("completed", "rolled_back", "rollback_failed") else []
    realised = realised_savings(records, ec2, now) if outcome == "completed" else None
    fields: dict[str, Any] = {"status": STATUS[outcome], "finished_at": now.isoformat(timespec="seconds")}
    if realised is not None:
        fields["realised"] = realised
    if detail:
        fields["outcome_detail"] = _safe_detail(detail)
    store.update(migration_id, **fields)
    migrated = realised["instances"] if realised else 0
    lines = [f"Plan: {item.get('summary', {}).get('candidates', 0)} candidate(s), "
             f"estimated {money(item.get('summary', {}).get('monthly_savings', 0))}/month"]
    if realised:
        lines.append(f"Realised: {money(realised['monthly_savings'])}/month ({realised['savings_pct']} %) on {migrated} instance(s)")
    if outcome == "rollback_failed":
        lines += [f"Needs attention: {r.instance_id} (Spot {r.replacement_id} kept serving)" for r in records if r.status == "rollback_failed"][:50]
    notifier.publish(migration_id, outcome.replace("_", "-"), HEADLINES[outcome].format(mid=migration_id, migrated=migrated),
                     lines, {"status": STATUS[outcome], "realised": realised, "summary": item.get("summary")})
    return {"status": STATUS[outcome], "realised": realised}


def _safe_detail(detail: dict) -> dict:
    """Keep only the small, non-secret parts of a state's detail."""
    keep = ("approved", "decided_by", "decided_at", "reason", "vetoed_by", "Error", "Cause")
    return {k: (str(v)[:1000] if isinstance(v, str) else v) for k, v in detail.items() if k in keep}
