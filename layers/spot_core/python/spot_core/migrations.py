"""The operator's view of migrations: start, list, inspect, decide, read the plan.

One service behind both the migrations API (its Lambda) and spotctl (against a deployed
stack or the embedded runtime). A migration is a Step Functions execution (its name is the
migration id) plus the migration item the workflow keeps in DynamoDB; this module joins the
two. It takes its clients as arguments and holds no AWS configuration of its own.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from .api_models import (
    EXECUTION_STATUSES, MIGRATION_STATUSES, DecisionResult, MigrationDetail, MigrationPage, MigrationSummary,
    PlanEntry, PlanPage, Started, StartMigration, WaveProgress,
)
from . import approvals
from .aws import error_code, transient_errors
from .errors import InvalidMigrationRequest, MigrationConflict, MigrationNotFound
from .models import InstanceRecord, check_migration_id
from .store import MigrationStore

MAX_PAGE = 100


class Migrations:
    def __init__(self, *, sfn: Any, store: MigrationStore, state_machine_arn: str):
        self.sfn, self.store, self.state_machine_arn = sfn, store, state_machine_arn

    def execution_arn(self, migration_id: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{migration_id}"

    # --- start ------------------------------------------------------------------------
    def start(self, body: StartMigration) -> Started:
        """Start the execution named after the migration id. The same request again is
        answered with the running (or finished) execution; another request under a used id
        is a MigrationConflict."""
        migration_id = check_migration_id(body.migration_id or new_migration_id())
        execution_input = json.dumps(body.model_dump(mode="json", exclude={"migration_id"}), sort_keys=True)
        existing = self._describe(migration_id)
        if existing is None:
            try:
                with transient_errors():
                    started = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=migration_id, input=execution_input)
                return Started(migration_id=migration_id, execution_arn=started["executionArn"],
                               started_at=_iso(started["startDate"]), created=True)
            except Exception as exc:
                if error_code(exc) != "ExecutionAlreadyExists":  # a concurrent start won the race
                    raise
            existing = self._describe(migration_id) or {}
        if json.loads(existing.get("input") or "{}") != json.loads(execution_input):
            raise MigrationConflict(f"migration id {migration_id!r} is already used by a different request")
        return Started(migration_id=migration_id, execution_arn=existing["executionArn"],
                       started_at=_iso(existing["startDate"]), created=False)

    # --- read ---------------------------------------------------------------------------
    def list(self, status: str | None = None, limit: int = 20, next_token: str | None = None) -> MigrationPage:
        """Newest first. `status` is an execution status (RUNNING, FAILED, ...) or a
        migration status (awaiting_approval, completed, rolled_back, ...)."""
        limit = _limit(limit)
        if status and status.upper() in EXECUTION_STATUSES:
            return self._list_executions(status.upper(), limit, next_token)
        if status and status not in MIGRATION_STATUSES:
            raise InvalidMigrationRequest(
                f"unknown status {status!r}: use one of {', '.join(EXECUTION_STATUSES + MIGRATION_STATUSES)}")
        if status is None:
            return self._list_executions(None, limit, next_token)
        with _token_errors():
            items, last = self.store.migrations_page(limit, _decode(next_token), status)
        return MigrationPage(items=[_summary(i["migration_id"], i, self._describe(i["migration_id"])) for i in items],
                             next_token=_encode(last))

    def _list_executions(self, status: str | None, limit: int, next_token: str | None) -> MigrationPage:
        kwargs: dict[str, Any] = {"stateMachineArn": self.state_machine_arn, "maxResults": limit}
        if status:
            kwargs["statusFilter"] = status
        if next_token:
            kwargs["nextToken"] = (_decode(next_token) or {}).get("sfn")
            if not isinstance(kwargs["nextToken"], str):  # a DynamoDB key or a forged token
                raise InvalidMigrationRequest("next_token is not valid")
        try:
            with transient_errors():
                page = self.sfn.list_executions(**kwargs)
        except Exception as exc:
            if error_code(exc) == "InvalidToken":
                raise InvalidMigrationRequest("next_token is not valid (it expires after 24 hours)") from None
            raise
        executions = page.get("executions", [])
        items = self.store.get_many([e["name"] for e in executions])
        return MigrationPage(
            items=[_summary(e["name"], items.get(e["name"], {}), e) for e in executions],
            next_token=_encode({"sfn": page["nextToken"]}) if page.get("nextToken") else None,
        )

    def get(self, migration_id: str) -> MigrationDetail:
        check_migration_id(migration_id)
        execution = self._describe(migration_id)
        try:
            item = self.store.get(migration_id)
        except MigrationNotFound:
            if execution is None:
                raise
            item = {}
        running = execution is not None and execution["status"] == "RUNNING"
        waves = wave_progress(item)
        detail = _summary(migration_id, item, execution).model_dump()
        detail.update(
            current_state=self.current_state(migration_id) if running else None,
            current_wave=next((w.index for w in waves if w.state in ("migrating", "baking")), None) if running else None,
            error=(execution or {}).get("error"), cause=_short((execution or {}).get("cause")),
            request=item.get("request") or _input(execution), summary=item.get("summary"), realised=item.get("realised"),
            waves=waves, verdicts=item.get("verdicts", []), failure=item.get("failure"),
            approval=_public_approval(item.get("approval")),
        )
        return MigrationDetail.model_validate(detail)

    def plan(self, migration_id: str, limit: int = MAX_PAGE, next_token: str | None = None) -> PlanPage:
        check_migration_id(migration_id)
        with _token_errors():
            records, last = self.store.records_page(migration_id, _limit(limit), _decode(next_token))
        if not records and not next_token:
            self.store.get(migration_id)  # an empty first page: MigrationNotFound unless the migration exists
        return PlanPage(migration_id=migration_id, items=[_plan_entry(r) for r in records], next_token=_encode(last))

    def history(self, migration_id: str) -> list[dict]:
        """The execution's events, oldest first."""
        check_migration_id(migration_id)
        events, kwargs = [], {"executionArn": self.execution_arn(migration_id), "maxResults": 1000}
        while True:
            try:
                with transient_errors():
                    page = self.sfn.get_execution_history(**kwargs)
            except Exception as exc:
                if error_code(exc) == "ExecutionDoesNotExist":
                    raise MigrationNotFound(f"no migration {migration_id!r}") from None
                raise
            events += page["events"]
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def current_state(self, migration_id: str) -> str | None:
        """The state the execution is in now: the latest state entered and not yet left."""
        with transient_errors():
            events = self.sfn.get_execution_history(executionArn=self.execution_arn(migration_id),
                                                    reverseOrder=True, maxResults=50)["events"]
        left: set[str] = set()
        for event in sorted(events, key=lambda e: e["id"], reverse=True):  # newest first, whatever the server's order
            if "stateExitedEventDetails" in event:
                left.add(event["stateExitedEventDetails"]["name"])
            elif "stateEnteredEventDetails" in event:
                name = event["stateEnteredEventDetails"]["name"]
                if name not in left:
                    return name
                left.discard(name)
        return None

    def definition(self) -> dict:
        with transient_errors():
            return json.loads(self.sfn.describe_state_machine(stateMachineArn=self.state_machine_arn)["definition"])

    def _describe(self, migration_id: str) -> dict | None:
        try:
            with transient_errors():
                return self.sfn.describe_execution(executionArn=self.execution_arn(migration_id))
        except Exception as exc:
            if error_code(exc) == "ExecutionDoesNotExist":
                return None
            raise

    # --- decide -------------------------------------------------------------------------
    def decide(self, migration_id: str, approved: bool, *, principal: str, reason: str | None = None) -> DecisionResult:
        """Approve or reject a migration waiting for approval (ApprovalNotPending otherwise)."""
        check_migration_id(migration_id)
        if not approved and not (reason or "").strip():
            raise InvalidMigrationRequest("a rejection needs a reason")
        decision = approvals.decide(migration_id, approved, principal=principal, reason=reason, store=self.store, sfn=self.sfn)
        return DecisionResult(migration_id=migration_id, **decision)


