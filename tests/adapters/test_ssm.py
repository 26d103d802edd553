"""The SSM probes adapter on moto: the SendCommand it builds, SSM's statuses read as probe results,
a refusal typed, and the command's text (it may carry a token) never logged.

moto answers every invocation Success at once; the embedded runtime's health simulator
(spotctl/local/health.py), installed on a clock the test moves, gives the other answers."""

from __future__ import annotations

import logging

import boto3
import pytest
from botocore.stub import Stubber

from spot_core.adapters.ssm import COMMENT, DELIVERY_TIMEOUT_SECONDS, DOCUMENT, SsmProbes, to_result
from spot_core.domain.errors import ProbeRefused, TransientAwsError
from spot_core.domain.health import HealthProbe
from spotctl.local.health import HealthSimulator

SECRET = "tok-7f3a9c"
PROBE = HealthProbe(command=f"curl -fsS 'localhost:8080/health?token={SECRET}'", timeout_seconds=45)


@pytest.fixture
def ssm(moto):
    return boto3.client("ssm", region_name="us-east-1")


@pytest.fixture
def ec2(moto):
    return boto3.client("ec2", region_name="us-east-1")


@pytest.fixture
def now():
    return [0.0]


@pytest.fixture
def health(moto, now):
    simulator = HealthSimulator(clock=lambda: now[0], status_check_seconds=60, probe_seconds=5)
    simulator.install()
    yield simulator
    simulator.uninstall()


def launch(ec2, instance_type: str = "m5.large", count: int = 1) -> list[str]:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    reservation = ec2.run_instances(ImageId=image, InstanceType=instance_type, MinCount=count, MaxCount=count)
    return [i["InstanceId"] for i in reservation["Instances"]]


def recorded(client, operation: str) -> list[dict]:
    requests: list[dict] = []
    client.meta.events.register(f"before-parameter-build.ssm.{operation}",
                                lambda params, **_: requests.append(dict(params)))
    return requests


# --- SendCommand -------------------------------------------------------------------------------
def test_send_runs_the_probe_as_a_shell_script_with_its_timeout_and_returns_the_command_id(ssm):
    requests = recorded(ssm, "SendCommand")
    command_id = SsmProbes(ssm).send("i-0123456789abcdef0", PROBE)
    assert requests == [{
        "DocumentName": "AWS-RunShellScript", "InstanceIds": ["i-0123456789abcdef0"],
        "Parameters": {"commands": [PROBE.command], "executionTimeout": ["45"]},
        "TimeoutSeconds": 30, "Comment": "spot-migration health probe",
    }]
    assert (DOCUMENT, DELIVERY_TIMEOUT_SECONDS, COMMENT) == ("AWS-RunShellScript", 30, "spot-migration health probe")
    assert [c["CommandId"] for c in ssm.list_commands()["Commands"]] == [command_id]


def test_an_instance_ssm_does_not_manage_is_a_typed_refusal_with_the_reason(ec2, ssm, health):
    instance = launch(ec2)[0]
    ec2.stop_instances(InstanceIds=[instance])
    with pytest.raises(ProbeRefused) as refused:
        SsmProbes(ssm).send(instance, PROBE)
    assert refused.value.instance_id == instance and refused.value.code == "InvalidInstanceId"
    assert "not an SSM managed instance" in str(refused.value) and instance in str(refused.value)
    assert SECRET not in str(refused.value)


