"""Turns the three agents' verdicts into the final plan: exclusions applied, waves assigned."""

from __future__ import annotations

from .analysis import plan_waves, summarize, wave_order
from .models import MigrationRequest
from .store import MigrationStore


def consolidate(migration_id: str, *, store: MigrationStore) -> dict:
    item = store.get(migration_id)
    request = MigrationRequest.model_validate(item["request"])
    verdicts = store.verdicts(migration_id)  # full exclusion lists live in the table
    missing = {"performance", "capacity", "application"} - {v.agent for v in verdicts}
    if missing:
        raise RuntimeError(f"missing verdict(s) from {', '.join(sorted(missing))}")
    records = store.records(migration_id)
    by_id = {r.instance_id: r for r in records}
    changed = []
    for verdict in verdicts:
        for iid in verdict.excluded_instance_ids:
            record = by_id.get(iid)
            if record is not None and record.eligible:
                record.eligible, record.status = False, "excluded"
                record.exclusion_reason = f"excluded_by_{verdict.agent}_agent"
                record.exclusion_detail = next((c for c in verdict.concerns), None)
                changed.append(record)
    vetoed_by = [v.agent for v in verdicts if not v.approved]
    eligible = wave_order([r for r in records if r.eligible])
    waves = plan_waves(len(eligible), request.waves, request.bake_seconds) if not vetoed_by else []
    start = 0
    for wave in waves:
        for record in eligible[start:wave.cumulative]:
            record.wave = wave.index
            changed.append(record)
        start = wave.cumulative
    store.put_records(migration_id, {r.instance_id: r for r in changed}.values())
    summary = summarize(records, item.get("summary", {}).get("pricing_source", "unknown"))
    store.update(
        migration_id,
        status="vetoed" if vetoed_by else "reviewed",
        summary=summary.model_dump(),
        waves=[w.model_dump() for w in waves],
        verdicts=[v.model_dump(exclude={"excluded_instance_ids"}) for v in verdicts],
    )
    return {
        "approved": not vetoed_by,
        "vetoed_by": vetoed_by,
        "candidates": summary.candidates,
        "monthly_savings": summary.monthly_savings,
        "waves": [w.model_dump() for w in waves],
    }
