"""The page: the laid-out state machine as inline SVG, each state coloured by its status in
the execution, a legend, and the event timeline. Self-contained: no external resource.

Every drawn state carries data-state, data-type, data-status and data-entries, so the page
can be checked from its rendered DOM."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from itertools import pairwise

from spot_core.domain.views import GroupView
from spotctl.graph.layout import END, START, Box, Edge, Lane, Scope, layout
from spotctl.graph.status import ExecutionView, execution_view

STATUS_TEXT = {
    "succeeded": "Succeeded", "failed": "Failed", "caught": "Caught error", "current": "In progress",
    "cancelled": "Cancelled", "not-reached": "Not reached",
}
EXECUTION_STATUS = {"SUCCEEDED": "succeeded", "FAILED": "failed", "TIMED_OUT": "failed", "ABORTED": "cancelled",
                    "RUNNING": "current"}


def render_graph(definition: dict, history: list[dict], *, migration_id: str, status: str,
                 title: str | None = None, groups: Sequence[GroupView] = ()) -> str:
    """A self-contained HTML page (inline CSS, JS and SVG only) drawing every state of
    `definition`, nested states inside their Parallel or Map, coloured by what happened to
    them in the execution whose `history` (get_execution_history events) is given, and the
    timeline of its events. Only state names, event types, times and errors are shown:
    inputs, outputs and task parameters (the approval task token) never reach the page."""
    view = execution_view(definition, history, status)
    drawing = layout(definition)
    title = title or f"Execution {migration_id}"
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n",
        _header(title, migration_id, status, view),
        _legend(),
        f'<div class="graph">{_svg(drawing, view)}</div>\n',
        _groups(groups),
        _timeline(view),
        f"<script>{_CHECK_JS}</script>\n</body></html>\n",
    ])


def _e(value: object) -> str:
    return escape(str(value), quote=True)


# --- header, legend, timeline ---------------------------------------------------------------

def _header(title: str, migration_id: str, status: str, view: ExecutionView) -> str:
    started = view.started.isoformat(sep=" ", timespec="seconds") if view.started else "-"
    error = f'<p class="error">{_e(view.error)}</p>' if view.error else ""
    badge = EXECUTION_STATUS.get(status, "not-reached")
    return (f"<header><h1>{_e(title)}</h1>"
            f'<p class="meta">Migration <code>{_e(migration_id)}</code> '
            f'<span class="badge" data-status="{badge}" id="execution-status">{_e(status)}</span> '
            f"started {_e(started)}, last event at +{_e(_elapsed(view.duration))}</p>{error}</header>\n")


def _legend() -> str:
    items = "".join(f'<span class="legend-item" data-status="{s}"><i class="swatch"></i>{_e(t)}</span>'
                    for s, t in STATUS_TEXT.items())
    line = '<svg width="34" height="10"><line x1="2" y1="5" x2="32" y2="5" class="{}"/></svg>'
    edges = (f'<span class="legend-item">{line.format("edge taken")}transition taken</span>'
             f'<span class="legend-item">{line.format("edge")}possible transition</span>'
             f'<span class="legend-item">{line.format("edge catch")}on error (Catch)</span>'
             '<span class="legend-item"><span class="count-sample">×3</span>times entered</span>')
    return f'<div class="legend" id="legend">{items}{edges}</div>\n'


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3f} s"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:06.3f}" if hours else f"{minutes}:{secs:06.3f}"


def _groups(groups: Sequence[GroupView]) -> str:
    """The migration's Auto Scaling groups: status and the Spot share each wave reached."""
    if not groups:
        return ""
    waves = sorted({w for g in groups for w in g.spot_share_by_wave}, key=int)
    head = "".join(f"<th>Wave {int(w) + 1} Spot</th>" for w in waves)
    rows = []
    for g in groups:
        shares = "".join(f"<td>{_e(f'{g.spot_share_by_wave[w]:g} %') if w in g.spot_share_by_wave else '-'}</td>"
                         for w in waves)
        state = g.status if g.eligible else f"excluded: {g.exclusion_reason}"
        rows.append(f'<tr data-group="{_e(g.name)}"><td>{_e(g.name)}</td><td>{g.desired}</td><td>{_e(state)}</td>'
                    f"{shares}</tr>")
    return ('<section class="groups"><h2>Auto Scaling groups</h2><table id="groups"><thead><tr><th>Group</th>'
            f"<th>Instances</th><th>Status</th>{head}</tr></thead><tbody>\n" + "\n".join(rows)
            + "\n</tbody></table></section>\n")


