"""Operator interface benchmarks: what `spotctl status`/`watch` (one poll), `list`, reading the
whole plan and drawing the execution graph cost in AWS calls and time, at 10 and 1,000
instances (dry runs); the local service's start-up time; the API handler's cold-start
import time. Times are moto's, in-process; the calls are what AWS would see.

    .venv/bin/python bench/operator_bench.py [--sizes 10,1000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "layers" / "spot_core" / "python")]


class CallCounter:
    """Counts the AWS calls made through the given clients (botocore before-call hook)."""

    def __init__(self, *clients):
        self.calls: Counter = Counter()
        for client in clients:
            client.meta.events.register("before-call", self._count)

    def _count(self, model=None, **_):
        self.calls[model.name] += 1

    def measure(self, fn, repeat: int = 5) -> dict:
        times, before = [], Counter(self.calls)
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        per_call = {k: (v - before.get(k, 0)) // repeat for k, v in self.calls.items() if v - before.get(k, 0)}
        return {"aws_calls": sum(per_call.values()), "by_operation": per_call,
                "median_ms": round(1000 * statistics.median(times), 1)}


def operator_costs(size: int) -> dict:
    import logging

    from bench import moto_speedups
    from spot_core.domain.request import StartMigration
    from spotctl.graph import render_graph
    from spotctl.local import metric_index
    from spotctl.local.runtime import LocalRuntime

    logging.getLogger("moto").setLevel(logging.CRITICAL)
    metric_index.install()  # moto's own slow paths, as in `python -m bench` (see bench/README.md)
    moto_speedups.install()
    with LocalRuntime(seed=3) as rt:
        rt.fleet.seed_fleet(size, cpu_days=1)
        service = rt.operator()
        body = StartMigration.model_validate({"migration_id": f"bench-{size}", "dry_run": True,
                                              "quality": {"target_group_arn": rt.fleet.target_group_arn}})
        service.start(body)
        rt.wait(body.migration_id, timeout=1800)
        counter = CallCounter(service.executions.sfn, rt.table.meta.client)

        def whole_plan():
            token = None
            while True:
                page = service.plan(body.migration_id, limit=100, next_token=token)
                token = page.next_token
                if not token:
                    return

        history = service.history(body.migration_id)
        definition = service.definition()
        start = time.perf_counter()
        html = render_graph(definition, history, migration_id=body.migration_id, status="SUCCEEDED")
        graph_ms = 1000 * (time.perf_counter() - start)
        return {
            "instances": size,
            "status_poll": counter.measure(lambda: service.get(body.migration_id)),
            "list_page": counter.measure(lambda: service.list(limit=20)),
            "whole_plan": counter.measure(whole_plan, repeat=3),
            "graph": {"history_events": len(history), "render_ms": round(graph_ms, 1),
                      "html_kb": round(len(html) / 1024, 1)},
        }


def local_service_start(runs: int = 3) -> dict:
    from spotctl.local import daemon

    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as home:
            os.environ["SPOTCTL_HOME"] = home
            start = time.perf_counter()
            daemon.start()
            times.append(time.perf_counter() - start)
            daemon.stop()
    os.environ.pop("SPOTCTL_HOME", None)
    return {"start_seconds_median": round(statistics.median(times), 2), "runs": runs}


def api_cold_import(runs: int = 5) -> dict | None:
    handler = REPO / "functions" / "api"
    if not (handler / "app.py").exists():
        return None
    env = {"PYTHONPATH": f"{REPO / 'layers' / 'spot_core' / 'python'}:{handler}", "PATH": "/usr/bin:/bin"}
    totals = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import app"], capture_output=True, text=True,
                             cwd=handler, env=env, check=True).stderr
        match = [m for m in re.finditer(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", out) if m.group(3) == "app"]
        totals.append(int(match[-1].group(2)) / 1e6)
    return {"cold_import_seconds_median": round(statistics.median(totals), 3), "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10,1000")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "operator.json"))
    args = p.parse_args()
    results = {"sizes": [operator_costs(int(s)) for s in args.sizes.split(",")],
               "local_service": local_service_start(), "api_handler": api_cold_import()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print("Operator interface")
    print(f"  {'fleet':>6}  {'status poll':>22}  {'list page':>18}  {'whole plan':>18}  {'graph':>24}")
    for r in results["sizes"]:
        s, lst, plan, g = r["status_poll"], r["list_page"], r["whole_plan"], r["graph"]
        print(f"  {r['instances']:>6}  {s['aws_calls']:>3} calls {s['median_ms']:>8.1f} ms"
              f"  {lst['aws_calls']:>2} calls {lst['median_ms']:>6.1f} ms"
              f"  {plan['aws_calls']:>2} calls {plan['median_ms']:>6.1f} ms"
              f"  {g['history_events']:>3} events {g['render_ms']:>6.1f} ms")
    local = results["local_service"]
    print(f"  local service start: {local['start_seconds_median']} s (median of {local['runs']})")
    if results["api_handler"]:
        print(f"  API handler cold import: {results['api_handler']['cold_import_seconds_median']} s "
              "(python -X importtime, median of 5)")
    print(f"  details: {args.out}")


if __name__ == "__main__":
    main()
