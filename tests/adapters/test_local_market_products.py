"""The embedded runtime bills instances as EC2 does: DescribeInstances/DescribeImages report each
instance's PlatformDetails and UsageOperation from its image, and the simulated Spot market
answers DescribeSpotPriceHistory per ProductDescription, a licensed product costing the pool's
Linux/UNIX price plus the licence fee of the bundled catalogs."""

from datetime import UTC, datetime, timedelta

import pytest
from moto.ec2.models.amis import Ami
from moto.ec2.models.instances import Instance

from spot_core.adapters.spot_prices import Ec2SpotPrices
from spot_core.domain.pricing import LINUX, RHEL, SUSE, WINDOWS, BillingProduct, catalog_on_demand_price

ZONE = "us-east-1a"


@pytest.fixture
def rt():
    from spotctl.local.runtime import LocalRuntime

    with LocalRuntime(seed=5) as runtime:
        yield runtime


def register_image(ec2, name, platform_details=None, runtime=None):
    image = ec2.register_image(Name=name, RootDeviceName="/dev/sda1", Architecture="x86_64",
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 10}}])["ImageId"]
    if platform_details:
        runtime.market.license_image(image, platform_details)
    return image


def launch(ec2, image, **options):
    return ec2.run_instances(ImageId=image, InstanceType="m5.large", MinCount=1, MaxCount=1, **options)["Instances"][0]


def billing_of(ec2, instance_ids):
    reservations = ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]
    return {i["InstanceId"]: (i.get("PlatformDetails"), i.get("UsageOperation"))
            for r in reservations for i in r["Instances"]}


def test_every_instance_reports_the_billing_product_of_its_image(rt):
    ec2 = rt.client("ec2")
    linux = launch(ec2, rt.fleet.image_id())
    windows_ami = next(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]
                       if i.get("Platform") == "windows")
    windows = launch(ec2, windows_ami)
    rhel_ami = register_image(ec2, "rhel-9", RHEL, rt)
    rhel = launch(ec2, rhel_ami)
    replacement = launch(ec2, rhel_ami, InstanceMarketOptions={"MarketType": "spot"})
    suse = launch(ec2, register_image(ec2, "sles-15", SUSE, rt))

    assert (rhel["PlatformDetails"], rhel["UsageOperation"]) == (RHEL, "RunInstances:0010"), "RunInstances answers too"
    assert billing_of(ec2, [i["InstanceId"] for i in (linux, windows, rhel, replacement, suse)]) == {
        linux["InstanceId"]: (LINUX, "RunInstances"),
        windows["InstanceId"]: (WINDOWS, "RunInstances:0002"),
        rhel["InstanceId"]: (RHEL, "RunInstances:0010"),
        replacement["InstanceId"]: (RHEL, "RunInstances:0010"),  # launched from the same AMI
        suse["InstanceId"]: (SUSE, "RunInstances:000g"),
    }
    images = {i["ImageId"]: (i["PlatformDetails"], i["UsageOperation"])
              for i in ec2.describe_images(ImageIds=[rhel_ami, windows_ami])["Images"]}
    assert images == {rhel_ami: (RHEL, "RunInstances:0010"), windows_ami: (WINDOWS, "RunInstances:0002")}


def test_the_reported_fields_name_a_product_the_domain_knows(rt):
    ec2 = rt.client("ec2")
    image = register_image(ec2, "byol", "Red Hat BYOL Linux", rt)
    unknown = register_image(ec2, "odd")
    rt.market.license_image(unknown, "Rocky Linux", "RunInstances:0x00")
    described = billing_of(ec2, [launch(ec2, image)["InstanceId"], launch(ec2, unknown)["InstanceId"]])
    products = sorted((BillingProduct.of(*fields, None) for fields in described.values()), key=lambda p: p.name)
    assert [(p.name, p.priced_as, p.unsupported_reason is None) for p in products] == [
        ("Red Hat BYOL Linux", LINUX, True), ("Rocky Linux", "Rocky Linux", False),
    ]


def spot_history(ec2, descriptions=None, hours=3, now=None):
    now = now or datetime.now(UTC)
    request = {"InstanceTypes": ["m5.large", "m6g.large"], "StartTime": now - timedelta(hours=hours), "EndTime": now,
               "Filters": [{"Name": "availability-zone", "Values": [ZONE]}]}
    if descriptions is not None:
        request["ProductDescriptions"] = descriptions
    return ec2.describe_spot_price_history(**request)["SpotPriceHistory"]


def test_spot_history_honours_the_product_descriptions_filter(rt):
    ec2 = rt.client("ec2")
    for description in (LINUX, RHEL, WINDOWS, "Windows (Amazon VPC)"):
        items = spot_history(ec2, [description])
        assert items and {i["ProductDescription"] for i in items} == {description}
    assert {i["InstanceType"] for i in spot_history(ec2, [WINDOWS])} == {"m5.large"}, "no Windows on Graviton"
    assert spot_history(ec2, [SUSE]) == [], "no catalog price for SUSE: no Spot price either"
    both = spot_history(ec2, [LINUX, RHEL])
    assert {i["ProductDescription"] for i in both} == {LINUX, RHEL}
    assert {i["ProductDescription"] for i in spot_history(ec2)} == {LINUX, RHEL, WINDOWS}, "unfiltered: every product"
    stamps = [i["Timestamp"] for i in both]
    assert stamps == sorted(stamps, reverse=True), "newest first, as EC2 answers"


def test_licensed_spot_is_the_linux_pool_price_plus_the_catalog_licence_fee(rt):
    ec2, now = rt.client("ec2"), datetime.now(UTC)
    linux = {(i["InstanceType"], i["Timestamp"]): float(i["SpotPrice"]) for i in spot_history(ec2, [LINUX], now=now)}
    for product in (RHEL, WINDOWS):
        for item in spot_history(ec2, [product], now=now):
            fee = (catalog_on_demand_price(item["InstanceType"], "us-east-1", product)
                   - catalog_on_demand_price(item["InstanceType"], "us-east-1"))
            assert float(item["SpotPrice"]) == pytest.approx(linux[(item["InstanceType"], item["Timestamp"])] + fee,
                                                             abs=2e-5)
    rt.market.set_price("m5.large", ZONE, 0.03)  # an explicit Linux price moves the licensed ones with it
    assert {float(i["SpotPrice"]) for i in spot_history(ec2, [RHEL]) if i["InstanceType"] == "m5.large"} == {0.0588}


def test_the_spot_adapter_reads_each_product_from_the_runtime(rt):
    ec2 = rt.client("ec2")
    now = datetime.now(UTC)
    prices = {product: Ec2SpotPrices(ec2).statistics(["m5.large"], now, 24, product=product)
              for product in (LINUX, RHEL, WINDOWS, SUSE)}
    assert prices[SUSE] == {}
    assert set(prices[LINUX]) == set(prices[RHEL]) == set(prices[WINDOWS]) and prices[LINUX]
    for pool, stat in prices[LINUX].items():
        assert prices[RHEL][pool].median == pytest.approx(stat.median + 0.0288, abs=2e-5)  # 2 vCPUs x 0.0144
        assert prices[WINDOWS][pool].median == pytest.approx(stat.median + 0.092, abs=2e-5)  # 2 vCPUs x 0.046


def test_leaving_the_runtime_takes_the_billing_fields_off_moto():
    from spotctl.local.runtime import LocalRuntime

    with LocalRuntime(seed=5):
        assert "platform_details" in vars(Instance) and "usage_operation" in vars(Ami)
    assert not {"platform_details", "usage_operation"} & (set(vars(Instance)) | set(vars(Ami)))
