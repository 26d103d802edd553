"""Measurement on the embedded runtime: API calls per handler invocation, CPU and wall time,
state transitions and payload sizes from the execution history.

Everything is measured from the outside: a botocore `before-call` hook on boto3's default
session (the handlers' clients come from it, see spot_core/adapters/aws.py), a wrapper around
`InProcessLambdas.handler` that marks which invocation is running in which thread, and a
timer around moto's request stubber (the CPU the *simulated* AWS spends answering, which
in production is AWS's, not the Lambda's). A sampler thread splits the rest of the handler
thread's CPU between the product's code and the SDK (see `CpuSampler`).
"""

from __future__ import annotations

import cProfile
import gc
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.core.botocore_stubber import BotocoreStubber

SFN_PAYLOAD_LIMIT = 256 * 1024  # bytes, UTF-8, any state input/output
SAMPLE_INTERVAL = 0.005  # seconds between two looks at a handler thread's stack

# Where a sampled stack is (file path parts), from its innermost frame out to the handler call.
_SDK = ("/botocore/", "/boto3/", "/urllib3/", "/s3transfer/", "/dateutil/", "/jmespath/")
_PRODUCT = ("/spot_core/", "/functions/")
_KINDS: dict[str, str] = {}  # file name -> "sdk" | "product" | "": a stack walk looks each file up once


def _kind(filename: str) -> str:
    kind = _KINDS.get(filename)
    if kind is None:
        kind = _KINDS[filename] = ("sdk" if any(part in filename for part in _SDK)
                                   else "product" if any(part in filename for part in _PRODUCT) else "")
    return kind


def _classify(frame: Any, stop: Any, simulated: Any) -> tuple[str, bool]:
    """(category, own) of a sampled stack, read from the innermost frame out to the frame whose
    code is `stop` (the measured handler call): "simulated_aws" if it is inside moto's stubber
    (`simulated`: the code of the wrapper that times it, so the same CPU as `cpu_moto`), else
    "sdk" if boto3/botocore is on it, else "product" if the product's code is (spot_core,
    functions/*/app.py, with the libraries they call: pydantic, Powertools, the standard
    library), else "other" (runtime glue around the handler: Powertools' decorators, the
    embedded runtime's wrapper). `own` is True when the innermost Python frame is spot_core's."""
    own = frame is not None and "/spot_core/" in frame.f_code.co_filename
    found = "other"
    while frame is not None and frame.f_code is not stop:
        code = frame.f_code
        if code is simulated:
            return "simulated_aws", own
        kind = _kind(code.co_filename)
        if kind == "sdk" or (kind == "product" and found == "other"):
            found = kind
        frame = frame.f_back
    return found, own


class CpuSampler(threading.Thread):
    """Splits one thread's CPU time by where its stack is, by sampling.

    Every SAMPLE_INTERVAL seconds it reads the thread's CPU clock (`pthread_getcpuclockid`)
    and its stack (`sys._current_frames()`), and charges the CPU the thread used since the
    last look to the category of the stack now (`_classify`). Weighting by CPU, not by sample,
    keeps long C calls (JSON and XML parsing, pydantic-core) at their real weight. Cost: one
    stack walk (~20 µs) per interval in this thread (not the measured one), under 1 % of a core."""

    def __init__(self, target: int, stop_code: Any, simulated_code: Any) -> None:
        super().__init__(name="bench-cpu-sampler", daemon=True)
        self.target, self.stop_code, self.simulated_code = target, stop_code, simulated_code
        self.cpu: Counter = Counter()  # category -> CPU seconds; "product_own" is a part of "product"
        self.samples = 0
        self._done = threading.Event()
        self._clock = time.pthread_getcpuclockid(target)
        self._last = time.clock_gettime(self._clock)

    def run(self) -> None:
        while not self._done.wait(SAMPLE_INTERVAL):
            self._sample()

    def _sample(self) -> None:
        now = time.clock_gettime(self._clock)
        used, self._last = now - self._last, now
        category, own = _classify(sys._current_frames().get(self.target), self.stop_code,
                                   self.simulated_code)
        self.cpu[category] += used
        if own and category == "product":
            self.cpu["product_own"] += used
        self.samples += 1

    def finish(self) -> None:
        self._done.set()
        self.join()


