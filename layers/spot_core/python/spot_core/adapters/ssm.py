"""Health probes by SSM Run Command: the user's shell command (AWS-RunShellScript) on an
instance; exit code 0 says it serves. Interruption checkpoints go the same way (the user's shell
command, or an SSM document of the account), on the instance EC2 is taking back.

The command text may carry a secret (a token in a URL), and its output may too: neither is
ever logged nor put into a result, only SSM's status and the exit code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from ..domain.errors import ProbeRefused
from ..domain.health import PROBE_DELIVERY_SECONDS, HealthProbe, ProbeResult
from ..domain.hooks import Checkpoint
from .aws import error_code, transient_errors
from .concurrency import concurrently

logger = logging.getLogger(__name__)

DOCUMENT = "AWS-RunShellScript"
# SendCommand's TimeoutSeconds is the delivery timeout (the command must start within it): its
# smallest value, so a replacement whose agent is not there fails soon; the probe's own
# timeout bounds the run (executionTimeout).
DELIVERY_TIMEOUT_SECONDS = PROBE_DELIVERY_SECONDS
COMMENT = "spot-migration health probe"
CHECKPOINT_COMMENT = "spot-migration interruption checkpoint"

PENDING = frozenset({"Pending", "InProgress", "Delayed"})
SUCCESS = "Success"
# Every other status is terminal and not a success: Failed, TimedOut, Cancelled, Cancelling and
# the StatusDetails spellings (DeliveryTimedOut, ExecutionTimedOut, Undeliverable, Terminated).


class SsmProbes:
    """The Probes port on SSM Run Command."""

    def __init__(self, ssm: Any):  # an SSM client (no mypy_boto3_ssm stubs installed)
        self.ssm = ssm

    def send(self, instance_id: str, probe: HealthProbe) -> str:
        """The command id. ProbeRefused: the instance is not an SSM managed instance."""
        command_id = self._send(instance_id, DOCUMENT, COMMENT, {
            "commands": [probe.command], "executionTimeout": [str(probe.timeout_seconds)]})
        logger.info("health probe sent", extra={"instance_id": instance_id, "command_id": command_id,
                                                "timeout_seconds": probe.timeout_seconds})
        return command_id

    def send_checkpoint(self, instance_id: str, checkpoint: Checkpoint) -> str:
        """The command id of a checkpoint: its shell command, or its document with the document's
        own parameters. ProbeRefused: the instance is not an SSM managed instance (or gone)."""
        parameters = {} if checkpoint.document else {
            "commands": [checkpoint.command or ""], "executionTimeout": [str(checkpoint.execution_timeout)]}
        command_id = self._send(instance_id, checkpoint.document or DOCUMENT, CHECKPOINT_COMMENT, parameters)
        logger.info("checkpoint sent", extra={"instance_id": instance_id, "command_id": command_id,
                                              "document": checkpoint.document or DOCUMENT,
                                              "timeout_seconds": checkpoint.timeout_seconds})
        return command_id

    def _send(self, instance_id: str, document: str, comment: str, parameters: Mapping[str, list[str]]) -> str:
        try:
            with transient_errors():
                response = self.ssm.send_command(
                    DocumentName=document, InstanceIds=[instance_id], Parameters=dict(parameters),
                    TimeoutSeconds=DELIVERY_TIMEOUT_SECONDS, Comment=comment)
        except ClientError as exc:
            if error_code(exc) == "InvalidInstanceId":
                raise ProbeRefused(instance_id) from exc
            raise
        return str(response["Command"]["CommandId"])

    def results(self, commands: Mapping[str, str]) -> dict[str, ProbeResult]:
        """Instance id -> its probe's result; `commands`: instance id -> command id.
        GetCommandInvocation answers one invocation a call: a few run at once."""
        items = sorted(commands.items())
        return dict(zip([i for i, _ in items], concurrently(self._result, items), strict=True))

    def _result(self, item: tuple[str, str]) -> ProbeResult:
        instance_id, command_id = item
        try:
            with transient_errors():
                invocation = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as exc:
            code = error_code(exc)
            if code == "InvocationDoesNotExist":  # just sent: SSM is eventually consistent
                return ProbeResult(state="pending")
            if code == "InvalidInstanceId":  # the instance is gone (terminated)
                return ProbeResult(state="failed", detail=code)
            raise
        return to_result(invocation)


def to_result(invocation: Mapping[str, Any]) -> ProbeResult:
    """SSM's answer as a probe result: its status and exit code, never the command's output."""
    status = str(invocation.get("Status", ""))
    if status in PENDING:
        return ProbeResult(state="pending")
    code = invocation.get("ResponseCode")
    exit_code = code if isinstance(code, int) and code >= 0 else None
    if status == SUCCESS:
        return ProbeResult(state="success", exit_code=exit_code)
    return ProbeResult(state="failed", detail=_detail(status, invocation), exit_code=exit_code)


def _detail(status: str, invocation: Mapping[str, Any]) -> str:
    """`Failed (exit 1)`, `TimedOut: ExecutionTimedOut`: SSM's status, its details when they say
    more, and the exit code when the command ran to one."""
    details = str(invocation.get("StatusDetails") or "")
    name = f"{status}: {details}" if details and details != status else status
    code = invocation.get("ResponseCode")
    return f"{name} (exit {code})" if isinstance(code, int) and code >= 0 else name
