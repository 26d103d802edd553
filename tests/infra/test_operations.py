"""Operating the stack: alarms (and that they watch exactly what the handlers emit), the
dashboard, failure destinations, the end-of-execution rule, log encryption, the
replacer_concurrency context, and cfn-lint on the synthesised template."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template
from cfnlint.api import ManualArgs, lint
from template_helpers import flatten, listify, logical_id, of_type

from infra import FUNCTIONS_DIR
from infra.stack import SpotMigrationStack
from spot_core.domain.orphans import Orphan, SweepReport
from spot_core.domain.outcomes import OUTCOMES, FinalOutcome
from spot_core.entry.catalog import METRICS_NAMESPACE, SERVICE_NAME
from spot_core.entry.event_rules import UNFINISHED_END_STATUSES
from spot_core.services.retention import RetentionReport

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]  # those of the bundled price catalog
IGNORED_CHECKS = ["W3005"]  # CDK's own DependsOn next to a GetAtt/Ref it also writes


@pytest.fixture(scope="session")
def alarms(resources) -> dict[str, dict]:
    """Alarm name without the stack prefix -> properties."""
    out = {}
    for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        prefix, _, name = props["AlarmName"].partition("-")
        assert prefix == "SpotMigration"
        out[name] = props
    return out


def dimensions(props: dict) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}


# --- alarms ------------------------------------------------------------------------------

EXPECTED_ALARMS = {
    "DeadLetters", "ReplaceInterruptedErrors", "SweepOrphansErrors", "ReturnFallbacksErrors", "EndExecutionErrors",
    "ExecutionsTimedOut", "ExecutionsAborted", "RollbackFailed", "OrphansFound",
}


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_clears(stack, alarms):
    assert set(alarms) == EXPECTED_ALARMS
    topic = {"Ref": logical_id(stack, stack.storage.topic)}
    for name, props in alarms.items():
        assert props["AlarmActions"] == [topic] and props["OKActions"] == [topic], name
        assert props["ComparisonOperator"] == "GreaterThanThreshold" and props["Threshold"] == 0, name
        assert props["EvaluationPeriods"] == 1, name
        # each metric only has data when something happened
        assert props["TreatMissingData"] == "notBreaching", name
        assert props["AlarmDescription"], name


def test_dead_letter_alarm_watches_the_queue_depth(stack, alarms):
    props = alarms["DeadLetters"]
    assert (props["Namespace"], props["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert props["Statistic"] == "Maximum"
    assert dimensions(props) == {
        "QueueName": {"Fn::GetAtt": [logical_id(stack, stack.interruptions.dead_letters), "QueueName"]}}


@pytest.mark.parametrize("function", ["replace_interrupted", "sweep_orphans", "return_fallbacks", "end_execution"])
def test_function_error_alarms(function, stack, alarms):
    stem = "".join(p.capitalize() for p in function.split("_"))
    props = alarms[f"{stem}Errors"]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert dimensions(props) == {"FunctionName": {"Ref": logical_id(stack, stack.functions.functions[function])}}


@pytest.mark.parametrize("name, metric", [("ExecutionsTimedOut", "ExecutionsTimedOut"),
                                          ("ExecutionsAborted", "ExecutionsAborted")])
def test_execution_alarms(name, metric, stack, alarms):
    props = alarms[name]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("AWS/States", metric, "Sum")
    assert dimensions(props) == {"StateMachineArn": {"Ref": logical_id(stack, stack.workflow.state_machine)}}


def load_handler(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"ops_test_{name}", FUNCTIONS_DIR / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def emitted_metrics(name: str, event: dict, service: SimpleNamespace, monkeypatch) -> dict[str, dict[str, Any]]:
    """Run functions/<name>/app.py with ``service`` behind its wiring; the EMF it prints:
    metric name -> (namespace, its dimensions and their values)."""
    module = load_handler(name)
    monkeypatch.setattr(module, "wiring", lambda: service)
    context = SimpleNamespace(function_name=name, function_version="$LATEST", memory_limit_in_mb=512,
                              invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
                              aws_request_id="req-1", get_remaining_time_in_millis=lambda: 60_000)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        module.lambda_handler(event, context)
    found = {}
    for line in out.getvalue().splitlines():
        blob = json.loads(line) if line.startswith("{") else {}
        for directive in blob.get("_aws", {}).get("CloudWatchMetrics", []):
            for dimension_set in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    found[metric["Name"]] = {"Namespace": directive["Namespace"],
                                             **{d: blob[d] for d in dimension_set}}
    return found


def test_rollback_failed_alarm_watches_the_metric_finalize_emits(alarms, monkeypatch):
    finalize = SimpleNamespace(finish=lambda mid, outcome, detail: FinalOutcome(status=outcome))
    emitted = emitted_metrics("finalize", {"migration_id": "m-1", "outcome": "rollback_failed"},
                              SimpleNamespace(finalize=finalize), monkeypatch)
    props = alarms["RollbackFailed"]
    assert (props["MetricName"], props["Statistic"]) == ("Migrations", "Sum")
    assert emitted["Migrations"] == {"Namespace": props["Namespace"], **dimensions(props)}
    assert dimensions(props) == {"service": SERVICE_NAME, "Outcome": "rollback_failed"}


def test_orphans_alarm_watches_the_metric_the_sweeper_emits(alarms, monkeypatch):
    report = SweepReport(mode="report", managed=2, orphans=[
        Orphan(instance_id="i-0abc", instance_type="m5.large", launched="2026-11-22T10:00:00+00:00",
               registry="unknown")])
    services = SimpleNamespace(sweeper=SimpleNamespace(sweep=lambda: report),
                               retention=SimpleNamespace(run=RetentionReport))
    emitted = emitted_metrics("sweep_orphans", {}, services, monkeypatch)
    props = alarms["OrphansFound"]
    assert (props["MetricName"], props["Statistic"], props["Period"]) == ("OrphansFound", "Maximum", 3600)
    assert emitted["OrphansFound"] == {"Namespace": props["Namespace"], **dimensions(props)}
    assert props["Namespace"] == METRICS_NAMESPACE


def test_alarms_can_publish_to_the_encrypted_topic(stack, resources):
    (policy,) = of_type(resources, "AWS::SNS::TopicPolicy").values()
    [allow] = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
               if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert allow["Action"] == "sns:Publish"
    assert flatten(allow["Condition"]["ArnLike"]["aws:SourceArn"]) == (
        "arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:*")
    key = resources[logical_id(stack, stack.storage.topic_key)]["Properties"]["KeyPolicy"]["Statement"]
    [use] = [s for s in key if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert sorted(use["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert flatten(use["Condition"]["ArnLike"]["kms:EncryptionContext:aws:sns:topicArn"]) == (
        "arn:<AWS::Partition>:sns:<AWS::Region>:<AWS::AccountId>:*")


# --- dashboard ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def dashboard(stack, resources) -> str:
    (board,) = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    assert board["Properties"]["DashboardName"] == "SpotMigration-operations"
    body = board["Properties"]["DashboardBody"]
    # references to resources become text (``<Logical.Attr>``) inside the JSON strings
    return "".join(p if isinstance(p, str) else flatten(p) for p in body["Fn::Join"][1])


def test_dashboard_widgets(dashboard):
    titles = {w["properties"].get("title") for w in json.loads(dashboard)["widgets"]}
    assert titles >= {"Alarms", "Migrations by outcome", "Executions", "Instances migrated and rolled back",
                      "Realised savings (USD per month, completed migrations)", "Interruptions and replacements",
                      "Event to launch (seconds)", "Dead-letter queue depth", "Orphans found per sweep",
                      "Function errors"}


def widget(dashboard: str, title: str) -> dict:
    [found] = [w["properties"] for w in json.loads(dashboard)["widgets"] if w["properties"].get("title") == title]
    return found


def test_dashboard_metrics(dashboard, stack):
    def names(title: str) -> list[list]:
        return widget(dashboard, title)["metrics"]

    service = ["service", SERVICE_NAME]
    outcomes = names("Migrations by outcome")
    assert [m[:2] for m in outcomes] == [[METRICS_NAMESPACE, "Migrations"]] * len(OUTCOMES)
    assert {tuple(m[2:6]) for m in outcomes} == {("Outcome", o, *service) for o in OUTCOMES}
    executions = {m[1] for m in names("Executions")}
    assert executions == {"ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut",
                          "ExecutionsAborted"}
    assert {m[1] for m in names("Instances migrated and rolled back")} == {
        "InstancesMigrated", "InstancesRestored", "MigrationsRolledBack"}
    assert [m[1:6] for m in names("Realised savings (USD per month, completed migrations)")] == [
        ["MonthlySavings", "Outcome", "completed", *service]]
    assert {m[1] for m in names("Interruptions and replacements")} == {
        "InterruptionEvents", "RebalanceEvents", "ReplacementsLaunched", "OnDemandFallbacks", "EventsIgnored"}
    latency = names("Event to launch (seconds)")
    assert {m[1] for m in latency} == {"EventToLaunchSeconds"}
    assert {m[-1]["stat"] for m in latency} == {"p50", "p90", "Maximum"}
    assert [m[1] for m in names("Dead-letter queue depth")] == ["ApproximateNumberOfMessagesVisible"]
    errors = names("Function errors")
    assert {m[1] for m in errors} == {"Errors"} and len(errors) == len(stack.functions.functions)
    alarms = widget(dashboard, "Alarms")["alarms"]
    assert len(alarms) == len(EXPECTED_ALARMS)


# --- failure destinations and the end-of-execution rule ------------------------------------

def invoke_config(stack, resources, function: str) -> dict:
    fn = {"Ref": logical_id(stack, stack.functions.functions[function])}
    [config] = [c["Properties"] for c in of_type(resources, "AWS::Lambda::EventInvokeConfig").values()
                if c["Properties"]["FunctionName"] == fn]
    return config


@pytest.mark.parametrize("function", ["sweep_orphans", "return_fallbacks", "end_execution"])  # not a queue consumer
def test_failed_invocations_are_retried_then_kept_in_the_dead_letter_queue(function, stack, resources,
                                                                            statements_by_role):
    config = invoke_config(stack, resources, function)
    dlq = logical_id(stack, stack.interruptions.dead_letters)
    assert config["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [dlq, "Arn"]}}}
    assert config["MaximumRetryAttempts"] == 2 and config["MaximumEventAgeInSeconds"] == 3600
    # only what sending to the encrypted queue needs
    own = statements_by_role[logical_id(stack, stack.functions.functions[function].role)]
    sqs = [s for s in own if any(a.startswith("sqs:") for a in listify(s["Action"]))]
    assert sqs == [{"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": {"Fn::GetAtt": [dlq, "Arn"]}}]
    key = {"Fn::GetAtt": [logical_id(stack, stack.interruptions.key), "Arn"]}
    assert [sorted(listify(s["Action"])) for s in own if s["Resource"] == key] == [["kms:Decrypt",
                                                                                    "kms:GenerateDataKey"]]


def test_the_replacement_function_consumes_its_queue_and_sends_only_to_the_dead_letter_queue(stack,
                                                                                            statements_by_role):
    own = statements_by_role[logical_id(stack, stack.functions.functions["replace_interrupted"].role)]
    queue = {"Fn::GetAtt": [logical_id(stack, stack.interruptions.queue), "Arn"]}
    dlq = {"Fn::GetAtt": [logical_id(stack, stack.interruptions.dead_letters), "Arn"]}
    sqs = {(a, json.dumps(s["Resource"])) for s in own for a in listify(s["Action"]) if a.startswith("sqs:")}
    assert sqs == {("sqs:SendMessage", json.dumps(dlq))} | {
        (a, json.dumps(queue)) for a in ("sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl",
                                         "sqs:DeleteMessage", "sqs:GetQueueAttributes")}
    key = {"Fn::GetAtt": [logical_id(stack, stack.interruptions.key), "Arn"]}
    assert {a for s in own if s["Resource"] == key for a in listify(s["Action"])} == {"kms:Decrypt",
                                                                                       "kms:GenerateDataKey"}


def test_sweeper_schedule_target_retries_into_the_dead_letter_queue(stack, resources):
    sweeper = {"Fn::GetAtt": [logical_id(stack, stack.functions.functions["sweep_orphans"]), "Arn"]}
    [target] = [t for r in of_type(resources, "AWS::Events::Rule").values() for t in r["Properties"]["Targets"]
                if t["Arn"] == sweeper]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    assert target["DeadLetterConfig"]["Arn"] == {
        "Fn::GetAtt": [logical_id(stack, stack.interruptions.dead_letters), "Arn"]}


def test_end_execution_rule(stack, resources):
    machine = {"Ref": logical_id(stack, stack.workflow.state_machine)}
    ender = {"Fn::GetAtt": [logical_id(stack, stack.functions.functions["end_execution"]), "Arn"]}
    [rule] = [r["Properties"] for r in of_type(resources, "AWS::Events::Rule").values()
              if r["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]
              and r["Properties"]["EventPattern"]["detail"]["status"] != ["SUCCEEDED"]]
    assert rule["EventPattern"] == {
        "source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": list(UNFINISHED_END_STATUSES), "stateMachineArn": [machine]},
    }
    assert "EventBusName" not in rule  # the default bus, where Step Functions sends its events
    [target] = rule["Targets"]
    assert target["Arn"] == ender
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 8}
    assert target["DeadLetterConfig"]["Arn"] == {
        "Fn::GetAtt": [logical_id(stack, stack.interruptions.dead_letters), "Arn"]}
    [permission] = [p["Properties"] for p in of_type(resources, "AWS::Lambda::Permission").values()
                    if p["Properties"]["FunctionName"] == ender]
    assert permission["Principal"] == "events.amazonaws.com"


def test_end_execution_role_follows_its_catalog_permissions(stack, statements_by_role):
    own = statements_by_role[logical_id(stack, stack.functions.functions["end_execution"].role)]
    services = {a.split(":")[0] for s in own for a in listify(s["Action"])}
    # table:write (dynamodb + its key), sns:publish, logs, tracing, and sending failures to the dead-letter queue
    assert services == {"dynamodb", "kms", "sns", "logs", "xray", "sqs"}
    assert not [a for s in own for a in listify(s["Action"]) if a.startswith(("ec2:", "states:", "iam:"))]


# --- logs --------------------------------------------------------------------------------

def test_every_log_group_is_encrypted_with_the_one_logs_key(stack, resources):
    key = logical_id(stack, stack.log_groups.key)
    groups = of_type(resources, "AWS::Logs::LogGroup")
    assert groups
    for name, group in groups.items():
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key, "Arn"]}, name
        assert group["Properties"]["RetentionInDays"] == 30, name
    props = resources[key]["Properties"]
    assert props["EnableKeyRotation"] is True and resources[key]["DeletionPolicy"] == "Retain"
    [logs] = [s for s in props["KeyPolicy"]["Statement"]
              if flatten(s.get("Principal", {}).get("Service", "")) == "logs.<AWS::Region>.amazonaws.com"]
    assert flatten(logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]) == (
        "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:*")
    assert len(of_type(resources, "AWS::KMS::Key")) == 4  # table, topic, dead-letter queue, logs


# --- context: replacer_concurrency ---------------------------------------------------------

def reserved_concurrency(context: dict, tmp_path: Path) -> int | None:
    stack = SpotMigrationStack(App(context=context, outdir=str(tmp_path)))
    replacer = Template.from_stack(stack).to_json()["Resources"][
        logical_id(stack, stack.functions.functions["replace_interrupted"])]
    return replacer["Properties"].get("ReservedConcurrentExecutions")


@pytest.mark.parametrize("value, expected", [(0, None), ("5", 5)])  # cdk.json: a number; -c: a string
def test_replacer_concurrency(value, expected, tmp_path):
    assert reserved_concurrency({"replacer_concurrency": value}, tmp_path) == expected


@pytest.mark.parametrize("value", [-1, "-1", "2.5", 2.5, "twenty", True, ""])
def test_bad_replacer_concurrency_fails_synthesis(value, tmp_path):
    with pytest.raises(ValueError, match="replacer_concurrency"):
        SpotMigrationStack(App(context={"replacer_concurrency": value}, outdir=str(tmp_path)))


# --- cfn-lint ------------------------------------------------------------------------------

def test_cfn_lint_reports_nothing(template_file):
    matches = lint(template_file.read_text(), config=ManualArgs(regions=REGIONS, ignore_checks=IGNORED_CHECKS))
    assert [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches] == []
