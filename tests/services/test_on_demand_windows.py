"""Scheduled on-demand windows (services/windows.py): the schedules a completed migration gets,
and what each occurrence starts: a revert at a window's start, a return to Spot at its end, each
once per occurrence, and each waiting for the one before it to complete."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import InstanceRecord

from spot_core.domain.tags import REVERTED_BY_TAG
from spot_core.domain.windows import schedule_name
from spot_core.services.migrations import Migrations
from spot_core.services.windows import SCHEDULED_TIME, Windows

SOURCE = "mig-1"
WINDOW = {"name": "month-end", "start": "cron(0 18 L * ? *)", "end": "cron(0 8 1 * ? *)", "timezone": "Europe/Paris"}
OPENS, CLOSES = "2026-12-31T17:00:00Z", "2027-01-01T07:00:00Z"
OWN_ARN = "arn:aws:lambda:us-east-1:123456789012:function:windows"


class FakeExecutions:
    def __init__(self) -> None:
        self.executions: dict[str, dict[str, Any]] = {}

    def start(self, name: str, execution_input: str) -> dict[str, Any] | None:
        if name in self.executions:
            return None
        self.executions[name] = {"executionArn": f"arn:execution:{name}", "startDate": datetime.now(UTC),
                                 "input": execution_input, "status": "RUNNING"}
        return self.executions[name]

    def describe(self, migration_id: str) -> dict[str, Any] | None:
        return self.executions.get(migration_id)

    def request(self, name: str) -> dict[str, Any]:
        return json.loads(self.executions[name]["input"])


class FakeSchedules:
    def __init__(self) -> None:
        self.schedules: dict[str, dict[str, Any]] = {}

    def put(self, name: str, expression: str, timezone: str, payload: Any, target_arn: str, description: str) -> None:
        self.schedules[name] = {"expression": expression, "timezone": timezone, "payload": dict(payload),
                                "target": target_arn}

    def delete(self, name: str) -> None:
        self.schedules.pop(name, None)


@pytest.fixture
def w(p):
    executions, schedules = FakeExecutions(), FakeSchedules()
    operator = Migrations(executions, p.migrations, p.plans, p.tokens, p.clock)  # type: ignore[arg-type]
    service = Windows(operator, p.migrations, p.plans, schedules, p.clock)
    service.executions, service.fakes = executions, schedules  # type: ignore[attr-defined]
    p.migrations.create(SOURCE, {"windows": [WINDOW], "waves": [50, 100]}, status="completed")
    p.migrations.update(SOURCE, finished_at="2026-12-01T00:00:00+00:00")
    return service


def complete(p, w, mid: str, status: str = "completed", moved: dict[str, str] | None = None) -> None:
    """The execution `mid` ended with `status`, having moved `moved` (instance -> its replacement)."""
    p.migrations.create(mid, w.executions.request(mid), status=status)
    p.migrations.update(mid, finished_at="2026-12-31T18:00:00+00:00")
    p.plans.put_records(mid, [InstanceRecord(instance_id=i, instance_type="m5.large", availability_zone="us-east-1a",
                                             eligible=True, status="migrated", replacement_id=r)
                              for i, r in (moved or {}).items()])
    w.executions.executions[mid]["status"] = "SUCCEEDED" if status == "completed" else "FAILED"


def test_a_completed_migration_gets_a_schedule_for_each_side_of_each_window(p, w):
    result = w.execution_succeeded(SOURCE, OWN_ARN)
    assert sorted(result["scheduled"]) == sorted(schedule_name(SOURCE, "month-end", a) for a in ("open", "close"))
    opening = w.fakes.schedules[schedule_name(SOURCE, "month-end", "open")]
    assert opening == {"expression": WINDOW["start"], "timezone": "Europe/Paris", "target": OWN_ARN, "payload": {
        "migration_id": SOURCE, "window": "month-end", "action": "open", "scheduled_time": SCHEDULED_TIME}}
    w.execution_succeeded(SOURCE, OWN_ARN)  # the same event again: the same two schedules
    assert len(w.fakes.schedules) == 2


def test_a_migration_that_did_not_complete_gets_no_schedule(p, w):
    p.migrations.update(SOURCE, status="rolled_back")
    assert w.execution_succeeded(SOURCE, OWN_ARN)["scheduled"] == []
    assert w.fakes.schedules == {}


def test_the_start_reverts_once_per_occurrence_and_the_end_returns_the_on_demand_instances(p, w):
    revert_id = w.fire(SOURCE, "month-end", "open", OPENS)
    assert revert_id and w.fire(SOURCE, "month-end", "open", OPENS) is None  # fired twice: one revert
    request = w.executions.request(revert_id)
    assert request["revert"]["migration_id"] == SOURCE and request["approval"]["auto_approve"]
    assert request["window_of"] == SOURCE and request["waves"] == [50, 100]
    complete(p, w, revert_id, moved={"i-00000000000000a1": "i-00000000000000b1"})

    return_id = w.fire(SOURCE, "month-end", "close", CLOSES)

    request = w.executions.request(return_id)  # the revert's on-demand instances, as they are then
    assert request["selector"]["tags"] == {REVERTED_BY_TAG: revert_id, "spot-migration:opt-in": "true"}
    assert request["window_of"] == SOURCE and request["windows"] == [] and request["revert"] is None
    assert p.migrations.get(SOURCE)["windows_state"]["returning"] == return_id
    complete(p, w, return_id, moved={"i-00000000000000b1": "i-00000000000000a2"})
    w.execution_succeeded(return_id, OWN_ARN)
    state = p.migrations.get(SOURCE)["windows_state"]
    assert (state["current"], state["open"], state["returning"]) == (return_id, None, None)
    next_revert = w.fire(SOURCE, "month-end", "open", "2027-01-31T17:00:00Z")  # next month: the return's instances
    assert w.executions.request(next_revert)["revert"]["migration_id"] == return_id


def test_an_end_before_its_revert_completed_returns_once_the_revert_completes(p, w):
    revert_id = w.fire(SOURCE, "month-end", "open", OPENS)
    p.migrations.create(revert_id, w.executions.request(revert_id), status="migrating")  # still moving
    assert w.fire(SOURCE, "month-end", "close", CLOSES) is None
    assert p.migrations.get(SOURCE)["windows_state"]["pending"] == {"after": revert_id, "action": "close"}
    p.migrations.items.pop(revert_id)
    complete(p, w, revert_id, moved={"i-00000000000000a1": "i-00000000000000b1"})

    resumed = w.execution_succeeded(revert_id, OWN_ARN)["resumed"]

    assert resumed and w.executions.request(resumed)["selector"]["tags"][REVERTED_BY_TAG] == revert_id
    assert p.migrations.get(SOURCE)["windows_state"]["pending"] is None


def test_a_start_while_the_last_return_still_runs_reverts_once_it_completes(p, w):
    revert_id = w.fire(SOURCE, "month-end", "open", OPENS)
    complete(p, w, revert_id, moved={"i-00000000000000a1": "i-00000000000000b1"})
    return_id = w.fire(SOURCE, "month-end", "close", CLOSES)
    p.migrations.create(return_id, w.executions.request(return_id), status="migrating")
    assert w.fire(SOURCE, "month-end", "open", "2027-01-31T17:00:00Z") is None
    p.migrations.items.pop(return_id)
    complete(p, w, return_id, moved={"i-00000000000000b1": "i-00000000000000a2"})

    resumed = w.execution_succeeded(return_id, OWN_ARN)["resumed"]

    assert resumed and w.executions.request(resumed)["revert"]["migration_id"] == return_id


def test_a_revert_that_rolled_back_leaves_nothing_to_return(p, w):
    revert_id = w.fire(SOURCE, "month-end", "open", OPENS)
    complete(p, w, revert_id, status="rolled_back")
    assert w.fire(SOURCE, "month-end", "close", CLOSES) is None
    state = p.migrations.get(SOURCE)["windows_state"]
    assert state["open"] is None and "nothing to return" in state["history"][-1]["note"]


def test_a_schedule_of_a_window_the_migration_does_not_have_starts_nothing(p, w):
    assert w.fire(SOURCE, "other", "open", OPENS) is None
    assert w.executions.executions == {}


def test_a_return_that_did_not_complete_leaves_the_window_open_and_the_next_end_returns_them(p, w):
    revert_id = w.fire(SOURCE, "month-end", "open", OPENS)
    complete(p, w, revert_id, moved={"i-0000000000000a1": "i-00000000000000b1"})
    first = w.fire(SOURCE, "month-end", "close", CLOSES)
    complete(p, w, first, status="rolled_back")

    assert w.fire(SOURCE, "month-end", "open", "2027-01-31T17:00:00Z") is None  # still on-demand: nothing to revert
    again = w.fire(SOURCE, "month-end", "close", "2027-02-01T07:00:00Z")

    assert again and again != first
    assert w.executions.request(again)["selector"]["tags"][REVERTED_BY_TAG] == revert_id


def test_a_holder_refused_before_it_wrote_anything_counts_as_ended(p, w):
    revert_id = w.fire(SOURCE, "month-end", "open", OPENS)
    complete(p, w, revert_id, moved={"i-0000000000000a1": "i-00000000000000b1"})
    return_id = w.fire(SOURCE, "month-end", "close", CLOSES)
    w.executions.executions[return_id]["status"] = "FAILED"  # its analysis refused it: no item

    assert w.fire(SOURCE, "month-end", "close", "2027-02-01T07:00:00Z")  # returned again, not wedged
