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
from ..domain.tags import OPT_IN_TAG, REVERTED_BY_TAG
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
        pending = self._settle(state)
        if pending == {"after": finished_id, "action": "close"}:
            return self._close(owner, source, state, state.get("open") or "", state.get("pending_at") or "")
        if pending == {"after": finished_id, "action": "open"}:
            return self._open(owner, source, state, state.get("pending_window") or "", state.get("pending_at") or "")
        self._save(owner, state)
        return None

    # --- a schedule fired ---------------------------------------------------------------------
    def fire(self, migration_id: str, window: str, action: WindowAction, scheduled_time: str) -> str | None:
        """The id of the revert or return started (None: nothing was due)."""
        item = self.migrations.get(migration_id)
        request = MigrationRequest.model_validate(item.get("request") or {})
        if window not in {w.name for w in request.windows}:
            return None  # a schedule of a window the migration no longer has
        state = dict(item.get("windows_state") or {})
        self._settle(state)
        if action == "open":
            return self._open(migration_id, item, state, window, scheduled_time)
        return self._close(migration_id, item, state, window, scheduled_time)

    def _settle(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """What ended since the last look: a return that completed holds the instances now; one that
        did not leaves the window open (its next end returns them again); a revert that did not
        complete closes its window (nothing went on-demand). The pending step, taken off the state."""
        returning = state.get("returning")
        if returning:
            ended = self._ended(returning)
            if ended is not None:
                state.update(returning=None, **({"open": None, "current": returning} if ended == "completed" else {}))
        elif state.get("open"):
            ended = self._ended(state.get("revert_id") or "")
            if ended not in (None, "completed"):
                state["open"] = None
                self._note(state, f"revert {state.get('revert_id')} ended {ended}: nothing went on-demand, nothing "
                                  "to return")
        pending = state.get("pending")
        state["pending"] = None
        return pending if isinstance(pending, dict) else None

    def _ended(self, migration_id: str) -> str | None:
        """How a window's revert or return ended (None: it has not). One refused before it wrote
        anything has no item and no running execution."""
        item = self.migrations.get_many([migration_id], consistent=True).get(migration_id)
        if item is not None:
            return str(item.get("status")) if has_ended(item) else None
        execution = self.operator.executions.describe(migration_id)
        return None if execution is not None and execution.get("status") == "RUNNING" else "failed"

    def _open(self, migration_id: str, item: Mapping[str, Any], state: dict[str, Any], window: str,
              at: str) -> str | None:
        if state.get("open") and not state.get("returning"):  # its revert started, or another window's holds them
            self._save(migration_id, state)
            return None
        moving = state.get("returning") or (state.get("current") or migration_id)
        if self._ended(moving) is None:  # the last return (or the migration) still moves them: once it ends
            self._save(migration_id, state, pending={"after": moving, "action": "open"}, pending_window=window,
                       pending_at=at)
            return None
        revert_id = _occurrence_id(migration_id, window, at, "open")
        request = MigrationRequest.model_validate(item.get("request") or {})
        body = RevertMigration(migration_id=revert_id, waves=request.waves, bake_seconds=request.bake_seconds,
                               quality=request.quality, approval={"auto_approve": True},
                               wave_success_ratio=request.wave_success_ratio)
        try:
            start = self.operator.revert_request(state.get("current") or migration_id, body)
        except MigrationConflict as refused:  # the holder did not complete: nothing is on Spot to revert
            self._save(migration_id, state, note=f"{window} opened at {at}: nothing to revert ({refused})")
            return None
        self.operator.start(start.model_copy(update={"window_of": migration_id}))
        self._save(migration_id, state, open=window, revert_id=revert_id, note=f"{window} opened at {at}: revert "
                   f"{revert_id}")
        return revert_id

    def _close(self, migration_id: str, item: Mapping[str, Any], state: dict[str, Any], window: str,
               at: str) -> str | None:
        revert_id = state.get("revert_id")
        if state.get("open") != window or not revert_id or state.get("returning"):
            self._save(migration_id, state)  # not open (never, or its revert did not complete), or returning now
            return None
        if self._ended(revert_id) is None:  # still moving them to on-demand: return once it completes
            self._save(migration_id, state, pending={"after": revert_id, "action": "close"}, pending_at=at)
            return None
        return_id = _occurrence_id(migration_id, window, at, "close")
        request = MigrationRequest.model_validate(item.get("request") or {})
        # the revert's on-demand instances as they are then (one terminated or opted out since is not asked for)
        selector = Selector(tags={REVERTED_BY_TAG: revert_id, OPT_IN_TAG: "true"})
        start = StartMigration.model_validate({
            **request.model_dump(exclude={"selector", "windows", "revert", "approval", "window_of"}),
            "migration_id": return_id, "selector": selector.model_dump(), "approval": {"auto_approve": True},
            "window_of": migration_id})
        self.operator.start(start)
        self._save(migration_id, state, returning=return_id, return_id=return_id,
                   note=f"{window} closed at {at}: return to Spot {return_id}")
        return return_id

    def _save(self, migration_id: str, state: dict[str, Any], note: str | None = None, **changes: Any) -> None:
        state.update(changes)
        if note:
            self._note(state, note)
        self.migrations.update(migration_id, windows_state=state)

    def _note(self, state: dict[str, Any], note: str) -> None:
        state["history"] = [*state.get("history", []), {"at": iso(self.clock.now()), "note": note}][-HISTORY_KEPT:]


def _occurrence_id(migration_id: str, window: str, scheduled_time: str, action: WindowAction) -> str:
    """One id per window occurrence and side: the same schedule firing again starts nothing new."""
    try:
        stamp = f"{datetime.fromisoformat(scheduled_time.replace('Z', '+00:00')):%Y%m%d%H%M}"
    except ValueError:
        stamp = hashlib.sha256(scheduled_time.encode()).hexdigest()[:12]
    digest = hashlib.sha256(migration_id.encode()).hexdigest()[:6]
    return f"w-{migration_id[:16]}-{digest}-{window}-{stamp}-{action}"
