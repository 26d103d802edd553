"""Replacement claims on moto (adapters/dynamodb/replacements.py): one claim per instance,
with what the takeover needs on it, taken over by one event at a time once its holder died."""

import boto3
import pytest

from spot_core.adapters.dynamodb import schema
from spot_core.adapters.dynamodb.replacements import DynamoReplacementClaims

TABLE = "spot-migration-claims-test"
GROUPS = [{"arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/1", "port": 80}]


@pytest.fixture
def claims(moto):
    boto3.client("dynamodb").create_table(TableName=TABLE, **schema.key_schema())
    return DynamoReplacementClaims(boto3.resource("dynamodb").Table(TABLE))


def test_a_claim_keeps_what_the_takeover_needs_and_is_read_whatever_its_status(claims):
    assert claims.get("i-1") is None
    assert claims.claim("i-1", "event-a", kind="interruption", swap=True, target_groups=GROUPS, refused=None)
    claim = claims.get("i-1")
    assert (claim["status"], claim["event_id"], claim["kind"], claim["swap"]) == ("launching", "event-a",
                                                                                 "interruption", True)
    assert claim["target_groups"] == GROUPS and isinstance(claim["claimed_at"], int) and "refused" not in claim
    assert claims.replacement_for("i-1") is None  # nothing launched yet

    claims.update("i-1", status="launched", replacement_id="i-9", spot_hourly=0.0312)
    assert claims.get("i-1")["spot_hourly"] == 0.0312 and claims.replacement_for("i-1")["status"] == "launched"


def test_a_claimed_instance_is_never_claimed_again_whatever_the_age_of_the_claim(claims):
    assert claims.claim("i-1", "event-a")
    claims.table.update_item(Key={"pk": claims.get("i-1")["pk"], "sk": claims.get("i-1")["sk"]},
                             UpdateExpression="SET claimed_at = :t", ExpressionAttributeValues={":t": 0})
    assert not claims.claim("i-1", "event-b")  # a stale claim is taken over, not claimed anew
    claims.release("i-1")
    assert claims.claim("i-1", "event-b")


def test_an_unfinished_claim_is_taken_over_by_one_event_at_a_time(claims):
    claims.claim("i-1", "event-a")
    held = claims.get("i-1")

    assert claims.take_over("i-1", held, "event-b")
    assert not claims.take_over("i-1", held, "event-c")  # read before event-b took it over
    assert claims.get("i-1")["event_id"] == "event-b"

    claims.update("i-1", status="launched", replacement_id="i-9")
    assert claims.take_over("i-1", claims.get("i-1"), "event-c")
    claims.update("i-1", status="swapped")
    assert not claims.take_over("i-1", claims.get("i-1"), "event-d")  # finished: nothing to resume
    assert not claims.take_over("i-2", {"event_id": "event-a", "claimed_at": 1}, "event-b")  # no claim


def test_a_claim_is_released_only_while_nothing_was_launched(claims):
    claims.claim("i-1", "event-a")
    claims.update("i-1", status="launched", replacement_id="i-9")
    claims.release("i-1")  # the replacement on it is kept
    assert claims.get("i-1")["replacement_id"] == "i-9"
    claims.release("i-2")  # no claim: nothing to give back
