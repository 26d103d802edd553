"""Interruption handling benchmarks: AWS calls of one warning and of a 200-warning storm,
the replacement handler's time, a lone warning's event-to-launch latency, its cold-start
import time, and (timing simulator) the storm's simulated time to its last launch request.

Two kinds of interrupted instance, both serving behind the fleet's load balancer:
(a) a standalone replacement: launched by an earlier interruption (which wrote its launch
    profile: target groups and user data);
(b) a replacement launched by a migration of 10,000 records, registered with its launch profile
    as the wave engine writes it (target groups, user data, the record of the original it
    replaces: the record follows the new instance and the realised savings drift);
(c) the same, registered without a profile (launched by an earlier version, or a launch resumed
    after a crash): its record is read by key and its user data described.
Two deliveries of the same handler: through the interruption queue (the stack's: batches of
up to 10, gathered for at most a second) and, for comparison, EventBridge invoking the
function directly, one event per invocation.

Calls are counted per SDK call the replacement function makes (a botocore hook; a
TransactWriteItems is one call), after a first warning has warmed the execution environment
(prices, subnets, recent pools). Handler time is the in-process wall time on moto (whose calls
answer in microseconds): what the handler itself costs, not AWS's latencies; those are what
the timing simulator adds (RunInstances ~1 s, EC2 reads 0.15 s, ELB 0.1 s, DynamoDB 10 ms).
"""

from __future__ import annotations

import math
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FUNCTION = "spot-migration-replace_interrupted"
MIGRATION = "mig-bench-10k"
RECORDS = 10_000
SINGLES = 5  # lone warnings measured per kind
WARNING_SECONDS = 120  # what EC2's interruption warning leaves
CONCURRENCY = 20  # the replacement function's reserved concurrency (the stack's default)
QUEUE_START_BATCHES, QUEUE_SCALE_PER_S = 5, 5.0  # an SQS event source starts with 5 batches, adds up to 300 a minute


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


# --- the fleets ---------------------------------------------------------------------------------------------------
def migration_fleet(rt: Any, victims: int, records: int = RECORDS, without_profile: int = 0) -> list[str]:
    """A completed migration of `records` instances; `victims` of its replacements run (the others'
    records name instances long gone: only the plan's size matters), the last `without_profile`
    of them registered without a launch profile."""
    from spot_core.domain.interruptions import LaunchProfile, RecordRef
    from spot_core.domain.plan import InstanceRecord, Pool, TargetRef
    from spot_core.domain.tags import MANAGED_TAG, MIGRATION_ID_TAG, REPLACES_TAG

    originals = [f"i-{n:017x}" for n in range(records)]
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    by_original: dict[str, str] = {}
    for n, zone in enumerate(zones):
        share = victims // 3 + (1 if n < victims % 3 else 0)
        for iid in rt.fleet.launch("c5.large", "web-spot", zone, {MANAGED_TAG: "true"}, count=share, market="spot"):
            original = originals[len(by_original)]
            rt.client("ec2").create_tags(Resources=[iid], Tags=[{"Key": MIGRATION_ID_TAG, "Value": MIGRATION},
                                                                {"Key": REPLACES_TAG, "Value": original}])
            by_original[original] = iid
    live = list(by_original.values())
    group = [TargetRef(arn=rt.fleet.target_group_arn, port=80)]
    pools = [Pool(instance_type="c5.large", availability_zone=z, spot_hourly=0.03) for z in zones]
    plan = [InstanceRecord(instance_id=o, instance_type="c5.large", availability_zone=zones[n % 3], eligible=True,
                           status="migrated", replacement_id=by_original.get(o, f"i-{n + records:017x}"),
                           replacement_type="c5.large", replacement_az=zones[n % 3], replacement_spot_hourly=0.03,
                           on_demand_hourly=0.085, target_groups=group, pools=pools, wave=1)
            for n, o in enumerate(originals)]
    rt.wiring.plans.put_records(MIGRATION, plan)
    rt.wiring.migrations.create(MIGRATION, {"approval": {"auto_approve": True}}, status="completed")
    rt.wiring.migrations.update(MIGRATION, realised={
        "instances": records, "on_spot": records, "on_demand_fallbacks": 0, "monthly_on_demand": 620500.0,
        "monthly_spot": 219000.0, "monthly_stopped_storage": 0.0, "monthly_savings": 401500.0, "savings_pct": 64.7})
    with_profile = {r.replacement_id: LaunchProfile(target_groups=group, user_data="IyEvYmluL3NoCg==",
                                                    record=RecordRef.of(MIGRATION, r))
                    for r in plan[:len(live) - without_profile] if r.replacement_id}
    rt.wiring.registry.register_all(live, f"migration {MIGRATION} wave 1", with_profile)
    return live


