"""`spotctl approve|reject` followed at once after `spotctl migrate`: the decision waits (bounded,
with backoff) for the migration to reach its approval step; a migration past it, or one that
never asks, is a conflict at once."""

import threading
import time
from types import SimpleNamespace

import pytest

from spot_core.services.analyze import Analyze
from spot_core.services.migrations import ApprovalState, NotAwaitingApproval, approval_state
from spotctl import cli
from spotctl.cli import main
from spotctl.local.runtime import LocalRuntime

AWS = ["--region", "us-east-1"]  # a "deployed" stack: moto in-process, found by its outputs
ALICE = "arn:aws:iam::123456789012:user/alice"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


class VirtualClock:
    """spotctl.cli's time: sleeping advances it at once, and every sleep is recorded."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def rt():
    with LocalRuntime(seed=5) as runtime:
        runtime.fleet.seed_fleet(5)
        runtime.publish_stack("SpotMigration")
        yield runtime


@pytest.fixture
def held_analysis(monkeypatch):
    """The analysis waits until spotctl first decides to wait: the decision is sent while the
    migration is on its way to approval, whatever the machine's speed."""
    gate, analyze = threading.Event(), Analyze.run

    def held(self, *args, **kwargs):
        assert gate.wait(60), "spotctl never waited"
        return analyze(self, *args, **kwargs)

    def sleep(seconds):
        gate.set()
        time.sleep(seconds)

    monkeypatch.setattr(Analyze, "run", held)
    monkeypatch.setattr(cli, "time", SimpleNamespace(monotonic=cli.time.monotonic, sleep=sleep))
    return gate


def migrate(capsys, rt, mid, *flags):
    code, out, _ = run(capsys, "migrate", *AWS, "--id", mid, "--target-group", rt.fleet.target_group_arn,
                       "--waves", "100", "--bake", "300", *flags)  # one wave: the decision is the point
    assert code == 0, out
    return mid


@pytest.mark.parametrize("command, approved, outcome", [
    (["approve"], True, ("SUCCEEDED", None)),
    (["reject", "--reason", "change freeze"], False, ("FAILED", "MigrationRejected")),
])
def test_a_decision_right_after_migrate_waits_for_the_approval_step(rt, capsys, held_analysis, command, approved,
                                                                    outcome):
    mid = migrate(capsys, rt, f"wait-{command[0]}")
    code, out, err = run(capsys, command[0], mid, *command[1:], *AWS)

    assert code == 0, err
    assert held_analysis.is_set() and f"Migration {mid} is starting: waiting up to 120 s" in err
    assert f"{'Approved' if approved else 'Rejected'} {mid} as arn:aws:" in out
    result = rt.wait(mid)
    assert (result.status, result.error) == outcome
    assert rt.migration(mid)["approval"]["approved"] is approved

    # Past the approval step: a conflict at once, nothing waited for.
    code, _, err = run(capsys, "approve", mid, *AWS)
    assert code == 4 and f"is {'completed' if approved else 'rejected'}, not awaiting approval" in err
    assert "waiting up to" not in err


def test_a_migration_that_never_asks_is_a_conflict_at_once(rt, capsys, monkeypatch):
    clock = VirtualClock()
    monkeypatch.setattr(cli, "time", clock)
    auto = migrate(capsys, rt, "never-asks", "--auto-approve")
    code, _, err = run(capsys, "approve", auto, *AWS)
    assert code == 4 and "not awaiting approval: it needs no decision (auto_approve or dry run)" in err
    assert rt.wait(auto).status == "SUCCEEDED"

    rt.client("stepfunctions").start_execution(stateMachineArn=rt.state_machine_arn, name="refused", input="[]")
    assert rt.wait("refused").status == "FAILED"
    code, _, err = run(capsys, "reject", "refused", "--reason", "no", *AWS)
    assert code == 4 and "migration 'refused' ended FAILED before its approval step" in err
    assert clock.sleeps == []


