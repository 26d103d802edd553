"""The interruption handler's writes on moto: a claim whose write returns the launch profile it
found (or, refused, the claim that exists), launch profiles that never overwrite a claim, the
launch recorded with its registry item, its own profile and the interrupted pool in one
transaction, the end of a takeover with the migration record following the replacement (and the
drift of the migration's realised savings), and a migration's record read by key."""

import boto3
import pytest

from spot_core.adapters.dynamodb import schema
from spot_core.adapters.dynamodb.migrations import DynamoMigrations, DynamoPlans
from spot_core.adapters.dynamodb.pools import DynamoPoolMemory
from spot_core.adapters.dynamodb.registry import DynamoManagedRegistry
from spot_core.adapters.dynamodb.replacements import DynamoReplacementClaims
from spot_core.domain.interruptions import HOLDER_EXPIRY, LaunchProfile, RecordRef, follow_record
from spot_core.domain.outcomes import NO_DRIFT, realised_now
from spot_core.domain.plan import InstanceRecord, Pool, TargetRef

TABLE = "spot-migration-interruption-writes-test"
GROUP = TargetRef(arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/1", port=80)


@pytest.fixture
def table(moto):
    boto3.client("dynamodb").create_table(TableName=TABLE, **schema.key_schema())
    return boto3.resource("dynamodb").Table(TABLE)


def test_a_refused_claim_returns_the_claim_that_exists(table):
    claims = DynamoReplacementClaims(table)
    claimed, claim = claims.claim_or_get("i-1", "event-a", kind="interruption", swap=True, **{HOLDER_EXPIRY: 123})
    assert claimed and claim["status"] == "launching" and "profile" not in claim
    claimed, existing = claims.claim_or_get("i-1", "event-b", kind="state-change", swap=True)
    assert not claimed
    assert (existing["event_id"], existing["kind"], existing["status"], existing[HOLDER_EXPIRY]) == (
        "event-a", "interruption", "launching", 123)


PROFILE = LaunchProfile(target_groups=[GROUP], user_data="IyEvYmluL3NoCg==",
                        record=RecordRef(migration_id="mig-1", original_id="i-0", hourly=0.03, on_demand_hourly=0.096))


def test_the_claim_returns_the_launch_profile_written_when_the_instance_was_launched(table):
    claims, registry = DynamoReplacementClaims(table), DynamoManagedRegistry(table)
    registry.register_all(["i-1", "i-2"], "migration mig-1 wave 0", {"i-1": PROFILE})
    assert claims.get("i-1") is None and claims.get_many(["i-1", "i-2"]) == {}  # a profile is no claim
    assert claims.all() == []

    claimed, claim = claims.claim_or_get("i-1", "event-a", kind="interruption", swap=True)

    assert claimed and LaunchProfile.model_validate(claim["profile"]) == PROFILE
    assert (claim["status"], claim["event_id"]) == ("launching", "event-a")
    assert schema.TTL_ATTRIBUTE not in claims.get("i-1")  # a claim is kept as long as the product needs it
    claimed, existing = claims.claim_or_get("i-1", "event-b")
    assert not claimed and existing["event_id"] == "event-a"
    assert [c["instance_id"] for c in claims.all()] == ["i-1"]


def test_a_profile_never_overwrites_a_claim_and_a_released_claim_gives_its_profile_back(table):
    claims, registry = DynamoReplacementClaims(table), DynamoManagedRegistry(table)
    claims.claim_or_get("i-1", "event-a")
    registry.register_all(["i-1", "i-2"], "migration mig-1 wave 0", {"i-1": PROFILE, "i-2": PROFILE})
    assert claims.get("i-1")["event_id"] == "event-a" and "profile" not in claims.get("i-1")
    assert registry.statuses(["i-1", "i-2"]) == {"i-1": "active", "i-2": "active"}

    claims.claim_or_get("i-2", "event-b")
    claims.release("i-2")  # launching failed: the retry finds the profile again

    assert claims.get("i-2") is None
    claimed, claim = claims.claim_or_get("i-2", "event-b")
    assert claimed and LaunchProfile.model_validate(claim["profile"]) == PROFILE


def test_the_launch_is_recorded_with_its_registry_item_and_the_interrupted_pool_at_once(table):
    claims, registry, pools = DynamoReplacementClaims(table), DynamoManagedRegistry(table), DynamoPoolMemory(table)
    claims.claim_or_get("i-1", "event-a")

    claims.record_launch("i-1", "replacement of i-1", ("m5.large", "us-east-1a"), PROFILE, status="launched",
                         replacement_id="i-9", target_groups=[GROUP.model_dump()], spot_hourly=0.031)

    claim = claims.get("i-1")
    assert (claim["status"], claim["replacement_id"], claim["target_groups"]) == ("launched", "i-9",
                                                                                   [GROUP.model_dump()])
    assert registry.statuses(["i-9"]) == {"i-9": "active"}
    assert pools.recent_interruptions() == {("m5.large", "us-east-1a")}
    assert LaunchProfile.model_validate(claims.claim_or_get("i-9", "event-b")[1]["profile"]) == PROFILE

    # the replacement interrupted (and claimed) before its launch was recorded: its claim is kept
    claims.claim_or_get("i-2", "event-c")
    claims.claim_or_get("i-8", "event-d")
    claims.record_launch("i-2", "replacement of i-2", None, PROFILE, status="launched", replacement_id="i-8")
    assert claims.get("i-2")["replacement_id"] == "i-8" and claims.get("i-8")["event_id"] == "event-d"


def test_a_holder_gives_its_claim_up_to_its_own_retry_only(table):
    claims = DynamoReplacementClaims(table)
    claims.claim_or_get("i-1", "event-a", **{HOLDER_EXPIRY: 10**15})
    claims.abandon("i-1", "event-b")  # not the holder: nothing changes
    assert claims.get("i-1")[HOLDER_EXPIRY] == 10**15
    claims.abandon("i-1", "event-a")
    assert claims.get("i-1")[HOLDER_EXPIRY] == 0
    assert claims.take_over("i-1", claims.get("i-1"), "event-a", **{HOLDER_EXPIRY: 42})
    assert claims.get("i-1")[HOLDER_EXPIRY] == 42


def _plan(table, migration_id: str, records: int) -> tuple[DynamoPlans, InstanceRecord]:
    plans, migrations = DynamoPlans(table), DynamoMigrations(table)
    pool = Pool(instance_type="m5.large", availability_zone="us-east-1a", spot_hourly=0.03)
    plan = [InstanceRecord(instance_id=f"i-{n:017x}", instance_type="m5.large", availability_zone="us-east-1a",
                           eligible=True, status="migrated", replacement_id=f"i-r{n:016x}", replacement_type="m5.large",
                           replacement_az="us-east-1a", replacement_spot_hourly=0.03, on_demand_hourly=0.096,
                           target_groups=[GROUP], pools=[pool]) for n in range(records)]
    plans.put_records(migration_id, plan)
    migrations.create(migration_id, {}, status="completed")
    migrations.update(migration_id, realised={"instances": records, "on_spot": records, "on_demand_fallbacks": 0,
                                              "monthly_on_demand": 100.0, "monthly_spot": 40.0,
                                              "monthly_savings": 60.0, "savings_pct": 60.0})
    return plans, plan[1]


def test_a_record_is_read_by_key_whatever_the_size_of_the_plan(table):
    plans, record = _plan(table, "mig-1", 300)
    found = plans.records_by_key([("mig-1", record.instance_id), ("mig-1", "i-unknown"), ("mig-2", "i-1")])
    assert found == {("mig-1", record.instance_id): record, ("mig-1", "i-unknown"): None, ("mig-2", "i-1"): None}


def test_the_takeover_ends_with_the_record_following_and_the_realised_savings_drifting(table):
    plans, record = _plan(table, "mig-1", 3)
    claims, migrations = DynamoReplacementClaims(table), DynamoMigrations(table)
    claims.claim_or_get(record.replacement_id, "event-a")
    before = RecordRef.of("mig-1", record)
    after = before.moved_to("on-demand", 0.0)
    follow = follow_record(before, record.replacement_id, "i-new", "m5.large", "us-east-1b", after,
                           "interrupted; replaced by i-new (on-demand)")

    assert claims.finish(record.replacement_id, follow, None, status="swapped")

    stored = plans.records_by_key([("mig-1", record.instance_id)])[("mig-1", record.instance_id)]
    assert (stored.replacement_id, stored.replacement_market, stored.replacement_spot_hourly) == (
        "i-new", "on-demand", 0.096)
    assert stored.attempts[-1] == "interrupted; replaced by i-new (on-demand)"
    realised = realised_now(migrations.get("mig-1"))
    assert (realised["on_spot"], realised["on_demand_fallbacks"]) == (2, 1)
    assert realised["monthly_savings"] == pytest.approx(60.0 - (0.096 - 0.03) * 730, abs=0.01)
    assert realised["savings_pct"] == pytest.approx(round(realised["monthly_savings"], 1), abs=0.1)
    assert claims.get(record.replacement_id)["status"] == "swapped"

    # a record that no longer names the interrupted instance is left as it is: the claim ends alone
    claims.claim_or_get("i-other", "event-b")
    assert not claims.finish("i-other", follow, None, status="swapped")
    assert claims.get("i-other")["status"] == "swapped"
    assert plans.records_by_key([("mig-1", record.instance_id)])[("mig-1", record.instance_id)].replacement_id == \
        "i-new"
    assert realised_now(migrations.get("mig-1")) == realised  # nor does the drift change again

    # the migration completing again computes its savings from the records: the drift starts anew
    migrations.update("mig-1", **NO_DRIFT)
    assert realised_now(migrations.get("mig-1"))["monthly_savings"] == 60.0