def standalone_replacements(rt: Any, count: int) -> list[str]:
    """Managed instances that an earlier interruption launched: warnings for a first generation
    (not measured), whose replacements are the ones returned."""
    from spot_core.domain.tags import MANAGED_TAG

    first = rt.fleet.launch("m5.large", "api-spot", "us-east-1b", {MANAGED_TAG: "true"}, count=count, market="spot")
    for iid in first:
        rt.wiring.registry.register(iid, "a standalone fleet")
    deliveries = rt.put_ec2_events([_event(i) for i in first])
    return [d["result"]["replacement_id"] for d in deliveries]


# --- measuring ----------------------------------------------------------------------------------------------------
class CallCounter:
    """service:Operation -> SDK calls the replacement function made (one per call). Installed on
    boto3's default session before any handler creates its clients (a client copies the
    session's hooks when it is created)."""

    def __init__(self, rt: Any):
        import boto3

        self.rt, self.calls = rt, Counter()
        boto3._get_default_session().events.register("before-call", self._count, unique_id="interruption-bench")

    def _count(self, model: Any = None, **_: Any) -> None:
        if getattr(self.rt.lambdas._current, "function", None) == FUNCTION:
            meta = model.service_model.metadata
            self.calls[f"{meta.get('signingName') or meta['endpointPrefix']}:{model.name}"] += 1

    @contextmanager
    def counting(self) -> Iterator[Counter]:
        before = Counter(self.calls)
        made: Counter = Counter()
        try:
            yield made
        finally:
            made.update(self.calls - before)

    def close(self) -> None:
        import boto3

        boto3._get_default_session().events.unregister("before-call", unique_id="interruption-bench")


def deliver(rt: Any, mode: str, events: list[dict]) -> list[dict]:
    """Through the queue (as many to a batch as are waiting), or one direct invocation each."""
    if mode == "queue":
        return rt.put_ec2_events(events)
    return [rt.invoke_async(FUNCTION, e) for e in events]


def measure(rt: Any, counter: CallCounter, mode: str, instances: list[str], alone: bool) -> dict:
    """Warnings for `instances`: each alone (a batch of one), or all at once (a storm)."""
    first = len(rt.lambdas.invocations)
    events = [_event(iid) for iid in instances]
    with counter.counting() as calls:
        deliveries = [d for batch in ([[e] for e in events] if alone else [events]) for d in deliver(rt, mode, batch)]
    _all_replaced(deliveries)
    seconds = [i.seconds for i in rt.lambdas.invocations[first:] if i.function == FUNCTION]
    return _summary(calls, seconds, len(instances), per=len(instances) if alone else 1)


def _all_replaced(deliveries: list[dict]) -> None:
    failed = [d for d in deliveries if (d.get("result") or {}).get("action") != "replaced"]
    assert not failed, failed[:3]


def _summary(calls: Counter, seconds: list[float], events: int, per: int) -> dict:
    """`per`: a lone warning's calls by operation are averaged over the ones measured."""
    return {"events": events, "invocations": len(seconds), "calls": sum(calls.values()),
            "calls_per_event": round(sum(calls.values()) / events, 2),
            "calls_by_operation": {k: round(v / per, 2) for k, v in sorted(calls.items())},
            "handler_seconds_total": round(sum(seconds), 3),
            "handler_ms_per_event": round(1000 * sum(seconds) / events, 1),
            "handler_ms_per_invocation_median": round(1000 * statistics.median(seconds), 1)}


def run(storm: int = 200) -> dict:
    from spotctl.local.runtime import LocalRuntime

    with LocalRuntime(seed=3) as rt:
        counter = CallCounter(rt)
        rt.fleet.setup_network()
        unprofiled = 2 * (SINGLES + 1)  # per delivery mode: one to warm, then the ones measured
        victims = migration_fleet(rt, 2 * storm + 2 * SINGLES + 1 + unprofiled, without_profile=unprofiled)
        old = [victims.pop() for _ in range(unprofiled)]
        standalone = standalone_replacements(rt, 2 * SINGLES + 1)
        # warms the environment (prices of both kinds' types, subnets, recent pools): not measured
        deliver(rt, "queue", [_event(standalone.pop()), _event(victims.pop())])
        out: dict[str, Any] = {"records_in_the_migration": RECORDS, "storm_events": storm}
        for mode in ("queue", "direct"):
            out[mode] = {
                "a_standalone_replacement": measure(rt, counter, mode, [standalone.pop() for _ in range(SINGLES)],
                                                    True),
                "b_replacement_of_a_10k_migration": measure(rt, counter, mode,
                                                            [victims.pop() for _ in range(SINGLES)], True),
                "storm": measure(rt, counter, mode, [victims.pop() for _ in range(storm)], False),
            }
            deliver(rt, mode, [_event(old.pop())])  # the first warms the environment for the record's read
            out[mode]["c_launched_without_a_profile"] = measure(rt, counter, mode, [old.pop() for _ in range(SINGLES)],
                                                                 True)
        counter.close()
    out["timing"] = simulated(storm)
    return {**out, **import_time()}


