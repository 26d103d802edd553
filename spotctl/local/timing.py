"""The timing simulator of the embedded runtime: EC2 and ELB on a virtual clock, with their
real timings and limits, so a migration of 10,000 instances runs offline in minutes and
reports how long it would have taken.

    with LocalRuntime(timing=CASES["A"]) as rt:
        rt.fleet.seed_fleet(1000)
        rt.timing.model.configure_target_group(rt.client("elbv2"), rt.fleet.target_group_arn)
        result = rt.run_migration({"approval": {"auto_approve": True}}, timeout=3600)
        report = rt.timing.report()  # simulated seconds, Lambda GB-s, launch rate, throttles

What the handlers see (they run unchanged; nothing in them knows about the mode):

- Time is virtual. Every AWS call a handler makes costs the call's latency; Wait states,
  botocore's retry back-off and its adaptive rate limiter, and the handlers' own clock
  (`spot_core.domain.clock.SystemClock`, `utc_now`) all read and advance one `VirtualClock`.
  The Lambda context counts the function's timeout down on it, and an invocation still
  running at its deadline is killed (Sandbox.Timedout), as Lambda does.
- EC2 (moto's models, patched): the instances RunInstances launches (up to MaxCount, see
  market.py) are `pending` until launch + boot time, then `running`; StopInstances goes
  through `stopping`, TerminateInstances through `shutting-down`, StartInstances through
  `pending`. Token buckets refuse what EC2 refuses, with RequestLimitExceeded (HTTP 503): a
  request bucket per API action, and resource buckets (instances) for Run/Terminate/Stop/
  StartInstances. A refused request consumes nothing.
- ELB (moto's elbv2 target groups, patched): a registered target is `initial` until its
  instance runs and health check interval x healthy threshold (the target group's own
  settings) have passed since registration or since it began running, whichever is later;
  a deregistered target is `draining` for the target group's deregistration delay.

Only the handlers' calls are simulated (and calls inside `simulating()`): seeding a fleet,
the runtime's own polling and the operator's reads are outside the simulation, answered at
once, and cost no virtual time.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from .patches import Patches

THROTTLING_DOC = "https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html"


@dataclass(frozen=True)
class BucketSpec:
    """A token bucket: `burst` tokens at most, refilled by `per_second` tokens a second."""

    burst: float
    per_second: float


# EC2's default throttling, as documented in "Request throttling for the Amazon EC2 API"
# (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html): request rate is
# limited per API action (each action has its own bucket, of its category's size; e.g.
# DescribeHosts, a non-mutating action, 100 tokens refilled at 20 a second), and some actions
# are also limited by resource rate, in instances (RunInstances 1,000 tokens refilled at 2 a
# second: 1,000 instances at once, then 2 a second).
NON_MUTATING = BucketSpec(100, 20)  # Describe*, Get*, List*, Search*
RUN_INSTANCES_REQUESTS = BucketSpec(50, 5)
MUTATING = BucketSpec(50, 5)  # CreateTags, StopInstances, TerminateInstances, ...
RESOURCE_BUCKETS: Mapping[str, BucketSpec] = {
    "RunInstances": BucketSpec(1000, 2), "TerminateInstances": BucketSpec(1000, 20),
    "StopInstances": BucketSpec(1000, 20), "StartInstances": BucketSpec(1000, 2),
}
_READS = ("Describe", "Get", "List", "Search")
# Seconds per call, by "service.Operation" prefix (botocore's service ids); the first match wins.
DEFAULT_LATENCY: tuple[tuple[str, float], ...] = (
    ("ec2.RunInstances", 1.0), ("ec2.Describe", 0.15), ("ec2.", 0.3),
    ("elastic-load-balancing-v2.", 0.1), ("dynamodb.", 0.01), ("", 0.05),
)
STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}


@dataclass(frozen=True)
class TimingModel:
    """How long EC2 and ELB take, and how fast EC2 lets a client go."""

    name: str = "custom"
    boot_seconds: tuple[float, float] = (30.0, 40.0)  # launch (or start) to running, uniform
    stop_seconds: float = 30.0  # stopping -> stopped
    terminate_seconds: float = 30.0  # shutting-down -> terminated
    # The target group's settings the case is about (set on it with configure_target_group;
    # the simulated ELB reads the target group's own settings, as ELB does).
    health_check_interval: int = 30
    healthy_threshold: int = 5
    deregistration_delay: int = 300
    status_check_seconds: float = 60.0  # running -> EC2's instance and system checks pass (real EC2: minutes)
    latencies: tuple[tuple[str, float], ...] = DEFAULT_LATENCY
    non_mutating: BucketSpec = NON_MUTATING
    run_instances_requests: BucketSpec = RUN_INSTANCES_REQUESTS
    mutating: BucketSpec = MUTATING
    resources: Mapping[str, BucketSpec] = field(default_factory=lambda: dict(RESOURCE_BUCKETS))
    seed: int = 7
    enforce_lambda_timeouts: bool = True

    @property
    def health_seconds(self) -> int:
        """Registered and running to healthy: interval x healthy threshold."""
        return self.health_check_interval * self.healthy_threshold

    @property
    def boot_mean(self) -> float:
        return (self.boot_seconds[0] + self.boot_seconds[1]) / 2

    def latency(self, service: str, operation: str) -> float:
        key = f"{service}.{operation}"
        return next((seconds for prefix, seconds in self.latencies if key.startswith(prefix)), 0.0)

    def request_bucket(self, operation: str) -> BucketSpec:
        if operation == "RunInstances":
            return self.run_instances_requests
        return self.non_mutating if operation.startswith(_READS) else self.mutating

    def configure_target_group(self, elbv2: Any, target_group_arn: str) -> None:
        """Give a target group this case's health checks and deregistration delay (through the API)."""
        elbv2.modify_target_group(TargetGroupArn=target_group_arn,
                                  HealthCheckIntervalSeconds=self.health_check_interval,
                                  HealthyThresholdCount=self.healthy_threshold)
        elbv2.modify_target_group_attributes(TargetGroupArn=target_group_arn, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": str(self.deregistration_delay)}])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "boot_seconds": list(self.boot_seconds), "stop_seconds": self.stop_seconds,
                "health_check_interval": self.health_check_interval, "healthy_threshold": self.healthy_threshold,
                "health_seconds": self.health_seconds, "deregistration_delay": self.deregistration_delay,
                "status_check_seconds": self.status_check_seconds}


