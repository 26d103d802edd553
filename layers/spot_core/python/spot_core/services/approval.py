"""RequestApproval: the workflow waits on a Step Functions task token that never leaves the
server side, and the approvers are asked.

The token is stored in its own DynamoDB item (encrypted at rest), is never logged and
never put in a notification; a decision (services/migrations.py) takes it out of the table,
so a second decision on the same migration is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..domain.clock import Clock, iso
from ..ports import ApprovalTokens, MigrationRepository, Notifier
from .finalize import money

TOKEN_GRACE_SECONDS = 3600
DEFAULT_TIMEOUT_SECONDS = 86_400


class ApprovalRequested(BaseModel):
    requested_at: str
    timeout_seconds: int


def console_url(execution_arn: str) -> str | None:
    """The execution's page in the Step Functions console (graph view, events), or None for an
    ARN of a partition whose console this does not know."""
    parts = execution_arn.split(":")
    if len(parts) < 8 or parts[1] != "aws" or parts[5] != "execution":
        return None
    region = parts[3]
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


@dataclass
class Approval:
    migrations: MigrationRepository
    tokens: ApprovalTokens
    notifier: Notifier
    clock: Clock

    def request(self, migration_id: str, task_token: str, execution_arn: str | None = None) -> ApprovalRequested:
        item = self.migrations.get(migration_id)
        timeout = int(item["request"].get("approval", {}).get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
        now = self.clock.now()
        self.tokens.put(migration_id, task_token, expires_at=int(now.timestamp()) + timeout + TOKEN_GRACE_SECONDS)
        requested = ApprovalRequested(requested_at=iso(now), timeout_seconds=timeout)
        self.notifier.publish(migration_id, "approval-requested",
                              f"Migration {migration_id} is waiting for your approval.",
                              _request_lines(migration_id, item, timeout, execution_arn),
                              {"summary": item.get("summary", {}), "verdicts": item.get("verdicts", [])})
        # Last: once the status says "awaiting", the token is stored and the approvers know.
        self.migrations.update(migration_id, status="awaiting_approval", approval=requested.model_dump())
        return requested


def _request_lines(migration_id: str, item: dict[str, Any], timeout: int, execution_arn: str | None) -> list[str]:
    summary = item.get("summary", {})
    waves = ", ".join(f"{w['percent']:g} %" for w in item.get("waves", []))
    url = console_url(execution_arn or "")
    return [
        f"Candidates: {summary.get('candidates')} of {summary.get('analysed')} analysed instances",
        f"Estimated savings: {money(summary.get('monthly_savings', 0))}/month ({summary.get('savings_pct')} %)",
        f"Waves: {waves}",
        f"Decide within {timeout} s: spotctl approve {migration_id}  |  spotctl reject {migration_id} --reason '...'",
        f"  or POST /migrations/{migration_id}/approve | /reject on the migrations API (the stack's ApiUrl output)",
        *([f"Follow it in the Step Functions console: {url}"] if url else []),
    ]
