"""The state machine definition: generated file up to date, every placeholder known,
every Lambda task retried on transient errors only."""

import json
import re
from pathlib import Path

import pytest

from spot_core.entry.catalog import MACHINE_ARN_VARIABLES, tasks_of
from tools.build_asl import MACHINES, definition

STATE_MACHINES = Path(__file__).resolve().parents[2] / "statemachines"


def _states(states):
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"]["States"])


def test_the_generator_writes_every_state_machine_of_the_catalog():
    assert set(MACHINES) == set(MACHINE_ARN_VARIABLES)


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_committed_asl_matches_the_generator(name):
    committed = json.loads((STATE_MACHINES / f"{name}.asl.json").read_text())
    assert committed == MACHINES[name], "run `make asl` and commit the result"


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_every_placeholder_is_a_catalog_function_and_every_function_is_used(name):
    placeholders = set(re.findall(r"\$\{(\w+)\}", (STATE_MACHINES / f"{name}.asl.json").read_text()))
    assert placeholders == {f.asl_placeholder for f in tasks_of(name)}


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_every_lambda_task_of_every_machine_retries_transient_errors_but_not_domain_errors(name):
    for task, state in ((n, s) for n, s in _states(MACHINES[name]["States"]) if s["Type"] == "Task"):
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert {"Lambda.ServiceException", "Lambda.TooManyRequestsException", "TransientAwsError"} <= retried, task
        assert "States.ALL" not in retried, task


def test_the_rehome_loops_through_a_wait_and_ends_failed_with_a_name():
    states = MACHINES["stateful_rehome"]["States"]
    assert states["WaitForInstances"] == {"Type": "Wait", "SecondsPath": "$.progress.wait_seconds", "Next": "Rehome"}
    assert states["Rehome"]["Catch"][0]["Next"] == "GiveUp"
    assert {s["Error"] for s in states.values() if s["Type"] == "Fail"} == {"RehomeFailed"}


def test_every_lambda_task_retries_transient_errors_but_not_domain_errors():
    tasks = [(n, s) for n, s in _states(definition["States"]) if s["Type"] == "Task"]
    assert len(tasks) >= 12
    never_retried = {"States.ALL", "WaveFailed", "QualityGateFailed", "InvalidMigrationRequest", "InvalidEvent"}
    for name, state in tasks:
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert {"Lambda.ServiceException", "Lambda.TooManyRequestsException", "TransientAwsError"} <= retried, name
        assert not retried & never_retried, name
        assert all(r["BackoffRate"] > 1 for r in state["Retry"]), name


def test_payloads_carry_ids_not_plans():
    """Tasks send the migration id (and small wave/failure objects), never the plan."""
    for name, state in _states(definition["States"]):
        if state["Type"] == "Task":
            payload = state["Parameters"]["Payload"]
            assert "migration_id.$" in payload or "migration_id" in payload, name
            assert not any("plan" in key for key in payload), name


def test_every_failure_path_ends_in_a_named_fail_state():
    fails = {n: s["Error"] for n, s in definition["States"].items() if s["Type"] == "Fail"}
    assert set(fails.values()) == {"MigrationVetoed", "MigrationRejected", "ApprovalTimedOut", "MigrationRolledBack",
                                   "RollbackFailed"}
