"""An interrupted stateful Spot instance, through the deployed rules, the replacement function and
the re-home state machine on the embedded runtime: EC2 stops it with the original's disks (its
persistent request stops on interruption), and the same volumes, the secondary interface and the
Elastic IP move to a new instance in another pool of the same AZ; nothing is copied, so nothing
written before the interruption is lost, and nothing the product launched is left unknown."""

from __future__ import annotations

import pytest
from checks import records
from invariants import check_all, observe
from test_carry_paths import (
    AZ,
    ONE_WAVE,
    available_volumes,
    instance,
    layout,
    request,
    spot_request_by_id,
    stateful,
    user_data,
)

from spotctl.local.runtime import LocalRuntime

pytestmark = pytest.mark.usefixtures("quiet_moto")


@pytest.fixture
def migrated_db():
    """A database server (data volume, second interface, Elastic IP) moved statefully to Spot."""
    with LocalRuntime(seed=23) as rt:
        rt.fleet.seed_fleet(4, stateful=0, burst=0, cpu_days=2)
        db = stateful(rt, "db-1")
        result = rt.run_migration(request(rt, [db["instance"]], allow_downtime=True, **ONE_WAVE))
        assert result.status == "SUCCEEDED", result.cause
        yield rt, db, result


def test_a_stateful_spot_instance_interrupted_after_the_migration_moves_its_disks_and_loses_nothing(migrated_db):
    rt, db, result = migrated_db
    iid, mid = db["instance"], result.migration_id
    spot = records(rt, mid)[iid].replacement_id
    assert spot
    on_spot = layout(rt)[spot]
    spot_type, request_id = instance(rt, spot)["InstanceType"], instance(rt, spot)["SpotInstanceRequestId"]

    sent = rt.simulate(spot, "interruption")  # the warning, then EC2 stops it (a persistent request that stops)
    ended = rt.wait_rehome(spot)

    assert sent["deliveries"][0]["result"]["action"] == "rehoming"
    reclaimed = [d["event"]["detail-type"] for d in sent["reclaim_deliveries"]]
    assert reclaimed == ["EC2 Instance State-change Notification"] * 2  # stopping, stopped
    told = [n["message"] for n in rt.notifications()][-2:]
    assert ended.status == "SUCCEEDED", (records(rt, mid)[iid].attempts, told)
    record = records(rt, mid)[iid]
    new = record.replacement_id
    assert new and new != spot and record.rehome is not None and record.rehome.phase == "done", record.attempts
    after = layout(rt)
    # the very same volumes at the same devices, the interface at its index, the address: on the new instance
    assert after[new]["state"] == "running"
    assert after[new]["volumes"] == on_spot["volumes"]
    assert {e: i for e, i in after[new]["interfaces"].items() if i != 0} == {db["eni"]: 1}
    assert after[new]["addresses"] == {db["allocation"]}
    described = instance(rt, new)
    assert described["Placement"]["AvailabilityZone"] == AZ and described["InstanceType"] != spot_type
    assert described.get("InstanceLifecycle") == "spot"
    assert user_data(rt, new) == user_data(rt, iid)
    # the interrupted instance is gone, its request cancelled (nothing starts it without its disks)
    assert after[spot]["state"] == "terminated" and not after[spot]["volumes"]
    assert spot_request_by_id(rt, request_id).get("State", "cancelled") == "cancelled"
    assert available_volumes(rt) == []  # the new instance's own root, swapped out, is deleted
    assert record.rehome.downtime_seconds is not None and record.rehome.downtime_seconds >= 0
    assert any((n["subject"] or "").endswith(": stateful-rehomed") for n in rt.notifications())
    assert check_all(rt, observe(rt, [mid]), result, {iid: []}) == []
