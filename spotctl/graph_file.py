"""Writing a migration's execution graph to a file (spotctl graph, the demo)."""

from __future__ import annotations

from pathlib import Path


def write_graph(migrations, migration_id: str, out: str) -> str:
    from spotctl.graph import render_graph

    detail = migrations.get(migration_id)
    html = render_graph(migrations.definition(), migrations.history(migration_id), migration_id=migration_id,
                        status=detail.execution_status or "UNKNOWN", groups=detail.groups)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return str(path)
