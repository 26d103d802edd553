"""The operator's view of migrations: start, list, inspect, decide, read the plan.

One service behind both the migrations API (its Lambda) and spotctl (against a deployed
stack or the embedded runtime). A migration is a Step Functions execution (its name is the
migration id) plus the migration item the workflow keeps in DynamoDB; this module joins the
two.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..domain.clock import Clock, iso, utc_now
from ..domain.errors import (
    ApprovalNotPending,
    InvalidMigrationRequest,
    MigrationConflict,
    MigrationNotFound,
    TaskNoLongerWaiting,
)
from ..domain.outcomes import EXECUTION_STATUSES, MIGRATION_STATUSES
from ..domain.request import MigrationRequest, RevertMigration, StartMigration, check_migration_id, describe_errors
from ..domain.retention import Retention, RetentionChange
from ..domain.views import (
    DecisionResult,
    MigrationDetail,
    MigrationPage,
    PlanPage,
    Started,
    execution_input,
    iso_or_none,
    migration_detail,
    migration_summary,
    plan_entry,
)
from ..ports import ApprovalTokens, Executions, HistoryEvent, MigrationRepository, PlanRepository
from .approval import TOKEN_GRACE_SECONDS

MAX_PAGE = 100
Events = list[HistoryEvent]
RECENT_EVENTS = 50  # enough history to find the state an execution is in
MAX_EXECUTION_INPUT = 262_144  # bytes (UTF-8): the most Step Functions accepts as an execution's input
BEFORE_APPROVAL = (None, "analysing", "planned", "reviewed")  # None: the analysis has not recorded it yet


@dataclass(frozen=True)
class ApprovalState:
    """Where a migration is with respect to its approval step."""

    status: str | None  # the migration status; None until the analysis records the migration
    execution_status: str | None
    pending: bool  # waiting for a decision now
    ahead: bool  # on its way to the approval step: a decision sent a little later can be taken
    asks: bool = True  # False: it has no approval step (auto_approve, dry run)

    @property
    def retry(self) -> bool:
        """Sending the decision again later may succeed (it is not past its approval step)."""
        return self.pending or self.ahead

    def conflict(self, migration_id: str) -> str:
        """Why a decision is not taken now."""
        if self.ahead:
            return (f"migration {migration_id!r} is {self.status or 'starting'}, not awaiting approval yet: "
                    "its approval step is ahead, send the decision again shortly")
        if not self.asks:
            return (f"migration {migration_id!r} is {self.status or 'starting'}, not awaiting approval: it needs no "
                    "decision (auto_approve or dry run)")
        if self.status is None:
            return f"migration {migration_id!r} ended {self.execution_status} before its approval step"
        return f"migration {migration_id!r} is {self.status}, not awaiting approval"


class NotAwaitingApproval(ApprovalNotPending):
    """A decision for a migration that does not wait for one, with where it is (``state.ahead``:
    it has not reached its approval step yet)."""

    def __init__(self, migration_id: str, state: ApprovalState):
        super().__init__(state.conflict(migration_id))
        self.state = state


def approval_state(item: dict[str, Any], execution: dict[str, Any] | None) -> ApprovalState:
    """A migration's item and execution, seen from its approval step: a running migration that
    has not reached the step is ahead of it, unless it never asks (auto_approve, dry run)."""
    status, execution_status = item.get("status"), (execution or {}).get("status")
    request = item.get("request") or execution_input(execution) or {}
    approval = request.get("approval")
    asks = not request.get("dry_run") and not (isinstance(approval, dict) and approval.get("auto_approve"))
    ahead = asks and execution_status == "RUNNING" and status in BEFORE_APPROVAL
    return ApprovalState(status, execution_status, pending=status == "awaiting_approval", ahead=ahead, asks=asks)


@dataclass
class Migrations:
    executions: Executions
    migrations: MigrationRepository
    plans: PlanRepository
    tokens: ApprovalTokens
    clock: Clock

    # --- start ------------------------------------------------------------------------
    def start(self, body: StartMigration) -> Started:
        """Start the execution named after the migration id. The same request again is
        answered with the running (or finished) execution; another request under a used id
        is a MigrationConflict."""
        migration_id = check_migration_id(body.migration_id or new_migration_id())
        execution_input_json = json.dumps(body.model_dump(mode="json", exclude={"migration_id"}), sort_keys=True)
        size = len(execution_input_json.encode())
        if size > MAX_EXECUTION_INPUT:
            raise InvalidMigrationRequest(f"invalid migration request: input: {size} bytes as JSON; Step Functions "
                                          f"accepts at most {MAX_EXECUTION_INPUT} (select fewer instances by id)")
        existing = self.executions.describe(migration_id)
        if existing is None:
            started = self.executions.start(migration_id, execution_input_json)
            if started is not None:
                return Started(migration_id=migration_id, execution_arn=started["executionArn"],
                               started_at=iso_or_none(started["startDate"]) or "", created=True)
            existing = self.executions.describe(migration_id) or {}  # a concurrent start won the race
        if json.loads(existing.get("input") or "{}") != json.loads(execution_input_json):
            raise MigrationConflict(f"migration id {migration_id!r} is already used by a different request")
        return Started(migration_id=migration_id, execution_arn=existing["executionArn"],
                       started_at=iso_or_none(existing["startDate"]) or "", created=False)

    def revert(self, source_id: str, body: RevertMigration) -> Started:
        """Start the revert of a completed migration: its instances back to on-demand (the analysis
        checks each one). MigrationNotFound without that migration; MigrationConflict unless it
        completed."""
        return self.start(self.revert_request(source_id, body))

    def revert_request(self, source_id: str, body: RevertMigration) -> StartMigration:
        """The migration a revert of `source_id` is (checked as `revert` says)."""
        check_migration_id(source_id)
        item = self.migrations.get(source_id)
        if item.get("status") != "completed":
            raise MigrationConflict(f"migration {source_id!r} is {item.get('status') or 'starting'}: only a "
                                    "completed migration can be reverted")
        if (item.get("request") or {}).get("revert"):
            raise MigrationConflict(f"{source_id!r} is itself a revert: migrate its instances to take them back "
                                    "to Spot")
        source = MigrationRequest.model_validate(item["request"])
        try:
            start = body.as_start(source_id, source.quality)
        except ValidationError as exc:
            raise InvalidMigrationRequest(f"invalid revert request: {describe_errors(exc, 'body')}") from None
        if start.migration_id is None:
            start.migration_id = new_migration_id(self.clock.now(), prefix="revert")
        return start

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
        items, last = self.migrations.page(limit, _decode(next_token), status)
        return MigrationPage(
            items=[migration_summary(i["migration_id"], i, self.executions.describe(i["migration_id"])) for i in items],
            next_token=_encode(last))

    def _list_executions(self, status: str | None, limit: int, next_token: str | None) -> MigrationPage:
        token = None
        if next_token:
            token = (_decode(next_token) or {}).get("sfn")
            if not isinstance(token, str):  # a DynamoDB key or a forged token
                raise InvalidMigrationRequest("next_token is not valid")
        executions, following = self.executions.page(status, limit, token)
        items = self.migrations.get_many([e["name"] for e in executions])
        return MigrationPage(
            items=[migration_summary(e["name"], items.get(e["name"], {}), e) for e in executions],
            next_token=_encode({"sfn": following}) if following else None,
        )

    def get(self, migration_id: str) -> MigrationDetail:
        item, execution = self._lookup(migration_id)
        running = execution is not None and execution["status"] == "RUNNING"
        summary = item.get("summary") or {}
        groups = self.plans.groups(migration_id) if summary.get("groups") or summary.get("groups_excluded") else []
        return migration_detail(migration_id, item, execution, self.current_state(migration_id) if running else None,
                                groups, now=self.clock.now())

    def _lookup(self, migration_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The migration item ({} until the analysis records it) and its execution; MigrationNotFound
        when neither exists."""
        check_migration_id(migration_id)
        execution = self.executions.describe(migration_id)
        try:
            item = self.migrations.get(migration_id)
        except MigrationNotFound:
            if execution is None:
                raise
            item = {}
        return item, execution

    def plan(self, migration_id: str, limit: int = MAX_PAGE, next_token: str | None = None) -> PlanPage:
        check_migration_id(migration_id)
        records, last = self.plans.records_page(migration_id, _limit(limit), _decode(next_token))
        if not records and not next_token:
            self.migrations.get(migration_id)  # an empty first page: MigrationNotFound unless the migration exists
        return PlanPage(migration_id=migration_id, items=[plan_entry(r) for r in records], next_token=_encode(last))

    def history(self, migration_id: str) -> Events:
        """The execution's events, oldest first."""
        return self.executions.history(check_migration_id(migration_id))

    def current_state(self, migration_id: str) -> str | None:
        """The state the execution is in now: the latest state entered and not yet left."""
        events = self.executions.recent_events(migration_id, RECENT_EVENTS)
        left: set[str] = set()
        for event in sorted(events, key=lambda e: e["id"], reverse=True):  # newest first, whatever the server's order
            if "stateExitedEventDetails" in event:
                left.add(event["stateExitedEventDetails"]["name"])
            elif "stateEnteredEventDetails" in event:
                name = event["stateEnteredEventDetails"]["name"]
                if name not in left:
                    return str(name)
                left.discard(name)
        return None

    def definition(self) -> dict[str, Any]:
        return self.executions.definition()

    # --- decide -------------------------------------------------------------------------
    def decide(self, migration_id: str, approved: bool, *, principal: str, reason: str | None = None) -> DecisionResult:
        """Approve or reject a migration waiting for approval: NotAwaitingApproval (with where it
        is) when it does not, ApprovalNotPending when another decision or the timeout came first."""
        check_migration_id(migration_id)
        if not approved and not (reason or "").strip():
            raise InvalidMigrationRequest("a rejection needs a reason")
        item, execution = self._lookup(migration_id)
        state = approval_state(item, execution)
        if not state.pending:
            raise NotAwaitingApproval(migration_id, state)
        decision = DecisionResult(migration_id=migration_id, approved=approved, decided_by=principal,
                                  decided_at=iso(self.clock.now()), reason=reason)
        recorded = decision.model_dump(exclude={"migration_id"})
        self._complete_approval(migration_id, json.dumps(recorded))
        self.migrations.update(migration_id, approval={**item.get("approval", {}), **recorded},
                               status="approved" if approved else "rejected")
        return decision

    # --- retention of the stopped originals --------------------------------------------------------
    def set_retention(self, migration_id: str, change: RetentionChange) -> Retention:
        """Keep a completed migration's stopped originals `days` more from now (0: retire them at the
        next scheduled run). MigrationConflict when nothing is kept (not completed, or retired)."""
        check_migration_id(migration_id)
        item = self.migrations.get(migration_id)
        if item.get("status") != "completed" or not item.get("retention"):
            raise MigrationConflict(f"migration {migration_id!r} keeps no stopped originals "
                                    f"(it is {item.get('status') or 'not completed'})")
        retention = Retention.model_validate(item["retention"])
        if retention.state == "retired":
            raise MigrationConflict(f"the stopped originals of migration {migration_id!r} are already retired")
        changed = retention.extended(self.clock.now(), change.days)
        self.migrations.update(migration_id, retention=changed.model_dump())
        return changed

    def _complete_approval(self, migration_id: str, output: str) -> None:
        """Send the decision with the task token, taken out of the table (a second decision finds none)."""
        token = self.tokens.take(migration_id)
        try:
            self.executions.send_task_success(token, output)
        except TaskNoLongerWaiting as gone:
            raise ApprovalNotPending(
                f"migration {migration_id!r} no longer waits for a decision ({gone.code})") from None
        except Exception:
            # Transient failure: put the token back so the decision can be sent again.
            self.tokens.put(migration_id, token, expires_at=int(self.clock.now().timestamp()) + TOKEN_GRACE_SECONDS)
            raise


def new_migration_id(now: datetime | None = None, prefix: str = "mig") -> str:
    return f"{prefix}-{(now or utc_now()):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def _limit(limit: int) -> int:
    if not 1 <= int(limit) <= MAX_PAGE:
        raise InvalidMigrationRequest(f"limit must be between 1 and {MAX_PAGE}")
    return int(limit)


def _encode(key: dict[str, Any] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode() if key else None


def _decode(token: str | None) -> dict[str, Any] | None:
    """A paging token back to its key; a token that is not one of ours is the caller's error."""
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeError):
        raise InvalidMigrationRequest("next_token is not valid") from None
    if not isinstance(key, dict):
        raise InvalidMigrationRequest("next_token is not valid")
    return key
