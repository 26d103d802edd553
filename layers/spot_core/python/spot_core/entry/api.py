"""The migrations API: the routes of the Powertools REST resolver over the Migrations service.

Served by functions/api behind API Gateway (REST, IAM authorisation); tools/build_openapi.py
writes docs/openapi.json from these routes and the CDK stack creates one API Gateway method
per operation of that document. Every error is JSON ``{"message": ...}``; request
validation errors are 400 (not Powertools' default 422) and name each bad field, and so is
every body the API cannot read (not JSON, not UTF-8, nested too deeply, not application/json).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ForbiddenError, ServiceError
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, Field

from ..domain.errors import (
    ApprovalNotPending,
    InvalidMigrationRequest,
    MigrationConflict,
    MigrationNotFound,
    TransientAwsError,
)
from ..domain.outcomes import EXECUTION_STATUSES, MIGRATION_STATUSES
from ..domain.request import MIGRATION_ID_SCHEMA, RevertMigration, StartMigration
from ..domain.retention import Retention, RetentionChange
from ..domain.views import Decision, DecisionResult, MigrationDetail, MigrationPage, PlanPage, Started
from ..services.migrations import MAX_PAGE, Migrations, NotAwaitingApproval
from .observability import logger
from .wiring import wiring

TITLE = "Spot migration API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Start, list and inspect migrations of EC2 fleets from on-demand to Spot, read their plans, "
    "and approve or reject them. Every operation is authorised by AWS IAM: sign requests with "
    "Signature Version 4 (service name `execute-api`)."
)
SWAGGER_PATH = "/swagger"
SIGV4 = "sigv4"

MigrationId = Annotated[str, Path(pattern=MIGRATION_ID_SCHEMA, description="the migration id (the execution name)")]
NextToken = Annotated[str | None, Query(max_length=4096, description="from the previous page; absent on the last page")]
if TYPE_CHECKING:
    Status = str
else:  # the route validates (and documents) the statuses as an enum
    Status = Literal[EXECUTION_STATUSES + MIGRATION_STATUSES]


class FieldError(BaseModel):
    field: str = Field(description="where: body.<field>, query.<name> or path.<name>")
    message: str


class ErrorBody(BaseModel):
    message: str
    errors: list[FieldError] | None = Field(None, description="request validation errors, one per bad field")


class DecisionConflict(ErrorBody):
    status: str | None = Field(None, description="the migration's status now (absent until the analysis records it)")
    retry: bool = Field(description="true while the migration is on its way to its approval step: send the decision "
                                    "again after the Retry-After seconds; false: it is past it (decided, ended, or "
                                    "it needs no decision)")


class Rejection(Decision):
    reason: str = Field(min_length=1, max_length=1000, pattern=r"\S", description="why the migration is rejected")


RETRY_AFTER_SECONDS = 5  # a migration on its way to approval: when to send the decision again

ERROR_DESCRIPTIONS = {
    400: "The request is not valid; nothing was started or changed",
    403: "Not signed, not allowed execute-api:Invoke on this route, or no IAM identity in the request",
    404: "No migration with this id",
    409: "Conflict: the migration id is used by another request",
    500: "Internal error (logged; no detail is returned)",
    503: "AWS throttled or failed transiently; retry with backoff",
}


NOT_PENDING = ("No decision is pending: not yet (retry is true: send it again after Retry-After seconds), or no "
               "longer (decided, timed out, ended) or never (auto_approve, dry run)")


def responses(success: dict[int, str], *errors: int, decision: bool = False) -> dict[int, OpenAPIResponse]:
    """Success codes (schema from the return annotation) and the error codes of a route
    (``decision``: its 409 is a DecisionConflict)."""
    out: dict[int, OpenAPIResponse] = {code: {"description": text} for code, text in success.items()}
    for code in (*errors, 500, 503):
        model: type[ErrorBody] = ErrorBody
        text = ERROR_DESCRIPTIONS[code]
        if decision and code == 409:
            model, text = DecisionConflict, NOT_PENDING
        out[code] = {"description": text, "content": {content_types.APPLICATION_JSON: {"model": model}}}
    return out


class JsonBodyValidation(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation, reading every body as one JSON object (or none): a body
    it cannot read (not application/json, not UTF-8, not JSON, nested too deeply, a number too
    long) or another JSON value is a request validation error that says why (a 400), never an
    internal error. (Powertools alone would validate an array's first item as the body.)"""

    def _get_body(self, app: Any) -> Any:
        event = app.current_event
        media_type = event.headers.get("content-type", "").split(";")[0].strip()
        if media_type.lower() not in ("", content_types.APPLICATION_JSON):
            raise _unreadable(f"send JSON (Content-Type: {content_types.APPLICATION_JSON}), not {media_type[:100]}")
        try:
            body = event.json_body  # base64 (if encoded), UTF-8, then JSON
        except UnicodeDecodeError:
            raise _unreadable("not valid JSON: not UTF-8") from None
        except RecursionError:
            raise _unreadable("not valid JSON: nested too deeply") from None
        except ValueError:  # not JSON, not base64, NaN or Infinity, a number too long to read
            raise _unreadable("not valid JSON") from None
        if body is not None and not isinstance(body, dict):
            raise _unreadable("must be a JSON object")
        return body  # None: no body (or null), which only an optional body may be


