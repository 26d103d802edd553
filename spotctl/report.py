"""The migration report: one dict (for --json) built from the migration record, and its
readable rendering for stakeholders."""

from __future__ import annotations

from typing import Any

from spot_core.domain.instances import CAPACITY_ERRORS as CAPACITY_CODES
from spot_core.domain.outcomes import realised_now
from spot_core.domain.plan import InstanceRecord
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
    "stopped": "STOPPED before it finished: the instances are as listed below",
    "timed_out": "TIMED OUT before it finished: the instances are as listed below",
    "failed": "FAILED before it finished: the instances are as listed below",
}
# Outcomes reached before the customer approval step: nobody was asked.
NEVER_ASKED = ("vetoed", "nothing_to_migrate", "planned")


def build_report(migrations: MigrationRepository, plans: PlanRepository, migration_id: str,
                 extra: dict[str, Any] | None = None) -> dict:
    item = migrations.get(migration_id)
    records = plans.records(migration_id)
    waves = []
    for wave in item.get("waves", []):
        result = (item.get("wave_results") or {}).get(str(wave["index"]), {})
        waves.append({**wave, "migration": result.get("migration"), "gate": result.get("gate")})
    instances = [_instance(r) for r in sorted(records, key=_report_order)]
    groups = [group.model_dump(include=GROUP_FIELDS) for group in plans.groups(migration_id)] \
        if _has_groups(item.get("summary") or {}) else []
    return {
        "groups": groups,
        "migration_id": migration_id, "status": item.get("status"),
        "outcome": OUTCOME_TEXT.get(item.get("status"), item.get("status")),
        "summary": item.get("summary"), "verdicts": item.get("verdicts", []), "approval": item.get("approval"),
        "baseline": (item.get("baseline") or {}).get("sample"), "waves": waves, "realised": realised_now(item),
        "failure": item.get("failure"), "instances": instances, **(extra or {}),
    }


def _has_groups(summary: dict) -> bool:
    return bool(summary.get("groups") or summary.get("groups_excluded"))


def _report_order(r: InstanceRecord) -> tuple:
    """Candidates first, by wave (unplanned last), then by instance id."""
    return not r.eligible, r.wave if r.wave is not None else 99, r.instance_id


def _instance(r: InstanceRecord) -> dict:
    return {
        "instance_id": r.instance_id, "name": r.name, "type": r.instance_type, "az": r.availability_zone,
        "workload": r.workload, "risk": r.risk, "eligible": r.eligible, "status": r.status,
        "reason": r.exclusion_detail or r.exclusion_reason, "on_demand_monthly": r.monthly_on_demand,
        "spot_monthly": round(r.monthly_on_demand - r.monthly_savings, 2) if r.spot_hourly else None,
        "savings_monthly": r.monthly_savings, "savings_pct": r.savings_pct, "wave": r.wave,
        "replacement_id": r.replacement_id, "replacement_type": r.replacement_type, "attempts": r.attempts,
        "replacement_market": r.replacement_market, "reverted_by": r.reverted_by,
        "mode": r.mode, "carried": r.carry.carried if r.carry else [], "changed": r.carry.changed if r.carry else [],
        "downtime_seconds": r.carry.downtime_seconds if r.carry else 0,
        "moved_addresses": [a.public_ip for a in r.moved_addresses],
        "moved": _moved(r), "downtime_measured": r.stateful.downtime_seconds if r.stateful else None,
    }


def _moved(r: InstanceRecord) -> list[str]:
    """What a stateful move carried: its volumes at their devices, interfaces, Elastic IPs."""
    if r.stateful is None:
        return []
    return [*(f"{v.volume_id} at {v.device}" for v in r.stateful.volumes),
            *(f"{i.interface_id} at index {i.device_index}" for i in r.stateful.interfaces),
            *(f"Elastic IP {a.public_ip}" for a in r.stateful.addresses)]


def _money(v: float | None) -> str:
    return "-" if v is None else f"${v:,.2f}"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = ["  " + line, "  " + "  ".join("-" * w for w in widths)]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return out


