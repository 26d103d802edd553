"""Auto Scaling group migrations: API calls and state transitions for a migration of N groups x M
instances, on the timing simulator, then the same with a rollback at the last wave.

    python bench/group_bench.py [--groups 10] [--size 100] [--cases A] [--zero-bakes]

Per case (a timing case of spotctl/local/timing.py, or `none` for the runtime without it): N
opted-in On-Demand groups of M instances (launch template, behind the service's target group),
migrated by name (selector.auto_scaling_groups), auto-approved, waves 10/50/100 %, the default
bakes (or 0). Reported: outcome and simulated duration; AWS calls per function and per action
(IAM action names, from the runtime's call log), in total and per group; Step Functions state
transitions (*StateEntered events of the execution); per wave the Spot share each group reached
and the MigrateWave invocations. Then the rollback variant (the members the groups launch from
the last wave on degrade, the last gate fails): the same counts and how long the rollback took.
Results go to bench/results/groups.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter, defaultdict
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
from spotctl.local.runtime import ExecutionResult, LocalRuntime  # noqa: E402
from spotctl.local.timing import CASES  # noqa: E402
from spotctl.local.workload import Degradation  # noqa: E402

OUT = REPO / "bench" / "results" / "groups.json"
PREFIX = "spot-migration-"
WAVES = [10, 50, 100]
NO_TIMING = "none"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", type=int, default=10, help="Auto Scaling groups (default: 10)")
    p.add_argument("--size", type=int, default=100, help="instances per group (default: 100)")
    p.add_argument("--cases", default="A", help=f"timing cases, comma-separated, or '{NO_TIMING}' (default: A)")
    p.add_argument("--zero-bakes", action="store_true", help="bake 0 s after each wave (default: 300/600/900 s)")
    p.add_argument("--no-rollback", action="store_true", help="skip the rollback variant")
    p.add_argument("--timeout", type=float, default=3600.0, help="real seconds per execution (default: 3600)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.case_list if c != NO_TIMING and c not in CASES]
    if unknown:
        p.error(f"unknown cases {unknown}; known: {sorted(CASES)} or {NO_TIMING}")
    return args


# --- one run ---------------------------------------------------------------------------------------
def run(case: str, rollback: bool, args: argparse.Namespace) -> dict:
    """A fresh runtime, N groups seeded, one migration of them, measured."""
    model = replace(CASES[case], seed=args.seed) if case != NO_TIMING else None
    with LocalRuntime(seed=args.seed, timing=model) as rt:
        names = [f"group-{i:02d}" for i in range(args.groups)]
        for name in names:
            rt.fleet.seed_group(name, args.size, register=True, cpu_days=1)
        rt.fleet.write_quality_history()  # the service's baseline (seed_fleet writes it; seed_group does not)
        if model is not None:
            model.configure_target_group(rt.client("elbv2"), rt.fleet.target_group_arn)
        if rollback:
            _degrade_at(rt, len(WAVES) - 1)
        w0 = time.perf_counter()
        result = rt.run_migration(_request(rt, names, args.zero_bakes), timeout=args.timeout)
        wall = time.perf_counter() - w0
        return {"case": case, "timing_model": model is not None, "variant": "rollback" if rollback else "migration",
                "groups": args.groups, "size": args.size, "real_wall_seconds": round(wall, 1),
                **_measure(rt, result, args.groups)}


def _degrade_at(rt: LocalRuntime, wave: int) -> None:
    """The wave's bake plays degraded traffic (the members the groups launched in it serve slower
    and fail more), so its gate fails. Only that bake: with a degradation on, the runtime reads the
    members' tags on every Wait, which makes the simulator look at the groups (and start refresh
    batches) more often, and the other waves and the rollback would not run as without it."""
    emit = rt.fleet.emit_quality

    def emit_quality(seconds: float) -> None:
        rt.fleet.degradation = Degradation(wave=wave) if _baking(rt, wave) else None
        emit(seconds)

    rt.fleet.emit_quality = emit_quality  # type: ignore[method-assign]


def _baking(rt: LocalRuntime, wave: int) -> bool:
    """The Wait now is the wave's bake: the last handler run was its MigrateWave, done."""
    last = rt.lambdas.invocations[-1] if rt.lambdas.invocations else None
    if last is None or not last.function.endswith("migrate_wave") or not isinstance(last.payload, dict):
        return False
    return bool(last.payload.get("done")) and last.payload.get("wave") == wave


