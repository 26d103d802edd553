"""Sample EC2 events and lookups shared by the interruption tests."""

import copy
import json
import uuid
from pathlib import Path

EVENTS = Path(__file__).resolve().parents[2] / "events"


def sample(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def ec2_event(instance_id: str, kind: str = "interruption", event_id: str | None = None) -> dict:
    name = "ec2_spot_interruption_warning.json" if kind == "interruption" else "ec2_rebalance_recommendation.json"
    event = copy.deepcopy(sample(name))
    event["id"] = event_id or str(uuid.uuid4())
    event["detail"]["instance-id"] = instance_id
    event["resources"] = [f"arn:aws:ec2:us-east-1a:instance/{instance_id}"]
    return event


def state_change(instance_id: str, state: str = "shutting-down", event_id: str | None = None) -> dict:
    """EC2's state-change notification, shaped like the real one (the not-matched sample is one)."""
    event = copy.deepcopy(sample("ec2_instance_state_change.json"))
    event["id"] = event_id or str(uuid.uuid4())
    event["detail"] = {"instance-id": instance_id, "state": state}
    event["resources"] = [f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"]
    return event


def launched_replacements(rt) -> list[dict]:
    ec2 = rt.client("ec2")
    out = []
    for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag-key", "Values": ["spot-migration:succeeds"]}]):
        for r in page["Reservations"]:
            out += r["Instances"]
    return out
