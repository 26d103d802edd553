"""EC2: the fleet (read, launch, start, stop, terminate) and Spot price history.

Calls are batched wherever the API allows (describe, stop, start, terminate), so the
number of calls grows with pages, not with instances. RunInstances launches several
replacements at once where their originals share a configuration (`launch_many`); what
differs per replacement (the original it replaces, its name) is tagged on each afterwards.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..domain.batching import chunks
from ..domain.carry import ElasticIp, Interface, Inventory, Volume
from ..domain.errors import CapacityRefused, LaunchRefused, LaunchThrottled, StartRefused
from ..domain.fallbacks import is_fallback
from ..domain.health import StatusChecks
from ..domain.instances import (
    CAPACITY_ERRORS,
    LIVE_STATES,
    Instance,
    LaunchSettings,
    LaunchSpec,
    TypeTraits,
    burstable_family,
)
from ..domain.request import Selector
from ..domain.spot_options import ec2_max_price, is_persistent
from ..domain.stateful import InterfaceAt, VolumeAt
from ..domain.tags import LAUNCH_BATCH_TAG, MANAGED_TAG, MIGRATION_ID_TAG, REPLACES_TAG, SUCCEEDS_TAG
from .aws import error_code, transient_errors
from .concurrency import concurrently as _concurrently

THROTTLED = "RequestLimitExceeded"

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef, RunInstancesRequestTypeDef

DESCRIBE_BATCH = 200  # instance ids per describe filter
STATE_CHANGE_BATCH = 500  # instance ids per start/stop/terminate call
VOLUME_FILTER_VALUES = 200  # values one DescribeVolumes filter takes
PROVISIONED_IOPS_TYPES = ("io1", "io2", "gp3")  # the volume types whose IOPS RunInstances takes
TAG_BATCH = 1000  # resources per CreateTags
CREDITS_BATCH = 1000  # instance ids per DescribeInstanceCreditSpecifications
ROOT_DEVICES = ("/dev/xvda", "/dev/sda1")  # where images put the root volume, should EC2 not say
STATUS_BATCH = 100  # instance ids per DescribeInstanceStatus
TYPES_BATCH = 100  # DescribeInstanceTypes and DescribeSpotPriceHistory take 100 types a call


def to_instance(raw: InstanceTypeDef) -> Instance:
    """An EC2 API instance, as the product sees it."""
    placement = raw["Placement"]
    return Instance(
        instance_id=raw["InstanceId"],
        instance_type=raw["InstanceType"],
        availability_zone=placement["AvailabilityZone"],
        state=raw["State"]["Name"],
        subnet_id=raw.get("SubnetId"),
        vpc_id=raw.get("VpcId"),
        image_id=raw.get("ImageId"),
        lifecycle=raw.get("InstanceLifecycle"),
        platform=raw.get("Platform"),
        tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
        launch_time=raw.get("LaunchTime"),
        settings=_settings(raw),
        state_reason=(raw.get("StateReason") or {}).get("Code") or None,
        launch_index=int(raw.get("AmiLaunchIndex") or 0),
        root_device=raw.get("RootDeviceName"),
        block_devices=tuple((m["DeviceName"], m["Ebs"]["VolumeId"], bool(m["Ebs"].get("DeleteOnTermination")))
                            for m in raw.get("BlockDeviceMappings", []) if "Ebs" in m),
        interfaces=tuple(_interface(n) for n in raw.get("NetworkInterfaces", [])),
        source_dest_check=bool(raw.get("SourceDestCheck", True)),
        product=raw.get("PlatformDetails"),
        usage_operation=raw.get("UsageOperation"),
        spot_request_id=raw.get("SpotInstanceRequestId"),
    )


def _settings(raw: InstanceTypeDef) -> LaunchSettings:
    metadata, placement = raw.get("MetadataOptions") or {}, raw["Placement"]
    return LaunchSettings(
        security_group_ids=tuple(g["GroupId"] for g in raw.get("SecurityGroups", [])),
        key_name=raw.get("KeyName") or None,
        instance_profile_arn=(raw.get("IamInstanceProfile") or {}).get("Arn"),
        ebs_optimized=bool(raw.get("EbsOptimized", False)),
        monitoring=(raw.get("Monitoring") or {}).get("State") == "enabled",
        metadata_http_tokens=metadata.get("HttpTokens"),
        metadata_http_endpoint=metadata.get("HttpEndpoint", "enabled"),
        metadata_hop_limit=metadata.get("HttpPutResponseHopLimit"),
        placement_group=placement.get("GroupName") or None,
        tenancy=placement.get("Tenancy") or None,
        hibernation=bool((raw.get("HibernationOptions") or {}).get("Configured")),
    )


def _interface(raw: Any) -> Interface:
    ips = sorted(raw.get("PrivateIpAddresses", []), key=lambda ip: not ip.get("Primary"))
    attachment = raw.get("Attachment") or {}
    return Interface(attachment_id=attachment.get("AttachmentId"),
        interface_id=raw["NetworkInterfaceId"], device_index=int(attachment.get("DeviceIndex", 0)),
        private_ips=tuple(ip["PrivateIpAddress"] for ip in ips if ip.get("PrivateIpAddress")),
        public_ip=(raw.get("Association") or {}).get("PublicIp") or None,
        delete_on_termination=bool(attachment.get("DeleteOnTermination", True)),
    )


def _launched_first(instance: Instance) -> tuple[float, str]:
    return (instance.launch_time.timestamp() if instance.launch_time else 0.0, instance.instance_id)


def run_instances_request(spec: LaunchSpec, client_token: str, count: int = 1) -> RunInstancesRequestTypeDef:
    """RunInstances arguments that copy the original's configuration into the pool: up to
    `count` instances (as many as EC2 has capacity for, at least one)."""
    tags = [{"Key": k, "Value": v} for k, v in spec.tags.items()]
    settings = spec.settings
    request: dict[str, Any] = {
        "ImageId": spec.image_id,
        "InstanceType": spec.instance_type,
        "MinCount": 1,
        "MaxCount": count,
        "SubnetId": spec.subnet_id,
        "SecurityGroupIds": list(settings.security_group_ids),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
        "EbsOptimized": settings.ebs_optimized,
        "Monitoring": {"Enabled": settings.monitoring},
        "ClientToken": client_token[:64],
    }
    if spec.market == "spot":
        request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot_options(spec)}
        request["TagSpecifications"].append({"ResourceType": "spot-instances-request", "Tags": tags})
        if spec.interruption_behavior == "hibernate":  # EC2 hibernates only an instance launched for it
            request["HibernationOptions"] = {"Configured": True}
    elif settings.hibernation:  # on-demand (a revert's, a fallback): as the instance it replaces was launched
        request["HibernationOptions"] = {"Configured": True}
    if settings.key_name:
        request["KeyName"] = settings.key_name
    if settings.instance_profile_arn:
        request["IamInstanceProfile"] = {"Arn": settings.instance_profile_arn}
    if spec.user_data:  # EC2 reports it base64-encoded; boto3 encodes what it is given: hand it the original
        request["UserData"] = base64.b64decode(spec.user_data)
    if settings.metadata_http_tokens or settings.metadata_hop_limit:
        request["MetadataOptions"] = {"HttpEndpoint": settings.metadata_http_endpoint, **_present(
            HttpTokens=settings.metadata_http_tokens, HttpPutResponseHopLimit=settings.metadata_hop_limit)}
    _carry_settings(request, spec)
    return request  # type: ignore[return-value]


def spot_options(spec: LaunchSpec) -> dict[str, str]:
    """SpotOptions: a one-time request that terminates, or a persistent one that stops or
    hibernates (EC2 takes those behaviours only from a persistent request); the max price if any."""
    behavior = spec.interruption_behavior
    options = {"SpotInstanceType": "persistent" if is_persistent(behavior) else "one-time",
               "InstanceInterruptionBehavior": behavior}
    if spec.max_price is not None:
        options["MaxPrice"] = ec2_max_price(spec.max_price)
    return options


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _carry_settings(request: dict[str, Any], spec: LaunchSpec) -> None:
    """What the original was launched with beyond the basics: its root volume's settings,
    placement group and tenancy, and CPU credits (burstable replacements only: EC2 refuses a credit
    specification for any other type)."""
    settings, root = spec.settings, spec.settings.root_volume
    if root is not None:
        request["BlockDeviceMappings"] = [{"DeviceName": root.device, "Ebs": _present(
            VolumeSize=root.size_gib, VolumeType=root.volume_type, DeleteOnTermination=root.delete_on_termination,
            Encrypted=root.encrypted, KmsKeyId=root.kms_key_id if root.encrypted else None,
            Iops=root.iops if root.volume_type in PROVISIONED_IOPS_TYPES else None,
            Throughput=root.throughput if root.volume_type == "gp3" else None)}]
    placement = _present(GroupName=settings.placement_group,
                         Tenancy=settings.tenancy if settings.tenancy not in (None, "default") else None)
    if placement:
        request["Placement"] = placement
    if settings.cpu_credits and burstable_family(spec.instance_type):
        request["CreditSpecification"] = {"CpuCredits": settings.cpu_credits}


def _volume(instance: Instance, raw: Any) -> Volume:
    device = raw["_at"].get("Device", "")
    delete = next((d for dev, vid, d in instance.block_devices if vid == raw["VolumeId"]), False)
    return Volume(volume_id=raw["VolumeId"], device=device, size_gib=int(raw.get("Size", 0)),
                  volume_type=raw.get("VolumeType", ""), iops=raw.get("Iops"), throughput=raw.get("Throughput"),
                  encrypted=bool(raw.get("Encrypted")), kms_key_id=raw.get("KmsKeyId"), delete_on_termination=delete,
                  multi_attach=bool(raw.get("MultiAttachEnabled")),
                  root=device == instance.root_device)


def _with_root(volumes: tuple[Volume, ...]) -> tuple[Volume, ...]:
    """Should no volume be at the instance's RootDeviceName (an image whose mapping names another
    device), the one at a root device name images use is the root."""
    if any(v.root for v in volumes):
        return volumes
    return tuple(v.model_copy(update={"root": v.device in ROOT_DEVICES}) for v in volumes)


class Ec2Fleet:
    def __init__(self, ec2: EC2Client, launcher: Callable[[], EC2Client] | None = None):
        """`launcher` makes the client of `launch_many`'s RunInstances calls (when first needed):
        one that does not retry throttling itself, so the wave engine learns at once that EC2's
        bucket is empty."""
        self.ec2, self._launcher_factory = ec2, launcher
        self._launcher: EC2Client | None = None

    @property
    def launcher(self) -> EC2Client:
        if self._launcher is None:
            self._launcher = self._launcher_factory() if self._launcher_factory else self.ec2
        return self._launcher

    # --- reading --------------------------------------------------------------------------
    def find(self, selector: Selector) -> list[Instance]:
        """Instances named by id, or else carrying every selector tag (terminated ones aside).
        Unknown ids are simply absent (the caller reports them)."""
        states: FilterTypeDef = {"Name": "instance-state-name", "Values": list(LIVE_STATES)}
        if selector.instance_ids:
            return [i for chunk in chunks(selector.instance_ids, DESCRIBE_BATCH)
                    for i in self._describe([{"Name": "instance-id", "Values": chunk}, states])]
        tag_filters: list[FilterTypeDef] = [{"Name": f"tag:{k}", "Values": [v]} for k, v in selector.tags.items()]
        return list(self._describe([*tag_filters, states], page_size=1000))

    def describe(self, instance_ids: Iterable[str]) -> dict[str, Instance]:
        """Instances by id; ids that do not exist (any more) are simply absent. Filtering on
        instance-id instead of InstanceIds avoids InvalidInstanceID.NotFound."""
        return {i.instance_id: i for chunk in chunks(sorted(set(instance_ids)), DESCRIBE_BATCH)
                for i in self._describe([{"Name": "instance-id", "Values": chunk}])}

    def find_replacements(self, migration_id: str, original_ids: list[str]) -> dict[str, Instance]:
        """original id -> replacement already launched for it by this migration (a retried or
        timed-out invocation finds what it launched but did not record)."""
        found: dict[str, Instance] = {}
        for chunk in chunks(sorted(original_ids), DESCRIBE_BATCH):
            for instance in self._describe([
                {"Name": f"tag:{MIGRATION_ID_TAG}", "Values": [migration_id]},
                {"Name": f"tag:{REPLACES_TAG}", "Values": chunk},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]):
                found[instance.tags[REPLACES_TAG]] = instance
        return found

    def find_successors(self, instance_ids: list[str]) -> dict[str, Instance]:
        """interrupted id -> the replacement an interruption launched for it (pending or running),
        by its succeeds tag: a retried invocation finds what it launched but did not record.
        Should there be more than one, the earliest launched."""
        found: dict[str, Instance] = {}
        for chunk in chunks(sorted(set(instance_ids)), DESCRIBE_BATCH):
            successors = self._describe([
                {"Name": f"tag:{SUCCEEDS_TAG}", "Values": chunk},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ])
            for instance in sorted(successors, key=_launched_first):
                found.setdefault(instance.tags[SUCCEEDS_TAG], instance)
        return found

    def launched_in_batch(self, migration_id: str, batch: str) -> list[Instance]:
        """The live instances one `launch_many` call launched, in launch order."""
        found = self._describe([
            {"Name": f"tag:{MIGRATION_ID_TAG}", "Values": [migration_id]},
            {"Name": f"tag:{LAUNCH_BATCH_TAG}", "Values": [batch]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ])
        return sorted(found, key=lambda i: i.launch_index)

    def managed(self) -> list[Instance]:
        """Every pending or running instance the product launched."""
        return list(self._describe([
            {"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]))

    def fallbacks(self) -> list[Instance]:
        """Every running on-demand instance an interruption launched (managed, succeeding an
        instance): one DescribeInstances filtered by tag; EC2 cannot filter on-demand, so here."""
        return [i for i in self._describe([
            {"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]},
            {"Name": "tag-key", "Values": [SUCCEEDS_TAG]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]) if is_fallback(i)]

    def _describe(self, filters: list[FilterTypeDef], page_size: int | None = None) -> Iterator[Instance]:
        kwargs: dict[str, Any] = {"Filters": filters}
        if page_size:
            kwargs["PaginationConfig"] = {"PageSize": page_size}
        with transient_errors():
            for page in self.ec2.get_paginator("describe_instances").paginate(**kwargs):
                for reservation in page["Reservations"]:
                    yield from (to_instance(i) for i in reservation["Instances"])

    def type_traits(self, instance_types: Iterable[str]) -> dict[str, TypeTraits]:
        """Instance storage and burstability per type, from DescribeInstanceTypes."""
        traits: dict[str, TypeTraits] = {}
        with transient_errors():
            for chunk in chunks(sorted(set(instance_types)), TYPES_BATCH):
                for page in self.ec2.get_paginator("describe_instance_types").paginate(InstanceTypes=chunk):  # type: ignore[arg-type]
                    for it in page["InstanceTypes"]:
                        traits[it["InstanceType"]] = TypeTraits(
                            instance_storage=bool(it.get("InstanceStorageSupported")),
                            burstable=bool(it.get("BurstablePerformanceSupported")),
                        )
        return traits

    def user_data(self, instance_id: str) -> str | None:
        with transient_errors():
            attribute = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        return attribute.get("UserData", {}).get("Value")

    def user_data_of(self, instance_ids: list[str]) -> dict[str, str | None]:
        """Instance id -> its user data. EC2 answers one instance a call: the calls run
        PER_INSTANCE_CONCURRENCY at a time (the client is thread-safe; its adaptive retries pace
        them to EC2's bucket)."""
        return dict(zip(instance_ids, _concurrently(self.user_data, instance_ids), strict=True))

    def subnets_by_zone(self, vpc_id: str) -> dict[str, str]:
        """One subnet per AZ of the VPC (the lowest id, so the choice is stable)."""
        with transient_errors():
            page = self.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
        subnets: dict[str, str] = {}
        for subnet in sorted(page["Subnets"], key=lambda s: s["SubnetId"]):
            subnets.setdefault(subnet["AvailabilityZone"], subnet["SubnetId"])
        return subnets

    # --- changing ---------------------------------------------------------------------------
    def launch(self, spec: LaunchSpec, client_token: str) -> str:
        """Launch one instance; capacity refusals become CapacityRefused (try the next pool).

        The capacity codes are looked at first: EC2 answers InsufficientInstanceCapacity as a
        server error (HTTP 500), which is the pool's answer, not a transient failure."""
        try:
            with transient_errors():
                try:
                    response = self.ec2.run_instances(**run_instances_request(spec, client_token))
                except ClientError as exc:
                    if error_code(exc) in CAPACITY_ERRORS:
                        raise CapacityRefused(error_code(exc) or "", str(exc)) from exc
                    raise
        except ClientError as exc:  # a definite answer from EC2 (transient ones are TransientAwsError by now)
            raise LaunchRefused(f"{error_code(exc)}: {exc}") from exc
        return response["Instances"][0]["InstanceId"]

    def launch_many(self, spec: LaunchSpec, count: int, client_token: str) -> list[str]:
        """Launch up to `count` instances of one configuration in one call; their ids in launch
        order (AmiLaunchIndex). Fewer than asked means the pool had no capacity for more.
        CapacityRefused: none at all in this pool; LaunchThrottled: EC2's bucket is empty."""
        try:
            with transient_errors():
                try:
                    response = self.launcher.run_instances(**run_instances_request(spec, client_token, count))
                except ClientError as exc:
                    if error_code(exc) in CAPACITY_ERRORS:
                        raise CapacityRefused(error_code(exc) or "", str(exc)) from exc
                    if error_code(exc) == THROTTLED:
                        raise LaunchThrottled(str(exc)) from exc
                    raise
        except ClientError as exc:  # a definite answer from EC2 (transient ones are TransientAwsError by now)
            raise LaunchRefused(f"{error_code(exc)}: {exc}") from exc
        launched = sorted(response["Instances"], key=lambda i: i.get("AmiLaunchIndex", 0))
        return [i["InstanceId"] for i in launched]

    def tag(self, instance_id: str, tags: Mapping[str, str]) -> None:
        with transient_errors():
            self.ec2.create_tags(Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def tag_each(self, tags: Mapping[str, Mapping[str, str]]) -> None:
        """Instance id -> its own tags: one CreateTags each, PER_INSTANCE_CONCURRENCY at a time."""
        _concurrently(lambda item: self.tag(*item), list(tags.items()))

    def start(self, instance_ids: list[str]) -> dict[str, CapacityRefused | StartRefused]:
        """Start the instances; those EC2 refuses -> why. One refused instance fails a whole
        StartInstances call, so a refused batch is started again one instance at a time."""
        refused: dict[str, CapacityRefused | StartRefused] = {}
        for chunk in chunks(sorted(instance_ids), STATE_CHANGE_BATCH):
            why = self._start(chunk)
            if why is None:
                continue
            if len(chunk) == 1:
                refused[chunk[0]] = why
                continue
            refused.update({i: w for i in chunk if (w := self._start([i])) is not None})
        return refused

    def _start(self, instance_ids: list[str]) -> CapacityRefused | StartRefused | None:
        try:
            with transient_errors():
                try:
                    self.ec2.start_instances(InstanceIds=instance_ids)
                except ClientError as exc:  # capacity first: EC2 answers it as HTTP 500, not a transient error
                    if error_code(exc) in CAPACITY_ERRORS:
                        return CapacityRefused(error_code(exc) or "", str(exc))
                    raise
        except ClientError as exc:  # a definite answer (transient ones are TransientAwsError by now)
            return StartRefused(f"{error_code(exc)}: {exc}")
        return None

    def inventory(self, instances: list[Instance]) -> dict[str, Inventory]:
        """Instance id -> what it carries: its volumes (DescribeVolumes), Elastic IPs
        (DescribeAddresses) and, for burstable types, CPU credits; calls grow with pages."""
        ids = sorted({i.instance_id for i in instances})
        volumes, addresses = self._volumes(ids), self._addresses(ids)
        credits = self._cpu_credits([i.instance_id for i in instances if burstable_family(i.instance_type)])
        return {i.instance_id: Inventory(
            volumes=_with_root(tuple(_volume(i, raw) for raw in volumes.get(i.instance_id, []))),
            interfaces=i.interfaces, addresses=tuple(addresses.get(i.instance_id, ())),
            hibernation=i.settings.hibernation, source_dest_check=i.source_dest_check,
            cpu_credits=credits.get(i.instance_id)) for i in instances}

    def _volumes(self, instance_ids: list[str]) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        paginator = self.ec2.get_paginator("describe_volumes")
        with transient_errors():
            for chunk in chunks(instance_ids, VOLUME_FILTER_VALUES):
                for page in paginator.paginate(Filters=[{"Name": "attachment.instance-id", "Values": chunk}]):
                    for volume in page.get("Volumes", []):
                        for attachment in volume.get("Attachments", []):
                            if attachment.get("InstanceId") in chunk:
                                found.setdefault(attachment["InstanceId"], []).append({**volume, "_at": attachment})
        return found

    def _addresses(self, instance_ids: list[str]) -> dict[str, list[ElasticIp]]:
        found: dict[str, list[ElasticIp]] = {}
        with transient_errors():
            for chunk in chunks(instance_ids, VOLUME_FILTER_VALUES):
                page = self.ec2.describe_addresses(Filters=[{"Name": "instance-id", "Values": chunk}])
                for address in page.get("Addresses", []):
                    if address.get("AllocationId") and address.get("InstanceId"):
                        found.setdefault(address["InstanceId"], []).append(ElasticIp(
                            allocation_id=address["AllocationId"], public_ip=address.get("PublicIp", ""),
                            private_ip=address.get("PrivateIpAddress"),
                            interface_id=address.get("NetworkInterfaceId")))
        return found

    def _cpu_credits(self, instance_ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with transient_errors():
            for chunk in chunks(instance_ids, CREDITS_BATCH):
                page = self.ec2.describe_instance_credit_specifications(InstanceIds=chunk)
                found.update({c["InstanceId"]: c["CpuCredits"] for c in page.get("InstanceCreditSpecifications", [])
                              if c.get("CpuCredits")})
        return found

    def associate_address(self, allocation_id: str, instance_id: str, interface_id: str | None = None,
                          private_ip: str | None = None) -> None:
        """The Elastic IP now points at `instance_id` (taken from wherever it was): at its interface
        and private IP when named, which EC2 requires of an instance with several interfaces."""
        target: dict[str, Any] = {"NetworkInterfaceId": interface_id} if interface_id else {"InstanceId": instance_id}
        if interface_id and private_ip:
            target["PrivateIpAddress"] = private_ip
        with transient_errors():
            self.ec2.associate_address(AllocationId=allocation_id, AllowReassociation=True, **target)

    def set_source_dest_check(self, instance_id: str, enabled: bool) -> None:
        with transient_errors():
            self.ec2.modify_instance_attribute(InstanceId=instance_id, SourceDestCheck={"Value": enabled})

    def status_checks(self, instance_ids: list[str]) -> dict[str, StatusChecks]:
        """Instance id -> its two EC2 status checks; instances not running are absent.
        DescribeInstanceStatus takes 100 ids a call."""
        found: dict[str, StatusChecks] = {}
        paginator = self.ec2.get_paginator("describe_instance_status")
        with transient_errors():
            for chunk in chunks(sorted(set(instance_ids)), STATUS_BATCH):
                for page in paginator.paginate(InstanceIds=chunk):
                    for status in page.get("InstanceStatuses", []):
                        found[status["InstanceId"]] = StatusChecks(
                            instance=(status.get("InstanceStatus") or {}).get("Status", "initializing"),
                            system=(status.get("SystemStatus") or {}).get("Status", "initializing"))
        return found

    def live_replacements(self) -> list[Instance]:
        """Every pending or running replacement any migration launched (they name their original)."""
        return list(self._describe([
            {"Name": "tag-key", "Values": [REPLACES_TAG]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]))

    def launched_for(self, migration_id: str) -> list[Instance]:
        """Every instance launched for the migration that is not terminated: its replacements (a
        stateful move's Spot instance is stopped for a while), and their own interruption or
        rebalance replacements (which keep the migration's tags)."""
        return list(self._describe([
            {"Name": f"tag:{MIGRATION_ID_TAG}", "Values": [migration_id]},
            {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
        ]))

    def stop(self, instance_ids: list[str]) -> None:
        with transient_errors():
            for chunk in chunks(sorted(instance_ids), STATE_CHANGE_BATCH):
                self.ec2.stop_instances(InstanceIds=chunk)

    def terminate(self, instance_ids: list[str]) -> None:
        """Terminate; a persistent Spot request (a stateful move's, or one that stops or hibernates)
        is cancelled first, or it would launch the instance again."""
        self.cancel_spot_requests(instance_ids)
        with transient_errors():
            for chunk in chunks(sorted(instance_ids), STATE_CHANGE_BATCH):
                self.ec2.terminate_instances(InstanceIds=chunk)

    def cancel_spot_requests(self, instance_ids: list[str]) -> None:
        """Cancel the Spot requests of the instances: a persistent one (a stateful move's, or one
        that stops or hibernates on interruption) would start or launch its instance again; a
        cancelled request leaves its instance as it is (cancelling a one-time one changes nothing)."""
        requests = sorted({i.spot_request_id for i in self.describe(instance_ids).values() if i.spot_request_id})
        with transient_errors():
            for group in chunks(requests, STATE_CHANGE_BATCH):
                self.ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=group)

    # --- the pieces a stateful move carries -----------------------------------------------------
    def pieces(self, volume_ids: list[str], interface_ids: list[str]
               ) -> tuple[dict[str, VolumeAt], dict[str, InterfaceAt]]:
        """Where each volume and interface is now; those EC2 no longer knows are absent."""
        volumes: dict[str, VolumeAt] = {}
        interfaces: dict[str, InterfaceAt] = {}
        with transient_errors():
            for chunk in chunks(sorted(set(volume_ids)), VOLUME_FILTER_VALUES):
                for volume in self.ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": chunk}])["Volumes"]:
                    attachment = (volume.get("Attachments") or [{}])[0]
                    volumes[volume["VolumeId"]] = VolumeAt(
                        state=volume.get("State", ""), instance_id=attachment.get("InstanceId"),
                        device=attachment.get("Device"), attachment=attachment.get("State"))
            for chunk in chunks(sorted(set(interface_ids)), VOLUME_FILTER_VALUES):
                page = self.ec2.describe_network_interfaces(Filters=[{"Name": "network-interface-id", "Values": chunk}])
                for eni in page["NetworkInterfaces"]:
                    attached = eni.get("Attachment") or {}
                    interfaces[eni["NetworkInterfaceId"]] = InterfaceAt(
                        status=eni.get("Status", ""), instance_id=attached.get("InstanceId"),
                        device_index=attached.get("DeviceIndex"), attachment_id=attached.get("AttachmentId"))
        return volumes, interfaces

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        with transient_errors():
            self.ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device)

    def detach_volume(self, volume_id: str, instance_id: str) -> None:
        with transient_errors():
            self.ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id)

    def attach_interface(self, interface_id: str, instance_id: str, device_index: int) -> None:
        with transient_errors():
            self.ec2.attach_network_interface(NetworkInterfaceId=interface_id, InstanceId=instance_id,
                                              DeviceIndex=device_index)

    def detach_interface(self, attachment_id: str) -> None:
        with transient_errors():
            self.ec2.detach_network_interface(AttachmentId=attachment_id)

    def delete_volumes(self, volume_ids: list[str]) -> None:
        """Volumes the product created (a Spot instance's root from its image, swapped out)."""
        with transient_errors():
            for volume_id in volume_ids:
                try:
                    self.ec2.delete_volume(VolumeId=volume_id)
                except ClientError as exc:
                    if error_code(exc) != "InvalidVolume.NotFound":
                        raise

    def tag_all(self, instance_ids: list[str], tags: Mapping[str, str]) -> None:
        """The same tags on many instances: one CreateTags per 1,000."""
        with transient_errors():
            for chunk in chunks(sorted(instance_ids), TAG_BATCH):
                self.ec2.create_tags(Resources=chunk, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def untag_all(self, instance_ids: list[str], keys: list[str]) -> None:
        """These tag keys off many instances (whatever their values): one DeleteTags per 1,000."""
        with transient_errors():
            for chunk in chunks(sorted(instance_ids), TAG_BATCH):
                self.ec2.delete_tags(Resources=chunk, Tags=[{"Key": k} for k in keys])

    def snapshot_instance(self, instance_id: str, tags: Mapping[str, str]) -> tuple[list[str], int]:
        """Snapshots of every EBS volume of the instance, taken together (crash-consistent); their
        ids and total size in GiB. Snapshots carrying all `tags` already (taken by a run that
        crashed before recording them) are answered instead of taking new ones."""
        with transient_errors():
            taken = self.ec2.describe_snapshots(OwnerIds=["self"], Filters=[
                {"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]).get("Snapshots", [])
            if taken:
                return [s["SnapshotId"] for s in taken], sum(int(s.get("VolumeSize", 0)) for s in taken)
            response = self.ec2.create_snapshots(
                InstanceSpecification={"InstanceId": instance_id, "ExcludeBootVolume": False},
                Description=f"spot-migration: volumes of {instance_id} at the end of its retention",
                TagSpecifications=[{"ResourceType": "snapshot",
                                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
        snapshots = response.get("Snapshots", [])
        return [s["SnapshotId"] for s in snapshots], sum(int(s.get("VolumeSize", 0)) for s in snapshots)

    def snapshot_states(self, snapshot_ids: list[str]) -> dict[str, str]:
        """Snapshot id -> pending | completed | error; those EC2 does not know are absent."""
        found: dict[str, str] = {}
        with transient_errors():
            for chunk in chunks(sorted(set(snapshot_ids)), VOLUME_FILTER_VALUES):
                page = self.ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": chunk}],
                                                   OwnerIds=["self"])
                found.update({s["SnapshotId"]: s.get("State", "") for s in page.get("Snapshots", [])})
        return found

    def set_user_data(self, instance_id: str, user_data: str) -> None:
        """Set a stopped instance's user data (base64, as EC2 reports it)."""
        with transient_errors():
            self.ec2.modify_instance_attribute(InstanceId=instance_id,
                                               UserData={"Value": base64.b64decode(user_data)})
