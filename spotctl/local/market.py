"""A simulated Spot market for moto, whose Spot prices are a constant 0.00001.

Prices: per pool (instance type, AZ), a discount from the on-demand price with a little
hourly movement over the last day, served by DescribeSpotPriceHistory with its real
time filter, ProductDescriptions filter and pagination. A licensed product (RHEL, Windows)
costs the pool's Linux/UNIX Spot price plus its hourly licence fee, the fee the bundled
catalogs put between its on-demand price and the Linux one. Capacity: pools can refuse
launches with the errors EC2 really returns (InsufficientInstanceCapacity, ...), for a
number of times or for ever. Launches of several: EC2 launches up to MaxCount (moto
launches MinCount). Billing products: moto reports no PlatformDetails/UsageOperation; here
every instance and image reports them from its image, Linux/UNIX unless the image is
Windows or was registered as licensed (``license_image``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.core.types import Base64EncodedString
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.amis import Ami
from moto.ec2.models.elastic_ip_addresses import ElasticAddress, ElasticAddressBackend
from moto.ec2.models.instances import Instance, InstanceBackend
from moto.ec2.models.spot_requests import SpotInstanceRequest, SpotRequestBackend
from moto.ec2.responses import instances as instance_responses
from moto.ec2.responses.instances import InstanceResponse
from moto.ec2.responses.spot_instances import SpotInstances
from moto.ec2.utils import parse_user_data, random_spot_request_id

from spot_core.domain.pricing import LINUX, SPOT_DESCRIPTIONS, BillingProduct, catalog_on_demand_price

DEFAULT_PAGE = 1000
VPC_SUFFIX = " (Amazon VPC)"  # EC2-Classic era descriptions, still accepted: same prices
_request = threading.local()  # the RunInstances request being answered on this thread
BILLING_FIELDS = ("platform_details", "usage_operation")  # moto model attributes behind the response fields


@dataclass
class SpotMarket:
    region: str
    seed: int = 7
    discount: float = 0.65  # mean Spot discount from on-demand
    spread: float = 0.06  # pool-to-pool variation of the discount
    prices: dict[tuple[str, str], float] = field(default_factory=dict)  # explicit overrides
    refusals: list[dict] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # what was refused, for reports
    # AMI id -> (PlatformDetails, UsageOperation) of an image registered as licensed
    licensed_images: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._originals: dict[str, Any] = {}

    # --- prices --------------------------------------------------------------------
    def set_price(self, instance_type: str, availability_zone: str, price: float) -> None:
        self.prices[(instance_type, availability_zone)] = price

    def price(self, instance_type: str, availability_zone: str, hour: int = 0, product: str = LINUX) -> float | None:
        """Spot price of a pool for a Spot product description (Linux/UNIX unless named)."""
        linux = self._linux_price(instance_type, availability_zone, hour)
        fee = self.licence_fee(instance_type, product)
        return None if linux is None or fee is None else round(linux + fee, 5)

    def licence_fee(self, instance_type: str, product: str) -> float | None:
        """Hourly licence fee of ``product`` on ``instance_type``, as the bundled catalogs
        have it (its on-demand price minus the Linux/UNIX one); None when they do not know it."""
        if product == LINUX:
            return 0.0
        licensed = catalog_on_demand_price(instance_type, self.region, product)
        linux = catalog_on_demand_price(instance_type, self.region)
        return None if licensed is None or linux is None else licensed - linux

    def _linux_price(self, instance_type: str, availability_zone: str, hour: int) -> float | None:
        if (instance_type, availability_zone) in self.prices:
            return self.prices[(instance_type, availability_zone)]
        on_demand = catalog_on_demand_price(instance_type, self.region)
        if on_demand is None:
            return None
        rng = random.Random(f"{self.seed}:{instance_type}:{availability_zone}")
        pool_discount = min(0.9, max(0.3, rng.gauss(self.discount, self.spread)))
        wobble = random.Random(f"{self.seed}:{instance_type}:{availability_zone}:{hour}").uniform(-0.015, 0.015)
        return round(on_demand * (1 - pool_discount) * (1 + wobble), 5)

    def history(self, instance_types: list[str], zones: list[str], start: datetime, end: datetime,
                products: list[str] | None = None) -> list[dict]:
        """Hourly price changes in [start, end], plus the price in force at `start`, per Spot
        product description (all of them when ``products`` is None, as EC2 answers)."""
        first = start.replace(minute=0, second=0, microsecond=0)
        items = [item for product in (products or list(SPOT_DESCRIPTIONS)) for itype in instance_types
                 for az in zones for item in self._pool_history(itype, az, product, first, end)]
        items.sort(key=lambda i: i["Timestamp"], reverse=True)  # EC2 returns newest first
        return items

    def _pool_history(self, itype: str, az: str, description: str, t: datetime, end: datetime) -> Iterator[dict]:
        product = description.removesuffix(VPC_SUFFIX)
        if product not in SPOT_DESCRIPTIONS:
            return
        while t <= end:
            price = self.price(itype, az, hour=int(t.timestamp() // 3600), product=product)
            if price is None:
                return
            yield {"InstanceType": itype, "ProductDescription": description,
                   "SpotPrice": f"{price:.6f}", "AvailabilityZone": az, "Timestamp": t}
            t += timedelta(hours=1)

    # --- billing products ----------------------------------------------------------
    def license_image(self, image_id: str, platform_details: str, usage_operation: str | None = None) -> None:
        """Make ``image_id`` a licensed image: every instance launched from it (replacements
        included) reports this billing product, as EC2 does. ``usage_operation`` defaults
        to the product's documented billing code."""
        code = usage_operation or BillingProduct.named(platform_details).usage_operation
        self.licensed_images[image_id] = (platform_details, code)

    def billing(self, image_id: str | None, platform: str | None) -> tuple[str, str]:
        """(PlatformDetails, UsageOperation) of an instance or image: its registered licence,
        else Windows for a Windows image, else Linux/UNIX."""
        if image_id in self.licensed_images:
            return self.licensed_images[image_id]
        default = BillingProduct.of(None, None, platform)
        return default.name, default.usage_operation

    # --- capacity ------------------------------------------------------------------
    def refuse(self, instance_type: str | None = None, availability_zone: str | None = None,
               code: str = "InsufficientInstanceCapacity", times: int | None = None) -> None:
        """Refuse Spot launches in matching pools (None matches any) `times` times, or always."""
        self.refusals.append({"type": instance_type, "az": availability_zone, "code": code, "left": times})

    def check_launch(self, instance_type: str, availability_zone: str) -> None:
        for rule in self.refusals:
            if rule["type"] not in (None, instance_type) or rule["az"] not in (None, availability_zone):
                continue
            if rule["left"] is not None:
                if rule["left"] <= 0:
                    continue
                rule["left"] -= 1
            self.refused.append((instance_type, availability_zone, rule["code"]))
            raise EC2ClientError(rule["code"], "There is no Spot capacity available that matches your request "
                                               f"({instance_type} in {availability_zone}).")

    def check_max_price(self, instance_type: str, availability_zone: str, max_price: str | None,
                        product: str = LINUX) -> None:
        """EC2 refuses a Spot launch whose max price is below the pool's Spot price now."""
        if max_price is None:
            return
        price = self.price(instance_type, availability_zone, hour=int(time.time() // 3600), product=product)
        if price is not None and float(max_price) < price:
            self.refused.append((instance_type, availability_zone, "SpotMaxPriceTooLow"))
            raise EC2ClientError("SpotMaxPriceTooLow", f"Your Spot request price of {max_price} is lower than the "
                                 f"minimum required Spot request fulfillment price of {price:.6f}.")

    # --- wiring into moto -----------------------------------------------------------
    def install(self) -> None:
        market = self
        self._originals = {
            "history": SpotInstances.describe_spot_price_history,
            "run": InstanceBackend.run_instances,
            "run_response": InstanceResponse.run_instances,
            "parse_user_data": instance_responses.parse_user_data,
            "associate_address": ElasticAddressBackend.associate_address,
            "cancel_spot": SpotRequestBackend.cancel_spot_instance_requests,
        }
        SpotRequestBackend.cancel_spot_instance_requests = _cancel_as_ec2_does(  # type: ignore[method-assign]
            self._originals["cancel_spot"])
        ElasticAddressBackend.associate_address = _associate_as_ec2_does(  # type: ignore[method-assign]
            self._originals["associate_address"])
        ElasticAddress.instance = _ADDRESS_INSTANCE  # type: ignore[attr-defined]
        instance_responses.parse_user_data = _user_data_as_ec2_takes_it
        original_response = self._originals["run_response"]
        original_run = self._originals["run"]

        def describe_spot_price_history(response: SpotInstances) -> Any:
            from moto.core.responses import ActionResult

            types = response._get_param("InstanceTypes", [])
            filters = response._filters_from_querystring()
            zones = (filters.get("availability-zone")
                     or [z.name for z in response.ec2_backend.describe_availability_zones()])
            now = datetime.now(UTC)
            start = _as_datetime(response._get_param("StartTime")) or now
            end = _as_datetime(response._get_param("EndTime")) or now
            products = response._get_param("ProductDescriptions", []) or filters.get("product-description")
            items = market.history(types, zones, start, end, products or None)
            offset = int(response._get_param("NextToken") or 0)
            size = int(response._get_param("MaxResults") or DEFAULT_PAGE)
            page = items[offset:offset + size]
            result: dict[str, Any] = {"SpotPriceHistory": page}
            if offset + size < len(items):
                result["NextToken"] = str(offset + size)
            return ActionResult(result)

        def run_instances(backend: Any, image_id: str, count: int, user_data: Any, security_group_names: Any,
                          **kwargs: Any) -> Any:
            if kwargs.get("instance_market_options"):
                az = kwargs.get("placement")
                if not az and kwargs.get("subnet_id"):
                    az = backend.get_subnet(kwargs["subnet_id"]).availability_zone
                market.check_launch(kwargs.get("instance_type", "m1.small"), az)
                market.check_max_price(kwargs.get("instance_type", "m1.small"), az,
                                       (getattr(_request, "spot_options", None) or {}).get("MaxPrice"),
                                       market.billing(image_id, _image_platform(backend, image_id))[0])
            reservation = original_run(backend, image_id, count, user_data, security_group_names, **kwargs)
            spot = getattr(_request, "spot_options", None) if kwargs.get("instance_market_options") else None
            if spot is not None:
                for instance in reservation.instances:
                    _spot_request(backend, instance, spot, kwargs.get("tags") or {})
            return reservation

        def run_instances_up_to_max_count(response: InstanceResponse) -> Any:
            """EC2 launches as many as MaxCount when it has the capacity; moto launches MinCount."""
            get = response._get_param

            def get_param(name: str, if_none: Any = None) -> Any:
                return get("MaxCount", if_none=get(name, if_none)) if name == "MinCount" else get(name, if_none)

            response._get_param = get_param  # type: ignore[method-assign]  # this request only
            _request.spot_options = {k: get(f"InstanceMarketOptions.SpotOptions.{k}")
                                     for k in ("SpotInstanceType", "InstanceInterruptionBehavior", "MaxPrice")
                                     if get(f"InstanceMarketOptions.SpotOptions.{k}")}  # moto passes the market only
            try:
                return original_response(response)
            finally:
                del response._get_param
                _request.spot_options = None

        SpotInstances.describe_spot_price_history = describe_spot_price_history
        InstanceBackend.run_instances = run_instances
        InstanceResponse.run_instances = run_instances_up_to_max_count  # type: ignore[method-assign]
        self._install_billing()

    def _install_billing(self) -> None:
        """DescribeInstances/DescribeImages read ``platform_details`` and ``usage_operation``
        off moto's models, which have none: answer them from the image."""
        market = self

        def billing_field(image_of: Callable[[Any], str], index: int) -> property:
            return property(lambda model: market.billing(image_of(model), model.platform)[index])

        for model, image_of in ((Instance, _instance_image), (Ami, _ami_image)):
            for index, name in enumerate(BILLING_FIELDS):
                setattr(model, name, billing_field(image_of, index))

    def uninstall(self) -> None:
        if self._originals:
            SpotInstances.describe_spot_price_history = self._originals["history"]
            InstanceBackend.run_instances = self._originals["run"]
            InstanceResponse.run_instances = self._originals["run_response"]  # type: ignore[method-assign]
            instance_responses.parse_user_data = self._originals["parse_user_data"]
            ElasticAddressBackend.associate_address = self._originals["associate_address"]  # type: ignore[method-assign]
            SpotRequestBackend.cancel_spot_instance_requests = self._originals["cancel_spot"]  # type: ignore[method-assign]
            if "instance" in vars(ElasticAddress):
                delattr(ElasticAddress, "instance")
            for model in (Instance, Ami):
                for name in BILLING_FIELDS:
                    if name in vars(model):
                        delattr(model, name)
            self._originals = {}


class _Fulfilled(SpotInstanceRequest):
    """A Spot request fulfilled by the instance RunInstances launched (moto's launches its own)."""

    def __init__(self, instance: Any, **kwargs: Any):
        self._fulfilled_by = instance
        super().__init__(**kwargs)

    def launch_instance(self) -> Any:
        return self._fulfilled_by


def _spot_request(backend: Any, instance: Any, options: dict[str, Any], tags: dict[str, Any]) -> None:
    """EC2 makes a Spot request for every Spot instance RunInstances launches (moto makes none): one
    is kept, fulfilled, for the instance, so DescribeInstances names it and it can be described and
    cancelled (a persistent one, left open, would launch its instance again)."""
    request = _Fulfilled(
        instance, ec2_backend=backend, spot_request_id=random_spot_request_id(), price=options.get("MaxPrice", ""),
        image_id=instance.image_id,
        spot_instance_type=options.get("SpotInstanceType", "one-time"), valid_from=None, valid_until=None,
        launch_group=None, availability_zone_group=None, key_name=instance.key_name, security_groups=[],
        user_data=None, instance_type=instance.instance_type, placement=None, kernel_id=None, ramdisk_id=None,
        monitoring_enabled=False, subnet_id=instance.subnet_id, tags=tags, spot_fleet_id=None,
        instance_interruption_behaviour=options.get("InstanceInterruptionBehavior", "terminate"))
    backend.spot_instance_requests[request.id] = request
    instance.spot_instance_request_id = request.id


def _cancel_as_ec2_does(cancel: Callable[..., Any]) -> Callable[..., Any]:
    """EC2 answers the cancel of a request cancelled already (it stays cancelled); moto forgets a
    cancelled request and fails on it again."""
    def cancel_spot_instance_requests(backend: Any, request_ids: list[str]) -> Any:
        return cancel(backend, [r for r in request_ids if r in backend.spot_instance_requests])
    return cancel_spot_instance_requests


def _address_instance(address: Any) -> Any:
    """EC2 names the instance of an address associated with an interface (moto names none)."""
    own = vars(address).get("_instance")
    eni = vars(address).get("eni")
    return own or (getattr(eni, "instance", None) if eni is not None else None)


def _set_address_instance(address: Any, instance: Any) -> None:
    vars(address)["_instance"] = instance


_ADDRESS_INSTANCE = property(_address_instance, _set_address_instance)


def _associate_as_ec2_does(original: Callable[..., Any]) -> Callable[..., Any]:
    """AssociateAddress as EC2 documents it: by instance id only for an instance with exactly one
    network interface, else InvalidInstanceID (moto associates with the primary one instead)."""
    def associate_address(backend: Any, instance: Any = None, eni: Any = None, address: Any = None,
                          allocation_id: Any = None, reassociate: bool = False) -> Any:
        if instance is not None and eni is None and len(instance.nics) > 1:
            raise EC2ClientError("InvalidInstanceID", f"There are multiple interfaces attached to instance "
                                 f"'{instance.id}'. Please specify an interface ID for the operation instead.")
        return original(backend, instance=instance, eni=eni, address=address, allocation_id=allocation_id,
                        reassociate=reassociate)
    return associate_address


def _user_data_as_ec2_takes_it(value: Any) -> Base64EncodedString | None:
    """ModifyInstanceAttribute's UserData.Value is a blob that the SDK base64-encodes on the wire,
    as EC2 expects; moto decodes it once more and refuses what EC2 takes. The raw bytes are kept
    as they are (RunInstances' base64 text passes through unchanged)."""
    if isinstance(value, bytes):
        try:
            return Base64EncodedString.from_encoded_bytes(value)
        except (ValueError, UnicodeDecodeError):
            return Base64EncodedString.from_raw_bytes(value)
    return parse_user_data(value)


def _as_datetime(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(float(text), UTC)


def _image_platform(backend: Any, image_id: str) -> str | None:
    image = getattr(backend, "amis", {}).get(image_id)
    return getattr(image, "platform", None) or None


def _instance_image(instance: Any) -> str:
    return str(instance.image_id)


def _ami_image(ami: Any) -> str:
    return str(ami.id)
