"""Health without a load balancer: EC2's status checks and a probe run on the instance.

A replacement takes its original's place only once it is proven healthy: healthy in every
target group of its original, passing EC2's instance and system status checks, and, when the
request or the instance's tag names one, passing a probe (an SSM Run Command of the user's
shell command on the replacement, for example a local `curl` of a health URL).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROBE_TAG = "spot-migration:health-probe"  # a shell command run on the replacement; exit 0 = healthy
PROBE_TIMEOUT_TAG = "spot-migration:health-probe-timeout"
DEFAULT_PROBE_TIMEOUT = 60
# SendCommand's delivery timeout: a probe starts within it (or SSM fails it), then runs for at most
# its own timeout; one still pending past both has failed, whatever SSM says yet.
PROBE_DELIVERY_SECONDS = 30
MAX_PROBE_COMMAND = 1000  # characters: a tag value holds 256; the request may say more

# DescribeInstanceStatus: InstanceStatus.Status and SystemStatus.Status
StatusCheck = Literal["ok", "initializing", "impaired", "insufficient-data", "not-applicable"]
ProbeState = Literal["pending", "success", "failed"]


class StatusChecks(BaseModel):
    """EC2's two status checks of a running instance."""

    instance: StatusCheck = "initializing"
    system: StatusCheck = "initializing"

    @property
    def passed(self) -> bool:
        return self.instance == "ok" and self.system == "ok"

    @property
    def failed(self) -> bool:
        """A check EC2 says failed (impaired); initializing is not yet a failure."""
        return "impaired" in (self.instance, self.system)

    def __str__(self) -> str:
        return f"instance {self.instance}, system {self.system}"


class HealthProbe(BaseModel):
    """A shell command (AWS-RunShellScript) whose exit status 0 says the instance serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str = Field(min_length=1, max_length=MAX_PROBE_COMMAND)
    timeout_seconds: int = Field(DEFAULT_PROBE_TIMEOUT, ge=30, le=3600)  # SSM's smallest execution timeout is 30 s

    @field_validator("command")
    @classmethod
    def _not_blank(cls, command: str) -> str:
        if not command.strip():
            raise ValueError("command must not be blank")
        return command


class ProbeResult(BaseModel):
    state: ProbeState
    detail: str = ""  # why it failed (SSM's status and the command's exit code); never its output
    exit_code: int | None = None  # the command's, once it ran to one


def overdue(result: ProbeResult, probe: HealthProbe, elapsed: float) -> ProbeResult:
    """The result, or a failure when the probe, sent `elapsed` seconds ago, is still pending past
    its delivery and execution timeouts."""
    if result.state == "pending" and elapsed > PROBE_DELIVERY_SECONDS + probe.timeout_seconds:
        return ProbeResult(state="failed", detail=f"still running after {elapsed:.0f} s "
                                                  f"(timeout {probe.timeout_seconds} s)")
    return result


def probe_of(tags: Mapping[str, str], default: HealthProbe | None) -> HealthProbe | None:
    """The instance's own probe (its tag) wins over the request's. ValueError: the tag names
    no valid probe (analysis excludes the instance with the reason)."""
    command = tags.get(PROBE_TAG, "").strip()
    if not command:
        return default
    timeout = tags.get(PROBE_TIMEOUT_TAG, "").strip() or str(DEFAULT_PROBE_TIMEOUT)
    if not timeout.isdigit():
        raise ValueError(f"{PROBE_TIMEOUT_TAG}={timeout!r} is not a number of seconds")
    try:
        return HealthProbe(command=command, timeout_seconds=int(timeout))
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None


Verdict = Literal["healthy", "waiting", "failed"]


def _failed(checks: StatusChecks | None, probe: ProbeResult | None) -> str | None:
    if checks is not None and checks.failed:
        return f"EC2 status checks failed ({checks})"
    if probe is not None and probe.state == "failed":
        return f"health probe failed: {probe.detail or 'non-zero exit'}"
    return None


def health_verdict(unhealthy_groups: list[str], checks: StatusChecks | None, probe: ProbeResult | None,
                   probe_wanted: bool) -> tuple[Verdict, str]:
    """Whether a replacement has proven itself: healthy in every target group of its original,
    both status checks passed, and its probe (when one is wanted) succeeded; with what it waits
    for, or why it failed. An impaired check or a failed probe fails at once; the rest waits
    (the caller gives up after its timeout)."""
    failed = _failed(checks, probe)
    if failed:
        return "failed", failed
    if unhealthy_groups:
        return "waiting", f"not healthy in {len(unhealthy_groups)} target group(s)"
    if checks is None or not checks.passed:
        return "waiting", f"EC2 status checks not passed ({checks or 'not reported'})"
    if probe_wanted and (probe is None or probe.state != "success"):
        return "waiting", "health probe not passed yet"
    return "healthy", ""
