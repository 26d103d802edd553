"""Every handler, fed from its sample event in events/, inside one embedded runtime.

The module walks one migration through the handlers in the order the state machine
calls them (analyse -> reviews -> consolidate -> approval -> baseline -> wave 0 ->
gate -> rollback), each step a module-scoped fixture, and checks malformed events
change nothing.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from spot_core.domain.errors import InvalidEvent, InvalidMigrationRequest, MigrationNotFound
from spot_core.domain.request import parse_request
from spot_core.entry import wiring
from spot_core.entry.catalog import MIGRATION_MACHINE, tasks_of
from spot_core.entry.events import (
    AnalyzeEvent,
    ApprovalEvent,
    ConsolidateEvent,
    FinalizeEvent,
    GateEvent,
    MigrationEvent,
    RollbackEvent,
    WaveEvent,
    parse_event,
)

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
ACCOUNT = "123456789012"

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

MID = "demo-migration-0001"
# The functions the state machine calls (the EventBridge-driven ones have events of their own).
WORKFLOW = tasks_of(MIGRATION_MACHINE)
ASL = ROOT / "statemachines" / "spot_migration.asl.json"
MODELS = {
    "analyze": AnalyzeEvent, "review_performance": MigrationEvent, "review_capacity": MigrationEvent,
    "review_application": MigrationEvent, "consolidate_reviews": ConsolidateEvent, "request_approval": ApprovalEvent,
    "capture_baseline": MigrationEvent, "migrate_wave": WaveEvent, "quality_gate": GateEvent,
    "rollback": RollbackEvent, "finalize": FinalizeEvent,
}
REVIEWS = ("review_performance", "review_capacity", "review_application")
VERDICT_KEYS = {"agent", "approved", "confidence", "concerns", "recommendations", "excluded_instance_ids"}


def load_event(name: str) -> Any:
    return json.loads((EVENTS / f"{name}.json").read_text())


class FakeContext:
    """The parts of the Lambda context the handlers and Powertools read."""

    def __init__(self, name: str, remaining_ms: int = 900_000, memory_mb: int = 512):
        self.function_name = f"spot-migration-{name}"
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{self.function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"2026/11/22/[$LATEST]{uuid.uuid4().hex}"
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


@contextlib.contextmanager
def captured_output():
    """Everything a handler writes: Powertools logs (its handler is bound to the stream of
    the moment spot_core.entry.observability was imported, so it is redirected explicitly),
    EMF metrics and prints."""
    from spot_core.entry.observability import logger

    buffer = io.StringIO()
    handler = logger.registered_handler
    old = handler.setStream(buffer)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        handler.setStream(old)


def invoke(rt: Any, name: str, event: Any, context: FakeContext | None = None) -> Any:
    """Run functions/<name>/app.py's handler in-process, as Lambda would."""
    handler = rt.lambdas.handler(f"spot-migration-{name}")
    return handler(copy.deepcopy(event), context or FakeContext(name))


