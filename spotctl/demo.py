"""`spotctl demo`: a simulated fleet migrated end to end on the embedded runtime, with a report."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable

from .exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE

DEGRADE_WAVES = {10: 0, 50: 1, 100: 2}


def run(args: argparse.Namespace) -> int:
    from spotctl.local.runtime import LocalRuntime
    from spotctl.local.workload import Degradation
    from spotctl.report import render

    if args.instances < 3:
        print("spotctl demo: --instances must be at least 3", file=sys.stderr)
        return EXIT_USAGE
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    started = time.perf_counter()
    log = (lambda *a: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    with LocalRuntime(seed=args.seed) as rt:
        asg, seeded = _seed(rt, args)
        if args.degrade_at:
            rt.fleet.degradation = Degradation(wave=DEGRADE_WAVES[args.degrade_at])
        # auto mode: stateless behind the load balancer; the database moves with its disks (allowed downtime)
        request = {"quality": {"target_group_arn": rt.fleet.target_group_arn}, "approval": {"timeout_seconds": 3600},
                   "allow_downtime": True}
        mid = rt.start_migration(request, migration_id=f"demo-{args.seed}-{int(time.time())}")
        log(f"{seeded}; migration {mid} started")
        _decide_when_asked(rt, mid, args.reject, log)
        result = rt.wait(mid, timeout=600 if asg else 300)
        report = _report(rt, mid, args, result, started)
        report["group_configurations"] = {name: {"before": before, "after": _configuration(rt, name)}
                                          for name, before in asg.items()}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render(report))
    return EXIT_OK if result.status == "SUCCEEDED" else EXIT_FAILED


def _seed(rt, args: argparse.Namespace) -> tuple[dict[str, dict], str]:
    """The simulated estate (and, with --asg, two groups: name -> configuration), and what it is."""
    databases = 1 if args.instances >= 4 else 0  # one of them a database server that moves with its disks
    groups = rt.fleet.seed_fleet(args.instances - databases, databases=databases)
    asg = _seed_groups(rt) if args.asg else {}
    seeded = (f"Seeded {args.instances} instances ({len(groups['stateful'])} marked stateful, "
              f"{len(groups['burst'])} burst) and {len(groups['databases'])} database server with its own disks")
    return asg, seeded + (f", and Auto Scaling groups {', '.join(asg)}" if asg else "")


def _seed_groups(rt) -> dict[str, dict]:
    """Two opted-in on-demand Auto Scaling groups (one on a launch template serving behind the load
    balancer, one on a launch configuration): name -> its configuration before the migration."""
    rt.fleet.seed_group("web-asg", 6, launch="template", register=True, cpu_days=2)
    rt.fleet.seed_group("batch-asg", 4, launch="configuration", instance_type="c5.large", cpu_days=2)
    return {name: _configuration(rt, name) for name in ("web-asg", "batch-asg")}


def _configuration(rt, name: str) -> dict:
    """What a group launches from and how: its source, its purchase options, its members' markets."""
    [group] = rt.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    ids = [m["InstanceId"] for m in group["Instances"] if m["LifecycleState"] == "InService"]
    spot = _spot_members(rt, ids)
    policy = group.get("MixedInstancesPolicy") or {}
    distribution = policy.get("InstancesDistribution") or {}
    template = group.get("LaunchTemplate") or policy.get("LaunchTemplate", {}).get("LaunchTemplateSpecification", {})
    return {
        "source": group.get("LaunchConfigurationName") or template.get("LaunchTemplateId"),
        "types": [o["InstanceType"] for o in (policy.get("LaunchTemplate") or {}).get("Overrides", [])],
        "on_demand_above_base_pct": distribution.get("OnDemandPercentageAboveBaseCapacity"),
        "capacity_rebalance": bool(group.get("CapacityRebalance")),
        "desired": group["DesiredCapacity"], "spot_members": spot, "members": len(ids),
    }


def _spot_members(rt, instance_ids: list[str]) -> int:
    if not instance_ids:
        return 0
    described = rt.client("ec2").describe_instances(InstanceIds=instance_ids)["Reservations"]
    return sum(i.get("InstanceLifecycle") == "spot" for r in described for i in r["Instances"])


def _decide_when_asked(rt, migration_id: str, reject: bool, log: Callable[[str], None]) -> None:
    """The customer's decision, once the migration asks for it (a vetoed migration, or one
    with nothing to migrate, never asks)."""
    try:
        rt.wait_for_status(migration_id, "awaiting_approval", timeout=120)
        log("Waiting for customer approval (notification sent; the token stays server-side) ...")
        decision = not reject
        rt.decide(migration_id, approved=decision, principal="demo-operator",
                  reason="change freeze this week" if reject else "savings approved")
        log(f"Customer {'approved' if decision else 'rejected'} the migration")
    except TimeoutError:
        pass  # vetoed or nothing to migrate: no approval asked


