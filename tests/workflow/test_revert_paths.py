"""Day 2: a completed migration's instances go back to on-demand (a revert: its own execution,
records and waves) and come back to Spot (a migration of the reverted instances)."""

import pytest
from checks import records

from spot_core.domain.errors import InvalidMigrationRequest, MigrationConflict
from spot_core.domain.request import RevertMigration
from spot_core.domain.tags import RETIRED_BY_TAG, REVERTED_BY_TAG
from spotctl.local.workload import Degradation

FAST = {"waves": [50, 100], "bake_seconds": [60, 60]}


def tags_of(rt, instance_id):
    found = rt.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return found, {t["Key"]: t["Value"] for t in found.get("Tags", [])}


def migrate(rt, auto):
    result = rt.run_migration({**auto, **FAST})
    assert result.status == "SUCCEEDED", result.cause
    migrated = {i: r for i, r in records(rt, result.migration_id).items() if r.status == "migrated"}
    assert migrated
    return result.migration_id, migrated


def revert(rt, source, **body):
    started = rt.operator().revert(source, RevertMigration(approval={"auto_approve": True}, **FAST, **body))
    result = rt.wait(started.migration_id)
    assert result.status == "SUCCEEDED", result.cause
    return started.migration_id


def test_a_revert_puts_every_migrated_instance_back_on_demand_and_a_migration_returns_them(rt, auto):
    source, migrated = migrate(rt, auto)
    spot_ids = {r.replacement_id for r in migrated.values()}

    rid = revert(rt, source)

    item = rt.migration(rid)
    assert item["status"] == "completed" and item["request"]["revert"]["migration_id"] == source
    back = dict(records(rt, rid))
    assert set(back) == spot_ids and all(r.status == "migrated" for r in back.values())
    after = rt.fleet.snapshot()
    for spot_id, r in back.items():
        new, tags = tags_of(rt, r.replacement_id)
        original = next(m for m in migrated.values() if m.replacement_id == spot_id)
        assert tags["spot-migration:replaces"] == spot_id
        assert "InstanceLifecycle" not in new  # on-demand
        assert new["InstanceType"] == original.instance_type  # the type it ran on before its migration
        assert tags[REVERTED_BY_TAG] == rid
        assert r.replacement_id in after["serving"]
        assert tags_of(rt, spot_id)[0]["State"]["Name"] in ("shutting-down", "terminated")
    assert not (after["spot"] & spot_ids)
    # the reverted migration's records follow the on-demand instances
    followed = records(rt, source)
    assert {followed[o].replacement_id for o in migrated} == {r.replacement_id for r in back.values()}
    assert all(followed[o].reverted_by == rid and followed[o].replacement_market == "on-demand" for o in migrated)
    assert any("run on-demand again" in (n["subject"] or "") + (n["message"] or "") for n in rt.notifications())

    # and back to Spot: a migration of the reverted instances
    ret = rt.run_migration({**auto, **FAST, "selector": {"instance_ids": sorted(
        r.replacement_id for r in back.values())}})
    assert ret.status == "SUCCEEDED", ret.cause
    returned = records(rt, ret.migration_id)
    assert all(r.status == "migrated" for r in returned.values())
    assert {r.replacement_id for r in returned.values()} <= rt.fleet.snapshot()["spot"]


def test_a_revert_of_named_instances_moves_only_those(rt, auto):
    source, migrated = migrate(rt, auto)
    original, record = sorted(migrated.items())[0]

    rid = revert(rt, source, instance_ids=[original])

    back = records(rt, rid)
    assert list(back) == [record.replacement_id] and back[record.replacement_id].status == "migrated"
    after = rt.fleet.snapshot()
    others = {r.replacement_id for o, r in migrated.items() if o != original}
    assert others <= after["spot"] and others <= after["serving"]


def test_a_revert_follows_an_instance_replaced_after_an_interruption(rt, auto):
    source, migrated = migrate(rt, auto)
    original, record = sorted(migrated.items())[0]
    rt.simulate(record.replacement_id, "interruption")
    current = records(rt, source)[original].replacement_id
    assert current and current != record.replacement_id

    rid = revert(rt, source, instance_ids=[original])

    back = records(rt, rid)
    assert list(back) == [current]
    assert back[current].status == "migrated"
    assert "InstanceLifecycle" not in tags_of(rt, back[current].replacement_id)[0]


