"""Interruption hooks end to end on the embedded runtime: the warning through the deployed rules
and the queue into the replacement Lambda, the checkpoint answered by the runtime's SSM
simulation, the webhook's URL read from moto's Secrets Manager and POSTed to a local receiver
(spotctl/local/webhooks.py); the URL in no log line, notification or stored item; every AWS call
of the hooks allowed by the function's role."""

import fnmatch
import json

import pytest
from aws_cdk.assertions import Template

from infra.stack import create_app
from spot_core.domain.hooks import CHECKPOINT_TAG, ON_INTERRUPTION_TAG, WEBHOOK_TAG
from spotctl.local.webhooks import WebhookReceiver

PATH = "/hooks/T000/s3cr3t-t0k3n"
COMMAND = "systemctl kill -s USR1 app"


@pytest.fixture
def receiver():
    with WebhookReceiver() as running:
        yield running


def hook(rt, instance_id: str, receiver: WebhookReceiver, **tags: str) -> None:
    """The owner's tags on the instance, and the webhook's URL kept in Secrets Manager."""
    rt.client("secretsmanager").create_secret(Name="spot-migration/web", SecretString=receiver.url(PATH))
    rt.client("ec2").create_tags(Resources=[instance_id], Tags=[
        {"Key": k, "Value": v} for k, v in {WEBHOOK_TAG: "secretsmanager:spot-migration/web", **tags}.items()])
    rt.health.probe_seconds = 0.0  # the checkpoint ends at once (no real wait)


def stored_items(rt) -> str:
    return json.dumps(rt.client("dynamodb").scan(TableName="spot-migration")["Items"], default=str)


# the warnings are sent now (rt.ec2_event): EC2 takes the instance two minutes after their time
def test_drain_checkpoint_and_webhook_run_are_recorded_and_the_url_appears_nowhere(rt, receiver):
    victim = rt.managed[0]
    hook(rt, victim, receiver, **{ON_INTERRUPTION_TAG: "drain", CHECKPOINT_TAG: COMMAND})
    event = rt.ec2_event(victim)

    [delivery] = rt.put_ec2_event(event)

    result = delivery["result"]
    assert result["action"] == "replaced" and result["on_interruption"] == "drain"
    assert {h["hook"]: h["status"] for h in result["hooks"]} == {
        "drain": "succeeded", "checkpoint": "succeeded", "webhook": "succeeded"}
    assert next(h for h in result["hooks"] if h["hook"] == "checkpoint")["exit_code"] == 0
    [checkpoint] = [c for c in rt.health.commands if c.instance_id == victim]
    assert (checkpoint.document, checkpoint.command) == ("AWS-RunShellScript", COMMAND)
    [call] = receiver.calls
    assert call.path == PATH and call.body["event"]["id"] == event["id"]
    assert call.body["event"]["kind"] == "interruption"
    assert (call.body["instance"]["id"], call.body["replacement"]["id"]) == (victim, result["replacement_id"])
    serving = rt.fleet.snapshot()["serving"]
    assert result["replacement_id"] in serving and victim not in serving
    claim = rt.wiring.claims.replacement_for(victim)
    assert claim["status"] == "swapped" and [h["hook"] for h in claim["hooks"]] == ["drain", "checkpoint", "webhook"]
    assert any("checkpoint succeeded" in (n["message"] or "") for n in rt.notifications())

    logs = "".join(i.logs for i in rt.lambdas.invocations)
    for text in (logs, json.dumps(rt.notifications()), stored_items(rt), json.dumps(result)):
        assert "s3cr3t" not in text and str(receiver.port) not in text
    assert COMMAND not in logs


def test_failing_hooks_never_keep_the_replacement_from_taking_over(rt, receiver):
    victim = rt.managed[1]
    hook(rt, victim, receiver, **{ON_INTERRUPTION_TAG: "checkpoint", CHECKPOINT_TAG: COMMAND})
    rt.health.fail_probes(instance_ids=[victim])
    receiver.status = 500

    [delivery] = rt.put_ec2_event(rt.ec2_event(victim))

    result = delivery["result"]
    assert result["action"] == "replaced"
    assert {h["hook"]: (h["status"], h.get("exit_code"), h["detail"]) for h in result["hooks"]} == {
        "checkpoint": ("failed", 1, "Failed (exit 1)"), "webhook": ("failed", None, "HTTP 500")}
    serving = rt.fleet.snapshot()["serving"]
    assert result["replacement_id"] in serving and victim not in serving
    assert any("webhook failed: HTTP 500" in (n["message"] or "") for n in rt.notifications())


def test_a_missing_secret_is_recorded_and_the_instance_still_replaced(rt):
    victim = rt.managed[2]
    rt.client("ec2").create_tags(Resources=[victim], Tags=[
        {"Key": WEBHOOK_TAG, "Value": "secretsmanager:spot-migration/missing"}])

    [delivery] = rt.put_ec2_event(rt.ec2_event(victim))

    assert delivery["result"]["action"] == "replaced"
    assert delivery["result"]["hooks"] == [{"hook": "webhook", "status": "failed", "seconds": pytest.approx(0, abs=5),
                                            "detail": "secret not found (ResourceNotFoundException)"}]


def test_every_call_the_hooks_make_is_allowed_by_the_replacement_functions_role(rt, receiver, tmp_path):
    victim = rt.managed[0]
    hook(rt, victim, receiver, **{ON_INTERRUPTION_TAG: "checkpoint", CHECKPOINT_TAG: COMMAND})
    rt.put_ec2_event(rt.ec2_event(victim))
    made = {a for fn, a in rt.lambdas.calls if fn == "spot-migration-replace_interrupted"}
    assert {"secretsmanager:GetSecretValue", "ssm:SendCommand", "ssm:GetCommandInvocation"} <= made

    _, stack = create_app(outdir=str(tmp_path / "cdk.out"))
    resources = Template.from_stack(stack).to_json()["Resources"]
    role = resources[stack.resolve(stack.functions.functions["replace_interrupted"].node.default_child.logical_id)][
        "Properties"]["Role"]["Fn::GetAtt"][0]
    allowed = [a for res in resources.values() if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
               and {"Ref": role} in res["Properties"].get("Roles", [])
               for st in res["Properties"]["PolicyDocument"]["Statement"]
               for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]
    assert [a for a in made if not any(fnmatch.fnmatchcase(a.lower(), p.lower()) for p in allowed)] == []
