"""The migrations API, driven with API Gateway REST proxy events through the api function on
the embedded runtime (the real ASL runs behind it).

Requests go through the runtime's Lambda client, as API Gateway would invoke the function, so
each invocation's logs are captured and its AWS calls recorded.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spot_core.domain.errors import ApprovalNotPending, TransientAwsError
from spot_core.domain.request import StartMigration
from spot_core.entry import api
from spot_core.entry.api import TITLE, app
from spot_core.services.migrations import ApprovalState, Migrations, NotAwaitingApproval
from spotctl.local.lambdas import FakeContext
from spotctl.local.runtime import LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((ROOT / "events" / "api.json").read_text())
API = "spot-migration-api"
ALICE = "arn:aws:sts::123456789012:assumed-role/PlatformOperator/alice"
BOB = "arn:aws:iam::123456789012:user/bob"
MID_PATH = re.compile(r"^/migrations/([^/]+)")


class Reply:
    def __init__(self, raw: dict):
        self.status = raw["statusCode"]
        self.headers = {k: v[-1] for k, v in (raw.get("multiValueHeaders") or {}).items()} | (raw.get("headers") or {})
        self.text = raw.get("body") or ""
        self.json = json.loads(self.text) if self.headers.get("Content-Type") == "application/json" else None


def api_event(method: str, path: str, *, query: dict | None = None, body: Any = None,
              identity: dict | None = None, content_type: str | None = None) -> dict:
    """An API Gateway REST proxy event (from events/api.json) for `method path`; `body` is sent
    as JSON unless it is already a string, base64-encoded when it is bytes (a binary body);
    `identity` replaces the caller's IAM identity."""
    event = copy.deepcopy(SAMPLE)
    match = MID_PATH.match(path)
    binary = isinstance(body, bytes)
    event.update(
        httpMethod=method, path=path,
        resource=MID_PATH.sub("/migrations/{migration_id}", path),
        pathParameters={"migration_id": match.group(1)} if match else None,
        queryStringParameters=query or None,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
        body=base64.b64encode(body).decode() if binary else body if body is None or isinstance(body, str)
        else json.dumps(body),
        isBase64Encoded=binary,
    )
    if content_type:
        event["headers"]["Content-Type"], event["multiValueHeaders"]["Content-Type"] = content_type, [content_type]
    context = event["requestContext"]
    context.update(httpMethod=method, path=f"/{context['stage']}{path}", resourcePath=event["resource"])
    if identity is not None:
        context["identity"] = identity
    return event


def principal(arn: str | None = ALICE, caller: str | None = None) -> dict:
    return {"userArn": arn, "caller": caller, "accountId": None, "sourceIp": "203.0.113.10"}


def call(rt: LocalRuntime, method: str, path: str, **kwargs: Any) -> Reply:
    response = rt.client("lambda").invoke(FunctionName=API, Payload=json.dumps(api_event(method, path, **kwargs)))
    raw = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, raw  # errors are HTTP responses, never a failed invocation
    return Reply(raw)


def api_logs(rt: LocalRuntime) -> str:
    return "".join(i.logs for i in rt.lambdas.invocations if i.function == API)


def state(rt: LocalRuntime) -> tuple[int, int]:
    """How many executions and table items exist: a bad request must change neither."""
    executions = rt.client("stepfunctions").list_executions(stateMachineArn=rt.state_machine_arn)["executions"]
    return len(executions), rt.client("dynamodb").scan(TableName="spot-migration", Select="COUNT")["Count"]


@pytest.fixture(scope="module")
def rt():
    with LocalRuntime(seed=11) as runtime:
        runtime.fleet.seed_fleet(12)
        yield runtime


@pytest.fixture(scope="module")
def dry_run(rt) -> str:
    """A finished dry run, started through the API without an id (one is generated)."""
    reply = call(rt, "POST", "/migrations", body={"dry_run": True})
    assert reply.status == 201, reply.text
    mid = reply.json["migration_id"]
    assert re.fullmatch(r"mig-\d{8}-\d{6}-[0-9a-f]{6}", mid)
    assert rt.wait(mid).status == "SUCCEEDED"
    return mid


