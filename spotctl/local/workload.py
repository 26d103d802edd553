"""A simulated fleet and the service it runs, for the embedded runtime.

Seeds VPC, subnets, an ALB with an instance target group and opted-in instances with
realistic CPU history; then plays the service's latency and error rate into CloudWatch
from the fleet as it really is in moto (which instances serve, which are Spot, from
which wave), so the gates measure what the migration did.
"""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from spot_core.domain.carry import MODE_TAG
from spot_core.domain.health import PROBE_TAG
from spot_core.domain.tags import GROUP_MIGRATION_TAG, MANAGED_TAG, OPT_IN_TAG, STATEFUL_TAG, WAVE_TAG

ZONES = ("a", "b", "c")
# (instance type, workload profile, share of the fleet)
FLEET_MIX = (
    ("m5.large", "stable", 0.22), ("m5.xlarge", "stable", 0.12), ("c5.large", "stable", 0.12),
    ("c5.xlarge", "variable", 0.1), ("r5.large", "stable", 0.1), ("m6i.large", "variable", 0.1),
    ("c6i.xlarge", "stable", 0.08), ("r6i.large", "stable", 0.06), ("m6i.xlarge", "variable", 0.1),
)
BASE_LATENCY = 0.120  # seconds
BASE_ERROR_RATE = 0.002
REQUESTS_PER_MINUTE = 1200.0
USER_DATA = "#!/bin/bash\nsystemctl start web\n"


@dataclass
class Degradation:
    wave: int
    latency_factor: float = 1.6
    error_rate: float = 0.05


