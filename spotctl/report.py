"""The migration report: one dict (for --json) built from the migration record, and its
readable rendering for stakeholders."""

from __future__ import annotations

from typing import Any

from spot_core.domain.instances import CAPACITY_ERRORS as CAPACITY_CODES
from spot_core.ports import MigrationRepository, PlanRepository

OUTCOME_TEXT = {
    "completed": "COMPLETED: the planned instances now run on Spot",
    "rolled_back": "ROLLED BACK: the fleet is back on on-demand, exactly as before",
    "rollback_failed": "ROLLBACK INCOMPLETE: some instances need attention",
    "rejected": "REJECTED by the customer: nothing was changed",
    "vetoed": "VETOED by the agent review: nothing was changed",
    "approval_timed_out": "APPROVAL TIMED OUT: nothing was changed",
    "nothing_to_migrate": "NOTHING TO MIGRATE",
    "planned": "DRY RUN: plan ready, nothing was changed",
}


def build_report(migrations: MigrationRepository, plans: PlanRepository, migration_id: str,
                 extra: dict[str, Any] | None = None) -> dict:
    item = migrations.get(migration_id)
    records = plans.records(migration_id)
    waves = []
    for wave in item.get("waves", []):
        result = (item.get("wave_results") or {}).get(str(wave["index"]), {})
        waves.append({**wave, "migration": result.get("migration"), "gate": result.get("gate")})
    instances = [
        {
            "instance_id": r.instance_id, "name": r.name, "type": r.instance_type, "az": r.availability_zone,
            "workload": r.workload, "risk": r.risk, "eligible": r.eligible, "status": r.status,
            "reason": r.exclusion_detail or r.exclusion_reason, "on_demand_monthly": r.monthly_on_demand,
            "spot_monthly": round(r.monthly_on_demand - r.monthly_savings, 2) if r.spot_hourly else None,
            "savings_monthly": r.monthly_savings, "savings_pct": r.savings_pct, "wave": r.wave,
            "replacement_id": r.replacement_id, "replacement_type": r.replacement_type, "attempts": r.attempts,
        }
        for r in sorted(records, key=lambda r: (not r.eligible, r.wave if r.wave is not None else 99, r.instance_id))
    ]
    return {
        "migration_id": migration_id, "status": item.get("status"), "outcome": OUTCOME_TEXT.get(item.get("status"), item.get("status")),
        "summary": item.get("summary"), "verdicts": item.get("verdicts", []), "approval": item.get("approval"),
        "baseline": (item.get("baseline") or {}).get("sample"), "waves": waves, "realised": item.get("realised"),
        "failure": item.get("failure"), "instances": instances, **(extra or {}),
    }


def _money(v: float | None) -> str:
    return "-" if v is None else f"${v:,.2f}"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = ["  " + line, "  " + "  ".join("-" * w for w in widths)]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return out