# --- start ------------------------------------------------------------------------------------

def test_start_is_idempotent_per_id_and_request(rt):
    request = {"migration_id": "idem-1", "dry_run": True, "waves": [25, 100], "bake_seconds": [60, 60]}
    first = call(rt, "POST", "/migrations", body=request)
    assert first.status == 201
    assert first.headers["Location"] == "/v1/migrations/idem-1"
    assert first.json["created"] is True and first.json["execution_arn"].endswith(":idem-1")

    again = call(rt, "POST", "/migrations", body=request)
    assert again.status == 200 and again.json == {**first.json, "created": False}
    assert again.headers["Location"] == "/v1/migrations/idem-1"

    other = call(rt, "POST", "/migrations", body={**request, "waves": [50, 100]})
    assert other.status == 409 and "idem-1" in other.json["message"]

    executions = rt.client("stepfunctions").list_executions(stateMachineArn=rt.state_machine_arn)["executions"]
    assert [e["name"] for e in executions].count("idem-1") == 1
    assert rt.wait("idem-1").status == "SUCCEEDED"
    execution = rt.client("stepfunctions").describe_execution(executionArn=rt.execution_arn("idem-1"))
    assert json.loads(execution["input"])["waves"] == [25, 100]


# --- validation: 400, and nothing started or written -------------------------------------------

BAD_REQUESTS = [
    ("POST", "/migrations", {"body": {"waves": [50, 10]}}, "body.waves"),
    ("POST", "/migrations", {"body": {"dry_run": True, "bogus": 1}}, "body.bogus"),
    ("POST", "/migrations", {"body": {"migration_id": "not an id!"}}, "body.migration_id"),
    ("POST", "/migrations", {"body": {"approval": {"timeout_seconds": 0}}}, "body.approval.timeout_seconds"),
    ("POST", "/migrations", {"body": {"selector": {"tags": "opt-in"}}}, "body.selector.tags"),
    ("POST", "/migrations", {"body": "{not json"}, "body"),
    ("POST", "/migrations", {"body": "[1, 2]"}, "body"),
    ("POST", "/migrations", {}, "body"),
    ("GET", "/migrations", {"query": {"limit": "0"}}, "query.limit"),
    ("GET", "/migrations", {"query": {"limit": "101"}}, "query.limit"),
    ("GET", "/migrations", {"query": {"limit": "ten"}}, "query.limit"),
    ("GET", "/migrations", {"query": {"status": "sleeping"}}, "query.status"),
    ("GET", "/migrations/not%20an%20id!", {}, "path.migration_id"),
    ("GET", "/migrations/" + "x" * 81, {}, "path.migration_id"),
    ("GET", "/migrations/m-1/plan", {"query": {"limit": "-1"}}, "query.limit"),
    ("POST", "/migrations/m-1/approve", {"body": {"reason": "ok", "by": "me"}}, "body.by"),
    ("POST", "/migrations/m-1/reject", {"body": {}}, "body.reason"),
    ("POST", "/migrations/m-1/reject", {"body": {"reason": "   "}}, "body.reason"),
    ("POST", "/migrations/m-1/reject", {}, "body"),
    # bodies the API cannot read, or not an object: 400 too, never a 500
    ("POST", "/migrations", {"body": "[" * 100_000 + "]" * 100_000}, "body"),
    ("POST", "/migrations", {"body": '{"selector": ' + "{\"a\": " * 50_000 + "1" + "}" * 50_001}, "body"),
    ("POST", "/migrations", {"body": b'{"dry_run": true, "name": "\xff\xfe"}'}, "body"),
    ("POST", "/migrations", {"body": '{"waves": [NaN, 100]}'}, "body"),
    ("POST", "/migrations", {"body": '{"min_savings_pct": 1' + "0" * 5000 + "}"}, "body"),
    ("POST", "/migrations", {"body": "null"}, "body"),
    ("POST", "/migrations", {"body": '"{\\"dry_run\\": true}"'}, "body"),
    ("POST", "/migrations", {"body": "true"}, "body"),
    ("POST", "/migrations", {"body": "42"}, "body"),
    ("POST", "/migrations", {"body": {"dry_run": True}, "content_type": "text/plain"}, "body"),
    ("POST", "/migrations", {"body": "dry_run=true", "content_type": "application/x-www-form-urlencoded"}, "body"),
    ("POST", "/migrations", {"body": [{"dry_run": True}]}, "body"),  # not its first item either
    ("POST", "/migrations/m-1/approve", {"body": "[]"}, "body"),
    ("POST", "/migrations/m-1/approve", {"body": [None]}, "body"),
    ("POST", "/migrations/m-1/reject", {"body": [{"reason": "no"}]}, "body"),
    ("POST", "/migrations/m-1/reject", {"body": "[" * 100_000}, "body"),
    ("POST", "/migrations/m-1/revert", {"body": {"instance_ids": ["vol-1"]}}, "body.instance_ids"),
    ("POST", "/migrations/m-1/revert", {"body": {"selector": {}}}, "body.selector"),
    ("POST", "/migrations/m-1/revert", {"body": {"migration_id": "bad id"}}, "body.migration_id"),
    ("POST", "/migrations/m-1/revert", {"body": {"waves": [50]}}, "body.waves"),
]