# The cases: RunInstances ~1 s, running after 30-40 s, then healthy (interval x threshold
# after running and registered) and drained.
CASES: dict[str, TimingModel] = {
    "A": TimingModel(name="A", health_check_interval=30, healthy_threshold=2, deregistration_delay=0),
    "B": TimingModel(name="B", health_check_interval=30, healthy_threshold=4, deregistration_delay=30),
    "C": TimingModel(name="C", health_check_interval=30, healthy_threshold=5, deregistration_delay=300),  # ALB defaults
}
HEALTHY_AFTER = tuple(range(60, 181, 20))  # seconds from running to healthy
DRAINS = (0, 30, 120, 300)


def combinations(base: TimingModel | None = None) -> list[TimingModel]:
    """The 28 combinations: healthy 60..180 s after running (health checks every 20 s, 3..9 to be
    healthy) x deregistration delay 0 / 30 / 120 / 300 s."""
    base = base or TimingModel()
    return [replace(base, name=f"healthy{h}s-drain{d}s", health_check_interval=20, healthy_threshold=h // 20,
                    deregistration_delay=d) for h in HEALTHY_AFTER for d in DRAINS]


class VirtualClock:
    """Seconds since the simulation began; `now()` is the wall-clock time they stand for."""

    def __init__(self, epoch: datetime | None = None):
        self.epoch = epoch or datetime.now(UTC)
        self._seconds = 0.0
        self._lock = threading.Lock()

    @property
    def seconds(self) -> float:
        return self._seconds

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._seconds += seconds

    def advance_to(self, seconds: float) -> None:
        with self._lock:
            self._seconds = max(self._seconds, seconds)

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=self._seconds)

    def time(self) -> float:
        return self.epoch.timestamp() + self._seconds

    def monotonic(self) -> float:
        return self._seconds


