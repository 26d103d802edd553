"""The benchmark's stdout table, from the JSON results (also usable on a saved file:
`python -m bench.report bench/results/latest.json`)."""

from __future__ import annotations

import json
import sys
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


def _table(header: list[str], rows: list[list[str]]) -> str:
    table = [header, *[r for r in rows if not (r and r[0].startswith("§"))]]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) if i == 0 else str(h).rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        if r and r[0].startswith("§"):
            lines.append(r[0][1:])
            continue
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def _service_calls(run: dict, services: tuple[str, ...]) -> int:
    return sum(n for op, n in run["analysis"]["api_calls"].items() if op.split(".")[0] in services)


def render(results: dict) -> str:
    cols = _columns(results)
    if not cols:
        return "no results"
    header = ["", *[f"{s['instances']:,} ({'dry run' if r['mode'] == 'dry_run' else 'full'})" for s, r in cols]]

    def row(label: str, fn) -> list[str]:
        return [label, *[fn(s, r) for s, r in cols]]

    limit = results.get("sfn_payload_limit_bytes", 262144)
    rows = [
        ["§Fleet and seeding"],
        row("  opted-in instances", lambda s, r: _fmt(s["instances"])),
        row("  distinct instance types", lambda s, r: _fmt(s["fleet"]["distinct_instance_types"])),
        row("  CPU history (days / datapoints)", lambda s, r: f"{s['cpu_days']} / {s['fleet']['cpu_datapoints']:,}"),
        row("  seeding wall s (of which CPU history)",
            lambda s, r: f"{s['seeding']['wall_s']:.1f} ({s['seeding']['cpu_history_wall_s']:.1f})"),
        ["§Execution"],
        row("  status / outcome", lambda s, r: f"{r['status']} / {r['outcome']}"),
        row("  plan candidates / migrated", lambda s, r: f"{_fmt(r['plan'].get('candidates'))} / "
                                                       f"{_fmt((r.get('realised') or {}).get('instances'))}"),
        row("  execution wall s", lambda s, r: _fmt(r["execution_wall_s"], 1)),
        row("  state transitions (*StateEntered)", lambda s, r: _fmt(r["history"]["state_transitions"])),
        row("  history events", lambda s, r: _fmt(r["history"]["events"])),
        row("  largest payload, bytes", lambda s, r: _fmt(r["history"]["largest_payload"]["bytes"])),
        row("  largest payload, % of 256 KB", lambda s, r: f"{100.0 * r['history']['largest_payload']['bytes'] / limit:.2f} %"),
        row("  largest payload, where", lambda s, r: f"{r['history']['largest_payload'].get('state')} "
                                                    f"({r['history']['largest_payload'].get('event')})"),
        ["§Analysis (the analyze handler)"],
        row("  API calls", lambda s, r: _fmt(r["analysis"]["api_calls_total"])),
        row("  API calls per instance", lambda s, r: _fmt(r["analysis"]["api_calls_per_instance"], 4)),
        row("  reads of EC2 / ELBv2 / CloudWatch", lambda s, r: _fmt(_service_calls(r, ("ec2", "elbv2", "cloudwatch", "pricing")))),
        row("  plan store (DynamoDB)", lambda s, r: _fmt(_service_calls(r, ("dynamodb",)))),
    ]
    ops = sorted({op for _, r in cols for op in r["analysis"]["api_calls"]})
    rows += [row(f"    {op}", lambda s, r, op=op: _fmt(r["analysis"]["api_calls"].get(op, 0))) for op in ops]
    rows += [
        row("  CPU s (process_time)", lambda s, r: _fmt(r["analysis"]["cpu_process_s"])),
        row("  CPU s, handler + SDK only", lambda s, r: _fmt(r["analysis"]["cpu_handler_and_sdk_s"])),
        row("  CPU s, simulated AWS (moto)", lambda s, r: _fmt(r["analysis"]["cpu_simulated_aws_s"])),
        row("  cyclic GC s during the analysis", lambda s, r: _fmt(r["analysis"].get("gc_s"))),
        row("  wall s", lambda s, r: _fmt(r["analysis"]["wall_s"])),
        ["§Reviews (3 agents + consolidation)"],
        row("  API calls", lambda s, r: _fmt(r["reviews"]["api_calls_total"])),
        row("  CPU s, handler + SDK only", lambda s, r: _fmt(r["reviews"]["cpu_handler_and_sdk_s"])),
        row("  wall s (sum of the 4 invocations)", lambda s, r: _fmt(r["reviews"]["wall_s"])),
        ["§Whole execution"],
        row("  Lambda invocations", lambda s, r: _fmt(r["lambda_invocations"])),
        row("  API calls by handlers", lambda s, r: _fmt(sum(f["api_calls_total"] for f in r["by_function"].values()))),
        row("  size wall s (seeding + runs)", lambda s, r: _fmt(s["total_wall_s"], 1)),
    ]
    notes = []
    for s in results["sizes"]:
        if s["cpu_days"] != results["settings"]["cpu_days"]:
            notes.append(f"* {s['instances']:,}: seeded {s['cpu_days']} day(s) of hourly CPU per instance instead of "
                         f"{results['settings']['cpu_days']} (seeding time); the analysis still reads a 7-day window.")
        if "full" not in s["modes"]:
            notes.append(f"* {s['instances']:,}: dry run only (analysis + reviews); pass --full-large for the waves too.")
    if results["settings"].get("speedups"):
        notes.append("* moto speed-ups installed: spotctl/local/metric_index.py (CloudWatch) and bench/moto_speedups.py "
                     "(EC2 tags and instance/AMI lookups, DynamoDB item responses); answers unchanged, see bench/README.md.")
    out = _table(header, rows)
    if notes:
        out += "\n\n" + "\n".join(notes)
    out += f"\n\nTotal benchmark wall time: {results.get('total_wall_s', 0):.1f} s"
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "latest.json")
    print(render(json.loads(path.read_text())))
