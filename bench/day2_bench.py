"""Day 2 on Spot: what an on-demand window and the return of fallbacks cost, on the timing simulator.

    python bench/day2_bench.py [--instances 100] [--case A] [--fallbacks 5]

A fleet of N instances (spotctl/local/workload.py's seeded fleet) is migrated with one on-demand
window (auto-approved, waves 10/50/100 %, the default bakes). The window's schedules then fire on
the runtime's scheduler: at its start a revert takes the migrated instances back to on-demand, at
its end a return takes them to Spot again, each a migration of its own (the migration's waves,
bakes and gates). Then EC2 interrupts F of the Spot instances while no Spot pool has capacity
(on-demand fallbacks), capacity comes back, and the scheduled job returns the fallbacks to Spot.

Reported per step: outcome, simulated seconds (the timing model's clock), instances moved, AWS
calls in total, per moved instance and by function, Step Functions state transitions and Lambda
invocations. Results go to bench/results/day2.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
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
from spotctl.local.runtime import LocalRuntime  # noqa: E402
from spotctl.local.timing import CASES  # noqa: E402

OUT = REPO / "bench" / "results" / "day2.json"
PREFIX = "spot-migration-"
WINDOW = {"name": "month-end", "start": "cron(0 18 L * ? *)", "end": "cron(0 8 1 * ? *)", "timezone": "UTC"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--instances", type=int, default=100, help="fleet size (default: 100)")
    p.add_argument("--case", default="A", choices=sorted(CASES), help="timing case (default: A)")
    p.add_argument("--fallbacks", type=int, default=5, help="Spot instances interrupted with no Spot capacity")
    p.add_argument("--timeout", type=float, default=3600.0, help="real seconds per execution (default: 3600)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(OUT))
    return p.parse_args(argv)


class Step:
    """What one step cost: the calls, invocations and simulated seconds from its start to now."""

    def __init__(self, rt: LocalRuntime, name: str):
        self.rt, self.name = rt, name
        self.calls_from, self.invocations_from = len(rt.lambdas.calls), len(rt.lambdas.invocations)
        self.started = rt.timing.clock.seconds if rt.timing is not None else 0.0

    def done(self, moved: int, migration_id: str | None = None, **extra: Any) -> dict:
        rt = self.rt
        calls = rt.lambdas.calls[self.calls_from:]
        by_function: dict[str, Counter] = defaultdict(Counter)
        for function, action in calls:
            by_function[function.removeprefix(PREFIX)][action] += 1
        history = history_stats(rt.history(migration_id)) if migration_id else None
        return {
            "step": self.name, "migration_id": migration_id, "moved": moved,
            "simulated_seconds": round(rt.timing.clock.seconds - self.started, 1) if rt.timing is not None else None,
            "api_calls": len(calls), "api_calls_per_moved_instance": round(len(calls) / moved, 1) if moved else None,
            "api_calls_by_function": {f: sum(c.values()) for f, c in sorted(by_function.items())},
            "api_calls_by_action": dict(sorted(Counter(a for _, a in calls).items())),
            "state_transitions": history["state_transitions"] if history else None,
            "largest_payload_bytes": history["largest_payload"]["bytes"] if history else None,
            "invocations": dict(sorted(Counter(i.function.removeprefix(PREFIX) for i in
                                               rt.lambdas.invocations[self.invocations_from:]).items())),
            **extra,
        }


def migrated(rt: LocalRuntime, migration_id: str) -> list:
    return [r for r in rt.records(migration_id) if r.status == "migrated"]


def outcome(rt: LocalRuntime, migration_id: str) -> str | None:
    return rt.migration(migration_id).get("status")


# --- the steps ---------------------------------------------------------------------------------------
def migrate_with_window(rt: LocalRuntime, args: argparse.Namespace) -> dict:
    step = Step(rt, "migration with a window")
    result = rt.run_migration({"approval": {"auto_approve": True}, "windows": [WINDOW],
                               "quality": {"target_group_arn": rt.fleet.target_group_arn}}, timeout=args.timeout)
    return step.done(len(migrated(rt, result.migration_id)), result.migration_id,
                     outcome=outcome(rt, result.migration_id), schedules=len(rt.scheduler.schedules()))


def window_side(rt: LocalRuntime, source: str, side: str, key: str, args: argparse.Namespace) -> dict:
    """Fire the window's next schedule; the revert or return it starts, waited for."""
    from spot_core.domain.windows import OnDemandWindow

    window = OnDemandWindow.model_validate(WINDOW)
    fires = window.next(side, rt.scheduler.now)
    assert fires is not None
    step = Step(rt, f"window {'opens: revert' if side == 'start' else 'closes: return'}")
    rt.scheduler.advance_to(fires)
    started = rt.migration(source)["windows_state"][key]
    result = rt.wait(started, timeout=args.timeout)
    return step.done(len(migrated(rt, started)), started, outcome=outcome(rt, started), status=result.status,
                     fired_at=fires.isoformat())


