"""Carrying the whole instance, on the timing simulator: the downtime of each stateful move (the
original's stop to its disks serving again on Spot), and what a mixed fleet's migration costs.

    python bench/carry_bench.py [--web 40] [--databases 4] [--cases A,C]

Per case: simulated duration of the migration, the measured downtime of every stateful move
(min / median / max, simulated seconds), the announced downtime of the plan for comparison,
Elastic IPs moved, and the EC2 calls the stateful moves made; then EC2 interrupts every stateful
move's Spot instance, and the downtime until its disks serve again on a successor. Results go
to bench/results/carry.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spotctl.local.runtime import LocalRuntime  # noqa: E402
from spotctl.local.timing import CASES, TimingModel  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "carry.json"
MOVE_CALLS = ("AttachVolume", "DetachVolume", "AttachNetworkInterface", "DetachNetworkInterface",
              "AssociateAddress", "StopInstances", "StartInstances", "DeleteVolume", "ModifyInstanceAttribute")


def run(model: TimingModel, web: int, databases: int, seed: int) -> dict:
    with LocalRuntime(seed=seed, timing=model) as rt:
        groups = rt.fleet.seed_fleet(web, stateful=0, burst=0, databases=databases, cpu_days=1)
        model.configure_target_group(rt.client("elbv2"), rt.fleet.target_group_arn)
        request = {"approval": {"auto_approve": True}, "allow_downtime": True,
                   "quality": {"target_group_arn": rt.fleet.target_group_arn}}
        result = rt.run_migration(request, timeout=3600)
        records = {r.instance_id: r for r in rt.records(result.migration_id)}
        report = rt.timing.report() if rt.timing else {}
        moved = [records[i] for i in groups["databases"]]
        rehomes = _rehome(rt, result.migration_id, [r for r in moved if r.status == "migrated"])
        return {
            "case": model.name, "web": web, "databases": databases, "status": result.status,
            "outcome": rt.migration(result.migration_id).get("status"),
            "simulated_seconds": round(report.get("simulated_seconds", 0.0), 1),
            "stateful_migrated": sum(r.status == "migrated" for r in moved),
            **_downtimes(moved),
            "elastic_ips_moved": sum(len(r.moved_addresses) for r in records.values()),
            "rehome": rehomes,
            "ec2_calls_of_the_moves": _move_calls(rt.lambdas.calls),
            "status_check_seconds": model.status_check_seconds, "stop_seconds": model.stop_seconds,
            "boot_seconds": list(model.boot_seconds),
        }


def _rehome(rt: LocalRuntime, migration_id: str, moved: list) -> dict:
    """EC2 then takes back the Spot instance of each stateful move (warning, then the stop two
    minutes later on the simulator's clock): the downtime until its disks serve again on a
    successor, and the re-home's simulated duration."""
    ended = []
    for record in moved:
        rt.simulate(record.replacement_id, "interruption")
        ended.append(rt.wait_rehome(record.replacement_id, timeout=600).status)
    after = {r.instance_id: r.rehome for r in rt.records(migration_id) if r.rehome}
    downtimes = [h.downtime_seconds for h in after.values() if h.downtime_seconds is not None]
    return {"interrupted": len(moved), "rehomed": sum(h.phase == "done" for h in after.values()),
            "executions": dict(Counter(ended)), "downtime_seconds": _spread(downtimes)}


def _downtimes(moved: list) -> dict[str, dict]:
    """Measured (stop to serving again) and announced downtime of the stateful moves."""
    measured = [m.downtime_seconds for m in (r.stateful for r in moved) if m and m.downtime_seconds is not None]
    announced = [float(c.downtime_seconds) for c in (r.carry for r in moved) if c]
    return {"downtime_seconds": _spread(measured), "announced_downtime_seconds": _spread(announced)}


def _move_calls(calls: list[tuple[str, str]]) -> dict[str, int]:
    """The wave engine's calls that move pieces, by EC2 action."""
    actions = (action.split(":", 1)[-1] for fn, action in calls if fn.endswith("migrate_wave"))
    return dict(sorted(Counter(a for a in actions if a in MOVE_CALLS).items()))


def _spread(values: list[float]) -> dict:
    if not values:
        return {}
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "count": len(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--web", type=int, default=40)
    parser.add_argument("--databases", type=int, default=4)
    parser.add_argument("--cases", default="A,C")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    runs = [run(CASES[c], args.web, args.databases, args.seed) for c in args.cases.split(",") if c]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "runs": runs},
                              indent=2))
    for r in runs:
        d = r["downtime_seconds"]
        print(f"case {r['case']}: {r['outcome']} in {r['simulated_seconds'] / 60:.1f} simulated min; "
              f"{r['stateful_migrated']}/{r['databases']} stateful moves, downtime "
              f"{d.get('min')}-{d.get('max')} s (median {d.get('median')}; announced "
              f"{r['announced_downtime_seconds'].get('median')} s); {r['elastic_ips_moved']} Elastic IPs moved; "
              f"calls {r['ec2_calls_of_the_moves']}")
        h = r["rehome"]
        print(f"  then interrupted: {h['rehomed']}/{h['interrupted']} re-homed, downtime "
              f"{h['downtime_seconds'].get('min')}-{h['downtime_seconds'].get('max')} s "
              f"(median {h['downtime_seconds'].get('median')}; EC2 stops the instance at the warning here, "
              "not two minutes later, so the successor's boot counts in it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
