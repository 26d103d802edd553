"""The stopped originals are kept for the retention window after a migration completes, then
their volumes are snapshotted and they are terminated: only instances the migration stopped,
never one someone started again; the realised savings then count snapshots, not volumes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import MID, finalize, migrate, plan, records, serving, settle
from fakes import Crash

from spot_core.domain.errors import MigrationConflict
from spot_core.domain.retention import STOPPED_BY_TAG, Retention, RetentionChange
from spot_core.services.migrations import Migrations
from spot_core.services.retention import RetireOriginals


def completed(p, count: int = 3, days: int = 7):
    originals = serving(p, count)
    wave = plan(p, originals)
    p.migrations.update(MID, request={"retention_days": days})
    planned = p.plans.records(MID)
    for record in planned:  # the analysis prices what the stopped originals' 8 GiB gp3 roots cost on
        record.stopped_storage_monthly = 0.64
    p.plans.put_records(MID, planned)
    migrate(p, wave)
    finalize(p).finish(MID, "completed", None)
    return originals


def retire(p):
    return RetireOriginals(p.fleet, p.migrations, p.plans, p.notifier, p.clock).run()


def test_originals_are_tagged_by_the_migration_that_stops_them(p):
    originals = completed(p)
    assert all(p.fleet.instance(o.instance_id).tags[STOPPED_BY_TAG] == MID for o in originals)
    retention = Retention.model_validate(p.migrations.get(MID)["retention"])
    assert retention.state == "kept" and retention.until > p.migrations.get(MID)["finished_at"]


def test_nothing_is_retired_before_the_window_ends(p):
    originals = completed(p)
    p.clock.sleep(6 * 86400)
    report = retire(p)
    assert report.migrations == [] and all(p.fleet.state(o.instance_id) == "stopped" for o in originals)


def test_after_the_window_volumes_are_snapshotted_then_the_originals_terminated(p):
    originals = completed(p)
    before = p.migrations.get(MID)["realised"]
    p.clock.sleep(7 * 86400 + 1)

    first = retire(p)
    assert (first.snapshotted, first.terminated) == (3, 0)
    assert all(p.fleet.state(o.instance_id) == "stopped" for o in originals)  # snapshots still pending
    assert retire(p).terminated == 0
    p.clock.sleep(p.fleet.snapshot_seconds)
    assert retire(p).terminated == 3
    retire(p)

    assert all(p.fleet.state(o.instance_id) in ("shutting-down", "terminated") for o in originals)
    assert all(r.original_retired and r.retired_snapshots for r in records(p).values())
    item = p.migrations.get(MID)
    assert item["retention"]["state"] == "retired" and item["retention"]["retired"] == 3
    after = item["realised"]
    assert after["monthly_stopped_storage"] == pytest.approx(3 * 8 * 0.05)  # 8 GiB roots, as snapshots
    assert after["monthly_savings"] > before["monthly_savings"]
    assert any(n["event"] == "originals-retired" for n in p.notifier.sent)


def test_an_original_someone_started_again_or_not_stopped_by_the_migration_is_kept(p):
    started, untagged, retired = completed(p)
    settle(p)  # stopped
    p.fleet.start([started.instance_id])
    p.fleet.set_tags(untagged.instance_id, **{STOPPED_BY_TAG: "another-migration"})
    p.clock.sleep(7 * 86400 + 1)
    retire(p)
    p.clock.sleep(p.fleet.snapshot_seconds)
    retire(p)
    report = retire(p)

    assert p.fleet.state(started.instance_id) in ("pending", "running")
    assert p.fleet.state(untagged.instance_id) == "stopped"
    assert p.fleet.state(retired.instance_id) in ("shutting-down", "terminated")
    assert len(report.kept) == 2 and any("started it again" in k for k in report.kept)
    assert p.migrations.get(MID)["retention"]["state"] == "retired"


def test_the_operator_extends_the_window_or_ends_it_now(p):
    originals = completed(p)
    operator = Migrations(None, p.migrations, p.plans, p.tokens, p.clock)  # type: ignore[arg-type]  # reads no execution
    p.clock.sleep(6 * 86400)
    operator.set_retention(MID, RetentionChange(days=30))
    p.clock.sleep(2 * 86400)
    assert retire(p).migrations == []  # extended: day 8 is within it

    operator.set_retention(MID, RetentionChange(days=0))
    retire(p)
    p.clock.sleep(p.fleet.snapshot_seconds + timedelta(minutes=1).total_seconds())
    retire(p)
    assert all(p.fleet.state(o.instance_id) in ("shutting-down", "terminated") for o in originals)


def test_retention_of_a_migration_that_keeps_nothing_is_a_conflict(p):
    serving(p, 1)
    p.migrations.create(MID, {}, status="rolled_back")
    operator = Migrations(None, p.migrations, p.plans, p.tokens, p.clock)  # type: ignore[arg-type]  # reads no execution
    with pytest.raises(MigrationConflict):
        operator.set_retention(MID, RetentionChange(days=3))


@pytest.mark.parametrize("days", [-1, 366])
def test_a_retention_out_of_range_is_refused(days):
    with pytest.raises(ValueError):
        RetentionChange(days=days)


def test_snapshots_taken_by_a_run_that_crashed_before_recording_them_are_not_taken_again(p):
    completed(p, count=1)
    p.clock.sleep(7 * 86400 + 1)
    p.world.crash_on("plans.put_record", 0)
    with pytest.raises(Crash):
        retire(p)

    retire(p)

    assert len(p.fleet.snapshots) == 1 and list(records(p).values())[0].retired_snapshots == list(p.fleet.snapshots)
