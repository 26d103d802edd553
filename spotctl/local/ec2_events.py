"""EC2's own events in the embedded runtime: a Spot interruption warning or a rebalance
recommendation goes, as EventBridge would send it, through the deployed rule patterns (the
CDK stack's) to the replacement Lambda; what still fails after the retries lands in the
dead-letter queue, like Lambda's on-failure destination."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from moto.events.models import EventPattern

from spot_core.entry.event_rules import RULES

REPLACER = "spot-migration-replace_interrupted"


def matching_rules(event: dict) -> list[str]:
    """The deployed rules (same patterns as the CDK stack) that match `event`, as EventBridge matches them."""
    return [name for name, pattern in RULES.items() if EventPattern.load(json.dumps(pattern)).matches_event(event)]


class Ec2Events:
    """The EC2 events of LocalRuntime (which provides the clients, the region and the queue)."""

    client: Callable[[str], Any]
    region: str
    dlq_url: str

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
        last: dict = {}
        for attempt in range(1, attempts + 1):
            try:
                response = self.client("lambda").invoke(FunctionName=REPLACER, Payload=json.dumps(event))
                last = json.loads(response["Payload"].read() or b"null")
                if "FunctionError" not in response:
                    return {"rule": rule, "attempts": attempt, "result": last}
            except ClientError as exc:
                last = {"errorType": exc.response["Error"]["Code"], "errorMessage": str(exc)}
        self.client("sqs").send_message(QueueUrl=self.dlq_url, MessageBody=json.dumps({
            "requestContext": {
                "condition": "RetriesExhausted", "approximateInvokeCount": attempts, "functionArn": REPLACER,
            },
            "requestPayload": event, "responsePayload": last,
        }))
        return {"rule": rule, "attempts": attempts, "error": last}

    def ec2_event(self, instance_id: str, kind: str = "interruption") -> dict:
        """The event EC2 sends for one of the fleet's instances: a Spot interruption warning
        or a rebalance recommendation, shaped exactly like the real ones."""
        reservations = self.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
        az = reservations[0]["Instances"][0]["Placement"]["AvailabilityZone"]
        detail_type, detail = {
            "interruption": ("EC2 Spot Instance Interruption Warning",
                             {"instance-id": instance_id, "instance-action": "terminate"}),
            "rebalance": ("EC2 Instance Rebalance Recommendation", {"instance-id": instance_id}),
        }[kind]
        return {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": "aws.ec2",
            "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.region, "resources": [f"arn:aws:ec2:{az}:instance/{instance_id}"], "detail": detail,
        }

    def simulate(self, instance_id: str, kind: str = "interruption", reclaim: bool = True) -> dict:
        """EC2 warns about `instance_id`: the event goes through the deployed rules to the
        replacement Lambda. After an interruption warning EC2 takes the instance back (here
        at once rather than two minutes later) unless `reclaim` is false."""
        event = self.ec2_event(instance_id, kind)
        deliveries = self.put_ec2_event(event)
        reclaimed = kind == "interruption" and reclaim
        if reclaimed:
            self.client("ec2").terminate_instances(InstanceIds=[instance_id])
        return {"event": {k: event[k] for k in ("id", "detail-type", "time", "resources")},
                "rules": [d["rule"] for d in deliveries], "deliveries": deliveries, "reclaimed": reclaimed}

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
