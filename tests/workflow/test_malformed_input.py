"""Malformed input to the state machine and to the embedded runtime's Lambda: whatever JSON value
an execution starts with, it ends FAILED with InvalidMigrationRequest before anything is
written or changed; the in-process Lambda takes every payload real Lambda takes."""

import json
from types import SimpleNamespace

import pytest

from spotctl.local.lambdas import InvalidRequestContent, lambda_payload
from spotctl.local.runtime import LocalRuntime

ANALYZE = "spot-migration-analyze"
ANALYZE_ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{ANALYZE}"
NOT_OBJECTS = {
    "null": None, "true": True, "false": False, "zero": 0, "number": 42.5, "empty-string": "",
    "string": "migrate everything", "json-in-a-string": '{"dry_run": true}', "empty-array": [],
    "array-of-requests": [{"dry_run": True}], "nested-arrays": [[[[[]]]]],
}


@pytest.fixture(scope="module")
def rt():
    with LocalRuntime(seed=11) as runtime:
        runtime.fleet.seed_fleet(6)
        runtime.before = runtime.fleet.snapshot()
        yield runtime


@pytest.mark.parametrize("value", NOT_OBJECTS.values(), ids=NOT_OBJECTS.keys())
def test_an_execution_input_that_is_not_an_object_fails_invalid_and_changes_nothing(rt, value):
    mid = f"malformed-{len(rt.lambdas.invocations)}"
    rt.client("stepfunctions").start_execution(stateMachineArn=rt.state_machine_arn, name=mid,
                                               input=json.dumps(value))
    result = rt.wait(mid)

    assert (result.status, result.error) == ("FAILED", "InvalidMigrationRequest"), result.cause
    assert "must be a JSON object" in json.loads(result.cause)["errorMessage"]
    steps = [e["stateEnteredEventDetails"]["name"] for e in rt.history(mid) if "stateEnteredEventDetails" in e]
    assert steps == ["Analyze"]
    analyzed = [i for i in rt.lambdas.invocations if i.function == ANALYZE and mid in str(i.event)]
    assert [i.event for i in analyzed] == [{"migration_id": mid, "request": value}]  # once, the input as it was
    assert rt.table.query(KeyConditionExpression="pk = :pk",
                          ExpressionAttributeValues={":pk": f"MIGRATION#{mid}"})["Items"] == []
    assert rt.fleet.snapshot() == rt.before
    assert not [n for n in rt.notifications() if mid in f"{n['subject']} {n['message']}"]


@pytest.mark.parametrize("value", [*NOT_OBJECTS.values(), {"a": [1, {"b": None}]}, {}],
                         ids=[*NOT_OBJECTS.keys(), "object", "empty-object"])
def test_the_in_process_lambda_receives_every_json_payload_as_lambda_delivers_it(rt, value):
    echo = SimpleNamespace(function_name=ANALYZE, function_arn=ANALYZE_ARN)
    assert lambda_payload(value) == value  # as moto decoded it: handed on unchanged
    assert lambda_payload(json.dumps(value).encode()) == value  # raw bytes: decoded
    rt.lambdas.invoke(echo, json.dumps(value).encode())
    assert rt.lambdas.invocations[-1].event == value


def test_an_empty_payload_is_an_empty_object(rt):
    for empty in (b"", "{}"):  # "{}": what moto hands on for an empty payload
        assert lambda_payload(empty) == {}
    reply = rt.client("lambda").invoke(FunctionName=ANALYZE, Payload=b"")
    assert rt.lambdas.invocations[-1].event == {} and reply["FunctionError"] == "Handled"  # InvalidEvent: no id


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "not JSON"), (b'{"a": NaN}', "not JSON"), (b"\xff\xfe{}", "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"), (b"  ", "not JSON"),
], ids=["garbage", "nan", "not-utf8", "deep", "blank"])
def test_a_payload_that_is_not_json_is_invalid_request_content(rt, raw, reason):
    before = len(rt.lambdas.invocations)
    with pytest.raises(InvalidRequestContent) as refused:
        rt.lambdas.invoke(SimpleNamespace(function_name=ANALYZE, function_arn=ANALYZE_ARN), raw)
    assert (refused.value.code, refused.value.error_type) == (400, "InvalidRequestContentException")
    assert reason in refused.value.message
    assert len(rt.lambdas.invocations) == before  # the handler never ran


@pytest.mark.parametrize("payload", [b"{not json", b"[" * 5000 + b"]" * 5000], ids=["not-json", "deep"])
def test_an_invoke_through_the_lambda_api_with_a_payload_lambda_refuses_is_a_400_and_runs_nothing(rt, payload):
    before = len(rt.lambdas.invocations)
    with pytest.raises(rt.client("lambda").exceptions.ClientError) as refused:
        rt.client("lambda").invoke(FunctionName=ANALYZE, Payload=payload)
    assert refused.value.response["Error"]["Code"] == "InvalidRequestContentException"
    assert len(rt.lambdas.invocations) == before


WINDOW = {"name": "month-end", "start": "cron(0 18 L * ? *)", "end": "cron(0 8 1 * ? *)"}
DAY2_BAD = {
    "window-cron": ({"windows": [{**WINDOW, "start": "cron(0 18 L * 2 *)"}]}, "windows.0.start"),
    "window-rate": ({"windows": [{**WINDOW, "end": "rate(1 day)"}]}, "windows.0.end"),
    "window-zone": ({"windows": [{**WINDOW, "timezone": "Europe/Atlantis"}]}, "windows.0.timezone"),
    "window-name": ({"windows": [{**WINDOW, "name": "Month End!"}]}, "windows.0.name"),
    "window-twice": ({"windows": [WINDOW, WINDOW]}, "windows"),
    "window-not-a-list": ({"windows": WINDOW}, "windows"),
    "revert-id": ({"revert": {"migration_id": "no such id!"}}, "revert.migration_id"),
    "revert-instances": ({"revert": {"migration_id": "m-1", "instance_ids": ["vol-1"]}}, "revert.instance_ids"),
    "revert-with-selector": ({"revert": {"migration_id": "m-1"}, "selector": {"instance_ids": ["i-0123456789abcdef0"]}},
                             "a revert takes the instances"),
    "revert-unknown": ({"revert": {"migration_id": "m-unknown"}}, "no migration 'm-unknown'"),
    "window-of": ({"window_of": "bad id!"}, "window_of"),
}


@pytest.mark.parametrize("request_, message", DAY2_BAD.values(), ids=DAY2_BAD.keys())
def test_every_bad_day2_field_fails_invalid_and_changes_nothing(rt, request_, message):
    mid = f"day2-{len(rt.lambdas.invocations)}"
    rt.client("stepfunctions").start_execution(stateMachineArn=rt.state_machine_arn, name=mid,
                                               input=json.dumps(request_))
    result = rt.wait(mid)

    assert (result.status, result.error) == ("FAILED", "InvalidMigrationRequest"), result.cause
    assert message in json.loads(result.cause)["errorMessage"]
    assert rt.table.query(KeyConditionExpression="pk = :pk",
                          ExpressionAttributeValues={":pk": f"MIGRATION#{mid}"})["Items"] == []
    assert rt.fleet.snapshot() == rt.before
    assert rt.scheduler.schedules() == []