def _quality_change(gate: dict) -> str:
    """A quality gate's latency and error rate change against the baseline."""
    lat, err = gate.get("latency_change_pct"), gate.get("error_rate_change_pct")
    if lat is None or err is None:
        return "no metric data"
    return f"latency {lat:+.1f} %, errors {err:+.1f} %"


def render(report: dict) -> str:
    """The report as text: a title, then one section per step of the migration."""
    sections = [
        _title(report), _analysis(report), _agent_reviews(report), _approval(report), _rollout(report),
        _outcome(report),
    ]
    if report.get("groups"):
        sections.insert(5, _groups(report))
    if report.get("interruptions"):
        sections.append(_interruptions(report["interruptions"]))
    if report.get("day2"):
        sections.append(_day2(report["day2"]))
    return "\n\n".join("\n".join(lines) for lines in sections)


def _title(report: dict) -> list[str]:
    title = f"Spot migration {report['migration_id']}"
    if report.get("fleet"):
        title += f"  -  {report['fleet']}"
    return [title, "=" * len(title)]


# --- 1. analysis -------------------------------------------------------------------------------

def _analysis(report: dict) -> list[str]:
    s = report.get("summary") or {}
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted((s.get("excluded_by_reason") or {}).items())) or "none"
    out = ["1. Analysis",
           f"  Instances analysed: {s.get('analysed', 0)}    Opportunities: {s.get('candidates', 0)}    "
           f"Excluded: {s.get('excluded', 0)} ({reasons})"]
    headers = ["instance", "name", "type", "az", "workload", "risk", "on-demand/mo", "spot/mo", "savings/mo"]
    out += _table(headers, [_instance_row(i) for i in report["instances"]])
    on_demand, savings = s.get("monthly_on_demand"), s.get("monthly_savings")
    storage = s.get("monthly_stopped_storage", 0)
    spot = (on_demand or 0) - (savings or 0) - storage
    out.append(f"  Total: {_money(on_demand)}/month on-demand -> {_money(spot)} on Spot + {_money(storage)} for the "
               f"stopped originals' volumes: saves {_money(savings)}/month ({s.get('savings_pct', 0)} %)  "
               f"[prices: {s.get('pricing_source')}]")
    return out


def _instance_row(i: dict) -> list[str]:
    zone = i["az"][-2:] if i["az"] else ""
    row = [i["instance_id"], (i["name"] or "")[:18], i["type"], zone, i["workload"], i["risk"]]
    if not i["eligible"]:
        return [*row, "-", "-", f"excluded: {i['reason']}"]
    savings = f"{_money(i['savings_monthly'])} ({i['savings_pct']:.0f} %)"
    return [*row, _money(i["on_demand_monthly"]), _money(i["spot_monthly"]), savings]


# --- 2. agent reviews, 3. customer approval ------------------------------------------------------

def _agent_reviews(report: dict) -> list[str]:
    out = ["2. Agent reviews"]
    for v in report["verdicts"]:
        verdict = "APPROVED" if v["approved"] else "VETO"
        out.append(f"  {v['agent']:<12} {verdict:<9} confidence {v['confidence']:.2f}   "
                   f"excluded {v.get('excluded_count', 0)}")
        out += [f"      - {c}" for c in v.get("concerns", [])]
        out += [f"      > {r}" for r in v.get("recommendations", [])]
    return out


def _approval(report: dict) -> list[str]:
    a = report.get("approval")
    if not a:
        line = "  not requested" if report["status"] in NEVER_ASKED else "  auto-approved"
    elif "approved" in a:
        decision = "APPROVED" if a["approved"] else "REJECTED"
        reason = f": {a['reason']}" if a.get("reason") else ""
        line = f"  {decision} by {a.get('decided_by')} at {a.get('decided_at')}{reason}"
    else:
        line = f"  requested at {a.get('requested_at')}, no decision within {a.get('timeout_seconds')} s"
    return ["3. Customer approval", line]


# --- 4. rollout ----------------------------------------------------------------------------------

