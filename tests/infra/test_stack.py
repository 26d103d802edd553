"""The CDK stack: resources, wiring to the ASL, least-privilege IAM, and cdk-nag.

Synthesis (jsii) is slow, so the app is synthesised once per session (conftest.py). ``app.synth()``
itself fails if cdk-nag reports an unacknowledged error; the tests below also check
warnings, and that every acknowledgement still matches a real finding.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Annotations, Match, Template
from cdk_nag import AwsSolutionsChecks
from template_helpers import flatten, listify, logical_id, of_type

from infra import OPENAPI_FILE, machine_file
from infra.constructs.functions import SETTINGS_DEFAULTS
from infra.constructs.layers import POWERTOOLS_PARAMETER_ID
from infra.stack import SpotMigrationStack, create_app
from spot_core.domain.retention import STOPPED_BY_TAG
from spot_core.domain.tags import MANAGED_TAG, OPT_IN_TAG
from spot_core.entry.catalog import FUNCTIONS, MACHINE_ARN_VARIABLES, MIGRATION_MACHINE, REHOME_MACHINE, tasks_of

PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
MANAGED = {"StringEquals": {f"aws:ResourceTag/{MANAGED_TAG}": "true"}}
OPTED_IN = {"StringEquals": {f"aws:ResourceTag/{OPT_IN_TAG}": "true"}}
MUTATING_EC2 = {"ec2:RunInstances", "ec2:CreateTags", "ec2:StartInstances", "ec2:StopInstances",
                "ec2:TerminateInstances"}


@pytest.fixture(scope="module")
def statements(statements_by_role) -> list[dict]:
    return [s for group in statements_by_role.values() for s in group]


def with_action(statements: list[dict], action: str) -> list[dict]:
    return [s for s in statements if action in listify(s["Action"])]


# --- Lambda functions ------------------------------------------------------------------

def test_one_function_per_catalog_entry(stack, resources):
    functions = of_type(resources, "AWS::Lambda::Function")
    assert len(functions) == len(FUNCTIONS)
    assert set(stack.functions.functions) == {spec.name for spec in FUNCTIONS}


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.name)
def test_function_configuration(spec, stack, resources):
    fn = resources[logical_id(stack, stack.functions.functions[spec.name])]["Properties"]
    assert fn["Runtime"] == "python3.13"
    assert fn["Architectures"] == ["arm64"]
    assert fn["Handler"] == "app.lambda_handler"
    assert fn["TracingConfig"] == {"Mode": "Active"}
    assert fn["Timeout"] == spec.timeout_seconds
    assert fn["MemorySize"] == spec.memory_mb
    logging = fn["LoggingConfig"]
    assert logging["LogFormat"] == "JSON" and logging["ApplicationLogLevel"] == "INFO"
    log_group = resources[logging["LogGroup"]["Ref"]]
    assert log_group["Type"] == "AWS::Logs::LogGroup" and log_group["Properties"]["RetentionInDays"] == 30

    env = fn["Environment"]["Variables"]
    assert env["TABLE_NAME"] == {"Ref": logical_id(stack, stack.storage.table)}
    assert env["TOPIC_ARN"] == {"Ref": logical_id(stack, stack.storage.topic)}
    assert env["POWERTOOLS_SERVICE_NAME"] == "spot-migration"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "SpotMigration"
    optional = {name: value for name, value in env.items() if name in SETTINGS_DEFAULTS}
    assert optional == {name: SETTINGS_DEFAULTS[name] for name in spec.environment if name in SETTINGS_DEFAULTS}
    for name, variable in MACHINE_ARN_VARIABLES.items():
        if variable in spec.environment:
            assert env[variable] == {"Ref": logical_id(stack, machines_of(stack)[name])}
    assert set(env) == {"TABLE_NAME", "TOPIC_ARN", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE",
                        *spec.environment}

    assert fn["Layers"] == [{"Ref": POWERTOOLS_PARAMETER_ID}, {"Ref": logical_id(stack, stack.layers.spot_core)}]


def test_every_log_group_has_retention(resources):
    groups = of_type(resources, "AWS::Logs::LogGroup")
    # one per function + the two state machines' + the API's access and execution logs
    assert len(groups) == len(FUNCTIONS) + 4
    assert all(g["Properties"].get("RetentionInDays") == 30 for g in groups.values())


def test_spot_core_layer_is_python313_arm64(resources):
    (layer,) = of_type(resources, "AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_powertools_layer_resolved_at_deploy_time_from_the_pinned_release(template):
    parameter = template.to_json()["Parameters"][POWERTOOLS_PARAMETER_ID]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
    # The layer release must be the library the tests and the embedded runtime import.
    assert parameter["Default"] == (
        f"/aws/service/powertools/python/arm64/python3.13/{version('aws-lambda-powertools')}")


def test_functions_have_own_roles_without_managed_policies(resources):
    roles = of_type(resources, "AWS::IAM::Role")
    # + the two state machines', API Gateway's account logging role and the one Scheduler invokes the windows with
    assert len(roles) == len(FUNCTIONS) + 4
    assert not any("ManagedPolicyArns" in r["Properties"] for r in roles.values())
    lambda_roles = [fn["Properties"]["Role"]["Fn::GetAtt"][0]
                    for fn in of_type(resources, "AWS::Lambda::Function").values()]
    assert len(set(lambda_roles)) == len(FUNCTIONS)


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.name)
def test_function_logs_only_to_its_own_log_group(spec, stack, statements_by_role):
    fn = stack.functions.functions[spec.name]
    own = statements_by_role[logical_id(stack, fn.role)]
    log_statements = [s for s in own if any(a.startswith("logs:") for a in listify(s["Action"]))]
    assert log_statements == [{
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Effect": "Allow",
        "Resource": {"Fn::GetAtt": [logical_id(stack, stack.functions.log_groups[spec.name]), "Arn"]},
    }]
    assert with_action(own, "xray:PutTraceSegments") and with_action(own, "xray:PutTelemetryRecords")


# --- storage ---------------------------------------------------------------------------

def test_table(resources):
    (table,) = of_type(resources, "AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert table["DeletionPolicy"] == "Retain"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEType"] == "KMS" and props["SSESpecification"]["SSEEnabled"] is True
    key = resources[props["SSESpecification"]["KMSMasterKeyId"]["Fn::GetAtt"][0]]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}]
    (gsi,) = props["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "by_status"
    assert gsi["KeySchema"] == [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                                {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]


def test_topic_encrypted_ssl_only_and_this_account_only(resources):
    (topic_id, topic), = of_type(resources, "AWS::SNS::Topic").items()
    key = resources[topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    (policy,) = of_type(resources, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    document = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
               for s in document)
    allows = [s for s in document if s["Effect"] == "Allow"]
    # besides this account's principals, only CloudWatch alarms of this account (tests/infra/test_operations.py)
    alarms = [s for s in allows if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert len(alarms) == 1
    assert alarms[0]["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert allows and all(flatten(s["Principal"]["AWS"]) == "arn:<AWS::Partition>:iam::<AWS::AccountId>:root"
                          for s in allows if s not in alarms)
    assert not of_type(resources, "AWS::SNS::Subscription")  # no notification_email in context


def test_outputs(template):
    outputs = template.to_json()["Outputs"]
    assert set(outputs) == {"StateMachineArn", "RehomeStateMachineArn", "TableName", "TopicArn",
                            "InterruptionDeadLetterQueueUrl", "ApiUrl"}


# --- workflow --------------------------------------------------------------------------

def machines_of(stack) -> dict[str, Any]:
    """Catalog name -> the state machine construct."""
    return {MIGRATION_MACHINE: stack.workflow.state_machine, REHOME_MACHINE: stack.rehome.state_machine}


@pytest.fixture(scope="module")
def state_machines(stack, resources) -> dict[str, dict]:
    """Catalog name -> the state machine's properties; the stack has no other."""
    assert len(of_type(resources, "AWS::StepFunctions::StateMachine")) == len(MACHINE_ARN_VARIABLES)
    return {name: resources[logical_id(stack, machine)]["Properties"] for name, machine in machines_of(stack).items()}


