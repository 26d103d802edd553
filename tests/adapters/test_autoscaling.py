"""The Auto Scaling adapter against moto (reads, configuration, tags, launch templates made from
launch configurations) and, where moto has no instance refresh, against botocore's Stubber."""

from __future__ import annotations

import base64

import boto3
import pytest
from botocore.stub import Stubber

from spot_core.adapters.autoscaling import AutoScalingGroups, template_data
from spot_core.domain.errors import TransientAwsError

AZ = "us-east-1a"


@pytest.fixture
def aws(moto):
    ec2, autoscaling = boto3.client("ec2"), boto3.client("autoscaling")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=AZ)["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)
    return ec2, autoscaling, subnet, image


def sg_of(autoscaling) -> str:
    ec2 = boto3.client("ec2")
    found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["web"]}])["SecurityGroups"]
    return found[0]["GroupId"]


def group_on_configuration(autoscaling, subnet: str, image: str, name: str, tags: dict[str, str]) -> None:
    autoscaling.create_launch_configuration(
        LaunchConfigurationName=f"{name}-lc", ImageId=image, InstanceType="m5.large", KeyName="ops",
        SecurityGroups=[sg_of(autoscaling)], UserData=base64.b64encode(b"#!/bin/sh\necho hi\n").decode(),
        InstanceMonitoring={"Enabled": True}, EbsOptimized=True, AssociatePublicIpAddress=False,
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 30, "VolumeType": "gp3",
                                                                 "DeleteOnTermination": True}}])
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name, LaunchConfigurationName=f"{name}-lc", MinSize=1, MaxSize=6, DesiredCapacity=2,
        VPCZoneIdentifier=subnet,
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": name,
               "ResourceType": "auto-scaling-group"} for k, v in tags.items()])


def test_groups_are_found_by_name_or_by_every_tag(aws):
    ec2, autoscaling, subnet, image = aws
    group_on_configuration(autoscaling, subnet, image, "web", {"spot-migration:opt-in": "true", "team": "web"})
    group_on_configuration(autoscaling, subnet, image, "batch", {"spot-migration:opt-in": "false"})
    groups = AutoScalingGroups(autoscaling, ec2)

    assert sorted(g["AutoScalingGroupName"] for g in groups.describe(names=["web", "batch"])) == ["batch", "web"]
    assert [g["AutoScalingGroupName"] for g in groups.describe(tags={"spot-migration:opt-in": "true"})] == ["web"]
    assert groups.describe(tags={"spot-migration:opt-in": "true", "team": "db"}) == []


def test_a_launch_template_made_from_a_launch_configuration_launches_the_same(aws):
    ec2, autoscaling, subnet, image = aws
    group_on_configuration(autoscaling, subnet, image, "web", {})
    groups = AutoScalingGroups(autoscaling, ec2)
    configuration = groups.launch_configurations(["web-lc"])["web-lc"]

    template = groups.create_launch_template(configuration, "web-spot", {"spot-migration:managed": "true"}, "tok-1")

    data = groups.launch_template_data(template, "$Latest")
    assert (data["ImageId"], data["InstanceType"], data["KeyName"]) == (image, "m5.large", "ops")
    assert data["UserData"] == configuration["UserData"] and data["EbsOptimized"] is True
    assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 30
    assert data["NetworkInterfaces"][0]["Groups"] == [sg_of(autoscaling)]  # with the public-IP choice, on the interface


def test_the_configuration_and_tags_change_the_group_and_never_its_capacity(aws):
    ec2, autoscaling, subnet, image = aws
    group_on_configuration(autoscaling, subnet, image, "web", {})
    groups = AutoScalingGroups(autoscaling, ec2)
    template = groups.create_launch_template(groups.launch_configurations(["web-lc"])["web-lc"], "web-spot", {}, "t")

    groups.configure("web", MixedInstancesPolicy={
        "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateId": template, "Version": "$Latest"},
                           "Overrides": [{"InstanceType": "m5.large"}, {"InstanceType": "m5a.large"}]},
        "InstancesDistribution": {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 50,
                                  "SpotAllocationStrategy": "price-capacity-optimized"}}, CapacityRebalance=True)
    groups.tag("web", {"spot-migration:group-migration": "mig-1"})

    [group] = groups.describe(names=["web"])
    assert group["MixedInstancesPolicy"]["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 50
    assert group["DesiredCapacity"] == 2  # (moto keeps no CapacityRebalance update: the embedded runtime does)
    assert {"Key": "spot-migration:group-migration", "Value": "mig-1"}.items() <= \
        next(t for t in group["Tags"] if t["Key"] == "spot-migration:group-migration").items()
    groups.untag("web", ["spot-migration:group-migration"])
    assert not [t for t in groups.describe(names=["web"])[0]["Tags"] if t["Key"].startswith("spot-migration")]


def test_the_plan_extras_name_hooks_and_policies(aws):
    ec2, autoscaling, subnet, image = aws
    group_on_configuration(autoscaling, subnet, image, "web", {})
    autoscaling.put_lifecycle_hook(AutoScalingGroupName="web", LifecycleHookName="drain",
                                   LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING")
    autoscaling.put_scaling_policy(AutoScalingGroupName="web", PolicyName="cpu50", PolicyType="TargetTrackingScaling",
                                   TargetTrackingConfiguration={"PredefinedMetricSpecification": {
                                       "PredefinedMetricType": "ASGAverageCPUUtilization"}, "TargetValue": 50.0})

    extras = AutoScalingGroups(autoscaling, ec2).extras("web")

    assert extras == {"lifecycle_hooks": ["drain"], "warm_pool": False, "scaling_policies": ["cpu50"]}


def test_a_refresh_already_running_is_resumed_not_refused():
    client = boto3.client("autoscaling", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("start_instance_refresh", "InstanceRefreshInProgress", http_status_code=400)
        stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
            {"InstanceRefreshId": "old", "Status": "Successful"},
            {"InstanceRefreshId": "r-1", "Status": "InProgress"}]})
        assert AutoScalingGroups(client, boto3.client("ec2", region_name="us-east-1")).start_refresh("web", 60) == "r-1"


