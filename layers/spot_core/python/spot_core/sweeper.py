"""The orphan sweeper: finds instances this product launched that nothing accounts for.

An instance tagged spot-migration:managed=true is accounted for when the registry says
it is active (a migration or an interruption launched it and still uses it), when it is
a pending replacement, or when it serves in a target group. Anything else older than
the grace period is an orphan: reported (default) or terminated. The sweeper also
finishes prewarmed replacements whose wait has expired, and retires instances that a
rebalance 'replace' swapped out once they have drained.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from . import MANAGED_TAG, fleet
from .aws import transient_errors
from .models import TargetRef

DRAIN_SECONDS = 300


def managed_instances(ec2: Any) -> list[dict]:
    out = []
    with transient_errors():
        for page in ec2.get_paginator("describe_instances").paginate(Filters=[
            {"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]):
            for reservation in page["Reservations"]:
                out += reservation["Instances"]
    return out


def sweep(*, ec2: Any, elbv2: Any, store: Any, mode: Literal["report", "terminate"] = "report",
          grace_seconds: int = 600, now: datetime | None = None) -> dict:
    now = now or datetime.now(UTC)
    epoch = int(time.time())
    finished, retired = [], []
    for item in store.replacements():
        old = item["instance_id"]
        refs = [TargetRef.model_validate(t) for t in item.get("target_groups", [])]
        if item.get("status") == "prewarmed" and int(item.get("prewarm_until", 0)) <= epoch:
            fleet.deregister(elbv2, fleet.group_by_target_group((old, r) for r in refs))
            store.update_replacement(old, status="swapped", swapped_at=now.isoformat())
            finished.append(old)
        elif item.get("status") == "swapped" and item.get("kind") == "rebalance" and item.get("swapped_at"):
            swapped = datetime.fromisoformat(item["swapped_at"])
            if (now - swapped).total_seconds() >= DRAIN_SECONDS:
                state = fleet.describe(ec2, [old]).get(old, {}).get("State", {}).get("Name")
                if state in ("pending", "running"):
                    fleet.terminate(ec2, [old])
                    store.register_managed(old, "swapped out after a rebalance recommendation", status="retired")
                store.update_replacement(old, status="retired")
                retired.append(old)

    instances = managed_instances(ec2)
    ids = [i["InstanceId"] for i in instances]
    registry = store.managed_status(ids)
    pending = {r.get("replacement_id") for r in store.replacements() if r.get("status") in ("launching", "prewarmed")}
    serving = set(fleet.target_group_membership(elbv2)) if instances else set()
    orphans = []
    for inst in instances:
        iid = inst["InstanceId"]
        launched = inst["LaunchTime"] if isinstance(inst["LaunchTime"], datetime) else datetime.fromisoformat(str(inst["LaunchTime"]))
        if (now - launched.astimezone(UTC)).total_seconds() < grace_seconds:
            continue
        if registry.get(iid, {}).get("status") == "active" or iid in pending or iid in serving:
            continue
        orphans.append({"instance_id": iid, "instance_type": inst["InstanceType"],
                        "launched": launched.isoformat(), "registry": registry.get(iid, {}).get("status", "unknown")})
    if mode == "terminate" and orphans:
        fleet.terminate(ec2, [o["instance_id"] for o in orphans])
        for o in orphans:
            store.register_managed(o["instance_id"], "orphan terminated by the sweeper", status="retired")
    return {"mode": mode, "managed": len(instances), "orphans": orphans, "terminated": len(orphans) if mode == "terminate" else 0,
            "prewarms_finished": finished, "swapped_out_retired": retired}