@pytest.fixture(scope="module")
def state_machine(state_machines) -> dict:
    return state_machines[MIGRATION_MACHINE]


def asl_placeholders(name: str = MIGRATION_MACHINE) -> set[str]:
    return set(PLACEHOLDER.findall(machine_file(name).read_text()))


@pytest.mark.parametrize("name", list(MACHINE_ARN_VARIABLES))
def test_state_machine_logging_and_tracing(state_machines, resources, name):
    state_machine = state_machines[name]
    assert state_machine["StateMachineType"] == "STANDARD"
    logging = state_machine["LoggingConfiguration"]
    # ALL events, but no execution data: the approval task input carries the task token
    assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is False
    log_group = resources[logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]]
    assert log_group["Properties"]["RetentionInDays"] == 30
    assert state_machine["TracingConfiguration"] == {"Enabled": True}


@pytest.mark.parametrize("name", list(MACHINE_ARN_VARIABLES))
def test_every_asl_placeholder_has_a_substitution(state_machines, name):
    used = asl_placeholders(name)
    assert used, "no ${...} placeholder found in the ASL"
    assert used == set(state_machines[name]["DefinitionSubstitutions"])


@pytest.mark.parametrize("name", list(MACHINE_ARN_VARIABLES))
def test_every_workflow_function_is_used_by_the_asl(stack, state_machines, name):
    used = asl_placeholders(name)
    # Entries without a placeholder (event-driven functions) are not part of a workflow.
    unused = [spec.name for spec in tasks_of(name) if spec.asl_placeholder not in used]
    assert not unused, f"catalog functions the ASL never calls: {unused}"
    for spec in tasks_of(name):
        target = logical_id(stack, stack.functions.functions[spec.name])
        assert state_machines[name]["DefinitionSubstitutions"][spec.asl_placeholder] == {"Fn::GetAtt": [target, "Arn"]}