# --- the timing simulator -----------------------------------------------------------------------------------------
def simulated(storm: int) -> dict:
    """On the timing simulator's clock (case A: AWS's latencies; EC2's request buckets): a lone
    warning's event-to-launch-request latency, and the storm's time to its last launch request.

    The simulator runs one invocation at a time; Lambda runs them side by side. Each
    invocation's launch requests keep their offsets from its start, and the invocations are
    scheduled on the function's reserved concurrency (CONCURRENCY): all at once for direct
    invocations; for the queue, batches of 10 on an event source that starts with 5 and adds
    up to 5 a second. Then RunInstances' request bucket (50, refilled at 5 a second) is applied
    to the requests in their order: what EC2 would have accepted when."""
    from spotctl.local.runtime import LocalRuntime
    from spotctl.local.timing import CASES

    out: dict[str, Any] = {"model": "A", "warning_seconds": WARNING_SECONDS}
    with LocalRuntime(seed=3, timing=CASES["A"]) as rt:
        sim = rt.timing
        rt.fleet.setup_network()
        victims = migration_fleet(rt, 2 * storm + 4, records=1000)  # the plan's size changes no call
        deliver(rt, "queue", [_event(victims.pop())])  # warm
        for mode, window in (("queue", 1.0), ("direct", 0.0)):
            single = _spans(sim, lambda m=mode: deliver(rt, m, [_event(victims.pop())]))
            to_launch = single[0][1][0] if single and single[0][1] else None
            spans = _spans(sim, lambda m=mode: deliver(rt, m, [_event(victims.pop()) for _ in range(storm)]))
            out[mode] = {
                "single_event_to_launch_request_s": round(window + to_launch, 3) if to_launch is not None else None,
                "batching_window_s": window,
                **_storm_schedule(spans, queue=mode == "queue"),
            }
    return out


def _spans(sim: Any, act: Callable[[], Any]) -> list[tuple[float, list[float]]]:
    """Each replacement invocation `act` caused: its simulated duration and its launch requests'
    offsets from its start."""
    first_span, first_launch = len(sim.spans), len(sim.lifecycle.launches)
    act()
    spans = [s for s in sim.spans[first_span:] if s.function == FUNCTION]
    launches = [t for t, _ in sim.lifecycle.launches[first_launch:]]
    latency = sim.model.latency("ec2", "RunInstances")  # a launch is stamped when EC2 answered: the request left before
    return [(s.end - s.start, [t - latency - s.start for t in launches if s.start <= t <= s.end]) for s in spans]


def _storm_schedule(spans: list[tuple[float, list[float]]], queue: bool) -> dict:
    requests = _scheduled(spans, queue)
    accepted = _accepted(requests)
    return {"invocations": len(spans), "handler_simulated_seconds_total": round(sum(d for d, _ in spans), 1),
            "last_launch_request_s": round(requests[-1], 1) if requests else None,
            "last_launch_request_within_ec2_request_rate_s": round(accepted[-1], 1) if accepted else None,
            "launch_requests": len(requests),
            "within_warning": bool(accepted) and math.ceil(accepted[-1]) <= WARNING_SECONDS}


def _scheduled(spans: list[tuple[float, list[float]]], queue: bool) -> list[float]:
    """The launch requests' times with the invocations run side by side on the reserved concurrency."""
    workers, requests = [0.0] * CONCURRENCY, []
    for n, (duration, offsets) in enumerate(spans):
        slot = min(range(CONCURRENCY), key=lambda w: workers[w])
        ready = (n - QUEUE_START_BATCHES + 1) / QUEUE_SCALE_PER_S if queue and n >= QUEUE_START_BATCHES else 0.0
        start = max(workers[slot], ready)
        workers[slot] = start + duration
        requests += [start + o for o in offsets]
    return sorted(requests)


def _accepted(requests: list[float], burst: int = 50, rate: float = 5.0) -> list[float]:
    """When RunInstances' request bucket (`burst`, refilled at `rate` a second) lets each request through."""
    accepted: list[float] = []
    for k, t in enumerate(requests):
        accepted.append(max(t, (k + 1 - burst) / rate, accepted[-1] if accepted else 0.0))
    return accepted


if __name__ == "__main__":
    import json

    sys.path[:0] = [str(REPO / "layers" / "spot_core" / "python"), str(REPO)]
    print(json.dumps(run(), indent=2))
