"""Where the nodes of a layered layout sit across their rank: packed side by side, then pulled
towards their neighbours in alternate down and up sweeps, each time at the positions closest
(weighted least squares) to the mean of their neighbours that keep the rank's order and gaps."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spotctl.graph.layered import _Graph

GAP_X = 30  # between neighbouring boxes of a rank
GAP_DUMMY = 14  # between an edge passing through a rank and its neighbours


def assign_x(layers: list[list[str]], graph: _Graph, sweeps: int) -> dict[str, float]:
    """Centres: packed and centred, then each layer in turn pulled towards its neighbours in
    the layer before (sweeping down and up alternately), and towards both in the last sweep."""
    x = _packed(layers, graph)
    for sweep in range(sweeps):
        downward = sweep % 2 == 0
        for layer in layers[1:] if downward else layers[-2::-1]:
            _pull(layer, x, graph, downward, last=sweep == sweeps - 1)
    return x


def _packed(layers: list[list[str]], graph: _Graph) -> dict[str, float]:
    """Each layer's nodes side by side with their gaps, centred on x = 0."""
    x: dict[str, float] = {}
    for layer in layers:
        cursor = 0.0
        for i, node in enumerate(layer):
            cursor += _gap(layer, i, graph) if i else 0.0
            x[node] = cursor + graph.width(node) / 2
            cursor += graph.width(node)
        shift = cursor / 2
        for node in layer:
            x[node] -= shift
    return x


def _pull(layer: list[str], x: dict[str, float], graph: _Graph, downward: bool, last: bool) -> None:
    """Move the layer's nodes as close as they can get to the weighted mean of their neighbours."""
    wanted, weights = [], []
    for node in layer:
        linked = graph.up[node] + graph.down[node] if last else (graph.up if downward else graph.down)[node]
        w = [graph.weight(node, n) for n in linked]
        wanted.append(sum(x[n] * wi for n, wi in zip(linked, w, strict=True)) / sum(w) if w else x[node])
        weights.append(sum(w) if w else 0.01)
    for node, value in zip(layer, _closest_without_overlap(layer, wanted, weights, graph), strict=True):
        x[node] = value


def _gap(layer: list[str], i: int, graph: _Graph) -> float:
    """The space between layer[i-1] and layer[i]."""
    real = layer[i - 1] not in graph.dummies and layer[i] not in graph.dummies
    return GAP_X if real else GAP_DUMMY


def _closest_without_overlap(layer: list[str], wanted: list[float], weights: list[float],
                             graph: _Graph) -> list[float]:
    """Centres minimising the weighted squared distance to `wanted`, keeping order and gaps:
    isotonic regression (pool adjacent violators) on the centres minus their minimal offsets."""
    offsets, total = [], 0.0
    for i, node in enumerate(layer):
        if i:
            total += (graph.width(layer[i - 1]) + graph.width(node)) / 2 + _gap(layer, i, graph)
        offsets.append(total)
    blocks: list[list[float]] = []  # [value, weight, count]
    for target, weight in zip((w - o for w, o in zip(wanted, offsets, strict=True)), weights, strict=True):
        blocks.append([target, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    values = [value for value, _, count in blocks for _ in range(int(count))]
    return [v + o for v, o in zip(values, offsets, strict=True)]
