"""EC2's own events in the embedded runtime: a Spot interruption warning, a rebalance
recommendation or an instance state change goes, as EventBridge would send it, through the
deployed rule patterns (the CDK stack's) onto the interruption queue, and the replacement
Lambda consumes the queue as its event source mapping does: batches of up to BATCH_SIZE
messages, the messages it reports failed delivered again (after the failed attempt's
deadline: what it marked in progress has expired, as a visibility timeout longer than the
function's timeout makes sure), and after MAX_RECEIVES deliveries the dead-letter queue: the
function puts them there with the reason on their last delivery, SQS's redrive those whose
last delivery died without an answer. The handler does not know it is local.

A reclaim is what EC2 does when it takes a Spot instance back: it terminates (or stops) the
instance with a Spot state reason (moto would say Client.UserInitiatedShutdown) and sends
the state changes; after a warning, or without one (the warning is best effort)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import StateReason
from moto.events.models import EventPattern

from spot_core.domain.interruptions import InterruptionOutcome
from spot_core.entry.event_rules import INSTANCE_STATE_CHANGE, INTERRUPTION_WARNING, REBALANCE_RECOMMENDATION, RULES
from spot_core.entry.interruption_queue import BATCH_SIZE, MAX_RECEIVES
from spot_core.entry.settings import DEAD_LETTER_QUEUE_URL

REPLACER = "spot-migration-replace_interrupted"
INTERRUPTION_QUEUE = "spot-migration-interruptions"
# Lambda retries an asynchronous invocation after about one minute, then two more: by the third
# attempt the first one's deadline (the replacer's 90 s timeout) has passed, so what a crashed first
# attempt marked in progress (Powertools Idempotency) has expired and the attempt resumes its work.
LATE_ATTEMPT = 3
# How EC2 takes a Spot instance back: the states it goes through and the reason it gives.
RECLAIMS = {
    "terminate": (("shutting-down", "terminated"), "Server.SpotInstanceTermination"),
    "stop": (("stopping", "stopped"), "Server.SpotInstanceShutdown"),
    "hibernate": (("stopping", "stopped"), "Server.SpotInstanceShutdown"),  # a hibernated instance is stopped
}


def matching_rules(event: dict) -> list[str]:
    """The deployed rules (same patterns as the CDK stack) that match `event`, as EventBridge matches them."""
    return [name for name, pattern in RULES.items() if EventPattern.load(json.dumps(pattern)).matches_event(event)]


class Ec2Events:
    """The EC2 events of LocalRuntime (which provides the clients, the region and the dead-letter queue)."""

    client: Callable[[str], Any]
    region: str
    dlq_url: str
    lambdas: Any  # InProcessLambdas
    interruption_queue_url: str
    interruption_queue_arn: str
    autoscaling: Any  # AutoScalingSimulator

    def create_interruption_queue(self) -> None:
        """The queue between the rules and the replacement function, as the stack creates it:
        redriven to the dead-letter queue after MAX_RECEIVES deliveries."""
        sqs = self.client("sqs")
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.interruption_queue_url = sqs.create_queue(QueueName=INTERRUPTION_QUEUE, Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}),
        })["QueueUrl"]
        self.interruption_queue_arn = sqs.get_queue_attributes(
            QueueUrl=self.interruption_queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.lambdas.environment[DEAD_LETTER_QUEUE_URL] = self.dlq_url

    def matching_rules(self, event: dict) -> list[str]:
        """The deployed rules (same patterns as the CDK stack) that match `event`."""
        return matching_rules(event)

    def put_ec2_event(self, event: dict) -> list[dict]:
        """Deliver an EC2 event as EventBridge would: onto the interruption queue for every
        matching rule; the replacement Lambda consumes the queue. One delivery per rule: its
        rule, how many times it was delivered, and what the function did with it (`result`) or
        why it failed for good (`error`, and it is in the dead-letter queue)."""
        return self.put_ec2_events([event])

    def put_ec2_events(self, events: list[dict]) -> list[dict]:
        """A storm: every event on the queue first, then the queue consumed in batches."""
        sqs, sent = self.client("sqs"), []
        for event in events:
            for rule in self.matching_rules(event):
                message = sqs.send_message(QueueUrl=self.interruption_queue_url, MessageBody=json.dumps(event))
                sent.append((message["MessageId"], rule))
        delivered = self.consume_interruption_queue()
        return [{"rule": rule, **delivered[mid]} for mid, rule in sent]

    def consume_interruption_queue(self) -> dict[str, dict]:
        """What Lambda's event source mapping does until the queue is empty: a batch per
        invocation; the messages reported failed (or all of an invocation that failed) come back
        once the attempt's deadline has passed. Message id -> its delivery."""
        sqs, deliveries = self.client("sqs"), {}
        while True:
            messages = sqs.receive_message(QueueUrl=self.interruption_queue_url, MaxNumberOfMessages=BATCH_SIZE,
                                           AttributeNames=["All"]).get("Messages", [])
            if not messages:
                return deliveries
            failed = self._invoke_batch(messages, deliveries)
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                sqs.delete_message_batch(QueueUrl=self.interruption_queue_url, Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)])
            for m in messages:
                if m["MessageId"] in failed:  # delivered again: after the failed attempt's deadline
                    sqs.change_message_visibility(QueueUrl=self.interruption_queue_url,
                                                  ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
            if failed:
                self.lambdas.expire_in_progress()

    def _invoke_batch(self, messages: list[dict], deliveries: dict[str, dict]) -> set[str]:
        """One invocation with `messages`, as the event source mapping sends them; the failed ones."""
        batch = {"Records": [_sqs_record(m, self.interruption_queue_arn, self.region) for m in messages]}
        response = self.client("lambda").invoke(FunctionName=REPLACER, Payload=json.dumps(batch))
        payload = json.loads(response["Payload"].read() or b"null") or {}
        self._record_deliveries(messages, payload, deliveries)
        if "FunctionError" in response:
            return {m["MessageId"] for m in messages}
        return {f["itemIdentifier"] for f in payload.get("batchItemFailures", [])}

    def _record_deliveries(self, messages: list[dict], payload: dict, deliveries: dict[str, dict]) -> None:
        """What the invocation's log says it did with each message, or (it failed) its own error."""
        logged = _logged(self.lambdas.invocations[-1].logs if self.lambdas.invocations else "")
        failure = {"error": {k: payload.get(k) for k in ("errorType", "errorMessage")}}
        for m in messages:
            deliveries[m["MessageId"]] = {"attempts": int(m["Attributes"]["ApproximateReceiveCount"]),
                                          **(logged.get(m["MessageId"]) or failure)}

    def invoke_async(self, function: str, event: dict, attempts: int = 3) -> dict:
        """An asynchronous invocation as Lambda makes it: tried `attempts` times, then the
        dead-letter queue (the on-failure destination) with the reason."""
        last: dict = {}
        for attempt in range(1, attempts + 1):
            if attempt == LATE_ATTEMPT:
                self.lambdas.expire_in_progress()
            try:
                response = self.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event))
                last = json.loads(response["Payload"].read() or b"null")
                if "FunctionError" not in response:
                    return {"attempts": attempt, "result": last}
            except ClientError as exc:
                last = {"errorType": exc.response["Error"]["Code"], "errorMessage": str(exc)}
        self.client("sqs").send_message(QueueUrl=self.dlq_url, MessageBody=json.dumps({
            "requestContext": {
                "condition": "RetriesExhausted", "approximateInvokeCount": attempts, "functionArn": function,
            },
            "requestPayload": event, "responsePayload": last,
        }))
        return {"attempts": attempts, "error": last}

    def ec2_event(self, instance_id: str, kind: str = "interruption", state: str | None = None) -> dict:
        """The event EC2 sends for one of the fleet's instances: a Spot interruption warning, a
        rebalance recommendation or (kind "state-change") its change to `state`, shaped exactly
        like the real ones."""
        reservations = self.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
        az = reservations[0]["Instances"][0]["Placement"]["AvailabilityZone"]
        detail_type, detail = {
            "interruption": (INTERRUPTION_WARNING, {"instance-id": instance_id, "instance-action": "terminate"}),
            "rebalance": (REBALANCE_RECOMMENDATION, {"instance-id": instance_id}),
            "state-change": (INSTANCE_STATE_CHANGE, {"instance-id": instance_id, "state": state or "terminated"}),
        }[kind]
        return {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": "aws.ec2",
            "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.region, "resources": [f"arn:aws:ec2:{az}:instance/{instance_id}"], "detail": detail,
        }

    def reclaim(self, instance_id: str, behaviour: str | None = None) -> list[dict]:
        """EC2 takes the Spot instance back as its request says (or `behaviour`): terminates it, or
        stops it (a persistent request that stops), giving the Spot reason, and sends both state
        changes through the deployed rules. Returns their deliveries, each with its event."""
        # EC2's own change happens between two handler invocations, never during one: moto's
        # backends are not thread-safe, and a state machine's Lambda task may be running (a re-home)
        with self.lambdas.exclusive():
            behaviour = behaviour or self._interruption_behaviour(instance_id)
            states, reason = RECLAIMS[behaviour]
            ec2 = self.client("ec2")
            if behaviour in ("stop", "hibernate"):
                ec2.stop_instances(InstanceIds=[instance_id], Hibernate=behaviour == "hibernate")
            else:
                ec2.terminate_instances(InstanceIds=[instance_id])
            instance = ec2_backends[DEFAULT_ACCOUNT_ID][self.region].get_instance(instance_id)
            instance.state_reason = StateReason(f"{reason}: Spot instance {behaviour}", reason)
            events = [self.ec2_event(instance_id, "state-change", state) for state in states]
        return [{**d, "event": _summary(e)} for e in events for d in self.put_ec2_event(e)]

    def _interruption_behaviour(self, instance_id: str) -> str:
        """What the instance's Spot request says EC2 does when it interrupts it (terminate by default)."""
        backend = ec2_backends[DEFAULT_ACCOUNT_ID][self.region]
        request = backend.spot_instance_requests.get(getattr(backend.get_instance(instance_id),
                                                             "spot_instance_request_id", None) or "")
        return getattr(request, "instance_interruption_behaviour", None) or "terminate"

    def simulate(self, instance_id: str, kind: str = "interruption", reclaim: bool = True) -> dict:
        """EC2 warns about `instance_id`: the event goes through the deployed rules to the
        replacement Lambda. After an interruption warning EC2 takes the instance back (here
        at once rather than two minutes later; its state changes are in `reclaim_deliveries`)
        unless `reclaim` is false. Kind "reclaim": EC2 takes it back without a warning."""
        if kind == "reclaim":
            deliveries = self.reclaim(instance_id)
            return {"event": deliveries[0]["event"] if deliveries else {}, "rules": [d["rule"] for d in deliveries],
                    "deliveries": deliveries, "reclaimed": True}
        self.autoscaling.warned(instance_id, kind)  # a group with Capacity Rebalancing replaces its member first
        event = self.ec2_event(instance_id, kind)
        deliveries = self.put_ec2_event(event)
        reclaimed = kind == "interruption" and reclaim
        return {"event": _summary(event), "rules": [d["rule"] for d in deliveries], "deliveries": deliveries,
                "reclaimed": reclaimed, "reclaim_deliveries": self.reclaim(instance_id) if reclaimed else []}

    def dead_letters(self) -> list[dict]:
        """The EC2 events the replacement Lambda still failed on, with the reason: as the
        function (or Lambda's on-failure destination) recorded them; an event SQS redrove
        because its last delivery died without an answer, with that as its reason."""
        sqs, out = self.client("sqs"), []
        while True:
            msgs = sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10,
                                       VisibilityTimeout=0).get("Messages", [])
            new = [m for m in msgs if m["MessageId"] not in {d["MessageId"] for d in out}]
            if not new:
                return [_dead_letter(json.loads(m["Body"])) | {"MessageId": m["MessageId"]} for m in out]
            out += new