@pytest.mark.parametrize("name", list(MACHINE_ARN_VARIABLES))
def test_state_machine_invokes_exactly_its_workflow_functions(stack, state_machines, statements_by_role, name):
    role = state_machines[name]["RoleArn"]["Fn::GetAtt"][0]
    invokes = with_action(statements_by_role[role], "lambda:InvokeFunction")
    resources = [flatten(r) for s in invokes for r in listify(s["Resource"])]
    expected = {f"<{logical_id(stack, stack.functions.functions[s.name])}.Arn>" for s in tasks_of(name)}
    assert sorted(resources) == sorted(expected)


def test_only_the_replacement_function_starts_rehomes(stack, statements_by_role):
    rehome = {"Ref": logical_id(stack, stack.rehome.state_machine)}
    starting = {role for role, statements in statements_by_role.items()
                for s in with_action(statements, "states:StartExecution") if rehome in listify(s["Resource"])}
    replacer = stack.functions.functions["replace_interrupted"].role
    assert starting == {logical_id(stack, replacer)}


# --- IAM: least privilege --------------------------------------------------------------

def test_no_statement_grants_all_actions_of_a_service(statements):
    for statement in statements:
        for action in listify(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), statement


STOPPED_ORIGINALS = {**OPTED_IN, "StringLike": {f"aws:ResourceTag/{STOPPED_BY_TAG}": "*"}}


def test_terminate_only_instances_the_product_launched_or_originals_a_migration_stopped(statements):
    terminate = with_action(statements, "ec2:TerminateInstances")
    assert terminate
    for statement in terminate:
        assert statement.get("Condition") in (MANAGED, STOPPED_ORIGINALS), statement
        assert [flatten(r) for r in listify(statement["Resource"])] == [
            "arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*"]


def test_run_instances_requires_the_managed_request_tag_on_instances_and_volumes(statements):
    run = with_action(statements, "ec2:RunInstances")
    assert run
    tagged = 0
    for statement in run:
        arns = [flatten(r) for r in listify(statement["Resource"])]
        assert "*" not in arns
        if any(a.endswith((":instance/*", ":volume/*")) for a in arns):
            assert statement.get("Condition") == {"StringEquals": {f"aws:RequestTag/{MANAGED_TAG}": "true"}}
            tagged += 1
    assert tagged