@pytest.mark.parametrize("method, path, kwargs, field", BAD_REQUESTS,
                         ids=[f"{m} {p[:30]} {f} {str(k)[:40]}" for m, p, k, f in BAD_REQUESTS])
def test_invalid_requests_are_400_naming_the_field_and_change_nothing(rt, method, path, kwargs, field):
    before = state(rt)
    reply = call(rt, method, path.replace("%20", " "), **kwargs)
    assert reply.status == 400, reply.text
    assert field in [e["field"] for e in reply.json["errors"]]
    assert field in reply.json["message"]
    assert state(rt) == before


def test_a_request_too_large_for_step_functions_is_400_and_starts_nothing(rt):
    before = state(rt)
    reply = call(rt, "POST", "/migrations", body={"selector": {"tags": {"team": "x" * 300_000}}})
    assert reply.status == 400, reply.text
    assert reply.json["message"].startswith("invalid migration request: input: 300")
    assert "bytes as JSON; Step Functions accepts at most 262144" in reply.json["message"]
    assert state(rt) == before


# The same at the resolver, for any JSON value or bytes (hypothesis): no AWS behind it, so a
# request that got past validation would be a 500, never a 400.
CONTEXT = FakeContext(API, f"arn:aws:lambda:us-east-1:123456789012:function:{API}", 30, 256)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
NOT_OBJECTS = JSON_VALUES.filter(lambda v: not isinstance(v, dict))


def resolve(method: str, path: str, **kwargs: Any) -> Reply:
    return Reply(app.resolve(api_event(method, path, **kwargs), CONTEXT))


def assert_400(reply: Reply, field: str, message: str) -> None:
    assert reply.status == 400, reply.text
    assert reply.json["errors"] == [{"field": field, "message": message}], reply.json
    assert reply.json["message"] == f"invalid request: {field}: {message}"


@given(NOT_OBJECTS)
@settings(deadline=None, max_examples=150)
def test_a_body_of_any_other_json_type_is_400(value):
    for method, path in (("POST", "/migrations"), ("POST", "/migrations/m-1/reject")):
        assert_400(resolve(method, path, body=json.dumps(value)), "body", "must be a JSON object")
    if value is not None:  # approve's body is optional: null is no body
        assert_400(resolve("POST", "/migrations/m-1/approve", body=json.dumps(value)), "body", "must be a JSON object")


@given(st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k not in StartMigration.model_fields),
                       JSON_VALUES, min_size=1, max_size=3))
