"""EventBridge rules for Spot interruption warnings and rebalance recommendations, the
replacement Lambda's asynchronous delivery, and the scheduled orphan sweeper.

Why EventBridge -> Lambda (asynchronous) and not an SQS queue in between: the two-minute
warning leaves no room for batching delays, and Lambda's async invocation already is a
queue: it retries throttled invocations for up to the maximum event age, retries failed
ones twice with backoff, and sends what still fails to the on-failure destination *with
the error* (the reason), which a plain SQS redrive does not keep. Reserved concurrency
bounds how many replacements run at once, so an AZ-wide storm stays within EC2 API
rates (the handlers' clients also use adaptive retry mode); the rest waits in Lambda's
queue, nothing is dropped. EventBridge's own delivery failures go to the same
encrypted dead-letter queue.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from spot_core.entry.event_rules import RULES

from . import nag

SWEEP_SCHEDULE = "rate(1 hour)"


class InterruptionHandling(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, replacer: lambda_.Function, sweeper: lambda_.Function,
                 replacer_concurrency: int = 20) -> None:
        super().__init__(scope, construct_id)

        self.key = kms.Key(self, "DeadLetterKey", description="Encrypts the interruption dead-letter queue",
                           enable_key_rotation=True, removal_policy=RemovalPolicy.RETAIN)
        # EventBridge writes undeliverable events into the queue: it needs the key too.
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowEventBridgeToUseTheKey",
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=["*"],
        ))
        self.dead_letters = sqs.Queue(
            self, "DeadLetters",
            encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.key,
            enforce_ssl=True, retention_period=Duration.days(14),
        )
        nag.acknowledge(self.dead_letters, "AwsSolutions-SQS3",
                        "This queue is the dead-letter queue of the interruption rules and the replacement "
                        "function's on-failure destination; a dead-letter queue of its own would only move the "
                        "problem.")

        replacer.configure_async_invoke(
            retry_attempts=2,
            max_event_age=Duration.hours(1),
            on_failure=destinations.SqsDestination(self.dead_letters),
        )
        if replacer_concurrency:
            replacer.node.default_child.reserved_concurrent_executions = replacer_concurrency

        self.rules: dict[str, events.Rule] = {}
        for name, pattern in RULES.items():
            rule = events.Rule(
                self, name,
                description=f"{pattern['detail-type'][0]} -> Spot migration replacement function",
                event_pattern=events.EventPattern(source=pattern["source"], detail_type=pattern["detail-type"]),
            )
            rule.add_target(targets.LambdaFunction(
                replacer, dead_letter_queue=self.dead_letters, retry_attempts=8, max_event_age=Duration.hours(1),
            ))
            self.rules[name] = rule

        self.sweep_rule = events.Rule(self, "OrphanSweep", description="Hourly orphan sweep of managed instances",
                                      schedule=events.Schedule.expression(SWEEP_SCHEDULE))
        self.sweep_rule.add_target(targets.LambdaFunction(sweeper, dead_letter_queue=self.dead_letters,
                                                          retry_attempts=2))
