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
encrypted dead-letter queue, and so do the sweeper's failed runs and those of the function
that ends migrations whose execution stopped (infra/constructs/executions.py).
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from spot_core.entry.event_rules import RULES

from . import nag

SWEEP_SCHEDULE = "rate(1 hour)"
ASYNC_RETRIES = 2  # Lambda's own retries of a failed asynchronous invocation
RULE_RETRIES = 8  # EventBridge's retries when Lambda refuses the delivery (throttled, unavailable)
MAX_EVENT_AGE = Duration.hours(1)
# event_rules.py pattern keys -> aws_events.EventPattern fields: every key is deployed,
# so a pattern that filters on detail (or anything else) is deployed exactly as matched locally.
PATTERN_FIELDS = {"source": "source", "detail-type": "detail_type", "detail": "detail", "resources": "resources",
                  "account": "account", "region": "region", "id": "id", "time": "time", "version": "version"}


def event_pattern(pattern: dict[str, Any]) -> events.EventPattern:
    unknown = sorted(set(pattern) - set(PATTERN_FIELDS))
    if unknown:
        raise ValueError(f"event pattern keys not supported by the stack: {unknown}")
    return events.EventPattern(**{PATTERN_FIELDS[key]: value for key, value in pattern.items()})


@jsii.implements(lambda_.IDestination)
class QueueDestination:
    """An SQS on-failure destination granting only what Lambda needs to send to an encrypted
    queue (sqs:SendMessage, kms:GenerateDataKey and kms:Decrypt); CDK's SqsDestination also
    grants queue reads, kms:Encrypt and kms:ReEncrypt*."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self.queue = queue

    # ``type`` is the keyword jsii passes (DestinationOptions.type).
    def bind(self, _scope: Construct, fn: lambda_.IFunction, *,
             type: lambda_.DestinationType | None = None) -> lambda_.DestinationConfig:
        fn.add_to_role_policy(iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.queue.queue_arn]))
        key = self.queue.encryption_master_key
        if key is not None:
            fn.add_to_role_policy(iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"],
                                                      resources=[key.key_arn]))
        return lambda_.DestinationConfig(destination=self.queue.queue_arn)


def deliver_failures(function: lambda_.Function, dead_letters: sqs.IQueue) -> None:
    """Asynchronous invocations of ``function``: retried, then sent to ``dead_letters`` with the error."""
    function.configure_async_invoke(retry_attempts=ASYNC_RETRIES, max_event_age=MAX_EVENT_AGE,
                                    on_failure=QueueDestination(dead_letters))


def rule_target(function: lambda_.IFunction, dead_letters: sqs.IQueue) -> targets.LambdaFunction:
    """``function`` as an EventBridge target (asynchronous); undeliverable events go to ``dead_letters``."""
    return targets.LambdaFunction(function, dead_letter_queue=dead_letters, retry_attempts=RULE_RETRIES,
                                  max_event_age=MAX_EVENT_AGE)


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
                        "This queue is the dead-letter queue of the stack's EventBridge rules and the on-failure "
                        "destination of the event-driven functions; a dead-letter queue of its own would only move "
                        "the problem.")

        deliver_failures(replacer, self.dead_letters)
        if replacer_concurrency:  # 0: no reserved concurrency, the function shares the account's pool
            replacer.node.default_child.reserved_concurrent_executions = replacer_concurrency

        self.rules: dict[str, events.Rule] = {}
        for name, pattern in RULES.items():
            rule = events.Rule(
                self, name,
                description=f"{pattern['detail-type'][0]} -> Spot migration replacement function",
                event_pattern=event_pattern(pattern),
            )
            rule.add_target(rule_target(replacer, self.dead_letters))
            self.rules[name] = rule

        self.sweep_rule = events.Rule(self, "OrphanSweep", description="Hourly orphan sweep of managed instances",
                                      schedule=events.Schedule.expression(SWEEP_SCHEDULE))
        self.sweep_rule.add_target(targets.LambdaFunction(sweeper, dead_letter_queue=self.dead_letters,
                                                          retry_attempts=ASYNC_RETRIES))
        # A sweep that fails in the function (not in delivery) is retried, then kept with its error.
        deliver_failures(sweeper, self.dead_letters)
