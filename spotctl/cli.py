"""spotctl: run and steer Spot migrations.

  spotctl demo [--instances N] [--seed S] [--degrade-at 10|50|100] [--reject] [--interrupt N] [--json]
      a simulated fleet migrated end to end on the embedded runtime, with a report
  spotctl approve MIGRATION_ID [--stack NAME] [--region R]
  spotctl reject  MIGRATION_ID --reason TEXT [--stack NAME] [--region R]
      decide a migration waiting for approval in a deployed stack

Exit codes: 0 done; 1 the migration failed, was rolled back, rejected or vetoed;
2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEGRADE_WAVES = {10: 0, 50: 1, 100: 2}


def _demo(args: argparse.Namespace) -> int:
    from spotctl.local.runtime import LocalRuntime
    from spotctl.local.workload import Degradation
    from spotctl.report import build_report, render

    if args.instances < 3:
        print("spotctl demo: --instances must be at least 3", file=sys.stderr)
        return EXIT_USAGE
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    started = time.perf_counter()
    with LocalRuntime(seed=args.seed) as rt:
        groups = rt.fleet.seed_fleet(args.instances)
        if args.degrade_at:
            rt.fleet.degradation = Degradation(wave=DEGRADE_WAVES[args.degrade_at])
        request = {"quality": {"target_group_arn": rt.fleet.target_group_arn}, "approval": {"timeout_seconds": 3600}}
        mid = rt.start_migration(request, migration_id=f"demo-{args.seed}-{int(time.time())}")
        log = (lambda *a: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
        log(f"Seeded {args.instances} instances ({len(groups['stateful'])} stateful, {len(groups['burst'])} burst); migration {mid} started")
        try:
            rt.wait_for_status(mid, "awaiting_approval", timeout=120)
            log("Waiting for customer approval (notification sent; the token stays server-side) ...")
            decision = not args.reject
            rt.decide(mid, approved=decision, principal="demo-operator",
                      reason="change freeze this week" if args.reject else "savings approved")
            log(f"Customer {'approved' if decision else 'rejected'} the migration")
        except TimeoutError:
            pass  # vetoed or nothing to migrate: no approval asked
        result = rt.wait(mid, timeout=300)
        interruptions = _interrupt(rt, mid, args.interrupt) if args.interrupt and result.status == "SUCCEEDED" else []
        report = build_report(rt.store, mid, {
            "interruptions": interruptions,
            "fleet": f"simulated fleet of {args.instances} instances, seed {args.seed}, embedded runtime",
            "execution_status": result.status, "execution_error": result.error,
            "elapsed": time.perf_counter() - started, "simulated_seconds": rt.virtual_seconds,
            "notifications": [n["subject"] for n in rt.notifications()],
        })
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render(report))
    return EXIT_OK if result.status == "SUCCEEDED" else EXIT_FAILED


def _interrupt(rt, migration_id: str, count: int) -> list[dict]:
    """EC2 takes back `count` of the new Spot instances: their two-minute warnings go through
    the deployed rule patterns to the replacement Lambda."""
    import uuid
    from datetime import UTC, datetime

    migrated = [r for r in rt.store.records(migration_id) if r.status == "migrated"][:count]
    out = []
    for record in migrated:
        victim = record.replacement_id
        event = {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "EC2 Spot Instance Interruption Warning",
            "source": "aws.ec2", "account": "123456789012", "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "region": rt.region, "resources": [f"arn:aws:ec2:{record.replacement_az}:instance/{victim}"],
            "detail": {"instance-id": victim, "instance-action": "terminate"},
        }
        for delivery in rt.put_ec2_event(event):
            out.append({"interrupted": victim, "interrupted_pool": f"{record.replacement_type}/{record.replacement_az}",
                        "rule": delivery["rule"], **(delivery.get("result") or {"error": delivery.get("error")})})
        rt.client("ec2").terminate_instances(InstanceIds=[victim])  # EC2 reclaims it two minutes later
    return out


def _decide(args: argparse.Namespace, approved: bool) -> int:
    import boto3

    from spot_core.errors import ApprovalNotPending, MigrationNotFound
    from spot_core.approvals import decide
    from spot_core.store import MigrationStore

    session = boto3.Session(region_name=args.region)
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0].get("Outputs", [])
    }
    if "TableName" not in outputs:
        print(f"spotctl: stack {args.stack} has no TableName output", file=sys.stderr)
        return EXIT_USAGE
    principal = session.client("sts").get_caller_identity()["Arn"]
    store = MigrationStore(session.resource("dynamodb").Table(outputs["TableName"]))
    try:
        result = decide(args.migration_id, approved, principal=principal, reason=getattr(args, "reason", None),
                        store=store, sfn=session.client("stepfunctions"))
    except (ApprovalNotPending, MigrationNotFound) as exc:
        print(f"spotctl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(result) if args.json else f"{'Approved' if approved else 'Rejected'} {args.migration_id} as {principal}")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spotctl", description="Run and steer safe on-demand to Spot migrations of EC2 fleets.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="migrate a simulated fleet end to end on the embedded runtime and print the report")
    demo.add_argument("--instances", type=int, default=10, help="fleet size (default 10)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulated fleet and Spot market (default 7)")
    demo.add_argument("--degrade-at", type=int, choices=sorted(DEGRADE_WAVES), help="degrade quality at this wave %% (forces a rollback)")
    demo.add_argument("--reject", action="store_true", help="the customer rejects the migration")
    demo.add_argument("--interrupt", type=int, default=0, metavar="N", help="after the rollout, EC2 interrupts N of the new Spot instances")
    demo.add_argument("--json", action="store_true", help="print the report as one JSON document")
    demo.set_defaults(func=_demo)

    for name, approved in (("approve", True), ("reject", False)):
        d = sub.add_parser(name, help=f"{name} a migration waiting for approval (deployed stack)")
        d.add_argument("migration_id")
        d.add_argument("--stack", default="SpotMigration", help="CloudFormation stack name (default SpotMigration)")
        d.add_argument("--region", default=None, help="AWS region (default: your AWS configuration)")
        d.add_argument("--json", action="store_true")
        if not approved:
            d.add_argument("--reason", required=True, help="why (recorded with your IAM identity)")
        d.set_defaults(func=lambda a, ok=approved: _decide(a, ok))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)
