"""The fault matrix, generated from the state machine definition: every Task state of the ASL
(inside Map and Parallel states too; at each wave where the state is inside the wave Map) ×

- service: one Lambda service exception (the runtime's inject_fault 'service'), retried;
- throttle: Lambda.TooManyRequestsException on every attempt the state's Retry allows
  (1 + its MaxAttempts for that error, read from the ASL), so the state fails for good;
- capacity: EC2 refuses capacity (InsufficientInstanceCapacity) to the state's function:
  every Spot pool on RunInstances (for good), or StartInstances (twice, then capacity is
  back: a refusal for good is retried by Rollback for RESTORE_RETRY_SECONDS of the
  services' clock, which is real time, not the runtime's virtual time); only where the
  function launches or starts instances (the others are skipped with that reason, and
  counted);
- timeout-first / timeout-last: the invocation dies right after its first / last mutating
  AWS call (the runtime's crash_after, Sandbox.Timedout) and is retried.

Every run must end in a terminal state with the fleet completed, or exactly restored, or the
execution ended RollbackFailed naming each instance kept on Spot, the migration item in a
terminal status, and the invariants of tests/workflow/invariants.py holding; a fault the
retries absorb (service, timeouts) must not change the outcome.

Each state is reached by one scenario (SCENARIO_OF) on a small fleet (three web instances
behind the ALB and a worker in no target group): the happy path (auto-approved, waves of
10/50/100 %, 60 s bakes), a rollback (degraded replacements fail the first gate), a rollback
that fails (one original cannot start again: IncorrectInstanceState), human approval,
approval timeout, rejection, veto, dry run and nothing to migrate. A baseline run of each
scenario tells which invocation is the state's (the n-th of its function) and how many
mutating calls it makes.

Cost: every cell is a whole run (~4-5 s). `make test` runs the coverage check (the matrix
covers every Task state of the ASL, with every fault or a reason) and one cell of each
fault kind; SPOT_FAULT_MATRIX=full runs every cell (several minutes single-process).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from invariants import SmallFleet, check_all, observe, small_fleet

from spot_core.entry.catalog import FUNCTIONS
from spotctl.local.runtime import ASL_PATH, TERMINAL, ExecutionResult, LocalRuntime
from spotctl.local.workload import Degradation

FULL = os.environ.get("SPOT_FAULT_MATRIX", "").lower() == "full"
SEED = 11
RUN_TIMEOUT = 60.0
WAVES = [10, 50, 100]
FAULTS = ("service", "throttle", "capacity", "timeout-first", "timeout-last")
THROTTLE = "Lambda.TooManyRequestsException"
START_REFUSALS = 2  # StartInstances refused for capacity this many times, then served
RETRIED_FAULTS = ("service", "timeout-first", "timeout-last")  # the retries absorb them: same outcome
# The scenario that reaches each Task state (a new state must say how it is reached)
SCENARIO_OF = {
    "Analyze": "happy", "PerformanceAgent": "happy", "CapacityAgent": "happy", "ApplicationAgent": "happy",
    "ConsolidateReviews": "happy", "CaptureBaseline": "happy", "MigrateWave": "happy", "QualityGate": "happy",
    "Finalize": "happy", "Rollback": "rollback", "RecordRollbackFailure": "rollback_fails",
    "RequestApproval": "approval", "RecordApprovalTimeout": "approval_timeout", "RecordRejection": "rejected",
    "RecordVeto": "vetoed", "RecordDryRun": "dry_run", "NothingToMigrate": "nothing",
}
# One cell of each fault kind runs in make test; the whole matrix with SPOT_FAULT_MATRIX=full
IN_MAKE_TEST = {("QualityGate", 1, "throttle"), ("MigrateWave", 2, "capacity"), ("PerformanceAgent", None, "service"),
                ("MigrateWave", 1, "timeout-last")}  # all four on the happy path: one baseline run
FUNCTION_OF = {spec.asl_placeholder: f"spot-migration-{spec.name}" for spec in FUNCTIONS if spec.asl_placeholder}
LAUNCHES = {f"spot-migration-{spec.name}" for spec in FUNCTIONS if "ec2:migrate" in spec.permissions}

pytestmark = pytest.mark.usefixtures("quiet_moto")


# --- the matrix, from the ASL ---------------------------------------------------------------------
@dataclass(frozen=True)
class TaskState:
    name: str
    function: str
    literals: tuple[tuple[str, Any], ...]  # the Payload's constant fields (e.g. the outcome a Finalize records)
    in_map: bool
    retry: tuple[dict, ...]

    def attempts(self, error: str) -> int:
        """How many times Step Functions runs the state when every attempt fails with `error`."""
        for retrier in self.retry:
            if error in retrier["ErrorEquals"] or "States.ALL" in retrier["ErrorEquals"]:
                return 1 + int(retrier.get("MaxAttempts", 3))
        return 1

    def matches(self, event: Any, wave: int | None) -> bool:
        """Is this raw Lambda event this state's invocation (at `wave`)?"""
        if not isinstance(event, dict) or any(event.get(k) != v for k, v in self.literals):
            return False
        return wave is None or (event.get("wave") or {}).get("index") == wave


