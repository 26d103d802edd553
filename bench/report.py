"""The benchmark's stdout table, from the JSON results (also usable on a saved file:
`python -m bench.report bench/results/latest.json`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path


def _columns(results: dict) -> list[tuple[dict, dict]]:
    return [(size, run) for size in results["sizes"] for run in size["runs"]]


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _is_heading(row: list[str]) -> bool:
    """A section heading ("§title"): printed as is, on its own line, outside the columns."""
    return bool(row) and row[0].startswith("§")


def _format_row(cells: list, widths: list[int]) -> str:
    """The first cell left-aligned, the others right-aligned."""
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def _table(header: list[str], rows: list[list[str]]) -> str:
    table = [header, *[r for r in rows if not _is_heading(r)]]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    lines = [_format_row(header, widths), "  ".join("-" * w for w in widths)]
    lines += [r[0][1:] if _is_heading(r) else _format_row(r, widths) for r in rows]
    return "\n".join(lines)


def _service_calls(run: dict, services: tuple[str, ...]) -> int:
    return sum(n for op, n in run["analysis"]["api_calls"].items() if op.split(".")[0] in services)


# --- sections: each builder gives the (label, cell) lines of its section; cell(size, run) -> text ------------
Cell = Callable[[dict, dict], str]
Columns = list[tuple[dict, dict]]


def _fleet_lines(results: dict, cols: Columns) -> list[tuple[str, Cell]]:
    return [
        ("  opted-in instances", lambda s, r: _fmt(s["instances"])),
        ("  distinct instance types", lambda s, r: _fmt(s["fleet"]["distinct_instance_types"])),
        ("  CPU history (days / datapoints)", lambda s, r: f"{s['cpu_days']} / {s['fleet']['cpu_datapoints']:,}"),
        ("  seeding wall s (of which CPU history)",
         lambda s, r: f"{s['seeding']['wall_s']:.1f} ({s['seeding']['cpu_history_wall_s']:.1f})"),
    ]


def _execution_lines(results: dict, cols: Columns) -> list[tuple[str, Cell]]:
    limit = results.get("sfn_payload_limit_bytes", 262144)
    return [
        ("  status / outcome", lambda s, r: f"{r['status']} / {r['outcome']}"),
        ("  plan candidates / migrated", lambda s, r: f"{_fmt(r['plan'].get('candidates'))} / "
                                                    f"{_fmt((r.get('realised') or {}).get('instances'))}"),
        ("  execution wall s", lambda s, r: _fmt(r["execution_wall_s"], 1)),
        ("  state transitions (*StateEntered)", lambda s, r: _fmt(r["history"]["state_transitions"])),
        ("  history events", lambda s, r: _fmt(r["history"]["events"])),
        ("  largest payload, bytes", lambda s, r: _fmt(r["history"]["largest_payload"]["bytes"])),
        ("  largest payload, % of 256 KB",
         lambda s, r: f"{100.0 * r['history']['largest_payload']['bytes'] / limit:.2f} %"),
        ("  largest payload, where", lambda s, r: f"{r['history']['largest_payload'].get('state')} "
                                                 f"({r['history']['largest_payload'].get('event')})"),
    ]


def _analysis_lines(results: dict, cols: Columns) -> list[tuple[str, Cell]]:
    ops = sorted({op for _, r in cols for op in r["analysis"]["api_calls"]})
    return [
        ("  API calls", lambda s, r: _fmt(r["analysis"]["api_calls_total"])),
        ("  API calls per instance", lambda s, r: _fmt(r["analysis"]["api_calls_per_instance"], 4)),
        ("  reads of EC2 / ELBv2 / CloudWatch",
         lambda s, r: _fmt(_service_calls(r, ("ec2", "elbv2", "cloudwatch", "pricing")))),
        ("  plan store (DynamoDB)", lambda s, r: _fmt(_service_calls(r, ("dynamodb",)))),
        *[(f"    {op}", lambda s, r, op=op: _fmt(r["analysis"]["api_calls"].get(op, 0))) for op in ops],
        ("  CPU s (process_time)", lambda s, r: _fmt(r["analysis"]["cpu_process_s"])),
        ("  CPU s, handler + SDK only", lambda s, r: _fmt(r["analysis"]["cpu_handler_and_sdk_s"])),
        ("  CPU s, simulated AWS (moto)", lambda s, r: _fmt(r["analysis"]["cpu_simulated_aws_s"])),
        ("  cyclic GC s during the analysis", lambda s, r: _fmt(r["analysis"].get("gc_s"))),
        ("  wall s", lambda s, r: _fmt(r["analysis"]["wall_s"])),
    ]


def _review_lines(results: dict, cols: Columns) -> list[tuple[str, Cell]]:
    return [
        ("  API calls", lambda s, r: _fmt(r["reviews"]["api_calls_total"])),
        ("  CPU s, handler + SDK only", lambda s, r: _fmt(r["reviews"]["cpu_handler_and_sdk_s"])),
        ("  wall s (sum of the 4 invocations)", lambda s, r: _fmt(r["reviews"]["wall_s"])),
    ]


def _whole_execution_lines(results: dict, cols: Columns) -> list[tuple[str, Cell]]:
    return [
        ("  Lambda invocations", lambda s, r: _fmt(r["lambda_invocations"])),
        ("  API calls by handlers", lambda s, r: _fmt(sum(f["api_calls_total"] for f in r["by_function"].values()))),
        ("  size wall s (seeding + runs)", lambda s, r: _fmt(s["total_wall_s"], 1)),
    ]


SECTIONS: list[tuple[str, Callable[[dict, Columns], list[tuple[str, Cell]]]]] = [
    ("Fleet and seeding", _fleet_lines),
    ("Execution", _execution_lines),
    ("Analysis (the analyze handler)", _analysis_lines),
    ("Reviews (3 agents + consolidation)", _review_lines),
    ("Whole execution", _whole_execution_lines),
]


def _rows(results: dict, cols: Columns) -> list[list[str]]:
    rows: list[list[str]] = []
    for title, lines in SECTIONS:
        rows.append([f"§{title}"])
        rows += [[label, *[cell(s, r) for s, r in cols]] for label, cell in lines(results, cols)]
    return rows


def _header(cols: Columns) -> list[str]:
    return ["", *[f"{s['instances']:,} ({'dry run' if r['mode'] == 'dry_run' else 'full'})" for s, r in cols]]


def _notes(results: dict) -> list[str]:
    notes = [note for s in results["sizes"] for note in _size_notes(s, results["settings"]["cpu_days"])]
    if results["settings"].get("speedups"):
        notes.append("* moto speed-ups installed: spotctl/local/metric_index.py (CloudWatch) and "
                     "bench/moto_speedups.py (EC2 tags and instance/AMI lookups, DynamoDB item responses); "
                     "answers unchanged, see bench/README.md.")
    return notes


def _size_notes(size: dict, cpu_days: int) -> list[str]:
    notes = []
    if size["cpu_days"] != cpu_days:
        notes.append(f"* {size['instances']:,}: seeded {size['cpu_days']} day(s) of hourly CPU per instance instead "
                     f"of {cpu_days} (seeding time); the analysis still reads a 7-day window.")
    if "full" not in size["modes"]:
        notes.append(f"* {size['instances']:,}: dry run only (analysis + reviews); "
                     "pass --full-large for the waves too.")
    return notes


def render(results: dict) -> str:
    cols = _columns(results)
    if not cols:
        return "no results"
    out = _table(_header(cols), _rows(results, cols))
    notes = _notes(results)
    if notes:
        out += "\n\n" + "\n".join(notes)
    out += f"\n\nTotal benchmark wall time: {results.get('total_wall_s', 0):.1f} s"
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "latest.json")
    print(render(json.loads(path.read_text())))
