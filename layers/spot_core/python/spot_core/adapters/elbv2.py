"""ELBv2: which instance target groups an instance serves in, and registering, deregistering
and reading target health (batched per target group)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..domain.batching import chunks
from ..domain.plan import Target, TargetGroups, TargetRef
from .aws import error_code, transient_errors

if TYPE_CHECKING:
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_elbv2.type_defs import TargetDescriptionTypeDef

REGISTER_BATCH = 500
HEALTH_BATCH = 100
DEFAULT_DEREGISTRATION_DELAY = 300  # ELB's default when the attribute is absent
NOT_SERVING = ("Target.NotRegistered", "Target.DeregistrationInProgress")  # health reasons of a target on its way out
NOT_RUNNING = "not in a running state"  # ELB's InvalidTarget message for an instance that is not running (yet)


def _targets(targets: list[Target]) -> list[TargetDescriptionTypeDef]:
    return [{"Id": t.instance_id, "Port": t.port} if t.port is not None else {"Id": t.instance_id} for t in targets]


class ElbTargets:
    def __init__(self, elbv2: ElasticLoadBalancingv2Client):
        self.elbv2 = elbv2

    def _instance_groups(self) -> Iterator[str]:
        with transient_errors():
            for page in self.elbv2.get_paginator("describe_target_groups").paginate():
                for group in page["TargetGroups"]:
                    if group.get("TargetType", "instance") == "instance":
                        yield group["TargetGroupArn"]

    def membership(self) -> dict[str, list[TargetRef]]:
        """instance id -> the instance target groups it is registered in (one call per group)."""
        membership: dict[str, list[TargetRef]] = defaultdict(list)
        for arn in self._instance_groups():
            with transient_errors():
                health = self.elbv2.describe_target_health(TargetGroupArn=arn)
            for desc in health["TargetHealthDescriptions"]:
                state = desc["TargetHealth"]
                if state["State"] in ("unused", "draining") and state.get("Reason") in NOT_SERVING:
                    continue
                target = desc["Target"]
                membership[target["Id"]].append(TargetRef(arn=arn, port=target.get("Port")))
        return dict(membership)

    def target_groups_of(self, instance_id: str) -> list[TargetRef]:
        """The instance target groups one instance is registered in: one describe call per
        group, each asking about this instance only (cheap however large the group)."""
        refs: list[TargetRef] = []
        for arn in self._instance_groups():
            with transient_errors():
                health = self.elbv2.describe_target_health(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
            for desc in health["TargetHealthDescriptions"]:
                if desc["TargetHealth"].get("Reason") not in NOT_SERVING:
                    refs.append(TargetRef(arn=arn, port=desc["Target"].get("Port")))
        return refs

    def load_balancer_of(self, target_group_arn: str) -> str | None:
        with transient_errors():
            group = self.elbv2.describe_target_groups(TargetGroupArns=[target_group_arn])["TargetGroups"][0]
        balancers = group.get("LoadBalancerArns") or []
        return balancers[0] if balancers else None

    def register(self, groups: TargetGroups) -> None:
        with transient_errors():
            for arn, targets in groups.items():
                for chunk in chunks(targets, REGISTER_BATCH):
                    self.elbv2.register_targets(TargetGroupArn=arn, Targets=_targets(chunk))

    def register_if_running(self, groups: TargetGroups) -> bool:
        """Register, unless a target is an instance not running yet (ELB refuses one still
        pending, and the whole call with it): False then, and nothing was registered."""
        try:
            self.register(groups)
        except Exception as exc:
            if error_code(exc) == "InvalidTarget" and NOT_RUNNING in str(exc):
                return False
            raise
        return True

    def deregister(self, groups: TargetGroups) -> None:
        """Targets or groups that are gone already are not an error."""
        with transient_errors():
            for arn, targets in groups.items():
                for chunk in chunks(targets, REGISTER_BATCH):
                    try:
                        self.elbv2.deregister_targets(TargetGroupArn=arn, Targets=_targets(chunk))
                    except Exception as exc:
                        if error_code(exc) not in ("InvalidTarget", "TargetGroupNotFound"):
                            raise

    def deregistration_delays(self, target_group_arns: Iterable[str]) -> dict[str, int]:
        """Target group arn -> how long a deregistered target drains (seconds; 300 when unset)."""
        delays: dict[str, int] = {}
        with transient_errors():
            for arn in sorted(set(target_group_arns)):
                attributes = self.elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
                values = {a.get("Key"): a.get("Value") for a in attributes}
                delays[arn] = int(values.get("deregistration_delay.timeout_seconds") or DEFAULT_DEREGISTRATION_DELAY)
        return delays

    def target_states(self, groups: TargetGroups) -> dict[tuple[str, str], str]:
        """(target group arn, instance id) -> health state. A group asked about many targets
        is described whole, in one call, instead of a call per hundred targets."""
        out: dict[tuple[str, str], str] = {}
        with transient_errors():
            for arn, targets in groups.items():
                if len(targets) > HEALTH_BATCH:
                    wanted = {t.instance_id for t in targets}
                    response: Any = self.elbv2.describe_target_health(TargetGroupArn=arn)
                    for desc in response["TargetHealthDescriptions"]:
                        if desc["Target"]["Id"] in wanted:
                            out[(arn, desc["Target"]["Id"])] = desc["TargetHealth"]["State"]
                    continue
                for chunk in chunks(targets, HEALTH_BATCH):
                    response = self.elbv2.describe_target_health(TargetGroupArn=arn, Targets=_targets(chunk))
                    for desc in response["TargetHealthDescriptions"]:
                        out[(arn, desc["Target"]["Id"])] = desc["TargetHealth"]["State"]
        return out