def task_states(states: dict, in_map: bool = False) -> list[TaskState]:
    found = []
    for name, state in states.items():
        if state["Type"] == "Task":
            params = state.get("Parameters", {})
            placeholder = str(params.get("FunctionName", "")).strip("${}")
            payload = params.get("Payload", {})
            literals = tuple(sorted((k, v) for k, v in payload.items() if not k.endswith(".$")))
            found.append(TaskState(name, FUNCTION_OF.get(placeholder, placeholder), literals, in_map,
                                   tuple(state.get("Retry", []))))
        for branch in state.get("Branches", []):
            found += task_states(branch["States"], in_map)
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found += task_states(processor["States"], True)
    return found


@dataclass(frozen=True)
class Cell:
    state: str
    wave: int | None
    fault: str
    scenario: str
    skip: str | None = None  # why the combination does not apply

    @property
    def id(self) -> str:
        return f"{self.state}{'' if self.wave is None else f'[w{self.wave}]'}-{self.fault}"


def states_of_the_asl() -> dict[str, TaskState]:
    return {s.name: s for s in task_states(json.loads(ASL_PATH.read_text())["States"])}


def matrix() -> list[Cell]:
    cells = []
    for state in states_of_the_asl().values():
        for wave in (range(len(WAVES)) if state.in_map else [None]):
            for fault in FAULTS:
                skip = None
                if fault == "capacity" and state.function not in LAUNCHES:
                    skip = f"{state.function} launches and starts no instance"
                cells.append(Cell(state.name, wave, fault, SCENARIO_OF.get(state.name, "?"), skip))
    return cells


MATRIX = matrix()


# --- the scenarios ----------------------------------------------------------------------------------
def _request(rt: LocalRuntime, scenario: str) -> dict:
    tg = rt.fleet.target_group_arn
    gated = {"quality": {"target_group_arn": tg}}
    auto = {"approval": {"auto_approve": True}, **gated}
    one_wave = {"waves": [100], "bake_seconds": [60]}
    return {
        "happy": {**auto, "waves": WAVES, "bake_seconds": [60] * len(WAVES)},
        "rollback": {**auto, **one_wave},
        "rollback_fails": {**auto, **one_wave},
        "approval": {**gated, **one_wave},
        "approval_timeout": {**gated, **one_wave, "approval": {"timeout_seconds": 1}},
        "rejected": {**gated, **one_wave},
        "vetoed": {"approval": {"auto_approve": True}, "quality": {"latency": {
            "namespace": "Custom/App", "metric_name": "Latency", "dimensions": {"Service": "web"}}}},
        "dry_run": {**gated, "dry_run": True},
        "nothing": {"approval": {"auto_approve": True}, "selector": {"tags": {"team": "nobody"}}},
    }[scenario]


def refuse_starts(monkeypatch: pytest.MonkeyPatch, code: str = "InsufficientInstanceCapacity",
                  only: set[str] | None = None, times: int | None = None) -> None:
    """EC2 refuses StartInstances (moto would always start): for the instances `only` (None:
    any), the first `times` calls (None: always)."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.instances import InstanceBackend

    original, left = InstanceBackend.start_instances, [times]

    def start_instances(backend: Any, instance_ids: list[str]) -> Any:
        if (only is None or only & set(instance_ids)) and (left[0] is None or left[0] > 0):
            if left[0] is not None:
                left[0] -= 1
            raise EC2ClientError(code, f"refused to start {', '.join(sorted(only or instance_ids))} ({code})")
        return original(backend, instance_ids)

    monkeypatch.setattr(InstanceBackend, "start_instances", start_instances)


def _decide(rt: LocalRuntime, mid: str, approved: bool) -> None:
    """Wait for the approval request (or the end), then decide like a customer."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        if rt.wait(mid, timeout=0).status in TERMINAL:
            return
        try:
            if rt.migration(mid).get("status") == "awaiting_approval":
                break
        except Exception:  # noqa: BLE001, S110 - not written yet
            pass
        time.sleep(0.05)
    time.sleep(0.5)  # a retried request (virtual backoff) stores its own token first
    for _ in range(3):
        try:
            rt.decide(mid, approved=approved, reason=None if approved else "not now")
            return
        except Exception:  # noqa: BLE001 - the request is being retried: decide again
            time.sleep(0.5)


