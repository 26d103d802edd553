"""EC2 Auto Scaling: the groups a migration moves to Spot, their configuration, and the
instance refreshes that replace their members.

Reads grow with pages and groups: DescribeAutoScalingGroups by name (50 a call) or by tag
filter, one DescribeLaunchConfigurations per 50 configurations, and per group its lifecycle
hooks, warm pool and scaling policies (what the plan shows of it). Writes are the few a wave
needs per group: the configuration (UpdateAutoScalingGroup), one instance refresh, a tag.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..domain.asg import GroupConfig, GroupFacts, LaunchSource
from ..domain.batching import chunks
from ..domain.errors import TransientAwsError
from ..domain.pricing import LINUX
from ..domain.refresh import MAX_HEALTHY_PERCENTAGE, MIN_HEALTHY_PERCENTAGE, Refresh
from ..domain.tags import STATEFUL_TAG
from .aws import error_code, transient_errors

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client

NAMES_PER_CALL = 50  # DescribeAutoScalingGroups / DescribeLaunchConfigurations names per call
MEMBERS_PER_CALL = 1000  # DescribeInstances ids per call
REFRESH_RUNNING = "InstanceRefreshInProgress"
NO_REFRESH = "ActiveInstanceRefreshNotFound"
Group = dict[str, Any]  # a group as DescribeAutoScalingGroups returns it


class AutoScalingGroups:
    def __init__(self, autoscaling: AutoScalingClient, ec2: EC2Client):
        self.autoscaling, self.ec2 = autoscaling, ec2

    # --- reads ----------------------------------------------------------------------------------
    def find(self, names: Iterable[str] = (), tags: Mapping[str, str] | None = None) -> list[GroupFacts]:
        """The named groups (or those carrying every one of `tags`) as the analysis sees them."""
        groups = self.describe(names, tags)
        if not groups:
            return []
        configurations = self.launch_configurations(
            g["LaunchConfigurationName"] for g in groups if g.get("LaunchConfigurationName"))
        members = self._members([m["InstanceId"] for g in groups for m in g.get("Instances", [])])
        return [self._facts(g, configurations, members) for g in groups]

    def _facts(self, group: Group, configurations: Mapping[str, Mapping[str, Any]],
               members: Mapping[str, Mapping[str, Any]]) -> GroupFacts:
        name = group["AutoScalingGroupName"]
        running = [members[m["InstanceId"]] for m in group.get("Instances", []) if m["InstanceId"] in members]
        extras = self.extras(name)
        return GroupFacts(
            name=name, arn=group.get("AutoScalingGroupARN", ""),
            tags={t["Key"]: t.get("Value", "") for t in group.get("Tags", [])},
            source=self._source(group, configurations), config=_config(group),
            desired=group["DesiredCapacity"], min_size=group["MinSize"], max_size=group["MaxSize"],
            **_member_counts(running),
            subnet_ids=[s for s in (group.get("VPCZoneIdentifier") or "").split(",") if s],
            target_group_arns=sorted(group.get("TargetGroupARNs", [])),
            health_check_type=group.get("HealthCheckType", "EC2"),
            health_check_grace_period=int(group.get("HealthCheckGracePeriod") or 0),
            termination_policies=list(group.get("TerminationPolicies", [])),
            lifecycle_hooks=extras["lifecycle_hooks"], warm_pool=extras["warm_pool"],
            scaling_policies=extras["scaling_policies"],
            protected_from_scale_in=bool(group.get("NewInstancesProtectedFromScaleIn")),
            availability_zones=sorted(group.get("AvailabilityZones", [])),
        )

    def _source(self, group: Group, configurations: Mapping[str, Mapping[str, Any]]) -> LaunchSource | None:
        """What the group launches from: its launch configuration, or its launch template (also
        the one inside a mixed instances policy)."""
        if group.get("LaunchConfigurationName"):
            configuration = configurations.get(group["LaunchConfigurationName"], {})
            return LaunchSource(kind="launch_configuration", name=group["LaunchConfigurationName"],
                                instance_type=configuration.get("InstanceType"),
                                image_id=configuration.get("ImageId"))
        spec = group.get("LaunchTemplate") or (
            (group.get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {}).get("LaunchTemplateSpecification"))
        if not spec or not spec.get("LaunchTemplateId"):
            return None
        version = str(spec.get("Version") or "$Default")
        data = self.launch_template_data(spec["LaunchTemplateId"], version)
        return LaunchSource(kind="launch_template", name=spec["LaunchTemplateId"], version=version,
                            instance_type=data.get("InstanceType"), image_id=data.get("ImageId"))

    def _members(self, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Members as EC2 describes them (market, type, tags, billing product)."""
        found: dict[str, dict[str, Any]] = {}
        with transient_errors():
            for chunk in chunks(sorted(set(instance_ids)), MEMBERS_PER_CALL):
                for page in self.ec2.get_paginator("describe_instances").paginate(InstanceIds=chunk):
                    found |= {i["InstanceId"]: dict(i) for r in page["Reservations"] for i in r["Instances"]}
        return found

    def describe(self, names: Iterable[str] = (), tags: Mapping[str, str] | None = None) -> list[Group]:
        """The named groups, or those carrying every one of `tags`."""
        paginator = self.autoscaling.get_paginator("describe_auto_scaling_groups")
        found: list[Group] = []
        with transient_errors():
            if names:
                for chunk in chunks(sorted(set(names)), NAMES_PER_CALL):
                    for page in paginator.paginate(AutoScalingGroupNames=chunk):
                        found += [dict(g) for g in page["AutoScalingGroups"]]
            elif tags:
                filters: Any = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
                for page in paginator.paginate(Filters=filters):
                    found += [dict(g) for g in page["AutoScalingGroups"]]
        return found

    def launch_configurations(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        with transient_errors():
            for chunk in chunks(sorted(set(names)), NAMES_PER_CALL):
                described = self.autoscaling.describe_launch_configurations(LaunchConfigurationNames=chunk)
                found |= {c["LaunchConfigurationName"]: dict(c) for c in described["LaunchConfigurations"]}
        return found

    def launch_template_data(self, template_id: str, version: str) -> dict[str, Any]:
        """What a launch template version launches (its instance type and image, mostly)."""
        with transient_errors():
            versions = self.ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=[version])
        found = versions["LaunchTemplateVersions"]
        return dict(found[0].get("LaunchTemplateData", {})) if found else {}

    def extras(self, name: str) -> dict[str, Any]:
        """What the plan shows of a group besides its description: lifecycle hooks, warm pool,
        scaling policies."""
        with transient_errors():
            hooks = self.autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
            pool = self.autoscaling.describe_warm_pool(AutoScalingGroupName=name).get("WarmPoolConfiguration")
            policies = self.autoscaling.describe_policies(AutoScalingGroupName=name)["ScalingPolicies"]
        return {"lifecycle_hooks": sorted(h.get("LifecycleHookName", "") for h in hooks), "warm_pool": bool(pool),
                "scaling_policies": sorted(p.get("PolicyName", "") for p in policies)}

    def spot_share(self, name: str) -> tuple[int, int]:
        """(Spot members, members) of the group's InService members."""
        [group] = self.describe(names=[name]) or [{}]
        ids = [m["InstanceId"] for m in group.get("Instances", []) if m.get("LifecycleState") == "InService"]
        members = self._members(ids)
        return sum(m.get("InstanceLifecycle") == "spot" for m in members.values()), len(ids)

    def refresh(self, name: str, refresh_id: str) -> Refresh | None:
        with transient_errors():
            found = self.autoscaling.describe_instance_refreshes(AutoScalingGroupName=name,
                                                                 InstanceRefreshIds=[refresh_id])["InstanceRefreshes"]
        if not found:
            return None
        r = found[0]
        return Refresh(refresh_id=r.get("InstanceRefreshId", refresh_id), status=r.get("Status", "Pending"),
                       percentage_complete=int(r.get("PercentageComplete") or 0),
                       instances_to_update=int(r.get("InstancesToUpdate") or 0), reason=r.get("StatusReason"))

    # --- writes ---------------------------------------------------------------------------------
    def configure(self, name: str, **configuration: Any) -> None:
        """UpdateAutoScalingGroup with the given fields (MixedInstancesPolicy, LaunchTemplate,
        LaunchConfigurationName, CapacityRebalance): never the capacities."""
        with transient_errors():
            self.autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, **configuration)

    def tag(self, name: str, tags: Mapping[str, str], propagate: bool = True) -> None:
        """Tags on the group; propagated ones reach the members it launches from now on."""
        with transient_errors():
            self.autoscaling.create_or_update_tags(Tags=[
                {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
                 "PropagateAtLaunch": propagate} for k, v in tags.items()])

    def untag(self, name: str, keys: Iterable[str]) -> None:
        with transient_errors():
            self.autoscaling.delete_tags(Tags=[{"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k}
                                               for k in keys])

    def start_refresh(self, name: str, warmup_seconds: int, skip_matching: bool = True) -> str:
        """A refresh that launches before it terminates (and skips the members that match, unless
        told not to); the refresh already running, if one is (a retried call resumes it)."""
        preferences: Any = {"MinHealthyPercentage": MIN_HEALTHY_PERCENTAGE,
                            "MaxHealthyPercentage": MAX_HEALTHY_PERCENTAGE,
                            "SkipMatching": skip_matching, "InstanceWarmup": warmup_seconds}
        try:
            with transient_errors():
                return self.autoscaling.start_instance_refresh(AutoScalingGroupName=name, Strategy="Rolling",
                                                               Preferences=preferences)["InstanceRefreshId"]
        except Exception as exc:
            if error_code(exc) != REFRESH_RUNNING:
                raise
        running = self._running_refresh(name)
        if running is None:  # it ended between the two calls: start again on the next pass
            raise TransientAwsError(f"{name}: the instance refresh in progress ended meanwhile")
        return running

    def cancel_refresh(self, name: str) -> bool:
        """Cancel the group's running refresh; False when none runs."""
        try:
            with transient_errors():
                self.autoscaling.cancel_instance_refresh(AutoScalingGroupName=name)
        except Exception as exc:
            if error_code(exc) == NO_REFRESH:
                return False
            raise
        return True

    def create_launch_template(self, configuration: Mapping[str, Any], name: str, tags: Mapping[str, str],
                               client_token: str) -> str:
        """A launch template that launches what the launch configuration did (a mixed instances
        policy needs one); the client token makes a retried call return the same template."""
        tag_specs: Any = [{"ResourceType": "launch-template", "Tags": [{"Key": k, "Value": v}
                                                                       for k, v in tags.items()]}] if tags else []
        with transient_errors():
            created = self.ec2.create_launch_template(
                LaunchTemplateName=name, ClientToken=client_token, TagSpecifications=tag_specs,
                VersionDescription="made from Auto Scaling launch configuration "
                                   f"{configuration.get('LaunchConfigurationName')}",
                LaunchTemplateData=template_data(configuration))
        return str(created["LaunchTemplate"]["LaunchTemplateId"])

    def _running_refresh(self, name: str) -> str | None:
        with transient_errors():
            found = self.autoscaling.describe_instance_refreshes(AutoScalingGroupName=name)["InstanceRefreshes"]
        running = [r for r in found if r.get("Status") in ("Pending", "InProgress", "Baking")]
        return running[0].get("InstanceRefreshId") if running else None


# launch configuration field -> (launch template data field, how its value carries over)
_CARRIED: dict[str, tuple[str, Any]] = {
    "KeyName": ("KeyName", str),
    "UserData": ("UserData", str),  # base64 in both
    "EbsOptimized": ("EbsOptimized", bool),
    "InstanceMonitoring": ("Monitoring", lambda m: {"Enabled": bool(m.get("Enabled"))}),
    "MetadataOptions": ("MetadataOptions", dict),
    "PlacementTenancy": ("Placement", lambda t: {"Tenancy": t}),
    "BlockDeviceMappings": ("BlockDeviceMappings", lambda ds: [_device(d) for d in ds]),
    "IamInstanceProfile": ("IamInstanceProfile", lambda p: {"Arn": p} if p.startswith("arn:") else {"Name": p}),
}


def template_data(configuration: Mapping[str, Any]) -> Any:
    """A launch configuration's settings as launch template data (the fields both have)."""
    data: dict[str, Any] = {"ImageId": configuration["ImageId"], "InstanceType": configuration["InstanceType"]}
    for field, (target, carry) in _CARRIED.items():
        if configuration.get(field) not in (None, "", [], {}):
            data[target] = carry(configuration[field])
    groups = list(configuration.get("SecurityGroups") or [])
    if "AssociatePublicIpAddress" in configuration:  # only an interface can say it; the groups go with it
        data["NetworkInterfaces"] = [{"DeviceIndex": 0, "Groups": groups,
                                      "AssociatePublicIpAddress": bool(configuration["AssociatePublicIpAddress"])}]
    elif groups:
        data["SecurityGroupIds"] = groups
    return data


def _device(mapping: Mapping[str, Any]) -> dict[str, Any]:
    device: dict[str, Any] = {"DeviceName": mapping["DeviceName"]}
    if mapping.get("VirtualName"):
        device["VirtualName"] = mapping["VirtualName"]
    if mapping.get("NoDevice"):
        device["NoDevice"] = ""
    if mapping.get("Ebs"):
        device["Ebs"] = {k: v for k, v in mapping["Ebs"].items()
                         if k in ("SnapshotId", "VolumeSize", "VolumeType", "DeleteOnTermination", "Iops",
                                  "Encrypted", "Throughput")}
    return device


def _config(group: Group) -> GroupConfig:
    """What a rollback puts back: the launch template or configuration, the mixed instances policy
    (as described), Capacity Rebalancing."""
    template = group.get("LaunchTemplate")
    return GroupConfig(
        launch_template={k: str(v) for k, v in template.items() if k in ("LaunchTemplateId", "Version")}
        if template else None,
        launch_configuration_name=group.get("LaunchConfigurationName"),
        mixed_instances_policy=group.get("MixedInstancesPolicy"),
        capacity_rebalance=bool(group.get("CapacityRebalance")))


def _tag(instance: Mapping[str, Any], key: str) -> str:
    return next((t.get("Value", "") for t in instance.get("Tags", []) if t.get("Key") == key), "")


def _member_counts(running: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Types, markets, stateful members and billing product of a group's members."""
    return {
        "instance_types": dict(Counter(m.get("InstanceType", "") for m in running)),
        "on_demand_count": sum(m.get("InstanceLifecycle") != "spot" for m in running),
        "spot_count": sum(m.get("InstanceLifecycle") == "spot" for m in running),
        "stateful_members": sum(_tag(m, STATEFUL_TAG).lower() == "true" for m in running),
        "product": next((m["PlatformDetails"] for m in running if m.get("PlatformDetails")), LINUX),
    }