class CallCounts(Counter):
    """API calls, (service, operation) -> count, carrying the invocation's sampled CPU split
    along: `Counter.update` from another CallCounts adds both, so a sum of invocations
    (bench/__main__.py: _sum_stats) sums the split too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.cpu_split: Counter = Counter()  # category -> CPU seconds (CpuSampler)
        self.samples = 0
        super().__init__(*args, **kwargs)

    def update(self, iterable: Any = None, /, **kwds: Any) -> None:  # type: ignore[override]
        super().update(iterable, **kwds)
        if isinstance(iterable, CallCounts):
            self.cpu_split.update(iterable.cpu_split)
            self.samples += iterable.samples


@dataclass
class InvocationStats:
    function: str  # catalog name, e.g. "analyze"
    calls: CallCounts = field(default_factory=CallCounts)  # (service, operation) -> count; + the CPU split
    cpu_process: float = 0.0  # time.process_time() delta: every thread of the process
    cpu_thread: float = 0.0  # time.thread_time() delta: the handler's thread only
    cpu_moto: float = 0.0  # of cpu_thread: inside moto's stubber (the simulated AWS answering)
    wall: float = 0.0
    wall_moto: float = 0.0
    gc_seconds: float = 0.0  # cyclic garbage collections while the handler ran (any thread)
    errored: bool = False

    @property
    def cpu_product(self) -> float:
        """Handler + SDK CPU: what would bill on Lambda (the thread minus simulated AWS)."""
        return max(0.0, self.cpu_thread - self.cpu_moto)

    def cpu_split(self) -> dict:
        """The handler + SDK CPU split by the sampler into the product's share, the SDK's and the
        rest; scaled to the measured `cpu_product` (the simulated AWS share is measured exactly)."""
        split, samples = self.calls.cpu_split, self.calls.samples
        sampled = split["product"] + split["sdk"] + split["other"]
        if not sampled:
            return {}
        scale = self.cpu_product / sampled
        return {
            "cpu_product_s": round(split["product"] * scale, 3),
            "cpu_product_own_s": round(split["product_own"] * scale, 3),
            "cpu_sdk_s": round(split["sdk"] * scale, 3),
            "cpu_runtime_other_s": round(split["other"] * scale, 3),
            "cpu_simulated_aws_sampled_s": round(split["simulated_aws"], 3),  # check: ~ cpu_simulated_aws_s
            "cpu_samples": samples,
        }

    def as_dict(self) -> dict:
        return {
            "function": self.function, "errored": self.errored,
            "api_calls_total": sum(self.calls.values()),
            "api_calls": {f"{s}.{o}": n for (s, o), n in sorted(self.calls.items())},
            "cpu_process_s": round(self.cpu_process, 3), "cpu_thread_s": round(self.cpu_thread, 3),
            "cpu_simulated_aws_s": round(self.cpu_moto, 3), "cpu_handler_and_sdk_s": round(self.cpu_product, 3),
            "wall_s": round(self.wall, 3), "wall_simulated_aws_s": round(self.wall_moto, 3),
            "gc_s": round(self.gc_seconds, 3), **self.cpu_split(),
        }


class Meter:
    """Attributes every API call and every CPU second to the handler invocation running
    in the calling thread. Install once per process, attach to each runtime."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.invocations: list[InvocationStats] = []
        self.unattributed: Counter = Counter()  # calls outside handlers (seeding, moto SFN, polling)
        self.profile_dir: Path | None = None
        self.profile_only: set[str] = set()  # handler names; empty = all
        self.profiles: Counter = Counter()  # handler name -> profiles written
        self._stubber_call: Any = None
        self._lock = threading.Lock()
        self._gc_started: float | None = None
        self._stubber_code: Any = None  # the code of `timed` below: a sampled stack on it is moto's

    # --- wiring --------------------------------------------------------------------------
    def install(self) -> None:
        meter = self
        self._stubber_call = original = BotocoreStubber.__call__

        def timed(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            current = getattr(meter.local, "current", None)
            if current is None:
                return original(stubber, event_name, request, **kwargs)
            c0, w0 = time.thread_time(), time.perf_counter()
            try:
                return original(stubber, event_name, request, **kwargs)
            finally:
                current.cpu_moto += time.thread_time() - c0
                current.wall_moto += time.perf_counter() - w0

        BotocoreStubber.__call__ = timed
        self._stubber_code = timed.__code__
        gc.callbacks.append(self._gc_callback)

    def _gc_callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        if self._gc_started is None:
            return
        elapsed, self._gc_started = time.perf_counter() - self._gc_started, None
        with self._lock:
            running = list(getattr(self, "_running", ()))
        for stats in running:
            stats.gc_seconds += elapsed

    def uninstall(self) -> None:
        if self._gc_callback in gc.callbacks:
            gc.callbacks.remove(self._gc_callback)
        if self._stubber_call is not None:
            BotocoreStubber.__call__ = self._stubber_call
            self._stubber_call = None

    def attach(self, runtime: Any) -> None:
        """Count API calls on the runtime's boto3 default session (moto's mock replaces
        boto3.DEFAULT_SESSION, so this is per runtime; clients the handlers create from now
        on carry the hook) and wrap the runtime's handler lookup: each handler call is
        measured."""
        from spot_core.entry import wiring

        boto3._get_default_session().events.register("before-call", self._before_call, unique_id="spot-bench-meter")
        wiring.reset()  # handlers build their clients again, from the hooked session
        lambdas, meter = runtime.lambdas, self
        original = lambdas.handler

        def handler(name: str) -> Any:
            fn = original(name)

            def measured(event: Any, context: Any) -> Any:
                stats = InvocationStats(function=name.removeprefix("spot-migration-"))
                wanted = not meter.profile_only or stats.function in meter.profile_only
                profiler = cProfile.Profile() if meter.profile_dir and wanted else None
                meter.local.current = stats
                with meter._lock:
                    meter._running = [*getattr(meter, "_running", ()), stats]
                sampler = CpuSampler(threading.get_ident(), measured.__code__, meter._stubber_code)
                sampler.start()
                p0, t0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
                if profiler:
                    profiler.enable()
                try:
                    return fn(event, context)
                except BaseException:
                    stats.errored = True
                    raise
                finally:
                    if profiler:
                        profiler.disable()
                    stats.wall = time.perf_counter() - w0
                    stats.cpu_thread = time.thread_time() - t0
                    stats.cpu_process = time.process_time() - p0
                    sampler.finish()
                    stats.calls.cpu_split, stats.calls.samples = sampler.cpu, sampler.samples
                    meter.local.current = None
                    with meter._lock:
                        meter.invocations.append(stats)
                        meter._running = [r for r in meter._running if r is not stats]
                    if profiler:
                        meter.profile_dir.mkdir(parents=True, exist_ok=True)
                        meter.profiles[stats.function] += 1  # numbered across sizes: take() empties invocations
                        n = meter.profiles[stats.function]
                        profiler.dump_stats(str(meter.profile_dir / f"{stats.function}-{n}.prof"))

            return measured

        lambdas.handler = handler

    def _before_call(self, model: Any, **kwargs: Any) -> None:
        key = (model.service_model.service_name, model.name)
        current = getattr(self.local, "current", None)
        if current is not None:
            current.calls[key] += 1
        else:
            with self._lock:
                self.unattributed[key] += 1

    def take(self) -> list[InvocationStats]:
        """The invocations measured since the last take()."""
        with self._lock:
            taken, self.invocations = self.invocations, []
            self.unattributed = Counter()
        return taken


# --- execution history ------------------------------------------------------------------------
def _payload_fields(event: dict) -> list[tuple[str, str, str]]:
    """(details key, field, text) for every input/output/parameters an event carries."""
    out = []
    for key, details in event.items():
        if not key.endswith("EventDetails") or not isinstance(details, dict):
            continue
        for name in ("input", "output", "parameters"):
            value = details.get(name)
            if isinstance(value, str):
                out.append((key, name, value))
    return out


def history_stats(events: list[dict]) -> dict:
    entered, entered_by_state = _states_entered(events)
    largest, state_payloads = _payload_sizes(events)
    return {
        "events": len(events),
        "state_transitions": sum(entered.values()),
        "state_entered_by_type": dict(sorted(entered.items())),
        "state_entered_by_state": dict(sorted(entered_by_state.items(), key=lambda kv: (-kv[1], str(kv[0])))),
        "largest_payload": largest,
        "largest_payload_pct_of_limit": round(100.0 * largest["bytes"] / SFN_PAYLOAD_LIMIT, 3),
        "largest_state_io_bytes": max(state_payloads, default=0),
    }


def _states_entered(events: list[dict]) -> tuple[dict[str, int], Counter]:
    """*StateEntered events: how many of each type, and how many per state name."""
    types = Counter(e["type"] for e in events)
    entered = {t: n for t, n in types.items() if t.endswith("StateEntered")}
    entered_by_state = Counter(
        (e.get("stateEnteredEventDetails") or {}).get("name") for e in events if e["type"].endswith("StateEntered"))
    return entered, entered_by_state


def _payload_sizes(events: list[dict]) -> tuple[dict, list[int]]:
    """The largest input/output/parameters of the history (bytes, event type, field, state) and the
    sizes of every state's input and output."""
    by_id = {e["id"]: e for e in events}
    largest: dict = {"bytes": 0}
    state_payloads: list[int] = []
    for event in events:
        for key, name, text in _payload_fields(event):
            size = len(text.encode("utf-8"))
            if key.startswith("state"):
                state_payloads.append(size)
            if size > largest["bytes"]:
                largest = {"bytes": size, "event": event["type"], "field": f"{key}.{name}",
                           "state": _state_of(event, by_id)}
    return largest, state_payloads


def _state_of(event: dict | None, by_id: dict) -> str | None:
    """The name of the state an event belongs to: the nearest state entered/exited event, following
    previousEventId back (at most 10,000 events)."""
    seen = 0
    while event is not None and seen < 10_000:
        details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
        if details:
            return details.get("name")
        event = by_id.get(event.get("previousEventId"))
        seen += 1
    return None