def _request(rt: LocalRuntime, names: list[str], zero_bakes: bool) -> dict:
    request: dict[str, Any] = {"approval": {"auto_approve": True}, "selector": {"auto_scaling_groups": names},
                               "quality": {"target_group_arn": rt.fleet.target_group_arn}, "waves": WAVES}
    if zero_bakes:
        request["bake_seconds"] = [0] * len(WAVES)
    return request


def _measure(rt: LocalRuntime, result: ExecutionResult, groups: int) -> dict:
    item = rt.migration(result.migration_id)
    history = history_stats(rt.history(result.migration_id))
    calls = _calls(rt.lambdas.calls, groups)
    return {
        "status": result.status, "error": result.error, "outcome": item.get("status"),
        "bake_seconds": [w.get("bake_seconds") for w in item.get("waves", [])],
        **_durations(rt),
        "transitions": history["state_transitions"],
        "transitions_per_group": round(history["state_transitions"] / groups, 1),
        "state_entered_by_state": history["state_entered_by_state"],
        "largest_payload_bytes": history["largest_payload"]["bytes"],
        **calls,
        "invocations": dict(sorted(Counter(_short(i.function) for i in rt.lambdas.invocations).items())),
        "waves": _waves(rt, result.migration_id),
        "group_status": dict(Counter(g.status for g in rt.wiring.plans.groups(result.migration_id))),
        "rollback": item.get("rollback"),
    }


def _short(function: str) -> str:
    return function.removeprefix(PREFIX)


def _calls(calls: list[tuple[str, str]], groups: int) -> dict:
    """AWS calls (IAM actions) by function and by action, in total and per group."""
    by_function: dict[str, Counter] = defaultdict(Counter)
    for function, action in calls:
        by_function[_short(function)][action] += 1
    by_action = Counter(action for _, action in calls)
    by_service = Counter(action.split(":", 1)[0] for _, action in calls)
    return {
        "api_calls_total": len(calls), "api_calls_per_group": round(len(calls) / groups, 1),
        "api_calls_by_service": dict(sorted(by_service.items())),
        "api_calls_by_action": dict(sorted(by_action.items())),
        "api_calls_by_action_per_group": {a: round(n / groups, 2) for a, n in sorted(by_action.items())},
        "api_calls_by_function": {f: {"total": sum(c.values()), **dict(sorted(c.items()))}
                                  for f, c in sorted(by_function.items())},
    }


def _durations(rt: LocalRuntime) -> dict:
    """Simulated seconds of the execution and of its rollback (first Rollback invocation to the end)."""
    if rt.timing is None:
        return {"simulated_seconds": None, "rollback_simulated_seconds": None,
                "fast_forwarded_wait_seconds": sum(rt.waits)}
    report = rt.timing.report()
    end = rt.timing.ended_at if rt.timing.ended_at is not None else rt.timing.clock.seconds
    rollbacks = rt.timing.spans_of(f"{PREFIX}rollback")
    return {"simulated_seconds": report["simulated_seconds"],
            "rollback_simulated_seconds": round(end - rollbacks[0].start, 1) if rollbacks else None,
            "lambda_gb_seconds": report["lambda_gb_seconds"], "launched": report["launched"],
            "request_limit_exceeded": report["request_limit_exceeded"], "lambda_timeouts": report["lambda_timeouts"]}


def _waves(rt: LocalRuntime, migration_id: str) -> list[dict]:
    """Per wave: MigrateWave and QualityGate invocations, the simulated seconds from its first
    MigrateWave to the end of its last gate (the bake included), and the Spot share (%) each group
    reached."""
    invoked: Counter = Counter()
    spans: dict[int, list[float]] = defaultdict(list)
    for function in ("migrate_wave", "quality_gate"):
        for wave, span in _runs_of(rt, function):
            invoked[(function, wave)] += 1
            spans[wave] += [span.start, span.end] if span is not None else []
    shares = {g.name: g.wave_spot_share for g in rt.wiring.plans.groups(migration_id)}
    return [{"index": i, "percent": percent, "migrate_wave_invocations": invoked[("migrate_wave", i)],
             "quality_gate_invocations": invoked[("quality_gate", i)],
             "simulated_seconds": round(max(spans[i]) - min(spans[i]), 1) if spans[i] else None,
             "spot_share_pct": {name: share.get(str(i)) for name, share in sorted(shares.items())}}
            for i, percent in enumerate(WAVES)]


