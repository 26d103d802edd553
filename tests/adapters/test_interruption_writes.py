"""The interruption handler's writes on moto: a claim whose refused write returns the claim
that exists, the launch recorded with its registry item and interrupted pool in one
transaction, the end of a takeover with the migration record following the replacement (and
a completed migration's realised savings), and a migration's record read by key."""

import boto3
import pytest

from spot_core.adapters.dynamodb import schema
from spot_core.adapters.dynamodb.migrations import DynamoMigrations, DynamoPlans
from spot_core.adapters.dynamodb.pools import DynamoPoolMemory
from spot_core.adapters.dynamodb.registry import DynamoManagedRegistry
from spot_core.adapters.dynamodb.replacements import DynamoReplacementClaims
from spot_core.domain.interruptions import HOLDER_EXPIRY, follow_record
from spot_core.domain.plan import InstanceRecord, Pool, TargetRef

TABLE = "spot-migration-interruption-writes-test"
GROUP = TargetRef(arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/1", port=80)


@pytest.fixture
def table(moto):
    boto3.client("dynamodb").create_table(TableName=TABLE, **schema.key_schema())
    return boto3.resource("dynamodb").Table(TABLE)


def test_a_refused_claim_returns_the_claim_that_exists(table):
    claims = DynamoReplacementClaims(table)
    assert claims.claim_or_get("i-1", "event-a", kind="interruption", swap=True, **{HOLDER_EXPIRY: 123}) is None
    existing = claims.claim_or_get("i-1", "event-b", kind="state-change", swap=True)
    assert (existing["event_id"], existing["kind"], existing["status"], existing[HOLDER_EXPIRY]) == (
        "event-a", "interruption", "launching", 123)


def test_the_launch_is_recorded_with_its_registry_item_and_the_interrupted_pool_at_once(table):
    claims, registry, pools = DynamoReplacementClaims(table), DynamoManagedRegistry(table), DynamoPoolMemory(table)
    claims.claim_or_get("i-1", "event-a")

    claims.record_launch("i-1", "replacement of i-1", ("m5.large", "us-east-1a"), status="launched",
                         replacement_id="i-9", target_groups=[GROUP.model_dump()], spot_hourly=0.031)

    claim = claims.get("i-1")
    assert (claim["status"], claim["replacement_id"], claim["target_groups"]) == ("launched", "i-9",
                                                                                   [GROUP.model_dump()])
    assert registry.statuses(["i-9"]) == {"i-9": "active"}
    assert pools.recent_interruptions() == {("m5.large", "us-east-1a")}


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


def test_a_record_is_read_by_key_with_its_migration_whatever_the_size_of_the_plan(table):
    plans, record = _plan(table, "mig-1", 300)
    found = plans.records_and_migrations([("mig-1", record.instance_id), ("mig-1", "i-unknown"), ("mig-2", "i-1")])
    assert found[("mig-1", record.instance_id)][0] == record
    assert found[("mig-1", record.instance_id)][1]["status"] == "completed"
    assert found[("mig-1", "i-unknown")][0] is None and found[("mig-2", "i-1")] == (None, None)


def test_the_takeover_ends_with_the_record_following_and_the_realised_savings_restated(table):
    plans, record = _plan(table, "mig-1", 3)
    claims = DynamoReplacementClaims(table)
    claims.claim_or_get(record.replacement_id, "event-a")
    migration = DynamoMigrations(table).get("mig-1")
    after = record.model_copy(deep=True)
    after.follow("i-new", Pool(instance_type="m5.large", availability_zone="us-east-1b", spot_hourly=0.0),
                 record.on_demand_hourly, "interrupted; replaced by i-new (on-demand)", market="on-demand")

    follow = follow_record("mig-1", record, after, record.replacement_id, migration)
    assert claims.finish(record.replacement_id, follow, None, status="swapped")

    stored = plans.records_and_migrations([("mig-1", record.instance_id)])[("mig-1", record.instance_id)]
    assert (stored[0].replacement_id, stored[0].replacement_market) == ("i-new", "on-demand")
    assert stored[0].attempts[-1] == "interrupted; replaced by i-new (on-demand)"
    realised = stored[1]["realised"]
    assert (realised["on_spot"], realised["on_demand_fallbacks"]) == (2, 1)
    assert realised["monthly_savings"] == pytest.approx(60.0 - (0.096 - 0.03) * 730, abs=0.01)
    assert claims.get(record.replacement_id)["status"] == "swapped"

    # a record that no longer names the interrupted instance is left as it is: the claim ends alone
    claims.claim_or_get("i-other", "event-b")
    assert not claims.finish("i-other", follow, None, status="swapped")
    assert claims.get("i-other")["status"] == "swapped"
    assert plans.records_and_migrations([("mig-1", record.instance_id)])[("mig-1", record.instance_id)][
        0].replacement_id == "i-new"
