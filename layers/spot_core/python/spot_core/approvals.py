"""Customer approval over a Step Functions task token that never leaves the server side.

The token is stored in its own DynamoDB item (encrypted at rest), is never logged and
never put in a notification; a decision takes it out of the table, so a second decision
on the same migration is refused.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .aws import error_code, transient_errors
from .errors import ApprovalNotPending
from .notify import Notifier, money
from .store import MigrationStore, now_iso

TOKEN_GRACE_SECONDS = 3600


def console_url(execution_arn: str) -> str | None:
    """The execution's page in the Step Functions console (graph view, events), or None for an
    ARN of a partition whose console this does not know."""
    parts = execution_arn.split(":")
    if len(parts) < 8 or parts[1] != "aws" or parts[5] != "execution":
        return None
    region = parts[3]
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


def request_approval(migration_id: str, task_token: str, *, store: MigrationStore, notifier: Notifier,
                     execution_arn: str | None = None) -> dict:
    item = store.get(migration_id)
    timeout = int(item["request"].get("approval", {}).get("timeout_seconds", 86_400))
    store.put_token(migration_id, task_token, expires_at=int(time.time()) + timeout + TOKEN_GRACE_SECONDS)
    requested = {"requested_at": now_iso(), "timeout_seconds": timeout}
    summary = item.get("summary", {})
    waves = ", ".join(f"{w['percent']:g} %" for w in item.get("waves", []))
    notifier.publish(
        migration_id, "approval-requested",
        f"Migration {migration_id} is waiting for your approval.",
        [
            f"Candidates: {summary.get('candidates')} of {summary.get('analysed')} analysed instances",
            f"Estimated savings: {money(summary.get('monthly_savings', 0))}/month ({summary.get('savings_pct')} %)",
            f"Waves: {waves}",
            f"Decide within {timeout} s: spotctl approve {migration_id}  |  spotctl reject {migration_id} --reason '...'",
            f"  or POST /migrations/{migration_id}/approve | /reject on the migrations API (the stack's ApiUrl output)",
            *([f"Follow it in the Step Functions console: {url}"] if (url := console_url(execution_arn or "")) else []),
        ],
        {"summary": summary, "verdicts": item.get("verdicts", [])},
    )
    # Last: once the status says "awaiting", the token is stored and the approvers know.
    store.update(migration_id, status="awaiting_approval", approval=requested)
    return requested


def decide(migration_id: str, approved: bool, *, principal: str, reason: str | None, store: MigrationStore, sfn: Any) -> dict:
    """Complete the pending approval; ApprovalNotPending when nothing is waiting."""
    item = store.get(migration_id)
    if item.get("status") != "awaiting_approval":
        raise ApprovalNotPending(f"migration {migration_id!r} is {item.get('status')}, not awaiting approval")
    token = store.take_token(migration_id)
    decision = {"approved": approved, "decided_by": principal, "decided_at": now_iso(), "reason": reason}
    try:
        with transient_errors():
            sfn.send_task_success(taskToken=token, output=json.dumps(decision))
    except Exception as exc:
        if error_code(exc) in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
            raise ApprovalNotPending(f"migration {migration_id!r} no longer waits for a decision ({error_code(exc)})") from None
        # Transient failure: put the token back so the decision can be sent again.
        store.put_token(migration_id, token, expires_at=int(time.time()) + TOKEN_GRACE_SECONDS)
        raise
    store.update(migration_id, approval={**item.get("approval", {}), **decision},
                 status="approved" if approved else "rejected")
    return decision
