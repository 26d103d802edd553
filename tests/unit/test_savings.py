"""Savings as they are: each replacement priced by the market it runs in now, less what the
stopped originals' volumes cost on (domain/outcomes.py Realised, domain/analysis.py)."""

import pytest

from spot_core.domain.analysis import InstanceFacts, build_record, summarize
from spot_core.domain.carry import Inventory, Volume
from spot_core.domain.outcomes import Realised
from spot_core.domain.plan import InstanceRecord, Pool, TargetRef
from spot_core.domain.pricing import HOURS_PER_MONTH, SpotPriceStat, storage_monthly

POOL = Pool(instance_type="m5.large", availability_zone="us-east-1a", spot_hourly=0.04)


def migrated(market: str = "spot", hourly: float = 0.04, storage: float = 0.0) -> InstanceRecord:
    record = InstanceRecord(instance_id="i-0000000000000000a", instance_type="m5.large",
                            availability_zone="us-east-1a", eligible=True, on_demand_hourly=0.10,
                            status="migrated", stopped_storage_monthly=storage)
    record.follow("i-0000000000000000b", POOL, hourly, "launched", market=market)
    return record


def test_a_replacement_on_spot_is_priced_at_todays_spot_price_of_its_pool():
    prices = {("m5.large", "us-east-1a"): SpotPriceStat("m5.large", "us-east-1a", median=0.03, p90=0.03,
                                                        maximum=0.03, samples=1)}
    realised = Realised.of([migrated()], prices)
    assert realised.monthly_spot == pytest.approx(0.03 * HOURS_PER_MONTH)
    assert (realised.on_spot, realised.on_demand_fallbacks) == (1, 0)


def test_an_on_demand_fallback_is_priced_on_demand_however_cheap_spot_is_today():
    prices = {("m5.large", "us-east-1a"): SpotPriceStat("m5.large", "us-east-1a", median=0.01, p90=0.01,
                                                        maximum=0.01, samples=1)}
    realised = Realised.of([migrated(market="on-demand", hourly=0.10)], prices)
    assert realised.monthly_spot == pytest.approx(0.10 * HOURS_PER_MONTH)
    assert realised.monthly_savings == 0.0 and realised.on_demand_fallbacks == 1


def test_the_stopped_originals_volumes_are_counted_against_the_savings():
    realised = Realised.of([migrated(storage=16.0)], {})
    assert realised.monthly_stopped_storage == 16.0
    assert realised.monthly_savings == pytest.approx((0.10 - 0.04) * HOURS_PER_MONTH - 16.0)


def test_the_plan_nets_the_volumes_a_stopped_original_keeps_paying_for():
    root = Volume(volume_id="vol-1", device="/dev/xvda", size_gib=130, volume_type="gp2", root=True)
    facts = InstanceFacts(instance_id="i-0000000000000000a", instance_type="m5.large",
                          availability_zone="us-east-1a", state="running", inventory=Inventory(volumes=(root,)))
    record = build_record(facts, on_demand_hourly=0.10, pools=[POOL], cpu_values=[],
                          target_groups=[TargetRef(arn="arn:aws:elasticloadbalancing:tg")], min_savings_pct=0)
    assert record.stopped_storage_monthly == storage_monthly([("gp2", 130)]) == 13.0
    assert record.monthly_savings == pytest.approx(0.06 * HOURS_PER_MONTH - 13.0)
    summary = summarize([record], "catalog")
    assert summary.monthly_stopped_storage == 13.0 and summary.monthly_savings == record.monthly_savings