def render(report: dict) -> str:
    s = report.get("summary") or {}
    out = []
    title = f"Spot migration {report['migration_id']}"
    if report.get("fleet"):
        title += f"  -  {report['fleet']}"
    out += [title, "=" * len(title), ""]

    out.append("1. Analysis")
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted((s.get("excluded_by_reason") or {}).items())) or "none"
    out.append(f"  Instances analysed: {s.get('analysed', 0)}    Opportunities: {s.get('candidates', 0)}    "
               f"Excluded: {s.get('excluded', 0)} ({reasons})")
    rows = []
    for i in report["instances"]:
        rows.append([
            i["instance_id"], (i["name"] or "")[:18], i["type"], i["az"][-2:] if i["az"] else "", i["workload"], i["risk"],
            _money(i["on_demand_monthly"]) if i["eligible"] else "-", _money(i["spot_monthly"]) if i["eligible"] else "-",
            f"{_money(i['savings_monthly'])} ({i['savings_pct']:.0f} %)" if i["eligible"] else f"excluded: {i['reason']}",
        ])
    out += _table(["instance", "name", "type", "az", "workload", "risk", "on-demand/mo", "spot/mo", "savings/mo"], rows)
    out.append(f"  Total: {_money(s.get('monthly_on_demand'))}/month on-demand -> {_money((s.get('monthly_on_demand') or 0) - (s.get('monthly_savings') or 0))} "
               f"on Spot: saves {_money(s.get('monthly_savings'))}/month ({s.get('savings_pct', 0)} %)  [prices: {s.get('pricing_source')}]")
    out.append("")

    out.append("2. Agent reviews")
    for v in report["verdicts"]:
        verdict = "APPROVED" if v["approved"] else "VETO"
        out.append(f"  {v['agent']:<12} {verdict:<9} confidence {v['confidence']:.2f}   excluded {v.get('excluded_count', 0)}")
        out += [f"      - {c}" for c in v.get("concerns", [])]
        out += [f"      > {r}" for r in v.get("recommendations", [])]
    out.append("")

    out.append("3. Customer approval")
    a = report.get("approval")
    if not a:
        out.append("  not requested" if report["status"] in ("vetoed", "nothing_to_migrate", "planned") else "  auto-approved")
    elif "approved" in a:
        decision = "APPROVED" if a["approved"] else "REJECTED"
        out.append(f"  {decision} by {a.get('decided_by')} at {a.get('decided_at')}" + (f": {a['reason']}" if a.get("reason") else ""))
    else:
        out.append(f"  requested at {a.get('requested_at')}, no decision within {a.get('timeout_seconds')} s")
    out.append("")

    out.append("4. Rollout")
    b = report.get("baseline")
    if b and b.get("latency") is not None:
        out.append(f"  Baseline: latency {b['latency'] * 1000:.1f} ms, error rate {100 * (b.get('error_rate') or 0):.2f} %, {b.get('requests', 0):,.0f} requests")
    if not report["waves"]:
        out.append("  no wave ran")
    for w in report["waves"]:
        m, g = w.get("migration"), w.get("gate")
        label = f"  Wave {w['index'] + 1} ({w['percent']:g} %)"
        if not m:
            out.append(f"{label:<18} not reached ({w['target_count']} instance(s) planned)")
            continue
        line = f"{label:<18} {m['migrated']}/{m['total']} migrated   bake {w['bake_seconds']} s   "
        if g:
            lat, err = g.get("latency_change_pct"), g.get("error_rate_change_pct")
            quality = f"latency {lat:+.1f} %, errors {err:+.1f} %" if lat is not None and err is not None else "no metric data"
            status = "PASS" if g["passed"] else "FAIL"
            line += f"quality: {quality} -> score {g['score']:.2f} (limit {g['threshold_pct']:g}) {status}"
        else:
            line += "quality: not checked (wave failed)"
        out.append(line)
        if g and not g["passed"]:
            out += [f"      ! {r}" for r in g.get("reasons", [])]
        for f in (m.get("failures") or [])[:5]:
            out.append(f"      ! {f}")
    if report.get("failure"):
        out.append(f"  Failure: {report['failure'].get('Error')}")
    moved = [i for i in report["instances"] if i["replacement_id"]]
    if moved:
        out.append("  Replacements:")
        for i in moved:
            refused = sum(1 for a in i["attempts"] if a.split(": ")[-1] in CAPACITY_CODES)
            via = f" after {refused} refused pool(s)" if refused else ""
            out.append(f"    {i['instance_id']} ({i['type']}) -> {i['replacement_id']} ({i['replacement_type']} Spot){via}: {i['status']}")
    out.append("")

    out.append("5. Outcome")
    out.append(f"  {report['outcome']}")
    r = report.get("realised")
    if r:
        out.append(f"  Realised savings: {_money(r['monthly_savings'])}/month ({r['savings_pct']} %) on {r['instances']} instance(s): "
                   f"{_money(r['monthly_on_demand'])} on-demand -> {_money(r['monthly_spot'])} Spot")
    if report.get("elapsed"):
        out.append(f"  Took {report['elapsed']:.1f} s of real time for {report.get('simulated_seconds', 0):,.0f} s of bake and wait time (fast-forwarded)")
    if report.get("graph"):
        out.append(f"  Execution graph: {report['graph']} (open it in a browser)")
    if report.get("interruptions"):
        out += ["", "6. Spot interruptions (after the rollout)"]
        for i in report["interruptions"]:
            if i.get("launched"):
                out.append(f"  {i['interrupted']} ({i['interrupted_pool']}) warned -> {i['replacement_id']} launched as {i['market']} "
                           f"{i['instance_type']} in {i['availability_zone']} {i['seconds_from_event_to_launch']:.2f} s after the warning; "
                           f"target groups swapped")
            else:
                out.append(f"  {i['interrupted']}: {i.get('action') or i.get('error')}")
    return "\n".join(out)
