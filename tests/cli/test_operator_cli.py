"""spotctl's operator commands: every command against the local service (--local), and the
same code path against a "deployed" stack (moto in-process, found by its CloudFormation
outputs)."""

import json
import time

import pytest

from spotctl.cli import main
from spotctl.local import daemon
from spotctl.local.runtime import LocalRuntime

# The module shares one local service and its fleet, and its tests build on each other
# (the fleet is on-demand until the full migration migrates it): they run in file order on
# one worker (pytest.ini distributes tests by file: --dist loadfile).


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One local service (simulated fleet of 8) for the module, in its own SPOTCTL_HOME."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SPOTCTL_HOME", str(tmp_path_factory.mktemp("spotctl-home")))
    state = daemon.start(instances=8, seed=3)
    yield state
    daemon.stop()
    assert daemon.running() is None
    mp.undo()


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def status(capsys, mid):
    code, out, _ = run(capsys, "status", mid, "--local", "--json")
    assert code in (0, 1)
    return json.loads(out)


def wait_for(capsys, mid, migration_status, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status(capsys, mid)["status"] == migration_status:
            return
        time.sleep(0.3)
    raise AssertionError(f"{mid} never reached {migration_status}")


def executions(capsys):
    code, out, _ = run(capsys, "list", "--local", "--json", "--limit", "100")
    assert code == 0
    return [m["migration_id"] for m in json.loads(out)["items"]]


def test_plan_is_a_dry_run_with_candidates_exclusions_and_savings(service, capsys):
    code, out, _ = run(capsys, "plan", "--local", "--json", "--id", "plan-json")
    assert code == 0
    result = json.loads(out)
    plan = result["plan"]
    assert len(plan) == 8 and len({p["instance_id"] for p in plan}) == 8
    excluded = [p for p in plan if not p["eligible"]]
    assert excluded and all(p["exclusion_reason"] for p in excluded)
    assert {"stateful"} <= {p["exclusion_reason"] for p in excluded}
    summary = result["migration"]["summary"]
    assert summary["candidates"] == len(plan) - len(excluded)
    eligible_savings = sum(p["monthly_savings"] for p in plan if p["eligible"])
    assert summary["monthly_savings"] == pytest.approx(eligible_savings, abs=0.05)
    assert result["migration"]["status"] == "planned" and result["migration"]["approval"] is None
    assert all(p["replacement_id"] is None for p in plan)  # nothing changed

    code, text, _ = run(capsys, "plan", "--local", "--id", "plan-text")
    assert code == 0
    assert f"Candidates ({summary['candidates']})" in text and f"Excluded ({len(excluded)})" in text
    assert "stateful: tagged spot-migration:stateful=true" in text and "Savings: $" in text


def test_reject_needs_a_reason_and_exits_non_zero(service, capsys):
    assert run(capsys, "migrate", "--local", "--id", "cli-reject", "--json")[0] == 0
    wait_for(capsys, "cli-reject", "awaiting_approval")
    with pytest.raises(SystemExit) as usage:
        main(["reject", "cli-reject", "--local"])
    assert usage.value.code == 2
    code, out, _ = run(capsys, "reject", "cli-reject", "--local", "--reason", "change freeze", "--json")
    assert code == 0 and json.loads(out)["approved"] is False
    code, out, _ = run(capsys, "watch", "cli-reject", "--local", "--json", "--interval", "0.2")
    assert code == 1
    last = json.loads(out.strip().splitlines()[-1])
    assert last["status"] == "rejected" and last["approval"]["reason"] == "change freeze"
    assert run(capsys, "status", "cli-reject", "--local")[0] == 1


@pytest.mark.parametrize("argv, code, message", [
    (["status", "no-such-migration"], 3, "no migration 'no-such-migration'"),
    (["status", "bad id!"], 2, "migration_id must be"),
    (["migrate", "--waves", "10,50"], 2, "the last wave must be 100"),
    (["migrate", "--tag", "novalue"], 2, "expected KEY=VALUE"),
    (["migrate", "--instance-id", "i-nothex"], 2, "not EC2 instance ids"),
    (["plan", "--threshold", "0"], 2, "threshold_pct"),
    (["list", "--status", "sleeping"], 2, "unknown status"),
    (["list", "--next-token", "garbage"], 2, "next_token is not valid"),
    (["revert", "no-such-migration"], 3, "no migration 'no-such-migration'"),
    (["revert", "x", "--instance-id", "i-nothex"], 2, "not EC2 instance ids"),
    (["revert", "x", "--waves", "50"], 2, "the last wave must be 100"),
])
def test_bad_input_is_a_clear_error_and_starts_nothing(service, capsys, argv, code, message):
    before = executions(capsys)
    got, _, err = run(capsys, *argv, "--local")
    assert got == code and message in err
    assert executions(capsys) == before


def test_the_local_service_serves_the_migrations_api(service, capsys):
    """/api on the local service is the API function behind an API Gateway proxy event."""
    import urllib.error
    import urllib.request

    def call(method, path, body=None):
        request = urllib.request.Request(service["control"] + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    status_code, _, body = call("GET", "/api/migrations?status=awaiting_approval")
    assert status_code == 200 and json.loads(body)["items"] == []
    before = executions(capsys)
    status_code, _, body = call("POST", "/api/migrations", {"waves": [10, 50], "migration_id": "api-bad"})
    assert status_code == 400 and "waves" in body
    assert executions(capsys) == before
    status_code, _, body = call("GET", "/api/migrations/plan-json/plan?limit=3")
    page = json.loads(body)
    assert status_code == 200 and len(page["items"]) == 3 and page["next_token"]
    status_code, headers, body = call("GET", "/api/swagger")
    assert status_code == 200 and headers["Content-Type"].startswith("text/html") and "swagger" in body.lower()


def test_migrate_approve_watch_status_list_and_graph(service, capsys, tmp_path):
    code, out, _ = run(capsys, "migrate", "--local", "--id", "cli-approve")
    assert code == 0 and "spotctl approve cli-approve --local" in out
    wait_for(capsys, "cli-approve", "awaiting_approval")
    code, out, _ = run(capsys, "status", "cli-approve", "--local")
    assert code == 0 and "RUNNING / awaiting_approval" in out and "now in RequestApproval" in out

    code, out, _ = run(capsys, "list", "--local", "--status", "awaiting_approval", "--json")
    assert [m["migration_id"] for m in json.loads(out)["items"]] == ["cli-approve"]

    code, out, _ = run(capsys, "local", "notifications", "--json")
    approval_request = next(n for n in json.loads(out)
                            if "cli-approve" in n["subject"] and "approval" in n["subject"].lower())
    assert "spotctl approve cli-approve" in approval_request["message"]
    assert ("https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/"
            "arn:aws:states:us-east-1:123456789012:execution:spot-migration:cli-approve") in approval_request["message"]

    code, out, _ = run(capsys, "approve", "cli-approve", "--local")
    assert code == 0 and "Approved cli-approve as arn:aws:" in out
    code, _, err = run(capsys, "approve", "cli-approve", "--local")
    assert code == 4 and "not awaiting approval" in err

    code, out, _ = run(capsys, "watch", "cli-approve", "--local", "--interval", "0.2")
    assert code == 0
    final = out.split("-" * 60)[-1]
    assert "SUCCEEDED / completed" in final and final.count("PASS") == 3 and "realised savings" in final
    assert "[####################]" in final

    detail = status(capsys, "cli-approve")
    assert detail["approval"]["approved"] is True and detail["approval"]["decided_by"].startswith("arn:aws:")
    assert [w["state"] for w in detail["waves"]] == ["passed"] * 3
    assert all(w["migrated"] == w["target_count"] for w in detail["waves"])

    code, out, _ = run(capsys, "list", "--local", "--status", "SUCCEEDED", "--json")
    assert "cli-approve" in [m["migration_id"] for m in json.loads(out)["items"]]

    page = tmp_path / "graph.html"
    code, out, _ = run(capsys, "graph", "cli-approve", "--local", "--out", str(page))
    assert code == 0 and page.exists()
    html = page.read_text()
    assert "cli-approve" in html and 'data-state="QualityGate"' in html


def test_simulated_interruption_and_rebalance_go_through_the_rules(service, capsys):
    # the instances the full migration above moved to Spot
    code, out, _ = run(capsys, "plan", "--local", "--id", "cli-spot-after", "--json")
    spot = [p for p in json.loads(out)["plan"] if p["exclusion_reason"] == "already_spot"]
    managed = [p["instance_id"] for p in spot]
    assert len(managed) >= 2

    code, out, _ = run(capsys, "simulate-interruption", managed[0], "--json")
    outcome = json.loads(out)
    assert code == 0 and outcome["rules"] == ["SpotInterruptionWarning"] and outcome["reclaimed"]
    result = outcome["deliveries"][0]["result"]
    assert result["action"] == "replaced" and result["launched"]
    original = next(p for p in spot if p["instance_id"] == managed[0])
    placement = (result["instance_type"], result["availability_zone"])
    assert placement != (original["instance_type"], original["availability_zone"])

    code, out, _ = run(capsys, "simulate-rebalance", managed[1])
    assert code == 0 and "rule RebalanceRecommendation" in out and "prewarmed:" in out
    code, out, _ = run(capsys, "simulate-interruption", managed[1])
    assert code == 0 and "swapped to the prewarmed" in out and "(no new launch)" in out

    code, out, _ = run(capsys, "plan", "--local", "--id", "cli-spot-unmanaged", "--json")
    unmanaged = next(p["instance_id"] for p in json.loads(out)["plan"] if p["exclusion_reason"] == "stateful")
    code, out, _ = run(capsys, "simulate-rebalance", unmanaged, "--json")
    assert code == 0 and json.loads(out)["deliveries"][0]["result"]["action"] == "ignored"


def test_migrate_is_idempotent_by_id_and_refuses_a_reused_id(service, capsys):
    args = ["migrate", "--local", "--id", "cli-idem", "--waves", "50,100", "--bake", "60,60", "--auto-approve"]
    assert run(capsys, *args)[0] == 0
    code, out, _ = run(capsys, *args)
    assert code == 0 and "already started" in out
    code, _, err = run(capsys, "migrate", "--local", "--id", "cli-idem", "--auto-approve")
    assert code == 4 and "different request" in err
    assert executions(capsys).count("cli-idem") == 1
    # What is left on-demand is the burst workload alone: the performance agent vetoes it,
    # and a vetoed migration exits non-zero.
    code, out, _ = run(capsys, "watch", "cli-idem", "--local", "--interval", "0.2")
    assert code == 1 and "VETO" in out
    assert status(capsys, "cli-idem")["status"] == "vetoed"


def test_revert_moves_a_completed_migration_back_to_on_demand_and_migrate_returns_it(service, capsys):
    code, _, err = run(capsys, "revert", "cli-idem", "--local")
    assert code == 4 and "only a completed migration can be reverted" in err

    code, out, _ = run(capsys, "revert", "cli-approve", "--local", "--id", "cli-revert", "--waves", "100",
                       "--bake", "60", "--auto-approve", "--watch", "--interval", "0.2")
    assert code == 0, out
    detail = status(capsys, "cli-revert")
    assert detail["status"] == "completed" and detail["reverts"] == "cli-approve"
    code, text, _ = run(capsys, "status", "cli-revert", "--local")
    assert "reverts migration cli-approve" in text
    code, out, _ = run(capsys, "plan", "--local", "--id", "cli-after-revert", "--json")
    back = [p["instance_id"] for p in json.loads(out)["plan"] if p["eligible"]]
    assert back  # the reverted instances are on-demand candidates again

    named = [flag for i in back for flag in ("--instance-id", i)]
    code, out, _ = run(capsys, "migrate", "--local", "--id", "cli-return", "--waves", "100", "--bake", "60",
                       "--auto-approve", "--watch", "--interval", "0.2", *named)
    assert code == 0 and status(capsys, "cli-return")["status"] == "completed"


def test_an_interruption_calls_the_webhook_kept_in_secrets_manager_and_never_shows_its_url(service, capsys):
    from spotctl.backend import connect
    from spotctl.local.webhooks import WebhookReceiver

    backend = connect(local=True, stack="SpotMigration", region=None, start_local=False)
    spot = next(e.replacement_id for e in backend.migrations.plan("cli-return").items if e.status == "migrated")
    secret_path = "/hooks/T0CLI/s3cr3t-t0k3n"
    with WebhookReceiver() as receiver:  # the owner's endpoint, on this machine
        secrets = backend.client("secretsmanager")
        secrets.create_secret(Name="spot-migration/cli", SecretString=receiver.url(secret_path))
        backend.client("ec2").create_tags(Resources=[spot], Tags=[
            {"Key": "spot-migration:webhook", "Value": "secretsmanager:spot-migration/cli"}])
        code, out, _ = run(capsys, "simulate-interruption", spot, "--json")

    assert code == 0
    result = json.loads(out)["deliveries"][0]["result"]
    assert result["action"] == "replaced"
    [call] = receiver.calls
    assert call.path == secret_path and call.body["event"]["kind"] == "interruption"
    assert call.body["instance"]["id"] == spot and call.body["replacement"]
    code, notifications, _ = run(capsys, "local", "notifications", "--json")
    log = (daemon.home() / "local.log").read_text()
    for seen in (out, notifications, log):
        assert "s3cr3t-t0k3n" not in seen and f"127.0.0.1:{receiver.port}" not in seen


def test_local_status_and_help(service, capsys):
    code, out, _ = run(capsys, "local", "status")
    assert code == 0 and f"pid {service['pid']}" in out
    with pytest.raises(SystemExit) as shown:
        main(["--help"])
    assert shown.value.code == 0
    text = capsys.readouterr().out
    for command in ("plan", "migrate", "approve", "reject", "status", "list", "watch", "graph", "simulate-interruption",
                    "local"):
        assert f"    {command}" in text
    assert "Exit codes" in text


def test_against_a_deployed_stack_found_by_its_outputs(capsys, tmp_path):
    """AWS mode: the standard credential chain and region, the stack's outputs; moto stands in for AWS."""
    with LocalRuntime(seed=5) as rt:
        rt.fleet.seed_fleet(6)
        rt.publish_stack("SpotMigrationProd")
        aws = ["--stack", "SpotMigrationProd", "--region", "us-east-1"]
        code, out, _ = run(capsys, "migrate", *aws, "--id", "aws-1", "--target-group", rt.fleet.target_group_arn,
                           "--waves", "100", "--bake", "300", "--json")  # one wave: the AWS mode is the point
        assert code == 0 and json.loads(out)["created"] is True
        rt.wait_for_status("aws-1", "awaiting_approval")
        code, out, _ = run(capsys, "approve", "aws-1", *aws)
        assert code == 0 and "as arn:aws:" in out
        assert run(capsys, "watch", "aws-1", *aws, "--interval", "0.2")[0] == 0
        code, out, _ = run(capsys, "status", "aws-1", *aws, "--json")
        assert json.loads(out)["status"] == "completed"
        code, out, _ = run(capsys, "list", *aws)
        assert code == 0 and "aws-1" in out and "SUCCEEDED" in out
        code, out, _ = run(capsys, "graph", "aws-1", *aws, "--out", str(tmp_path / "g.html"))
        assert code == 0 and (tmp_path / "g.html").exists()
        code, _, err = run(capsys, "status", "aws-1", "--stack", "Nope", "--region", "us-east-1")
        assert code == 2 and "stack 'Nope' not found" in err