def _runs_of(rt: LocalRuntime, function: str) -> list[tuple[int, Any]]:
    """(wave index, its span on the virtual clock or None) of each run of a per-wave function; the
    runs are sequential (the Map runs one wave at a time), so spans and invocations pair in order."""
    runs = [i for i in rt.lambdas.invocations if i.function == PREFIX + function and isinstance(i.event, dict)]
    spans = rt.timing.spans_of(PREFIX + function) if rt.timing is not None else []
    paired = spans if len(spans) == len(runs) else [None] * len(runs)
    return [(int((r.event.get("wave") or {}).get("index", -1)), span) for r, span in zip(runs, paired, strict=True)]


# --- the benchmark --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)  # it logs each failed state's whole repr
    index_was_installed = metric_index.installed()
    metric_index.install()
    moto_speedups.install()  # moto's O(N) instance lookups would dominate (see bench/moto_speedups.py)
    runs = []
    try:
        for case in args.case_list:
            for rollback in (False,) if args.no_rollback else (False, True):
                _progress(f"[groups {args.groups} x {args.size} / case {case}] "
                          f"{'rollback at the last wave' if rollback else 'migration'} ...")
                runs.append(run(case, rollback, args))
                _progress("  " + _line(runs[-1]))
    finally:
        moto_speedups.uninstall()
        if not index_was_installed:
            metric_index.uninstall()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                               "settings": {"groups": args.groups, "size": args.size, "cases": args.case_list,
                                            "waves": WAVES, "zero_bakes": args.zero_bakes, "seed": args.seed},
                               "runs": runs}, indent=2, default=str) + "\n")
    print(render(runs))
    print(f"\nResults: {out}")
    return _exit_status(runs)


def _exit_status(runs: list[dict]) -> int:
    """1 unless each migration completed and each rollback variant rolled back."""
    expected = {"migration": ("SUCCEEDED", "completed"), "rollback": ("FAILED", "rolled_back")}
    wrong = [f"{r['case']}:{r['variant']}" for r in runs if (r["status"], r["outcome"]) != expected[r["variant"]]]
    if wrong:
        print(f"unexpected outcome: {wrong}", file=sys.stderr)
    return 1 if wrong else 0


def _line(r: dict) -> str:
    sim = f" in {r['simulated_seconds'] / 60:.1f} simulated min" if r["simulated_seconds"] is not None \
        else " (no timing model: no simulated duration)"
    back = f", rollback {r['rollback_simulated_seconds'] / 60:.1f} min" if r["rollback_simulated_seconds"] else ""
    return (f"{r['status']} ({r['outcome']}){sim}{back}; {r['api_calls_total']} API calls "
            f"({r['api_calls_per_group']}/group), {r['transitions']} transitions; {r['real_wall_seconds']:.0f} s real")


def render(runs: list[dict]) -> str:
    return "\n".join(line for r in runs for line in _render_run(r))


def _render_run(r: dict) -> list[str]:
    timing = f"case {r['case']}" if r["timing_model"] else "without the timing model"
    ec2_asg = (f"{a.split(':', 1)[1]} {n}" for a, n in r["api_calls_by_action"].items()
               if a.startswith(("autoscaling:", "ec2:")))
    return [
        f"{r['variant']} of {r['groups']} groups x {r['size']} ({timing}, bakes {r['bake_seconds']} s): " + _line(r),
        "  calls by service: " + ", ".join(f"{s} {n}" for s, n in r["api_calls_by_service"].items()),
        "  calls by function: " + ", ".join(f"{f} {c['total']}" for f, c in r["api_calls_by_function"].items()),
        "  autoscaling/ec2 actions: " + ", ".join(ec2_asg),
        *(_wave_line(w) for w in r["waves"]),
    ]


def _wave_line(w: dict) -> str:
    shares = [s for s in w["spot_share_pct"].values() if s is not None]
    spread = f"{min(shares):g}-{max(shares):g} %" if shares else "-"
    took = f"{w['simulated_seconds'] / 60:.1f} min, " if w["simulated_seconds"] is not None else ""
    return (f"  wave {w['index']} ({w['percent']} %): {took}Spot share {spread} over {len(shares)} groups; "
            f"{w['migrate_wave_invocations']} MigrateWave, {w['quality_gate_invocations']} QualityGate invocations")


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
