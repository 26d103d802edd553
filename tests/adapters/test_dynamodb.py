"""The DynamoDB repositories on moto, against the table created from the one key schema."""

import threading

import boto3
import pytest
from pydantic import BaseModel

from spot_core.adapters.dynamodb import schema
from spot_core.adapters.dynamodb.approvals import DynamoApprovalTokens
from spot_core.adapters.dynamodb.events import IdempotentEvents
from spot_core.adapters.dynamodb.migrations import DynamoMigrations, DynamoPlans
from spot_core.adapters.dynamodb.pools import DynamoPoolMemory
from spot_core.adapters.dynamodb.registry import DynamoManagedRegistry
from spot_core.adapters.dynamodb.replacements import DynamoReplacementClaims
from spot_core.domain.errors import ApprovalNotPending, EventInProgress, InvalidMigrationRequest, MigrationNotFound
from spot_core.domain.plan import AgentVerdict, InstanceRecord, Pool
from spotctl.local.lambdas import FakeContext

TABLE = "spot-migration-test"


@pytest.fixture
def table(moto):
    boto3.client("dynamodb").create_table(TableName=TABLE, **schema.key_schema())
    return boto3.resource("dynamodb").Table(TABLE)


def record(instance_id: str, **fields) -> InstanceRecord:
    return InstanceRecord(instance_id=instance_id, instance_type="m5.large", availability_zone="us-east-1a",
                          eligible=True, pools=[Pool(instance_type="m5.large", availability_zone="us-east-1a",
                                                     spot_hourly=0.0345)], **fields)


