"""EventBridge rules for Spot interruption warnings, rebalance recommendations and reclaims,
the interruption queue the replacement Lambda consumes, the scheduled orphan sweeper, and the
scheduled job that returns on-demand fallbacks to Spot.

Why an SQS queue between the rules and the function (decided by bench/interruption_bench.py):
a storm of warnings arrives as batches of up to BATCH_SIZE events, gathered for at most
BATCHING_WINDOW_SECONDS, and a batch shares its reads, its load-balancer calls and its
notification (1,100 AWS calls for 200 warnings instead of 2,000 with one invocation per event,
a tenth of the invocations, half the handler time), for at most one second more before a
lone warning's launch. The event source mapping reports partial batch failures (only the
failed messages come back), runs at most the function's reserved concurrency (so a storm
stays within EC2's API rates and no invocation is throttled into a premature retry), and the
queue redrives a message to the dead-letter queue after MAX_RECEIVES deliveries. The reason
of every failure is kept: the function itself sends a message that failed for good to the
dead-letter queue with its error, as Lambda's on-failure destination would (SQS's redrive
carries no reason; it only moves a message whose last delivery died without an answer, whose
reason is that invocation's log). The queue is encrypted with the dead-letter queue's key
(which EventBridge may use), refuses non-TLS requests, and keeps an event an hour: a warning
older than that is about an instance long gone.

EventBridge's own delivery failures (to the queue, to the sweeper, to the function that ends
migrations whose execution stopped: infra/constructs/executions.py) go to the same encrypted
dead-letter queue, and so do the sweeper's (and the fallback return's) failed runs.
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
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from spot_core.entry.event_rules import RULES
from spot_core.entry.interruption_queue import BATCH_SIZE, BATCHING_WINDOW_SECONDS, MAX_RECEIVES
from spot_core.entry.settings import DEAD_LETTER_QUEUE_URL

from . import nag

SWEEP_SCHEDULE = "rate(1 hour)"
# Fallbacks wait at least FALLBACK_RETURN_MIN_AGE_SECONDS (1 h) on-demand; a run that cannot finish a
# return within its 900 s leaves the rest to the next, which resumes it.
FALLBACK_RETURN_SCHEDULE = "rate(15 minutes)"
ASYNC_RETRIES = 2  # Lambda's own retries of a failed asynchronous invocation
RULE_RETRIES = 8  # EventBridge's retries when Lambda refuses the delivery (throttled, unavailable)
MAX_EVENT_AGE = Duration.hours(1)
# The queue hides a message being handled for six times the function's timeout (what Lambda asks of
# an SQS event source); a message that failed comes back sooner (the function shortens it).
VISIBILITY_TIMEOUTS = 6
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
                 replacer_concurrency: int = 20, fallback_returner: lambda_.Function | None = None) -> None:
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

        if replacer_concurrency:  # 0: no reserved concurrency, the function shares the account's pool
            replacer.node.default_child.reserved_concurrent_executions = replacer_concurrency
        self.queue = self._queue(replacer, replacer_concurrency)

        self.rules: dict[str, events.Rule] = {}
        for name, pattern in RULES.items():
            rule = events.Rule(
                self, name,
                description=f"{pattern['detail-type'][0]} -> Spot migration interruption queue",
                event_pattern=event_pattern(pattern),
            )
            rule.add_target(targets.SqsQueue(self.queue, dead_letter_queue=self.dead_letters,
                                             retry_attempts=RULE_RETRIES, max_event_age=MAX_EVENT_AGE))
            self.rules[name] = rule

        self.sweep_rule = events.Rule(self, "OrphanSweep", description="Hourly orphan sweep of managed instances",
                                      schedule=events.Schedule.expression(SWEEP_SCHEDULE))
        self.sweep_rule.add_target(targets.LambdaFunction(sweeper, dead_letter_queue=self.dead_letters,
                                                          retry_attempts=ASYNC_RETRIES))
        # A sweep that fails in the function (not in delivery) is retried, then kept with its error.
        deliver_failures(sweeper, self.dead_letters)
        self.fallback_return_rule = None if fallback_returner is None else self._scheduled(
            "FallbackReturn", "Returns on-demand fallbacks to Spot once a healthy pool has capacity",
            FALLBACK_RETURN_SCHEDULE, fallback_returner)

    def _scheduled(self, rule_id: str, description: str, schedule: str, function: lambda_.Function) -> events.Rule:
        """A function on an EventBridge schedule, as the sweeper: failed deliveries and failed runs are
        retried, then kept with their error in the dead-letter queue."""
        rule = events.Rule(self, rule_id, description=description, schedule=events.Schedule.expression(schedule))
        rule.add_target(targets.LambdaFunction(function, dead_letter_queue=self.dead_letters,
                                               retry_attempts=ASYNC_RETRIES))
        deliver_failures(function, self.dead_letters)
        return rule

    def _queue(self, replacer: lambda_.Function, concurrency: int) -> sqs.Queue:
        """The interruption queue, consumed by the replacement function in batches (see the
        module docstring); the function sends what failed for good to the dead-letter queue."""
        timeout = replacer.timeout.to_seconds() if replacer.timeout else 90
        queue = sqs.Queue(
            self, "Events",
            encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.key, enforce_ssl=True,
            visibility_timeout=Duration.seconds(VISIBILITY_TIMEOUTS * timeout), retention_period=MAX_EVENT_AGE,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=MAX_RECEIVES),
        )
        replacer.add_event_source(sources.SqsEventSource(
            queue, batch_size=BATCH_SIZE, max_batching_window=Duration.seconds(BATCHING_WINDOW_SECONDS),
            report_batch_item_failures=True,
            max_concurrency=concurrency if concurrency >= 2 else None,  # the event source's floor is 2
        ))
        replacer.add_environment(DEAD_LETTER_QUEUE_URL, self.dead_letters.queue_url)
        QueueDestination(self.dead_letters).bind(self, replacer)  # sqs:SendMessage and the key, nothing more
        return queue
