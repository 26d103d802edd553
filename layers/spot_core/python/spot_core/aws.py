"""boto3 clients with adaptive retries, and the translation of transient AWS errors.

The only module of the domain package that imports boto3. Adaptive retry mode rate-limits
the client itself when EC2 or CloudWatch throttle, so large fleets and event storms stay
within API limits instead of failing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from .errors import TransientAwsError

_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 10}, connect_timeout=5, read_timeout=30)

TRANSIENT_CODES = {
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "RequestThrottled", "InternalError", "InternalFailure",
    "ServiceUnavailable", "Unavailable", "TransactionInProgressException",
}


def client(service: str, region: str | None = None) -> Any:
    return boto3.client(service, region_name=region, config=_CONFIG)


def table(name: str, region: str | None = None) -> Any:
    return boto3.resource("dynamodb", region_name=region, config=_CONFIG).Table(name)


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


@contextlib.contextmanager
def transient_errors() -> Iterator[None]:
    """Re-raise throttling, 5xx and connection errors as TransientAwsError (retried by the
    state machine with backoff); other errors pass through unchanged."""
    try:
        yield
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if error_code(exc) in TRANSIENT_CODES or status >= 500:
            raise TransientAwsError(f"{error_code(exc)}: {exc}") from exc
        raise
    except ParamValidationError:
        raise  # a request the SDK refuses to send: a bug, not something a retry fixes
    except BotoCoreError as exc:
        raise TransientAwsError(str(exc)) from exc


def to_dynamo(value: Any) -> Any:
    """Floats become Decimals (DynamoDB has no float type); None values are dropped."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value