@settings(deadline=None, max_examples=100)
def test_an_object_with_unknown_fields_is_400_naming_each(body):
    reply = resolve("POST", "/migrations", body={"dry_run": True, **body})
    assert reply.status == 400, reply.text
    assert {f"body.{key}" for key in body} <= {e["field"] for e in reply.json["errors"]}


def _is_json(text: str | bytes) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@given(st.text(min_size=1, max_size=200).filter(lambda text: not _is_json(text)))
@settings(deadline=None, max_examples=150)
def test_a_body_that_is_not_json_is_400(text):
    assert_400(resolve("POST", "/migrations", body=text), "body", "not valid JSON")


@given(st.binary(min_size=1, max_size=200).filter(lambda raw: not _utf8(raw)))
@settings(deadline=None, max_examples=100)
def test_a_binary_body_that_is_not_utf8_is_400(raw):
    assert_400(resolve("POST", "/migrations", body=raw), "body", "not valid JSON: not UTF-8")


@pytest.mark.parametrize("body, message", [
    ("[" * 100_000 + "]" * 100_000, "not valid JSON: nested too deeply"),
    ("[" * 100_000, "not valid JSON: nested too deeply"),
    (b"\xc3\x28", "not valid JSON: not UTF-8"),
    ('{"waves": [Infinity]}', "not valid JSON"),
    ("9" * 10_000, "not valid JSON"),
    ("", "must be a JSON object"),
], ids=["deep-array", "deep-unclosed", "not-utf8", "infinity", "huge-number", "empty"])
def test_unreadable_bodies_say_why(body, message):
    assert_400(resolve("POST", "/migrations", body=body), "body", message)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "multipart/form-data; boundary=x", "application/xml"])
def test_a_body_that_is_not_sent_as_json_is_400(content_type):
    reply = resolve("POST", "/migrations", body={"dry_run": True}, content_type=content_type)
    media_type = content_type.split(";")[0]
    assert_400(reply, "body", f"send JSON (Content-Type: application/json), not {media_type}")
    assert resolve("POST", "/migrations/m-1/reject", body={}, content_type=f"{content_type}").status == 400


def test_a_json_content_type_with_parameters_is_json():
    reply = resolve("POST", "/migrations", body={"bogus": 1}, content_type="application/json; charset=utf-8")
    assert_400(reply, "body.bogus", "Extra inputs are not permitted")


@pytest.mark.parametrize("token", [
    "not base64!",
    base64.urlsafe_b64encode(b'["a list"]').decode(),
    base64.urlsafe_b64encode(json.dumps({"pk": "MIGRATION#elsewhere", "sk": "INSTANCE#i-1"}).encode()).decode(),
], ids=["garbage", "not-a-key", "forged-key"])
def test_bad_next_tokens_are_400(rt, dry_run, token):
    before = state(rt)
    for path, query in (("/migrations", {}), ("/migrations", {"status": "planned"}),
                        (f"/migrations/{dry_run}/plan", {})):
        reply = call(rt, "GET", path, query={**query, "next_token": token})
        assert reply.status == 400, (path, query, reply.text)
        assert "next_token" in reply.json["message"]
    assert state(rt) == before


# --- reading ----------------------------------------------------------------------------------

def test_unknown_migration_is_404(rt):
    before = state(rt)
    for method, path, body in (("GET", "/migrations/nope", None), ("GET", "/migrations/nope/plan", None),
                               ("POST", "/migrations/nope/approve", None),
                               ("POST", "/migrations/nope/reject", {"reason": "no"}),
                               ("POST", "/migrations/nope/revert", None)):
        reply = call(rt, method, path, body=body)
        assert reply.status == 404, (path, reply.text)
        assert reply.json == {"message": "no migration 'nope'"}
    assert state(rt) == before