def play(rt: LocalRuntime, fleet: SmallFleet, scenario: str, monkeypatch: pytest.MonkeyPatch) -> ExecutionResult:
    if scenario in ("rollback", "rollback_fails"):
        rt.fleet.degradation = Degradation(wave=0)  # the replacements degrade: the first gate fails
    if scenario == "rollback_fails":  # one original cannot start again: it keeps its replacement
        refuse_starts(monkeypatch, "IncorrectInstanceState", only={fleet.web[0]})
    mid = rt.start_migration(_request(rt, scenario))
    if scenario in ("approval", "rejected"):
        _decide(rt, mid, approved=scenario == "approval")
    result = rt.wait(mid, timeout=RUN_TIMEOUT)
    if result.status not in TERMINAL:
        rt.client("stepfunctions").stop_execution(executionArn=result.arn, error="TestTimeout")
    return result


@dataclass
class Baseline:
    status: str
    error: str | None
    runs: list[tuple[str, Any, list[str]]] = field(default_factory=list)  # (function, event, mutating calls)

    def invocation(self, state: TaskState, wave: int | None) -> tuple[int, list[str]] | None:
        """(n, calls): the state's first invocation is the n-th of its function (1-based)."""
        n = 0
        for function, event, calls in self.runs:
            if function != state.function:
                continue
            n += 1
            if state.matches(event, wave):
                return n, calls
        return None


_BASELINES: dict[str, Baseline] = {}


def baseline(scenario: str, monkeypatch: pytest.MonkeyPatch) -> Baseline:
    if scenario not in _BASELINES:
        with monkeypatch.context() as m, LocalRuntime(seed=SEED) as rt:
            result = play(rt, small_fleet(rt), scenario, m)
            _BASELINES[scenario] = Baseline(result.status, result.error, [
                (r.function, r.event, r.actions) for r in rt.lambdas.mutating_calls()])
    return _BASELINES[scenario]


# --- arming a fault at the state's invocation ---------------------------------------------------------
def at_run(rt: LocalRuntime, function: str, n: int, action: Callable[[], Any]) -> None:
    """`action` just before the n-th run of `function`: now if n == 1, else when its (n-1)-th ends."""
    if n <= 1:
        action()
        return
    seen = []

    def watch(log: Any) -> None:
        runs = len([m for m in rt.lambdas.mutation_log if m.function == function])
        if log.function == function and not seen and runs == n - 1:
            seen.append(True)
            action()

    rt.lambdas.watchers.append(watch)


def arm(rt: LocalRuntime, cell: Cell, state: TaskState, base: Baseline, monkeypatch: pytest.MonkeyPatch) -> None:
    found = base.invocation(state, cell.wave)
    if found is None:
        pytest.fail(f"the {cell.scenario} scenario does not reach {cell.id.rsplit('-', 1)[0]} "
                    f"(it ended {base.status} {base.error})")
    n, calls = found
    fn = state.function
    if cell.fault == "service":
        at_run(rt, fn, n, lambda: rt.lambdas.inject_fault(fn, "service", times=1))
    elif cell.fault == "throttle":
        times = state.attempts(THROTTLE)
        at_run(rt, fn, n, lambda: rt.lambdas.inject_fault(fn, THROTTLE, times=times))
    elif cell.fault == "capacity":
        if "ec2:RunInstances" in calls:
            at_run(rt, fn, n, lambda: rt.market.refuse())  # every Spot pool, every time
        elif "ec2:StartInstances" in calls:  # refused twice, then capacity is back (see the module docstring)
            at_run(rt, fn, n, lambda: refuse_starts(monkeypatch, times=START_REFUSALS))
        else:
            pytest.skip(f"{fn} neither launches nor starts an instance in the {cell.scenario} scenario")
    else:
        if not calls:
            pytest.skip(f"{fn} makes no mutating call in the {cell.scenario} scenario: no side effect to crash after")
        if cell.fault == "timeout-last" and len(calls) == 1:
            pytest.skip(f"{fn} makes one mutating call: the same cell as timeout-first")
        k = 1 if cell.fault == "timeout-first" else len(calls)
        rt.lambdas.crash_after(fn, k, when=lambda event: state.matches(event, cell.wave))