def _rollout(report: dict) -> list[str]:
    out = ["4. Rollout", *_baseline(report.get("baseline"))]
    if not report["waves"]:
        out.append("  no wave ran")
    for wave in report["waves"]:
        out += _wave(wave)
    if report.get("failure"):
        out.append(f"  Failure: {report['failure'].get('Error')}")
    return out + _replacements(report["instances"])


def _baseline(b: dict | None) -> list[str]:
    if not b or b.get("latency") is None:
        return []
    return [f"  Baseline: latency {b['latency'] * 1000:.1f} ms, error rate {100 * (b.get('error_rate') or 0):.2f} %, "
            f"{b.get('requests', 0):,.0f} requests"]


def _wave(w: dict) -> list[str]:
    m, g = w.get("migration"), w.get("gate")
    label = f"  Wave {w['index'] + 1} ({w['percent']:g} %)"
    if not m:
        return [f"{label:<18} not reached ({w['target_count']} instance(s) planned)"]
    groups = f" + {m['groups']} group(s)" if m.get("groups") else ""
    out = [f"{label:<18} {m['migrated']}/{m['total']} migrated{groups}   bake {w['bake_seconds']} s   {_gate(g)}"]
    if g and not g["passed"]:
        out += [f"      ! {r}" for r in g.get("reasons", [])]
    out += [f"      ! {f}" for f in (m.get("failures") or [])[:5]]
    return out


def _gate(g: dict | None) -> str:
    if not g:
        return "quality: not checked (wave failed)"
    status = "PASS" if g["passed"] else "FAIL"
    return f"quality: {_quality_change(g)} -> score {g['score']:.2f} (limit {g['threshold_pct']:g}) {status}"


def _replacements(instances: list[dict]) -> list[str]:
    moved = [i for i in instances if i["replacement_id"]]
    return ["  Replacements:", *(_replacement(i) for i in moved)] if moved else []


def _replacement(i: dict) -> str:
    refused = sum(1 for a in i["attempts"] if a.split(": ")[-1] in CAPACITY_CODES)
    via = f" after {refused} refused pool(s)" if refused else ""
    market = "Spot" if i.get("replacement_market", "spot") == "spot" else "on-demand"
    spot = f"{i['replacement_id']} ({i['replacement_type']} {market})"
    via += f", reverted by {i['reverted_by']}" if i.get("reverted_by") else ""
    return f"    {i['instance_id']} ({i['type']}) -> {spot}{via}: {i['status']}{_carried(i)}"


def _carried(i: dict) -> str:
    """How it moved: its mode, what moved with it, and the downtime of a stateful move."""
    if i.get("mode") == "stateful":
        down = f", down {i['downtime_measured']:.0f} s" if i.get("downtime_measured") is not None else ""
        return f"  [stateful: {', '.join(i.get('moved') or [])}{down}]"
    eips = f", Elastic IP {', '.join(i['moved_addresses'])} moved" if i.get("moved_addresses") else ""
    return f"  [{i.get('mode') or 'stateless'}{eips}]"


# --- Auto Scaling groups ---------------------------------------------------------------------------
GROUP_FIELDS = {"name", "eligible", "exclusion_reason", "exclusion_detail", "desired", "status", "monthly_savings",
                "wave_spot_share", "created_launch_template", "attempts"}


def _groups(report: dict) -> list[str]:
    """Each group: its configuration before and after, the Spot share each wave reached, or why it stayed."""
    configurations = report.get("group_configurations") or {}
    out = ["4b. Auto Scaling groups"]
    for g in report["groups"]:
        if not g["eligible"]:
            out.append(f"  {g['name']}: excluded, {g['exclusion_reason']} ({g['exclusion_detail']})")
            continue
        shares = ", ".join(f"wave {int(w) + 1}: {share:g} %" for w, share in sorted(g["wave_spot_share"].items()))
        out.append(f"  {g['name']} ({g['desired']} instances): {g['status']}; Spot share {shares or 'none yet'}; "
                   f"{_money(g['monthly_savings'])}/month planned")
        seen = configurations.get(g["name"])
        if seen:
            out += [f"    {when:<6} {_group_configuration(seen[when])}" for when in ("before", "after")]
    return out


