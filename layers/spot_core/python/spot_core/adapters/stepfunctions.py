"""Step Functions: the executions of the migration state machine, named after migration ids.

Translates the service's answers into what the operator service needs: an execution that
does not exist is None, a stale paging token is the caller's error, a task token nobody
waits for any more is TaskNoLongerWaiting.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..domain.errors import InvalidMigrationRequest, MigrationNotFound, TaskNoLongerWaiting
from .aws import error_code, transient_errors

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

    from ..ports import Execution, HistoryEvent

HISTORY_PAGE = 1000
GONE_TASK_CODES = ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")


class SfnExecutions:
    def __init__(self, sfn: SFNClient, state_machine_arn: str):
        self.sfn, self.state_machine_arn = sfn, state_machine_arn

    def arn(self, migration_id: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{migration_id}"

    def start(self, name: str, execution_input: str) -> Execution | None:
        """The started execution, or None when one with this name exists already."""
        try:
            with transient_errors():
                started: Any = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                                        input=execution_input)
                return dict(started)
        except Exception as exc:
            if error_code(exc) != "ExecutionAlreadyExists":
                raise
            return None

    def describe(self, migration_id: str) -> Execution | None:
        try:
            with transient_errors():
                return dict(self.sfn.describe_execution(executionArn=self.arn(migration_id)))
        except Exception as exc:
            if error_code(exc) == "ExecutionDoesNotExist":
                return None
            raise

    def page(self, status: str | None, limit: int, next_token: str | None) -> tuple[list[Execution], str | None]:
        """One page of executions, newest first, and the token of the next page."""
        kwargs: dict[str, Any] = {"stateMachineArn": self.state_machine_arn, "maxResults": limit}
        if status:
            kwargs["statusFilter"] = status
        if next_token:
            kwargs["nextToken"] = next_token
        try:
            with transient_errors():
                page: Any = self.sfn.list_executions(**kwargs)
        except Exception as exc:
            if error_code(exc) == "InvalidToken":
                raise InvalidMigrationRequest("next_token is not valid (it expires after 24 hours)") from None
            raise
        return list(page.get("executions", [])), page.get("nextToken")

    def history(self, migration_id: str) -> list[HistoryEvent]:
        """The execution's events, oldest first."""
        events: list[HistoryEvent] = []
        kwargs: dict[str, Any] = {"executionArn": self.arn(migration_id), "maxResults": HISTORY_PAGE}
        while True:
            try:
                with transient_errors():
                    page: Any = self.sfn.get_execution_history(**kwargs)
            except Exception as exc:
                if error_code(exc) == "ExecutionDoesNotExist":
                    raise MigrationNotFound(f"no migration {migration_id!r}") from None
                raise
            events += page["events"]
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def recent_events(self, migration_id: str, count: int) -> list[HistoryEvent]:
        """The latest `count` events, in whatever order the service returns them."""
        with transient_errors():
            page: Any = self.sfn.get_execution_history(executionArn=self.arn(migration_id), reverseOrder=True,
                                                       maxResults=count)
        return list(page["events"])

    def definition(self) -> dict[str, Any]:
        with transient_errors():
            definition: dict[str, Any] = json.loads(
                self.sfn.describe_state_machine(stateMachineArn=self.state_machine_arn)["definition"])
        return definition

    def send_task_success(self, task_token: str, output: str) -> None:
        try:
            with transient_errors():
                self.sfn.send_task_success(taskToken=task_token, output=output)
        except Exception as exc:
            code = error_code(exc)
            if code in GONE_TASK_CODES:
                raise TaskNoLongerWaiting(code or "") from None
            raise
