"""A rollback through the real state machine whose stateful original EC2 will not start again:
its volumes, secondary interface and Elastic IP go back onto the Spot instance it keeps (on
moto's EC2), which runs; the execution ends RollbackFailed naming it, the others rolled back.

EC2 refuses StartInstances for that original with a non-capacity error (given up at once); a
capacity refusal would be tried again for RESTORE_RETRY_SECONDS of the services' clock, which
is real time here (tests/services/test_rollback_stateful.py covers it on a virtual clock)."""

from __future__ import annotations

from typing import Any

import pytest
from checks import records
from test_carry_paths import (  # noqa: F401  (fresh, quick_restore_polls: the fixtures)
    ONE_WAVE,
    available_volumes,
    fresh,
    launch,
    layout,
    quick_restore_polls,
    request,
    spot_request,
    stateful,
)

from spotctl.local.workload import Degradation

pytestmark = pytest.mark.usefixtures("quiet_moto", "quick_restore_polls")


def refuse_to_start(monkeypatch: pytest.MonkeyPatch, instance_id: str, code: str) -> None:
    """EC2 refuses StartInstances for `instance_id` (moto would always start it)."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.instances import InstanceBackend

    start = InstanceBackend.start_instances

    def start_instances(backend: Any, instance_ids: list[str]) -> Any:
        if instance_id in instance_ids:
            raise EC2ClientError(code, f"refused to start {instance_id} ({code})")
        return start(backend, instance_ids)

    monkeypatch.setattr(InstanceBackend, "start_instances", start_instances)


def test_an_original_that_will_not_start_has_its_disks_back_on_its_spot_instance(fresh, monkeypatch):  # noqa: F811
    rt = fresh
    db = stateful(rt, "db-1")
    iid = db["instance"]
    web = launch(rt, "web-gated")  # in the same wave: its degraded replacement fails the gate
    before = layout(rt)
    rt.fleet.degradation = Degradation(wave=0)
    refuse_to_start(monkeypatch, iid, "IncorrectInstanceState")  # only a rollback starts it

    result = rt.run_migration(request(rt, [iid, web], allow_downtime=True, **ONE_WAVE))

    assert (result.status, result.error) == ("FAILED", "RollbackFailed"), result.cause
    recs = records(rt, result.migration_id)
    record = recs[iid]
    spot = record.replacement_id
    assert record.status == "rollback_failed" and spot, record.attempts
    assert "IncorrectInstanceState" in record.attempts[-1]
    assert f"its disks are back on {spot}, which serves" in record.attempts[-1]
    after = layout(rt)
    # every piece on the Spot instance at its device, which runs; the original stopped with nothing
    assert after[spot]["state"] == "running"
    assert after[spot]["volumes"] == before[iid]["volumes"]
    assert {e: i for e, i in after[spot]["interfaces"].items() if i != 0} == {db["eni"]: 1}
    assert after[spot]["addresses"] == {db["allocation"]}
    assert after[iid]["state"] == "stopped" and not after[iid]["volumes"] and not after[iid]["addresses"]
    assert spot_request(rt, spot)["State"] == "active"  # kept: its request is not cancelled
    assert available_volumes(rt) == []
    # the other original is back as it was
    assert recs[web].status == "rolled_back" and after[web] == before[web]
    item = rt.migration(result.migration_id)
    assert item["status"] == "rollback_failed"
    assert [k["instance_id"] for k in item["rollback"]["kept_instances"]] == [iid]
