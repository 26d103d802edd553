"""The offline execution graph, on real histories of the embedded runtime: the status of
each state, that no task token or payload reaches the page, and the page as Chromium
renders it."""

from __future__ import annotations

import copy
import fcntl
import json
import shutil
import subprocess
import time
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from spot_core.services import migrate_wave
from spotctl.graph import render_graph
from spotctl.graph.asl import all_states
from spotctl.graph.layout import layout
from spotctl.graph.status import execution_view
from spotctl.local.runtime import LocalRuntime
from spotctl.local.workload import Degradation

PLANTED = "PLANTED-taskToken-7f3a9c"


@pytest.fixture(scope="session")
def runs(tmp_path_factory, worker_id):
    """The executions, run once per test session: the xdist workers share them through a file
    (histories as JSON, so timestamps are ISO strings as in an exported history)."""
    if worker_id == "master":
        return json.loads(json.dumps(_run_every_path(), default=str))
    shared = tmp_path_factory.getbasetemp().parent / "graph-histories.json"
    with open(shared.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not shared.exists():
            shared.write_text(json.dumps(_run_every_path(), default=str))
    return json.loads(shared.read_text())


def _run_every_path() -> dict[str, dict]:
    """One execution per path, all on one runtime (each path but the last leaves the fleet as
    it was): name -> definition, history, status, migration id and approval task token."""
    out = {}
    with LocalRuntime(seed=11) as rt:
        rt.fleet.seed_fleet(6)
        rt.lambdas.environment["ROLLBACK_COOLDOWN_SECONDS"] = "0"  # the last path migrates what a rollback touched
        sfn = rt.client("stepfunctions")
        definition = json.loads(sfn.describe_state_machine(stateMachineArn=rt.state_machine_arn)["definition"])
        gated = {"quality": {"target_group_arn": rt.fleet.target_group_arn}}

        def keep(name, mid, status, token=None):
            out[name] = {"definition": definition, "history": rt.history(mid), "status": status, "mid": mid,
                         "token": token}

        mid = rt.start_migration(gated)
        rt.wait_for_status(mid, "awaiting_approval")
        token = rt.table.get_item(Key={"pk": f"MIGRATION#{mid}", "sk": "APPROVAL_TOKEN"})["Item"]["token"]
        keep("waiting", mid, sfn.describe_execution(executionArn=rt.execution_arn(mid))["status"], token)
        rt.decide(mid, approved=False, reason="change freeze")
        keep("rejected", mid, rt.wait(mid).status, token)

        result = rt.run_migration({"approval": {"timeout_seconds": 1}})
        keep("timed_out", result.migration_id, result.status)

        rt.fleet.degradation = Degradation(wave=1)
        result = rt.run_migration({**gated, "approval": {"auto_approve": True}})
        keep("rolled_back", result.migration_id, result.status)
        rt.fleet.degradation = None

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(migrate_wave, "LAUNCHES_PER_PASS", 1)  # waves loop through WaitForReplacements
            result = rt.run_migration({**gated, "approval": {"auto_approve": True}})
        keep("succeeded", result.migration_id, result.status)
    return out


def _statuses(run) -> dict[str, str]:
    view = execution_view(run["definition"], run["history"], run["status"])
    return {name: s.status for name, s in view.states.items()}


def _expect(run, **groups: set[str]) -> dict[str, str]:
    """Every state of the ASL: the named groups, everything else not reached."""
    expected = dict.fromkeys(all_states(run["definition"]), "not-reached")
    for status, names in groups.items():
        assert names <= expected.keys(), names - expected.keys()
        expected.update(dict.fromkeys(names, status.replace("_", "-")))
    return expected


REVIEWED = {"Analyze", "HasCandidates", "Reviews", "PerformanceAgent", "CapacityAgent", "ApplicationAgent",
            "ConsolidateReviews", "ReviewOutcome"}
WAVE = {"MigrateWave", "WaveComplete", "Bake", "QualityGate", "GateVerdict", "WaveSucceeded"}


def expected_statuses(name: str, run) -> dict[str, str]:
    if name == "succeeded":
        succeeded = REVIEWED | WAVE | {"CaptureBaseline", "Waves", "WaitForReplacements", "Finalize", "Done"}
        return _expect(run, succeeded=succeeded)
    if name == "rolled_back":
        # every wave waits for its replacements' status checks at least once
        succeeded = REVIEWED | WAVE - {"QualityGate"} | {"CaptureBaseline", "WaitForReplacements", "Rollback",
                                                          "RollbackComplete"}
        return _expect(run, succeeded=succeeded, caught={"Waves", "QualityGate"}, failed={"RolledBack"})
    if name == "rejected":
        return _expect(run, succeeded=REVIEWED | {"RequestApproval", "ApprovalDecision", "RecordRejection"},
                       failed={"Rejected"})
    if name == "timed_out":
        return _expect(run, succeeded=REVIEWED | {"RecordApprovalTimeout"}, caught={"RequestApproval"},
                       failed={"ApprovalTimedOut"})
    assert name == "waiting"
    return _expect(run, succeeded=REVIEWED, current={"RequestApproval"})


PATHS = ["succeeded", "rolled_back", "rejected", "timed_out", "waiting"]
EXECUTION_STATUS = {"succeeded": "SUCCEEDED", "waiting": "RUNNING"}


# --- status, from the history alone -----------------------------------------------------------

@pytest.mark.parametrize("name", PATHS)
def test_every_state_gets_the_status_of_its_path(runs, name):
    run = runs[name]
    assert run["status"] == EXECUTION_STATUS.get(name, "FAILED")
    assert _statuses(run) == expected_statuses(name, run)


def test_loops_and_map_iterations_count_every_entry(runs):
    succeeded = execution_view(runs["succeeded"]["definition"], runs["succeeded"]["history"], "SUCCEEDED").states
    # three waves; every wave of more than one instance loops MigrateWave -> WaitForReplacements -> MigrateWave
    loops = succeeded["WaitForReplacements"].entries
    assert loops >= 1
    assert succeeded["MigrateWave"].entries == 3 + loops
    assert succeeded["WaveComplete"].entries == 3 + loops
    assert {succeeded[n].entries for n in ("Bake", "QualityGate", "WaveSucceeded")} == {3}
    assert succeeded["Waves"].entries == succeeded["Analyze"].entries == 1

    rolled_back = execution_view(runs["rolled_back"]["definition"], runs["rolled_back"]["history"], "FAILED").states
    assert (rolled_back["QualityGate"].entries, rolled_back["WaveSucceeded"].entries) == (2, 1)  # the 50 % wave failed
    assert rolled_back["QualityGate"].error.startswith("QualityGateFailed")
    assert rolled_back["Waves"].error.startswith("QualityGateFailed")


def test_the_timeline_names_states_and_errors_from_the_execution_start(runs):
    view = execution_view(runs["rolled_back"]["definition"], runs["rolled_back"]["history"], "FAILED")
    assert view.timeline[0].elapsed == 0.0 and view.timeline[0].type == "ExecutionStarted"
    assert all(b.elapsed >= a.elapsed for a, b in zip(view.timeline, view.timeline[1:], strict=False))
    failed = [row for row in view.timeline if row.type == "TaskFailed"]
    assert [row.state for row in failed] == ["QualityGate"] and failed[0].error.startswith("QualityGateFailed")
    assert view.timeline[-1].type == "ExecutionFailed" and view.error.startswith("MigrationRolledBack")
    assert ("Waves", "Rollback") in view.transitions and ("Waves", "Finalize") not in view.transitions


def _event(eid: int, prev: int, etype: str, **details) -> dict:
    return {"id": eid, "previousEventId": prev, "type": etype,
            "timestamp": datetime(2026, 1, 1, 0, 0, eid, tzinfo=UTC), **details}


def test_a_retried_failure_succeeds_and_an_uncaught_one_fails_the_state():
    definition = {"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:a", "Next": "B"},
        "B": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:b", "End": True,
              "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "C"}]},
        "C": {"Type": "Pass", "End": True}}}
    failed = {"lambdaFunctionFailedEventDetails": {"error": "Boom", "cause": '{"errorMessage": "<b>no</b>"}'}}
    history = [
        _event(1, 0, "ExecutionStarted"),
        _event(2, 1, "TaskStateEntered", stateEnteredEventDetails={"name": "A"}),
        _event(3, 2, "LambdaFunctionScheduled"), _event(4, 3, "LambdaFunctionFailed", **failed),
        _event(5, 4, "LambdaFunctionScheduled"), _event(6, 5, "LambdaFunctionSucceeded"),
        _event(7, 6, "TaskStateExited", stateExitedEventDetails={"name": "A"}),
        _event(8, 7, "TaskStateEntered", stateEnteredEventDetails={"name": "B"}),
        _event(9, 8, "LambdaFunctionScheduled"), _event(10, 9, "LambdaFunctionFailed", **failed),
        _event(11, 10, "ExecutionFailed", executionFailedEventDetails={"error": "Boom", "cause": "no"}),
    ]
    view = execution_view(definition, history, "FAILED")
    assert {n: (s.status, s.entries) for n, s in view.states.items()} == {
        "A": ("succeeded", 1), "B": ("failed", 1), "C": ("not-reached", 0)}
    assert view.states["B"].error == "Boom: <b>no</b>"  # the catcher is for timeouts only
    assert view.duration == 10.0
    page = render_graph(definition, history, migration_id="m", status="FAILED")
    assert "Boom: &lt;b&gt;no&lt;/b&gt;" in page and "<b>no</b>" not in page