class TokenBucket:
    def __init__(self, spec: BucketSpec, now: float):
        self.spec, self.tokens, self.at = spec, float(spec.burst), now

    def level(self, now: float) -> float:
        if now > self.at:
            self.tokens = min(float(self.spec.burst), self.tokens + (now - self.at) * self.spec.per_second)
            self.at = now
        return self.tokens

    def take(self, amount: float, now: float) -> bool:
        if self.level(now) < amount:
            return False
        self.tokens -= amount
        return True

    def give(self, amount: float, now: float) -> None:
        self.tokens = min(float(self.spec.burst), self.level(now) + amount)


# --- physical bound ----------------------------------------------------------------------------------
def physical_bound(model: TimingModel, waves: list[tuple[int, float]], instances_per_request: int = 100) -> dict:
    """The shortest time the waves can take with these timings and buckets, for any engine.

    `waves`: (instances, bake seconds) in order. For each wave: the earliest moment the last of
    its instances can be launched, given the RunInstances resource bucket and request bucket
    (full at the first wave, refilling all along, bakes included; requests of up to
    `instances_per_request` instances), + RunInstances' latency + the mean boot + health checks
    (interval x threshold, or EC2's status checks if they take longer) + the deregistration
    delay + the StopInstances call of its original (not the original's `stopping` time:
    drained, it serves nothing, and nothing waits for `stopped` before the bake; with
    `model.stop_seconds` the bound would exceed what an engine achieves), then the wave's bake."""
    resource = TokenBucket(model.resources["RunInstances"], 0.0)
    requests = TokenBucket(model.run_instances_requests, 0.0)
    t, out = 0.0, []
    proven = max(model.health_seconds, model.status_check_seconds)  # target group and status checks, together
    after_launch = (model.latency("ec2", "RunInstances") + model.boot_mean + proven
                    + model.deregistration_delay + model.latency("ec2", "StopInstances"))
    for n, bake in waves:
        last_launch = max(_ready_at(resource, n, t), _ready_at(requests, math.ceil(n / instances_per_request), t))
        done = last_launch + after_launch if n else t
        out.append({"instances": n, "starts_s": round(t, 1), "last_launch_s": round(last_launch, 1),
                    "done_s": round(done, 1), "bake_s": bake})
        t = done + bake
    return {"waves_seconds": round(t, 1), "waves": out}


def _ready_at(bucket: TokenBucket, amount: int, start: float) -> float:
    """When `amount` tokens have been handed out from `start` on, taken as soon as they come."""
    missing = max(0.0, amount - bucket.level(start))
    at = start + missing / bucket.spec.per_second
    bucket.level(at)
    bucket.tokens -= amount
    bucket.tokens = max(bucket.tokens, 0.0)
    return at


# --- the simulator -------------------------------------------------------------------------------
@dataclass
class _Invocation:
    function: str
    deadline: float  # virtual monotonic seconds


@dataclass
class Span:
    function: str
    start: float
    end: float
    memory_mb: int


class Ec2Lifecycle:
    """Instance states over virtual time: moto's instance objects change state when their time comes."""

    def __init__(self, model: TimingModel, clock: VirtualClock):
        self.model, self.clock = model, clock
        self.rng = random.Random(model.seed)
        self._due: list[tuple[float, int, Any, str, str]] = []  # (at, seq, instance, from, to)
        self._seq = itertools.count()
        self.running_at: dict[str, float] = {}
        self.launches: list[tuple[float, int]] = []  # (virtual time of the request, instances)
        self._lock = threading.RLock()

    def settle(self) -> None:
        """Every state change whose time has come, in time order."""
        with self._lock:
            while self._due and self._due[0][0] <= self.clock.seconds:
                at, _, instance, before, after = heapq.heappop(self._due)
                if instance.state == before:
                    _set_state(instance, after)
                    if after == "running":
                        self.running_at[instance.id] = at

    def _then(self, instance: Any, now_state: str, seconds: float, later_state: str) -> None:
        _set_state(instance, now_state)
        with self._lock:
            heapq.heappush(self._due, (self.clock.seconds + seconds, next(self._seq), instance, now_state, later_state))

    def boot(self) -> float:
        return self.rng.uniform(*self.model.boot_seconds)

    def launched(self, instances: list[Any]) -> None:
        self.launches.append((self.clock.seconds, len(instances)))
        for instance in instances:
            self.running_at.pop(instance.id, None)
            self._then(instance, "pending", self.boot(), "running")

    def started(self, instances: list[Any]) -> None:
        for instance in instances:
            if instance.state == "running":
                self.running_at.pop(instance.id, None)
                self._then(instance, "pending", self.boot(), "running")

    def stopped(self, instances: list[Any]) -> None:
        for instance in instances:
            if instance.state == "stopped":
                self._then(instance, "stopping", self.model.stop_seconds, "stopped")

    def terminated(self, instances: list[Any]) -> None:
        for instance in instances:
            if instance.state == "terminated":
                self._then(instance, "shutting-down", self.model.terminate_seconds, "terminated")


