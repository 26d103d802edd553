"""The state machine definition: generated file up to date, every placeholder known,
every Lambda task retried on transient errors only."""

import json
import re
from pathlib import Path

from spot_core.entry.catalog import FUNCTIONS
from tools.build_asl import definition

ASL = Path(__file__).resolve().parents[2] / "statemachines" / "spot_migration.asl.json"


def _states(states):
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"]["States"])


def test_committed_asl_matches_the_generator():
    assert json.loads(ASL.read_text()) == definition, "run `make asl` and commit the result"


def test_every_placeholder_is_a_catalog_function_and_every_function_is_used():
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL.read_text()))
    assert placeholders == {f.asl_placeholder for f in FUNCTIONS if f.asl_placeholder}


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
