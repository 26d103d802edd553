"""Where every state of an ASL definition is drawn: each state machine (the top level, each
Parallel branch, the Map's item processor) is laid out as a layered graph, and a Parallel or
Map state is a group box wide and tall enough to hold the state machines it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from spotctl.graph import asl
from spotctl.graph.layered import layered_layout

START, END = "\0start", "\0end"  # the markers; no ASL state name holds a NUL
NODE_H = 46
NODE_MIN_W = 128
LABEL_PAD = 18  # each side of a state's name
CHAR_W = 8.1  # a bold 13 px sans-serif character, on average (the page squeezes what overflows)
MARKER_W, MARKER_H = 66, 28
GROUP_HEADER = 42  # the group's name and type
GROUP_PAD = 16
LANE_PAD = 14  # inside a Parallel branch's frame
LANE_GAP = 16
MARGIN = 24


@dataclass
class Scope:
    """One state machine: its boxes and edges, positioned relative to the scope until placed."""

    boxes: list[Box]
    edges: list[Edge]
    w: float
    h: float


@dataclass
class Lane:
    """A frame inside a group box holding one nested state machine."""

    scope: Scope
    x: float
    y: float
    w: float
    h: float
    framed: bool  # Parallel branches are framed; the Map's processor fills its box


@dataclass
class Box:
    name: str
    type: str  # the ASL Type, or "start"/"end" for the markers
    definition: dict
    w: float
    h: float
    x: float = 0.0
    y: float = 0.0
    lanes: list[Lane] = field(default_factory=list)

    @property
    def marker(self) -> bool:
        return self.name in (START, END)


@dataclass
class Edge:
    source: str
    target: str
    kind: str  # next, choice, default, catch, or start/end for the markers
    back: bool  # closes a loop: drawn upwards
    points: list[tuple[float, float]]


def layout(definition: dict) -> Scope:
    """The whole machine, in page coordinates (with a margin), start and end markers included."""
    scope = _scope(definition, markers=True)
    _place(scope, MARGIN, MARGIN)
    scope.w += 2 * MARGIN
    scope.h += 2 * MARGIN
    return scope


def text_width(text: str, char_w: float = CHAR_W) -> float:
    return len(text) * char_w


def _scope(machine: dict, markers: bool) -> Scope:
    states = machine.get("States", {})
    boxes = {name: _box(name, state) for name, state in states.items()}
    kinds = _edge_kinds(states)
    roots = [machine.get("StartAt")] if machine.get("StartAt") in states else []
    if markers:
        roots = _add_markers(states, boxes, kinds, roots)
    graph = layered_layout({n: (b.w, b.h) for n, b in boxes.items()}, list(kinds), roots)
    for name, box in boxes.items():
        box.x, box.y = graph.positions[name]
    edges = [Edge(r.source, r.target, kinds[(r.source, r.target)], r.back, r.points) for r in graph.routes]
    return Scope(list(boxes.values()), edges, graph.width, graph.height)


def _edge_kinds(states: dict) -> dict[tuple[str, str], str]:
    """The kind of each transition between the states of one state machine."""
    kinds: dict[tuple[str, str], str] = {}
    for name, state in states.items():
        for target, kind in asl.transitions(state):
            if target in states and kinds.get((name, target), "catch") == "catch":
                kinds[(name, target)] = kind  # a plain transition wins over a catch to the same state
    return kinds


def _add_markers(states: dict, boxes: dict[str, Box], kinds: dict[tuple[str, str], str], roots: list[str]) -> list[str]:
    """The start and end markers, linked to the first state and from every state that ends the
    machine; the start marker becomes the only root."""
    boxes[START] = Box(START, "start", {}, MARKER_W, MARKER_H)
    boxes[END] = Box(END, "end", {}, MARKER_W, MARKER_H)
    if roots:
        kinds[(START, roots[0])] = "start"
    kinds.update({(name, END): "end" for name, state in states.items() if asl.ends(state)})
    return [START]


def _box(name: str, state: dict) -> Box:
    inner = [_scope(machine, markers=False) for machine in asl.nested(state)]
    box = Box(name, state.get("Type", "?"), state, max(NODE_MIN_W, text_width(name) + 2 * LABEL_PAD), NODE_H)
    if not inner:
        return box
    framed = box.type == "Parallel"
    pad = LANE_PAD if framed else 0.0
    lane_h = max(s.h for s in inner) + 2 * pad
    lanes, x = [], 0.0
    for scope in inner:
        lanes.append(Lane(scope, x, GROUP_HEADER, scope.w + 2 * pad, lane_h, framed))
        x += scope.w + 2 * pad + LANE_GAP
    content_w = x - LANE_GAP
    box.w = max(box.w + 40, content_w + 2 * GROUP_PAD)
    offset = (box.w - content_w) / 2
    for lane in lanes:
        lane.x += offset
    box.lanes = lanes
    box.h = GROUP_HEADER + lane_h + GROUP_PAD
    return box


def _place(scope: Scope, dx: float, dy: float) -> None:
    """Turn the scope's relative coordinates into page coordinates, nested scopes included."""
    for edge in scope.edges:
        edge.points = [(x + dx, y + dy) for x, y in edge.points]
    for box in scope.boxes:
        box.x += dx
        box.y += dy
        for lane in box.lanes:
            lane.x += box.x
            lane.y += box.y
            pad = LANE_PAD if lane.framed else 0.0
            _place(lane.scope, lane.x + (lane.w - lane.scope.w) / 2, lane.y + pad)
