"""boto3 clients with adaptive retries, and the translation of transient AWS errors.

Adaptive retry mode rate-limits the client itself when EC2 or CloudWatch throttle, so
large fleets and event storms stay within API limits instead of failing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from ..domain.errors import TransientAwsError

CLIENT_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 10}, connect_timeout=5, read_timeout=30)

TRANSIENT_CODES = {
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "RequestThrottled", "InternalError", "InternalFailure",
    "ServiceUnavailable", "Unavailable", "TransactionInProgressException",
}


# For calls whose caller paces itself (the wave engine's launches): a throttle is its answer at once.
NO_RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5, read_timeout=30)


def client(service: str, region: str | None = None, retries: bool = True) -> Any:
    """A client of `service`; the adapter that takes it declares its type (mypy_boto3_*)."""
    factory: Any = boto3.client  # one factory for every service name, not one overload each
    return factory(service, region_name=region, config=CLIENT_CONFIG if retries else NO_RETRY_CONFIG)


def table(name: str, region: str | None = None) -> Any:
    return boto3.resource("dynamodb", region_name=region, config=CLIENT_CONFIG).Table(name)


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
