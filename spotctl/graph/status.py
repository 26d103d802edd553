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

import json
from dataclasses import dataclass
from datetime import datetime

from spotctl.graph import asl

# Events that belong to a state without naming it, by the type of state that emits them.
_OWNER_TYPES = {
    "Task": {"Task"}, "LambdaFunction": {"Task"}, "Activity": {"Task"},
    "MapState": {"Map"}, "MapIteration": {"Map"}, "MapRun": {"Map"}, "ParallelState": {"Parallel"},
}
# A task scheduled again (Retry) or succeeding clears an earlier failure of the same entry.
_RECOVERED = ("Scheduled", "Succeeded")
# Failure events; a failed iteration is not the Map failing (the Map may tolerate it).
_FAILED = ("Failed", "TimedOut")
_BLAMING = ("ExecutionFailed", "ExecutionTimedOut")  # an abort is nobody's failure
_CAUSE_CHARS = 240


@dataclass
class Failure:
    event_id: int
    error: str | None
    cause: str | None


@dataclass
class Entry:
    """One time a state was entered."""

    event_id: int
    exited: bool = False
    failure: Failure | None = None


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


def _details(event: dict) -> dict:
    """The event's `...EventDetails` dict (each event type has its own key)."""
    return next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})


def _error(details: dict) -> tuple[str | None, str | None] | None:
    if "error" not in details and "cause" not in details:
        return None
    return details.get("error"), _cause_message(details.get("cause"))


def _cause_message(cause: object) -> str | None:
    """A Lambda cause is a JSON document: keep its message, never its stack trace; shortened."""
    if not isinstance(cause, str) or not cause:
        return None
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and parsed.get("errorMessage"):
            cause = str(parsed["errorMessage"])
    except ValueError:
        pass
    return cause if len(cause) <= _CAUSE_CHARS else cause[: _CAUSE_CHARS - 1] + "…"


def _owner_types(event_type: str) -> set[str] | None:
    for prefix, types in _OWNER_TYPES.items():
        if event_type.startswith(prefix):
            return types
    return None


class _History:
    """The events by id, and which state entry each event belongs to."""

    def __init__(self, definition: dict, history: list[dict]):
        self.states = asl.all_states(definition)
        self.events = sorted(history, key=lambda e: e.get("id", 0))
        self.by_id = {e.get("id"): e for e in self.events}
        self.entries: dict[str, list[Entry]] = {}
        self.entry_at: dict[int, tuple[str, Entry]] = {}  # StateEntered event id -> entry
        self.state_of_event: dict[int, str] = {}
        self.transitions: set[tuple[str, str]] = set()
        self.execution_error: str | None = None
        self.last_error: tuple[str | None, str | None] = (None, None)  # what a detail-less MapStateFailed propagates

    def read(self, event: dict) -> None:
        eid, etype, details = event.get("id"), event.get("type", ""), _details(event)
        name = details.get("name") if isinstance(details.get("name"), str) else None
        if etype.endswith("StateEntered") and name:
            self._entered(event, name)
        elif etype.endswith("StateExited") and name:
            found = self.owner(event, lambda n: n == name)
            if found:
                found[1].exited = True
            self.state_of_event[eid] = name
        else:
            self._other(event, etype, name, _error(details))

    def _entered(self, event: dict, name: str) -> None:
        entry = Entry(event.get("id"))
        self.entries.setdefault(name, []).append(entry)
        came_from = _previous_state(self, event)
        if came_from:
            self.transitions.add((came_from, name))
        self.entry_at[entry.event_id] = (name, entry)
        self.state_of_event[entry.event_id] = name

    def _other(self, event: dict, etype: str, name: str | None, error: tuple | None) -> None:
        """Task, Map, Parallel and execution events: failures, and recoveries by a Retry."""
        eid = event.get("id")
        if error:
            self.last_error = error
        elif etype.endswith(_FAILED) and not etype.startswith(("MapIteration", "Execution")):
            error = self.last_error
        if etype.startswith("Execution"):
            if error:
                self.execution_error = _join(*error)
            if error and etype in _BLAMING:
                _blame_open_state(self, event, Failure(eid, *error))
            return
        types = _owner_types(etype)
        found = self.owner(event, lambda n: types is None or self.type_of(n) in types)
        if not found:
            if name:
                self.state_of_event[eid] = name
            return
        self.state_of_event[eid] = found[0]
        if etype.startswith("MapIteration"):
            return
        if error:
            found[1].failure = Failure(eid, *error)
        elif etype.endswith(_RECOVERED):
            found[1].failure = None

    def entered_after(self, targets: set[str], event_id: int) -> bool:
        return any(eid > event_id and name in targets for eid, (name, _) in self.entry_at.items())

    def nearest_entry(self, event: dict, accept) -> tuple[str, Entry] | None:
        """Walk the previousEventId chain back to the first entry of a state `accept` takes."""
        seen, current = set(), event.get("previousEventId")
        while current and current not in seen and current in self.by_id:
            seen.add(current)
            if current in self.entry_at and accept(self.entry_at[current][0]):
                return self.entry_at[current]
            current = self.by_id[current].get("previousEventId")
        return None

    def latest_open(self, accept) -> tuple[str, Entry] | None:
        """Fallback when the chain is broken: the state of that kind entered last, still open."""
        open_entries = [(name, e) for name, es in self.entries.items() if accept(name) for e in es if not e.exited]
        return max(open_entries, key=lambda found: found[1].event_id, default=None)

    def owner(self, event: dict, accept) -> tuple[str, Entry] | None:
        return self.nearest_entry(event, accept) or self.latest_open(accept)

    def type_of(self, name: str) -> str:
        ref = self.states.get(name)
        return ref.type if ref else "?"

    def ancestors(self, name: str) -> list[str]:
        chain, ref = [], self.states.get(name)
        while ref is not None:
            chain.append(ref.name)
            ref = self.states.get(ref.parent) if ref.parent else None
        return chain


