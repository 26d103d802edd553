"""The one way to write a handler (spot_core/entry/handler.py): the event is parsed into its
model before the handler runs, the correlation id is set, the result is returned as JSON,
metrics are flushed, and the whole event is never logged."""

import io
import json

import pytest
from pydantic import BaseModel

from spot_core.domain.errors import InvalidEvent
from spot_core.entry.events import MigrationEvent
from spot_core.entry.handler import budget, handler
from spot_core.entry.observability import count, logger
from spotctl.local.lambdas import FakeContext


class Answer(BaseModel):
    migration_id: str
    seen: bool


@pytest.fixture
def logs():
    stream = io.StringIO()
    saved = [(h, h.stream) for h in logger.handlers]
    for h in logger.handlers:
        h.setStream(stream)
    yield stream
    for h, s in saved:
        h.setStream(s)


def context() -> FakeContext:
    return FakeContext("test", "arn:aws:lambda:us-east-1:123456789012:function:test", 60, 512)


def test_the_handler_gets_the_parsed_model_and_returns_json(logs):
    seen = []

    @handler(MigrationEvent)
    def lambda_handler(event, ctx):
        seen.append(event)
        logger.info("working")
        return Answer(migration_id=event.migration_id, seen=True)

    assert lambda_handler({"migration_id": "mig-1", "task_token": "SECRET"}, context()) == {
        "migration_id": "mig-1", "seen": True}
    assert isinstance(seen[0], MigrationEvent)
    line = json.loads(logs.getvalue().splitlines()[-1])
    assert line["correlation_id"] == "mig-1" and line["function_name"] == "test"
    assert "SECRET" not in logs.getvalue(), "the event is never logged whole"


def test_a_bad_event_fails_before_the_handler_runs():
    called = []

    @handler(MigrationEvent)
    def lambda_handler(event, ctx):
        called.append(event)

    with pytest.raises(InvalidEvent, match="migration_id"):
        lambda_handler({"migration_id": "not an id!"}, context())
    with pytest.raises(InvalidEvent):
        lambda_handler("not even an object", context())
    assert called == []


def test_metrics_are_flushed_as_emf(capsys):
    @handler(MigrationEvent, with_metrics=True)
    def lambda_handler(event, ctx):
        count("InstancesMigrated", 3)
        return {"done": True}

    assert lambda_handler({"migration_id": "mig-2"}, context()) == {"done": True}
    emf = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert emf["InstancesMigrated"] == [3.0] or emf["InstancesMigrated"] == 3.0


def test_without_a_model_the_raw_event_is_handed_over():
    @handler(correlation=None)
    def lambda_handler(event, ctx):
        return event

    assert lambda_handler({"anything": 1}, context()) == {"anything": 1}


def test_the_budget_is_the_invocation_time_left():
    left = budget(context())
    assert 59 <= left.end - left.clock.monotonic() <= 60
    assert budget(None).end - budget(None).clock.monotonic() == pytest.approx(900, abs=1)
