"""Finalize: the end of a migration, whatever way it ends: status, realised savings,
notification."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..domain.asg import GroupRecord, realised_group
from ..domain.clock import Clock, iso
from ..domain.locks import DEFAULT_ROLLBACK_COOLDOWN_SECONDS
from ..domain.outcomes import (
    COOLED_DOWN,
    HEADLINES,
    NO_DRIFT,
    REVERT_HEADLINES,
    UNFINISHED,
    WITH_RECORDS,
    FinalOutcome,
    Outcome,
    Realised,
)
from ..domain.plan import IN_FLIGHT, ROLLBACK_SCOPE, InstanceRecord
from ..domain.request import MigrationRequest
from ..domain.retention import Retention
from ..ports import AutoScaling, Fleet, InstanceLocks, MigrationRepository, Notifier, PlanRepository, SpotPrices

REALISED_LOOKBACK_HOURS = 6
# how a revert ends for which its Spot instances are settled (by the finalize or rollback function; an
# execution that ended any other way leaves them as its records say)
REVERT_SETTLED = ("completed", "rolled_back", "rollback_failed")
NEEDS_ATTENTION_SHOWN = 50
DETAIL_KEPT = ("approved", "decided_by", "decided_at", "reason", "vetoed_by", "Error", "Cause")


def _touched_by_rollback(record: InstanceRecord, outcome: str) -> bool:
    """Restored or not, an instance a rollback dealt with cools down; so does one a failed
    rollback never reached (its replacement may still run)."""
    if record.status in ("rolled_back", "rollback_failed"):
        return True
    return outcome in COOLED_DOWN and record.status in ROLLBACK_SCOPE and bool(record.replacement_id)


def _settles_on_demand(record: InstanceRecord) -> bool:
    """A revert's record whose on-demand instance serves for good: swapped in, or kept by a rollback."""
    return record.status == "migrated" or (record.status == "rollback_failed" and bool(record.replacement_id))


def _attention_items(records: list[InstanceRecord]) -> list[dict[str, Any]]:
    """Each instance not back as it was, for the migration item: original, replacement, why."""
    return [{"instance_id": r.instance_id, "replacement_id": r.replacement_id, "status": r.status,
             "reason": r.attempts[-1] if r.attempts else None}
            for r in records if r.replacement_id and r.status in (*ROLLBACK_SCOPE, "rollback_failed")
            ][:NEEDS_ATTENTION_SHOWN]


def _needs_attention(records: list[InstanceRecord]) -> list[str]:
    """Every instance a failed rollback did not restore: those it gave up on, with the reason,
    and those it never reached (the rollback itself failed)."""
    kept = [f"Needs attention: {r.instance_id}: {r.attempts[-1] if r.attempts else 'not restored'}"
            for r in records if r.status == "rollback_failed"]
    unreached = [f"Needs attention: {r.instance_id} was not rolled back ({r.status}); its replacement "
                 f"{r.replacement_id} may still run" for r in records
                 if r.status in ROLLBACK_SCOPE and r.replacement_id]
    return (kept + unreached)[:NEEDS_ATTENTION_SHOWN]


def _unfinished_lines(records: list[InstanceRecord]) -> list[str]:
    """Where each instance was left when the execution ended without its own last step."""
    migrated = [r for r in records if r.status == "migrated"]
    in_flight = [r for r in records if r.status in IN_FLIGHT and r.replacement_id]
    lines = [f"{len(migrated)} instance(s) run on Spot (their replacements are recorded and managed)"]
    lines += [f"In flight: {r.instance_id} still serves; its replacement {r.replacement_id} was launched "
              f"but not swapped in" for r in in_flight][:NEEDS_ATTENTION_SHOWN]
    return lines


def money(value: float) -> str:
    return f"${value:,.2f}"


def safe_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the small, non-secret parts of a state's detail."""
    return {k: (str(v)[:1000] if isinstance(v, str) else v) for k, v in detail.items() if k in DETAIL_KEPT}


