"""EventBridge Scheduler: the schedules of on-demand windows, in the stack's schedule group.

Each one invokes a function with a fixed JSON payload (Scheduler fills in its context
attributes, e.g. the occurrence's scheduled time) through the role the stack gives Scheduler.
Putting a schedule that exists updates it, so a retried call changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .aws import error_code, transient_errors

MAX_EVENT_AGE = 6 * 3600  # seconds Scheduler keeps retrying an occurrence the function could not take
MAX_ATTEMPTS = 20


class SchedulerSchedules:
    def __init__(self, scheduler: Any, group: str, role_arn: str):
        self.scheduler, self.group, self.role_arn = scheduler, group, role_arn

    def put(self, name: str, expression: str, timezone: str, payload: Mapping[str, Any], target_arn: str,
            description: str) -> None:
        schedule = {
            "Name": name, "GroupName": self.group, "ScheduleExpression": expression,
            "ScheduleExpressionTimezone": timezone, "FlexibleTimeWindow": {"Mode": "OFF"}, "State": "ENABLED",
            "Description": description[:512],
            "Target": {"Arn": target_arn, "RoleArn": self.role_arn, "Input": json.dumps(payload, sort_keys=True),
                       "RetryPolicy": {"MaximumEventAgeInSeconds": MAX_EVENT_AGE,
                                       "MaximumRetryAttempts": MAX_ATTEMPTS}},
        }
        with transient_errors():
            try:
                self.scheduler.create_schedule(**schedule)
            except Exception as exc:
                if error_code(exc) != "ConflictException":
                    raise
                self.scheduler.update_schedule(**schedule)

    def delete(self, name: str) -> None:
        with transient_errors():
            try:
                self.scheduler.delete_schedule(Name=name, GroupName=self.group)
            except Exception as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
