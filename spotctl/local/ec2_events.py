"""EC2's own events in the embedded runtime: a Spot interruption warning, a rebalance
recommendation or an instance state change goes, as EventBridge would send it, through the
deployed rule patterns (the CDK stack's) to the replacement Lambda; what still fails after
the retries lands in the dead-letter queue, like Lambda's on-failure destination.

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

from spot_core.entry.event_rules import INSTANCE_STATE_CHANGE, INTERRUPTION_WARNING, REBALANCE_RECOMMENDATION, RULES

REPLACER = "spot-migration-replace_interrupted"
# Lambda retries an asynchronous invocation after about one minute, then two more: by the third
# attempt the first one's deadline (the replacer's 90 s timeout) has passed, so what a crashed first
# attempt marked in progress (Powertools Idempotency) has expired and the attempt resumes its work.
LATE_ATTEMPT = 3
# How EC2 takes a Spot instance back: the states it goes through and the reason it gives.
RECLAIMS = {
    "terminate": (("shutting-down", "terminated"), "Server.SpotInstanceTermination"),
    "stop": (("stopping", "stopped"), "Server.SpotInstanceShutdown"),
}


def matching_rules(event: dict) -> list[str]:
    """The deployed rules (same patterns as the CDK stack) that match `event`, as EventBridge matches them."""
    return [name for name, pattern in RULES.items() if EventPattern.load(json.dumps(pattern)).matches_event(event)]


class Ec2Events:
    """The EC2 events of LocalRuntime (which provides the clients, the region and the queue)."""

    client: Callable[[str], Any]
    region: str
    dlq_url: str
    lambdas: Any  # InProcessLambdas

    def matching_rules(self, event: dict) -> list[str]:
        """The deployed rules (same patterns as the CDK stack) that match `event`."""
        return matching_rules(event)

    def put_ec2_event(self, event: dict, attempts: int = 3) -> list[dict]:
        """Deliver an EC2 event as EventBridge would: to the replacement Lambda for every
        matching rule, as an asynchronous invocation (up to `attempts` tries); an event that
        still fails lands in the dead-letter queue with the reason, like Lambda's on-failure
        destination."""
        return [self._deliver(rule, event, attempts) for rule in self.matching_rules(event)]

    def _deliver(self, rule: str, event: dict, attempts: int) -> dict:
        return {"rule": rule, **self.invoke_async(REPLACER, event, attempts)}

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

    def reclaim(self, instance_id: str, behaviour: str = "terminate") -> list[dict]:
        """EC2 takes the Spot instance back: terminates it (or stops it: `behaviour` "stop", a
        persistent request) giving the Spot reason, and sends both state changes through the
        deployed rules. Returns their deliveries, each with its event."""
        states, reason = RECLAIMS[behaviour]
        ec2 = self.client("ec2")
        if behaviour == "stop":
            ec2.stop_instances(InstanceIds=[instance_id])
        else:
            ec2.terminate_instances(InstanceIds=[instance_id])
        instance = ec2_backends[DEFAULT_ACCOUNT_ID][self.region].get_instance(instance_id)
        instance.state_reason = StateReason(f"{reason}: Spot instance {behaviour}", reason)
        events = [self.ec2_event(instance_id, "state-change", state) for state in states]
        return [{**d, "event": _summary(e)} for e in events for d in self.put_ec2_event(e)]

    def simulate(self, instance_id: str, kind: str = "interruption", reclaim: bool = True) -> dict:
        """EC2 warns about `instance_id`: the event goes through the deployed rules to the
        replacement Lambda. After an interruption warning EC2 takes the instance back (here
        at once rather than two minutes later; its state changes are in `reclaim_deliveries`)
        unless `reclaim` is false. Kind "reclaim": EC2 takes it back without a warning."""
        if kind == "reclaim":
            deliveries = self.reclaim(instance_id)
            return {"event": deliveries[0]["event"] if deliveries else {}, "rules": [d["rule"] for d in deliveries],
                    "deliveries": deliveries, "reclaimed": True}
        event = self.ec2_event(instance_id, kind)
        deliveries = self.put_ec2_event(event)
        reclaimed = kind == "interruption" and reclaim
        return {"event": _summary(event), "rules": [d["rule"] for d in deliveries], "deliveries": deliveries,
                "reclaimed": reclaimed, "reclaim_deliveries": self.reclaim(instance_id) if reclaimed else []}

    def dead_letters(self) -> list[dict]:
        """The EC2 events the replacement Lambda still failed on, with the reason."""
        sqs, out = self.client("sqs"), []
        while True:
            msgs = sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10,
                                       VisibilityTimeout=0).get("Messages", [])
            new = [m for m in msgs if m["MessageId"] not in {d["MessageId"] for d in out}]
            if not new:
                return [json.loads(m["Body"]) | {"MessageId": m["MessageId"]} for m in out]
            out += new


def _summary(event: dict) -> dict:
    return {k: event[k] for k in ("id", "detail-type", "time", "resources")}