@dataclass
class FleetSimulator:
    clients: Any  # callable: service name -> boto3 client
    region: str
    seed: int = 7
    vpc_id: str | None = None
    subnets: dict[str, str] = field(default_factory=dict)  # AZ -> subnet id
    security_group: str | None = None
    load_balancer_arn: str | None = None
    target_group_arn: str | None = None
    degradation: Degradation | None = None
    emitted: list[dict] = field(default_factory=list)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # the timing simulator's is virtual

    # --- the network and the load balancer ---------------------------------------------
    def setup_network(self) -> None:
        if self.vpc_id:
            return
        ec2, elbv2 = self.clients("ec2"), self.clients("elbv2")
        self.vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        for n, zone in enumerate(ZONES):
            az = f"{self.region}{zone}"
            subnet = ec2.create_subnet(VpcId=self.vpc_id, CidrBlock=f"10.0.{n * 64}.0/18", AvailabilityZone=az)
            self.subnets[az] = subnet["Subnet"]["SubnetId"]
        self.security_group = ec2.create_security_group(GroupName="web", Description="web tier",
                                                        VpcId=self.vpc_id)["GroupId"]
        lb = elbv2.create_load_balancer(Name="web-alb", Subnets=list(self.subnets.values()),
                                        SecurityGroups=[self.security_group], Type="application")
        self.load_balancer_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
        tg = elbv2.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=self.vpc_id, TargetType="instance",
                                       HealthCheckPath="/health")
        self.target_group_arn = tg["TargetGroups"][0]["TargetGroupArn"]
        elbv2.create_listener(LoadBalancerArn=self.load_balancer_arn, Protocol="HTTP", Port=80,
                              DefaultActions=[{"Type": "forward", "TargetGroupArn": self.target_group_arn}])

    def image_id(self) -> str:
        if getattr(self, "_image", None):
            return self._image
        ec2 = self.clients("ec2")
        al2023 = [{"Name": "name", "Values": ["al2023-ami-2023*"]}]
        images = (ec2.describe_images(Owners=["amazon"], Filters=al2023)["Images"]
                  or ec2.describe_images(Owners=["amazon"])["Images"])
        self._image = sorted(i["ImageId"] for i in images if i.get("Architecture", "x86_64") == "x86_64")[0]
        return self._image

    # --- instances -------------------------------------------------------------------------
    def launch(self, instance_type: str, name: str, az: str, tags: dict[str, str] | None = None, count: int = 1,
               register: bool = True, market: str | None = None) -> list[str]:
        self.setup_network()
        all_tags = {"Name": name, "team": "web", OPT_IN_TAG: "true", **(tags or {})}
        kwargs: dict[str, Any] = {}
        if market == "spot":
            kwargs["InstanceMarketOptions"] = {"MarketType": "spot"}
        self._ensure_key()
        reservation = self.clients("ec2").run_instances(
            ImageId=self.image_id(), InstanceType=instance_type, MinCount=count, MaxCount=count,
            SubnetId=self.subnets[az], SecurityGroupIds=[self.security_group], KeyName="ops",
            UserData="#!/bin/bash\nsystemctl start web\n",
            TagSpecifications=[{"ResourceType": "instance",
                                "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}],
            **kwargs,
        )
        ids = [i["InstanceId"] for i in reservation["Instances"]]
        if register:
            for chunk in range(0, len(ids), 500):
                self.clients("elbv2").register_targets(TargetGroupArn=self.target_group_arn,
                                                       Targets=[{"Id": i, "Port": 80} for i in ids[chunk:chunk + 500]])
        return ids

    def _ensure_key(self) -> bool:
        if getattr(self, "_key", False):
            return True
        self._key = True
        ec2 = self.clients("ec2")
        if not ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": ["ops"]}])["KeyPairs"]:
            ec2.create_key_pair(KeyName="ops")
        return True

    def seed_fleet(self, count: int = 10, stateful: int | None = None, burst: int | None = None,
                   cpu_days: int = 7, databases: int = 0) -> dict[str, list[str]]:
        """A realistic opted-in web fleet: mixed types over three AZs, most serving behind the
        ALB, a few stateful (tagged) and burst workloads that must not move."""
        rng = random.Random(self.seed)
        stateful = max(1, count // 10) if stateful is None else stateful
        burst = max(1, count // 10) if burst is None else burst
        web = count - stateful - burst
        groups: dict[str, list[str]] = {"web": [], "stateful": [], "burst": []}
        profiles: dict[str, str] = {}
        planned: dict[tuple[str, str, str], int] = {}
        for n in range(web):
            itype, profile = _pick(rng)
            az = f"{self.region}{ZONES[n % len(ZONES)]}"
            planned[(itype, profile, az)] = planned.get((itype, profile, az), 0) + 1
        for (itype, profile, az), k in sorted(planned.items()):
            for iid in self.launch(itype, "web", az, count=k):
                groups["web"].append(iid)
                profiles[iid] = profile
        for n in range(stateful):
            az = f"{self.region}{ZONES[n % len(ZONES)]}"
            tags = {STATEFUL_TAG: "true", "team": "data"}
            ids = self.launch("r5.xlarge", f"postgres-{n + 1}", az, tags, register=False)
            groups["stateful"] += ids
            profiles.update(dict.fromkeys(ids, "stable"))
        for n in range(burst):
            az = f"{self.region}{ZONES[n % len(ZONES)]}"
            # in no target group: its owner names a probe, so it may move stateless
            tags = {"team": "reporting", MODE_TAG: "stateless", PROBE_TAG: "systemctl is-active report"}
            ids = self.launch("c5.large", f"batch-report-{n + 1}", az, tags, register=False)
            groups["burst"] += ids
            profiles.update(dict.fromkeys(ids, "burst"))
        self._databases(databases, groups, profiles)
        self.write_cpu_history(profiles, days=cpu_days)
        self.write_quality_history()
        return groups

    def _databases(self, count: int, groups: dict[str, list[str]], profiles: dict[str, str]) -> None:
        groups["databases"] = [self.database(f"orders-db-{n + 1}", f"{self.region}{ZONES[n % len(ZONES)]}")
                               for n in range(count)]
        profiles.update(dict.fromkeys(groups["databases"], "stable"))
        if count and groups["web"]:  # clients of the web tier reach its first instance by an Elastic IP
            self.elastic_ip(groups["web"][0])

    def database(self, name: str, az: str) -> str:
        """A standalone database server: its data on a second volume, a second network interface, an
        Elastic IP, in no target group. It can only move with its disks (stateful mode)."""
        [iid] = self.launch("r5.large", name, az, {"team": "data"}, register=False)
        ec2 = self.clients("ec2")
        volume = ec2.create_volume(AvailabilityZone=az, Size=200, VolumeType="gp3", Encrypted=True)["VolumeId"]
        ec2.attach_volume(VolumeId=volume, InstanceId=iid, Device="/dev/sdf")
        self.elastic_ip(iid)  # while it has one interface: EC2 takes an instance id then
        eni = ec2.create_network_interface(SubnetId=self.subnets[az], Description=f"{name} replication")
        ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterface"]["NetworkInterfaceId"],
                                     InstanceId=iid, DeviceIndex=1)
        return iid

    def elastic_ip(self, instance_id: str) -> str:
        ec2 = self.clients("ec2")
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        ec2.associate_address(AllocationId=allocation, InstanceId=instance_id)
        return allocation

    # --- Auto Scaling groups (simulated by spotctl/local/autoscaling.py) -----------------------
    def seed_group(self, name: str, size: int, *, launch: str = "template", instance_type: str = "m5.large",
                   azs: Sequence[str] | None = None, target_group_arn: str | None = None, register: bool = False,
                   tags: dict[str, str] | None = None, cpu_days: int = 7) -> dict[str, Any]:
        """An opted-in On-Demand Auto Scaling group of `size` instances over `azs` (default: the three
        zones), launched from a launch template (version 1) or, with launch="configuration", a launch
        configuration; its tags (the opt-in tag among them) propagate to its instances. It is attached
        to `target_group_arn`, or with `register` to the fleet's target group."""
        self.setup_network()
        self._ensure_key()
        all_tags = {"Name": name, "team": "web", OPT_IN_TAG: "true", **(tags or {})}
        source = self._group_source(name, launch, instance_type)
        autoscaling = self.clients("autoscaling")
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=0, MaxSize=max(2 * size, 1), DesiredCapacity=size,
            VPCZoneIdentifier=",".join(self.subnets[z] for z in azs or self.subnets),
            TargetGroupARNs=[target_group_arn or self.target_group_arn] if target_group_arn or register else [],
            Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in all_tags.items()], **source)
        [group] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        instances = [i["InstanceId"] for i in group["Instances"]]
        if cpu_days:
            self.write_cpu_history(dict.fromkeys(instances, "stable"), days=cpu_days)
        return {"group": name, "instances": instances, **source}

    def _group_source(self, name: str, launch: str, instance_type: str) -> dict[str, Any]:
        """A launch template or a launch configuration for a group: the fleet's image, key, security
        group and user data."""
        user_data = base64.b64encode(USER_DATA.encode()).decode()
        if launch == "configuration":
            self.clients("autoscaling").create_launch_configuration(
                LaunchConfigurationName=f"{name}-configuration", ImageId=self.image_id(), InstanceType=instance_type,
                KeyName="ops", SecurityGroups=[self.security_group], UserData=user_data)
            return {"LaunchConfigurationName": f"{name}-configuration"}
        data = {"ImageId": self.image_id(), "InstanceType": instance_type, "KeyName": "ops",
                "SecurityGroupIds": [self.security_group], "UserData": user_data}
        template = self.clients("ec2").create_launch_template(LaunchTemplateName=f"{name}-template",
                                                              LaunchTemplateData=data)["LaunchTemplate"]
        return {"LaunchTemplate": {"LaunchTemplateId": template["LaunchTemplateId"], "Version": "1"}}

    # --- CloudWatch ------------------------------------------------------------------------
    def write_cpu_history(self, profiles: dict[str, str], days: int = 7) -> None:
        now = self.now().replace(minute=0, second=0, microsecond=0)
        data = []
        for iid, profile in profiles.items():
            rng = random.Random(f"{self.seed}:{iid}")
            for h in range(days * 24):
                data.append({
                    "MetricName": "CPUUtilization", "Dimensions": [{"Name": "InstanceId", "Value": iid}],
                    "Timestamp": now - timedelta(hours=h), "Value": _cpu(profile, h, rng), "Unit": "Percent",
                })
        self._put("AWS/EC2", data)

    def _dimensions(self) -> list[dict]:
        return [{"Name": "LoadBalancer", "Value": self.load_balancer_arn.split(":loadbalancer/")[-1]},
                {"Name": "TargetGroup", "Value": self.target_group_arn.split(":")[-1]}]

    def write_quality_history(self, minutes: int = 90) -> None:
        now = self.now()
        rng = random.Random(self.seed)
        data = []
        for m in range(1, minutes + 1):
            data += self._quality_points(now - timedelta(minutes=m), BASE_LATENCY, BASE_ERROR_RATE, rng)
        self._put("AWS/ApplicationELB", data)

    def _quality_points(self, when: datetime, latency: float, error_rate: float, rng: random.Random) -> list[dict]:
        requests = REQUESTS_PER_MINUTE * rng.uniform(0.97, 1.03)
        dims = self._dimensions()
        response_time = latency * rng.uniform(0.99, 1.01)
        errors = round(requests * error_rate * rng.uniform(0.9, 1.1))
        return [
            {"MetricName": "TargetResponseTime", "Dimensions": dims, "Timestamp": when, "Value": response_time,
             "Unit": "Seconds"},
            {"MetricName": "RequestCount", "Dimensions": dims, "Timestamp": when, "Value": round(requests),
             "Unit": "Count"},
            {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": dims, "Timestamp": when, "Value": errors,
             "Unit": "Count"},
        ]

    def current_quality(self) -> tuple[float, float]:
        """Fleet latency and error rate from the instances serving right now."""
        serving = self._healthy_targets()
        if not serving:
            return BASE_LATENCY * 10, 1.0
        latency = errors = 0.0
        tags = self._tags(serving) if self.degradation is not None else {}  # tags matter only to a degradation
        for iid in serving:
            degraded = self._degraded(tags.get(iid, {}))
            latency += BASE_LATENCY * (self.degradation.latency_factor if degraded else 1.0)
            errors += self.degradation.error_rate if degraded else BASE_ERROR_RATE
        return latency / len(serving), errors / len(serving)

    def _healthy_targets(self) -> list[str]:
        elbv2 = self.clients("elbv2")
        health = elbv2.describe_target_health(TargetGroupArn=self.target_group_arn)["TargetHealthDescriptions"]
        return [d["Target"]["Id"] for d in health if d["TargetHealth"]["State"] == "healthy"]

    def _tags(self, instance_ids: list[str]) -> dict[str, dict[str, str]]:
        tags = {}
        for page in self.clients("ec2").get_paginator("describe_instances").paginate(InstanceIds=instance_ids):
            for r in page["Reservations"]:
                for i in r["Instances"]:
                    tags[i["InstanceId"]] = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
        return tags

    def _degraded(self, tags: dict[str, str]) -> bool:
        """The instance is a replacement (or a member a migrated Auto Scaling group launched) from
        the wave the degradation starts at, or a later one."""
        moved = tags.get(MANAGED_TAG) == "true" or GROUP_MIGRATION_TAG in tags
        return self.degradation is not None and moved and int(tags.get(WAVE_TAG, -1)) >= self.degradation.wave

    def emit_quality(self, seconds: float) -> None:
        """Quality datapoints for a bake of `seconds` (one a minute, stamped now: the
        runtime fast-forwards the wait, so the whole bake happens in this instant)."""
        if not self.target_group_arn:
            return
        latency, error_rate = self.current_quality()
        rng = random.Random(f"{self.seed}:{len(self.emitted)}")
        now = self.now()
        points = []
        for k in range(max(1, min(15, math.ceil(seconds / 60)))):
            points += self._quality_points(now - timedelta(milliseconds=10 * k), latency, error_rate, rng)
        self._put("AWS/ApplicationELB", points)
        self.emitted.append({"seconds": seconds, "latency": latency, "error_rate": error_rate})

    def _put(self, namespace: str, data: list[dict]) -> None:
        cw = self.clients("cloudwatch")
        for i in range(0, len(data), 1000):
            cw.put_metric_data(Namespace=namespace, MetricData=data[i:i + 1000])

    # --- what the fleet looks like ------------------------------------------------------------
    def snapshot(self) -> dict:
        """Running instances by market, and target registrations: compare before/after."""
        running_on_demand, running_spot, stopped = set(), set(), set()
        for i in self._instances():
            state = i["State"]["Name"]
            if state == "running":
                (running_spot if i.get("InstanceLifecycle") == "spot" else running_on_demand).add(i["InstanceId"])
            elif state == "stopped":
                stopped.add(i["InstanceId"])
        registered = set(self._healthy_targets()) if self.target_group_arn else set()
        return {"on_demand": running_on_demand, "spot": running_spot, "stopped": stopped, "serving": registered}

    def _instances(self) -> Iterator[dict]:
        for page in self.clients("ec2").get_paginator("describe_instances").paginate():
            for r in page["Reservations"]:
                yield from r["Instances"]


def _pick(rng: random.Random) -> tuple[str, str]:
    x = rng.random() * sum(w for _, _, w in FLEET_MIX)
    for itype, profile, weight in FLEET_MIX:
        x -= weight
        if x <= 0:
            return itype, profile
    return FLEET_MIX[-1][0], FLEET_MIX[-1][1]


def _cpu(profile: str, hour: int, rng: random.Random) -> float:
    if profile == "stable":
        return round(max(1.0, rng.gauss(32, 2.5)), 2)
    if profile == "variable":
        return round(min(95.0, max(2.0, 40 + 25 * math.sin(hour / 24 * 2 * math.pi) + rng.gauss(0, 6))), 2)
    # burst: idle, with sharp nightly report peaks
    return round(96.0 if hour % 24 in (2, 3) else max(0.5, rng.gauss(4, 1.5)), 2)