def test_the_table_has_the_keys_and_index_of_the_schema(table):
    description = boto3.client("dynamodb").describe_table(TableName=TABLE)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in description["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    assert [i["IndexName"] for i in description["GlobalSecondaryIndexes"]] == [schema.STATUS_INDEX]


def test_a_migration_item_is_created_once_per_request(table):
    migrations = DynamoMigrations(table)
    migrations.create("m-1", {"dry_run": True})
    migrations.create("m-1", {"dry_run": True})  # a retried analysis of the same request
    with pytest.raises(InvalidMigrationRequest, match="already used"):
        migrations.create("m-1", {"dry_run": False})
    migrations.update("m-1", status="migrating")
    with pytest.raises(InvalidMigrationRequest, match="already used"):
        migrations.create("m-1", {"dry_run": True})  # it has started changing the fleet


def test_updates_need_an_existing_migration_and_floats_round_trip(table):
    migrations = DynamoMigrations(table)
    with pytest.raises(MigrationNotFound):
        migrations.update("nope", status="planned")
    with pytest.raises(MigrationNotFound):
        migrations.get("nope")
    migrations.create("m-2", {})
    migrations.update("m-2", summary={"monthly_savings": 41.7, "candidates": 3, "skipped": None})
    migrations.set_wave_result("m-2", 0, "gate", {"score": 0.25, "passed": True})
    migrations.set_wave_result("m-2", 0, "migration", {"done": True})
    item = migrations.get("m-2")
    assert item["summary"] == {"monthly_savings": 41.7, "candidates": 3}
    assert item["wave_results"] == {"0": {"gate": {"score": 0.25, "passed": True}, "migration": {"done": True}}}


def test_migration_pages_refuse_a_key_that_is_not_theirs(table):
    migrations = DynamoMigrations(table)
    for n in range(3):
        migrations.create(f"m-{n}", {})
    items, last = migrations.page(limit=2)
    assert len(items) == 2 and last is not None
    assert len(migrations.page(limit=2, start_key=last)[0]) == 1
    with pytest.raises(InvalidMigrationRequest, match="next_token"):
        migrations.page(limit=2, start_key={"pk": "INSTANCE#i-1", "sk": "REPLACEMENT"})
    assert set(migrations.get_many(["m-0", "m-2", "unknown"])) == {"m-0", "m-2"}


def test_plan_records_and_verdicts(table):
    plans = DynamoPlans(table)
    assert plans.put_records("m-3", [record(f"i-{n:08x}") for n in range(5)]) == 5
    changed = record("i-00000001", status="launching", replacement_id="i-0000000a")
    plans.put_record("m-3", changed)
    stored = {r.instance_id: r for r in plans.records("m-3")}
    assert stored["i-00000001"].replacement_id == "i-0000000a" and stored["i-00000001"].updated_at
    assert stored["i-00000002"].pools[0].spot_hourly == 0.0345
    first, last = plans.records_page("m-3", limit=3)
    rest, end = plans.records_page("m-3", limit=3, start_key=last)
    assert [r.instance_id for r in first + rest] == sorted(stored) and end is None
    with pytest.raises(InvalidMigrationRequest):
        plans.records_page("m-3", limit=3, start_key={"pk": "MIGRATION#other", "sk": "INSTANCE#i-1"})
    plans.put_verdict("m-3", AgentVerdict(agent="capacity", approved=True, confidence=0.75))
    assert [v.agent for v in plans.verdicts("m-3")] == ["capacity"]
    assert len(plans.records("m-3")) == 5, "verdicts are not records"


def test_a_pass_of_the_wave_engine_reads_the_unfinished_records_of_its_wave_only(table):
    plans = DynamoPlans(table)
    plans.put_records("m-4", [
        record("i-1", wave=0, status="planned"), record("i-2", wave=0, status="launching", phase="booting"),
        record("i-3", wave=0, status="migrated", replacement_tagged=False), record("i-4", wave=0, status="migrated"),
        record("i-5", wave=0, status="skipped"), record("i-6", wave=1, status="planned"),
        record("i-7", status="planned"),
        record("i-8", wave=0, status="planned").model_copy(update={"eligible": False})])
    plans.put_records("m-5", [record("i-1", wave=0, status="planned")])

    assert [r.instance_id for r in plans.in_flight("m-4", 0)] == ["i-1", "i-2", "i-3"]
    assert [r.instance_id for r in plans.in_flight("m-4", 1)] == ["i-6"]

    plans.put_record("m-4", record("i-1", wave=0, status="migrated", replacement_tagged=True))
    assert [r.instance_id for r in plans.in_flight("m-4", 0)] == ["i-2", "i-3"]
    # the index (eventually consistent) may still name a record just finished: read by key, it is left out
    table.update_item(Key={"pk": "MIGRATION#m-4", "sk": "INSTANCE#i-4"},
                      UpdateExpression="SET gsi1pk = :p, gsi1sk = :s",
                      ExpressionAttributeValues={":p": schema.unfinished_index_pk("m-4", 0), ":s": "i-4"})
    assert [r.instance_id for r in plans.in_flight("m-4", 0)] == ["i-2", "i-3"]


def test_an_approval_token_is_taken_once(table):
    tokens = DynamoApprovalTokens(table)
    tokens.put("m-4", "secret-token", expires_at=2_000_000_000)
    assert tokens.take("m-4") == "secret-token"
    with pytest.raises(ApprovalNotPending):
        tokens.take("m-4")


def test_pool_memory_forgets_expired_interruptions(table):
    pools = DynamoPoolMemory(table)
    pools.record_interruption("m5.large", "us-east-1a", "i-1")
    DynamoPoolMemory(table, memory_seconds=-1).record_interruption("c5.large", "us-east-1b", "i-2")
    assert pools.recent_interruptions() == {("m5.large", "us-east-1a")}


def test_one_replacement_claim_per_instance(table):
    claims = DynamoReplacementClaims(table)
    assert claims.claim("i-1", "event-a") is True
    assert claims.claim("i-1", "event-b") is False
    assert claims.replacement_for("i-1") is None  # claimed, nothing launched yet
    claims.release("i-1")
    assert claims.claim("i-1", "event-b") is True
    claims.update("i-1", status="swapped", replacement_id="i-9", target_groups=[{"arn": "tg", "port": 80}])
    assert claims.replacement_for("i-1")["replacement_id"] == "i-9"
    assert [c["instance_id"] for c in claims.all()] == ["i-1"]


def test_the_registry_of_managed_instances(table):
    registry = DynamoManagedRegistry(table)
    registry.register("i-1", "migration m wave 0")
    registry.register("i-2", "migration m", status="retired")
    assert registry.statuses(["i-1", "i-2", "i-3"]) == {"i-1": "active", "i-2": "retired"}


class Outcome(BaseModel):
    action: str


def events_once() -> IdempotentEvents:
    """As the replacement function binds it: an in-progress record lasts at most its 90 s timeout."""
    return IdempotentEvents(TABLE).bind(FakeContext("replace", "arn:aws:lambda:us-east-1:1:function:replace", 90, 512))


def test_an_event_is_handled_once_and_a_failure_lets_the_retry_do_it(table):
    events = events_once()
    runs = []

    def work() -> Outcome:
        runs.append(1)
        return Outcome(action="replaced")

    assert events.run("e-1", work, lambda: Outcome(action="duplicate")).action == "replaced"
    assert events.run("e-1", work, lambda: Outcome(action="duplicate")).action == "duplicate"
    assert len(runs) == 1

    def failing() -> Outcome:
        raise RuntimeError("launch failed")

    with pytest.raises(RuntimeError):
        events.run("e-2", failing, lambda: Outcome(action="duplicate"))
    assert events.run("e-2", work, lambda: Outcome(action="duplicate")).action == "replaced"
    item = table.get_item(Key={"pk": schema.EVENTS, "sk": next(
        i["sk"] for i in table.scan()["Items"] if i["pk"] == schema.EVENTS)})["Item"]
    assert item[schema.TTL_ATTRIBUTE] > 0, "the record expires (TTL)"


def test_an_event_being_handled_elsewhere_is_retried_later(table):
    events = events_once()
    started, release = threading.Event(), threading.Event()

    def slow() -> Outcome:
        started.set()
        release.wait(5)
        return Outcome(action="replaced")

    first: list[Outcome] = []
    thread = threading.Thread(target=lambda: first.append(events.run("e-3", slow, lambda: Outcome(action="dup"))))
    thread.start()
    started.wait(5)
    with pytest.raises(EventInProgress):  # not a success: Lambda retries it, and then finds it done
        events_once().run("e-3", slow, lambda: Outcome(action="dup"))
    release.set()
    thread.join(5)
    assert first[0].action == "replaced"
    assert events_once().run("e-3", slow, lambda: Outcome(action="dup")).action == "dup"
