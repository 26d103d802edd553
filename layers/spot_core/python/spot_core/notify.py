"""SNS notifications. Messages are built from explicit fields only, so nothing secret
(the approval task token above all) can slip into one."""

from __future__ import annotations

import json
from typing import Any

from .aws import transient_errors


class Notifier:
    def __init__(self, sns: Any, topic_arn: str):
        self.sns, self.topic_arn = sns, topic_arn

    def publish(self, migration_id: str, event: str, headline: str, lines: list[str], data: dict[str, Any]) -> None:
        body = "\n".join([headline, "", *lines, "", "Details:", json.dumps(data, indent=2, sort_keys=True, default=str)])
        subject = f"[spot-migration] {migration_id}: {event}"[:100]
        with transient_errors():
            self.sns.publish(
                TopicArn=self.topic_arn, Subject=subject, Message=body,
                MessageAttributes={
                    "event": {"DataType": "String", "StringValue": event},
                    "migration_id": {"DataType": "String", "StringValue": migration_id},
                },
            )


def money(value: float) -> str:
    return f"${value:,.2f}"
