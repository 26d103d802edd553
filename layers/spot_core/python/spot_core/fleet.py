"""EC2 and ELBv2 adapter: read the fleet, launch Spot replacements, swap registrations.

Calls are batched wherever the API allows (describe, stop, start, terminate,
register/deregister per target group), so the number of calls grows with pages and
target groups, not with instances. RunInstances is the exception: every replacement
copies the configuration of a different original.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from . import MANAGED_TAG, MIGRATION_ID_TAG, REPLACES_TAG, WAVE_TAG
from .analysis import InstanceFacts
from .aws import error_code, transient_errors
from .models import Pool, Selector, TargetRef

# Errors that mean "this Spot pool cannot serve the request now": try the next pool.
CAPACITY_ERRORS = {
    "InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded",
    "InsufficientCapacity", "Unsupported", "InsufficientHostCapacity", "SpotCapacityNotAvailable",
}
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
POLL_SECONDS = 5


class LaunchRefused(Exception):
    """EC2 refused the launch for a reason another pool would not fix (no free address in
    the subnet, an invalid parameter): that instance cannot move now."""


class CapacityRefused(Exception):
    def __init__(self, pool: Pool, code: str, message: str):
        super().__init__(f"{pool.instance_type}/{pool.availability_zone}: {code}: {message}")
        self.pool, self.code = pool, code


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def tags_of(instance: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


# --- reading the fleet ------------------------------------------------------------
def find_instances(ec2: Any, selector: Selector) -> list[dict]:
    """Instances named by id, or else carrying every selector tag (terminated ones aside)."""
    paginator = ec2.get_paginator("describe_instances")
    states = [{"Name": "instance-state-name", "Values": LIVE_STATES}]
    found: list[dict] = []
    with transient_errors():
        if selector.instance_ids:  # a filter, not InstanceIds: unknown ids are reported by the caller, not an error here
            pages = (paginator.paginate(Filters=[{"Name": "instance-id", "Values": chunk}, *states])
                     for chunk in _chunks(selector.instance_ids, 200))
        else:
            tag_filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in selector.tags.items()]
            pages = [paginator.paginate(Filters=tag_filters + states, PaginationConfig={"PageSize": 1000})]
        for pager in pages:
            for page in pager:
                for reservation in page["Reservations"]:
                    found.extend(reservation["Instances"])
    return found


def instance_type_traits(ec2: Any, instance_types: Iterable[str]) -> dict[str, dict]:
    """Instance storage and burstability per type, from DescribeInstanceTypes (100 a call)."""
    traits: dict[str, dict] = {}
    with transient_errors():
        for chunk in _chunks(sorted(set(instance_types)), 100):
            for page in ec2.get_paginator("describe_instance_types").paginate(InstanceTypes=chunk):
                for it in page["InstanceTypes"]:
                    traits[it["InstanceType"]] = {
                        "instance_storage": bool(it.get("InstanceStorageSupported")),
                        "burstable": bool(it.get("BurstablePerformanceSupported")),
                    }
    return traits


def to_facts(instance: dict, traits: dict[str, dict]) -> InstanceFacts:
    itype = instance["InstanceType"]
    known = traits.get(itype, {})
    return InstanceFacts(
        instance_id=instance["InstanceId"],
        instance_type=itype,
        availability_zone=instance["Placement"]["AvailabilityZone"],
        state=instance["State"]["Name"],
        subnet_id=instance.get("SubnetId"),
        lifecycle=instance.get("InstanceLifecycle"),
        platform=instance.get("Platform"),
        tags=tags_of(instance),
        instance_storage=known.get("instance_storage", False),
        burstable=known.get("burstable", itype.startswith("t")),
    )


def target_group_membership(elbv2: Any) -> dict[str, list[TargetRef]]:
    """instance id -> the instance target groups it is registered in (one call per group)."""
    membership: dict[str, list[TargetRef]] = defaultdict(list)
    with transient_errors():
        for page in elbv2.get_paginator("describe_target_groups").paginate():
            for group in page["TargetGroups"]:
                if group.get("TargetType", "instance") != "instance":
                    continue
                health = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
                for desc in health["TargetHealthDescriptions"]:
                    if desc["TargetHealth"]["State"] in ("unused", "draining") and desc["TargetHealth"].get("Reason") in (
                            "Target.NotRegistered", "Target.DeregistrationInProgress"):
                        continue
                    target = desc["Target"]
                    membership[target["Id"]].append(TargetRef(arn=group["TargetGroupArn"], port=target.get("Port")))
    return dict(membership)


def target_groups_of(elbv2: Any, instance_id: str) -> list[TargetRef]:
    """The instance target groups one instance is registered in: one describe call per
    group, each asking about this instance only (cheap however large the group)."""
    refs: list[TargetRef] = []
    with transient_errors():
        for page in elbv2.get_paginator("describe_target_groups").paginate():
            for group in page["TargetGroups"]:
                if group.get("TargetType", "instance") != "instance":
                    continue
                health = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"], Targets=[{"Id": instance_id}])
                for desc in health["TargetHealthDescriptions"]:
                    if desc["TargetHealth"].get("Reason") not in ("Target.NotRegistered", "Target.DeregistrationInProgress"):
                        refs.append(TargetRef(arn=group["TargetGroupArn"], port=desc["Target"].get("Port")))
    return refs


def describe(ec2: Any, instance_ids: list[str]) -> dict[str, dict]:
    """Instances by id; ids that do not exist (any more) are simply absent. Filtering on
    instance-id (200 a call) instead of InstanceIds avoids InvalidInstanceID.NotFound."""
    out: dict[str, dict] = {}
    with transient_errors():
        for chunk in _chunks(sorted(set(instance_ids)), 200):
            pages = ec2.get_paginator("describe_instances").paginate(Filters=[{"Name": "instance-id", "Values": chunk}])
            for page in pages:
                for reservation in page["Reservations"]:
                    for instance in reservation["Instances"]:
                        out[instance["InstanceId"]] = instance
    return out


def find_replacements(ec2: Any, migration_id: str, original_ids: list[str]) -> dict[str, dict]:
    """original id -> replacement already launched for it by this migration (a retried or
    timed-out invocation finds what it launched but did not record). 200 originals a call."""
    found: dict[str, str] = {}
    with transient_errors():
        for chunk in _chunks(sorted(original_ids), 200):
            pages = ec2.get_paginator("describe_instances").paginate(Filters=[
                {"Name": f"tag:{MIGRATION_ID_TAG}", "Values": [migration_id]},
                {"Name": f"tag:{REPLACES_TAG}", "Values": chunk},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ])
            for page in pages:
                for reservation in page["Reservations"]:
                    for instance in reservation["Instances"]:
                        found[tags_of(instance)[REPLACES_TAG]] = instance
    return found


# --- launching replacements ----------------------------------------------------------
def user_data(ec2: Any, instance_id: str) -> str | None:
    with transient_errors():
        value = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData").get("UserData", {})
    return value.get("Value")


def replacement_tags(original: dict, migration_id: str, wave: int | None) -> list[dict]:
    tags = {k: v for k, v in tags_of(original).items() if not k.startswith("aws:")}
    tags.update({MANAGED_TAG: "true", MIGRATION_ID_TAG: migration_id, REPLACES_TAG: original["InstanceId"]})
    if wave is not None:
        tags[WAVE_TAG] = str(wave)
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def launch_spec(original: dict, pool: Pool, tags: list[dict], user_data_b64: str | None, spot: bool = True) -> dict:
    """RunInstances arguments that copy the original's configuration into the pool."""
    spec: dict[str, Any] = {
        "ImageId": original["ImageId"],
        "InstanceType": pool.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": original["SubnetId"],
        "SecurityGroupIds": [g["GroupId"] for g in original.get("SecurityGroups", [])],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
        "EbsOptimized": bool(original.get("EbsOptimized", False)),
        "Monitoring": {"Enabled": original.get("Monitoring", {}).get("State") == "enabled"},
    }
    if spot:
        spec["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        }
    if original.get("KeyName"):
        spec["KeyName"] = original["KeyName"]
    if original.get("IamInstanceProfile", {}).get("Arn"):
        spec["IamInstanceProfile"] = {"Arn": original["IamInstanceProfile"]["Arn"]}
    if user_data_b64:
        spec["UserData"] = user_data_b64
    metadata = original.get("MetadataOptions") or {}
    if metadata.get("HttpTokens"):
        spec["MetadataOptions"] = {"HttpTokens": metadata["HttpTokens"], "HttpEndpoint": metadata.get("HttpEndpoint", "enabled")}
    return spec


def run_instance(ec2: Any, spec: dict, pool: Pool, client_token: str) -> str:
    """Launch one instance; capacity refusals become CapacityRefused (try the next pool)."""
    try:
        with transient_errors():
            response = ec2.run_instances(**spec, ClientToken=client_token[:64])
    except Exception as exc:  # noqa: BLE001 - classified below
        code = error_code(exc)
        if code in CAPACITY_ERRORS:
            raise CapacityRefused(pool, code, str(exc)) from exc
        if code:  # a definite answer from EC2 (transient ones arrive as TransientAwsError)
            raise LaunchRefused(f"{code}: {exc}") from exc
        raise
    return response["Instances"][0]["InstanceId"]


# --- waiting -------------------------------------------------------------------------
def wait_for_states(ec2: Any, instance_ids: list[str], wanted: str, deadline: float) -> dict[str, str]:
    """Poll until every instance is in `wanted` (or a terminal state), or the deadline."""
    states: dict[str, str] = {}
    pending = list(instance_ids)
    while pending:
        for iid, inst in describe(ec2, pending).items():
            states[iid] = inst["State"]["Name"]
        pending = [i for i in pending if states.get(i) not in (wanted, "terminated", "shutting-down")]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    return states


def group_by_target_group(pairs: Iterable[tuple[str, TargetRef]]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for instance_id, ref in pairs:
        target = {"Id": instance_id}
        if ref.port is not None:
            target["Port"] = ref.port
        groups[ref.arn].append(target)
    return groups


def register(elbv2: Any, groups: dict[str, list[dict]]) -> None:
    with transient_errors():
        for arn, targets in groups.items():
            for chunk in _chunks(targets, 500):
                elbv2.register_targets(TargetGroupArn=arn, Targets=chunk)


def deregister(elbv2: Any, groups: dict[str, list[dict]]) -> None:
    with transient_errors():
        for arn, targets in groups.items():
            for chunk in _chunks(targets, 500):
                try:
                    elbv2.deregister_targets(TargetGroupArn=arn, Targets=chunk)
                except Exception as exc:  # noqa: BLE001
                    if error_code(exc) not in ("InvalidTarget", "TargetGroupNotFound"):
                        raise


def target_states(elbv2: Any, groups: dict[str, list[dict]]) -> dict[tuple[str, str], str]:
    """(target group arn, instance id) -> health state."""
    out: dict[tuple[str, str], str] = {}
    with transient_errors():
        for arn, targets in groups.items():
            for chunk in _chunks(targets, 100):
                for desc in elbv2.describe_target_health(TargetGroupArn=arn, Targets=chunk)["TargetHealthDescriptions"]:
                    out[(arn, desc["Target"]["Id"])] = desc["TargetHealth"]["State"]
    return out


def registered_only(elbv2: Any, groups: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The targets of `groups` that are registered now (deregistering the others fails)."""
    states = target_states(elbv2, groups)
    kept = {arn: [t for t in targets if states.get((arn, t["Id"]), "unused") != "unused"] for arn, targets in groups.items()}
    return {arn: targets for arn, targets in kept.items() if targets}


def wait_until(elbv2: Any, groups: dict[str, list[dict]], done: set[str], deadline: float) -> dict[tuple[str, str], str]:
    """Poll target health until every target's state is in `done`, or the deadline."""
    while True:
        states = target_states(elbv2, groups)
        if all(s in done for s in states.values()) or time.monotonic() >= deadline:
            return states
        time.sleep(POLL_SECONDS)


# --- state changes (batched) -----------------------------------------------------------
def stop(ec2: Any, instance_ids: list[str]) -> None:
    with transient_errors():
        for chunk in _chunks(sorted(instance_ids), 500):
            ec2.stop_instances(InstanceIds=chunk)


def start(ec2: Any, instance_ids: list[str]) -> None:
    with transient_errors():
        for chunk in _chunks(sorted(instance_ids), 500):
            ec2.start_instances(InstanceIds=chunk)


def terminate(ec2: Any, instance_ids: list[str]) -> None:
    with transient_errors():
        for chunk in _chunks(sorted(instance_ids), 500):
            ec2.terminate_instances(InstanceIds=chunk)