def test_a_rollback_of_a_revert_leaves_the_spot_fleet_as_it_was(rt, auto):
    source, migrated = migrate(rt, auto)
    before = rt.fleet.snapshot()
    body = RevertMigration(approval={"auto_approve": True}, waves=[100], bake_seconds=[60])
    rt.fleet.degradation = Degradation(wave=0)  # whatever the revert launches serves worse
    started = rt.operator().revert(source, body)
    result = rt.wait(started.migration_id)

    assert result.error == "MigrationRolledBack", result.cause
    after = rt.fleet.snapshot()
    assert after["serving"] == before["serving"] and after["spot"] == before["spot"]
    for spot_id in before["spot"]:
        assert RETIRED_BY_TAG not in tags_of(rt, spot_id)[1]


@pytest.mark.parametrize("source_status", ["running", "unknown"])
def test_only_a_completed_migration_can_be_reverted_and_nothing_changes(rt, source_status):
    before = rt.fleet.snapshot()
    if source_status == "unknown":
        with pytest.raises(Exception, match="not found|no migration"):
            rt.operator().revert("mig-nope", RevertMigration())
    else:
        mid = rt.start_migration({"quality": {"target_group_arn": rt.fleet.target_group_arn}})
        rt.wait_for_status(mid, "awaiting_approval")
        with pytest.raises(MigrationConflict, match="only a completed migration"):
            rt.operator().revert(mid, RevertMigration())
        rt.decide(mid, False, "not now")
        rt.wait(mid)
    assert rt.fleet.snapshot() == before


def test_a_revert_naming_an_instance_the_migration_did_not_move_is_refused(rt, auto):
    source, _ = migrate(rt, auto)
    stranger = rt.groups["stateful"][0]
    result = rt.run_migration({"revert": {"migration_id": source, "instance_ids": [stranger]}})
    assert result.error == "InvalidMigrationRequest" and stranger in result.cause
    with pytest.raises(InvalidMigrationRequest):
        from spot_core.domain.request import parse_request
        parse_request({"revert": {"migration_id": source}, "selector": {"instance_ids": [stranger]}})


# --- scheduled on-demand windows ------------------------------------------------------------------
def test_a_window_opens_and_closes_on_the_virtual_clock(rt, auto):
    from datetime import timedelta

    from spot_core.domain.windows import OnDemandWindow

    window = OnDemandWindow(name="month-end", start="cron(0 18 L * ? *)", end="cron(0 8 1 * ? *)",
                            timezone="Europe/Paris")
    result = rt.run_migration({**auto, **FAST, "windows": [window.model_dump()]})
    assert result.status == "SUCCEEDED", result.cause
    source = result.migration_id
    migrated = {o: r for o, r in records(rt, source).items() if r.status == "migrated"}
    names = sorted(s["Name"] for s in rt.scheduler.schedules())
    assert len(names) == 2 and all("month-end" in n for n in names)
    assert {s["ScheduleExpressionTimezone"] for s in rt.scheduler.schedules()} == {"Europe/Paris"}

    opens = window.next("start", rt.scheduler.now)
    fired = rt.scheduler.advance_to(opens)
    assert [f.schedule.endswith("open") for f in fired] == [True]
    state = rt.migration(source)["windows_state"]
    revert_id = state["revert_id"]
    assert rt.wait(revert_id).status == "SUCCEEDED"
    on_demand = {r.replacement_id for r in records(rt, revert_id).values() if r.status == "migrated"}
    assert len(on_demand) == len(migrated)
    assert not (rt.fleet.snapshot()["spot"] & {r.replacement_id for r in migrated.values()})

    closes = window.next("end", opens)
    assert closes - opens < timedelta(days=2)
    fired = rt.scheduler.advance_to(closes)
    assert [f.schedule.endswith("close") for f in fired] == [True]
    return_id = rt.migration(source)["windows_state"]["returning"]
    assert rt.wait(return_id).status == "SUCCEEDED"
    back = records(rt, return_id)
    assert set(back) == on_demand and all(r.status == "migrated" for r in back.values())
    assert {r.replacement_id for r in back.values()} <= rt.fleet.snapshot()["spot"]
    state = rt.migration(source)["windows_state"]  # its success reached the windows function
    assert (state["current"], state.get("open"), state.get("returning")) == (return_id, None, None)

    # the next month's window reverts the instances where they are now
    fired = rt.scheduler.advance_to(window.next("start", closes))
    revert_id = rt.migration(source)["windows_state"]["revert_id"]
    assert rt.wait(revert_id).status == "SUCCEEDED"
    assert rt.migration(revert_id)["request"]["revert"]["migration_id"] == return_id
    assert {r.instance_id for r in records(rt, revert_id).values()} == {r.replacement_id for r in back.values()}