def test_an_unknown_migration_is_not_waited_for(rt, capsys, monkeypatch):
    clock = VirtualClock()
    monkeypatch.setattr(cli, "time", clock)
    code, _, err = run(capsys, "approve", "no-such-migration", *AWS)
    assert code == 3 and "no migration 'no-such-migration'" in err and clock.sleeps == []


class AlwaysOnItsWay:
    """A backend whose migration stays on its way to approval."""

    def __init__(self):
        self.attempts = 0
        self.migrations = self

    def principal(self):
        return ALICE

    def decide(self, migration_id, approved, *, principal, reason=None):
        self.attempts += 1
        raise NotAwaitingApproval(migration_id, ApprovalState("reviewed", "RUNNING", pending=False, ahead=True))


@pytest.mark.parametrize("command", [["approve"], ["reject", "--reason", "no"]])
def test_the_wait_backs_off_and_gives_up_with_a_clear_message(capsys, monkeypatch, command):
    clock, backend = VirtualClock(), AlwaysOnItsWay()
    monkeypatch.setattr(cli, "time", clock)
    monkeypatch.setattr(cli, "_backend", lambda args: backend)

    code, _, err = run(capsys, *command, "slow-1", "--wait", "20")

    assert code == 4
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 2.5]  # doubling up to 5 s, never past the 20 s
    assert backend.attempts == len(clock.sleeps) + 1
    assert ("migration 'slow-1' is reviewed, not awaiting approval yet: its approval step is ahead, send the "
            "decision again shortly (still, after waiting 20 s): follow it with `spotctl watch slow-1`") in err
    assert "--wait SECONDS" in err


def test_no_wait_answers_at_once(capsys, monkeypatch):
    clock, backend = VirtualClock(), AlwaysOnItsWay()
    monkeypatch.setattr(cli, "time", clock)
    monkeypatch.setattr(cli, "_backend", lambda args: backend)
    code, _, err = run(capsys, "approve", "slow-1", "--wait", "0")
    assert code == 4 and "not awaiting approval yet" in err
    assert (backend.attempts, clock.sleeps) == (1, [])


@pytest.mark.parametrize("wait", ["-1", "soon", "nan", "86401"])
def test_the_wait_must_be_seconds(capsys, wait):
    with pytest.raises(SystemExit) as usage:
        main(["approve", "m-1", "--wait", wait])
    assert usage.value.code == 2 and "expected seconds between 0 and 86400" in capsys.readouterr().err


# --- where a migration is, seen from its approval step ----------------------------------------

ASKS = {"approval": {"auto_approve": False}}


@pytest.mark.parametrize("item, execution, pending, ahead", [
    ({}, {"status": "RUNNING", "input": "{}"}, False, True),  # started: the analysis has not recorded it
    ({"status": "analysing", "request": ASKS}, {"status": "RUNNING"}, False, True),
    ({"status": "planned", "request": ASKS}, {"status": "RUNNING"}, False, True),
    ({"status": "reviewed", "request": ASKS}, {"status": "RUNNING"}, False, True),
    ({"status": "awaiting_approval", "request": ASKS}, {"status": "RUNNING"}, True, False),
    ({"status": "approved", "request": ASKS}, {"status": "RUNNING"}, False, False),
    ({"status": "vetoed", "request": ASKS}, {"status": "FAILED"}, False, False),
    ({"status": "reviewed", "request": ASKS}, {"status": "ABORTED"}, False, False),  # stopped on its way
    ({}, {"status": "FAILED", "input": "[]"}, False, False),  # refused before anything was written
    ({"status": "reviewed", "request": {"approval": {"auto_approve": True}}}, {"status": "RUNNING"}, False, False),
    ({"status": "planned", "request": {"dry_run": True}}, {"status": "RUNNING"}, False, False),
    ({}, {"status": "RUNNING", "input": '{"approval": {"auto_approve": true}}'}, False, False),
], ids=["starting", "analysing", "planned", "reviewed", "awaiting", "approved", "vetoed", "aborted", "refused",
        "auto-approve", "dry-run", "starting-auto-approve"])
def test_approval_state(item, execution, pending, ahead):
    state = approval_state(item, execution)
    assert (state.pending, state.ahead, state.retry) == (pending, ahead, pending or ahead)
