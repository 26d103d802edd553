"""EventBridge Scheduler on the embedded runtime: moto keeps the schedules the windows function
creates; this fires them on the runtime's own clock (`advance_to`), occurrence by occurrence,
as Scheduler would: the target invoked asynchronously with the schedule's input, its
``<aws.scheduler.scheduled-time>`` replaced by the occurrence's time."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from spot_core.domain.windows import Cron, zone_of

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
GROUP = "spot-migration-windows"


@dataclass
class Fired:
    schedule: str
    at: datetime
    function: str
    answer: dict


@dataclass
class LocalScheduler:
    runtime: Any  # the LocalRuntime (its clients and asynchronous invocation)
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(second=0, microsecond=0))
    fired: list[Fired] = field(default_factory=list)

    def create_group(self) -> str:
        self.runtime.client("scheduler").create_schedule_group(Name=GROUP)
        return GROUP

    def schedules(self) -> list[dict]:
        client = self.runtime.client("scheduler")
        names = [s["Name"] for s in client.list_schedules(GroupName=GROUP).get("Schedules", [])]
        return [client.get_schedule(Name=n, GroupName=GROUP) for n in names]

    def advance_to(self, moment: datetime) -> list[Fired]:
        """Every occurrence up to `moment`, in time order (what fires may create more schedules)."""
        fired: list[Fired] = []
        while True:
            due = self._next_due(moment)
            if due is None:
                self.now = max(self.now, moment)
                return fired
            at, schedule = due
            self.now = at
            fired.append(self._fire(schedule, at))

    def _next_due(self, moment: datetime) -> tuple[datetime, dict] | None:
        upcoming = []
        for schedule in self.schedules():
            if schedule.get("State", "ENABLED") != "ENABLED":
                continue
            cron = Cron.parse(schedule["ScheduleExpression"])
            at = cron.next_after(self.now, zone_of(schedule.get("ScheduleExpressionTimezone") or "UTC"))
            if at is not None and at <= moment:
                upcoming.append((at, schedule["Name"], schedule))
        if not upcoming:
            return None
        at, _, schedule = min(upcoming, key=lambda u: (u[0], u[1]))
        return at, schedule

    def _fire(self, schedule: dict, at: datetime) -> Fired:
        target = schedule["Target"]
        stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = json.loads(target["Input"].replace(SCHEDULED_TIME, stamp))
        function = target["Arn"].split(":function:", 1)[1].split(":", 1)[0]
        answer = self.runtime.invoke_async(function, event)
        fired = Fired(schedule["Name"], at, function, answer)
        self.fired.append(fired)
        return fired