def _timeline(view: ExecutionView) -> str:
    rows = []
    for row in view.timeline:
        css = ' class="failure"' if row.error else ""
        rows.append(f"<tr{css}><td>{row.event_id}</td><td>+{_e(_elapsed(row.elapsed))}</td><td>{_e(row.type)}</td>"
                    f"<td>{_e(row.state or '')}</td><td>{_e(row.error or '')}</td></tr>")
    return ('<section class="timeline"><h2>Events</h2><table id="timeline"><colgroup>'
            '<col class="c-id"><col class="c-elapsed"><col class="c-type"><col class="c-state"><col></colgroup>'
            "<thead><tr><th>#</th><th>Elapsed</th><th>Type</th><th>State</th><th>Error</th></tr></thead><tbody>\n"
            + "\n".join(rows) + "\n</tbody></table></section>\n")


# --- the graph ------------------------------------------------------------------------------

def _svg(drawing: Scope, view: ExecutionView) -> str:
    w, h = round(drawing.w), round(drawing.h)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" id="graph" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'role="img" aria-label="state machine graph">{_MARKERS}{_scope(drawing, view)}</svg>')


def _scope(scope: Scope, view: ExecutionView) -> str:
    """Edges first, boxes over them; a group's nested scopes are drawn inside its <g>."""
    return "".join([*(_edge(e, view) for e in scope.edges), *(_box(b, view) for b in scope.boxes)])


def _edge(edge: Edge, view: ExecutionView) -> str:
    taken = (edge.source, edge.target) in view.transitions or _marker_taken(edge, view)
    classes = " ".join(c for c in ("edge", "catch" if edge.kind == "catch" else "", "taken" if taken else "",
                                   "back" if edge.back else "") if c)
    arrow = "arrow-taken" if taken else "arrow"
    return (f'<path class="{classes}" data-from="{_e(_name(edge.source))}" data-to="{_e(_name(edge.target))}" '
            f'data-kind="{edge.kind}" d="{_path(edge.points)}" marker-end="url(#{arrow})"/>')


def _marker_taken(edge: Edge, view: ExecutionView) -> bool:
    if edge.source == START:
        return view.states[edge.target].entries > 0
    if edge.target == END:
        return view.states[edge.source].status == "succeeded"
    return False


def _name(node: str) -> str:
    return {START: "(start)", END: "(end)"}.get(node, node)


def _path(points: list[tuple[float, float]]) -> str:
    """Straight where vertical, an S-curve with vertical tangents where the edge shifts sideways."""
    (x0, y0), parts = points[0], []
    parts.append(f"M{x0:.1f},{y0:.1f}")
    for (ax, ay), (bx, by) in pairwise(points):
        if abs(ax - bx) < 0.5:
            parts.append(f"L{bx:.1f},{by:.1f}")
        else:
            my = (ay + by) / 2
            parts.append(f"C{ax:.1f},{my:.1f} {bx:.1f},{my:.1f} {bx:.1f},{by:.1f}")
    return " ".join(parts)


