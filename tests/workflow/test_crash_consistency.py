"""Crash consistency: MigrateWave, Rollback and the interruption handler die right after their
k-th mutating AWS call, for every k, and are retried (Step Functions' Retry, or the
asynchronous retries of an EventBridge delivery); afterwards the invariants of
tests/workflow/invariants.py must hold:

- at most one live (pending/running) replacement per original;
- every original serves (running, healthy in its target groups) or has a serving replacement;
- no managed instance runs that no record (plan records, replacement claims) knows, none
  that its records are done with, and none in use that the orphan sweeper would take for
  an orphan;
- the records say what the fleet shows;
- after a rollback the fleet is exactly as before, or the execution ended RollbackFailed
  naming each instance it kept on Spot;
- the execution ended, the migration item in the terminal status that goes with it, and a
  retried crash changes nothing of the outcome (the uncrashed run's status and error).

The crash (spotctl/local/lambdas.py `InProcessLambdas.crash_after`) is a Lambda killed at
its timeout: the side effects up to the k-th mutating call stay, nothing after it runs, and
the invocation ends with `Sandbox.Timedout` (for Step Functions tasks: the first of
Sandbox.Timedout / Lambda.Unknown that the ASL retries on every Lambda task).

Each scenario is small: opted-in web instances behind the ALB and one worker in no target
group, auto-approved, one wave, a 60 s bake. MigrateWave migrates them; Rollback undoes
them after a failing quality gate (degraded replacements); the interruption handler
replaces the migrated replacement of a web instance on a Spot interruption warning.

Cost (every crash point is a whole run, ~3-4 s): `make test` sweeps every k of the
representative scenario, MigrateWave on one web instance and the worker (13 crash points,
~50 s single-process). SPOT_CRASH_SWEEP=full sweeps every k of all three scenarios on three
web instances and the worker (21 + 20 + 12 crash points, about 6 minutes), and the
interruption handler once more dying with Runtime.ExitError (out of memory, the runtime
exiting: killed before its deadline, so what it marked in progress has not expired when
EventBridge retries; 12 more).
SPOT_CRASH_REPORT=<file> writes every crash point's outcome as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from invariants import SmallFleet, check_all, observe, request, small_fleet

from spotctl.local.lambdas import TIMEOUT_ERROR
from spotctl.local.runtime import ASL_PATH, TERMINAL, LocalRuntime
from spotctl.local.workload import Degradation

FULL = os.environ.get("SPOT_CRASH_SWEEP", "").lower() == "full"
REPORT = os.environ.get("SPOT_CRASH_REPORT")
SEED = 11
RUN_TIMEOUT = 60.0  # real seconds; Wait states and retry backoff take no real time
FN = "spot-migration-{}".format

pytestmark = pytest.mark.usefixtures("quiet_moto")


def lambda_tasks(states: dict) -> dict[str, dict]:
    """Every Lambda Task state of the definition, inside Map and Parallel states too."""
    found = {}
    for name, state in states.items():
        if state["Type"] == "Task" and ":lambda:" in state["Resource"]:
            found[name] = state
        for branch in state.get("Branches", []):
            found |= lambda_tasks(branch["States"])
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found |= lambda_tasks(processor["States"])
    return found


def retried(state: dict, error: str) -> bool:
    return any(error in r["ErrorEquals"] or "States.ALL" in r["ErrorEquals"] for r in state.get("Retry", []))


def crash_error() -> str:
    """What a killed Lambda looks like to Step Functions, as the ASL retries it."""
    tasks = lambda_tasks(json.loads(ASL_PATH.read_text())["States"]).values()
    for error in (TIMEOUT_ERROR, "Lambda.Unknown"):
        if all(retried(t, error) for t in tasks):
            return error
    return TIMEOUT_ERROR


# --- one run of a scenario ------------------------------------------------------------------------
@dataclass
class Run:
    scenario: str
    k: int | None  # None: the uncrashed baseline
    status: str | None = None
    error: str | None = None
    mutations: list[str] = field(default_factory=list)  # the target invocation's mutating calls (baseline)
    fired: bool = False
    crashed_after: str | None = None
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        where = "baseline" if self.k is None else f"k={self.k} after {self.crashed_after}"
        verdict = "ok" if not self.violations else f"{len(self.violations)} violation(s)"
        return f"{self.scenario:<20} {where:<50} {self.status} {self.error or ''}: {verdict}"


def finish(rt: LocalRuntime, mid: str) -> Any:
    result = rt.wait(mid, timeout=RUN_TIMEOUT)
    if result.status not in TERMINAL:  # stop it, so its thread does not outlive the runtime
        rt.client("stepfunctions").stop_execution(executionArn=result.arn, error="TestTimeout")
    return result


def migrate(rt: LocalRuntime, fleet: SmallFleet, crash: Callable[[], None] | None = None) -> Any:
    if crash:
        crash()
    return finish(rt, rt.start_migration(request(rt)))


@dataclass
class Scenario:
    name: str
    function: str  # whose invocation crashes

    web: int = 3  # web instances of the fleet (plus the worker)
    error: str | None = None  # how the invocation dies, if not as the ASL retries a killed Lambda

    def run(self, k: int | None, error: str, baseline: Run | None = None) -> Run:
        run = Run(self.name, k)
        with LocalRuntime(seed=SEED) as rt:
            fleet = small_fleet(rt, self.web)
            arm = (lambda: rt.lambdas.crash_after(self.function, k, error)) if k else None
            result, extra = self.play(rt, fleet, arm)
            target, crashes = rt.lambdas.mutating_calls(self.function), rt.lambdas.crashes
            run.status, run.error = result.status, result.error
            if k is None:
                run.mutations = target[0].actions if target else []
            else:
                run.fired = bool(crashes and crashes[0].fired)
                run.crashed_after = crashes[0].action if crashes else None
                run.violations += self._harness(rt, result, k, error, run, baseline)
            world = observe(rt, [result.migration_id])
            before = fleet.before if self.name == "rollback" else None
            run.violations += check_all(rt, world, result, fleet.originals, before) + extra
            if baseline and (run.status, run.error) != (baseline.status, baseline.error):
                run.violations.append(f"outcome: ended {run.status} {run.error or ''}, the uncrashed run ended "
                                      f"{baseline.status} {baseline.error or ''} ({(result.cause or '')[:300]})")
        return run

    def _harness(self, rt: LocalRuntime, result: Any, k: int, error: str, run: Run,
                 baseline: Run | None) -> list[str]:
        """The crash happened where it was meant to, and Step Functions saw it as `error`."""
        if not run.fired:
            return [f"harness: the crash after mutating call {k} did not fire"]
        if baseline and baseline.mutations[k - 1] != run.crashed_after:
            run.notes.append(f"the {k}-th mutating call was {run.crashed_after}, "
                             f"{baseline.mutations[k - 1]} in the baseline")
        if self.name.startswith("interruption"):
            return []
        seen = [e["taskFailedEventDetails"]["error"] for e in rt.history(result.migration_id)
                if e["type"] == "TaskFailed"]
        return [] if error in seen else [f"harness: Step Functions did not see {error} (task errors: {seen})"]

    def play(self, rt: LocalRuntime, fleet: SmallFleet, arm: Callable[[], Any] | None) -> tuple[Any, list[str]]:
        if self.name == "migrate_wave":
            return migrate(rt, fleet, arm), []
        if self.name == "rollback":
            rt.fleet.degradation = Degradation(wave=0)  # the replacements degrade: the gate fails
            return migrate(rt, fleet, arm), []
        return self._interrupt(rt, fleet, arm)  # interruption, interruption_exit

    @staticmethod
    def _interrupt(rt: LocalRuntime, fleet: SmallFleet, arm: Callable[[], Any] | None) -> tuple[Any, list[str]]:
        """Migrated first; then EC2 interrupts the replacement of the first web instance."""
        result = migrate(rt, fleet)
        records = {r.instance_id: r for r in rt.records(result.migration_id)}
        victim = records[fleet.web[0]].replacement_id
        if result.status != "SUCCEEDED" or not victim:
            return result, [f"scenario: the migration before the interruption ended {result.status} {result.error}"]
        if arm:
            arm()
        outcome = rt.simulate(victim)
        extra = [f"interruption: the warning for {victim} was dead-lettered after {d['attempts']} attempts: "
                 f"{json.dumps(d['error'])[:300]}" for d in outcome["deliveries"] if "error" in d]
        return result, extra  # whatever the retried delivery answered, the invariants say whether it was right


SCENARIOS = {
    "migrate_wave": Scenario("migrate_wave", FN("migrate_wave"), web=3 if FULL else 1),
    "rollback": Scenario("rollback", FN("rollback")),
    "interruption": Scenario("interruption", FN("replace_interrupted")),
    # killed before its deadline (out of memory, the runtime exiting): what it marked in progress
    # (Powertools Idempotency) has not expired when EventBridge's retries come
    "interruption_exit": Scenario("interruption_exit", FN("replace_interrupted"), error="Runtime.ExitError"),
}
IN_MAKE_TEST = ("migrate_wave",)  # the representative scenario; the others with SPOT_CRASH_SWEEP=full


def _report(runs: list[Run]) -> None:
    for r in runs:
        print(r.line())
        for v in r.violations:
            print(f"    ! {v}")
        for n in r.notes:
            print(f"    ~ {n}")
    if REPORT:
        path = Path(REPORT)
        known = json.loads(path.read_text()) if path.exists() else {}
        for r in runs:
            known[f"{r.scenario}:{r.k}"] = r.__dict__
        path.write_text(json.dumps(known, indent=1, default=str))


# --- the tests -------------------------------------------------------------------------------------
def test_the_asl_retries_a_lambda_killed_at_its_timeout():
    """Step Functions reports a Lambda killed at its timeout as Sandbox.Timedout: every Lambda
    task retries it (the handlers resume where a killed invocation stopped)."""
    tasks = lambda_tasks(json.loads(ASL_PATH.read_text())["States"])
    assert [name for name, state in tasks.items() if not retried(state, TIMEOUT_ERROR)] == []


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[] if FULL or name in IN_MAKE_TEST else pytest.mark.skip(
        reason="opt-in: SPOT_CRASH_SWEEP=full")) for name in SCENARIOS])
def test_a_crash_after_any_mutating_call_is_recovered_by_the_retry(name):
    scenario = SCENARIOS[name]
    error = scenario.error or crash_error()
    baseline = scenario.run(None, error)
    n = len(baseline.mutations)
    assert n, f"the uncrashed {name} run made no mutating call ({baseline.status} {baseline.error})"
    assert not baseline.violations, "the uncrashed run already breaks invariants:\n" + "\n".join(baseline.violations)
    runs = [baseline] + [scenario.run(k, error, baseline) for k in range(1, n + 1)]
    print(f"\n{name}: {n} mutating calls in one uncrashed invocation: {baseline.mutations}; "
          f"{len(runs) - 1} crash points exercised, crash error {error}")
    _report(runs)
    failed = [r for r in runs if r.violations]
    assert not failed, "\n".join(f"{r.line()}\n" + "\n".join(f"    ! {v}" for v in r.violations) for r in failed)


def test_the_invariants_see_what_they_are_about():
    """A stopped original with nothing serving for it, and a managed instance nothing knows."""
    with LocalRuntime(seed=SEED) as rt:
        fleet = small_fleet(rt, web=1)
        rt.client("ec2").stop_instances(InstanceIds=fleet.web)
        planted = rt.fleet.launch("m5.large", "forgotten", "us-east-1c", {"spot-migration:managed": "true"},
                                  market="spot", register=False)
        violations = check_all(rt, observe(rt, []), None, fleet.originals)
    assert [v.split(":")[0] for v in violations] == ["served", "unknown-managed"], violations
    assert fleet.web[0] in violations[0] and planted[0] in violations[1]