def table_items(rt: Any) -> list[dict]:
    table = rt.table
    items, kwargs = [], {}
    while True:
        page = table.scan(ConsistentRead=True, **kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(items, key=lambda i: (i["pk"], i["sk"]))


# The before/after views of the "changes nothing" checks read moto's backends directly:
# a Scan or DescribeInstances costs 0.1-0.2 s of serialisation, too slow to run around
# every one of the malformed-event cases.


def table_state(rt: Any) -> list[dict]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][rt.region].get_table(rt.table.name)
    items = [item.to_json()["Attributes"] for item in table.all_items()]
    return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def fleet_state(rt: Any) -> dict:
    """Every instance (state, market, type) and every target registration."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[DEFAULT_ACCOUNT_ID][rt.region]
    instances = {i.id: (i.state, i.lifecycle, i.instance_type) for i in backend.all_instances()}
    elbv2 = rt.client("elbv2")
    health = elbv2.describe_target_health(TargetGroupArn=rt.fleet.target_group_arn)["TargetHealthDescriptions"]
    return {"instances": instances, "targets": sorted((d["Target"]["Id"], d["TargetHealth"]["State"]) for d in health)}


def world(rt: Any) -> dict:
    """Everything a handler could change: the table, the fleet, the notifications."""
    return {"table": table_state(rt), "fleet": fleet_state(rt), "notifications": len(rt.notifications())}


@pytest.fixture(scope="module")
def runtime():
    from spotctl.local.runtime import LocalRuntime

    with LocalRuntime() as rt:
        rt.fleet.seed_fleet(10)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in rt.lambdas.environment.items():
                mp.setenv(key, value)
            wiring.reset()
            yield rt
        wiring.reset()


def items_of(rt, migration_id: str) -> list[dict]:
    return [i for i in table_items(rt) if i["pk"] == f"MIGRATION#{migration_id}"]


# --- the sample events --------------------------------------------------------------------------------


def _task_payloads() -> dict[str, list[set[str]]]:
    """Function name -> the key sets of every Payload the state machine sends it."""
    by_placeholder = {f"${{{s.asl_placeholder}}}": s.name for s in WORKFLOW}
    found: dict[str, list[set[str]]] = {}

    def walk(states: dict) -> None:
        for state in states.values():
            params = state.get("Parameters", {})
            if state.get("Type") == "Task" and params.get("FunctionName") in by_placeholder:
                keys = {k.removesuffix(".$") for k in params["Payload"]}
                found.setdefault(by_placeholder[params["FunctionName"]], []).append(keys)
            for branch in state.get("Branches", []):
                walk(branch["States"])
            for key in ("Iterator", "ItemProcessor"):
                if key in state:
                    walk(state[key]["States"])

    walk(json.loads(ASL.read_text())["States"])
    return found


@pytest.mark.parametrize("spec", WORKFLOW, ids=lambda s: s.name)
def test_every_function_has_a_sample_event_shaped_like_the_state_machine_payload(spec):
    event = load_event(spec.name)
    assert event["migration_id"] == MID
    parse_event(event, MODELS[spec.name])  # valid for its handler
    payloads = _task_payloads()
    assert spec.name in payloads, f"{spec.name} is not called by the state machine"
    assert set(event) in payloads[spec.name], f"{spec.name}: keys {sorted(event)} not in {payloads[spec.name]}"


def test_sample_analyze_event_carries_the_documented_input():
    assert load_event("analyze")["request"] == load_event("state_machine_input")
    parse_request(load_event("state_machine_input"))


def test_sample_wave_events_carry_a_wave_of_the_default_plan():
    wave = load_event("migrate_wave")["wave"]
    assert load_event("quality_gate")["wave"] == wave
    assert set(wave) == {"index", "percent", "bake_seconds", "target_count", "cumulative"}


def test_sample_consolidate_event_carries_the_three_verdicts():
    verdicts = load_event("consolidate_reviews")["verdicts"]
    assert sorted(v["agent"] for v in verdicts) == ["application", "capacity", "performance"]
    assert all(set(v) >= VERDICT_KEYS for v in verdicts)


def test_sample_rollback_event_is_a_catch_output():
    failure = load_event("rollback")["failure"]
    assert set(failure) == {"Error", "Cause"}
    assert json.loads(failure["Cause"])["errorType"] == failure["Error"]


# --- the walk through one migration ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def planned(runtime):
    rt = runtime
    event = load_event("analyze")
    # moto makes up the target group's id: point the sample at the seeded one.
    event["request"]["quality"]["target_group_arn"] = rt.fleet.target_group_arn
    before = rt.fleet.snapshot()
    output = invoke(rt, "analyze", event)
    return {"event": event, "output": output, "fleet_before": before, "fleet_after": rt.fleet.snapshot()}


@pytest.fixture(scope="module")
def reviewed(runtime, planned):
    return {name: invoke(runtime, name, load_event(name)) for name in REVIEWS}


@pytest.fixture(scope="module")
def consolidated(runtime, reviewed):
    event = load_event("consolidate_reviews")
    event["verdicts"] = [reviewed[name] for name in REVIEWS]  # what the Parallel state hands on
    return invoke(runtime, "consolidate_reviews", event)


@pytest.fixture(scope="module")
def approval_requested(runtime, consolidated):
    event = load_event("request_approval")
    before = len(runtime.notifications())
    with captured_output() as out:
        result = invoke(runtime, "request_approval", event)
    return {"event": event, "result": result, "logs": out.getvalue(), "notifications": runtime.notifications()[before:]}


@pytest.fixture(scope="module")
def baseline(runtime, approval_requested):
    return invoke(runtime, "capture_baseline", load_event("capture_baseline"))


@pytest.fixture(scope="module")
def wave0(runtime, consolidated, baseline):
    event = load_event("migrate_wave")
    before = runtime.fleet.snapshot()
    result = invoke(runtime, "migrate_wave", event)
    for _ in range(20):  # as the state machine loops: the Wait it asks for, then the next pass
        if result["done"]:
            break
        runtime.advance(result["wait_seconds"])
        result = invoke(runtime, "migrate_wave", event)
    return {"event": event, "result": result, "before": before, "after": runtime.fleet.snapshot()}


@pytest.fixture(scope="module")
def gate0(runtime, wave0):
    event = load_event("quality_gate")
    event["since"] = wave0["result"]["completed_at"]  # what the Map hands on from MigrateWave
    # The bake, fast-forwarded as the runtime's Wait does: five minutes of traffic now...
    runtime.fleet.emit_quality(event["wave"]["bake_seconds"])
    time.sleep(1.0 - (time.time() % 1.0) + 0.01)  # ...and a gate window ending at a later second
    return invoke(runtime, "quality_gate", event)


@pytest.fixture(scope="module")
def rolled_back(runtime, gate0):
    before = len(runtime.notifications())
    result = invoke(runtime, "rollback", load_event("rollback"))
    return {"result": result, "fleet": runtime.fleet.snapshot(), "notifications": runtime.notifications()[before:]}


# analyse --------------------------------------------------------------------------------------------------


def test_analyze_returns_a_small_summary(planned):
    output = planned["output"]
    assert set(output) == {"migration_id", "request", "plan"}
    assert output["migration_id"] == MID
    assert output["request"]["waves"] == [10, 50, 100]
    plan = output["plan"]
    assert plan["analysed"] == 10
    assert plan["candidates"] == 9
    assert plan["excluded_by_reason"] == {"stateful": 1}
    assert plan["monthly_savings"] > 0 and 0 < plan["savings_pct"] < 100
    assert plan["pricing_source"] == "catalog"
    text = json.dumps(output)
    assert len(text) < 4096
    assert "i-" not in json.dumps(plan), "the payload carries no per-instance data"


def test_analyze_writes_the_plan(runtime, planned):
    item = runtime.migration(MID)
    assert item["status"] == "planned"
    assert item["summary"] == planned["output"]["plan"]
    assert parse_request(item["request"]) == parse_request(planned["output"]["request"])
    records = runtime.records(MID)
    fleet = planned["fleet_before"]
    assert {r.instance_id for r in records} == fleet["on_demand"]
    assert sum(r.eligible for r in records) == planned["output"]["plan"]["candidates"]
    stateful = [r for r in records if not r.eligible]
    assert [(r.name, r.exclusion_reason, r.status) for r in stateful] == [("postgres-1", "stateful", "excluded")]
    for r in records:
        if r.eligible:
            assert r.status == "planned" and r.pools and r.monthly_savings > 0 and r.wave is None


def test_analyze_changes_no_instance(planned):
    assert planned["fleet_after"] == planned["fleet_before"]


def test_analyze_rejects_an_invalid_request_and_writes_nothing(runtime, planned):
    event = load_event("invalid_analyze")
    before = world(runtime)
    with pytest.raises(InvalidMigrationRequest, match="waves"):
        invoke(runtime, "analyze", event)
    assert world(runtime) == before


def test_analyze_invalid_request_for_a_new_id_creates_no_migration(runtime):
    event = load_event("invalid_analyze")
    event["migration_id"] = "demo-migration-invalid"
    before = runtime.fleet.snapshot()
    with pytest.raises(InvalidMigrationRequest):
        invoke(runtime, "analyze", event)
    assert items_of(runtime, "demo-migration-invalid") == []  # no META item, no instance records
    with pytest.raises(MigrationNotFound):
        runtime.migration("demo-migration-invalid")
    assert runtime.fleet.snapshot() == before


def test_analyze_retried_after_it_succeeded_plans_again_but_another_request_cannot_reuse_the_id(runtime):
    """Step Functions may retry a task whose Lambda finished (Lambda.Unknown): same result."""
    event = load_event("analyze")
    event["migration_id"] = "demo-migration-retried"
    event["request"]["quality"]["target_group_arn"] = runtime.fleet.target_group_arn
    first = invoke(runtime, "analyze", event)["plan"]
    again = invoke(runtime, "analyze", event)["plan"]
    # Same plan; prices are read again, and the Spot median window has moved on a little.
    money = ("monthly_on_demand", "monthly_savings", "savings_pct")
    assert {k: v for k, v in again.items() if k not in money} == {k: v for k, v in first.items() if k not in money}
    assert again["monthly_savings"] == pytest.approx(first["monthly_savings"], rel=0.02)
    other = {**event, "request": {**event["request"], "waves": [50, 100], "bake_seconds": [60, 60]}}
    with pytest.raises(InvalidMigrationRequest, match="already used"):
        invoke(runtime, "analyze", other)


# reviews -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REVIEWS)
def test_review_returns_the_verdict_shape(runtime, reviewed, name):
    verdict = reviewed[name]
    assert set(verdict) >= VERDICT_KEYS
    assert verdict["agent"] == name.removeprefix("review_")
    assert isinstance(verdict["approved"], bool)
    assert 0 <= verdict["confidence"] <= 1
    assert all(isinstance(c, str) for c in verdict["concerns"] + verdict["recommendations"])
    stored = {v.agent: v for v in runtime.wiring.plans.verdicts(MID)}[verdict["agent"]]
    assert stored.model_dump() == verdict
    json.dumps(verdict)  # a Step Functions payload


def test_reviews_of_the_seeded_fleet(runtime, reviewed):
    records = {r.instance_id: r for r in runtime.records(MID)}
    performance = reviewed["review_performance"]
    assert performance["approved"]
    assert [records[i].name for i in performance["excluded_instance_ids"]] == ["batch-report-1"]
    assert reviewed["review_capacity"]["approved"]
    application = reviewed["review_application"]
    assert application["approved"], application["concerns"]
    assert application["confidence"] == 0.9  # quality metrics resolved from the target group, baseline has data


# consolidate ------------------------------------------------------------------------------------------------


def test_consolidate_assigns_waves(runtime, consolidated):
    assert consolidated["approved"] is True and consolidated["vetoed_by"] == []
    assert consolidated["candidates"] == 8  # 9 planned minus the burst instance the performance agent excluded
    waves = consolidated["waves"]
    assert [w["cumulative"] for w in waves] == [1, 4, 8]
    assert sum(w["target_count"] for w in waves) == consolidated["candidates"]
    records = runtime.records(MID)
    eligible = [r for r in records if r.eligible]
    for w in waves:
        assert sum(r.wave == w["index"] for r in eligible) == w["target_count"]
    assert all(r.wave is None for r in records if not r.eligible)
    burst = next(r for r in records if r.name == "batch-report-1")
    assert (burst.eligible, burst.exclusion_reason) == (False, "excluded_by_performance_agent")
    order = {"low": 0, "medium": 1, "high": 2}
    assert max(order[r.risk] for r in eligible if r.wave == 0) <= min(order[r.risk] for r in eligible if r.wave == 2)
    item = runtime.migration(MID)
    assert item["status"] == "reviewed"
    assert item["waves"] == waves
    assert item["summary"]["candidates"] == 8


def test_sample_wave_is_the_first_wave_of_the_plan(consolidated):
    assert load_event("migrate_wave")["wave"] == consolidated["waves"][0]


# approval ---------------------------------------------------------------------------------------------------


def test_request_approval_stores_the_token_server_side(runtime, approval_requested):
    token = approval_requested["event"]["task_token"]
    assert approval_requested["result"]["timeout_seconds"] == 86_400
    assert token not in json.dumps(approval_requested["result"])
    item = runtime.table.get_item(Key={"pk": f"MIGRATION#{MID}", "sk": "APPROVAL_TOKEN"}, ConsistentRead=True)["Item"]
    assert item["token"] == token
    assert int(item["expires_at"]) > time.time() + 86_400
    meta = runtime.migration(MID)
    assert meta["status"] == "awaiting_approval"
    assert token not in json.dumps(meta, default=str)


def test_approval_notification_does_not_carry_the_token(approval_requested):
    token = approval_requested["event"]["task_token"]
    notes = approval_requested["notifications"]
    assert len(notes) == 1
    assert MID in notes[0]["subject"] and "approval-requested" in notes[0]["subject"]
    assert "spotctl approve" in notes[0]["message"]
    assert token not in json.dumps(notes)
    assert token[:24] not in json.dumps(notes)


def test_approval_logs_do_not_carry_the_token(approval_requested):
    token = approval_requested["event"]["task_token"]
    logs = approval_requested["logs"]
    assert "approval requested" in logs and MID in logs  # the logs were captured
    assert token not in logs and token[:24] not in logs


def test_approval_through_the_runtime_logs_no_token(runtime, approval_requested):
    """The same, invoked the way Step Functions does (logs captured per invocation)."""
    event = load_event("request_approval")

    class Fn:
        function_name = "spot-migration-request_approval"
        function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{function_name}"

    payload, errored, logs = runtime.lambdas.invoke(Fn, copy.deepcopy(event))
    assert not errored, payload
    assert runtime.lambdas.invocations[-1].logs == logs
    assert "approval requested" in logs
    assert event["task_token"] not in logs and event["task_token"] not in payload


# baseline, wave, gate, rollback -------------------------------------------------------------------------------


def test_capture_baseline(runtime, baseline):
    assert baseline["datapoints"] > 0
    assert baseline["latency"] == pytest.approx(0.120, rel=0.05)
    assert baseline["error_rate"] == pytest.approx(0.002, rel=0.3)
    stored = runtime.migration(MID)["baseline"]
    assert stored["sample"]["datapoints"] == baseline["datapoints"]
    assert set(stored["metrics"]) >= {"latency"}


def test_migrate_wave_replaces_make_before_break(runtime, wave0):
    result = wave0["result"]
    assert result["done"] is True and result["completed_at"]
    assert (result["total"], result["migrated"], result["failed"]) == (1, 1, 0)
    record = next(r for r in runtime.records(MID) if r.wave == 0)
    assert record.status == "migrated" and record.replacement_id
    before, after = wave0["before"], wave0["after"]
    assert after["spot"] - before["spot"] == {record.replacement_id}
    assert record.instance_id in after["stopped"]
    assert record.replacement_id in after["serving"] and record.instance_id not in after["serving"]
    assert len(after["serving"]) == len(before["serving"])  # capacity kept whole
    assert len(json.dumps(result)) < 2048


def test_quality_gate_passes_an_unchanged_service(runtime, gate0):
    assert gate0["passed"] is True, gate0["reasons"]
    assert gate0["score"] <= 5.0
    assert runtime.migration(MID)["wave_results"]["0"]["gate"]["passed"] is True


def test_rollback_restores_on_demand(runtime, wave0, rolled_back):
    result = rolled_back["result"]
    assert result["done"] is True and result["restored"] == 1
    record = next(r for r in runtime.records(MID) if r.wave == 0)
    assert record.status == "rolled_back"
    fleet = rolled_back["fleet"]
    assert fleet["spot"] == set()
    assert record.instance_id in fleet["on_demand"] and record.instance_id in fleet["serving"]
    assert fleet["serving"] == wave0["before"]["serving"]
    item = runtime.migration(MID)
    assert item["status"] == "rolled_back"
    assert item["failure"]["Error"] == "QualityGateFailed"
    assert [n["subject"] for n in rolled_back["notifications"]] == [f"[spot-migration] {MID}: rolled-back"]


# finalize ------------------------------------------------------------------------------------------------------


def test_finalize_records_the_rejection(runtime):
    event = load_event("finalize")
    event["migration_id"] = mid = "demo-migration-0002"  # a second migration, waiting for approval
    runtime.wiring.migrations.create(mid, parse_request({}).model_dump(), status="planned")
    runtime.wiring.migrations.update(mid, status="awaiting_approval",
                                     summary={"candidates": 3, "monthly_savings": 120.5})
    fleet = runtime.fleet.snapshot()
    before = len(runtime.notifications())
    result = invoke(runtime, "finalize", event)
    assert result == {"status": "rejected", "realised": None, "locks_released": 0}
    item = runtime.migration(mid)
    assert item["status"] == "rejected"
    assert item["outcome_detail"]["reason"] == event["detail"]["reason"]
    assert item["outcome_detail"]["approved"] is False
    notes = runtime.notifications()[before:]
    assert [n["subject"] for n in notes] == [f"[spot-migration] {mid}: rejected"]
    assert runtime.fleet.snapshot() == fleet


# --- malformed events change nothing -------------------------------------------------------------------------


def _malformed() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = []
    for spec in WORKFLOW:
        sample = load_event(spec.name)
        cases += [
            (spec.name, {}),
            (spec.name, {**sample, "migration_id": "../x"}),
        ]
    wave = load_event("migrate_wave")["wave"]
    cases += [
        ("review_capacity", []),
        ("review_capacity", "demo-migration-0001"),
        ("review_capacity", {"migration_id": ""}),
        ("review_capacity", {"migration_id": 42}),
        ("review_capacity", {"migration_id": "x" * 81}),
        ("review_performance", {"migration_id": MID + "\n"}),
        ("consolidate_reviews", {"migration_id": MID}),
        ("consolidate_reviews", {"migration_id": MID, "verdicts": "all good"}),
        ("request_approval", {"migration_id": MID}),
        ("request_approval", {"migration_id": MID, "task_token": None}),
        ("migrate_wave", {"migration_id": MID}),
        ("migrate_wave", {"migration_id": MID, "wave": {"index": 0}}),
        ("migrate_wave", {"migration_id": MID, "wave": {**wave, "target_count": "one"}}),
        ("quality_gate", {"migration_id": MID, "wave": wave}),
        ("quality_gate", {"migration_id": MID, "since": "2026-11-22T10:15:42+00:00"}),
        ("quality_gate", {"migration_id": MID, "wave": wave, "since": "after the bake"}),
        ("rollback", {"migration_id": MID, "failure": "QualityGateFailed"}),
        ("finalize", {"migration_id": MID}),
        ("finalize", {"migration_id": MID, "outcome": "exploded"}),
        ("finalize", {"migration_id": MID, "outcome": "completed", "detail": "fine"}),
    ]
    return cases


def _id(case) -> str:
    name, event = case
    return f"{name}-{json.dumps(event)[:60]}"


@pytest.mark.parametrize("case", _malformed(), ids=_id)
def test_malformed_event_is_rejected_and_changes_nothing(runtime, planned, case):
    name, event = case
    before = world(runtime)
    with pytest.raises(InvalidEvent):
        invoke(runtime, name, event)
    assert world(runtime) == before


def test_a_request_that_is_not_an_object_is_the_documented_error_and_changes_nothing(runtime, planned):
    before = world(runtime)
    with pytest.raises(InvalidMigrationRequest, match="must be a JSON object"):
        invoke(runtime, "analyze", {"migration_id": MID, "request": [50, 10]})
    assert world(runtime) == before


def test_rejected_approval_event_does_not_echo_the_token(runtime, planned):
    token = load_event("request_approval")["task_token"]
    for event in ({"migration_id": "../x", "task_token": token}, {"task_token": token},
                  {"migration_id": [MID], "task_token": token}):
        with captured_output() as out, pytest.raises(InvalidEvent) as info:
            invoke(runtime, "request_approval", event)
        assert token not in str(info.value)
        assert token not in out.getvalue()


@pytest.mark.parametrize("spec", [s for s in WORKFLOW if s.name != "analyze"], ids=lambda s: s.name)
def test_unknown_migration_is_not_found_and_changes_nothing(runtime, planned, spec):
    """A well-formed event for a migration that does not exist must not create items for it
    (e.g. an orphan VERDICT# item) nor touch anything else."""
    event = load_event(spec.name)
    event["migration_id"] = "no-such-migration"
    before = world(runtime)
    with pytest.raises(MigrationNotFound):
        invoke(runtime, spec.name, event, FakeContext(spec.name))
    assert world(runtime) == before


# --- the end of an execution that skipped its own last step ------------------------------------------------------
def test_end_execution_ends_a_stopped_migration_and_releases_its_locks(runtime):
    event = load_event("execution_status_change")
    mid = event["detail"]["name"]
    runtime.wiring.migrations.create(mid, parse_request({}).model_dump(), status="awaiting_approval")
    runtime.wiring.locks.acquire(mid, ["i-0000000000000e0e0"], runtime.wiring.clock.now())
    fleet = runtime.fleet.snapshot()

    result = invoke(runtime, "end_execution", event)

    assert (result["status"], result["locks_released"]) == ("stopped", 1)
    assert runtime.migration(mid)["status"] == "stopped"
    assert runtime.wiring.locks.held(mid) == []
    assert runtime.fleet.snapshot() == fleet
    assert invoke(runtime, "end_execution", event)["status"] == "stopped"  # delivered again: nothing more


@pytest.mark.parametrize("status", ["SUCCEEDED", "RUNNING", "bad"])
def test_end_execution_refuses_a_status_change_it_has_no_business_with(runtime, status):
    event = load_event("execution_status_change")
    event["detail"]["status"] = status
    with pytest.raises(InvalidEvent):
        invoke(runtime, "end_execution", event)


# --- on-demand windows ---------------------------------------------------------------------------------------------
WINDOW = {"name": "month-end", "start": "cron(0 18 L * ? *)", "end": "cron(0 8 1 * ? *)", "timezone": "Europe/Paris"}


def test_a_migration_that_succeeded_with_windows_gets_its_schedules(runtime):
    event = load_event("execution_succeeded")
    mid = event["detail"]["name"] = "demo-window-0001"  # its own migration in the module's runtime
    runtime.wiring.migrations.create(mid, parse_request({"windows": [WINDOW]}).model_dump(), status="completed")

    result = invoke(runtime, "on_demand_windows", event, FakeContext("on_demand_windows"))

    assert len(result["scheduled"]) == 2
    targets = {s["Target"]["Arn"] for s in runtime.scheduler.schedules()}
    assert targets == {FakeContext("on_demand_windows").invoked_function_arn}


def test_a_window_of_a_completed_migration_starts_its_revert(runtime):
    event = {**load_event("on_demand_window"), "migration_id": "demo-window-0002"}
    runtime.wiring.migrations.create(event["migration_id"], parse_request({"windows": [WINDOW]}).model_dump(),
                                     status="completed")
    runtime.wiring.migrations.update(event["migration_id"], finished_at="2026-12-01T00:00:00+00:00")

    result = invoke(runtime, "on_demand_windows", event)

    assert result["started"] and result["action"] == "open"
    assert runtime.migration(event["migration_id"])["windows_state"]["revert_id"] == result["started"]
    runtime.wait(result["started"])


@pytest.mark.parametrize("change", [{"action": "toggle"}, {"window": None}, {"migration_id": "bad id"}])
def test_a_malformed_window_event_is_refused_and_changes_nothing(runtime, change):
    event = {**load_event("on_demand_window"), **change}
    before = world(runtime)
    with pytest.raises(InvalidEvent):
        invoke(runtime, "on_demand_windows", event)
    assert world(runtime) == before


# --- the scheduled return of on-demand fallbacks ---------------------------------------------------------------
def test_return_fallbacks_runs_on_its_scheduled_event_and_changes_nothing_without_a_fallback(runtime):
    before = world(runtime)

    report = invoke(runtime, "return_fallbacks", load_event("return_fallbacks"))

    assert report == {"enabled": True, "fallbacks": 0, "returned": [], "left_alone": []}
    assert world(runtime) == before


@pytest.mark.parametrize("event", [{}, {"detail-type": "Scheduled Event"}, []], ids=["empty", "partial", "list"])
def test_return_fallbacks_rejects_what_is_not_a_scheduled_event(runtime, event):
    before = world(runtime)
    with pytest.raises(InvalidEvent):
        invoke(runtime, "return_fallbacks", event)
    assert world(runtime) == before
