"""Human-readable renderings of migrations for the terminal: lists, status, plans, progress."""

from __future__ import annotations

from spot_core.domain.plan import AgentVerdict, PlanSummary
from spot_core.domain.views import GroupView, MigrationDetail, MigrationPage, PlanEntry, WaveProgress

from .report import _money, _quality_change, _table

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
WAVE_STATE = {"pending": "pending", "migrating": "migrating", "baking": "baking", "passed": "PASS", "failed": "FAIL",
              "rolled_back": "rolled back"}


def progress_bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


def render_list(page: MigrationPage) -> str:
    if not page.items:
        return "No migrations."
    rows = [[m.migration_id, m.execution_status or "-", m.status or "-", (m.started_at or "-").replace("+00:00", "Z"),
             "dry run" if m.dry_run else "migration", "-" if m.candidates is None else str(m.candidates),
             _money(m.monthly_savings)] for m in page.items]
    out = _table(["migration", "execution", "status", "started", "kind", "candidates", "savings/mo"], rows)
    if page.next_token:
        out.append(f"  more: --next-token {page.next_token}")
    return "\n".join(out)


def wave_line(w: WaveProgress) -> str:
    line = (f"  wave {w.index + 1} {w.percent:>5g} %  {progress_bar(w.migrated, w.target_count)} "
            f"{w.migrated}/{w.target_count} migrated  {WAVE_STATE[w.state]:<10}")
    if w.failed:
        line += f"  {w.failed} failed"
    if w.skipped:
        line += f"  {w.skipped} skipped (no longer eligible)"
    if w.launching:
        line += f"  {w.launching} launching"
    g = w.gate
    if g:
        line += f"  quality: {_quality_change(g)}, score {g['score']:.2f} (limit {g['threshold_pct']:g})"
    elif w.state == "baking":
        line += f"  baking {w.bake_seconds} s"
    return line.rstrip()


def render_status(d: MigrationDetail) -> str:
    out = [*_status_head(d), *_plan_summary(d.summary)]
    out += [_verdict(v) for v in d.verdicts]
    out += _decision(d)
    if d.waves:
        out.append("  waves:")
        out += [wave_line(w) for w in d.waves]
    if d.realised:
        r = d.realised
        groups = f" and {r['groups']} Auto Scaling group(s)" if r.get("groups") else ""
        out.append(f"  realised savings: {_money(r.get('monthly_savings'))}/month ({r.get('savings_pct')} %) "
                   f"on {r.get('instances')} instance(s){groups}")
    out += _retention(d.retention)
    out += _groups(d.groups)
    out += _day2(d)
    if d.error:
        out.append(f"  error: {d.error}" + (f": {d.cause[:300]}" if d.cause else ""))
    return "\n".join(out)


def _day2(d: MigrationDetail) -> list[str]:
    """A revert says what it reverts; a migration lists its on-demand windows and when they fire next."""
    out = [f"  reverts migration {d.reverts}: its instances go back to on-demand"] if d.reverts else []
    if d.windows:
        out.append("  on-demand windows:")
    for w in d.windows:
        out.append(f"    {w.name}: {w.state}; opens {w.start}, closes {w.end} ({w.timezone}); next open "
                   f"{w.next_open or 'never'}, next close {w.next_close or 'never'}")
        if w.last_note:
            out.append(f"      last: {w.last_note}")
    return out


def _groups(groups: list[GroupView]) -> list[str]:
    """Each Auto Scaling group: its status and the Spot share each wave reached, or why it stays."""
    if not groups:
        return []
    out = ["  Auto Scaling groups:"]
    for g in groups:
        if not g.eligible:
            out.append(f"    {g.name}: excluded, {g.exclusion_reason} ({g.exclusion_detail})")
            continue
        shares = ", ".join(f"wave {int(w) + 1} {share:g} %" for w, share in sorted(g.spot_share_by_wave.items()))
        out.append(f"    {g.name}: {g.status}, {g.desired} instance(s), on-demand base {g.on_demand_base}, "
                   f"Spot share {shares or 'not moved yet'}; {_money(g.monthly_savings)}/month")
    return out


def _retention(retention: dict | None) -> list[str]:
    if not retention:
        return []
    if retention.get("state") == "retired":
        return [f"  stopped originals: retired ({retention.get('retired', 0)} terminated, their volumes kept as "
                "snapshots)"]
    return [f"  stopped originals: kept until {retention.get('until')} "
            f"(spotctl retention ID --days N extends; --days 0 retires them at the next sweep)"]


def _status_head(d: MigrationDetail) -> list[str]:
    head = f"Migration {d.migration_id}: {d.execution_status or 'no execution'} / {d.status or 'not analysed yet'}"
    if d.current_state:
        head += f"  (now in {d.current_state})"
    return [head, f"  started {d.started_at or '-'}" + (f", stopped {d.stopped_at}" if d.stopped_at else "")]


