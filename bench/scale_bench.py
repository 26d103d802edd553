"""`make bench`, scale: full migrations of 1,000 and 10,000 instances on the embedded runtime's
timing simulator (spotctl/local/timing.py), against the physical bound of the same timings.

    .venv/bin/python -m bench.scale_bench [--sizes 1000,10000] [--cases A,B,C]
                                          [--combinations | --no-combinations] [--combination-size 200]

Per fleet size and timing case: the simulated duration of an auto-approved migration with the
default waves and bakes, the physical bound (README: "Scale"), launch rate, state
transitions, Lambda GB-seconds, whether it rolled back; and the 28 timing combinations at one
size. Results go to bench/results/latest.json under the key `scale` (the other keys are kept).
Exits 1 unless every run succeeded without rollback within 1.2 x its physical bound.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import spotctl  # noqa: E402,F401  (puts the spot_core layer on sys.path)
from bench import moto_speedups  # noqa: E402
from bench.harness import history_stats  # noqa: E402
from spotctl.local import metric_index  # noqa: E402
from spotctl.local.runtime import LocalRuntime  # noqa: E402
from spotctl.local.timing import CASES, TimingModel, TimingSimulator, combinations, physical_bound  # noqa: E402

DEFAULT_OUT = REPO / "bench" / "results" / "latest.json"
RATIO_GOAL = 1.2
ROLLED_BACK = ("rolled_back", "rollback_failed")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000", help="fleet sizes for the cases (default: 1000,10000; '' for none)")
    p.add_argument("--cases", default="A,B,C", help="timing cases (default: A,B,C; '' for none)")
    p.add_argument("--combinations", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the 28 timing combinations (default: yes)")
    p.add_argument("--combination-size", type=int, default=200,
                   help="fleet size of the combinations (default: 200, to keep the 28 runs short)")
    p.add_argument("--only", default="",
                   help="only these combinations, by name, comma-separated (e.g. healthy60s-drain0s)")
    p.add_argument("--cpu-days", type=int, default=1,
                   help="days of hourly CPU history seeded per instance (default: 1, enough to classify)")
    p.add_argument("--timeout", type=float, default=7200.0, help="real seconds per execution (default: 7200)")
    p.add_argument("--seed", type=int, default=7, help="fleet, market and boot-time seed (default: 7)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file, updated under `scale`")
    args = p.parse_args(argv)
    args.size_list = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.case_list if c not in CASES]
    if unknown:
        p.error(f"unknown cases {unknown}; known: {sorted(CASES)}")
    return args


# --- one run ------------------------------------------------------------------------------------------
def run_migration(n: int, model: TimingModel, args: argparse.Namespace) -> dict:
    """Seed n opted-in instances, give the target group the case's settings, migrate, measure."""
    index_was_installed = metric_index.installed()
    metric_index.install()
    moto_speedups.install()
    try:
        with LocalRuntime(seed=args.seed, timing=model) as rt:
            rt.fleet.seed_fleet(n, cpu_days=args.cpu_days)
            model.configure_target_group(rt.client("elbv2"), rt.fleet.target_group_arn)
            gc.collect()
            gc.freeze()  # the simulator's own state is not the Lambdas' heap (see bench/README.md)
            request = {"approval": {"auto_approve": True}, "quality": {"target_group_arn": rt.fleet.target_group_arn}}
            w0 = time.perf_counter()
            result = rt.run_migration(request, timeout=args.timeout)
            wall = time.perf_counter() - w0
            item = rt.migration(result.migration_id)
            history = history_stats(rt.history(result.migration_id))
            return summarise(n, model, rt.timing, result, item, history, wall)
    finally:
        gc.unfreeze()
        moto_speedups.uninstall()
        if not index_was_installed:
            metric_index.uninstall()