def _set_state(instance: Any, name: str) -> None:
    instance._state.name, instance._state.code = name, STATE_CODES[name]


class TargetHealth:
    """Registration and deregistration times per (target group, target), and the health they make."""

    def __init__(self, clock: VirtualClock, lifecycle: Ec2Lifecycle):
        self.clock, self.lifecycle = clock, lifecycle
        self.registered_at: dict[tuple[str, str], float] = {}
        self.draining: dict[str, dict[str, tuple[float, Any]]] = defaultdict(dict)  # arn -> id -> (until, port)

    def registered(self, group: Any, targets: list[dict]) -> None:
        for target in targets:
            self.registered_at[(group.arn, target["Id"])] = self.clock.seconds
            self.draining[group.arn].pop(target["Id"], None)

    def deregistered(self, group: Any, targets: list[dict]) -> None:
        delay = int(group.attributes.get("deregistration_delay.timeout_seconds", 300))
        for target in targets:
            self.registered_at.pop((group.arn, target["Id"]), None)
            if delay > 0:
                port = target.get("Port", group.port)
                self.draining[group.arn][target["Id"]] = (self.clock.seconds + delay, port)

    def draining_targets(self, group: Any) -> list[dict]:
        now, draining = self.clock.seconds, self.draining.get(group.arn, {})
        for target_id in [i for i, (until, _) in draining.items() if until <= now]:
            del draining[target_id]
        return [{"Id": i, "Port": port} for i, (_, port) in draining.items() if i not in group.targets]

    def health(self, group: Any, target: dict, status: Any, ec2_backend: Any) -> Any:
        """`status`: what moto says; the simulated state where timing changes it."""
        from moto.elbv2.models import FakeHealthStatus

        target_id = target["Id"]
        if target_id not in group.targets:
            until = self.draining.get(group.arn, {}).get(target_id)
            if until is not None and self.clock.seconds < until[0]:
                return FakeHealthStatus(target_id, until[1], group.health_check_port, "draining",
                                        "Target.DeregistrationInProgress", "Target deregistration is in progress")
            return status
        instance = ec2_backend.get_instance_by_id(target_id) if target_id.startswith("i-") else None
        if instance is None or status.status != "healthy":
            return status
        if instance.state == "pending":
            return FakeHealthStatus(target_id, status.port, group.health_check_port, "initial",
                                    "Elb.RegistrationInProgress", "Target registration is in progress")
        if instance.state != "running":
            return FakeHealthStatus(target_id, status.port, group.health_check_port, "unused", "Target.InvalidState",
                                    f"Target is in the {instance.state} state")
        return self._checked(group, target_id, status)

    def _checked(self, group: Any, target_id: str, status: Any) -> Any:
        from moto.elbv2.models import FakeHealthStatus

        registered = self.registered_at.get((group.arn, target_id))
        if registered is None:  # registered outside the simulation (a seeded fleet): healthy already
            return status
        checks = int(group.health_check_interval_seconds) * int(group.healthy_threshold_count)
        healthy_at = max(registered, self.lifecycle.running_at.get(target_id, -math.inf)) + checks
        if self.clock.seconds < healthy_at:
            return FakeHealthStatus(target_id, status.port, group.health_check_port, "initial",
                                    "Elb.InitialHealthChecking", "Initial health checks in progress")
        return status