@dataclass
class Finalize:
    migrations: MigrationRepository
    plans: PlanRepository
    notifier: Notifier
    spot_prices: SpotPrices
    locks: InstanceLocks
    clock: Clock
    autoscaling: AutoScaling
    cooldown_seconds: int = DEFAULT_ROLLBACK_COOLDOWN_SECONDS
    fleet: Fleet | None = None  # a completed revert terminates the Spot instances it took over from

    def finish(self, migration_id: str, outcome: Outcome, detail: Mapping[str, Any] | None) -> FinalOutcome:
        item = self.migrations.get(migration_id)
        records = self.plans.records(migration_id) if outcome in WITH_RECORDS else []
        realised = self.realised_savings(records).with_groups(self._groups_now(migration_id, item)) \
            if outcome == "completed" else None
        request = MigrationRequest.model_validate(item.get("request") or {})
        if outcome in REVERT_SETTLED and request.revert is not None:
            self._retire_reverted(migration_id, request.revert.migration_id, records)
        fields: dict[str, Any] = {"status": outcome, "finished_at": iso(self.clock.now())}
        if realised is not None:
            fields.update(realised=realised.model_dump(), retention=Retention.starting(
                self.clock.now(), request.retention_days).model_dump(), **NO_DRIFT)
        if detail:
            fields["outcome_detail"] = safe_detail(detail)
        if outcome == "rollback_failed" or outcome in UNFINISHED.values():
            fields["needs_attention"] = _attention_items(records)
        # Locks first: once the item says the migration ended, another analysis may take over
        # what it still holds, and would skip the cooldown.
        released = self.release(migration_id, outcome, records)
        self.migrations.update(migration_id, **fields)
        self._notify(migration_id, outcome, item, records, realised)
        return FinalOutcome(status=outcome, realised=realised, locks_released=released)

    def _retire_reverted(self, migration_id: str, source_id: str, records: list[InstanceRecord]) -> None:
        """A revert that ended: the Spot instances its on-demand ones took over from (kept running
        for a rollback until now) are terminated, and the migration it reverted says so on each
        record (a revert of it again finds nothing more to take); so is a Spot instance its
        rollback could not bring back (the on-demand one it keeps serves instead)."""
        by_spot = {r.instance_id: r for r in records if _settles_on_demand(r)}
        if not by_spot:
            return
        if self.fleet is None:
            raise RuntimeError("Finalize needs the fleet to end a revert")
        self.fleet.cancel_spot_requests(list(by_spot))
        self.fleet.terminate(list(by_spot))
        following = [s for s in self.plans.records(source_id)
                     if s.replacement_id in by_spot and s.reverted_by != migration_id]
        for source in following:
            source.revert_done(migration_id, by_spot[source.replacement])
        self.plans.put_records(source_id, following)  # in batches

    def release(self, migration_id: str, outcome: str, records: list[InstanceRecord] | None = None) -> int:
        """Give back the migration's instance locks; after a rollback, the instances it touched
        cool down before a new plan may take them."""
        if records is None:
            records = self.plans.records(migration_id) if outcome in WITH_RECORDS else []
        touched = [r.instance_id for r in records if _touched_by_rollback(r, outcome)]
        if not touched:
            return self.locks.release(migration_id)
        until = self.clock.now() + timedelta(seconds=self.cooldown_seconds)
        return self.locks.release(migration_id, until, touched)

    def realised_savings(self, records: list[InstanceRecord]) -> Realised:
        """Monthly savings at today's Spot prices of the pools the replacements actually run in."""
        migrated = [r for r in records if r.status == "migrated" and r.replacement_type]
        if not migrated:
            return Realised()
        types = sorted({r.replacement_type for r in migrated if r.replacement_type})
        return Realised.of(migrated, self.spot_prices.statistics(types, self.clock.now(), REALISED_LOOKBACK_HOURS))

    def _groups_now(self, migration_id: str, item: Mapping[str, Any]) -> list[tuple[float, float]]:
        """Each migrated group's monthly cost before and as it runs now (nothing read without groups)."""
        migrated = self._migrated_groups(migration_id, item)
        if not migrated:
            return []
        facts = {f.name: f for f in self.autoscaling.find(names=[g.name for g in migrated])}
        types = sorted({t for f in facts.values() for t in f.instance_types})
        prices = self.spot_prices.statistics(types, self.clock.now(), REALISED_LOOKBACK_HOURS)
        return [realised_group(g, facts[g.name], prices) for g in migrated if g.name in facts]

    def _migrated_groups(self, migration_id: str, item: Mapping[str, Any]) -> list[GroupRecord]:
        if not (item.get("summary") or {}).get("groups"):
            return []
        return [g for g in self.plans.groups(migration_id) if g.status == "migrated"]

    def _notify(self, migration_id: str, outcome: Outcome, item: dict[str, Any], records: list[InstanceRecord],
                realised: Realised | None) -> None:
        summary = item.get("summary", {})
        migrated = realised.instances if realised else 0
        lines = [f"Plan: {summary.get('candidates', 0)} candidate(s), "
                 f"estimated {money(summary.get('monthly_savings', 0))}/month"]
        if realised:
            groups = f" and {realised.groups} Auto Scaling group(s)" if realised.groups else ""
            lines.append(f"Realised: {money(realised.monthly_savings)}/month ({realised.savings_pct} %) "
                         f"on {migrated} instance(s){groups}, net of {money(realised.monthly_stopped_storage)}/month "
                         f"for the stopped originals' volumes")
        if outcome == "rollback_failed":
            lines += _needs_attention(records)
        if outcome in UNFINISHED.values():
            lines += _unfinished_lines(records)
        headlines = REVERT_HEADLINES if (item.get("request") or {}).get("revert") else {}
        headline = headlines.get(outcome, HEADLINES[outcome])
        self.notifier.publish(
            migration_id, outcome.replace("_", "-"), headline.format(mid=migration_id, migrated=migrated),
            lines, {"status": outcome, "realised": realised.model_dump() if realised else None,
                    "summary": item.get("summary")},
        )