def test_a_throttled_call_is_transient():
    ssm = boto3.client("ssm", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(ssm) as stub:
        stub.add_client_error("send_command", "ThrottlingException", http_status_code=400)
        stub.add_client_error("get_command_invocation", "InternalServerError", http_status_code=500)
        with pytest.raises(TransientAwsError):
            SsmProbes(ssm).send("i-1", PROBE)
        with pytest.raises(TransientAwsError):
            SsmProbes(ssm).results({"i-1": "00000000-0000-0000-0000-000000000001"})


# --- GetCommandInvocation ----------------------------------------------------------------------
@pytest.mark.parametrize(("invocation", "state", "detail"), [
    ({"Status": "Pending", "StatusDetails": "Pending", "ResponseCode": -1}, "pending", ""),
    ({"Status": "InProgress", "StatusDetails": "InProgress", "ResponseCode": -1}, "pending", ""),
    ({"Status": "Delayed", "StatusDetails": "Delayed", "ResponseCode": -1}, "pending", ""),
    ({"Status": "Success", "StatusDetails": "Success", "ResponseCode": 0}, "success", ""),
    ({"Status": "Failed", "StatusDetails": "Failed", "ResponseCode": 1}, "failed", "Failed (exit 1)"),
    ({"Status": "TimedOut", "StatusDetails": "ExecutionTimedOut", "ResponseCode": -1}, "failed",
     "TimedOut: ExecutionTimedOut"),
    ({"Status": "TimedOut", "StatusDetails": "DeliveryTimedOut", "ResponseCode": -1}, "failed",
     "TimedOut: DeliveryTimedOut"),
    ({"Status": "Failed", "StatusDetails": "Undeliverable", "ResponseCode": -1}, "failed", "Failed: Undeliverable"),
    ({"Status": "Cancelled", "StatusDetails": "Cancelled", "ResponseCode": -1}, "failed", "Cancelled"),
    ({"Status": "Cancelling", "StatusDetails": "Cancelling", "ResponseCode": -1}, "failed", "Cancelling"),
    ({"Status": "Failed", "StatusDetails": "Terminated", "ResponseCode": -1}, "failed", "Failed: Terminated"),
])
def test_each_ssm_status_is_a_probe_state_and_a_failure_says_status_and_exit_code(invocation, state, detail):
    answer = {**invocation, "StandardOutputContent": f"token={SECRET}", "StandardErrorContent": f"err {SECRET}"}
    result = to_result(answer)
    assert (result.state, result.detail) == (state, detail)


def test_results_on_moto_success_and_an_invocation_not_yet_visible_is_pending(ssm):
    probes = SsmProbes(ssm)
    command_id = probes.send("i-0aaaaaaaaaaaaaaaa", PROBE)
    # SSM is eventually consistent: right after SendCommand, GetCommandInvocation may say
    # InvocationDoesNotExist (here: an instance the command was not sent to)
    results = probes.results({"i-0aaaaaaaaaaaaaaaa": command_id, "i-0bbbbbbbbbbbbbbbb": command_id})
    assert {i: r.state for i, r in results.items()} == {"i-0aaaaaaaaaaaaaaaa": "success",
                                                        "i-0bbbbbbbbbbbbbbbb": "pending"}


def test_results_of_many_instances_read_each_invocation_once(ec2, ssm, health, now):
    instances = launch(ec2, count=3)
    health.fail_probes(instance_ids=[instances[1]])
    health.time_out_probes(instance_ids=[instances[2]])
    probes = SsmProbes(ssm)
    commands = {i: probes.send(i, PROBE) for i in instances}
    calls = recorded(ssm, "GetCommandInvocation")
    assert {r.state for r in probes.results(commands).values()} == {"pending"}
    now[0] = 6.0
    results = probes.results(commands)
    assert {i: (r.state, r.detail) for i, r in results.items()} == {
        instances[0]: ("success", ""), instances[1]: ("failed", "Failed (exit 1)"), instances[2]: ("pending", "")}
    now[0] = 46.0  # the probe's execution timeout
    assert probes.results(commands)[instances[2]].detail == "TimedOut: ExecutionTimedOut"
    assert len(calls) == 9 and {(c["InstanceId"], c["CommandId"]) for c in calls} == set(commands.items())


def test_the_command_text_and_its_output_never_reach_a_log_record_or_a_result(ec2, ssm, health, now, caplog):
    caplog.set_level(logging.DEBUG, logger="spot_core")
    caplog.set_level(logging.INFO)
    instance = launch(ec2)[0]
    health.fail_probes(command_contains="health")
    probes = SsmProbes(ssm)
    command_id = probes.send(instance, PROBE)
    now[0] = 10.0
    result = probes.results({instance: command_id})[instance]
    assert result.state == "failed" and "simulated probe failure" not in result.detail
    assert any(r.getMessage() == "health probe sent" for r in caplog.records)
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert all(SECRET not in str(value) for value in vars(record).values())