def _box(box: Box, view: ExecutionView) -> str:
    if box.marker:
        label = "Start" if box.name == START else "End"
        return (f'<g class="marker" data-marker="{label.lower()}"><rect x="{box.x:.1f}" y="{box.y:.1f}" '
                f'width="{box.w:.1f}" height="{box.h:.1f}" rx="{box.h / 2:.1f}"/>'
                f'<text x="{box.x + box.w / 2:.1f}" y="{box.y + box.h / 2 + 4:.1f}">{label}</text></g>')
    run = view.states[box.name]
    tip = f"{box.name} ({_kind(box)}): {STATUS_TEXT[run.status].lower()}, entered {run.entries}×"
    if run.error:
        tip += f"\n{run.error}"
    group = bool(box.lanes)
    open_tag = (f'<g class="state{" group" if group else ""}" data-state="{_e(box.name)}" data-type="{_e(box.type)}" '
                f'data-status="{run.status}" data-entries="{run.entries}"><title>{_e(tip)}</title>'
                f'<rect class="box" x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
                f'rx="{_radius(box):.1f}"/>')
    if group:
        x = box.x + 14
        text = (f'<text class="label" x="{x:.1f}" y="{box.y + 19:.1f}" text-anchor="start">{_e(box.name)}</text>'
                f'<text class="kind" x="{x:.1f}" y="{box.y + 33:.1f}" text-anchor="start">{_e(_kind(box))}</text>')
        inner = "".join(_lane(lane, view) for lane in box.lanes)
    else:
        cx, cy = box.x + box.w / 2, box.y + box.h / 2
        text = (f'<text class="label" x="{cx:.1f}" y="{cy - 2:.1f}">{_e(box.name)}</text>'
                f'<text class="kind" x="{cx:.1f}" y="{cy + 13:.1f}">{_e(_kind(box))}</text>')
        inner = ""
    return open_tag + text + _count(box, run.entries) + inner + "</g>"


def _radius(box: Box) -> float:
    return box.h / 2 if box.type == "Choice" else 4 if box.type in ("Succeed", "Fail") else 8


def _lane(lane: Lane, view: ExecutionView) -> str:
    frame = (f'<rect class="lane" x="{lane.x:.1f}" y="{lane.y:.1f}" width="{lane.w:.1f}" height="{lane.h:.1f}" rx="6"/>'
             if lane.framed else "")
    return f'<g class="lane-group">{frame}{_scope(lane.scope, view)}</g>'


def _count(box: Box, entries: int) -> str:
    """How many times the state was entered, as a bubble on the top right corner."""
    if entries < 2:
        return ""
    text = f"×{entries}"
    w = 14 + 7 * len(text)
    x, y = box.x + box.w - w / 2 - 4, box.y
    return (f'<g class="count"><rect x="{x - w / 2:.1f}" y="{y - 9:.1f}" width="{w:.1f}" height="18" rx="9"/>'
            f'<text x="{x:.1f}" y="{y + 4:.1f}">{text}</text></g>')


def _kind(box: Box) -> str:
    """The type line under the name, as the console words it."""
    resource = str(box.definition.get("Resource", ""))
    if box.type == "Task" and "lambda" in resource:
        return "Lambda: Invoke (callback)" if resource.endswith(".waitForTaskToken") else "Lambda: Invoke"
    if box.type == "Map":
        return "Map: one item at a time" if box.definition.get("MaxConcurrency") == 1 else "Map"
    if box.type == "Parallel":
        return f"Parallel: {len(box.lanes)} branches"
    return box.type


_MARKERS = (
    "<defs>"
    '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" '
    'markerUnits="userSpaceOnUse" orient="auto">'
    '<path d="M0,0 L10,5 L0,10 z" fill="#9aa5b1"/></marker>'
    '<marker id="arrow-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" '
    'markerUnits="userSpaceOnUse" orient="auto">'
    '<path d="M0,0 L10,5 L0,10 z" fill="#37474f"/></marker>'
    "</defs>"
)

