"""Every log group of the stack: one customer-managed key and one retention for all of them
(the functions', the state machine's, the API's access and execution logs)."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct


class LogGroups(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.retention = retention
        self.key = kms.Key(self, "Key", description="Encrypts the Spot migration stack's CloudWatch Logs log groups",
                           enable_key_rotation=True, removal_policy=RemovalPolicy.RETAIN)
        # CloudWatch Logs encrypts with the key itself; only for log groups of this account and region.
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchLogsOfThisAccount",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                service="logs", resource="log-group", resource_name="*", arn_format=ArnFormat.COLON_RESOURCE_NAME)}},
        ))

    def log_group(self, scope: Construct, construct_id: str, **kwargs: Any) -> logs.LogGroup:
        """A log group with the stack's key and retention."""
        return logs.LogGroup(scope, construct_id, retention=self.retention, encryption_key=self.key, **kwargs)