def _summary(event: dict) -> dict:
    return {k: event[k] for k in ("id", "detail-type", "time", "resources")}


def _sqs_record(message: dict, queue_arn: str, region: str) -> dict:
    """A received message as the event source mapping hands it to the function."""
    return {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
            "attributes": message["Attributes"], "messageAttributes": {}, "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region}


def _dead_letter(body: Any) -> dict:
    if isinstance(body, dict) and "requestPayload" in body:
        return body
    return {"requestContext": {"condition": "RedrivenBySqs"}, "requestPayload": body,
            "responsePayload": {"errorType": "NoAnswer", "errorMessage": "its last delivery ended without an answer "
                                "(timed out or out of memory): see the function's log of that invocation"}}


def _logged(logs: str) -> dict[str, dict]:
    """Message id -> what the function logged it did with the message: the outcome, or the error."""
    out: dict[str, dict] = {}
    for line in logs.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or "message_id" not in entry:
            continue
        if "errorType" in entry:
            out[entry["message_id"]] = {"error": {"errorType": entry["errorType"],
                                                  "errorMessage": entry.get("errorMessage")}}
        else:
            out[entry["message_id"]] = {"result": InterruptionOutcome.model_validate(entry).model_dump(
                mode="json", exclude_none=True)}
    return out