_CSS = """
body { font-family: "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; margin: 20px 28px; color: #1f2933; \
background: #fff; }
h1 { font-size: 20px; margin: 0 0 6px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.meta { margin: 0; color: #52606d; font-size: 13px; } .error { color: #b71c1c; font-size: 13px; margin: 6px 0 0; }
code { background: #f0f4f8; padding: 1px 5px; border-radius: 3px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; font-size: 12px;
         border: 1px solid var(--stroke); background: var(--fill); color: var(--stroke); }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; margin: 14px 0 10px; font-size: 12px; color: #323f4b; \
align-items: center; }
.legend-item { display: inline-flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 22px; height: 14px; border-radius: 4px; border: 2px solid var(--stroke); \
background: var(--fill); }
.count-sample { background: #37474f; color: #fff; border-radius: 8px; padding: 0 6px; font-weight: 600; \
font-size: 11px; }
.graph { overflow-x: auto; border: 1px solid #e4e7eb; border-radius: 6px; background: #fbfcfd; }
#graph { display: block; margin: 0 auto; max-width: 100%; height: auto; }
[data-status="succeeded"] { --fill: #e6f4ea; --stroke: #2e7d32; }
[data-status="failed"] { --fill: #fdecea; --stroke: #c62828; }
[data-status="caught"] { --fill: #fff3e0; --stroke: #e65100; }
[data-status="current"] { --fill: #e3f2fd; --stroke: #1565c0; }
[data-status="cancelled"] { --fill: #ede7f6; --stroke: #5e35b1; }
[data-status="not-reached"] { --fill: #ffffff; --stroke: #b0bac5; }
g.state > rect.box { fill: var(--fill); stroke: var(--stroke); stroke-width: 2; }
g.state.group > rect.box { fill: #ffffff; fill-opacity: 0.6; stroke-dasharray: 7 4; }
g.state[data-status="current"] > rect.box { stroke-width: 3; animation: pulse 1.4s ease-in-out infinite; }
@keyframes pulse { 50% { stroke-opacity: 0.35; } }
g.state text { text-anchor: middle; }
g.state.group > text { text-anchor: start; }
g.state > text.label { font-size: 13px; font-weight: 600; fill: #1f2933; }
g.state > text.kind { font-size: 10px; fill: #616e7c; }
g.state[data-status="not-reached"] > text.label { fill: #7b8794; font-weight: 500; }
g.state.group > text.label { fill: var(--stroke); }
g.state[data-status="not-reached"].group > text.label { fill: #7b8794; }
rect.lane { fill: none; stroke: #9aa5b1; stroke-dasharray: 4 3; }
g.count rect { fill: #37474f; } g.count text { fill: #fff; font-size: 11px; font-weight: 700; text-anchor: middle; }
g.marker rect { fill: #37474f; } g.marker text { fill: #fff; font-size: 12px; font-weight: 600; text-anchor: middle; }
.edge { fill: none; stroke: #b0bac5; stroke-width: 1.4; }
.edge.taken { stroke: #37474f; stroke-width: 2.2; }
.edge.catch { stroke-dasharray: 6 4; }
table { border-collapse: collapse; font-size: 12px; width: 100%; table-layout: fixed; }
col.c-id { width: 48px; } col.c-elapsed { width: 100px; } col.c-type { width: 210px; } col.c-state { width: 200px; }
th, td { text-align: left; padding: 3px 10px; border-bottom: 1px solid #e4e7eb; vertical-align: top; }
th { background: #f5f7fa; position: sticky; top: 0; }
td:nth-child(1), td:nth-child(2) { font-variant-numeric: tabular-nums; white-space: nowrap; color: #52606d; }
tr.failure td { background: #fdecea; color: #8e1b1b; }
"""

# Run by the browser: names wider than their box (the layout only estimates text widths) are
# squeezed to fit, and the result is written on <body> for anyone checking the rendered page.
_CHECK_JS = """
(function () {
  var states = Array.prototype.slice.call(document.querySelectorAll('g.state'));
  var squeezed = 0, overlaps = [];
  states.forEach(function (g) {
    var box = g.querySelector(':scope > rect.box'), label = g.querySelector(':scope > text.label');
    var room = box.width.baseVal.value - (g.classList.contains('group') ? 60 : 14);
    if (label.getComputedTextLength() > room) {
      label.setAttribute('textLength', room); label.setAttribute('lengthAdjust', 'spacingAndGlyphs'); squeezed++;
    }
  });
  var rects = states.map(function (g) { return g.querySelector(':scope > rect.box').getBoundingClientRect(); });
  function inside(a, b) { return a.left >= b.left && a.right <= b.right && a.top >= b.top && a.bottom <= b.bottom; }
  for (var i = 0; i < rects.length; i++) for (var j = i + 1; j < rects.length; j++) {
    var a = rects[i], b = rects[j];
    var cross = a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    if (cross && !inside(a, b) && !inside(b, a)) overlaps.push(states[i].dataset.state + '/' + states[j].dataset.state);
  }
  document.body.dataset.drawn = states.length;
  document.body.dataset.squeezed = squeezed;
  document.body.dataset.overlaps = overlaps.join(' ');
})();
"""