# --- the page ---------------------------------------------------------------------------------

class DrawnStates(HTMLParser):
    """The drawn states of a page: name -> status, entries and the enclosing drawn state."""

    def __init__(self, page: str):
        super().__init__()
        self.states: dict[str, dict] = {}
        self.body: dict[str, str] = {}
        self.texts: list[str] = []
        self._open: list[str | None] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag != "g":
            return
        name = a.get("data-state") if "state" in (a.get("class") or "").split() else None
        if name:
            assert name not in self.states, f"{name} drawn twice"
            parent = next((n for n in reversed(self._open) if n), None)
            self.states[name] = {"status": a.get("data-status"), "entries": int(a.get("data-entries", -1)),
                                 "parent": parent}
        self._open.append(name)

    def handle_endtag(self, tag):
        if tag == "g" and self._open:
            self._open.pop()

    def handle_data(self, data):
        self.texts.append(data)


def _expected_drawing(name: str, run) -> dict[str, dict]:
    view = execution_view(run["definition"], run["history"], run["status"])
    statuses = expected_statuses(name, run)
    return {n: {"status": statuses[n], "entries": view.states[n].entries, "parent": ref.parent}
            for n, ref in all_states(run["definition"]).items()}


def _page(run, **kwargs) -> str:
    return render_graph(run["definition"], run["history"], migration_id=run["mid"], status=run["status"], **kwargs)