def _group_configuration(c: dict) -> str:
    if not c.get("types"):
        return (f"{c['source']}, all on-demand, Capacity Rebalancing {'on' if c['capacity_rebalance'] else 'off'}; "
                f"{c['spot_members']} of {c['members']} members on Spot")
    return (f"{c['source']} + {len(c['types'])} types ({', '.join(c['types'][:4])}"
            f"{', ...' if len(c['types']) > 4 else ''}), price-capacity-optimized, "
            f"{c['on_demand_above_base_pct']} % on-demand above the base, Capacity Rebalancing "
            f"{'on' if c['capacity_rebalance'] else 'off'}; {c['spot_members']} of {c['members']} members on Spot")


# --- 5. outcome, 6. interruptions ----------------------------------------------------------------

def _outcome(report: dict) -> list[str]:
    out = ["5. Outcome", f"  {report['outcome']}"]
    r = report.get("realised")
    if r:
        groups = f" and {r['groups']} Auto Scaling group(s)" if r.get("groups") else ""
        out.append(f"  Realised savings: {_money(r['monthly_savings'])}/month ({r['savings_pct']} %) "
                   f"on {r['instances']} instance(s){groups}: "
                   f"{_money(r['monthly_on_demand'])} on-demand -> {_money(r['monthly_spot'])} now")
        if r.get("on_demand_fallbacks"):
            out.append(f"  {r['on_demand_fallbacks']} replacement(s) run on on-demand fallbacks, priced as such")
        out.append(f"  Net of {_money(r.get('monthly_stopped_storage', 0))}/month for the stopped originals' volumes "
                   "(kept for rollback)")
    if report.get("elapsed"):
        out.append(f"  Took {report['elapsed']:.1f} s of real time for {report.get('simulated_seconds', 0):,.0f} s "
                   "of bake and wait time (fast-forwarded)")
    if report.get("graph"):
        out.append(f"  Execution graph: {report['graph']} (open it in a browser)")
    return out


def _interruptions(interruptions: list[dict]) -> list[str]:
    return ["6. Spot interruptions (after the rollout)", *(_interruption(i) for i in interruptions)]


def _day2(day2: dict) -> list[str]:
    out = ["7. Day 2: back to on-demand, and back to Spot"]
    for step, what in (("revert", "Revert to on-demand"), ("return", "Return to Spot")):
        moves = day2.get(step)
        if not moves:
            continue
        gates = ", ".join("passed" if g else "FAILED" if g is False else "-" for g in moves["gates"])
        out.append(f"  {what}: {moves['migration_id']} {moves['outcome']} (waves {moves['waves']}, gates {gates}; "
                   f"plan {_money(moves['monthly_savings'])}/month)")
        out += [f"    {m['from']} ({m['from_type']}) -> {m['to']} ({m['market']} {m['to_type']})"
                for m in moves["moved"]]
        out += [f"    {s['instance_id']} stays: {s['reason']} ({s['detail']})" for s in moves.get("stayed", [])]
    return out


def _interruption(i: dict) -> str:
    if i.get("action") == "rehoming":
        if i.get("rehome_status") != "SUCCEEDED":
            return f"  {i['interrupted']} (stateful) warned -> its disks could not move on: {i.get('outcome')}"
        return (f"  {i['interrupted']} (stateful, {i['interrupted_pool']}) warned and stopped by EC2 -> its volumes, "
                f"interfaces and Elastic IPs moved to {i['successor']} ({i['market']} {i['successor_pool']}); "
                f"down {i['downtime_seconds']:.0f} s")
    if not i.get("launched"):
        return f"  {i['interrupted']}: {i.get('action') or i.get('error')}"
    return (f"  {i['interrupted']} ({i['interrupted_pool']}) warned -> {i['replacement_id']} launched as {i['market']} "
            f"{i['instance_type']} in {i['availability_zone']} {i['seconds_from_event_to_launch']:.2f} s "
            "after the warning; target groups swapped")
