"""`make bench`: API calls, CPU time, state transitions and payload sizes of a migration
on the embedded runtime, for fleets of 10 / 1,000 / 10,000 opted-in instances.

    .venv/bin/python -m bench [--sizes 10,1000,10000] [--out bench/results/latest.json]

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import spotctl  # noqa: E402,F401  (puts the spot_core layer on sys.path)
from spotctl.local import metric_index  # noqa: E402
from spotctl.local.runtime import ExecutionResult, LocalRuntime  # noqa: E402

from . import moto_speedups  # noqa: E402
from .harness import SFN_PAYLOAD_LIMIT, InvocationStats, Meter, history_stats  # noqa: E402
from .report import render  # noqa: E402

DEFAULT_OUT = REPO / "bench" / "results" / "latest.json"
REVIEW_FUNCTIONS = ("review_performance", "review_capacity", "review_application", "consolidate_reviews")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10,1000,10000", help="comma-separated fleet sizes (default: 10,1000,10000)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file (default: bench/results/latest.json)")
    p.add_argument("--large", type=int, default=10_000,
                   help="fleets of at least this size are 'large': CPU history of --cpu-days-large days, dry run "
                        "unless --full-large (default: 10000)")
    p.add_argument("--cpu-days", type=int, default=7,
                   help="days of hourly CPU history seeded per instance (default: 7)")
    p.add_argument("--cpu-days-large", type=int, default=1,
                   help="days of CPU history for large fleets (default: 1 = 24 points, enough to classify; "
                        "the analysis still asks CloudWatch for 7 days)")
    p.add_argument("--full-large", action="store_true",
                   help="also run the full migration (waves, gates) on large fleets, after the dry run")
    p.add_argument("--timeout", type=float, default=3600.0, help="per execution, seconds (default: 3600)")
    p.add_argument("--seed", type=int, default=7, help="fleet and market seed (default: 7)")
    p.add_argument("--profile", metavar="DIR", help="write a cProfile of every handler invocation to DIR")
    p.add_argument("--profile-only", metavar="NAMES", default="",
                   help="with --profile: only these handlers, comma-separated (e.g. analyze)")
    p.add_argument("--no-speedups", action="store_true",
                   help="do not install the moto speed-ups (metric index, EC2 tag lookup); slow beyond ~100 instances")
    p.add_argument("--verify-index", action="store_true",
                   help="check every GetMetricData answer of the metric index against moto's own (slow; small sizes)")
    args = p.parse_args(argv)
    args.size_list = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    return args


def _sum_stats(invs: list[InvocationStats]) -> dict:
    total = InvocationStats(function="+".join(sorted({i.function for i in invs})))
    for i in invs:
        total.gc_seconds += i.gc_seconds
        total.calls.update(i.calls)
        total.cpu_process += i.cpu_process
        total.cpu_thread += i.cpu_thread
        total.cpu_moto += i.cpu_moto
        total.wall += i.wall
        total.wall_moto += i.wall_moto
        total.errored |= i.errored
    out = total.as_dict()
    out["invocations"] = len(invs)
    return out


def _by_function(invs: list[InvocationStats]) -> dict:
    functions: dict[str, list[InvocationStats]] = {}
    for i in invs:
        functions.setdefault(i.function, []).append(i)
    return {name: _sum_stats(group) for name, group in functions.items()}


def run_execution(rt: LocalRuntime, meter: Meter, n: int, mode: str, args: argparse.Namespace) -> dict:
    result, wall, cpu, invs = _measured_migration(rt, meter, _migration_request(rt, mode), args.timeout)
    history = history_stats(rt.history(result.migration_id))
    item = rt.migration(result.migration_id)
    return {
        "mode": mode,
        "migration_id": result.migration_id,
        "status": result.status,
        "error": result.error,
        "cause": (result.cause or "")[:500] or None,
        "outcome": item.get("status"),
        "execution_wall_s": round(wall, 2),
        "execution_cpu_s": round(cpu, 2),
        "plan": _plan_summary(item),
        "realised": item.get("realised"),
        "waits_fast_forwarded_s": sum(rt.waits),
        "analysis": _analysis_stats(invs, n),
        "reviews": _sum_stats([i for i in invs if i.function in REVIEW_FUNCTIONS]),
        "history": history,
        "by_function": _by_function(invs),
        "lambda_invocations": len(rt.lambdas.invocations),
        "lambda_errors": sum(1 for i in rt.lambdas.invocations if i.errored),
    }


def _migration_request(rt: LocalRuntime, mode: str) -> dict:
    request = {"approval": {"auto_approve": True}, "quality": {"target_group_arn": rt.fleet.target_group_arn}}
    if mode == "dry_run":
        request["dry_run"] = True
    return request


def _measured_migration(rt: LocalRuntime, meter: Meter, request: dict,
                        timeout: float) -> tuple[ExecutionResult, float, float, list[InvocationStats]]:
    """Runs one migration: its result, wall and process CPU seconds, and the handler invocations it made."""
    meter.take()
    rt.lambdas.invocations.clear()
    w0, p0 = time.perf_counter(), time.process_time()
    result = rt.run_migration(request, timeout=timeout)
    wall, cpu = time.perf_counter() - w0, time.process_time() - p0
    return result, wall, cpu, meter.take()


def _analysis_stats(invs: list[InvocationStats], n: int) -> dict:
    analysis = _sum_stats([i for i in invs if i.function == "analyze"])
    analysis["api_calls_per_instance"] = round(analysis["api_calls_total"] / n, 4) if n else None
    return analysis


def _plan_summary(item: dict) -> dict:
    summary = item.get("summary") or {}
    return {k: summary.get(k) for k in ("analysed", "candidates", "excluded", "excluded_by_reason", "by_workload",
                                         "monthly_savings", "savings_pct")}


def run_size(n: int, meter: Meter, args: argparse.Namespace) -> dict:
    large = n >= args.large
    cpu_days = args.cpu_days_large if large else args.cpu_days
    modes = ["dry_run", "full"] if large and args.full_large else ["dry_run"] if large else ["full"]
    started = time.perf_counter()
    out: dict = {"instances": n, "cpu_days": cpu_days, "modes": modes}
    _progress(f"[{n:,}] seeding {n:,} instances, {cpu_days} day(s) of hourly CPU each ...")
    if not args.no_speedups:  # per size: a runtime that installs them too may uninstall them on exit
        metric_index.install(verify=args.verify_index)
        moto_speedups.install()
    with LocalRuntime(seed=args.seed) as rt:
        meter.attach(rt)
        history_timer: dict[str, float] = {}
        original_history = rt.fleet.write_cpu_history

        def timed_history(*a, **kw):
            t0 = time.perf_counter()
            try:
                return original_history(*a, **kw)
            finally:
                history_timer["s"] = time.perf_counter() - t0

        rt.fleet.write_cpu_history = timed_history
        w0, p0 = time.perf_counter(), time.process_time()
        groups = rt.fleet.seed_fleet(n, cpu_days=cpu_days)
        seed_wall = time.perf_counter() - w0
        rt.fleet.write_cpu_history = original_history
        # The simulator's state (moto's models of 10,000 instances and 240,000 datapoints) is
        # not the Lambda's heap: keep the cyclic GC from re-scanning it during the handlers.
        gc.collect()
        gc.freeze()
        types = _instance_types(rt)
        out["fleet"] = {"web": len(groups["web"]), "stateful": len(groups["stateful"]), "burst": len(groups["burst"]),
                        "distinct_instance_types": len(types), "instance_types": types,
                        "cpu_datapoints": n * cpu_days * 24}
        out["seeding"] = {"wall_s": round(seed_wall, 2), "cpu_s": round(time.process_time() - p0, 2),
                          "cpu_history_wall_s": round(history_timer.get("s", 0.0), 2),
                          "instances_and_network_wall_s": round(seed_wall - history_timer.get("s", 0.0), 2)}
        _progress(f"[{n:,}] seeded in {seed_wall:.1f} s (CPU history {history_timer.get('s', 0):.1f} s)")
        out["runs"] = []
        for mode in modes:
            what = "dry run (analysis + reviews)" if mode == "dry_run" else "full migration"
            _progress(f"[{n:,}] running a {what} ...")
            run = run_execution(rt, meter, n, mode, args)
            out["runs"].append(run)
            _progress(f"[{n:,}] {mode}: {run['status']} in {run['execution_wall_s']:.1f} s; analysis "
                      f"{run['analysis']['api_calls_total']} API calls, {run['analysis']['cpu_process_s']:.1f} s CPU; "
                      f"{run['history']['state_transitions']} transitions; largest payload "
                      f"{run['history']['largest_payload']['bytes']:,} B")
    gc.unfreeze()
    out["total_wall_s"] = round(time.perf_counter() - started, 2)
    return out


def _instance_types(rt: LocalRuntime) -> list[str]:
    types = set()
    for page in rt.client("ec2").get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 1000}):
        for r in page["Reservations"]:
            types.update(i["InstanceType"] for i in r["Instances"])
    return sorted(types)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _environment() -> dict:
    import moto

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except Exception:  # noqa: BLE001
        commit = None
    return {"python": platform.python_version(), "moto": moto.__version__, "platform": platform.platform(),
            "cpus": os.cpu_count(), "git_commit": commit}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    meter = _meter(args)
    meter.install()
    index_was_installed = metric_index.installed()
    results = _new_results(args)
    try:
        for n in args.size_list:
            results["sizes"].append(run_size(n, meter, args))
    finally:
        _uninstall(meter, args, index_was_installed)
    results["total_wall_s"] = round(time.perf_counter() - started, 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scale = json.loads(out.read_text()).get("scale") if out.exists() else None
    if scale is not None:  # the timing simulator's results (bench/scale_bench.py) live in the same file
        results["scale"] = scale
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(render(results))
    print(f"\nResults: {out}")
    return _exit_status(results)


def _meter(args: argparse.Namespace) -> Meter:
    meter = Meter()
    if args.profile:
        meter.profile_dir = Path(args.profile)
        meter.profile_only = {n.strip() for n in args.profile_only.split(",") if n.strip()}
    return meter


def _new_results(args: argparse.Namespace) -> dict:
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": _environment(),
        "settings": {"sizes": args.size_list, "cpu_days": args.cpu_days, "cpu_days_large": args.cpu_days_large,
                     "large": args.large, "full_large": args.full_large, "seed": args.seed,
                     "speedups": not args.no_speedups, "verify_index": args.verify_index},
        "sfn_payload_limit_bytes": SFN_PAYLOAD_LIMIT,
        "sizes": [],
    }


def _uninstall(meter: Meter, args: argparse.Namespace, index_was_installed: bool) -> None:
    if not args.no_speedups:
        moto_speedups.uninstall()
        if not index_was_installed:
            metric_index.uninstall()
    meter.uninstall()


def _exit_status(results: dict) -> int:
    """1 if an execution did not succeed or a state's payload reached the Step Functions limit."""
    runs = [(s, r) for s in results["sizes"] for r in s["runs"]]
    failed = [f"{s['instances']}:{r['mode']}" for s, r in runs if r["status"] != "SUCCEEDED"]
    over = [f"{s['instances']}:{r['mode']}" for s, r in runs
            if r["history"]["largest_payload"]["bytes"] >= SFN_PAYLOAD_LIMIT]
    if failed or over:
        print(f"FAILED executions: {failed}; payloads over 256 KB: {over}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