def test_auto_scaling_changes_only_opted_in_groups_and_tags_them_only_with_the_migration(statements):
    mutating = ("autoscaling:UpdateAutoScalingGroup", "autoscaling:StartInstanceRefresh",
                "autoscaling:CancelInstanceRefresh", "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags")
    for action in mutating:
        found = with_action(statements, action)
        assert found, action
        for statement in found:
            assert statement["Condition"]["StringEquals"] == {"aws:ResourceTag/spot-migration:opt-in": "true"}
            assert ":autoScalingGroup:*:autoScalingGroupName/*" in flatten(statement["Resource"])
            if "Tags" in action:
                assert statement["Condition"]["ForAllValues:StringEquals"] == {
                    "aws:TagKeys": ["spot-migration:group-migration", "spot-migration:wave"]}
    for statement in with_action(statements, "ec2:CreateLaunchTemplate"):
        assert statement["Condition"] == {"StringEquals": {"aws:RequestTag/spot-migration:managed": "true"}}


def test_start_stop_require_opt_in_or_managed_tag(statements):
    for action in ("ec2:StartInstances", "ec2:StopInstances"):
        conditions = [s.get("Condition") for s in with_action(statements, action)]
        assert conditions and all(c in (OPTED_IN, MANAGED) for c in conditions)
        assert OPTED_IN in conditions and MANAGED in conditions


def test_tags_only_at_launch_or_on_opted_in_originals_or_managed_replacements_never_the_managed_tag(statements):
    create_tags = with_action(statements, "ec2:CreateTags")
    assert create_tags
    never_managed = {"ForAllValues:StringNotEquals": {"aws:TagKeys": [MANAGED_TAG]}}
    for statement in create_tags:
        condition = statement.get("Condition")
        at_launch = condition == {"StringEquals": {"ec2:CreateAction": "RunInstances"}}
        on_original = condition == {**OPTED_IN, **never_managed}
        on_replacement = condition == {**MANAGED, **never_managed}
        snapshots = [flatten(r) for r in listify(statement["Resource"])]
        snapshot_at_creation = condition == {"StringEquals": {f"aws:RequestTag/{MANAGED_TAG}": "true"}} \
            and snapshots == ["arn:<AWS::Partition>:ec2:<AWS::Region>::snapshot/*"]
        template_at_creation = condition == {"StringEquals": {"ec2:CreateAction": "CreateLaunchTemplate"}} \
            and snapshots == ["arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:launch-template/*"]
        assert at_launch or on_original or on_replacement or snapshot_at_creation or template_at_creation, statement


def test_pass_role_only_to_ec2_and_the_windows_role_to_scheduler(stack, statements):
    pass_role = with_action(statements, "iam:PassRole")
    assert pass_role
    scheduler_role = {"Fn::GetAtt": [logical_id(stack, stack.functions.windows.role), "Arn"]}
    for statement in pass_role:
        if statement.get("Condition") == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}:
            assert statement["Resource"] == scheduler_role
        else:
            assert statement.get("Condition") == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.name)
def test_mutating_permissions_follow_the_catalog(spec, stack, statements_by_role):
    own = statements_by_role[logical_id(stack, stack.functions.functions[spec.name].role)]
    actions = {a for s in own for a in listify(s["Action"])}
    launches = {"ec2:RunInstances", "ec2:StartInstances", "ec2:StopInstances"}
    assert bool(actions & launches) == ("ec2:migrate" in spec.permissions)
    tags = bool({"ec2:migrate", "ec2:retire-originals"} & set(spec.permissions))  # snapshots are tagged at creation
    assert ("ec2:CreateTags" in actions) == tags
    terminates = bool({"ec2:migrate", "ec2:terminate-managed", "ec2:retire-originals"} & set(spec.permissions))
    assert ("ec2:TerminateInstances" in actions) == terminates
    assert ("iam:PassRole" in actions) == bool({"iam:pass", "scheduler:windows"} & set(spec.permissions))
    assert ("sns:Publish" in actions) == ("sns:publish" in spec.permissions)
    assert ("dynamodb:PutItem" in actions) == ("table:write" in spec.permissions)
    assert ("dynamodb:Query" in actions) == bool({"table:read", "table:write"} & set(spec.permissions))
    elb_write = {"elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"}
    assert bool(actions & elb_write) == ("elb:write" in spec.permissions)


def test_target_swaps_scoped_to_target_groups(statements):
    swaps = with_action(statements, "elasticloadbalancing:RegisterTargets")
    assert swaps
    for statement in swaps:
        assert [flatten(r) for r in listify(statement["Resource"])] == [
            "arn:<AWS::Partition>:elasticloadbalancing:<AWS::Region>:<AWS::AccountId>:targetgroup/*"]