def _plan_summary(s: PlanSummary | None) -> list[str]:
    if not s:
        return []
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(s.excluded_by_reason.items())) or "none"
    return [f"  plan: {s.candidates} of {s.analysed} instance(s) to Spot, {s.excluded} excluded ({reasons})",
            f"  estimated savings: {_money(s.monthly_savings)}/month of {_money(s.monthly_on_demand)} "
            f"({s.savings_pct} %)"]


def _verdict(v: AgentVerdict) -> str:
    concern = f": {v.concerns[0]}" if v.concerns else ""
    return f"  {v.agent} agent: {'approved' if v.approved else 'VETO'} (confidence {v.confidence:.2f}){concern}"


def _decision(d: MigrationDetail) -> list[str]:
    """The customer's decision, or how to give it while the migration waits for one."""
    a = d.approval or {}
    if "approved" in a:
        reason = f": {a['reason']}" if a.get("reason") else ""
        return [f"  {'approved' if a['approved'] else 'rejected'} by {a.get('decided_by')} at {a.get('decided_at')}"
                + reason]
    if d.status == "awaiting_approval":
        return [f"  waiting for approval since {a.get('requested_at')} (timeout {a.get('timeout_seconds')} s): "
                f"spotctl approve {d.migration_id}  |  spotctl reject {d.migration_id} --reason '...'"]
    return []


def render_plan(d: MigrationDetail, entries: list[PlanEntry]) -> str:
    candidates = sorted((e for e in entries if e.eligible), key=lambda e: (-e.monthly_savings, e.instance_id))
    excluded = sorted((e for e in entries if not e.eligible), key=lambda e: (e.exclusion_reason or "", e.instance_id))
    out = [f"Plan {d.migration_id} (dry run: nothing was changed)", "", f"Candidates ({len(candidates)})"]
    out += _candidates_table(candidates)
    out += _what_moves(candidates)
    out += ["", f"Excluded ({len(excluded)})"]
    out += _excluded_table(excluded)
    out += _plan_groups(d.groups)
    if d.summary:
        out += ["", _plan_savings(d.summary)]
    out += [_plan_verdict(v) for v in d.verdicts]
    return "\n".join(out)


def _plan_groups(groups: list[GroupView]) -> list[str]:
    """The plan's Auto Scaling groups: the policy each moves to, or why it stays."""
    if not groups:
        return []
    out = ["", f"Auto Scaling groups ({len(groups)})"]
    for g in groups:
        if g.eligible:
            out.append(f"  {g.name}: {g.desired} instance(s) -> Spot wave by wave above an on-demand base of "
                       f"{g.on_demand_base}, over {', '.join(g.instance_types)} (price-capacity-optimized, "
                       f"Capacity Rebalancing); {_money(g.monthly_savings)}/month")
        else:
            out.append(f"  {g.name}: excluded, {g.exclusion_reason} ({g.exclusion_detail})")
    return out


def _plan_savings(s: PlanSummary) -> str:
    return (f"Savings: {_money(s.monthly_savings)}/month of {_money(s.monthly_on_demand)} on-demand "
            f"({s.savings_pct} %)  [prices: {s.pricing_source}]")


def _plan_verdict(v: AgentVerdict) -> str:
    concerns = f" - {'; '.join(v.concerns)}" if v.concerns else ""
    return f"  {v.agent} agent: {'approved' if v.approved else 'VETO'}{concerns}"


def _what_moves(candidates: list[PlanEntry]) -> list[str]:
    """What each move carries and changes, once per distinct answer (a fleet of one image reads once)."""
    alike: dict[tuple[str | None, tuple[str, ...], tuple[str, ...], int], list[str]] = {}
    for e in candidates:
        alike.setdefault((e.mode, tuple(e.carried), tuple(e.changed), e.downtime_seconds), []).append(e.instance_id)
    out = ["", "What moves"] if alike else []
    for (mode, carried, changed, downtime), ids in alike.items():
        who = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        out.append(f"  {mode or 'stateless'} ({who})" + (f": downtime about {downtime} s" if downtime else ""))
        out += [f"    carried: {c}" for c in carried] + [f"    changes: {c}" for c in changed]
    return out


def _candidates_table(candidates: list[PlanEntry]) -> list[str]:
    headers = ["instance", "name", "type", "az", "mode", "workload", "risk", "on-demand/mo", "spot/mo", "savings/mo"]
    return _table(headers, [
        [e.instance_id, (e.name or "")[:20], e.instance_type, e.availability_zone, e.mode or "-", e.workload, e.risk,
         _money(e.monthly_on_demand), _money(e.monthly_on_demand - e.monthly_savings),
         f"{_money(e.monthly_savings)} ({e.savings_pct:.0f} %)"] for e in candidates])


def _excluded_table(excluded: list[PlanEntry]) -> list[str]:
    return _table(["instance", "name", "type", "reason"], [
        [e.instance_id, (e.name or "")[:20], e.instance_type,
         (e.exclusion_reason or "") + (f": {e.exclusion_detail}" if e.exclusion_detail else "")] for e in excluded])