def test_list_filters_by_status_and_pages(rt, dry_run):
    everything = call(rt, "GET", "/migrations")
    assert everything.status == 200
    assert dry_run in [m["migration_id"] for m in everything.json["items"]]
    for status, present in (("SUCCEEDED", True), ("planned", True), ("RUNNING", False), ("completed", False)):
        reply = call(rt, "GET", "/migrations", query={"status": status})
        assert reply.status == 200
        assert (dry_run in [m["migration_id"] for m in reply.json["items"]]) is present, status

    for status in (None, "planned"):  # executions (Step Functions tokens), migration items (DynamoDB keys)
        filters = {"status": status} if status else {}
        expected = [m["migration_id"] for m in call(rt, "GET", "/migrations", query=filters).json["items"]]
        seen, token = [], None
        while True:
            query = {**filters, "limit": "1", **({"next_token": token} if token else {})}
            page = call(rt, "GET", "/migrations", query=query).json
            assert len(page["items"]) <= 1
            seen += [m["migration_id"] for m in page["items"]]
            token = page["next_token"]
            if not token:
                break
        assert seen == expected and dry_run in seen


def test_detail_of_a_dry_run(rt, dry_run):
    reply = call(rt, "GET", f"/migrations/{dry_run}")
    assert reply.status == 200
    detail = reply.json
    assert detail["migration_id"] == dry_run
    assert (detail["execution_status"], detail["status"], detail["dry_run"]) == ("SUCCEEDED", "planned", True)
    assert detail["summary"]["analysed"] == 12 and detail["summary"]["candidates"] > 0
    assert detail["request"]["dry_run"] is True and detail["approval"] is None
    assert {v["agent"] for v in detail["verdicts"]} == {"performance", "capacity", "application"}


def test_the_plan_pages_cover_every_instance_exactly_once(rt, dry_run):
    seen, token, pages = [], None, 0
    while True:
        query = {"limit": "5", **({"next_token": token} if token else {})}
        reply = call(rt, "GET", f"/migrations/{dry_run}/plan", query=query)
        assert reply.status == 200 and reply.json["migration_id"] == dry_run
        assert len(reply.json["items"]) <= 5
        seen += [entry["instance_id"] for entry in reply.json["items"]]
        pages += 1
        token = reply.json["next_token"]
        if not token:
            break
    assert pages >= 3
    assert len(seen) == len(set(seen)) == 12
    assert set(seen) == {r.instance_id for r in rt.records(dry_run)}
    whole = call(rt, "GET", f"/migrations/{dry_run}/plan").json  # default page: the whole plan
    assert [e["instance_id"] for e in whole["items"]] == seen and whole["next_token"] is None
    excluded = [e for e in whole["items"] if not e["eligible"]]
    assert excluded and all(e["exclusion_reason"] for e in excluded)


# --- decisions --------------------------------------------------------------------------------

def test_decisions_on_a_migration_not_waiting_are_409(rt, dry_run):
    before = state(rt)
    for path, body in ((f"/migrations/{dry_run}/approve", None), (f"/migrations/{dry_run}/reject", {"reason": "no"})):
        reply = call(rt, "POST", path, body=body)
        assert reply.status == 409, reply.text
        assert reply.json == {"message": f"migration {dry_run!r} is planned, not awaiting approval: it needs no "
                                         "decision (auto_approve or dry run)", "status": "planned", "retry": False}
        assert "Retry-After" not in reply.headers
    assert state(rt) == before


def test_only_a_completed_migration_is_reverted_409_otherwise(rt, dry_run):
    before = state(rt)
    reply = call(rt, "POST", f"/migrations/{dry_run}/revert", body={"approval": {"auto_approve": True}})
    assert reply.status == 409, reply.text
    assert "only a completed migration can be reverted" in reply.json["message"]
    assert state(rt) == before