def test_a_refresh_that_ended_between_the_calls_is_a_transient_error():
    client = boto3.client("autoscaling", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("start_instance_refresh", "InstanceRefreshInProgress", http_status_code=400)
        stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": []})
        with pytest.raises(TransientAwsError):
            AutoScalingGroups(client, boto3.client("ec2", region_name="us-east-1")).start_refresh("web", 60)


def test_a_refresh_is_read_as_its_status_and_progress():
    client = boto3.client("autoscaling", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
            {"InstanceRefreshId": "r-1", "Status": "InProgress", "PercentageComplete": 40, "InstancesToUpdate": 3}]})
        refresh = AutoScalingGroups(client, boto3.client("ec2", region_name="us-east-1")).refresh("web", "r-1")
    assert refresh is not None and (refresh.running, refresh.percentage_complete, refresh.instances_to_update) == \
        (True, 40, 3)


def test_cancelling_when_no_refresh_runs_says_so():
    client = boto3.client("autoscaling", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("cancel_instance_refresh", "ActiveInstanceRefreshNotFound", http_status_code=400)
        assert AutoScalingGroups(client, boto3.client("ec2", region_name="us-east-1")).cancel_refresh("web") is False


def test_a_configuration_with_an_instance_profile_arn_and_no_public_ip_choice_keeps_its_groups_at_the_top():
    data = template_data({"ImageId": "ami-1", "InstanceType": "c5.large", "SecurityGroups": ["sg-1"],
                          "IamInstanceProfile": "arn:aws:iam::123456789012:instance-profile/web"})
    assert data["SecurityGroupIds"] == ["sg-1"] and "NetworkInterfaces" not in data
    assert data["IamInstanceProfile"] == {"Arn": "arn:aws:iam::123456789012:instance-profile/web"}


def test_a_group_is_found_with_what_the_analysis_needs(aws):
    ec2, autoscaling, subnet, image = aws
    group_on_configuration(autoscaling, subnet, image, "web", {"spot-migration:opt-in": "true"})
    template = ec2.create_launch_template(LaunchTemplateName="api", LaunchTemplateData={
        "ImageId": image, "InstanceType": "c5.large"})["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="api", LaunchTemplate={"LaunchTemplateId": template, "Version": "$Default"},
        MinSize=0, MaxSize=4, DesiredCapacity=1, VPCZoneIdentifier=subnet, NewInstancesProtectedFromScaleIn=True)

    found = {g.name: g for g in AutoScalingGroups(autoscaling, ec2).find(names=["web", "api"])}

    web, api = found["web"], found["api"]
    assert web.source is not None and (web.source.kind, web.source.instance_type) == ("launch_configuration",
                                                                                      "m5.large")
    assert web.config.launch_configuration_name == "web-lc" and web.config.launch_template is None
    assert (web.desired, web.min_size, web.max_size, web.on_demand_count, web.spot_count) == (2, 1, 6, 2, 0)
    assert web.instance_types == {"m5.large": 2} and web.tags == {"spot-migration:opt-in": "true"}
    assert web.availability_zones == [AZ] and web.subnet_ids == [subnet]
    assert api.source is not None and (api.source.kind, api.source.name, api.source.instance_type) == (
        "launch_template", template, "c5.large")
    assert api.config.launch_template == {"LaunchTemplateId": template, "Version": "$Default"}
    assert api.protected_from_scale_in is True and api.instance_types == {"c5.large": 1}