# --- cdk-nag ---------------------------------------------------------------------------

def test_cdk_nag_reports_nothing_unacknowledged(synthesized):
    app, _ = synthesized
    report = AwsSolutionsChecks().validate_scope(app)
    findings = [f"{v.severity} {v.rule_name}: {[r.construct_path for r in v.violating_resources]}"
                for v in report.violations]
    assert findings == []


def test_no_cdk_errors_or_warnings(stack):
    annotations = Annotations.from_stack(stack)
    assert annotations.find_error("*", Match.any_value()) == []
    assert annotations.find_warning("*", Match.any_value()) == []
    assert annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*")) == []


def wildcard_findings(document: dict) -> set[str]:
    """cdk-nag's IAM5 findings of a policy document (Allow statements with a '*')."""
    found = set()
    for statement in document["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        found |= {f"Action::{a}" for a in listify(statement["Action"]) if "*" in a}
        found |= {f"Resource::{r}" for r in map(flatten, listify(statement["Resource"])) if "*" in r}
    return found


def iam5_acknowledged(resource: dict) -> set[str]:
    suppressed = resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    return {r["id"][len("AwsSolutions-IAM5["):-1] for r in suppressed if r["id"].startswith("AwsSolutions-IAM5[")}


def test_iam5_acknowledgements_match_the_findings_exactly(resources):
    """No unreviewed wildcard, and no stale acknowledgement left behind by a narrowed grant. A role's
    statements may overflow its default policy into managed policies (CDK splits a large policy):
    the role's acknowledgements cover them all, and each overflow policy carries them too."""
    overflow: dict[str, list[dict]] = {}
    for policy in of_type(resources, "AWS::IAM::ManagedPolicy").values():
        for role in policy["Properties"].get("Roles", []):
            overflow.setdefault(role["Ref"], []).append(policy)
    for name, policy in of_type(resources, "AWS::IAM::Policy").items():
        extra = [p for role in policy["Properties"]["Roles"] for p in overflow.get(role["Ref"], [])]
        found = wildcard_findings(policy["Properties"]["PolicyDocument"]).union(
            *(wildcard_findings(p["Properties"]["PolicyDocument"]) for p in extra))
        assert iam5_acknowledged(policy) == found, name
        assert all(wildcard_findings(p["Properties"]["PolicyDocument"]) <= iam5_acknowledged(p) for p in extra), name
    for name, role in of_type(resources, "AWS::IAM::Role").items():
        if "Policies" not in role["Properties"]:  # acknowledged for the role's DefaultPolicy above
            continue
        suppressed = role.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
        acknowledged = {r["id"][len("AwsSolutions-IAM5["):-1] for r in suppressed
                        if r["id"].startswith("AwsSolutions-IAM5[")}
        found = set().union(*(wildcard_findings(p["PolicyDocument"]) for p in role["Properties"].get("Policies", [])))
        assert acknowledged == found, name


def test_every_acknowledgement_gives_a_reason(resources):
    suppressed = {name: res.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
                  for name, res in resources.items()}
    rules = [r for rs in suppressed.values() for r in rs]
    assert rules
    assert all(len(r["reason"]) >= 40 for r in rules)
    # besides IAM5 wildcards: the pinned runtime, the dead-letter queue having no DLQ of its own, and the
    # API's choices: IAM rather than Cognito, no WAF, the public Swagger UI page (and only that one)
    assert {r["id"] for r in rules if not r["id"].startswith("AwsSolutions-IAM5[")} == {
        "AwsSolutions-L1", "AwsSolutions-SQS3", "AwsSolutions-COG4", "AwsSolutions-APIG3", "AwsSolutions-APIG4"}
    public = [resources[name]["Metadata"]["aws:cdk:path"] for name, rs in suppressed.items()
              if any(r["id"] == "AwsSolutions-APIG4" for r in rs)]
    assert public == ["SpotMigration/MigrationsApi/Api/Default/swagger/GET/Resource"]


# --- context ---------------------------------------------------------------------------

@pytest.mark.parametrize("context, message", [
    ({"notification_email": "not-an-email"}, "notification_email"),
    ({"log_retention": "FOREVER_AND_A_DAY"}, "log_retention"),
    ({"sweeper_mode": "nuke"}, "invalid function setting"),
    ({"prewarm_seconds": "soon"}, "invalid function setting"),
    ({"api_account_logging_role": "maybe"}, "api_account_logging_role"),
])
def test_bad_context_fails_fast(context, message, tmp_path):
    app = App(context=context, outdir=str(tmp_path))
    with pytest.raises(Exception, match=message):
        SpotMigrationStack(app)


# --- EventBridge: interruption warnings, rebalance recommendations, orphan sweep ---------
def test_rules_deploy_exactly_the_patterns_the_runtime_matches(stack, resources):
    from moto.events.models import EventPattern

    from spot_core.entry.event_rules import RULES

    queue = logical_id(stack, stack.interruptions.queue)  # the replacement function consumes it
    ender = logical_id(stack, stack.functions.functions["end_execution"])  # tests/infra/test_operations.py
    windows = logical_id(stack, stack.functions.functions["on_demand_windows"])
    deployed = {}
    for rule in of_type(resources, "AWS::Events::Rule").values():
        props = rule["Properties"]
        if "EventPattern" in props:
            [target] = props["Targets"]
            assert target["Arn"] in ({"Fn::GetAtt": [queue, "Arn"]}, {"Fn::GetAtt": [ender, "Arn"]},
                                     {"Fn::GetAtt": [windows, "Arn"]})
            assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
            assert "DeadLetterConfig" in target
            if target["Arn"] == {"Fn::GetAtt": [queue, "Arn"]}:
                deployed[json.dumps(props["EventPattern"], sort_keys=True)] = props["EventPattern"]
    assert sorted(deployed) == sorted(json.dumps(p, sort_keys=True) for p in RULES.values())
    events = machine_file(MIGRATION_MACHINE).parents[1] / "events"
    sample = json.loads((events / "ec2_spot_interruption_warning.json").read_text())
    assert sum(EventPattern.load(json.dumps(p)).matches_event(sample) for p in deployed.values()) == 1


def test_the_replacement_function_consumes_the_interruption_queue_in_short_batches(stack, resources):
    from spot_core.entry.interruption_queue import BATCH_SIZE, BATCHING_WINDOW_SECONDS

    replacer_id = logical_id(stack, stack.functions.functions["replace_interrupted"])
    queue_id = logical_id(stack, stack.interruptions.queue)
    [mapping] = [m["Properties"] for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
                 if m["Properties"]["FunctionName"] == {"Ref": replacer_id}]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (BATCH_SIZE, BATCHING_WINDOW_SECONDS)
    assert BATCHING_WINDOW_SECONDS <= 2  # what a lone warning waits for more to come
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    replacer = resources[replacer_id]["Properties"]
    assert replacer["ReservedConcurrentExecutions"] == 20
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 20}  # never throttled into a premature retry
    # no asynchronous invocation any more: nothing else to retry or dead-letter
    assert not [c for c in of_type(resources, "AWS::Lambda::EventInvokeConfig").values()
                if c["Properties"]["FunctionName"] == {"Ref": replacer_id}]