def summarise(n: int, model: TimingModel, sim: Any, result: Any, item: dict, history: dict, wall: float) -> dict:
    report = sim.report()
    bound = bound_of(model, item, sim)
    simulated = report["simulated_seconds"]
    outcome = item.get("status")
    return {
        "instances": n, "candidates": sum(w["target_count"] for w in item.get("waves", [])),
        "status": result.status, "outcome": outcome, "error": result.error,
        "rolled_back": outcome in ROLLED_BACK or bool(item.get("rollback")),
        "simulated_hours": round(simulated / 3600, 3), "physical_bound_hours": round(bound["seconds"] / 3600, 3),
        "ratio": round(simulated / bound["seconds"], 3) if bound["seconds"] else None,
        "launch_rate_per_s": report["launch_rate_per_s"], "launched": report["launched"],
        "launch_requests": report["launch_requests"],
        "transitions": history["state_transitions"], "max_state_payload_bytes": history["largest_payload"]["bytes"],
        "lambda_gb_seconds": report["lambda_gb_seconds"], "lambda_timeouts": report["lambda_timeouts"],
        "request_limit_exceeded": report["request_limit_exceeded"],
        "real_wall_seconds": round(wall, 1),
        "model": report["model"], "bound": bound, "functions": report["functions"],
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def bound_of(model: TimingModel, item: dict, sim: TimingSimulator) -> dict:
    """The physical bound of this run: its fixed stages as simulated + the waves' bound."""
    waves = [(w["target_count"], float(w["bake_seconds"])) for w in item.get("waves", [])]
    fixed = fixed_stages(sim)
    waves_bound = physical_bound(model, waves)
    return {"seconds": round(fixed["seconds"] + waves_bound["waves_seconds"], 1), "fixed": fixed, **waves_bound}


def fixed_stages(sim: TimingSimulator) -> dict:
    """What is not bound by launches, as the run simulated it: before the first wave (analysis,
    reviews, approval, baseline), the quality gates between waves, and after the last gate
    began (the gate and finalisation)."""
    end = sim.ended_at if sim.ended_at is not None else sim.clock.seconds
    waves = [s for s in sim.spans if s.function.endswith("-migrate_wave")]
    gates = [s for s in sim.spans if s.function.endswith("-quality_gate")]
    before = (waves[0].start if waves else end) - sim.started_at
    between = sum(g.end - g.start for g in gates[:-1])
    after = end - gates[-1].start if gates else 0.0
    return {"seconds": round(before + between + after, 1), "before_waves_s": round(before, 1),
            "gates_between_waves_s": round(between, 1), "after_last_gate_s": round(after, 1)}


# --- the whole benchmark ----------------------------------------------------------------------------------
def run_cases(args: argparse.Namespace) -> dict[str, dict[str, dict]]:
    sizes: dict[str, dict[str, dict]] = {}
    for n in args.size_list:
        for case in args.case_list:
            _progress(f"[scale {n:,} / case {case}] migrating ...")
            run = run_migration(n, replace(CASES[case], seed=args.seed), args)
            sizes.setdefault(str(n), {})[case] = run
            _progress(_line(f"{n:,} {case}", run))
    return sizes


def run_combinations(args: argparse.Namespace) -> dict[str, dict]:
    wanted = {c.strip() for c in args.only.split(",") if c.strip()}
    runs = {}
    for model in combinations(TimingModel(seed=args.seed)):
        if wanted and model.name not in wanted:
            continue
        _progress(f"[scale {args.combination_size:,} / {model.name}] migrating ...")
        run = run_migration(args.combination_size, model, args)
        runs[model.name] = {k: run[k] for k in ("instances", "candidates", "status", "outcome", "rolled_back",
                                                "simulated_hours", "physical_bound_hours", "ratio",
                                                "launch_rate_per_s", "lambda_timeouts", "real_wall_seconds",
                                                "generated_at")}
        runs[model.name]["model"] = run["model"]
        _progress(_line(model.name, run))
    return runs


def _line(label: str, run: dict) -> str:
    return (f"  {label}: {run['status']} ({run['outcome']}), simulated {run['simulated_hours']:.2f} h, bound "
            f"{run['physical_bound_hours']:.2f} h, ratio {run['ratio']}, {run['launch_rate_per_s']} launches/s, "
            f"{run['real_wall_seconds']:.0f} s real")


def merge(out: Path, sizes: dict, combos: dict, args: argparse.Namespace) -> dict:
    """bench/results/latest.json with `scale` updated run by run (other keys and runs kept)."""
    results = json.loads(out.read_text()) if out.exists() else {}
    scale = results.get("scale") or {}
    for n, cases in sizes.items():
        scale.setdefault("sizes", {}).setdefault(n, {}).update(cases)
    if combos:
        block = scale.setdefault("combinations", {"size": args.combination_size, "runs": {}})
        if block.get("size") != args.combination_size:
            block.update(size=args.combination_size, runs={})
        block["runs"].update(combos)
    scale["goal"] = goal(scale)
    scale["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["scale"] = scale
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return scale


def _all_runs(scale: dict) -> list[tuple[str, dict]]:
    runs = [(f"{n}:{case}", run) for n, cases in scale.get("sizes", {}).items() for case, run in cases.items()]
    combos = scale.get("combinations") or {}
    return runs + [(f"{combos.get('size')}:{name}", run) for name, run in (combos.get("runs") or {}).items()]


def goal(scale: dict) -> dict:
    """Every run succeeded, did not roll back, and took at most 1.2 x its physical bound."""
    runs = _all_runs(scale)
    failed = [name for name, run in runs if run["status"] != "SUCCEEDED" or run["rolled_back"]]
    slow = [name for name, run in runs if run["ratio"] is None or run["ratio"] > RATIO_GOAL]
    return {"ratio_max": RATIO_GOAL, "runs": len(runs), "failed_or_rolled_back": failed, "over_ratio": slow,
            "met": not failed and not slow}


def render(scale: dict) -> str:
    lines = [f"{'run':<28} {'status':<10} {'rb':<3} {'sim h':>7} {'bound h':>8} {'ratio':>6} {'launch/s':>9} "
             f"{'trans':>6} {'GB-s':>9} {'wall s':>7}"]
    for n, cases in sorted(scale.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        for case, run in sorted(cases.items()):
            lines.append(_row(f"{int(n):,} case {case}", run))
    combos = scale.get("combinations") or {}
    for name, run in sorted((combos.get("runs") or {}).items()):
        lines.append(_row(f"{combos.get('size'):,} {name}", run))
    g = scale.get("goal", {})
    lines.append(f"goal (no rollback, simulated <= {RATIO_GOAL} x bound): {'MET' if g.get('met') else 'NOT MET'}"
                 + ("" if g.get("met") else f"; failed {g.get('failed_or_rolled_back')}; over {g.get('over_ratio')}"))
    return "\n".join(lines)


def _row(label: str, run: dict) -> str:
    def num(key: str, fmt: str) -> str:
        value = run.get(key)
        return format(value, fmt) if isinstance(value, (int, float)) and not math.isnan(value) else "-"

    return (f"{label:<28} {run['status']:<10} {'Y' if run['rolled_back'] else 'n':<3} {num('simulated_hours', '7.2f')} "
            f"{num('physical_bound_hours', '8.2f')} {num('ratio', '6.2f')} {num('launch_rate_per_s', '9.2f')} "
            f"{num('transitions', '6d')} {num('lambda_gb_seconds', '9.0f')} {num('real_wall_seconds', '7.0f')}")


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = run_cases(args)
    combos = run_combinations(args) if args.combinations else {}
    scale = merge(Path(args.out), sizes, combos, args)
    print(render(scale))
    print(f"\nResults: {args.out} (key `scale`)")
    return 0 if scale["goal"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