def execution_view(definition: dict, history: list[dict], status: str) -> ExecutionView:
    h = _History(definition, history)
    for event in h.events:
        h.read(event)
    runs = {name: _state_run(h, ref, status) for name, ref in h.states.items()}
    first = timestamp(h.events[0].get("timestamp")) if h.events else None
    timeline = [_row(h, e, first) for e in h.events]
    duration = max((row.elapsed for row in timeline), default=0.0)
    return ExecutionView(runs, h.transitions, timeline, first, duration, h.execution_error)


def _previous_state(h: _History, entered: dict) -> str | None:
    """The state the execution left to enter this one: the nearest exit (or caught failure)
    up the event chain, unless the chain reaches an enclosing state's entry first."""
    seen, current = set(), entered.get("previousEventId")
    while current and current not in seen and current in h.by_id:
        seen.add(current)
        event = h.by_id[current]
        etype = event.get("type", "")
        if current in h.entry_at:
            return None  # first state of a branch or iteration
        if etype.endswith("StateExited"):
            return _details(event).get("name")
        if _error(_details(event)) and current in h.state_of_event:
            return _in_scope_of(h, h.state_of_event[current], _details(entered).get("name"))
        current = event.get("previousEventId")
    return None


def _in_scope_of(h: _History, failed: str, caught_by: str | None) -> str:
    """The state, or the enclosing state, that sits in the same state machine as `caught_by`."""
    target = h.states.get(caught_by) if caught_by else None
    for name in h.ancestors(failed):
        if target is None or h.states[name].parent == target.parent:
            return name
    return failed


def _blame_open_state(h: _History, event: dict, failure: Failure) -> None:
    """An execution that fails straight from a state (e.g. no Choice rule matched) blames it."""
    found = h.nearest_entry(event, lambda n: True)
    if found and not found[1].exited and not found[1].failure and h.type_of(found[0]) != "Fail":
        found[1].failure = failure


def _caught(h: _History, name: str, failure: Failure) -> bool:
    """A Catch of the state or of an enclosing Map/Parallel routed the execution elsewhere."""
    targets = {t for owner in h.ancestors(name) for t in asl.catches(h.states[owner].definition, failure.error)}
    return bool(targets) and h.entered_after(targets, failure.event_id)


def _state_run(h: _History, ref: asl.StateRef, status: str) -> StateRun:
    entries = h.entries.get(ref.name, [])
    failures = [e.failure for e in entries if e.failure]
    uncaught = [f for f in failures if not _caught(h, ref.name, f)]
    still_open = [e for e in entries if not e.exited and not e.failure]
    if not entries:
        state_status = "not-reached"
    elif ref.type == "Fail":
        state_status = "failed"
    elif still_open and status == "RUNNING":
        state_status = "current"
    elif uncaught:
        state_status = "failed"
    elif failures:
        state_status = "caught"
    elif still_open:
        state_status = "cancelled"  # the execution ended while the state was running
    else:
        state_status = "succeeded"
    error = (uncaught or failures or [None])[-1]
    if ref.type == "Fail" and entries:
        error = Failure(0, ref.definition.get("Error"), None)
    return StateRun(ref.name, ref.type, state_status, len(entries), _join(error.error, error.cause) if error else None)


def _join(error: str | None, cause: str | None) -> str:
    return ": ".join(part for part in (error, cause) if part) or "failed"


def _row(h: _History, event: dict, first: datetime | None) -> TimelineRow:
    when = timestamp(event.get("timestamp"))
    elapsed = (when - first).total_seconds() if when and first else 0.0
    error = _error(_details(event))
    state = h.state_of_event.get(event.get("id"))
    index = _details(event).get("index")
    if state and index is not None and event.get("type", "").startswith("MapIteration"):
        state = f"{state} #{index}"
    return TimelineRow(event.get("id", 0), elapsed, event.get("type", ""), state, _join(*error) if error else None)
