"""EC2 Auto Scaling: the groups a migration moves to Spot, their configuration, and the
instance refreshes that replace their members.

Reads grow with pages and groups: DescribeAutoScalingGroups by name (50 a call) or by tag
filter, one DescribeLaunchConfigurations per 50 configurations, and per group its lifecycle
hooks, warm pool and scaling policies (what the plan shows of it). Writes are the few a wave
needs per group: the configuration (UpdateAutoScalingGroup), one instance refresh, a tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..domain.batching import chunks
from ..domain.errors import TransientAwsError
from ..domain.refresh import MAX_HEALTHY_PERCENTAGE, MIN_HEALTHY_PERCENTAGE, Refresh
from .aws import error_code, transient_errors

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client

NAMES_PER_CALL = 50  # DescribeAutoScalingGroups / DescribeLaunchConfigurations names per call
REFRESH_RUNNING = "InstanceRefreshInProgress"
NO_REFRESH = "ActiveInstanceRefreshNotFound"
Group = dict[str, Any]  # a group as DescribeAutoScalingGroups returns it


class AutoScalingGroups:
    def __init__(self, autoscaling: AutoScalingClient, ec2: EC2Client):
        self.autoscaling, self.ec2 = autoscaling, ec2

    # --- reads ----------------------------------------------------------------------------------
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

    def extras(self, name: str) -> dict[str, list[str] | bool]:
        """What the plan shows of a group besides its description: lifecycle hooks, warm pool,
        scaling policies."""
        with transient_errors():
            hooks = self.autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
            pool = self.autoscaling.describe_warm_pool(AutoScalingGroupName=name).get("WarmPoolConfiguration")
            policies = self.autoscaling.describe_policies(AutoScalingGroupName=name)["ScalingPolicies"]
        return {"lifecycle_hooks": sorted(h.get("LifecycleHookName", "") for h in hooks), "warm_pool": bool(pool),
                "scaling_policies": sorted(p.get("PolicyName", "") for p in policies)}

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

    def start_refresh(self, name: str, warmup_seconds: int) -> str:
        """A refresh that launches before it terminates and skips the members that match; the
        refresh already running, if one is (a retried call resumes it rather than failing)."""
        preferences: Any = {"MinHealthyPercentage": MIN_HEALTHY_PERCENTAGE,
                            "MaxHealthyPercentage": MAX_HEALTHY_PERCENTAGE,
                            "SkipMatching": True, "InstanceWarmup": warmup_seconds}
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


def template_data(configuration: Mapping[str, Any]) -> Any:
    """A launch configuration's settings as launch template data (the fields both have)."""
    data: dict[str, Any] = {"ImageId": configuration["ImageId"], "InstanceType": configuration["InstanceType"]}
    if configuration.get("KeyName"):
        data["KeyName"] = configuration["KeyName"]
    if configuration.get("UserData"):
        data["UserData"] = configuration["UserData"]  # base64 in both
    if configuration.get("IamInstanceProfile"):
        profile = configuration["IamInstanceProfile"]
        data["IamInstanceProfile"] = {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}
    if "EbsOptimized" in configuration:
        data["EbsOptimized"] = bool(configuration["EbsOptimized"])
    if configuration.get("InstanceMonitoring"):
        data["Monitoring"] = {"Enabled": bool(configuration["InstanceMonitoring"].get("Enabled"))}
    if configuration.get("MetadataOptions"):
        data["MetadataOptions"] = dict(configuration["MetadataOptions"])
    if configuration.get("PlacementTenancy"):
        data["Placement"] = {"Tenancy": configuration["PlacementTenancy"]}
    if configuration.get("BlockDeviceMappings"):
        data["BlockDeviceMappings"] = [_device(d) for d in configuration["BlockDeviceMappings"]]
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
