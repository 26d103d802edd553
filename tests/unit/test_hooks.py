"""Interruption hooks (domain/hooks.py): the request's `interruption` block and the instance tags,
strictly validated (every bad value an error naming its field or tag, never echoing a webhook
value), tags overriding the request, bad tags an exclusion at planning, the bounds of a hook and
the webhook URLs accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spot_core.domain.analysis import CarryRules, InstanceFacts, build_record
from spot_core.domain.carry import Inventory, Volume
from spot_core.domain.errors import InvalidMigrationRequest
from spot_core.domain.hooks import (
    CHECKPOINT_TAG,
    CHECKPOINT_TIMEOUT_TAG,
    ON_INTERRUPTION_TAG,
    WEBHOOK_TAG,
    InterruptionHooks,
    drains_first,
    hook_budget,
    hooks_at_interruption,
    hooks_of,
    seconds_to_reclaim,
    webhook_reference,
    webhook_url_problem,
)
from spot_core.domain.plan import Pool, TargetRef
from spot_core.domain.request import parse_request

URL = "https://hooks.example.com/services/T0/B0/s3cr3t"
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:spot-migration/web-AbCdEf"


# --- the request's block --------------------------------------------------------------------------------------------
def test_the_request_defaults_to_replace_without_hooks():
    assert parse_request({}).interruption == InterruptionHooks(on_interruption="replace")


@pytest.mark.parametrize("block", [
    {"on_interruption": "checkpoint", "checkpoint_command": "systemctl kill -s USR1 app", "timeout_seconds": 60},
    {"on_interruption": "checkpoint", "checkpoint_document": "spot-migration-flush",
     "webhook": "ssm:/spot-migration/w"},
    {"on_interruption": "drain"},
    {"on_interruption": "drain", "checkpoint_command": "flush", "webhook": f"secretsmanager:{ARN}"},
    {"webhook": "secretsmanager:spot-migration/team/web"},
])
def test_valid_blocks_are_taken(block):
    assert parse_request({"interruption": block}).interruption == InterruptionHooks.model_validate(block)


@pytest.mark.parametrize(("block", "named"), [
    ({"on_interruption": "pause"}, "interruption.on_interruption"),
    ({"on_interruption": "checkpoint"}, "needs checkpoint_command or checkpoint_document"),
    ({"checkpoint_command": "flush"}, "runs only with on_interruption checkpoint or drain"),
    ({"on_interruption": "drain", "checkpoint_command": "  "}, "interruption.checkpoint_command: Value error, must"),
    ({"on_interruption": "drain", "checkpoint_command": "x" * 1001}, "interruption.checkpoint_command"),
    ({"on_interruption": "drain", "checkpoint_command": "a", "checkpoint_document": "spot-migration-a"}, "not both"),
    ({"on_interruption": "drain", "checkpoint_document": "AWS-RunShellScript"}, "interruption.checkpoint_document"),
    ({"on_interruption": "drain", "checkpoint_document": "spot-migration-a/b"}, "interruption.checkpoint_document"),
    ({"webhook": URL}, "interruption.webhook: Value error, must not hold a URL"),
    ({"webhook": "secretsmanager:other/web"}, "interruption.webhook"),
    ({"webhook": "ssm:/other/web"}, "interruption.webhook"),
    ({"webhook": "arn:aws:secretsmanager:us-east-1:123456789012:secret:spot-migration/x"}, "interruption.webhook"),
    ({"webhook": 42}, "interruption.webhook"),
    ({"timeout_seconds": 5}, "interruption.timeout_seconds"),
    ({"timeout_seconds": 121}, "interruption.timeout_seconds"),
    ({"timeout_seconds": "soon"}, "interruption.timeout_seconds"),
    ({"on_interruption": "drain", "retries": 3}, "interruption.retries"),
    ("replace", "interruption"),
])
def test_every_bad_value_of_the_block_is_an_invalid_request_naming_the_field(block, named):
    with pytest.raises(InvalidMigrationRequest) as refused:
        parse_request({"interruption": block})
    assert named in str(refused.value)
    assert URL not in str(refused.value) and "s3cr3t" not in str(refused.value)


# --- the tags -----------------------------------------------------------------------------------------------------
REQUEST = InterruptionHooks(on_interruption="checkpoint", checkpoint_command="flush", webhook="ssm:/spot-migration/w")


def test_each_tag_overrides_its_field_of_the_request():
    assert hooks_of({}, REQUEST) == REQUEST
    assert hooks_of({CHECKPOINT_TIMEOUT_TAG: "30"}, REQUEST).timeout_seconds == 30
    assert hooks_of({ON_INTERRUPTION_TAG: "drain"}, REQUEST) == REQUEST.model_copy(update={"on_interruption": "drain"})
    document = hooks_of({CHECKPOINT_TAG: "ssm:spot-migration-save"}, REQUEST)
    assert (document.checkpoint_document, document.checkpoint_command) == ("spot-migration-save", None)
    assert hooks_of({WEBHOOK_TAG: f"secretsmanager:{ARN}"}, None).webhook == f"secretsmanager:{ARN}"
    # replace drops the request's checkpoint; the webhook stays
    assert hooks_of({ON_INTERRUPTION_TAG: "replace"}, REQUEST) == InterruptionHooks(webhook=REQUEST.webhook)


@pytest.mark.parametrize(("tags", "named"), [
    ({ON_INTERRUPTION_TAG: "pause"}, f"{ON_INTERRUPTION_TAG}='pause' is not one of replace, checkpoint, drain"),
    ({ON_INTERRUPTION_TAG: "checkpoint"}, "needs checkpoint_command or checkpoint_document"),
    ({CHECKPOINT_TAG: "flush"}, "runs only with on_interruption checkpoint or drain"),
    ({ON_INTERRUPTION_TAG: "drain", CHECKPOINT_TAG: "ssm:AWS-RunShellScript"}, CHECKPOINT_TAG),
    ({CHECKPOINT_TIMEOUT_TAG: "soon"}, f"{CHECKPOINT_TIMEOUT_TAG}='soon' is not a number of seconds"),
    ({CHECKPOINT_TIMEOUT_TAG: "600"}, CHECKPOINT_TIMEOUT_TAG),
    ({WEBHOOK_TAG: URL}, f"{WEBHOOK_TAG}: must not hold a URL"),
    ({WEBHOOK_TAG: "secretsmanager:prod/web"}, WEBHOOK_TAG),
])
def test_every_bad_tag_is_an_error_naming_the_tag_never_the_url(tags, named):
    with pytest.raises(ValueError) as refused:
        hooks_of(tags, None)
    assert named in str(refused.value) and URL not in str(refused.value)


NO_HOOKS = CarryRules()


def record_of(tags: dict[str, str], rules: CarryRules = NO_HOOKS):
    facts = InstanceFacts(instance_id="i-0123456789abcdef0", instance_type="m5.large", availability_zone="us-east-1a",
                          state="running", tags=tags, inventory=Inventory(volumes=(Volume(
                              volume_id="vol-1", device="/dev/xvda", size_gib=8, volume_type="gp3", root=True),)))
    return build_record(facts, on_demand_hourly=0.096, cpu_values=[], min_savings_pct=0,
                        pools=[Pool(instance_type="m5.large", availability_zone="us-east-1a", spot_hourly=0.03)],
                        target_groups=[TargetRef(arn="arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/w/1")],
                        rules=rules)


def test_at_planning_the_hooks_go_into_the_plan_and_bad_tags_are_an_exclusion_with_the_reason():
    assert record_of({}).carry.hooks is None  # the default: nothing to carry
    planned = record_of({ON_INTERRUPTION_TAG: "drain"}, CarryRules(hooks=REQUEST))
    assert planned.eligible and planned.carry.hooks == REQUEST.model_copy(update={"on_interruption": "drain"})
    bad = record_of({WEBHOOK_TAG: URL})
    assert (bad.eligible, bad.exclusion_reason) == (False, "invalid_hook_tag")
    assert "must not hold a URL" in bad.exclusion_detail and URL not in bad.model_dump_json()


def test_at_interruption_bad_tags_fall_back_to_replace_with_a_note():
    hooks, note = hooks_at_interruption({ON_INTERRUPTION_TAG: "pause"}, REQUEST)
    assert hooks == InterruptionHooks() and "replaced without hooks" in note
    assert hooks_at_interruption({}, REQUEST) == (REQUEST, None)


# --- bounds, references and URLs -------------------------------------------------------------------------------------
def test_a_hook_waits_no_longer_than_its_timeout_the_reclaim_or_the_invocation():
    event = datetime(2026, 1, 1, tzinfo=UTC)
    assert seconds_to_reclaim("interruption", event, event + timedelta(seconds=30)) == 90
    assert seconds_to_reclaim("rebalance", event, event) is None
    assert hook_budget(90, 118, 70) == 70
    assert hook_budget(30, 118, 70) == 30
    assert hook_budget(90, 12, 70) == 12
    assert hook_budget(90, None, 70) == 70
    assert hook_budget(90, -5, 70) == 0


def test_drain_goes_first_only_when_ec2_takes_the_instance_back():
    assert drains_first("drain", "interruption") and drains_first("drain", "state-change")
    assert not drains_first("drain", "rebalance")  # a swap the product starts: the replacement registers first
    assert not drains_first("replace", "interruption") and not drains_first("checkpoint", "interruption")


def test_webhook_references_name_the_products_secrets_and_parameters_only():
    assert webhook_reference("secretsmanager:spot-migration/web") == ("secretsmanager", "spot-migration/web")
    assert webhook_reference(f"secretsmanager:{ARN}") == ("secretsmanager", ARN)
    assert webhook_reference("ssm:/spot-migration/team/web") == ("ssm", "/spot-migration/team/web")
    for bad in ("ssm:spot-migration/web", "secretsmanager:", "vault:spot-migration/web", "ssm:/spot-migration/"):
        with pytest.raises(ValueError):
            webhook_reference(bad)


@pytest.mark.parametrize(("url", "accepted"), [
    (URL, True),
    ("http://127.0.0.1:8080/hook", True),
    ("http://localhost/hook", True),
    ("http://hooks.example.com/hook", False),
    ("http://127.0.0.1.example.com/hook", False),
    ("ftp://hooks.example.com/hook", False),
    ("hooks.example.com/hook", False),
    ("", False),
])
def test_only_https_urls_are_called_but_loopback_http(url, accepted):
    problem = webhook_url_problem(url)
    assert (problem is None) == accepted
    assert problem is None or (url not in problem or not url)