def _unreadable(problem: str) -> RequestValidationError:
    return RequestValidationError([{"type": "body_unreadable", "loc": ("body",), "msg": problem, "input": None}])


def _strict_json(text: str) -> Any:
    """json.loads without NaN and Infinity, which JSON does not have."""
    return json.loads(text, parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


class MigrationsResolver(APIGatewayRestResolver):
    def __init__(self) -> None:
        super().__init__(enable_validation=True, json_body_deserializer=_strict_json)
        self._request_validation_middleware = JsonBodyValidation()  # type: ignore[no-untyped-call]  # Powertools'

    def get_openapi_schema(self, **kwargs: Any) -> Any:
        """Powertools documents request validation errors as 422; this API answers them with 400."""
        schema = super().get_openapi_schema(**kwargs)
        for item in (schema.paths or {}).values():
            for operation in (item.get, item.put, item.post, item.delete, item.patch):
                if operation is not None and operation.responses:
                    operation.responses.pop(422, None)
        if schema.components and schema.components.schemas:
            for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
                schema.components.schemas.pop(unused, None)
        return schema


# What the document says about the API as a whole; the Swagger UI and docs/openapi.json share it.
OPENAPI: dict[str, Any] = {
    "title": TITLE, "version": VERSION, "description": DESCRIPTION,
    "security_schemes": {SIGV4: APIKey(
        name="Authorization", in_=APIKeyIn.header,
        description="AWS Signature Version 4 (IAM); API Gateway verifies it before the request reaches the API",
        openapi_extensions={"x-amazon-apigateway-authtype": "awsSigv4"},
    )},
    "security": [{SIGV4: []}],
}

app = MigrationsResolver()
app.enable_swagger(path=SWAGGER_PATH, **OPENAPI)


def migrations() -> Migrations:
    return wiring().operator


def caller() -> str:
    """The IAM principal API Gateway authenticated (the user or role ARN)."""
    identity = app.current_event.request_context.identity
    principal = identity.user_arn or identity.caller or identity.account_id
    if not principal:  # only when a method was deployed without IAM authorisation
        raise ForbiddenError("the request carries no IAM identity")
    return principal


# --- routes -----------------------------------------------------------------------------
@app.post("/migrations", summary="Start a migration", operation_id="startMigration", tags=["migrations"],
          responses=responses({201: "Started", 200: "Already started by the same request with this id"}, 400, 403, 409))
def start_migration(body: Annotated[StartMigration, Body()]) -> Response[Started]:
    principal = caller()
    started = migrations().start(body)
    logger.info("migration started" if started.created else "migration already started",
                extra={"migration_id": started.migration_id, "principal": principal})
    return _started(started)


def _started(started: Started) -> Response[Started]:
    """201 with the new migration's location, or 200 when the same request had started it."""
    location = f"{app._get_base_path()}/migrations/{started.migration_id}"  # /<stage> on execute-api URLs, as Swagger's
    return Response(status_code=201 if started.created else 200, content_type=content_types.APPLICATION_JSON,
                    body=started, headers={"Location": location})


@app.get("/migrations", summary="List migrations, newest first", operation_id="listMigrations", tags=["migrations"],
         responses=responses({200: "One page of migrations"}, 400, 403))
def list_migrations(
    status: Annotated[Status | None,
                      Query(description="an execution status (RUNNING, ...) or a migration status")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    next_token: NextToken = None,
) -> MigrationPage:
    caller()
    return migrations().list(status, limit, next_token)


@app.get("/migrations/<migration_id>", summary="A migration: status, plan summary, waves, verdicts, approval",
         operation_id="getMigration", tags=["migrations"], responses=responses({200: "The migration"}, 400, 403, 404))
def get_migration(migration_id: MigrationId) -> MigrationDetail:
    caller()
    return migrations().get(migration_id)


@app.get("/migrations/<migration_id>/plan", summary="The plan, one instance per entry, in pages",
         operation_id="getPlan", tags=["migrations"], responses=responses({200: "One page of the plan"}, 400, 403, 404))
def get_plan(
    migration_id: MigrationId,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
    next_token: NextToken = None,
) -> PlanPage:
    caller()
    return migrations().plan(migration_id, limit, next_token)


@app.post("/migrations/<migration_id>/approve", summary="Approve a migration waiting for approval",
          operation_id="approveMigration", tags=["decisions"],
          responses=responses({200: "Approved; the rollout continues"}, 400, 403, 404, 409, decision=True))
def approve(migration_id: MigrationId, body: Annotated[Decision | None, Body()] = None) -> DecisionResult:
    return _decide(migration_id, True, body.reason if body else None)


@app.post("/migrations/<migration_id>/reject", summary="Reject a migration waiting for approval (a reason is required)",
          operation_id="rejectMigration", tags=["decisions"],
          responses=responses({200: "Rejected; nothing is changed"}, 400, 403, 404, 409, decision=True))
def reject(migration_id: MigrationId, body: Annotated[Rejection, Body()]) -> DecisionResult:
    return _decide(migration_id, False, body.reason)


def _decide(migration_id: str, approved: bool, reason: str | None) -> DecisionResult:
    principal = caller()
    result = migrations().decide(migration_id, approved, principal=principal, reason=reason)
    logger.info("approval decided", extra={"migration_id": migration_id, "approved": approved, "principal": principal})
    return result


@app.post("/migrations/<migration_id>/retention",
          summary="Keep a completed migration's stopped originals longer, or retire them now (days: 0)",
          operation_id="setRetention", tags=["migrations"],
          responses=responses({200: "The new retention"}, 400, 403, 404, 409))
def set_retention(migration_id: MigrationId, body: Annotated[RetentionChange, Body()]) -> Retention:
    principal = caller()
    retention = migrations().set_retention(migration_id, body)
    logger.info("retention changed", extra={"migration_id": migration_id, "until": retention.until,
                                            "principal": principal})
    return retention


@app.post("/migrations/<migration_id>/revert",
          summary="Move a completed migration's instances (all, or those named) back to on-demand, in a migration "
                  "of their own (waves, gates, approval)",
          operation_id="revertMigration", tags=["migrations"],
          responses=responses({201: "Started", 200: "Already started by the same request with this id"},
                              400, 403, 404, 409))
def revert_migration(migration_id: MigrationId,
                     body: Annotated[RevertMigration | None, Body()] = None) -> Response[Started]:
    principal = caller()
    started = migrations().revert(migration_id, body or RevertMigration())
    logger.info("revert started" if started.created else "revert already started",
                extra={"migration_id": started.migration_id, "reverts": migration_id, "principal": principal})
    return _started(started)


# --- errors -------------------------------------------------------------------------------
ErrorResponse = Response[dict[str, Any]]

def _error(status: int, message: str, errors: list[FieldError] | None = None) -> ErrorResponse:
    body = ErrorBody(message=message, errors=errors).model_dump(exclude_none=True)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _field_error(error: dict[str, Any]) -> FieldError:
    # Only the location and pydantic's message: never the input value.
    if error["type"] == "json_invalid":  # its loc ends in the character offset
        return FieldError(field="body", message="not valid JSON")
    if tuple(error["loc"]) == ("body",) and error["type"] == "missing":  # no body (or null)
        return FieldError(field="body", message="must be a JSON object")
    return FieldError(field=".".join(str(p) for p in error["loc"]), message=error.get("msg") or error["type"])


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> ErrorResponse:
    if any(e["loc"][:1] == ("response",) for e in exc.errors()):
        # Powertools raises the same error when a response does not match its model: our bug, not the caller's.
        logger.error("response does not match its model", extra={"errors": [e["type"] for e in exc.errors()]})
        return _error(500, "internal error")
    errors = [_field_error(e) for e in exc.errors()]
    return _error(400, "invalid request: " + "; ".join(f"{e.field}: {e.message}" for e in errors), errors)


@app.exception_handler(InvalidMigrationRequest)
def _bad_request(exc: InvalidMigrationRequest) -> ErrorResponse:
    return _error(400, str(exc))


@app.exception_handler(MigrationNotFound)
def _not_found(exc: MigrationNotFound) -> ErrorResponse:
    return _error(404, str(exc))


@app.exception_handler(MigrationConflict)
def _conflict(exc: MigrationConflict) -> ErrorResponse:
    return _error(409, str(exc))


@app.exception_handler(ApprovalNotPending)
def _not_pending(exc: ApprovalNotPending) -> ErrorResponse:
    """409, and whether the same decision can be sent again later (Retry-After)."""
    state = exc.state if isinstance(exc, NotAwaitingApproval) else None
    retry = state is not None and state.retry
    body = DecisionConflict(message=str(exc), status=state.status if state else None, retry=retry)
    return Response(status_code=409, content_type=content_types.APPLICATION_JSON,
                    body=body.model_dump(exclude_none=True),
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)} if retry else None)


@app.exception_handler(ServiceError)
def _service_error(exc: ServiceError) -> ErrorResponse:  # unknown route (404), no identity (403)
    return _error(exc.status_code, exc.msg if isinstance(exc.msg, str) else "request refused")


@app.exception_handler(TransientAwsError)
def _unavailable(exc: TransientAwsError) -> ErrorResponse:
    logger.warning("transient AWS error", extra={"error": type(exc.__cause__ or exc).__name__})
    return _error(503, "temporarily unavailable; retry with backoff")


@app.exception_handler(Exception)
def _internal(exc: Exception) -> ErrorResponse:
    logger.exception("unhandled error")
    return _error(500, "internal error")


def openapi_json() -> str:
    """The OpenAPI document of this API, as written to docs/openapi.json."""
    return app.get_openapi_json_schema(**OPENAPI)
