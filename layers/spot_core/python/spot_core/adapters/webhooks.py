"""Interruption webhooks (the Webhooks port): the URL is read from Secrets Manager or SSM
Parameter Store (SecureString) by the name the hooks give (domain/hooks.py), then one POST of
JSON with a short timeout, no retry, no redirect followed (a redirect could leave https).

The URL is a secret: it is never logged, never put into a result, an exception or a metric.
Every failure is told by what cannot carry it: the AWS error code, the HTTP status, the
exception's class name.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from ..domain.caching import TtlCache
from ..domain.hooks import HookResult, HookStatus, webhook_reference, webhook_url_problem
from .aws import error_code

logger = logging.getLogger(__name__)

SECRET_SECONDS = 60.0  # a warm environment reads a secret once a minute (a storm of warnings: once)
NOT_FOUND = frozenset({"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"})
USER_AGENT = "spot-migration-interruption-hook"


class WebhookUnavailable(Exception):
    """The URL could not be had; the message is safe to record (never the URL)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is the answer: an HTTPError, a failed call


Opener = Callable[..., Any]  # urllib's OpenerDirector.open: (request, timeout=) -> response


class SecretWebhooks:
    def __init__(self, secretsmanager: Any, ssm: Any, opener: Opener | None = None):
        self.secretsmanager, self.ssm = secretsmanager, ssm
        self.open = opener or urllib.request.build_opener(_NoRedirect).open
        self._urls: TtlCache[str, str] = TtlCache(SECRET_SECONDS)

    def call(self, reference: str, payload: Mapping[str, Any], timeout_seconds: float) -> HookResult:
        try:
            url = self._urls.get(reference, lambda: self._read(reference))
        except WebhookUnavailable as why:
            return _result("failed", str(why))
        problem = webhook_url_problem(url)
        if problem is not None:
            return _result("failed", problem)
        return self._post(url, payload, timeout_seconds)

    def _read(self, reference: str) -> str:
        try:
            store, name = webhook_reference(reference)
        except ValueError as exc:
            raise WebhookUnavailable(f"webhook reference refused: {exc}") from None
        try:
            if store == "secretsmanager":
                return _url_in(self.secretsmanager.get_secret_value(SecretId=name).get("SecretString") or "")
            return str(self.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
        except ClientError as exc:
            code = error_code(exc) or "ClientError"
            why = "secret not found" if code in NOT_FOUND else "secret unreadable"
            raise WebhookUnavailable(f"{why} ({code})") from None
        except Exception as exc:  # noqa: BLE001 - endpoint unreachable, ...: its class says enough
            raise WebhookUnavailable(f"secret unreadable ({type(exc).__name__})") from None

    def _post(self, url: str, payload: Mapping[str, Any], timeout_seconds: float) -> HookResult:
        request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
        try:
            with self.open(request, timeout=timeout_seconds) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            return _result("failed", f"HTTP {exc.code}")
        except TimeoutError:
            return _result("timed_out", f"no answer within {timeout_seconds:g} s")
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return _result("timed_out", f"no answer within {timeout_seconds:g} s")
            return _result("failed", f"unreachable ({type(exc.reason).__name__})")
        except Exception as exc:  # noqa: BLE001 - a broken connection: its class says enough
            return _result("failed", f"call failed ({type(exc).__name__})")
        return _result("succeeded" if 200 <= status < 300 else "failed", f"HTTP {status}")


def _url_in(secret: str) -> str:
    """A secret holds the URL, or a JSON object with it under "url"."""
    text = secret.strip()
    if not text.startswith("{"):
        return text
    try:
        value = json.loads(text).get("url")
    except (ValueError, AttributeError):
        raise WebhookUnavailable("the secret is neither a URL nor a JSON object with \"url\"") from None
    if not isinstance(value, str):
        raise WebhookUnavailable("the secret's JSON object has no \"url\" string")
    return value


def _result(status: HookStatus, detail: str) -> HookResult:
    logger.info("interruption webhook called", extra={"status": status, "detail": detail})
    return HookResult(hook="webhook", status=status, detail=detail)
