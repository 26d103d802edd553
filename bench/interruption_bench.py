"""Interruption handling benchmarks: AWS calls per event and per 200-event storm, the
replacement handler's cold-start import time and its warm handling time."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FUNCTION = "spot-migration-replace_interrupted"


def _event(instance_id: str) -> dict:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "EC2 Spot Instance Interruption Warning",
            "source": "aws.ec2", "account": "123456789012",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": "us-east-1", "resources": [],
            "detail": {"instance-id": instance_id, "instance-action": "terminate"}}


def import_time(runs: int = 5) -> dict:
    """Cold start: importing the handler module in a fresh interpreter (python -X importtime)."""
    code = "import app"
    env_path = f"{REPO / 'layers' / 'spot_core' / 'python'}:{REPO / 'functions' / 'replace_interrupted'}"
    totals = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                             # `import app` is the handler, not the CDK app
                             cwd=REPO / "functions" / "replace_interrupted",
                             env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}, check=True).stderr
        # the last line is the top-level import of `app`: "import time: self | cumulative | app"
        match = [m for m in re.finditer(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", out) if m.group(3) == "app"]
        totals.append(int(match[-1].group(2)) / 1e6)
    return {"cold_import_seconds_median": round(statistics.median(totals), 3), "runs": runs}


def run(storm: int = 200) -> dict:
    from spotctl.local.runtime import LocalRuntime

    with LocalRuntime(seed=3) as rt:
        rt.fleet.setup_network()
        fleet = rt.fleet.launch("c5.large", "batch-spot", "us-east-1b", {"spot-migration:managed": "true"},
                                count=storm + 10, market="spot")
        for iid in fleet:
            rt.wiring.registry.register(iid, "bench fleet")

        def handle(ids: list[str]) -> tuple[Counter, list[float]]:
            start = len(rt.lambdas.calls)
            first = len(rt.lambdas.invocations)
            for iid in ids:
                [delivery] = rt.put_ec2_event(_event(iid))
                assert delivery["result"]["action"] == "replaced", delivery
            calls = Counter(a for f, a in rt.lambdas.calls[start:] if f == FUNCTION)
            return calls, [i.seconds for i in rt.lambdas.invocations[first:]]

        handle(fleet[:1])  # cold start of the handler module and clients, not measured
        single, single_times = handle(fleet[1:10])
        storm_calls, storm_times = handle(fleet[10:10 + storm])
    warm_times = sorted(single_times + storm_times)
    return {
        "calls_per_event": round(sum(single.values()) / 9, 1),
        "calls_per_event_by_action": {k: round(v / 9, 2) for k, v in sorted(single.items())},
        "storm_events": storm,
        "storm_calls": sum(storm_calls.values()),
        "storm_calls_by_action": dict(sorted(storm_calls.items())),
        "warm_handling_ms_median": round(1000 * statistics.median(warm_times), 1),
        "warm_handling_ms_p95": round(1000 * warm_times[int(0.95 * len(warm_times))], 1),
        **import_time(),
    }


if __name__ == "__main__":
    import json

    sys.path[:0] = [str(REPO / "layers" / "spot_core" / "python"), str(REPO)]
    print(json.dumps(run(), indent=2))