class Deciding:
    """The operator service, as far as a decision goes: it refuses with `error`."""

    def __init__(self, error: Exception):
        self.error = error

    def decide(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


ON_ITS_WAY = ApprovalState("reviewed", "RUNNING", pending=False, ahead=True)


@pytest.mark.parametrize("error, status, retry", [
    (NotAwaitingApproval("m-1", ApprovalState(None, "RUNNING", pending=False, ahead=True)), None, True),
    (NotAwaitingApproval("m-1", ON_ITS_WAY), "reviewed", True),
    (NotAwaitingApproval("m-1", ApprovalState("rejected", "FAILED", pending=False, ahead=False)), "rejected", False),
    (ApprovalNotPending("migration 'm-1' no longer waits for a decision (TaskTimedOut)"), None, False),
], ids=["starting", "reviewed", "rejected", "token-gone"])
def test_a_decision_conflict_says_whether_to_send_it_again(monkeypatch, error, status, retry):
    monkeypatch.setattr(api, "migrations", lambda: Deciding(error))
    for path, body in (("/migrations/m-1/approve", None), ("/migrations/m-1/reject", {"reason": "no"})):
        reply = resolve("POST", path, body=body)
        assert reply.status == 409, reply.text
        assert reply.json == {"message": str(error), "retry": retry, **({"status": status} if status else {})}
        assert reply.headers.get("Retry-After") == ("5" if retry else None)


def approval_token(rt: LocalRuntime, mid: str) -> str:
    item = rt.table.get_item(Key={"pk": f"MIGRATION#{mid}", "sk": "APPROVAL_TOKEN"}, ConsistentRead=True)["Item"]
    return item["token"]


def test_rejection_by_the_iam_principal_and_a_second_decision_is_409(rt):
    started = call(rt, "POST", "/migrations", body={"migration_id": "to-reject"})
    assert started.status == 201
    rt.wait_for_status("to-reject", "awaiting_approval")
    token = approval_token(rt, "to-reject")
    first_invocation = len(rt.lambdas.invocations)

    waiting = call(rt, "GET", "/migrations/to-reject")
    assert (waiting.json["status"], waiting.json["current_state"]) == ("awaiting_approval", "RequestApproval")
    assert set(waiting.json["approval"]) == {"requested_at", "timeout_seconds"}
    assert call(rt, "POST", "/migrations/to-reject/reject", body={}).status == 400
    assert call(rt, "GET", "/migrations/to-reject").json["status"] == "awaiting_approval"  # still waiting

    rejected = call(rt, "POST", "/migrations/to-reject/reject", body={"reason": "not this quarter"},
                    identity=principal(BOB))
    assert rejected.status == 200, rejected.text
    assert rejected.json["approved"] is False and rejected.json["decided_by"] == BOB
    assert rejected.json["reason"] == "not this quarter"

    for path, body in (("/migrations/to-reject/approve", None), ("/migrations/to-reject/reject", {"reason": "again"})):
        second = call(rt, "POST", path, body=body)
        assert second.status == 409, second.text
        assert (second.json["status"], second.json["retry"]) == ("rejected", False)
    result = rt.wait("to-reject")
    assert (result.status, result.error) == ("FAILED", "MigrationRejected")

    detail = call(rt, "GET", "/migrations/to-reject").json
    assert detail["status"] == "rejected"
    assert detail["approval"]["decided_by"] == BOB and detail["approval"]["approved"] is False

    # The task token never leaves the server side: no response, no log line of any function.
    replies = [i.payload for i in rt.lambdas.invocations[first_invocation:] if i.function == API]
    assert replies and token not in json.dumps(replies)
    assert token not in "".join(i.logs for i in rt.lambdas.invocations)


def test_approval_by_the_caller_id_when_there_is_no_user_arn(rt, dry_run):
    plan = call(rt, "GET", f"/migrations/{dry_run}/plan").json["items"]
    instance = next(e["instance_id"] for e in plan if e["eligible"])
    request = {"migration_id": "to-approve", "selector": {"instance_ids": [instance]}, "waves": [100],
               "bake_seconds": [60], "quality": {"target_group_arn": rt.fleet.target_group_arn}}
    assert call(rt, "POST", "/migrations", body=request).status == 201
    rt.wait_for_status("to-approve", "awaiting_approval")
    token = approval_token(rt, "to-approve")

    approved = call(rt, "POST", "/migrations/to-approve/approve", identity=principal(None, caller="AIDAEXAMPLECALLER"))
    assert approved.status == 200, approved.text
    decision = (approved.json["approved"], approved.json["decided_by"], approved.json["reason"])
    assert decision == (True, "AIDAEXAMPLECALLER", None)
    assert call(rt, "POST", "/migrations/to-approve/approve").status == 409
    assert rt.wait("to-approve").status == "SUCCEEDED"
    assert call(rt, "POST", "/migrations/to-approve/reject", body={"reason": "too late"}).status == 409
    detail = call(rt, "GET", "/migrations/to-approve").json
    assert detail["status"] == "completed" and detail["approval"]["decided_by"] == "AIDAEXAMPLECALLER"
    assert [w["state"] for w in detail["waves"]] == ["passed"]
    assert token not in "".join(i.logs for i in rt.lambdas.invocations)
    assert token not in json.dumps([i.payload for i in rt.lambdas.invocations if i.function == API])


# --- identity, routes, errors ------------------------------------------------------------------

def test_a_request_without_an_iam_identity_is_refused(rt):
    reply = call(rt, "GET", "/migrations", identity={"sourceIp": "203.0.113.10"})
    assert reply.status == 403 and reply.json == {"message": "the request carries no IAM identity"}


def test_unknown_route_is_a_json_404(rt):
    reply = call(rt, "GET", "/elsewhere")
    assert reply.status == 404 and reply.json == {"message": "Not found"}


def test_swagger_ui_is_html_and_needs_no_identity(rt):
    reply = call(rt, "GET", "/swagger", identity={"sourceIp": "203.0.113.10"})
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/html"
    assert reply.text.lstrip().startswith("<!DOCTYPE html>") and "SwaggerUIBundle" in reply.text
    assert TITLE in reply.text and "/migrations/{migration_id}/approve" in reply.text

    document = call(rt, "GET", "/swagger", query={"format": "json"}).json
    published = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert document["paths"] == published["paths"]
    assert document["servers"] == [{"url": "/v1"}]  # the stage, as the browser sees it


def test_an_unexpected_error_is_a_generic_500_and_is_logged(rt, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("connection string postgres://admin:hunter2@db")

    monkeypatch.setattr(Migrations, "list", broken)
    reply = call(rt, "GET", "/migrations")
    assert reply.status == 500 and reply.json == {"message": "internal error"}
    assert "hunter2" not in reply.text and "Traceback" not in reply.text
    logged = [json.loads(line) for line in rt.lambdas.invocations[-1].logs.splitlines() if line.startswith("{")]
    error = next(line for line in logged if line["message"] == "unhandled error")
    assert error["level"] == "ERROR" and "RuntimeError" in error["exception"]


def test_throttling_by_aws_is_a_503(rt, monkeypatch):
    def throttled(*args, **kwargs):
        raise TransientAwsError("ThrottlingException: Rate exceeded")

    monkeypatch.setattr(Migrations, "get", throttled)
    reply = call(rt, "GET", "/migrations/m-1")
    assert reply.status == 503 and reply.json == {"message": "temporarily unavailable; retry with backoff"}


def test_requests_are_logged_with_the_principal_but_never_whole(rt):
    call(rt, "POST", "/migrations", body={"migration_id": "logged", "dry_run": True})
    logs = rt.lambdas.invocations[-1].logs
    line = next(json.loads(line) for line in logs.splitlines() if "migration started" in line)
    assert (line["migration_id"], line["principal"]) == ("logged", ALICE)
    assert line["correlation_id"] == SAMPLE["requestContext"]["requestId"]
    assert "X-Amz-Security-Token" not in api_logs(rt) and "Signature=" not in api_logs(rt)
    assert rt.wait("logged").status == "SUCCEEDED"


def test_a_response_that_does_not_match_its_model_is_a_500_not_a_400(rt, monkeypatch):
    monkeypatch.setattr(Migrations, "get", lambda self, migration_id: {"migration_id": None})
    reply = call(rt, "GET", "/migrations/m-1")
    assert reply.status == 500 and reply.json == {"message": "internal error"}
    assert "response does not match its model" in rt.lambdas.invocations[-1].logs
