"""EC2: the fleet (read, launch, start, stop, terminate) and Spot price history.

Calls are batched wherever the API allows (describe, stop, start, terminate), so the
number of calls grows with pages, not with instances. RunInstances launches several
replacements at once where their originals share a configuration (`launch_many`); what
differs per replacement (the original it replaces, its name) is tagged on each afterwards.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from ..domain.batching import chunks
from ..domain.errors import CapacityRefused, LaunchRefused, LaunchThrottled, StartRefused
from ..domain.instances import CAPACITY_ERRORS, LIVE_STATES, Instance, LaunchSettings, LaunchSpec, TypeTraits
from ..domain.pricing import SpotPriceStat, spot_price_statistics
from ..domain.request import Selector
from ..domain.tags import LAUNCH_BATCH_TAG, MANAGED_TAG, MIGRATION_ID_TAG, REPLACES_TAG, SUCCEEDS_TAG
from .aws import error_code, transient_errors

THROTTLED = "RequestLimitExceeded"
PER_INSTANCE_CONCURRENCY = 8  # calls in flight for APIs that take one instance a call


def _concurrently(call: Callable[[T], R], items: list[T]) -> list[R]:
    """`call` on each item, PER_INSTANCE_CONCURRENCY at a time; the results in order. The first
    error is raised once every call has ended (what succeeded stays done: each call is
    idempotent, and the caller records progress only for what it knows succeeded)."""
    if len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=PER_INSTANCE_CONCURRENCY) as pool:
        return list(pool.map(call, items))

T = TypeVar("T")
R = TypeVar("R")

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef, RunInstancesRequestTypeDef

DESCRIBE_BATCH = 200  # instance ids per describe filter
STATE_CHANGE_BATCH = 500  # instance ids per start/stop/terminate call
VOLUME_FILTER_VALUES = 200  # values one DescribeVolumes filter takes
TYPES_BATCH = 100  # DescribeInstanceTypes and DescribeSpotPriceHistory take 100 types a call
PRODUCT = "Linux/UNIX"


def to_instance(raw: InstanceTypeDef) -> Instance:
    """An EC2 API instance, as the product sees it."""
    metadata = raw.get("MetadataOptions") or {}
    return Instance(
        instance_id=raw["InstanceId"],
        instance_type=raw["InstanceType"],
        availability_zone=raw["Placement"]["AvailabilityZone"],
        state=raw["State"]["Name"],
        subnet_id=raw.get("SubnetId"),
        vpc_id=raw.get("VpcId"),
        image_id=raw.get("ImageId"),
        lifecycle=raw.get("InstanceLifecycle"),
        platform=raw.get("Platform"),
        tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
        launch_time=raw.get("LaunchTime"),
        settings=LaunchSettings(
            security_group_ids=tuple(g["GroupId"] for g in raw.get("SecurityGroups", [])),
            key_name=raw.get("KeyName") or None,
            instance_profile_arn=(raw.get("IamInstanceProfile") or {}).get("Arn"),
            ebs_optimized=bool(raw.get("EbsOptimized", False)),
            monitoring=(raw.get("Monitoring") or {}).get("State") == "enabled",
            metadata_http_tokens=metadata.get("HttpTokens"),
            metadata_http_endpoint=metadata.get("HttpEndpoint", "enabled"),
        ),
        state_reason=(raw.get("StateReason") or {}).get("Code") or None,
        launch_index=int(raw.get("AmiLaunchIndex") or 0),
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
        request["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        }
    if settings.key_name:
        request["KeyName"] = settings.key_name
    if settings.instance_profile_arn:
        request["IamInstanceProfile"] = {"Arn": settings.instance_profile_arn}
    if spec.user_data:  # EC2 reports it base64-encoded; boto3 encodes what it is given: hand it the original
        request["UserData"] = base64.b64decode(spec.user_data)
    if settings.metadata_http_tokens:
        request["MetadataOptions"] = {"HttpTokens": settings.metadata_http_tokens,
                                      "HttpEndpoint": settings.metadata_http_endpoint}
    return request  # type: ignore[return-value]


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

    def volumes(self, instance_ids: list[str]) -> dict[str, list[tuple[str, int]]]:
        """Instance id -> its attached EBS volumes as (type, GiB): DescribeVolumes, 200 instances a filter."""
        found: dict[str, list[tuple[str, int]]] = {}
        paginator = self.ec2.get_paginator("describe_volumes")
        with transient_errors():
            for chunk in chunks(sorted(set(instance_ids)), VOLUME_FILTER_VALUES):
                for page in paginator.paginate(Filters=[{"Name": "attachment.instance-id", "Values": chunk}]):
                    for volume in page.get("Volumes", []):
                        for attachment in volume.get("Attachments", []):
                            found.setdefault(attachment.get("InstanceId", ""), []).append(
                                (volume.get("VolumeType", ""), volume.get("Size", 0)))
        return found

    def live_replacements(self) -> list[Instance]:
        """Every pending or running replacement any migration launched (they name their original)."""
        return list(self._describe([
            {"Name": "tag-key", "Values": [REPLACES_TAG]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]))

    def launched_for(self, migration_id: str) -> list[Instance]:
        """Every pending or running instance launched for the migration: its replacements, and
        their own interruption or rebalance replacements (which keep the migration's tags)."""
        return list(self._describe([
            {"Name": f"tag:{MIGRATION_ID_TAG}", "Values": [migration_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]))

    def stop(self, instance_ids: list[str]) -> None:
        with transient_errors():
            for chunk in chunks(sorted(instance_ids), STATE_CHANGE_BATCH):
                self.ec2.stop_instances(InstanceIds=chunk)

    def terminate(self, instance_ids: list[str]) -> None:
        with transient_errors():
            for chunk in chunks(sorted(instance_ids), STATE_CHANGE_BATCH):
                self.ec2.terminate_instances(InstanceIds=chunk)


class Ec2SpotPrices:
    """Spot price statistics per pool from DescribeSpotPriceHistory: one paginated request per
    100 distinct types, so calls grow with pages and types, never with instances."""

    def __init__(self, ec2: EC2Client):
        self.ec2 = ec2

    def statistics(self, instance_types: Iterable[str], now: datetime,
                   lookback_hours: float = 24) -> dict[tuple[str, str], SpotPriceStat]:
        return spot_price_statistics(self.history(instance_types, now, lookback_hours), now, lookback_hours)

    def history(self, instance_types: Iterable[str], now: datetime, lookback_hours: float) -> list[dict[str, Any]]:
        paginator = self.ec2.get_paginator("describe_spot_price_history")
        items: list[dict[str, Any]] = []
        with transient_errors():
            for chunk in chunks(sorted(set(instance_types)), TYPES_BATCH):
                for page in paginator.paginate(InstanceTypes=chunk, ProductDescriptions=[PRODUCT],  # type: ignore[arg-type]
                                               StartTime=now - timedelta(hours=lookback_hours), EndTime=now):
                    items.extend(page.get("SpotPriceHistory", []))  # type: ignore[arg-type]
        return items


class CachedSpotPrices:
    """Keeps statistics for `ttl_seconds` per set of types: a storm of interruption warnings
    for the same types in one warm execution environment reads them once."""

    def __init__(self, inner: Ec2SpotPrices, ttl_seconds: float = 300.0):
        self.inner, self.ttl = inner, ttl_seconds
        self._cache: dict[tuple[tuple[str, ...], float], tuple[float, dict[tuple[str, str], SpotPriceStat]]] = {}

    def statistics(self, instance_types: Iterable[str], now: datetime,
                   lookback_hours: float = 24) -> dict[tuple[str, str], SpotPriceStat]:
        key = (tuple(instance_types), lookback_hours)
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        stats = self.inner.statistics(key[0], now, lookback_hours)
        self._cache[key] = (time.monotonic(), stats)
        return stats
