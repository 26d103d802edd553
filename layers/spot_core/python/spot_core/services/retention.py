"""Retire the stopped originals of completed migrations once their retention is over: snapshot
their volumes, then (snapshots complete) terminate them. Run by the scheduled sweep, a step per
run; see domain/retention.py for the rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from ..domain.clock import Clock
from ..domain.instances import Instance
from ..domain.outcomes import Realised
from ..domain.plan import InstanceRecord
from ..domain.retention import SNAPSHOT_OF_TAG, STOPPED_BY_TAG, Retention, next_step, snapshot_monthly
from ..domain.tags import MANAGED_TAG, MIGRATION_ID_TAG
from ..ports import Fleet, MigrationRepository, Notifier, PlanRepository

PAGE = 100


class RetentionReport(BaseModel):
    migrations: list[str] = Field(default_factory=list)  # those whose retention was due
    snapshotted: int = 0
    terminated: int = 0
    kept: list[str] = Field(default_factory=list)


@dataclass
class RetireOriginals:
    fleet: Fleet
    migrations: MigrationRepository
    plans: PlanRepository
    notifier: Notifier
    clock: Clock

    def run(self) -> RetentionReport:
        now, report = self.clock.now(), RetentionReport()
        for item in self._completed():
            retention = Retention.model_validate(item["retention"])
            if retention.due(now):
                report.migrations.append(item["migration_id"])
                self._retire(item, retention, report)
        return report

    def _completed(self) -> list[dict[str, Any]]:
        found, key = [], None
        while True:
            items, key = self.migrations.page(PAGE, key, status="completed")
            found += [i for i in items if i.get("retention")]
            if key is None:
                return found

    def _retire(self, item: dict[str, Any], retention: Retention, report: RetentionReport) -> None:
        mid = item["migration_id"]
        records = [r for r in self.plans.records(mid) if r.status == "migrated"]
        originals = self.fleet.describe([r.instance_id for r in records])
        planned = self._plan(mid, records, originals)
        for record, step, _ in planned:
            self._apply(mid, record, step)
        steps = [step for _, step, _ in planned]
        kept = [why for _, step, why in planned if step == "kept"]
        report.snapshotted += steps.count("snapshot")
        report.terminated += steps.count("terminate")
        report.kept += kept
        self._update(item, retention, records, kept, done=set(steps) <= {"retired", "kept"})

    def _plan(self, mid: str, records: list[InstanceRecord], originals: Mapping[str, Instance]
              ) -> list[tuple[InstanceRecord, str, str]]:
        snapshots = self.fleet.snapshot_states([s for r in records for s in r.retired_snapshots])
        return [(r, *next_step(r, originals.get(r.instance_id), mid, snapshots)) for r in records]

    def _apply(self, mid: str, record: InstanceRecord, step: str) -> None:
        if step == "snapshot":
            self._snapshot(mid, record)
        elif step == "terminate":
            self._terminate(mid, record)

    def _snapshot(self, mid: str, record: InstanceRecord) -> None:
        """Every volume of the original, one crash-consistent set; tagged as the product's own."""
        own = {MANAGED_TAG: "true", MIGRATION_ID_TAG: mid, STOPPED_BY_TAG: mid, SNAPSHOT_OF_TAG: record.instance_id}
        record.retired_snapshots, record.retired_gib = self.fleet.snapshot_instance(record.instance_id, own)
        self.plans.put_record(mid, record)

    def _terminate(self, mid: str, record: InstanceRecord) -> None:
        self.fleet.terminate([record.instance_id])
        record.original_retired = True
        record.attempts.append(f"retention over: {record.instance_id} terminated; its volumes kept as snapshots "
                               + ", ".join(record.retired_snapshots))
        self.plans.put_record(mid, record)

    def _update(self, item: dict[str, Any], retention: Retention, records: list[InstanceRecord],
                kept: list[str], done: bool) -> None:
        """Progress on the item; when done, the realised savings count snapshots, not volumes."""
        mid = item["migration_id"]
        retired = sum(1 for r in records if r.original_retired)
        state = "retired" if done else "retiring"
        fields: dict[str, Any] = {"retention": retention.model_copy(update={
            "state": state, "retired": retired, "kept": kept[:20]}).model_dump()}
        if done and item.get("realised"):
            storage = sum(snapshot_monthly(r) if r.original_retired else r.stopped_storage_monthly for r in records)
            fields["realised"] = Realised.model_validate(item["realised"]).with_storage(storage).model_dump()
        self.migrations.update(mid, **fields)
        if done:
            lines = [f"{retired} stopped original(s) terminated; their volumes are kept as snapshots", *kept]
            self.notifier.publish(mid, "originals-retired", f"Migration {mid}: retention over", lines,
                                  {"retired": retired, "kept": len(kept)})
