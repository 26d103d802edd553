"""The interruption queue, as its consumer uses it beyond what Lambda's event source mapping
does: a message that failed for good goes to the dead-letter queue with the reason (SQS's
own redrive would move it without one), and failed messages come back sooner than the
queue's visibility timeout."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .aws import transient_errors


def queue_url(queue_arn: str) -> str:
    """arn:aws:sqs:<region>:<account>:<name> -> the queue's URL (no call)."""
    _, partition, _, region, account, name = queue_arn.split(":", 5)
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


class SqsQueues:
    def __init__(self, sqs: Any):  # an SQS client (no stubs installed for it)
        self.sqs = sqs

    def dead_letter(self, dead_letter_url: str, record: Mapping[str, Any]) -> None:
        """Keep a failed message, with why it failed, in the dead-letter queue."""
        with transient_errors():
            self.sqs.send_message(QueueUrl=dead_letter_url, MessageBody=json.dumps(record, default=str))

    def retry_later(self, queue_arn: str, receipt_handles: list[str], seconds: int) -> None:
        """The messages become visible again after `seconds` instead of the visibility timeout
        (one call per message: failures are few, and the IAM action is the one the event source
        mapping's consumer already has)."""
        url = queue_url(queue_arn)
        with transient_errors():
            for handle in receipt_handles:
                self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=seconds)
