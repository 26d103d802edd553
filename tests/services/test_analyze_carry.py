"""The analysis prices each instance as the billing product it runs (a licensed image has its own
on-demand and Spot prices) and plans how it moves, with what it carries."""

from __future__ import annotations

import pytest
from builders import WEB, serving
from fakes import FakeOnDemandPrices, FakeSpotPrices

from spot_core.domain.carry import ElasticIp, Interface, Inventory, Volume
from spot_core.domain.pricing import HOURS_PER_MONTH, RHEL
from spot_core.domain.request import MigrationRequest
from spot_core.domain.tags import OPT_IN_TAG
from spot_core.services.analyze import Analyze

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
RHEL_FEE = 0.0288  # per hour, for a 2-vCPU type


def analyse(p, request: dict | None = None) -> dict:
    service = Analyze(p.fleet, p.load_balancer, p.metrics, p.on_demand, p.spot_prices, p.migrations, p.plans,
                      p.pool_memory, p.locks, p.clock, p.autoscaling)
    service.run("mig-1", MigrationRequest.model_validate(request or {}))
    return {r.instance_id: r for r in p.plans.records("mig-1")}


@pytest.fixture
def priced(p):
    p.on_demand = FakeOnDemandPrices({"m5.large": 0.096})
    p.spot_prices = FakeSpotPrices({(t, z): 0.035 for t in ("m5.large", "m5a.large", "m6i.large") for z in ZONES})
    return p


def test_a_licensed_image_is_priced_with_its_own_on_demand_and_spot_prices(priced):
    p = priced
    p.on_demand.licence_fees[RHEL] = p.spot_prices.licence_fees[RHEL] = RHEL_FEE
    linux = serving(p, 1, tags={OPT_IN_TAG: "true"})[0]
    rhel = serving(p, 1, tags={OPT_IN_TAG: "true"}, product=RHEL)[0]

    plan = analyse(p)

    assert plan[linux.instance_id].on_demand_hourly == pytest.approx(0.096)
    assert plan[rhel.instance_id].on_demand_hourly == pytest.approx(0.096 + RHEL_FEE)
    assert plan[rhel.instance_id].spot_hourly == pytest.approx(0.035 + RHEL_FEE)
    assert plan[rhel.instance_id].monthly_on_demand == pytest.approx(round((0.096 + RHEL_FEE) * HOURS_PER_MONTH, 2))


def test_a_licensed_image_without_a_price_is_excluded_naming_its_product_not_priced_as_linux(priced):
    p = priced
    rhel = serving(p, 1, tags={OPT_IN_TAG: "true"}, product=RHEL)[0]

    record = analyse(p)[rhel.instance_id]

    assert record.exclusion_reason == "no_on_demand_price" and RHEL in (record.exclusion_detail or "")


def test_a_product_spot_cannot_price_is_excluded_with_the_reason(priced):
    p = priced
    pro = serving(p, 1, tags={OPT_IN_TAG: "true"}, product="Windows with SQL Server Enterprise")[0]

    record = analyse(p)[pro.instance_id]

    assert record.exclusion_reason == "unsupported_product" and "no Spot price" in (record.exclusion_detail or "")


def test_the_plan_says_what_moves_with_each_instance_and_what_cannot(priced):
    p = priced
    web, data = serving(p, 2, tags={OPT_IN_TAG: "true"})
    root = Volume(volume_id="vol-1", device="/dev/xvda", size_gib=30, volume_type="gp3", root=True)
    eni = Interface(interface_id="eni-1", device_index=0, private_ips=("10.0.0.7",), public_ip="54.0.0.7")
    eip = ElasticIp(allocation_id="eipalloc-1", public_ip="54.0.0.7", private_ip="10.0.0.7", interface_id="eni-1")
    p.fleet.set_inventory(web.instance_id, Inventory(volumes=(root,), interfaces=(eni,), addresses=(eip,)))
    disk = Volume(volume_id="vol-2", device="/dev/sdf", size_gib=500, volume_type="gp3")
    p.fleet.set_inventory(data.instance_id, Inventory(volumes=(root, disk), interfaces=(eni,)))

    plan = analyse(p)

    assert plan[web.instance_id].mode == "stateless"
    assert "Elastic IP 54.0.0.7" in plan[web.instance_id].carry.carried
    assert plan[web.instance_id].target_groups[0].arn == WEB
    excluded = plan[data.instance_id]
    assert excluded.exclusion_reason == "needs_downtime" and "data volume /dev/sdf (vol-2, 500 GiB)" in (
        excluded.exclusion_detail or "")