def test_the_interruption_queue_is_encrypted_and_redrives_to_the_dead_letter_queue(stack, resources):
    from spot_core.entry.interruption_queue import MAX_RECEIVES

    queue_id, dlq = logical_id(stack, stack.interruptions.queue), logical_id(stack, stack.interruptions.dead_letters)
    queue = resources[queue_id]["Properties"]
    assert queue["KmsMasterKeyId"] == {"Fn::GetAtt": [logical_id(stack, stack.interruptions.key), "Arn"]}
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                                      "maxReceiveCount": MAX_RECEIVES}
    assert queue["VisibilityTimeout"] == 6 * 90 and queue["MessageRetentionPeriod"] == 3600
    assert "KmsMasterKeyId" in resources[dlq]["Properties"]
    policies = [q["Properties"] for q in of_type(resources, "AWS::SQS::QueuePolicy").values()]
    statements = [s for p in policies if {"Ref": queue_id} in p["Queues"] for s in p["PolicyDocument"]["Statement"]]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)
    [sender] = [s for s in statements if s["Effect"] == "Allow"]  # the rules, of this account only
    assert sender["Principal"] == {"Service": "events.amazonaws.com"} and "sqs:SendMessage" in sender["Action"]
    assert sender["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_the_replacement_function_keeps_its_failures_with_the_reason_in_the_dead_letter_queue(stack, resources):
    replacer = resources[logical_id(stack, stack.functions.functions["replace_interrupted"])]["Properties"]
    dlq = logical_id(stack, stack.interruptions.dead_letters)
    assert replacer["Environment"]["Variables"]["DEAD_LETTER_QUEUE_URL"] == {"Ref": dlq}


def test_orphan_sweep_and_fallback_return_run_on_schedules(stack, resources):
    sweeper = logical_id(stack, stack.functions.functions["sweep_orphans"])
    returner = logical_id(stack, stack.functions.functions["return_fallbacks"])
    scheduled = [r["Properties"] for r in of_type(resources, "AWS::Events::Rule").values()
                 if "ScheduleExpression" in r["Properties"]]
    targets = sorted((p["ScheduleExpression"], p["Targets"][0]["Arn"]["Fn::GetAtt"][0]) for p in scheduled)
    assert targets == sorted([("rate(1 hour)", sweeper), ("rate(15 minutes)", returner)])


# --- the migrations API ------------------------------------------------------------------

@pytest.fixture(scope="module")
def openapi() -> dict:
    return json.loads(OPENAPI_FILE.read_text())


def api_methods(resources: dict[str, dict]) -> dict[tuple[str, str], dict]:
    """(verb, path) -> properties of every API Gateway method, its path rebuilt from the resources."""
    parts = {k: r["Properties"] for k, r in of_type(resources, "AWS::ApiGateway::Resource").items()}

    def path(resource_id: Any) -> str:
        if "Fn::GetAtt" in resource_id:  # the root resource
            return ""
        props = parts[resource_id["Ref"]]
        return f"{path(props['ParentId'])}/{props['PathPart']}"

    return {(m["Properties"]["HttpMethod"], path(m["Properties"]["ResourceId"]) or "/"): m["Properties"]
            for m in of_type(resources, "AWS::ApiGateway::Method").values()}


def test_one_iam_authorised_method_per_openapi_operation(openapi, stack, resources):
    methods = api_methods(resources)
    operations = {(verb.upper(), path): op for path, item in openapi["paths"].items() for verb, op in item.items()}
    assert operations and set(methods) == set(operations) | {("GET", "/swagger")}
    api_function = logical_id(stack, stack.functions.functions["api"])
    for key, method in methods.items():
        assert method["Integration"]["Type"] == "AWS_PROXY"
        assert api_function in json.dumps(method["Integration"]["Uri"])
        assert "RequestValidatorId" in method
        if key == ("GET", "/swagger"):
            assert method["AuthorizationType"] == "NONE"  # the documentation page, on purpose
            continue
        operation = operations[key]
        assert method["AuthorizationType"] == "AWS_IAM", key
        assert method["OperationName"] == operation["operationId"]
        required = {f"method.request.path.{p['name']}" for p in operation.get("parameters", []) if p["in"] == "path"}
        assert {k for k, v in method.get("RequestParameters", {}).items() if v} == required
        assert ("RequestModels" in method) == operation.get("requestBody", {}).get("required", False)


def test_api_validates_request_bodies_and_parameters(resources):
    (validator,) = of_type(resources, "AWS::ApiGateway::RequestValidator").values()
    assert validator["Properties"]["ValidateRequestBody"] is True
    assert validator["Properties"]["ValidateRequestParameters"] is True
    (model,) = of_type(resources, "AWS::ApiGateway::Model").values()
    assert model["Properties"]["Schema"]["type"] == "object"


def test_api_is_regional_and_its_stage_logs_traces_and_throttles(stack, resources):
    (api,) = of_type(resources, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    (stage,) = of_type(resources, "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "v1" and props["TracingEnabled"] is True
    access = props["AccessLogSetting"]
    assert logical_id(stack, stack.api.access_logs) in json.dumps(access["DestinationArn"])
    fields = json.loads(access["Format"])
    assert {"requestId", "httpMethod", "resourcePath", "status", "userArn", "sourceIp"} <= set(fields)
    settings = {(s["ResourcePath"], s["HttpMethod"]): s for s in props["MethodSettings"]}
    every = settings[("/*", "*")]
    assert every["LoggingLevel"] == "ERROR" and every["MetricsEnabled"] is True
    assert every["DataTraceEnabled"] is False  # no request or response bodies in the logs
    assert every["ThrottlingRateLimit"] > 0 and every["ThrottlingBurstLimit"] > 0
    swagger = settings[("/~1swagger", "GET")]
    assert swagger["ThrottlingRateLimit"] < every["ThrottlingRateLimit"]
    # the execution log group exists (with retention and key) before API Gateway would create it
    execution_logs = logical_id(stack, stack.api.execution_logs)
    assert execution_logs in stage["DependsOn"]
    name = resources[execution_logs]["Properties"]["LogGroupName"]
    assert flatten(name) == f"API-Gateway-Execution-Logs_<{logical_id(stack, stack.api.api)}>/v1"


def test_api_logs_are_encrypted_with_a_rotated_key(stack, resources):
    for group in (stack.api.access_logs, stack.api.execution_logs):
        key_id = resources[logical_id(stack, group)]["Properties"]["KmsKeyId"]["Fn::GetAtt"][0]
        assert key_id == logical_id(stack, stack.api.logs_key)
    assert resources[logical_id(stack, stack.api.logs_key)]["Properties"]["EnableKeyRotation"] is True


def test_api_gateway_invokes_the_function_only_from_its_stage(stack, resources):
    api_function = logical_id(stack, stack.functions.functions["api"])
    permissions = [p["Properties"] for p in of_type(resources, "AWS::Lambda::Permission").values()
                   if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [api_function, "Arn"]}]
    assert len(permissions) == len(api_methods(resources))  # one per method, no test-invoke ones
    for permission in permissions:
        assert permission["Principal"] == "apigateway.amazonaws.com"
        assert f"/<{logical_id(stack, stack.api.api.deployment_stage)}>/" in flatten(permission["SourceArn"])


def test_api_function_can_drive_the_workflow_and_nothing_else(stack, statements_by_role, statements):
    own = statements_by_role[logical_id(stack, stack.functions.functions["api"].role)]
    machine = {"Ref": logical_id(stack, stack.workflow.state_machine)}
    by_action = {a: s for s in own for a in listify(s["Action"])}
    states = {a for a in by_action if a.startswith("states:")}
    assert states == {"states:StartExecution", "states:ListExecutions", "states:DescribeStateMachine",
                      "states:DescribeExecution", "states:GetExecutionHistory", "states:SendTaskSuccess"}
    for action in ("states:StartExecution", "states:ListExecutions", "states:DescribeStateMachine"):
        assert by_action[action]["Resource"] == machine
    for action in ("states:DescribeExecution", "states:GetExecutionHistory"):
        assert flatten(by_action[action]["Resource"]) == (
            "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
            f"<{logical_id(stack, stack.workflow.state_machine)}.Name>:*")
    assert by_action["states:SendTaskSuccess"]["Resource"] == "*"  # no resource-level permissions exist
    assert {a.split(":")[0] for a in by_action} == {"logs", "xray", "dynamodb", "kms", "states"}
    # no other role starts migrations (but the windows function: reverts and returns) or completes tasks (the
    # replacement function starts re-homes only)
    starts = [s["Resource"] for s in with_action(statements, "states:StartExecution")]
    assert sorted(starts, key=str) == sorted([machine, machine, {"Ref": logical_id(stack, stack.rehome.state_machine)}],
                                             key=str)
    assert len(with_action(statements, "states:SendTaskSuccess")) == 1


def test_api_gateway_account_logging_role_has_no_managed_policy_and_is_retained(resources):
    (account,) = of_type(resources, "AWS::ApiGateway::Account").values()
    role = resources[account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"}
    assert "ManagedPolicyArns" not in role["Properties"]
    assert account["DeletionPolicy"] == role["DeletionPolicy"] == "Retain"  # other APIs may log through it


def test_account_logging_role_can_be_left_to_the_account(tmp_path):
    app, stack = create_app(context={"api_account_logging_role": "false"}, outdir=str(tmp_path))
    app.synth()  # still nag-clean
    resources = Template.from_stack(stack).to_json()["Resources"]
    assert not of_type(resources, "AWS::ApiGateway::Account")
    assert len(of_type(resources, "AWS::IAM::Role")) == len(FUNCTIONS) + 3  # + the state machines', Scheduler's
