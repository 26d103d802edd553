"""A layered (Sugiyama-style) layout of one directed graph, top to bottom: ranks by the
longest path from the roots (loops are laid out with their back edges reversed), long
edges split into chains of invisible points, crossings reduced by barycentre sweeps,
x positions by weighted least squares under the no-overlap constraint. Pure geometry."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise

from spotctl.graph.placement import assign_x

GAP_Y = 44  # between ranks: where edges bend
SWEEPS = 12  # of the crossing reduction, and of the x placement


@dataclass
class Route:
    source: str
    target: str
    back: bool  # a loop's edge, drawn upwards
    points: list[tuple[float, float]]


@dataclass
class Layout:
    positions: dict[str, tuple[float, float]]  # top-left corner of each node
    routes: list[Route]
    width: float
    height: float


def layered_layout(sizes: dict[str, tuple[float, float]], edges: list[tuple[str, str]], roots: list[str]) -> Layout:
    nodes = list(sizes)
    edges = _drawable(edges, sizes)
    back = _back_edges(nodes, edges, roots)
    down = [(d, s) if (s, d) in back else (s, d) for s, d in edges]  # every edge pointing down
    rank = _ranks(nodes, down)
    graph = _Graph(sizes, rank)
    chains = [graph.chain(s, d) for s, d in down]
    layers = graph.layers(roots)
    _reduce_crossings(layers, graph)
    x = assign_x(layers, graph, SWEEPS)
    tops, heights = _rank_bands(layers, graph)
    positions = {n: (x[n] - sizes[n][0] / 2, tops[rank[n]]) for n in nodes}
    ports = _ports(chains, x, positions, sizes)
    routes = []
    for i, ((source, target), chain) in enumerate(zip(edges, chains, strict=True)):
        points = _route(chain, ports[i], x, tops, heights, graph)
        is_back = (source, target) in back
        routes.append(Route(source, target, is_back, points[::-1] if is_back else points))
    left, right = _extent(layers, x, graph)
    height = tops[-1] + heights[-1] if tops else 0.0
    return Layout(_flush_left(positions, routes, left), routes, right - left, height)


def _drawable(edges: list[tuple[str, str]], sizes: dict[str, tuple[float, float]]) -> list[tuple[str, str]]:
    """Each edge once, in order, between nodes of the graph; no edge from a node to itself."""
    return [(s, d) for s, d in dict.fromkeys(edges) if s in sizes and d in sizes and s != d]


def _extent(layers: list[list[str]], x: dict[str, float], graph: _Graph) -> tuple[float, float]:
    """The left and right edges of the widest extent of the layers."""
    left = min((x[n] - graph.width(n) / 2 for layer in layers for n in layer), default=0.0)
    right = max((x[n] + graph.width(n) / 2 for layer in layers for n in layer), default=0.0)
    return left, right


def _flush_left(positions: dict[str, tuple[float, float]], routes: list[Route],
                left: float) -> dict[str, tuple[float, float]]:
    """The positions moved so that `left` becomes x = 0; the routes are moved in place."""
    for r in routes:
        r.points = [(px - left, py) for px, py in r.points]
    return {n: (px - left, py) for n, (px, py) in positions.items()}


def _back_edges(nodes: list[str], edges: list[tuple[str, str]], roots: list[str]) -> set[tuple[str, str]]:
    """Edges closing a cycle in a depth-first walk from the roots, in definition order."""
    out = defaultdict(list)
    for s, d in edges:
        out[s].append(d)
    state: dict[str, str] = {}
    back = set()

    def walk(node: str) -> None:
        state[node] = "open"
        for nxt in out[node]:
            if state.get(nxt) == "open":
                back.add((node, nxt))
            elif nxt not in state:
                walk(nxt)
        state[node] = "done"

    for start in [*roots, *nodes]:
        if start not in state:
            walk(start)
    return back


def _ranks(nodes: list[str], down: list[tuple[str, str]]) -> dict[str, int]:
    preds = defaultdict(list)
    for s, d in down:
        preds[d].append(s)
    rank: dict[str, int] = {}

    def of(node: str) -> int:
        if node not in rank:
            rank[node] = 0  # guards a malformed cycle
            rank[node] = max((of(p) + 1 for p in preds[node]), default=0)
        return rank[node]

    for n in nodes:
        of(n)
    return rank


class _Graph:
    """The nodes plus the invisible points of long edges, and the edges between adjacent ranks."""

    def __init__(self, sizes: dict[str, tuple[float, float]], rank: dict[str, int]):
        self.sizes, self.rank = sizes, dict(rank)
        self.dummies: set[str] = set()
        self.up: dict[str, list[str]] = defaultdict(list)
        self.down: dict[str, list[str]] = defaultdict(list)

    def chain(self, source: str, target: str) -> list[str]:
        chain = [source]
        for r in range(self.rank[source] + 1, self.rank[target]):
            point = f"\0{len(self.dummies)}"
            self.dummies.add(point)
            self.rank[point] = r
            chain.append(point)
        chain.append(target)
        for a, b in pairwise(chain):
            self.down[a].append(b)
            self.up[b].append(a)
        return chain

    def width(self, node: str) -> float:
        return 0.0 if node in self.dummies else self.sizes[node][0]

    def weight(self, a: str, b: str) -> float:
        """Long edges pull harder, so they run straight."""
        return 1.0 + 2.0 * ((a in self.dummies) + (b in self.dummies))

    def layers(self, roots: list[str]) -> list[list[str]]:
        """Initial order: breadth-first from the roots, children in definition order."""
        seen, order, queue = set(), [], [*roots, *self.sizes]
        while queue:
            node = queue.pop(0)
            if node in seen:
                continue
            seen.add(node)
            order.append(node)
            queue[:0] = [n for n in self.down[node] if n not in seen]
        layers: list[list[str]] = [[] for _ in range(max(self.rank.values(), default=-1) + 1)]
        for node in order:
            layers[self.rank[node]].append(node)
        return layers


def _crossings(layers: list[list[str]], graph: _Graph) -> int:
    total = 0
    for upper, lower in pairwise(layers):
        pos = {n: i for i, n in enumerate(lower)}
        pairs = [(i, pos[d]) for i, n in enumerate(upper) for d in graph.down[n]]
        total += sum(1 for a in range(len(pairs)) for b in range(a + 1, len(pairs))
                     if (pairs[a][0] - pairs[b][0]) * (pairs[a][1] - pairs[b][1]) < 0)
    return total


def _reduce_crossings(layers: list[list[str]], graph: _Graph) -> None:
    best, best_count = [list(layer) for layer in layers], _crossings(layers, graph)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
        for i in indices:
            ref = layers[i - 1] if downward else layers[i + 1]
            layers[i] = _by_barycentre(layers[i], ref, graph.up if downward else graph.down)
        count = _crossings(layers, graph)
        if count < best_count:
            best, best_count = [list(layer) for layer in layers], count
    layers[:] = best


def _by_barycentre(layer: list[str], ref: list[str], neighbours: dict[str, list[str]]) -> list[str]:
    """The layer sorted by the mean position of each node's neighbours in the reference layer;
    a node with none keeps its place."""
    pos = {n: p for p, n in enumerate(ref)}

    def barycentre(item: tuple[int, str]) -> float:
        index, node = item
        linked = [pos[n] for n in neighbours[node] if n in pos]
        return sum(linked) / len(linked) if linked else index

    return [n for _, n in sorted(enumerate(layer), key=barycentre)]


def _rank_bands(layers: list[list[str]], graph: _Graph) -> tuple[list[float], list[float]]:
    """Top and height of each rank; nodes hang from the top of their band."""
    tops, heights, y = [], [], 0.0
    for layer in layers:
        height = max((graph.sizes[n][1] for n in layer if n not in graph.dummies), default=0.0)
        tops.append(y)
        heights.append(height)
        y += height + GAP_Y
    return tops, heights


def _ports(chains: list[list[str]], x: dict[str, float], positions: dict[str, tuple[float, float]],
           sizes: dict[str, tuple[float, float]]) -> list[tuple[float, float]]:
    """Where each edge leaves its upper node and reaches its lower node. Edges sharing a side
    of a node get distinct points, ordered by where they head, so they do not cross there."""
    sides: dict[tuple[str, str], list[tuple[float, float, int, int]]] = defaultdict(list)
    for i, chain in enumerate(chains):
        sides[(chain[0], "bottom")].append((x[chain[1]], x[chain[-1]], i, 0))
        sides[(chain[-1], "top")].append((x[chain[-2]], x[chain[0]], i, 1))
    ports = [[x[c[0]], x[c[-1]]] for c in chains]
    for (node, _), ends in sides.items():
        if len(ends) < 2:
            continue
        width = sizes[node][0]
        spacing = min(16.0, width * 0.6 / (len(ends) - 1))
        centre = positions[node][0] + width / 2
        for k, (_, _, i, end) in enumerate(sorted(ends)):
            ports[i][end] = centre + (k - (len(ends) - 1) / 2) * spacing
    return [(a, b) for a, b in ports]


def _route(chain: list[str], ports: tuple[float, float], x: dict[str, float], tops: list[float],
           heights: list[float], graph: _Graph) -> list[tuple[float, float]]:
    """Vertical through every band, bending only in the gaps between bands."""
    source, target = chain[0], chain[-1]
    r = graph.rank[source]
    points = [(ports[0], tops[r] + graph.sizes[source][1])]
    if graph.sizes[source][1] < heights[r]:
        points.append((ports[0], tops[r] + heights[r]))  # down past taller neighbours
    for point in chain[1:-1]:
        r = graph.rank[point]
        points += [(x[point], tops[r]), (x[point], tops[r] + heights[r])]
    points.append((ports[1], tops[graph.rank[target]]))
    return points
