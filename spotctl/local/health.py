"""EC2 status checks and SSM Run Command outcomes for the embedded runtime.

moto answers DescribeInstanceStatus "ok" the moment an instance runs, and SSM's
GetCommandInvocation "Success" at once, without an agent. Here, as on AWS:

- a running instance's instance and system checks are `initializing` for its first
  `status_check_seconds`, then `ok`; or `impaired` once initialized, by fault (`impair`);
- a probe (an SSM command) is `InProgress` for `probe_seconds`, then `Success`, or `Failed`
  with exit code 1 (`fail_probes`), or `TimedOut` at its execution timeout (`time_out_probes`);
- SendCommand to an instance that is not running answers InvalidInstanceId;
- an interruption checkpoint is a command like a probe (an SSM document's run: faults match its name).

Time is the runtime's (`runtime_clock`): real time plus the fast-forwarded Waits, or the timing
simulator's virtual clock. An instance's checks start when it entered `running`: the moment
RunInstances or StartInstances answered (moto's instances run at once), or, in timing mode, the
virtual moment its boot ended (`Ec2Lifecycle.running_at`), whichever is later. moto's own
`launch_time` is not used: it is real time, without the fast-forwarded Waits or the virtual clock.

Every command sent is in `commands`, its text included for tests; the runtime never prints it
(it may carry a secret), and its repr leaves it out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .patches import Patches

Clock = Callable[[], float]  # seconds on the runtime's time line
Outcome = Literal["success", "failed", "timed_out"]
Check = Literal["instance", "system"]


def runtime_clock(runtime: Any) -> Clock:
    """The runtime's seconds: its virtual clock in timing mode (a handler's own lane in a thread
    pool), otherwise real time plus the Waits it fast-forwarded (`LocalRuntime.advance`)."""
    def seconds() -> float:
        timing = runtime.timing
        if timing is not None:
            return float(timing.seconds())
        return time.monotonic() + float(runtime.virtual_seconds)
    return seconds


@dataclass(frozen=True)
class ProbeFault:
    """Probes this matches end with `outcome`; None (or empty) matches any."""

    outcome: Outcome
    instance_type: str | None = None
    instance_ids: frozenset[str] = frozenset()
    command_contains: str | None = None

    def matches(self, instance_id: str, instance_type: str, command: str) -> bool:
        return ((self.instance_type is None or self.instance_type == instance_type)
                and (not self.instance_ids or instance_id in self.instance_ids)
                and (self.command_contains is None or self.command_contains in command))


@dataclass(frozen=True)
class SentCommand:
    """One SendCommand, per instance: what was asked, when, and how it will end."""

    command_id: str
    instance_id: str
    instance_type: str
    document: str
    command: str = field(repr=False)  # may carry a secret: for tests to read, never printed
    at: float  # the runtime's seconds
    execution_timeout: float
    outcome: Outcome


class HealthSimulator:
    """Status checks and probe outcomes on the runtime's clock (see the module docstring)."""

    def __init__(self, clock: Clock, running_at: Callable[[str], float | None] | None = None,
                 status_check_seconds: float = 60.0, probe_seconds: float = 5.0):
        self.clock = clock
        self._running_at = running_at or (lambda _instance_id: None)
        self.status_check_seconds, self.probe_seconds = status_check_seconds, probe_seconds
        self.commands: list[SentCommand] = []
        self.probe_faults: list[ProbeFault] = []
        self.impaired: dict[str, Check] = {}  # instance id -> the check that fails
        self.impaired_types: dict[str, Check] = {}  # instances of these types launched from now on
        self._started: dict[str, float] = {}  # instance id -> when RunInstances/StartInstances answered
        self._sent: dict[tuple[str, str], SentCommand] = {}
        self._lock = threading.Lock()
        self._patches = Patches()

    @classmethod
    def of(cls, runtime: Any, **settings: Any) -> HealthSimulator:
        """The simulator of a LocalRuntime: its clock, and in timing mode its instances' boot ends."""
        def running_at(instance_id: str) -> float | None:
            timing = runtime.timing
            return None if timing is None else timing.lifecycle.running_at.get(instance_id)
        return cls(runtime_clock(runtime), running_at, **settings)

    # --- faults -----------------------------------------------------------------------------
    def impair(self, instance_type: str | None = None, instance_ids: Iterable[str] = (),
               check: Check = "instance") -> None:
        """`check` reports impaired (once initialized) on these instances now, and on instances
        of `instance_type` launched from now on."""
        with self._lock:
            self.impaired.update(dict.fromkeys(instance_ids, check))
            if instance_type is not None:
                self.impaired_types[instance_type] = check

    def fail_probes(self, instance_type: str | None = None, instance_ids: Iterable[str] = (),
                    command_contains: str | None = None) -> None:
        """Matching probes sent from now on fail: Failed, exit code 1."""
        self._fault("failed", instance_type, instance_ids, command_contains)

    def time_out_probes(self, instance_type: str | None = None, instance_ids: Iterable[str] = (),
                        command_contains: str | None = None) -> None:
        """Matching probes sent from now on never finish: TimedOut at their execution timeout."""
        self._fault("timed_out", instance_type, instance_ids, command_contains)

    def _fault(self, outcome: Outcome, instance_type: str | None, instance_ids: Iterable[str],
               command_contains: str | None) -> None:
        with self._lock:
            self.probe_faults.append(ProbeFault(outcome, instance_type, frozenset(instance_ids), command_contains))

    # --- status checks ------------------------------------------------------------------------
    def running_since(self, instance_id: str) -> float | None:
        """When the instance entered `running` on the runtime's clock; None: before this simulator."""
        times = [t for t in (self._started.get(instance_id), self._running_at(instance_id)) if t is not None]
        return max(times) if times else None

    def check(self, instance: Any, which: Check) -> dict[str, Any]:
        """A running instance's check, as DescribeInstanceStatus shows it."""
        since = self.running_since(instance.id)
        if since is not None and self.clock() - since < self.status_check_seconds:
            return _status("initializing", "initializing")
        if self.impaired.get(instance.id) == which:
            return _status("impaired", "failed")
        return _status("ok", "passed")

    def _entered_running(self, instances: Iterable[Any]) -> None:
        now = self.clock()
        with self._lock:
            for instance in instances:
                self._started[instance.id] = now
                check = self.impaired_types.get(instance.instance_type)
                if check is not None:
                    self.impaired.setdefault(instance.id, check)

    # --- probes -------------------------------------------------------------------------------
    def sent(self, command: Any, instances: Iterable[Any]) -> None:
        """Record a command moto accepted, and seal how it ends on each instance."""
        text = "\n".join(command.parameters.get("commands", []))
        timeout = float((command.parameters.get("executionTimeout") or ["3600"])[0])
        now = self.clock()
        with self._lock:
            for instance in instances:
                # a document's run (an interruption checkpoint) is matched by the document's name
                outcome = self._outcome(instance.id, instance.instance_type, text or str(command.document_name))
                record = SentCommand(command.command_id, instance.id, instance.instance_type,
                                     str(command.document_name), text, now, timeout, outcome)
                self.commands.append(record)
                self._sent[(command.command_id, instance.id)] = record

    def _outcome(self, instance_id: str, instance_type: str, text: str) -> Outcome:
        fault = next((f for f in self.probe_faults if f.matches(instance_id, instance_type, text)), None)
        return fault.outcome if fault is not None else "success"

    def invocation(self, answer: dict[str, Any], command_id: str, instance_id: str) -> dict[str, Any]:
        """moto's invocation (always Success), as it stands now on the runtime's clock."""
        record = self._sent.get((command_id, instance_id))
        if record is None:
            return answer
        elapsed = self.clock() - record.at
        done_after = record.execution_timeout if record.outcome == "timed_out" else self.probe_seconds
        if elapsed < done_after:
            return {**answer, **_invocation("InProgress", "InProgress", -1)}
        if record.outcome == "timed_out":
            return {**answer, **_invocation("TimedOut", "ExecutionTimedOut", -1)}
        if record.outcome == "failed":
            return {**answer, **_invocation("Failed", "Failed", 1, "simulated probe failure\n")}
        return {**answer, **_invocation("Success", "Success", 0)}

    # --- wiring into moto ---------------------------------------------------------------------
    def install(self) -> None:
        from moto.ec2.models.instances import Instance, InstanceBackend
        from moto.ssm.models import SimpleSystemManagerBackend

        self._patch(Instance, "instance_status", property(lambda i: self._status_of(i, "instance")))
        self._patch(Instance, "system_status", property(lambda i: self._status_of(i, "system")))
        self._patch(InstanceBackend, "run_instances", self._launching(InstanceBackend.run_instances))
        self._patch(InstanceBackend, "start_instances", self._starting(InstanceBackend.start_instances))
        self._patch(SimpleSystemManagerBackend, "send_command",
                    self._sending(SimpleSystemManagerBackend.send_command))
        self._patch(SimpleSystemManagerBackend, "get_command_invocation",
                    self._answering(SimpleSystemManagerBackend.get_command_invocation))

    def uninstall(self) -> None:
        self._patches.restore()

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        self._patches.set(owner, name, value)

    def _status_of(self, instance: Any, which: Check) -> dict[str, Any]:
        if instance.state_code != 16:  # not running: what EC2 (and moto) say
            return {"Status": "not-applicable"}
        return self.check(instance, which)

    def _launching(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def run_instances(backend: Any, *args: Any, **kwargs: Any) -> Any:
            reservation = original(backend, *args, **kwargs)
            self._entered_running(reservation.instances)
            return reservation
        return run_instances

    def _starting(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def start_instances(backend: Any, instance_ids: list[str]) -> Any:
            result = original(backend, instance_ids)
            self._entered_running(i for i, before in result if before.name != "running")
            return result
        return start_instances

    def _sending(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def send_command(backend: Any, **kwargs: Any) -> Any:
            instances = [_running_instance(backend, i) for i in kwargs.get("instance_ids") or []]
            command = original(backend, **kwargs)
            self.sent(command, instances)
            return command
        return send_command

    def _answering(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def get_command_invocation(backend: Any, command_id: str, instance_id: str, plugin_name: str | None) -> Any:
            return self.invocation(original(backend, command_id, instance_id, plugin_name), command_id, instance_id)
        return get_command_invocation


def _status(status: str, detail: str) -> dict[str, Any]:
    return {"Status": status, "Details": [{"Name": "reachability", "Status": detail}]}


def _invocation(status: str, details: str, code: int, stderr: str = "") -> dict[str, Any]:
    return {"Status": status, "StatusDetails": details, "ResponseCode": code,
            "StandardOutputContent": "", "StandardErrorContent": stderr}


def _running_instance(backend: Any, instance_id: str) -> Any:
    """The instance SendCommand targets; InvalidInstanceId (as SSM answers) when it is not running:
    its agent cannot be online."""
    from moto.ec2.models import ec2_backends
    from moto.ssm.exceptions import SSMException

    instance = ec2_backends[backend.account_id][backend.region_name].get_instance_by_id(instance_id)
    if instance is None or instance.state != "running":
        raise SSMException("InvalidInstanceId",
                           f"Instances [[{instance_id}]] not in a valid state for account {backend.account_id}")
    return instance
