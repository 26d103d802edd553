"""Reading a Step Functions execution's event history: each time a state was entered (an
entry), which entry each event belongs to, the transitions the execution took, and which
entries failed, were retried or recovered. Pure: no AWS call.

Only names, types and errors are read from the events: inputs, outputs and task parameters
(which carry the approval task token) are never looked at."""

from __future__ import annotations

import json
from dataclasses import dataclass

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


def event_details(event: dict) -> dict:
    """The event's `...EventDetails` dict (each event type has its own key)."""
    return next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})


def event_error(details: dict) -> tuple[str | None, str | None] | None:
    """The event's error and cause (the cause's message only), or None if it carries neither."""
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


def error_text(error: str | None, cause: str | None) -> str:
    """An error and its cause as one line ("failed" when neither is known)."""
    return ": ".join(part for part in (error, cause) if part) or "failed"


class History:
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
        eid, etype, details = event.get("id"), event.get("type", ""), event_details(event)
        name = details.get("name") if isinstance(details.get("name"), str) else None
        if etype.endswith("StateEntered") and name:
            self._entered(event, name)
        elif etype.endswith("StateExited") and name:
            found = self.owner(event, lambda n: n == name)
            if found:
                found[1].exited = True
            self.state_of_event[eid] = name
        else:
            self._other(event, etype, name, event_error(details))

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
        error = self._propagated(etype, error)
        if etype.startswith("Execution"):
            self._execution_event(event, etype, error)
        else:
            self._state_event(event, etype, name, error)

    def _propagated(self, etype: str, error: tuple | None) -> tuple | None:
        """The event's error; a failure event without one (MapStateFailed) carries the last
        error seen, unless it is an iteration's or the execution's."""
        if error:
            self.last_error = error
        elif etype.endswith(_FAILED) and not etype.startswith(("MapIteration", "Execution")):
            return self.last_error
        return error

    def _execution_event(self, event: dict, etype: str, error: tuple | None) -> None:
        if error:
            self.execution_error = error_text(*error)
        if error and etype in _BLAMING:
            _blame_open_state(self, event, Failure(event.get("id"), *error))

    def _state_event(self, event: dict, etype: str, name: str | None, error: tuple | None) -> None:
        """Whose event it is; an entry fails with the error, or recovers (retried, succeeded)."""
        eid = event.get("id")
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


def _previous_state(h: History, entered: dict) -> str | None:
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
            return event_details(event).get("name")
        if event_error(event_details(event)) and current in h.state_of_event:
            return _in_scope_of(h, h.state_of_event[current], event_details(entered).get("name"))
        current = event.get("previousEventId")
    return None


def _in_scope_of(h: History, failed: str, caught_by: str | None) -> str:
    """The state, or the enclosing state, that sits in the same state machine as `caught_by`."""
    target = h.states.get(caught_by) if caught_by else None
    for name in h.ancestors(failed):
        if target is None or h.states[name].parent == target.parent:
            return name
    return failed


def _blame_open_state(h: History, event: dict, failure: Failure) -> None:
    """An execution that fails straight from a state (e.g. no Choice rule matched) blames it."""
    found = h.nearest_entry(event, lambda n: True)
    if found and not found[1].exited and not found[1].failure and h.type_of(found[0]) != "Fail":
        found[1].failure = failure
