"""On-demand windows: the EventBridge Scheduler group their schedules go in (the windows function
creates them at run time, two per window) and the role Scheduler invokes that function with."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct


class WindowScheduling(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.group = scheduler.CfnScheduleGroup(self, "Group", name=f"{stack.stack_name}-windows")
        self.role = iam.Role(
            self, "InvokeRole", description="Spot migration: EventBridge Scheduler invokes the windows function",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com", conditions={
                "StringEquals": {"aws:SourceAccount": stack.account}}),
        )

    @property
    def group_name(self) -> str:
        return str(self.group.name)

    def schedule_arns(self) -> str:
        """Every schedule of the group (their names are made at run time)."""
        return Stack.of(self).format_arn(service="scheduler", resource="schedule",
                                         resource_name=f"{self.group_name}/*")

    def allow_invoke(self, function: lambda_.IFunction) -> None:
        self.role.add_to_principal_policy(iam.PolicyStatement(
            sid="InvokeWindowsFunction", actions=["lambda:InvokeFunction"],
            resources=[function.function_arn]))
