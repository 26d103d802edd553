"""Where spotctl's commands go: a deployed stack, or the local service (`--local`).

Both are reached the same way: boto3 with the standard credential chain and region (or the
local service's endpoint and test credentials), and the stack's CloudFormation outputs
(StateMachineArn, TableName) to find the state machine and the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from spot_core.adapters.dynamodb.approvals import DynamoApprovalTokens
from spot_core.adapters.dynamodb.migrations import DynamoMigrations, DynamoPlans
from spot_core.adapters.stepfunctions import SfnExecutions
from spot_core.domain.clock import SystemClock
from spot_core.services.migrations import Migrations

from .local import daemon

_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 10}, connect_timeout=5, read_timeout=60)
LOCAL_CREDENTIALS = {
    "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_session_token": "testing",
}


class BackendError(Exception):
    """The stack or the local service cannot be reached; the message says what to do."""


@dataclass
class Backend:
    session: boto3.Session
    stack: str
    endpoint: str | None = None  # the local service's AWS endpoint
    local: dict | None = None  # the local service's state
    outputs: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint, config=_CONFIG)

    @cached_property
    def migrations(self) -> Migrations:
        dynamodb = self.session.resource("dynamodb", endpoint_url=self.endpoint, config=_CONFIG)
        table = dynamodb.Table(self.outputs["TableName"])
        return Migrations(SfnExecutions(self.client("stepfunctions"), self.outputs["StateMachineArn"]),
                          DynamoMigrations(table), DynamoPlans(table), DynamoApprovalTokens(table), SystemClock())

    def principal(self) -> str:
        """Who decides: the caller's IAM identity."""
        return self.client("sts").get_caller_identity()["Arn"]


def connect(*, local: bool, stack: str, region: str | None, start_local: bool = True) -> Backend:
    """The backend commands go to, with its stack's outputs read."""
    backend = _local_backend(start_local) if local else Backend(boto3.Session(region_name=region), stack)
    backend.outputs = _stack_outputs(backend)
    return backend


def _local_backend(start_local: bool) -> Backend:
    """The local service (started if none runs and `start_local`), as if it were a stack."""
    state = daemon.running() or (daemon.start() if start_local else None)
    if not state:
        raise BackendError("no local service is running: start one with `spotctl local up`")
    return Backend(boto3.Session(region_name=state["region"], **LOCAL_CREDENTIALS), state["stack"],
                   endpoint=state["endpoint"], local=state)


def _stack_outputs(backend: Backend) -> dict[str, str]:
    stack = _describe_stack(backend)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = {"StateMachineArn", "TableName"} - set(outputs)
    if missing:
        raise BackendError(f"stack {backend.stack!r} has no {', '.join(sorted(missing))} output: "
                           "is it a SpotMigration stack?")
    return outputs


def _describe_stack(backend: Backend) -> dict:
    """The stack's description; what went wrong, in words, when it cannot be read."""
    try:
        return backend.client("cloudformation").describe_stacks(StackName=backend.stack)["Stacks"][0]
    except NoRegionError:
        raise BackendError("no AWS region: pass --region or set AWS_REGION") from None
    except NoCredentialsError:
        raise BackendError("no AWS credentials found (environment, profile or role); or use --local") from None
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ValidationError":
            raise BackendError(f"stack {backend.stack!r} not found in {backend.session.region_name}: deploy it "
                               "(make deploy), pass --stack/--region, or use --local") from None
        raise BackendError(f"cannot read stack {backend.stack!r}: {exc}") from None
    except BotoCoreError as exc:
        raise BackendError(f"cannot reach AWS: {exc}") from None
