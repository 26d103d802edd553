"""docs/openapi.json: generated from the resolver's routes (tools/build_openapi.py), up to date,
valid OpenAPI, and complete: every route, its models and its error responses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "openapi.json"
sys.path.insert(0, str(ROOT / "tools"))

from build_openapi import build  # noqa: E402

REF = "#/components/schemas/"
ROUTES = {
    ("post", "/migrations"): ("startMigration", "StartMigration", {201: "Started", 200: "Started"}, {400, 403, 409}),
    ("get", "/migrations"): ("listMigrations", None, {200: "MigrationPage"}, {400, 403}),
    ("get", "/migrations/{migration_id}"): ("getMigration", None, {200: "MigrationDetail"}, {400, 403, 404}),
    ("get", "/migrations/{migration_id}/plan"): ("getPlan", None, {200: "PlanPage"}, {400, 403, 404}),
    ("post", "/migrations/{migration_id}/approve"):
        ("approveMigration", "Decision", {200: "DecisionResult"}, {400, 403, 404, 409}),
    ("post", "/migrations/{migration_id}/reject"):
        ("rejectMigration", "Rejection", {200: "DecisionResult"}, {400, 403, 404, 409}),
    ("post", "/migrations/{migration_id}/retention"):
        ("setRetention", "RetentionChange", {200: "Retention"}, {400, 403, 404, 409}),
    ("post", "/migrations/{migration_id}/revert"):
        ("revertMigration", "RevertMigration", {201: "Started", 200: "Started"}, {400, 403, 404, 409}),
}
OPTIONAL_BODIES = ("Decision", "RevertMigration")  # approve, and revert (everything by default)


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(DOCUMENT.read_text())


def test_the_checked_in_document_is_the_generated_one():
    assert DOCUMENT.read_text() == build(), "docs/openapi.json is stale: run `make openapi`"


def test_the_document_is_valid_openapi(document):
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] and document["info"]["version"] and document["info"]["description"]


def test_every_route_and_nothing_else(document):
    operations = {(verb, path) for path, item in document["paths"].items() for verb in item}
    assert operations == set(ROUTES)  # the Swagger UI route is not part of the API


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[0].upper()} {r[1]}")
def test_models_and_responses_of_each_route(document, route):
    verb, path = route
    operation_id, body, successes, errors = ROUTES[route]
    operation = document["paths"][path][verb]
    assert operation["operationId"] == operation_id and operation["summary"]

    if body:
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert f"{REF}{body}" in json.dumps(schema)
        assert operation["requestBody"].get("required", False) is (body not in OPTIONAL_BODIES)
    else:
        assert "requestBody" not in operation

    responses = {int(code): response for code, response in operation["responses"].items()}
    assert set(responses) == set(successes) | errors | {500, 503}
    for code, model in successes.items():
        assert responses[code]["content"]["application/json"]["schema"] == {"$ref": f"{REF}{model}"}
    for code in errors | {500, 503}:
        assert responses[code]["description"]
        model = "DecisionConflict" if code == 409 and body in ("Decision", "Rejection") else "ErrorBody"
        assert responses[code]["content"]["application/json"]["schema"] == {"$ref": f"{REF}{model}"}
    assert 422 not in responses  # validation errors are 400 here

    parameters = {(p["in"], p["name"]): p for p in operation.get("parameters", [])}
    if "{migration_id}" in path:
        assert parameters[("path", "migration_id")]["required"] is True
        assert parameters[("path", "migration_id")]["schema"]["pattern"] == "^[A-Za-z0-9_-]{1,80}$"
    if verb == "get" and path != "/migrations/{migration_id}":
        limit = parameters[("query", "limit")]["schema"]
        assert (limit["minimum"], limit["maximum"]) == (1, 100)
        assert ("query", "next_token") in parameters


def test_models_are_published_with_their_constraints(document):
    schemas = document["components"]["schemas"]
    assert {"StartMigration", "Started", "MigrationPage", "MigrationSummary", "MigrationDetail", "PlanPage",
            "PlanEntry", "Decision", "Rejection", "DecisionResult", "ErrorBody", "FieldError"} <= set(schemas)
    assert not {"HTTPValidationError", "ValidationError", "ResponseValidationError"} & set(schemas)
    assert schemas["StartMigration"]["additionalProperties"] is False
    assert schemas["Rejection"]["required"] == ["reason"]
    assert schemas["ErrorBody"]["required"] == ["message"]
    # a decision's 409 says whether to send it again later
    assert schemas["DecisionConflict"]["required"] == ["message", "retry"]
    assert set(schemas["DecisionConflict"]["properties"]) == {"message", "errors", "status", "retry"}
    # the approval task token is not part of any model (next_token is the paging cursor)
    fields = {name for schema in schemas.values() for name in schema.get("properties", {})}
    assert {f for f in fields if "token" in f.lower()} == {"next_token"}


def test_iam_sigv4_is_the_security_of_every_operation(document):
    scheme = document["components"]["securitySchemes"]["sigv4"]
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert document["security"] == [{"sigv4": []}]
    assert not any("security" in op for item in document["paths"].values() for op in item.values())