class TimingSimulator:
    """The installed simulator of one LocalRuntime (see the module docstring)."""

    def __init__(self, model: TimingModel, clock: VirtualClock | None = None):
        self.model = model
        self.clock = clock or VirtualClock()
        self.lifecycle = Ec2Lifecycle(model, self.clock)
        self.targets = TargetHealth(self.clock, self.lifecycle)
        self.buckets: dict[str, TokenBucket] = {}
        self._local = threading.local()
        self._lock = threading.RLock()
        self._lanes_end = 0.0  # where the last task of a handler's thread pool ended (virtual seconds)
        self._invocation_of_pool: dict[int, Any] = {}
        self._patches = Patches()
        self.lambdas: Any = None
        self.begin()

    # --- what happened --------------------------------------------------------------------------
    def begin(self) -> None:
        """Start counting (the runtime calls it as an execution starts)."""
        self.started_at, self.ended_at = self.clock.seconds, None
        self.spans: list[Span] = []
        self.calls: Counter = Counter()
        self.throttled: Counter = Counter()
        self.lambda_timeouts = 0
        self._launches_from = len(self.lifecycle.launches)

    def end(self) -> None:
        """The execution ended (its last state)."""
        self.ended_at = self.clock.seconds

    def report(self) -> dict[str, Any]:
        end = self.ended_at if self.ended_at is not None else self.clock.seconds
        functions: dict[str, dict[str, Any]] = {}
        for span in self.spans:
            f = functions.setdefault(span.function, {"invocations": 0, "simulated_seconds": 0.0,
                                                     "memory_mb": span.memory_mb})
            f["invocations"] += 1
            f["simulated_seconds"] += span.end - span.start
        for f in functions.values():
            f["gb_seconds"] = round(f["simulated_seconds"] * f["memory_mb"] / 1024, 3)
            f["simulated_seconds"] = round(f["simulated_seconds"], 3)
        launches = self.lifecycle.launches[self._launches_from:]
        launched = sum(n for _, n in launches)
        span = launches[-1][0] - launches[0][0] if launches else 0.0
        return {
            "model": self.model.describe(),
            "simulated_seconds": round(end - self.started_at, 3),
            "lambda_gb_seconds": round(sum(f["gb_seconds"] for f in functions.values()), 3),
            "functions": functions,
            "launched": launched, "launch_requests": len(launches), "launch_span_s": round(span, 3),
            "launch_rate_per_s": round(launched / span, 3) if span > 0 else None,
            "request_limit_exceeded": dict(self.throttled),
            "lambda_timeouts": self.lambda_timeouts,
            "api_calls": dict(sorted(self.calls.items())),
        }

    def spans_of(self, function: str) -> list[Span]:
        return [s for s in self.spans if s.function == function]

    # --- virtual time -------------------------------------------------------------------------------
    @contextmanager
    def simulating(self) -> Iterator[None]:
        """Calls made inside are simulated as a handler's are (for tests and tools)."""
        self._local.forced = getattr(self._local, "forced", 0) + 1
        try:
            yield
        finally:
            self._local.forced -= 1

    def in_simulation(self) -> bool:
        if getattr(self._local, "forced", 0):
            return True
        current = getattr(self.lambdas, "_current", None)
        return getattr(current, "function", None) is not None and self._invocation() is not None

    def _invocation(self) -> _Invocation | None:
        return getattr(self._local, "invocation", None)

    def seconds(self) -> float:
        """The caller's virtual time: its own lane's in a worker thread of a handler (calls made
        concurrently), the clock's otherwise."""
        lane = getattr(self._local, "lane", None)
        if lane is not None:
            return lane
        self._join()
        return self.clock.seconds

    def _join(self) -> None:
        """The handler goes on once the tasks it gave its thread pools are done: the clock stands
        at least where the last of them ended."""
        if self._lanes_end > self.clock.seconds:
            self.clock.advance_to(self._lanes_end)

    def spend(self, seconds: float) -> None:
        """`seconds` pass for the caller; an invocation that reaches its deadline is killed there
        (a worker thread's lane only moves on: its handler is killed at its own next call)."""
        lane = getattr(self._local, "lane", None)
        if lane is not None:
            self._local.lane = lane + max(0.0, seconds)
            return
        self._join()
        invocation = self._invocation() if self.in_simulation() else None
        if (invocation is not None and self.model.enforce_lambda_timeouts
                and self.clock.monotonic() + seconds >= invocation.deadline):
            self.clock.advance_to(invocation.deadline)
            self.lambda_timeouts += 1
            self._kill()
        self.clock.advance(seconds)

    def _in_lane(self, slots: list[float], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A task a handler gave a thread pool of K workers: it runs on a lane of virtual time of
        its own, starting when the first of the pool's K slots is free (all free when the pool got
        its first task), however the real threads happen to be scheduled; so N calls on K workers
        take about N/K calls' time. The handler goes on once its slowest task is done (`_join`).
        EC2's buckets apply to every call."""
        invocation = self._invocation_of_pool.get(id(slots))
        local = self._local
        with self._lock:
            start = heapq.heappop(slots)
        local.invocation, local.forced, local.lane = invocation, 1, start
        try:
            return fn(*args, **kwargs)
        finally:
            end = local.lane
            local.lane, local.invocation, local.forced = None, None, 0
            with self._lock:
                heapq.heappush(slots, end)
                self._lanes_end = max(self._lanes_end, end)

    def _kill(self) -> None:
        from .lambdas import Killed

        self.lambdas._current.killed = True
        raise Killed()

    def fleet_now(self) -> datetime:
        """The time the simulated service stamps its metrics with: virtual, to the second (the
        gates' windows are whole seconds)."""
        return self.clock.now().replace(microsecond=0)

    # --- installing ---------------------------------------------------------------------------------
    def install(self, lambdas: Any) -> None:
        self.lambdas = lambdas
        self._install_dispatch()
        self._install_concurrency()
        self._install_ec2()
        self._install_elb()
        self._install_clocks()
        self._install_handlers(lambdas)

    def uninstall(self) -> None:
        self._patches.restore()

    def _install_concurrency(self) -> None:
        """A handler's thread pool (calls EC2 takes one instance at a time) runs its tasks on lanes."""
        from concurrent.futures import ThreadPoolExecutor

        sim, original = self, ThreadPoolExecutor.submit

        def submit(pool: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            if not sim.in_simulation():
                return original(pool, fn, *args, **kwargs)
            slots = getattr(pool, "_simulated_slots", None)
            if slots is None:  # the pool's workers, each free from when it got its first task
                slots = pool._simulated_slots = [sim.seconds()] * pool._max_workers
                sim._invocation_of_pool[id(slots)] = sim._invocation()
            return original(pool, sim._in_lane, slots, fn, *args, **kwargs)

        self._patches.set(ThreadPoolExecutor, "submit", submit)

    def _install_dispatch(self) -> None:
        from moto.core.botocore_stubber import BotocoreStubber

        sim, original = self, BotocoreStubber.__call__

        def dispatch(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            if not stubber.enabled:
                return original(stubber, event_name, request, **kwargs)
            return sim._dispatch(lambda: original(stubber, event_name, request, **kwargs), event_name, request)

        self._patches.set(BotocoreStubber, "__call__", dispatch)

    def _dispatch(self, send: Callable[[], Any], event_name: str, request: Any) -> Any:
        parts = event_name.split(".")
        service, operation = parts[1], parts[-1]
        simulated = self.in_simulation()
        if simulated:
            self.calls[f"{service}.{operation}"] += 1
            self.spend(self.model.latency(service, operation))
        self.lifecycle.settle()
        if not simulated or service != "ec2":
            return self._send(send, simulated)
        return self._ec2_call(send, operation, request)

    def _send(self, send: Callable[[], Any], simulated: bool) -> Any:
        previous = getattr(self._local, "dispatching", False)
        self._local.dispatching, self._local.launched = simulated, 0
        try:
            return send()
        finally:
            self._local.dispatching = previous

    def _ec2_call(self, send: Callable[[], Any], operation: str, request: Any) -> Any:
        """An EC2 request of a handler, through its request bucket and (for some) resource bucket."""
        params = _query(request)
        resource_spec = self.model.resources.get(operation)
        amount = _resource_amount(operation, params)
        with self._lock:
            now = self.seconds()
            bucket = self._bucket(operation, self.model.request_bucket(operation))
            resource = self._bucket(f"{operation}/resources", resource_spec) if resource_spec else None
            if bucket.level(now) < 1:
                return self._throttle(operation, request)
            if resource is not None and resource.level(now) < amount:
                return self._throttle(f"{operation}/resources", request)
            bucket.take(1, now)
            if resource is not None:
                resource.take(amount, now)
        response = self._send(send, True)
        if resource is not None:
            used = self._local.launched if operation == "RunInstances" else (
                amount if getattr(response, "status_code", 200) < 300 else 0)
            resource.give(amount - used, self.seconds())
        return response

    def _bucket(self, name: str, spec: BucketSpec) -> TokenBucket:
        if name not in self.buckets:
            self.buckets[name] = TokenBucket(spec, self.clock.seconds)
        return self.buckets[name]

    def _throttle(self, bucket: str, request: Any) -> Any:
        from botocore.awsrequest import AWSResponse
        from moto.core.botocore_stubber import MockRawResponse

        self.throttled[bucket] += 1
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code>'
                '<Message>Request limit exceeded.</Message></Error></Errors>'
                '<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>')
        return AWSResponse(request.url, 503, {"Content-Type": "text/xml;charset=UTF-8"}, MockRawResponse(body))

    def _dispatching(self) -> bool:
        return bool(getattr(self._local, "dispatching", False))

    def _install_ec2(self) -> None:
        from moto.ec2.models.instances import InstanceBackend

        sim = self
        run, start = InstanceBackend.run_instances, InstanceBackend.start_instances
        stop, terminate = InstanceBackend.stop_instances, InstanceBackend.terminate_instances

        def run_instances(backend: Any, *args: Any, **kwargs: Any) -> Any:
            reservation = run(backend, *args, **kwargs)
            if not sim._dispatching():
                return reservation
            sim._local.launched = len(reservation.instances)
            sim.lifecycle.launched(reservation.instances)
            return reservation

        def changed(original: Callable[..., Any], then: Callable[[list[Any]], None]) -> Callable[..., Any]:
            def change(backend: Any, instance_ids: list[str]) -> Any:
                result = original(backend, instance_ids)
                if sim._dispatching():
                    then([instance for instance, _ in result])
                return result
            return change

        self._patches.set(InstanceBackend, "run_instances", run_instances)
        self._patches.set(InstanceBackend, "start_instances", changed(start, self.lifecycle.started))
        self._patches.set(InstanceBackend, "stop_instances", changed(stop, self.lifecycle.stopped))
        self._patches.set(InstanceBackend, "terminate_instances", changed(terminate, self.lifecycle.terminated))

    def _install_elb(self) -> None:
        from moto.elbv2.models import ELBv2Backend, FakeTargetGroup

        sim, targets = self, self.targets
        register, deregister = FakeTargetGroup.register, FakeTargetGroup.deregister
        health_for, describe = FakeTargetGroup.health_for, ELBv2Backend.describe_target_health

        def registered(group: Any, items: list[dict]) -> None:
            register(group, items)
            if sim._dispatching():
                targets.registered(group, items)

        def deregistered(group: Any, items: list[dict]) -> None:
            deregister(group, items)
            if sim._dispatching():
                targets.deregistered(group, items)

        def health(group: Any, target: dict, ec2_backend: Any) -> Any:
            return targets.health(group, target, health_for(group, target, ec2_backend), ec2_backend)

        def describe_target_health(backend: Any, arn: str, items: list[dict]) -> Any:
            group = backend.target_groups.get(arn)
            if not items and group is not None:
                items = [*group.targets.values(), *targets.draining_targets(group)]
            return describe(backend, arn, items)

        self._patches.set(FakeTargetGroup, "register", registered)
        self._patches.set(FakeTargetGroup, "deregister", deregistered)
        self._patches.set(FakeTargetGroup, "health_for", health)
        self._patches.set(ELBv2Backend, "describe_target_health", describe_target_health)

    def _install_clocks(self) -> None:
        """The handlers' clock, botocore's retry sleeps and its adaptive rate limiter: virtual."""
        import botocore.endpoint
        from botocore.retries import bucket

        from spot_core.domain import clock as domain_clock

        sim = self
        self._utc_now = domain_clock.utc_now
        self._patches.set(domain_clock.SystemClock, "now", lambda _clock: sim.utc_now())
        self._patches.set(domain_clock.SystemClock, "monotonic", lambda _clock: sim.seconds())
        self._patches.set(domain_clock.SystemClock, "sleep", lambda _clock, seconds: sim.spend(seconds))
        self._patch_utc_now()
        self._patches.set(botocore.endpoint, "time", _SimulatedTime(self))
        self._patches.set(bucket.Clock, "sleep", lambda _clock, amount: sim.spend(amount))
        self._patches.set(bucket.Clock, "current_time", lambda _clock: sim.clock.epoch.timestamp() + sim.seconds())
        self._patches.set(bucket.TokenBucket, "_acquire", _acquire_virtually)

    def utc_now(self) -> datetime:
        return self.clock.epoch + timedelta(seconds=self.seconds())

    def _patch_utc_now(self) -> None:
        """`utc_now` wherever spot_core imported it by name (modules loaded later: at each invocation)."""
        for name, module in list(sys.modules.items()):
            if name.startswith(("spot_core", "spot_function_")) and getattr(module, "utc_now", None) is self._utc_now:
                self._patches.set(module, "utc_now", self.utc_now)

    def _install_handlers(self, lambdas: Any) -> None:
        """Each handler run: the context's remaining time on the virtual clock, its span recorded."""
        sim, saved = self, lambdas.handler

        def handler(name: str) -> Any:
            run, spec = saved(name), lambdas.specs[name]

            def timed(event: Any, context: Any) -> Any:
                sim._patch_utc_now()
                start, deadline = sim.clock.seconds, sim.clock.monotonic() + spec.timeout_seconds
                if context is not None:
                    context.get_remaining_time_in_millis = \
                        lambda: max(0, round((deadline - sim.clock.monotonic()) * 1000))
                previous, sim._local.invocation = sim._invocation(), _Invocation(name, deadline)
                try:
                    return run(event, context)
                finally:
                    sim._local.invocation = previous
                    sim.spans.append(Span(name, start, sim.clock.seconds, spec.memory_mb))
            return timed

        self._patches.set(lambdas, "handler", handler)


class _SimulatedTime:
    """Stands in for the `time` module in botocore's endpoint: a retry's back-off sleeps
    virtually when a simulated call is retried."""

    def __init__(self, sim: TimingSimulator):
        self.sim = sim

    def sleep(self, seconds: float) -> None:
        if self.sim.in_simulation():
            self.sim.spend(seconds)
        else:
            time.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _acquire_virtually(bucket: Any, amount: float, block: bool) -> bool:
    """botocore's adaptive TokenBucket._acquire, waiting on its (virtual) clock instead of a condition."""
    from botocore.exceptions import CapacityNotAvailableError

    bucket._refill()
    if amount > bucket._current_capacity:
        if not block:
            raise CapacityNotAvailableError()
        bucket._clock.sleep(bucket._sleep_amount(amount))
        bucket._refill()
    bucket._current_capacity -= amount
    return True


def _query(request: Any) -> dict[str, list[str]]:
    body = request.body or b""
    if hasattr(body, "read"):
        return {}
    return parse_qs(body.decode() if isinstance(body, bytes) else str(body))


def _resource_amount(operation: str, params: dict[str, list[str]]) -> int:
    """Instances a request asks for: MaxCount for RunInstances, its instance ids for the others."""
    if operation == "RunInstances":
        return int((params.get("MaxCount") or params.get("MinCount") or ["1"])[0])
    return sum(1 for key in params if key.startswith("InstanceId."))