def new_migration_id(now: datetime | None = None) -> str:
    return f"mig-{(now or datetime.now(UTC)):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def wave_progress(item: dict) -> list[WaveProgress]:
    """Per wave: how many instances are migrated, launching, failed or rolled back, and where
    the wave is; from the progress the wave and rollback steps record on the migration item
    (one read, whatever the size of the plan)."""
    results = item.get("wave_results") or {}
    rolled_back = (item.get("rollback") or {}).get("by_wave", {})
    out = []
    for wave in item.get("waves", []):
        result = results.get(str(wave["index"]), {})
        progress, gate = result.get("migration") or {}, result.get("gate")
        counts = {k: progress.get(k, 0) for k in ("migrated", "launching", "failed")}
        counts["rolled_back"] = rolled_back.get(str(wave["index"]), 0)
        if counts["rolled_back"]:
            state = "rolled_back"
        elif gate is not None:
            state = "passed" if gate.get("passed") else "failed"
        elif progress:
            state = "baking" if progress.get("done") else "migrating"
        else:
            state = "pending"
        out.append(WaveProgress(index=wave["index"], percent=wave["percent"], bake_seconds=wave["bake_seconds"],
                                target_count=wave["target_count"], state=state, gate=gate, **counts))
    return out


def _summary(migration_id: str, item: dict, execution: dict | None) -> MigrationSummary:
    request = item.get("request") or _input(execution) or {}
    summary = item.get("summary") or {}
    realised = item.get("realised") or {}
    return MigrationSummary(
        migration_id=migration_id, execution_status=(execution or {}).get("status"), status=item.get("status"),
        started_at=_iso((execution or {}).get("startDate")) or item.get("created_at"),
        stopped_at=_iso((execution or {}).get("stopDate")) or item.get("finished_at"),
        dry_run=request.get("dry_run"), candidates=summary.get("candidates"),
        monthly_savings=realised.get("monthly_savings", summary.get("monthly_savings")),
    )


def _plan_entry(record: InstanceRecord) -> PlanEntry:
    return PlanEntry.model_validate(record.model_dump(include=set(PlanEntry.model_fields)))


def _public_approval(approval: dict | None) -> dict | None:
    keep = ("requested_at", "timeout_seconds", "approved", "decided_by", "decided_at", "reason")
    return {k: v for k, v in approval.items() if k in keep} if approval else None


def _input(execution: dict | None) -> dict | None:
    try:
        return json.loads(execution["input"]) if execution and execution.get("input") else None
    except ValueError:
        return None


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)


def _short(text: str | None, limit: int = 2000) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit] + " ..."


def _limit(limit: int) -> int:
    if not 1 <= int(limit) <= MAX_PAGE:
        raise InvalidMigrationRequest(f"limit must be between 1 and {MAX_PAGE}")
    return int(limit)


def _encode(key: dict | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode() if key else None


@contextlib.contextmanager
def _token_errors() -> Iterator[None]:
    """A forged or stale token that DynamoDB refuses is the caller's error, not ours."""
    try:
        yield
    except Exception as exc:
        if error_code(exc) == "ValidationException":
            raise InvalidMigrationRequest("next_token is not valid") from None
        raise


def _decode(token: str | None) -> dict | None:
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeError):
        raise InvalidMigrationRequest("next_token is not valid") from None
    if not isinstance(key, dict):
        raise InvalidMigrationRequest("next_token is not valid")
    return key
