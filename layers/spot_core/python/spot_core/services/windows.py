"""Scheduled on-demand windows (domain/windows.py): a migration that completes with windows
gets two EventBridge Scheduler schedules per window; at a window's start one reverts the
migration's instances to on-demand, at its end the other returns them to Spot.

Both are migrations of their own (waves, bakes and gates as the migration's, approved in
advance by the window itself), started under ids derived from the window and the scheduled
time, so a schedule that fires twice starts nothing new. Which migration holds the instances
now (the migration, then each return) is kept on the migration's item (`windows_state`), so
the next window reverts the right one. A window that closes before its revert has completed
(or opens before the last return has) is remembered as pending: the success of that revert (or
return), which reaches this function too, starts what is due.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..domain.clock import Clock, iso
from ..domain.errors import MigrationConflict
from ..domain.outcomes import has_ended
from ..domain.request import MigrationRequest, RevertMigration, Selector, StartMigration
from ..domain.windows import OnDemandWindow, WindowAction, schedule_name
from ..ports import MigrationRepository, PlanRepository, Schedules
from .migrations import Migrations

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"  # Scheduler puts the occurrence's time there
HISTORY_KEPT = 20


@dataclass
class Windows:
    operator: Migrations  # starts reverts and migrations as the API does
    migrations: MigrationRepository
    plans: PlanRepository
    schedules: Schedules
    clock: Clock

    # --- a migration that ended well ---------------------------------------------------------
    def execution_succeeded(self, migration_id: str, own_arn: str) -> dict[str, Any]:
        """A migration completed: its windows get their schedules; a revert or return a window
        waited for lets it go on."""
        item = self.migrations.get_many([migration_id], consistent=True).get(migration_id)
        if not item or item.get("status") != "completed":
            return {"migration_id": migration_id, "scheduled": []}
        request = MigrationRequest.model_validate(item.get("request") or {})
        scheduled = self._schedule(migration_id, request.windows, own_arn)
        resumed = self._resume(migration_id, item)
        return {"migration_id": migration_id, "scheduled": scheduled, "resumed": resumed}

    def _schedule(self, migration_id: str, windows: list[OnDemandWindow], own_arn: str) -> list[str]:
        names = []
        for window in windows:
            for action in ("open", "close"):
                name = schedule_name(migration_id, window.name, action)
                payload = {"migration_id": migration_id, "window": window.name, "action": action,
                           "scheduled_time": SCHEDULED_TIME}
                self.schedules.put(name, window.expression(action), window.timezone, payload, own_arn,
                                   f"spot-migration {migration_id}: window {window.name} {action}s")
                names.append(name)
        return names

    def _resume(self, finished_id: str, item: Mapping[str, Any]) -> str | None:
        """The migration whose windows waited for `finished_id` (a window's revert or return)."""
        owner = (item.get("request") or {}).get("window_of")
        if not owner:
            return None
        source = self.migrations.get(owner)
        state = dict(source.get("windows_state") or {})
        if state.get("pending") == {"after": finished_id, "action": "close"}:
            return self._close(owner, source, state, state.get("open") or "", state.get("pending_at") or "")
        if state.get("pending") == {"after": finished_id, "action": "open"}:
            return self._open(owner, source, state, state.get("pending_window") or "", state.get("pending_at") or "")
        return None

    # --- a schedule fired ---------------------------------------------------------------------
    def fire(self, migration_id: str, window: str, action: WindowAction, scheduled_time: str) -> str | None:
        """The id of the revert or return started (None: nothing was due)."""
        item = self.migrations.get(migration_id)
        request = MigrationRequest.model_validate(item.get("request") or {})
        if window not in {w.name for w in request.windows}:
            return None  # a schedule of a window the migration no longer has
        state = dict(item.get("windows_state") or {})
        if action == "open":
            return self._open(migration_id, item, state, window, scheduled_time)
        return self._close(migration_id, item, state, window, scheduled_time)

    def _open(self, migration_id: str, item: Mapping[str, Any], state: dict[str, Any], window: str,
              at: str) -> str | None:
        if state.get("open"):  # this window's revert already started, or another window holds them on-demand
            return None
        current = state.get("current") or migration_id
        holder = self.migrations.get(current)
        if not has_ended(holder):  # the last return is still moving them: open once it completes
            self._save(migration_id, state, pending={"after": current, "action": "open"}, pending_window=window,
                       pending_at=at)
            return None
        revert_id = _occurrence_id(migration_id, window, at, "open")
        request = MigrationRequest.model_validate(item.get("request") or {})
        body = RevertMigration(migration_id=revert_id, waves=request.waves, bake_seconds=request.bake_seconds,
                               quality=request.quality, approval={"auto_approve": True},
                               wave_success_ratio=request.wave_success_ratio)
        try:
            start = self.operator.revert_request(current, body)
        except MigrationConflict as refused:  # the holder did not complete: nothing is on Spot to revert
            self._save(migration_id, state, pending=None, note=f"{window} opened at {at}: nothing to revert "
                       f"({refused})")
            return None
        self.operator.start(start.model_copy(update={"window_of": migration_id}))
        self._save(migration_id, state, open=window, revert_id=revert_id, pending=None,
                   note=f"{window} opened at {at}: revert {revert_id}")
        return revert_id

    def _close(self, migration_id: str, item: Mapping[str, Any], state: dict[str, Any], window: str,
               at: str) -> str | None:
        revert_id = state.get("revert_id")
        if state.get("open") != window or not revert_id:
            return None  # never opened (or closed already)
        revert = self.migrations.get_many([revert_id], consistent=True).get(revert_id) or {}
        if not has_ended(revert):  # still moving them to on-demand: return once it completes
            self._save(migration_id, state, pending={"after": revert_id, "action": "close"}, pending_at=at)
            return None
        on_demand = self._on_demand(revert_id, revert)
        if not on_demand:
            self._save(migration_id, state, open=None, pending=None,
                       note=f"{window} closed at {at}: revert {revert_id} ended {revert.get('status')}; nothing "
                            "to return")
            return None
        return_id = _occurrence_id(migration_id, window, at, "close")
        request = MigrationRequest.model_validate(item.get("request") or {})
        start = StartMigration.model_validate({
            **request.model_dump(exclude={"selector", "windows", "revert", "approval", "window_of"}),
            "migration_id": return_id, "selector": Selector(instance_ids=on_demand).model_dump(),
            "approval": {"auto_approve": True}, "window_of": migration_id})
        self.operator.start(start)
        self._save(migration_id, state, open=None, current=return_id, return_id=return_id, pending=None,
                   note=f"{window} closed at {at}: return to Spot {return_id}")
        return return_id

    def _on_demand(self, revert_id: str, revert: Mapping[str, Any]) -> list[str]:
        """The on-demand instances a completed revert runs (none unless it completed)."""
        if revert.get("status") != "completed":
            return []
        return sorted(r.replacement for r in self.plans.records(revert_id) if r.status == "migrated")

    def _save(self, migration_id: str, state: dict[str, Any], note: str | None = None, **changes: Any) -> None:
        state.update(changes)
        if note:
            state["history"] = [*state.get("history", []), {"at": iso(self.clock.now()), "note": note}][-HISTORY_KEPT:]
        self.migrations.update(migration_id, windows_state=state)


def _occurrence_id(migration_id: str, window: str, scheduled_time: str, action: WindowAction) -> str:
    """One id per window occurrence and side: the same schedule firing again starts nothing new."""
    try:
        stamp = f"{datetime.fromisoformat(scheduled_time.replace('Z', '+00:00')):%Y%m%d%H%M}"
    except ValueError:
        stamp = hashlib.sha256(scheduled_time.encode()).hexdigest()[:12]
    digest = hashlib.sha256(migration_id.encode()).hexdigest()[:6]
    return f"w-{migration_id[:16]}-{digest}-{window}-{stamp}-{action}"
