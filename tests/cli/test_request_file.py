"""`spotctl migrate|plan --request FILE`: whatever the file holds, a clear usage error (exit 2)
before anything is started, never a crash."""

import json

import pytest

from spotctl.cli import main, parser
from spotctl.local.runtime import LocalRuntime
from spotctl.request_flags import UsageError, build_request


def request_file(tmp_path, content: str | bytes):
    path = tmp_path / "request.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def build(tmp_path, content, *flags):
    args = parser().parse_args(["migrate", "--request", request_file(tmp_path, content), *flags])
    return build_request(args, {"TargetGroupArn": TG}, dry_run=False)


TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/6d0ecf831eec9f09"


@pytest.mark.parametrize("content, kind", [
    ("null", "null"), ("true", "a boolean"), ("0", "a number"), ('"{}"', "a string"), ("[]", "an array"),
    ('[{"dry_run": true}]', "an array"),
])
def test_a_request_file_that_is_not_an_object_is_a_usage_error(tmp_path, content, kind):
    with pytest.raises(UsageError, match=f"must hold a JSON object \\(the migration request\\), not {kind}$"):
        build(tmp_path, content)


@pytest.mark.parametrize("content, problem", [
    ("{not json", "Expecting property name"),
    (b'{"dry_run": "\xff"}', "codec can't decode"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("", "Expecting value"),
], ids=["not-json", "not-utf8", "deep", "empty"])
def test_an_unreadable_request_file_is_a_usage_error(tmp_path, content, problem):
    with pytest.raises(UsageError, match=problem):
        build(tmp_path, content)


@pytest.mark.parametrize("content, flags, field", [
    ({"selector": "web"}, ["--tag", "team=web"], "selector"),
    ({"selector": ["i-0123456789abcdef0"]}, ["--instance-id", "i-0123456789abcdef0"], "selector"),
    ({"quality": []}, ["--threshold", "3"], "quality"),
    ({"quality": "fast"}, [], "quality"),  # the target group default goes nowhere
    ({"approval": 5}, ["--auto-approve"], "approval"),
], ids=["selector-string", "selector-array", "quality-array", "quality-string", "approval-number"])
def test_a_section_of_the_wrong_type_is_reported_not_crashed_on(tmp_path, content, flags, field):
    with pytest.raises(UsageError, match=f"invalid migration request: {field}: Input should be"):
        build(tmp_path, json.dumps(content), *flags)


def test_flags_still_fill_in_a_request_file(tmp_path):
    body = build(tmp_path, json.dumps({"quality": {"threshold_pct": 2}}), "--tag", "team=web", "--auto-approve")
    assert body.selector.tags == {"team": "web"} and body.approval.auto_approve is True
    assert (body.quality.threshold_pct, body.quality.target_group_arn) == (2, TG)


def test_migrate_with_a_malformed_request_file_starts_nothing(tmp_path, capsys):
    with LocalRuntime(seed=5) as rt:
        rt.fleet.seed_fleet(3)
        rt.publish_stack("SpotMigration")
        for content in ("[1, 2]", "null", '"migrate"', "{oops"):
            code = main(["migrate", "--region", "us-east-1", "--request", request_file(tmp_path, content)])
            assert code == 2 and "spotctl migrate: --request" in capsys.readouterr().err
        executions = rt.client("stepfunctions").list_executions(stateMachineArn=rt.state_machine_arn)["executions"]
        assert executions == []
