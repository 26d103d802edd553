"""What happened to each state in one execution, computed from its event history (the
events of `get_execution_history`). Pure: no AWS call, no drawing.

A state is: succeeded (entered, and every entry exited without an error), failed (a Fail
state entered, or an error no Catch handled), caught (it failed and a Catch of its own or of
its enclosing Map/Parallel routed the execution to the catcher's target), current (entered,
not exited, the execution running), cancelled (still open when the execution ended without
blaming it, e.g. aborted) or not-reached.

Only names, types, times and errors are read from the events: inputs, outputs and task
parameters (which carry the approval task token) are never looked at."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from spotctl.graph import asl
from spotctl.graph.history import Entry, Failure, History, error_text, event_details, event_error


@dataclass
class StateRun:
    name: str
    type: str
    status: str
    entries: int
    error: str | None = None


@dataclass
class TimelineRow:
    event_id: int
    elapsed: float  # seconds since the first event
    type: str
    state: str | None
    error: str | None


@dataclass
class ExecutionView:
    states: dict[str, StateRun]
    transitions: set[tuple[str, str]]  # (from, to) pairs the execution went through
    timeline: list[TimelineRow]
    started: datetime | None
    duration: float
    error: str | None = None  # the execution's own error, when it failed


def timestamp(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def execution_view(definition: dict, history: list[dict], status: str) -> ExecutionView:
    h = History(definition, history)
    for event in h.events:
        h.read(event)
    runs = {name: _state_run(h, ref, status) for name, ref in h.states.items()}
    first = timestamp(h.events[0].get("timestamp")) if h.events else None
    timeline = [_row(h, e, first) for e in h.events]
    duration = max((row.elapsed for row in timeline), default=0.0)
    return ExecutionView(runs, h.transitions, timeline, first, duration, h.execution_error)


def _caught(h: History, name: str, failure: Failure) -> bool:
    """A Catch of the state or of an enclosing Map/Parallel routed the execution elsewhere."""
    targets = {t for owner in h.ancestors(name) for t in asl.catches(h.states[owner].definition, failure.error)}
    return bool(targets) and h.entered_after(targets, failure.event_id)


def _state_run(h: History, ref: asl.StateRef, status: str) -> StateRun:
    entries = h.entries.get(ref.name, [])
    failures, uncaught = _failures(h, ref.name, entries)
    still_open = [e for e in entries if not e.exited and not e.failure]
    state_status = _run_status(ref, entries, failures, uncaught, still_open, running=status == "RUNNING")
    return StateRun(ref.name, ref.type, state_status, len(entries), _run_error(ref, entries, failures, uncaught))


def _failures(h: History, name: str, entries: list[Entry]) -> tuple[list[Failure], list[Failure]]:
    """The failures of the state's entries, and those of them no Catch handled."""
    failures = [e.failure for e in entries if e.failure]
    return failures, [f for f in failures if not _caught(h, name, f)]


def _run_status(ref: asl.StateRef, entries: list[Entry], failures: list[Failure], uncaught: list[Failure],
                still_open: list[Entry], running: bool) -> str:
    if not entries:
        return "not-reached"
    if ref.type == "Fail":
        return "failed"
    if still_open and running:
        return "current"
    if uncaught:
        return "failed"
    if failures:
        return "caught"
    if still_open:
        return "cancelled"  # the execution ended while the state was running
    return "succeeded"


def _run_error(ref: asl.StateRef, entries: list[Entry], failures: list[Failure],
               uncaught: list[Failure]) -> str | None:
    """The error shown for the state: its last uncaught failure, else its last caught one;
    a Fail state's own error."""
    error = (uncaught or failures or [None])[-1]
    if ref.type == "Fail" and entries:
        error = Failure(0, ref.definition.get("Error"), None)
    return error_text(error.error, error.cause) if error else None


def _row(h: History, event: dict, first: datetime | None) -> TimelineRow:
    when = timestamp(event.get("timestamp"))
    elapsed = (when - first).total_seconds() if when and first else 0.0
    error = event_error(event_details(event))
    state = h.state_of_event.get(event.get("id"))
    index = event_details(event).get("index")
    if state and index is not None and event.get("type", "").startswith("MapIteration"):
        state = f"{state} #{index}"
    return TimelineRow(event.get("id", 0), elapsed, event.get("type", ""), state, error_text(*error) if error else None)