def fallbacks_returned(rt: LocalRuntime, args: argparse.Namespace) -> dict:
    """F Spot instances interrupted while no Spot pool has capacity, then the scheduled job."""
    spot = sorted(rt.fleet.snapshot()["spot"])[:args.fallbacks]
    rt.market.refuse()  # every Spot pool, every time
    for instance_id in spot:
        rt.simulate(instance_id, "interruption")
    rt.market.refusals.clear()
    rt.lambdas.environment["FALLBACK_RETURN_MIN_AGE_SECONDS"] = "0"
    step = Step(rt, "fallbacks returned to Spot")
    scheduled = (REPO / "events" / "return_fallbacks.json").read_bytes()  # EventBridge's scheduled event
    response = rt.client("lambda").invoke(FunctionName=f"{PREFIX}return_fallbacks", Payload=scheduled)
    answer = json.loads(response["Payload"].read() or b"null")
    returned = answer.get("returned", []) if isinstance(answer, dict) else []
    return step.done(len(returned), None, interrupted=len(spot), answer=answer)


def run(args: argparse.Namespace) -> list[dict]:
    model = replace(CASES[args.case], seed=args.seed)
    with LocalRuntime(seed=args.seed, timing=model) as rt:
        rt.fleet.seed_fleet(args.instances)
        model.configure_target_group(rt.client("elbv2"), rt.fleet.target_group_arn)
        steps = [migrate_with_window(rt, args)]
        source = steps[0]["migration_id"]
        steps.append(window_side(rt, source, "start", "revert_id", args))
        steps.append(window_side(rt, source, "end", "return_id", args))
        if args.fallbacks:
            steps.append(fallbacks_returned(rt, args))
        return steps


def render(steps: list[dict]) -> str:
    lines = [f"{'step':34} {'outcome':18} {'moved':>5} {'sim s':>8} {'calls':>6} {'per inst':>8} {'transitions':>11}"]
    for s in steps:
        sim = f"{s['simulated_seconds']:.0f}" if s["simulated_seconds"] is not None else "-"
        lines.append(f"{s['step']:34} {str(s.get('outcome') or '-'):18} {s['moved']:>5} {sim:>8} {s['api_calls']:>6} "
                     f"{str(s['api_calls_per_moved_instance'] or '-'):>8} {str(s['state_transitions'] or '-'):>11}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    index_was_installed = metric_index.installed()
    metric_index.install()
    moto_speedups.install()
    try:
        steps = run(args)
    finally:
        moto_speedups.uninstall()
        if not index_was_installed:
            metric_index.uninstall()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                               "settings": vars(args), "steps": steps}, indent=2, default=str) + "\n")
    print(render(steps))
    print(f"\nResults: {out}")
    expected = ["completed", "completed", "completed"]
    return 0 if [s.get("outcome") for s in steps[:3]] == expected else 1


if __name__ == "__main__":
    sys.exit(main())
