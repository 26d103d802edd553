"""Migrations whose execution ended without its own last step (failed, timed out, aborted):
Step Functions' status-change event -> the end_execution function, which records the terminal
status, releases the instance locks and notifies.

Delivered like the interruption events: EventBridge invokes the function asynchronously,
Lambda retries a failed invocation and keeps what still fails in the encrypted dead-letter
queue with its error; EventBridge's own delivery failures go to the same queue.
"""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from spot_core.entry.event_rules import execution_ended_pattern, execution_succeeded_pattern

from .interruptions import deliver_failures, event_pattern, rule_target


class ExecutionEndHandling(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, handler: lambda_.Function,
                 state_machine: sfn.StateMachine, dead_letters: sqs.IQueue,
                 windows_handler: lambda_.Function | None = None) -> None:
        super().__init__(scope, construct_id)
        deliver_failures(handler, dead_letters)
        self.rule = events.Rule(
            self, "ExecutionEnded",
            description="Spot migration executions that failed, timed out or were aborted -> end_execution function",
            event_pattern=event_pattern(execution_ended_pattern(state_machine.state_machine_arn)),
        )
        self.rule.add_target(rule_target(handler, dead_letters))
        if windows_handler is not None:
            deliver_failures(windows_handler, dead_letters)
            self.succeeded = events.Rule(
                self, "ExecutionSucceeded",
                description="Spot migration executions that succeeded -> on_demand_windows function (schedules a "
                            "migration's windows; a window's revert or return done lets it go on)",
                event_pattern=event_pattern(execution_succeeded_pattern(state_machine.state_machine_arn)),
            )
            self.succeeded.add_target(rule_target(windows_handler, dead_letters))