def _report(rt, migration_id: str, args: argparse.Namespace, result, started: float) -> dict:
    """The report, with the execution graph written and the interruptions played (if asked)."""
    from spotctl.graph_file import write_graph
    from spotctl.report import build_report

    graph = write_graph(rt.operator(), migration_id, args.graph) if args.graph else None
    succeeded = result.status == "SUCCEEDED"
    interruptions = interrupt(rt, migration_id, args.interrupt) if args.interrupt and succeeded else []
    report = build_report(rt.wiring.migrations, rt.wiring.plans, migration_id, {
        "interruptions": interruptions,
        "fleet": f"simulated fleet of {args.instances} instances, seed {args.seed}, embedded runtime",
        "execution_status": result.status, "execution_error": result.error,
        "elapsed": time.perf_counter() - started, "simulated_seconds": rt.virtual_seconds,
        "notifications": [n["subject"] for n in rt.notifications()], "graph": graph,
    })
    if getattr(args, "revert", False) and succeeded:  # after the migration's own report: its records follow on
        report["day2"] = revert_and_return(rt, migration_id)
    return report


def interrupt(rt, migration_id: str, count: int) -> list[dict]:
    """EC2 takes back `count` of the new Spot instances (stateful ones first): their two-minute
    warnings go through the deployed rule patterns to the replacement Lambda; a stateful one's
    disks move on in the re-home state machine, waited for here."""
    migrated = sorted((r for r in rt.records(migration_id) if r.status == "migrated"),
                      key=lambda r: r.mode != "stateful")[:count]
    out = []
    for record in migrated:
        outcome = rt.simulate(record.replacement_id, "interruption")
        for delivery in outcome["deliveries"]:
            result = delivery.get("result") or {"error": delivery.get("error")}
            if result.get("action") == "rehoming":
                result = {**result, **_rehomed(rt, migration_id, record.instance_id, record.replacement_id)}
            out.append({"interrupted": record.replacement_id,
                        "interrupted_pool": f"{record.replacement_type}/{record.replacement_az}",
                        "rule": delivery["rule"], **result})
    return out


def revert_and_return(rt, migration_id: str) -> dict:
    """Day 2: the migration's instances back to on-demand (POST /migrations/{id}/revert, auto-approved
    here), then back to Spot (a migration of the reverted instances): what each step moved, and how."""
    from spot_core.domain.request import RevertMigration

    fast = {"waves": [50.0, 100.0], "bake_seconds": [300, 300], "approval": {"auto_approve": True}}
    revert = rt.operator().revert(migration_id, RevertMigration.model_validate(fast))
    reverted = rt.wait(revert.migration_id, timeout=300)
    on_demand = [r for r in rt.records(revert.migration_id) if r.status == "migrated"]
    returned, back = None, []
    if reverted.status == "SUCCEEDED" and on_demand:
        quality = rt.migration(migration_id)["request"]["quality"]
        returned = rt.run_migration({**fast, "quality": quality, "allow_downtime": True, "selector": {
            "instance_ids": sorted(r.replacement for r in on_demand)}}, timeout=300)
        back = [r for r in rt.records(returned.migration_id) if r.status == "migrated"]
    return {"revert": _moves(rt, revert.migration_id, reverted.status, on_demand),
            "return": _moves(rt, returned.migration_id, returned.status, back) if returned else None}


def _moves(rt, migration_id: str, status: str, moved: list) -> dict:
    """One day-2 migration: its id and outcome, each instance moved (from, to, market and type), the monthly cost."""
    item = rt.migration(migration_id)
    return {"migration_id": migration_id, "status": status, "outcome": item.get("status"),
            "waves": [w.get("percent") for w in item.get("waves") or []],
            "gates": [(item.get("wave_results") or {}).get(str(i), {}).get("gate", {}).get("passed")
                      for i in range(len(item.get("waves") or []))],
            "monthly_savings": (item.get("summary") or {}).get("monthly_savings"),
            "moved": [{"from": r.instance_id, "from_type": r.instance_type, "to": r.replacement_id,
                       "to_type": r.replacement_type, "market": r.replacement_market} for r in moved],
            "stayed": [{"instance_id": r.instance_id, "reason": r.exclusion_reason, "detail": r.exclusion_detail}
                       for r in rt.records(migration_id) if not r.eligible]}


def _rehomed(rt, migration_id: str, original_id: str, interrupted: str) -> dict:
    """How the re-home of a stateful instance's disks ended (its record says where they are)."""
    ended = rt.wait_rehome(interrupted)
    record = next(r for r in rt.records(migration_id) if r.instance_id == original_id)
    rehome = record.rehome
    return {"rehome_status": ended.status, "successor": record.replacement_id,
            "successor_pool": f"{record.replacement_type}/{record.replacement_az}",
            "market": record.replacement_market,
            "downtime_seconds": rehome.downtime_seconds if rehome else None,
            "outcome": rehome.outcome if rehome else None}
