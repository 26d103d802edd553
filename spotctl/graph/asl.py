"""The parts of an ASL definition the graph needs: every state with its enclosing state,
the nested state machines of Parallel and Map states, and the transitions out of a state."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StateRef:
    name: str
    type: str
    definition: dict
    parent: str | None  # the Parallel or Map state this one runs inside


def nested(state: dict) -> list[dict]:
    """The state machines a state runs: one per Parallel branch, the Map's item processor."""
    if state.get("Type") == "Parallel":
        return list(state.get("Branches", []))
    if state.get("Type") == "Map":
        processor = state.get("ItemProcessor") or state.get("Iterator")  # Iterator: the pre-2022 field
        return [processor] if processor else []
    return []


def all_states(definition: dict) -> dict[str, StateRef]:
    """Every state by name; ASL requires names to be unique across the whole machine."""
    found: dict[str, StateRef] = {}

    def visit(machine: dict, parent: str | None) -> None:
        for name, state in machine.get("States", {}).items():
            found[name] = StateRef(name, state.get("Type", "?"), state, parent)
            for inner in nested(state):
                visit(inner, name)

    visit(definition, None)
    return found


def transitions(state: dict) -> list[tuple[str, str]]:
    """(target, kind) for every way out of a state; kind is next, choice, default or catch."""
    out = [(choice["Next"], "choice") for choice in state.get("Choices", []) if "Next" in choice]
    if "Default" in state:
        out.append((state["Default"], "default"))
    if "Next" in state:
        out.append((state["Next"], "next"))
    out += [(catcher["Next"], "catch") for catcher in state.get("Catch", []) if "Next" in catcher]
    return out


def ends(state: dict) -> bool:
    """The state ends its state machine successfully (Fail states end it, but as a failure)."""
    return state.get("Type") == "Succeed" or bool(state.get("End"))


def catches(state: dict, error: str | None) -> list[str]:
    """The Catch targets of a state that apply to `error` (None: unknown, any catcher applies)."""
    targets = []
    for catcher in state.get("Catch", []):
        patterns = catcher.get("ErrorEquals", [])
        if error is None or "States.ALL" in patterns or error in patterns or (
            "States.TaskFailed" in patterns and error != "States.Timeout"
        ):
            targets.append(catcher.get("Next"))
    return [t for t in targets if t]
