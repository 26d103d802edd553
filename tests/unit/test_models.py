"""The validated shapes: MigrationRequest (the state machine input), ids, plan records."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spot_core.domain.errors import InvalidEvent, InvalidMigrationRequest
from spot_core.domain.plan import AgentVerdict, InstanceRecord
from spot_core.domain.request import MigrationRequest, QualityConfig, check_migration_id, parse_request
from spot_core.domain.tags import OPT_IN_TAG
from spot_core.entry.events import MigrationEvent, parse_event

EVENTS = Path(__file__).resolve().parents[2] / "events"
TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/6d0ecf831eec9f09"


def invalid(payload) -> str:
    """The message of the InvalidMigrationRequest raised for `payload`."""
    with pytest.raises(InvalidMigrationRequest) as info:
        parse_request(payload)
    return str(info.value)


# --- defaults and the documented example --------------------------------------------------


def test_empty_request_gets_the_documented_defaults():
    request = parse_request({})
    assert request.selector.tags == {OPT_IN_TAG: "true"}
    assert request.selector.instance_ids == []
    assert request.waves == [10.0, 50.0, 100.0]
    assert request.bake_seconds == [300, 600, 900]
    assert request.quality.threshold_pct == 5.0
    assert request.approval.auto_approve is False
    assert request.approval.timeout_seconds == 86_400
    assert request.dry_run is False


# --- any JSON value: a request object, or InvalidMigrationRequest ------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
FIELDS = sorted(MigrationRequest.model_fields) + sorted(QualityConfig.model_fields)
# objects shaped like a request (its field names, nested), with any values
REQUEST_LIKE = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), inner, max_size=4),
                            max_leaves=25)


@pytest.mark.parametrize("payload, kind", [
    (None, "null"), (True, "a boolean"), (False, "a boolean"), (0, "a number"), (-1.5, "a number"),
    ("", "a string"), ('{"dry_run": true}', "a string"), ([], "an array"), ([{}], "an array"),
    ([[[[[]]]]], "an array"),
], ids=["null", "true", "false", "zero", "float", "empty-string", "json-string", "empty-array", "array-of-object",
        "nested-arrays"])
def test_a_request_that_is_not_an_object_is_invalid_and_says_what_it_is(payload, kind):
    """Not even the falsy ones (null, 0, "", [], false) are taken for the default request."""
    expected = f"invalid migration request: input: must be a JSON object (the migration request), not {kind}"
    assert invalid(payload) == expected


@given(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
@settings(deadline=None, max_examples=200)
def test_every_json_value_but_an_object_is_an_invalid_request(payload):
    assert "must be a JSON object" in invalid(payload)


@given(REQUEST_LIKE.filter(lambda v: isinstance(v, dict)))
@settings(deadline=None, max_examples=300)
def test_every_json_object_is_a_request_or_an_invalid_request_naming_its_fields(payload):
    try:
        request = parse_request(payload)
    except InvalidMigrationRequest as exc:
        message = str(exc)
        assert message.startswith("invalid migration request: ")
        return
    assert isinstance(request, MigrationRequest) and request.waves[-1] == 100  # a valid one is whole


def test_documented_state_machine_input_is_valid():
    payload = json.loads((EVENTS / "state_machine_input.json").read_text())
    request = parse_request(payload)
    assert request.waves == [10, 50, 100]
    assert request.bake_seconds == [300, 600, 900]
    assert request.quality.target_group_arn == payload["quality"]["target_group_arn"]
    assert request.quality.alarm_names == payload["quality"]["alarm_names"]
    assert request.approval.timeout_seconds == payload["approval"]["timeout_seconds"]


def test_request_round_trips_through_its_dump():
    """The analyze handler returns request.model_dump(); later handlers re-validate it."""
    request = parse_request({"waves": [25, 100], "bake_seconds": [60, 120], "quality": {"target_group_arn": TG_ARN}})
    again = MigrationRequest.model_validate(json.loads(json.dumps(request.model_dump())))
    assert again == request


@pytest.mark.parametrize(
    "waves, expected",
    [
        ([100], [300]),
        ([50, 100], [300, 600]),
        ([10, 50, 100], [300, 600, 900]),
        ([5, 10, 25, 50, 100], [300, 600, 900, 900, 900]),
    ],
)
def test_default_bake_times_have_one_value_per_wave(waves, expected):
    assert parse_request({"waves": waves}).bake_seconds == expected


def test_instance_ids_are_deduplicated_and_sorted():
    ids = ["i-0fedcba9876543210", "i-0123456789abcdef0", "i-0fedcba9876543210"]
    request = parse_request({"selector": {"instance_ids": ids}})
    assert request.selector.instance_ids == ["i-0123456789abcdef0", "i-0fedcba9876543210"]


# --- validation errors name the field ------------------------------------------------------


def test_waves_not_increasing():
    message = invalid({"waves": [50, 10, 100]})
    assert "waves" in message and "increase" in message


def test_waves_repeated_are_not_increasing():
    assert "increase" in invalid({"waves": [50, 50, 100]})


def test_waves_decreasing_sample_event_is_rejected():
    event = json.loads((EVENTS / "invalid_analyze.json").read_text())
    message = invalid(event["request"])
    assert "waves" in message


def test_last_wave_must_be_100():
    message = invalid({"waves": [10, 50]})
    assert "waves" in message and "100" in message


@pytest.mark.parametrize("waves", [[0, 100], [-10, 100], [10, 150], [float("nan"), 100]])
def test_waves_out_of_range(waves):
    message = invalid({"waves": waves})
    assert "waves" in message


def test_empty_waves():
    assert "waves" in invalid({"waves": []})


def test_bake_seconds_length_mismatch():
    message = invalid({"waves": [10, 50, 100], "bake_seconds": [60, 60]})
    assert "bake_seconds" in message and "one value per wave" in message


def test_bake_seconds_out_of_range():
    assert "bake_seconds" in invalid({"waves": [50, 100], "bake_seconds": [60, 90_000]})
    assert "bake_seconds" in invalid({"waves": [50, 100], "bake_seconds": [-1, 60]})


@pytest.mark.parametrize("bad", [
    "i-123", "x-0123456789abcdef0", "i-0123456789ABCDEF0", "i-0123456789abcdef01234", "", "i-ghijklmn",
])
def test_bad_instance_ids(bad):
    message = invalid({"selector": {"instance_ids": ["i-0123456789abcdef0", bad]}})
    assert "selector.instance_ids" in message


def test_instance_id_with_trailing_newline_is_rejected():
    """`$` in the id regex matches before a trailing newline; an id is the whole string."""
    assert "selector.instance_ids" in invalid({"selector": {"instance_ids": ["i-0123456789abcdef0\n"]}})


def test_bad_instance_ids_are_named_in_the_message():
    assert "i-nope" in invalid({"selector": {"instance_ids": ["i-nope"]}})


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"wavez": [10, 100]}, "wavez"),
        ({"quality": {"treshold_pct": 5}}, "quality.treshold_pct"),
        ({"approval": {"auto_approve": True, "approvers": ["ops"]}}, "approval.approvers"),
        ({"selector": {"tags": {OPT_IN_TAG: "true"}, "asg": "web"}}, "selector.asg"),
    ],
)
def test_extra_fields_are_rejected(payload, field):
    message = invalid(payload)
    assert field in message
    assert "Extra inputs are not permitted" in message


def test_every_problem_is_listed():
    message = invalid({"waves": [50, 10], "dry_run": "maybe", "colour": "blue"})
    assert "waves" in message and "dry_run" in message and "colour" in message


def test_selector_needs_tags_or_ids():
    assert "selector" in invalid({"selector": {"tags": {}}})


def test_selector_with_ids_only_is_valid():
    request = parse_request({"selector": {"tags": {}, "instance_ids": ["i-0123456789abcdef0"]}})
    assert request.selector.instance_ids == ["i-0123456789abcdef0"]


def test_target_group_arn_must_be_a_target_group():
    load_balancer = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/1"
    message = invalid({"quality": {"target_group_arn": load_balancer}})
    assert "quality.target_group_arn" in message


@pytest.mark.parametrize("threshold", [0, -1, 100.5])
def test_threshold_bounds(threshold):
    assert "quality.threshold_pct" in invalid({"quality": {"threshold_pct": threshold}})


def test_errors_metric_needs_requests_metric():
    metric = {"namespace": "App", "metric_name": "Errors", "statistic": "Sum"}
    assert "quality" in invalid({"quality": {"errors": metric}})
    config = QualityConfig(errors=metric, requests={**metric, "metric_name": "Requests"})
    assert config.requests.metric_name == "Requests"


@pytest.mark.parametrize("timeout", [0, 8 * 24 * 3600])
def test_approval_timeout_bounds(timeout):
    assert "approval.timeout_seconds" in invalid({"approval": {"timeout_seconds": timeout}})


@pytest.mark.parametrize("payload, field", [
    ({"wave_success_ratio": 0}, "wave_success_ratio"),
    ({"wave_success_ratio": 1.5}, "wave_success_ratio"),
    ({"min_savings_pct": 100}, "min_savings_pct"),
    ({"min_savings_pct": -1}, "min_savings_pct"),
])
def test_ratio_bounds(payload, field):
    assert field in invalid(payload)


def test_non_object_request_is_rejected():
    assert "invalid migration request" in invalid([50, 10])
    assert "invalid migration request" in invalid("waves=10,50,100")


def test_invalid_request_is_a_value_error_with_the_step_functions_name():
    with pytest.raises(ValueError) as info:
        parse_request({"waves": [50, 10]})
    assert type(info.value).__name__ == "InvalidMigrationRequest"


@given(st.lists(st.floats(min_value=0.01, max_value=99.99, allow_nan=False), min_size=0, max_size=8, unique=True))
@settings(deadline=None)
def test_any_strictly_increasing_waves_ending_at_100_are_valid(inner):
    waves = sorted(inner) + [100.0]
    request = parse_request({"waves": waves})
    assert request.waves == waves
    assert len(request.bake_seconds) == len(waves)


@given(st.lists(st.floats(min_value=0.01, max_value=100, allow_nan=False), min_size=2, max_size=9))
@settings(deadline=None)
def test_waves_with_a_non_increase_are_always_rejected(waves):
    waves = waves + [100.0]
    if all(b > a for a, b in zip(waves, waves[1:], strict=False)):
        return
    with pytest.raises(InvalidMigrationRequest, match="waves"):
        parse_request({"waves": waves})


# --- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["demo-migration-0001", "mig_1", "a", "A" * 80])
def test_good_migration_ids(good):
    assert check_migration_id(good) == good
    assert parse_event({"migration_id": good}, MigrationEvent).migration_id == good


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a b", "A" * 81, "mig:1", "demo-migration-0001\n"])
def test_bad_migration_ids(bad):
    with pytest.raises(InvalidMigrationRequest, match="migration_id"):
        check_migration_id(bad)
    with pytest.raises(InvalidEvent, match="migration_id"):
        parse_event({"migration_id": bad}, MigrationEvent)


def test_non_string_migration_id():
    with pytest.raises(InvalidMigrationRequest):
        check_migration_id(42)
    with pytest.raises(InvalidEvent):
        parse_event({"migration_id": 42}, MigrationEvent)


# --- records and verdicts ---------------------------------------------------------------------


def test_instance_record_defaults():
    record = InstanceRecord(instance_id="i-0123456789abcdef0", instance_type="m5.large", availability_zone="us-east-1a",
                            eligible=True)
    assert record.status == "planned"
    assert record.risk == "medium"
    assert record.workload == "unknown"
    assert record.wave is None and record.pools == [] and record.attempts == []


def test_instance_record_rejects_unknown_status():
    with pytest.raises(ValidationError):
        InstanceRecord(instance_id="i-0123456789abcdef0", instance_type="m5.large", availability_zone="us-east-1a",
                       eligible=True, status="teleported")


@pytest.mark.parametrize("confidence", [-0.1, 1.1])
def test_verdict_confidence_is_a_probability(confidence):
    with pytest.raises(ValidationError):
        AgentVerdict(agent="capacity", approved=True, confidence=confidence)


def test_verdict_agent_is_one_of_three():
    with pytest.raises(ValidationError):
        AgentVerdict(agent="security", approved=True, confidence=0.5)
