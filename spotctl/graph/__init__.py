"""The offline execution graph: one self-contained HTML page showing every state of the
state machine coloured by what happened to it in one execution, and the event timeline."""

from spotctl.graph.html import render_graph

__all__ = ["render_graph"]
