"""Per-instance locks on moto: conditional writes in transactions of 100, release, cooldown."""

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from spot_core.adapters.dynamodb import schema
from spot_core.adapters.dynamodb.locks import DynamoInstanceLocks
from spotctl.local import dynamodb as local_dynamodb

TABLE = "spot-migration-locks"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["moto", "embedded-runtime"])
def locks(moto, request):
    """On moto's TransactWriteItems, and on the embedded runtime's (same semantics, no table copy per item)."""
    if request.param == "embedded-runtime":
        local_dynamodb.install()
        request.addfinalizer(local_dynamodb.uninstall)
    boto3.client("dynamodb").create_table(TableName=TABLE, **schema.key_schema())
    return DynamoInstanceLocks(boto3.resource("dynamodb").Table(TABLE))


def ids(count: int, start: int = 0) -> list[str]:
    return [f"i-{n:017x}" for n in range(start, start + count)]


def test_a_migration_holds_every_free_instance_and_only_one_migration_holds_each(locks):
    assert locks.acquire("mig-a", ids(250), NOW) == {}  # three transactions
    assert locks.acquire("mig-a", ids(250), NOW) == {}  # a retried analysis holds them already

    refused = locks.acquire("mig-b", ids(10, start=245), NOW)

    assert sorted(refused) == ids(5, start=245)
    assert {lock.migration_id for lock in refused.values()} == {"mig-a"}
    assert sorted(locks.held("mig-b")) == ids(5, start=250)
    assert len(locks.held("mig-a")) == 250


def test_release_frees_the_instances_and_a_cooldown_keeps_the_rolled_back_ones(locks):
    locks.acquire("mig-a", ids(3), NOW)
    until = NOW + timedelta(hours=24)

    assert locks.release("mig-a", until, cooled=ids(1)) == 3

    assert locks.held("mig-a") == []
    refused = locks.acquire("mig-b", ids(3), NOW + timedelta(hours=1))
    assert list(refused) == ids(1)
    assert refused[ids(1)[0]].refusal("mig-b", NOW)[0] == "rollback_cooldown"
    assert locks.acquire("mig-c", ids(1), until + timedelta(seconds=1)) == {}  # cooled down


def test_release_leaves_locks_another_migration_took_over(locks):
    locks.acquire("mig-a", ids(1), NOW)
    assert locks.take_over("mig-b", ids(1)[0], "mig-a", NOW)
    assert not locks.take_over("mig-c", ids(1)[0], "mig-a", NOW)  # mig-a no longer holds it

    locks.release("mig-a")

    assert locks.locks(ids(1))[ids(1)[0]].migration_id == "mig-b"
