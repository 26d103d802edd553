"""The Step Functions state machine, loaded from ``statemachines/spot_migration.asl.json``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from . import nag
from .logs import LogGroups


class Workflow(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *,
        definition_file: Path, tasks: Mapping[str, lambda_.IFunction], log_groups: LogGroups,
    ) -> None:
        """``tasks`` maps each ``${placeholder}`` of the definition to the function it names."""
        super().__init__(scope, construct_id)

        self.log_group = log_groups.log_group(self, "Logs")
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(definition_file)),
            definition_substitutions={name: fn.function_arn for name, fn in tasks.items()},
            # Every event is logged, but without execution data: the approval task's input
            # carries the task token, which must never reach a log. Inputs and outputs stay
            # visible in the execution history (console, GetExecutionHistory), behind IAM.
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
        )
        # The definition comes from a file, so CDK cannot infer the Lambda tasks: grant
        # invoke on exactly the substituted functions (unqualified ARNs, as the ASL uses).
        self.state_machine.add_to_role_policy(iam.PolicyStatement(
            sid="InvokeWorkflowFunctions",
            actions=["lambda:InvokeFunction"],
            resources=list(dict.fromkeys(fn.function_arn for fn in tasks.values())),
        ))
        nag.acknowledge_iam5(self.state_machine.role, {
            "Resource::*": (
                "Set by CDK for logging and tracing: the CloudWatch Logs vended-log-delivery actions "
                "(logs:CreateLogDelivery, GetLogDelivery, UpdateLogDelivery, DeleteLogDelivery, ListLogDeliveries, "
                "PutResourcePolicy, DescribeResourcePolicies, DescribeLogGroups) and X-Ray "
                "(xray:PutTraceSegments, PutTelemetryRecords, GetSamplingRules, GetSamplingTargets) "
                "support no resource-level permissions."
            ),
        })