# --- what must hold -----------------------------------------------------------------------------------
def settled(rt: LocalRuntime, fleet: SmallFleet, result: ExecutionResult, item: dict | None) -> list[str]:
    """The fleet completed, or exactly restored (or untouched), or the execution ended
    RollbackFailed (whose naming of each kept instance check_all verifies)."""
    after = rt.fleet.snapshot()
    if after == fleet.before or result.error == "RollbackFailed":
        return []
    records = rt.records(result.migration_id)
    open_records = [f"{r.instance_id}: {r.status}" for r in records if r.eligible and r.status not in (
        "migrated", "failed", "excluded")]
    if records and not open_records:
        return []  # completed: every eligible instance migrated (or failed and left as it was)
    kept = [r.instance_id for r in records if r.status == "rollback_failed"]
    said = json.dumps(item or {}, default=str)
    named = f"; kept on Spot {kept}, named in the migration item: {[k for k in kept if k in said]}" if kept else ""
    return [f"settled: ended {result.status} {result.error or ''} (item '{(item or {}).get('status')}') with the "
            f"fleet neither completed nor restored, and not RollbackFailed (records {', '.join(open_records)}{named}; "
            f"spot {sorted(after['spot'])}, stopped {sorted(after['stopped'])})"]


@pytest.mark.parametrize("cell", [
    pytest.param(c, id=c.id, marks=pytest.mark.skip(reason=c.skip) if c.skip else (
        [] if FULL or (c.state, c.wave, c.fault) in IN_MAKE_TEST
        else pytest.mark.skip(reason="opt-in: SPOT_FAULT_MATRIX=full")))
    for c in MATRIX])
def test_fault(cell: Cell, monkeypatch: pytest.MonkeyPatch):
    state = states_of_the_asl()[cell.state]
    base = baseline(cell.scenario, monkeypatch)
    with LocalRuntime(seed=SEED) as rt:
        fleet = small_fleet(rt)
        arm(rt, cell, state, base, monkeypatch)
        result = play(rt, fleet, cell.scenario, monkeypatch)
        world = observe(rt, [result.migration_id])
        violations = check_all(rt, world, result, fleet.originals, fleet.before)
        violations += settled(rt, fleet, result, world.items.get(result.migration_id))
        if cell.fault in RETRIED_FAULTS and (result.status, result.error) != (base.status, base.error):
            violations.append(f"outcome: ended {result.status} {result.error or ''}, without the fault "
                              f"{base.status} {base.error or ''} ({(result.cause or '')[:300]})")
    print(f"\n{cell.id} ({cell.scenario}): {result.status} {result.error or ''}")
    for v in violations:
        print(f"    ! {v}")
    assert not violations, f"{cell.id} ({cell.scenario}) ended {result.status} {result.error}:\n" + "\n".join(
        f"  ! {v}" for v in violations)


def test_the_matrix_covers_every_task_state_of_the_asl():
    """Every Task state (in Map and Parallel states too) × every fault, at each wave inside the
    wave Map; a combination that does not apply is in the matrix with its reason."""
    states = states_of_the_asl()
    assert {"MigrateWave", "QualityGate", "PerformanceAgent", "Rollback", "RequestApproval"} <= set(states)
    assert [s for s in states if s not in SCENARIO_OF] == [], "say which scenario reaches the new state"
    assert all(s.function.startswith("spot-migration-") for s in states.values()), "every task names a function"
    expected = {(s.name, w, f) for s in states.values() for w in (range(len(WAVES)) if s.in_map else [None])
                for f in FAULTS}
    assert {(c.state, c.wave, c.fault) for c in MATRIX} == expected
    assert len(MATRIX) == len(expected)
    skipped = [c for c in MATRIX if c.skip]
    assert all(c.fault == "capacity" for c in skipped)
    assert {c.state for c in MATRIX if c.fault == "capacity" and not c.skip} == {"MigrateWave", "Rollback"}
    assert {(c.state, c.wave, c.fault) for c in MATRIX} >= IN_MAKE_TEST
    print(f"\nfault matrix: {len(states)} Task states, {len(MATRIX)} cells, "
          f"{len(MATRIX) - len(skipped)} applicable, {len(skipped)} not applicable:")
    for c in MATRIX:
        print(f"  {c.id:<40} {c.scenario:<18} {('n/a: ' + c.skip) if c.skip else ''}")