@pytest.mark.parametrize("name", PATHS)
def test_the_page_draws_every_state_nested_in_its_parent_with_its_status(runs, name):
    drawn = DrawnStates(_page(runs[name]))
    assert drawn.states == _expected_drawing(name, runs[name])


def test_no_task_token_input_output_or_parameters_reach_the_page(runs):
    for name in ("waiting", "rejected"):
        run = runs[name]
        history = json.dumps(run["history"], default=str)
        assert run["token"] and run["token"] in history, "the real history carries the token"
        assert run["token"] not in _page(run)
    run = copy.deepcopy(runs["rejected"])
    planted = 0
    for event in run["history"]:
        event["taskToken"] = PLANTED
        for details in (v for k, v in event.items() if k.endswith("EventDetails")):
            for field in ("input", "output", "parameters", "result"):
                details[field] = json.dumps({"task_token": PLANTED, "note": f"{field} payload"})
                planted += 1
            details["taskToken"] = PLANTED
    assert planted > 100
    page = _page(run, title="Rejected <script>alert(1)</script>")
    assert PLANTED not in page and "payload" not in page
    assert "<script>alert(1)" not in page and "Rejected &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "RecordRejection" in page and "MigrationRejected" in page


def test_the_layout_keeps_boxes_apart_and_nested_states_inside_their_group(runs):
    scope = layout(runs["succeeded"]["definition"])
    placed: dict[str, tuple] = {}

    def collect(s, parent):
        for box in s.boxes:
            placed[box.name] = (box.x, box.y, box.x + box.w, box.y + box.h, parent)
            for lane in box.lanes:
                collect(lane.scope, box.name)

    collect(scope, None)
    names = list(placed)
    for i, a in enumerate(names):
        ax0, ay0, ax1, ay1, parent = placed[a]
        if parent:
            px0, py0, px1, py1, _ = placed[parent]
            assert px0 < ax0 and ax1 < px1 and py0 < ay0 and ay1 < py1, f"{a} outside {parent}"
        for b in names[i + 1:]:
            bx0, by0, bx1, by1, _ = placed[b]
            nested = parent == b or placed[b][4] == a
            assert nested or not (ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1), f"{a} overlaps {b}"
    assert 0 < scope.w < 1400 and 0 < scope.h < 2000


# --- in a browser -----------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--hide-scrollbars"]


@pytest.fixture(scope="session")
def chromium_binary():
    """Session-scoped, so a missing Chromium skips before the executions are run."""
    binary = shutil.which("chromium")
    if not binary:
        pytest.skip("chromium is not installed (make browser installs it): the rendered page is not checked")
    return binary


@pytest.fixture
def chromium(chromium_binary, tmp_path):
    """Runs headless Chromium with a throwaway profile."""

    def run(*args: str) -> str:
        return subprocess.run([chromium_binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                              capture_output=True, text=True, timeout=90, check=True).stdout

    return run


@pytest.mark.parametrize("name", ["rolled_back", "waiting"])
def test_chromium_renders_every_state_with_its_status(chromium, runs, name, tmp_path):
    page = tmp_path / "graph.html"
    page.write_text(_page(runs[name]), encoding="utf-8")
    started = time.perf_counter()
    dom = chromium("--dump-dom", page.as_uri())
    shot = tmp_path / "graph.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri())
    assert time.perf_counter() - started < 60

    drawn = DrawnStates(dom)
    assert drawn.states == _expected_drawing(name, runs[name])
    # written by the page's script once laid out: it ran, every state has a box, none overlap
    assert drawn.body.get("data-drawn") == str(len(drawn.states))
    assert drawn.body.get("data-overlaps") == ""
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
