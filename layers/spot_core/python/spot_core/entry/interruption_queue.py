"""EC2 events to the replacement service: a batch from the interruption queue, or one
EventBridge event invoked directly (`sam local invoke` with events/*.json, tests, benchmarks).

The stack's rules put the events on an SQS queue; Lambda's event source mapping hands the
function up to BATCH_SIZE of them, gathered for at most BATCHING_WINDOW_SECONDS. A batch
shares its reads (one describe of its instances, one read of their records: the service's
`prefetch`); every event is still claimed, launched for and written on its own, so one that
fails does not fail the others: Powertools' BatchProcessor returns only the failed messages
to the queue (batchItemFailures), and they come back after RETRY_DELAY_SECONDS rather than
the queue's visibility timeout.

Why a message failed is kept. Every failure is logged with its reason (errorType,
errorMessage, the message and event ids, the delivery count). A message that failed on its
MAX_RECEIVES-th delivery (the queue's maxReceiveCount), or that no retry can fix (an invalid
event), is sent to the dead-letter queue by the function itself, as Lambda's on-failure
destination records it (the event, the error, the attempts), and leaves the queue. Only a
message whose last delivery died without answering (timed out, out of memory) reaches the
dead-letter queue through SQS's own redrive, as the bare event: its reason is in the log of
that invocation (Task timed out).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..adapters.sqs import SqsQueues
from ..domain.errors import InvalidEvent
from ..domain.interruptions import InterruptionOutcome
from ..services.interruptions import Interruptions
from .events import Ec2InstanceEvent, parse_event
from .observability import interruption_metrics, logger

BATCH_SIZE = 10  # messages per invocation at most
BATCHING_WINDOW_SECONDS = 1  # how long the event source mapping gathers a batch: what a lone warning waits
MAX_RECEIVES = 3  # deliveries of a message (the queue's maxReceiveCount): the first and two retries
RETRY_DELAY_SECONDS = 30  # a failed message comes back after this long


def is_queue_batch(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return isinstance(records, list) and bool(records) and all(
        isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)


def handle_event(service: Interruptions, event: Ec2InstanceEvent) -> InterruptionOutcome:
    """One EC2 event (a direct invocation)."""
    outcome = service.handle(event.notice())
    report(event, outcome)
    return outcome


def report(event: Ec2InstanceEvent, outcome: InterruptionOutcome, **log_keys: Any) -> None:
    """What was done with an event: counted (but for ignored state changes, which every instance
    of the account sends) and logged."""
    notice = event.notice()
    if notice.kind != "state-change" or outcome.action != "ignored":
        interruption_metrics(notice.is_interruption, outcome)  # a reclaim without a warning counts as one
    logger.info("interruption handled" if outcome.action != "ignored" else f"event ignored: {outcome.reason}",
                extra={**outcome.model_dump(), **log_keys})  # the correlation id is the event's id


def dead_letter_record(payload: Any, error_type: str, message: str, receives: int, condition: str,
                       function_arn: str | None) -> dict[str, Any]:
    """A failed event as Lambda's on-failure destination records an asynchronous invocation's."""
    return {
        "version": "1.0", "timestamp": datetime.now(UTC).isoformat(),
        "requestContext": {"condition": condition, "approximateInvokeCount": receives, "functionArn": function_arn},
        "requestPayload": payload, "responseContext": {"functionError": "Unhandled"},
        "responsePayload": {"errorType": error_type, "errorMessage": message},
    }


class QueueBatch:
    """One batch of the interruption queue (see the module docstring)."""

    def __init__(self, service: Interruptions, queues: SqsQueues, dead_letter_url: str | None,
                 context: LambdaContext | None):
        self.service, self.queues, self.dead_letter_url = service, queues, dead_letter_url
        self.function_arn = getattr(context, "invoked_function_arn", None)
        self.context = context
        self.events: dict[str, Ec2InstanceEvent] = {}
        self.results: dict[str, InterruptionOutcome | Exception] = {}  # by message id; InvalidEvent: no event

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        records = [SQSRecord(r) for r in event["Records"]]
        parsed = {r.message_id: _parsed(r) for r in records}
        self.events = {m: e for m, e in parsed.items() if isinstance(e, Ec2InstanceEvent)}
        notices = [e.notice() for e in self.events.values()]
        self.service.prefetch(notices)
        self.results = {m: e for m, e in parsed.items() if isinstance(e, InvalidEvent)}
        self.results.update(zip(self.events, self.service.handle_all(notices), strict=True))
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        response: dict[str, Any] = dict(process_partial_response(event, self._one, processor, self.context))
        self._retry_soon(records, {f["itemIdentifier"] for f in response.get("batchItemFailures", [])})
        return response

    def _retry_soon(self, records: list[SQSRecord], failed: set[str]) -> None:
        by_queue: dict[str, list[str]] = {}
        for r in (r for r in records if r.message_id in failed):
            by_queue.setdefault(r.event_source_arn, []).append(r.receipt_handle)
        for arn, handles in by_queue.items():
            self.queues.retry_later(arn, handles, RETRY_DELAY_SECONDS)

    def _one(self, record: SQSRecord) -> None:
        """What became of one message: reported, retried (raised), or kept in the dead-letter queue."""
        receives = int(record.attributes.approximate_receive_count or 1)
        keys = {"message_id": record.message_id, "receives": receives}
        result = self.results[record.message_id]
        if isinstance(result, InvalidEvent):  # no retry can fix it
            self._failed(record, result, keys, condition="InvalidEvent")
            return
        event = self.events[record.message_id]
        logger.set_correlation_id(event.id)
        if isinstance(result, InterruptionOutcome):
            report(event, result, **keys)
        elif receives < MAX_RECEIVES or not self.dead_letter_url:
            self._log(result, keys, dead_lettered=False)
            raise result
        else:
            self._failed(record, result, keys, condition="RetriesExhausted")

    def _failed(self, record: SQSRecord, exc: Exception, keys: dict[str, Any], condition: str) -> None:
        """Kept in the dead-letter queue with its reason, and gone from the queue."""
        if not self.dead_letter_url:
            self._log(exc, keys, dead_lettered=False)
            raise exc
        self.queues.dead_letter(self.dead_letter_url, dead_letter_record(
            _payload(record), type(exc).__name__, str(exc), keys["receives"], condition, self.function_arn))
        self._log(exc, keys, dead_lettered=True)

    @staticmethod
    def _log(exc: Exception, keys: dict[str, Any], dead_lettered: bool) -> None:
        logger.warning("event failed" + (": sent to the dead-letter queue" if dead_lettered else ": retried"),
                       extra={"errorType": type(exc).__name__, "errorMessage": str(exc),
                              "dead_lettered": dead_lettered, **keys})


def _body(record: SQSRecord) -> Any:
    try:
        return record.json_body
    except ValueError as exc:
        raise InvalidEvent(f"invalid Ec2InstanceEvent: the message body is not JSON ({exc})") from None


def _payload(record: SQSRecord) -> Any:
    try:
        return record.json_body
    except ValueError:
        return record.body


def _parsed(record: SQSRecord) -> Ec2InstanceEvent | InvalidEvent:
    try:
        return parse_event(_body(record), Ec2InstanceEvent)
    except InvalidEvent as exc:
        return exc
