"""SNS notifications. Messages are built from explicit fields only, so nothing secret
(the approval task token above all) can slip into one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .aws import transient_errors

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

SUBJECT_LIMIT = 100  # characters SNS takes in a subject


class SnsNotifier:
    def __init__(self, sns: SNSClient, topic_arn: str):
        self.sns, self.topic_arn = sns, topic_arn

    def publish(self, subject_id: str, event: str, headline: str, lines: list[str], data: Mapping[str, Any]) -> None:
        """`subject_id`: the migration (or instance) the notification is about."""
        details = json.dumps(data, indent=2, sort_keys=True, default=str)
        body = "\n".join([headline, "", *lines, "", "Details:", details])
        subject = f"[spot-migration] {subject_id}: {event}"[:SUBJECT_LIMIT]
        with transient_errors():
            self.sns.publish(
                TopicArn=self.topic_arn, Subject=subject, Message=body,
                MessageAttributes={
                    "event": {"DataType": "String", "StringValue": event},
                    "subject_id": {"DataType": "String", "StringValue": subject_id},
                },
            )
