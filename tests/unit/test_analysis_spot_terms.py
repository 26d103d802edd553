"""The analysis plans each instance's Spot terms: pools above its max price are not planned, and
a tag or a behaviour that cannot apply is an exclusion with its reason (domain/analysis.py)."""

from spot_core.domain.analysis import CarryRules, InstanceFacts, build_record
from spot_core.domain.carry import Inventory, Volume
from spot_core.domain.instances import LaunchSettings
from spot_core.domain.plan import InstanceRecord, Pool, TargetRef
from spot_core.domain.pools import MIGRATION_POOLS
from spot_core.domain.spot_options import MaxPrice
from spot_core.domain.tags import INTERRUPTION_BEHAVIOR_TAG, MAX_PRICE_TAG
from spot_core.domain.views import plan_entry

TG = TargetRef(arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/6d0ecf831eec9f09", port=80)
ON_DEMAND = 0.096
STABLE = [40.0 + (i % 3) for i in range(7 * 24)]
# every pool of the instance, in the order domain/pools.py gives them: its own type first
POOLS = [Pool(instance_type=t, availability_zone="us-east-1a", spot_hourly=price) for t, price in (
    ("m5.large", 0.060), ("m5a.large", 0.030), ("m6a.large", 0.035), ("m6i.large", 0.040), ("m7i.large", 0.045),
    ("m5n.large", 0.050))]
ROOT = Volume(volume_id="vol-0root", device="/dev/xvda", size_gib=8, volume_type="gp3", root=True, encrypted=True)


def facts(tags: dict[str, str] | None = None, hibernation: bool = False) -> InstanceFacts:
    return InstanceFacts(instance_id="i-0123456789abcdef0", instance_type="m5.large", availability_zone="us-east-1a",
                         state="running", subnet_id="subnet-0a1b2c3d",
                         tags={"Name": "web", "spot-migration:opt-in": "true", **(tags or {})},
                         inventory=Inventory(volumes=(ROOT,), hibernation=hibernation),
                         settings=LaunchSettings(hibernation=hibernation))


def record(f: InstanceFacts | None = None, pools: list[Pool] = POOLS, **rules) -> InstanceRecord:
    return build_record(f or facts(), on_demand_hourly=ON_DEMAND, pools=pools, cpu_values=STABLE, target_groups=[TG],
                        min_savings_pct=10.0, rules=CarryRules(**rules))


def test_without_a_max_price_the_first_pools_are_planned_and_ec2s_default_applies():
    planned = record()
    assert planned.eligible and planned.max_price is None
    assert planned.pools == POOLS[:MIGRATION_POOLS]
    assert planned.spot_hourly == 0.060 and planned.interruption_behavior == "terminate"


def test_pools_above_the_max_price_are_not_planned_and_the_next_ones_take_their_place():
    planned = record(max_price=MaxPrice(0.045))
    assert planned.eligible and planned.max_price == 0.045
    # m5.large (0.060) and m5n.large (0.050) are left out; m7i.large, beyond the first four, comes in
    assert [p.instance_type for p in planned.pools] == ["m5a.large", "m6a.large", "m6i.large", "m7i.large"]
    assert planned.spot_hourly == 0.030  # the savings are those of the first pool planned
    assert planned.risk == "low"


def test_a_percentage_is_resolved_from_the_on_demand_price_and_stored_on_the_record():
    planned = record(max_price=MaxPrice(40.0, percent=True))
    assert planned.max_price == round(0.4 * ON_DEMAND, 6)  # 0.0384
    assert [p.spot_hourly for p in planned.pools] == [0.030, 0.035]
    assert planned.risk == "medium"  # two pools left


def test_the_tag_overrides_the_requests_max_price():
    planned = record(facts({MAX_PRICE_TAG: "0.031"}), max_price=MaxPrice(90.0, percent=True))
    assert planned.max_price == 0.031 and [p.instance_type for p in planned.pools] == ["m5a.large"]


def test_an_instance_whose_every_pool_costs_more_than_its_max_price_is_excluded_with_the_cheapest_price():
    excluded = record(max_price=MaxPrice(25.0, percent=True))  # 0.024 USD/h
    assert not excluded.eligible and excluded.status == "excluded"
    assert excluded.exclusion_reason == "above_max_price"
    assert "0.024 USD/h (25% of on-demand)" in (excluded.exclusion_detail or "")
    assert "m5a.large/us-east-1a, costs 0.03 USD/h" in (excluded.exclusion_detail or "")


def test_an_invalid_max_price_tag_is_an_exclusion():
    excluded = record(facts({MAX_PRICE_TAG: "free"}))
    assert (excluded.eligible, excluded.exclusion_reason) == (False, "invalid_max_price_tag")
    assert MAX_PRICE_TAG in (excluded.exclusion_detail or "")


def test_the_behavior_is_stored_on_the_record_and_the_tag_overrides_the_request():
    assert record(interruption_behavior="stop").interruption_behavior == "stop"
    tagged = record(facts({INTERRUPTION_BEHAVIOR_TAG: "stop"}), interruption_behavior="terminate")
    assert tagged.eligible and tagged.interruption_behavior == "stop"


def test_an_invalid_behavior_tag_is_an_exclusion():
    excluded = record(facts({INTERRUPTION_BEHAVIOR_TAG: "pause"}))
    assert (excluded.eligible, excluded.exclusion_reason) == (False, "invalid_interruption_behavior_tag")


def test_hibernate_is_planned_only_for_an_original_launched_with_hibernation():
    refused = record(interruption_behavior="hibernate")
    assert (refused.eligible, refused.exclusion_reason) == (False, "hibernation_not_configured")
    hibernating = record(facts({"spot-migration:mode": "stateless"}, hibernation=True),
                         interruption_behavior="hibernate")
    assert hibernating.eligible and hibernating.interruption_behavior == "hibernate"


def test_a_stateful_move_stops_whatever_the_request_asks():
    stateful = record(facts({"spot-migration:mode": "stateful"}), interruption_behavior="terminate")
    assert stateful.eligible and stateful.mode == "stateful" and stateful.interruption_behavior == "stop"


def test_the_plan_view_shows_the_max_price_and_the_behavior():
    entry = plan_entry(record(max_price=MaxPrice(0.045), interruption_behavior="stop"))
    assert (entry.max_price, entry.interruption_behavior) == (0.045, "stop")
