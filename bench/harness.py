"""Measurement on the embedded runtime: API calls per handler invocation, CPU and wall time,
state transitions and payload sizes from the execution history.

Everything is measured from the outside: a botocore `before-call` hook on boto3's default
session (the handlers' clients come from it, see spot_core/adapters/aws.py), a wrapper around
`InProcessLambdas.handler` that marks which invocation is running in which thread, and a
timer around moto's request stubber (the CPU the *simulated* AWS spends answering, which
in production is AWS's, not the Lambda's).
"""

from __future__ import annotations

import cProfile
import gc
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.core.botocore_stubber import BotocoreStubber

SFN_PAYLOAD_LIMIT = 256 * 1024  # bytes, UTF-8, any state input/output


@dataclass
class InvocationStats:
    function: str  # catalog name, e.g. "analyze"
    calls: Counter = field(default_factory=Counter)  # (service, operation) -> count
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

    def as_dict(self) -> dict:
        return {
            "function": self.function, "errored": self.errored,
            "api_calls_total": sum(self.calls.values()),
            "api_calls": {f"{s}.{o}": n for (s, o), n in sorted(self.calls.items())},
            "cpu_process_s": round(self.cpu_process, 3), "cpu_thread_s": round(self.cpu_thread, 3),
            "cpu_simulated_aws_s": round(self.cpu_moto, 3), "cpu_handler_and_sdk_s": round(self.cpu_product, 3),
            "wall_s": round(self.wall, 3), "wall_simulated_aws_s": round(self.wall_moto, 3),
            "gc_s": round(self.gc_seconds, 3),
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
        self._stubber_call: Any = None
        self._lock = threading.Lock()
        self._gc_started: float | None = None

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
                    meter.local.current = None
                    with meter._lock:
                        meter.invocations.append(stats)
                        meter._running = [r for r in meter._running if r is not stats]
                    if profiler:
                        meter.profile_dir.mkdir(parents=True, exist_ok=True)
                        n = sum(1 for i in meter.invocations if i.function == stats.function)
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
