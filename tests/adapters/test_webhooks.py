"""The webhooks adapter on moto (Secrets Manager, SSM Parameter Store) and the local receiver
(spotctl/local/webhooks.py): the URL read from its secret, one POST of JSON, every failure a
result (never an exception), and the URL in no log record and no result."""

from __future__ import annotations

import json
import logging
import socket

import boto3
import pytest

from spot_core.adapters.webhooks import SecretWebhooks
from spotctl.local.webhooks import WebhookReceiver

PAYLOAD = {"source": "spot-migration", "event": {"kind": "interruption", "id": "e-1"}, "instance": {"id": "i-1"}}


@pytest.fixture
def clients(moto):
    return boto3.client("secretsmanager", region_name="us-east-1"), boto3.client("ssm", region_name="us-east-1")


@pytest.fixture
def receiver():
    with WebhookReceiver() as running:
        yield running


def webhooks(clients) -> SecretWebhooks:
    return SecretWebhooks(*clients)


def keep(clients, url: str, kind: str = "secret") -> str:
    """The URL kept the way the owner would; the reference the tags or the request give."""
    secrets, ssm = clients
    if kind == "parameter":
        ssm.put_parameter(Name="/spot-migration/web", Value=url, Type="SecureString")
        return "ssm:/spot-migration/web"
    value = json.dumps({"url": url}) if kind == "json" else url
    arn = secrets.create_secret(Name="spot-migration/web", SecretString=value)["ARN"]
    return f"secretsmanager:{arn}" if kind == "arn" else "secretsmanager:spot-migration/web"


@pytest.mark.parametrize("kind", ["secret", "arn", "json", "parameter"])
def test_the_url_kept_in_a_secret_or_a_parameter_receives_one_post_of_json(clients, receiver, kind):
    reference = keep(clients, receiver.url("/hooks/t0k3n"), kind)

    result = webhooks(clients).call(reference, PAYLOAD, 2)

    assert (result.hook, result.status, result.detail) == ("webhook", "succeeded", "HTTP 204")
    [call] = receiver.calls
    assert call.path == "/hooks/t0k3n" and call.body == PAYLOAD
    assert call.headers["Content-Type"] == "application/json"


def test_a_missing_secret_or_parameter_is_a_failed_result(clients):
    assert webhooks(clients).call("secretsmanager:spot-migration/none", PAYLOAD, 2).detail == \
        "secret not found (ResourceNotFoundException)"
    assert webhooks(clients).call("ssm:/spot-migration/none", PAYLOAD, 2).detail == \
        "secret not found (ParameterNotFound)"


@pytest.mark.parametrize(("status", "delay", "expected"), [
    (500, 0.0, ("failed", "HTTP 500")),
    (302, 0.0, ("failed", "HTTP 302")),  # a redirect is not followed (it could leave https)
    (204, 1.5, ("timed_out", "no answer within 0.5 s")),
])
def test_an_error_a_redirect_or_no_answer_is_a_result_after_one_attempt(clients, receiver, status, delay, expected):
    receiver.status, receiver.delay = status, delay
    reference = keep(clients, receiver.url())

    result = webhooks(clients).call(reference, PAYLOAD, 0.5)

    assert (result.status, result.detail) == expected and len(receiver.calls) == 1


def test_nothing_listening_is_a_failed_result(clients):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    reference = keep(clients, f"http://127.0.0.1:{port}/hook")
    assert webhooks(clients).call(reference, PAYLOAD, 1).detail == "unreachable (ConnectionRefusedError)"


@pytest.mark.parametrize("url", ["http://hooks.example.com/t0k3n", "ftp://hooks.example.com/t0k3n", "not a url"])
def test_a_url_that_is_not_https_is_refused_without_a_call(clients, url):
    result = webhooks(clients).call(keep(clients, url), PAYLOAD, 1)
    assert result.status == "failed" and "t0k3n" not in result.model_dump_json()


def test_the_url_is_in_no_log_record_and_no_result(clients, receiver, caplog):
    caplog.set_level(logging.DEBUG, logger="spot_core")
    caplog.set_level(logging.INFO)
    receiver.status = 503
    url = receiver.url("/hooks/t0k3n-s3cr3t")
    results = [webhooks(clients).call(keep(clients, url), PAYLOAD, 1),
               webhooks(clients).call("secretsmanager:spot-migration/none", PAYLOAD, 1)]

    assert any(r.getMessage() == "interruption webhook called" for r in caplog.records)
    for record in caplog.records:
        assert "t0k3n" not in record.getMessage() and all("t0k3n" not in str(v) for v in vars(record).values())
    assert all("t0k3n" not in r.model_dump_json() for r in results)
