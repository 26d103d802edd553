"""The analysis service: gather facts through the adapters, run the pure analysis, store
the plan. API calls grow with pages, distinct instance types and target groups, never
with instances (CPU history is read 500 instances a call)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import OPT_IN_TAG, fleet, telemetry
from .analysis import InstanceFacts, build_record, order_pools, summarize
from .errors import InvalidMigrationRequest
from .instance_types import equivalent_types
from .models import InstanceRecord, MigrationRequest, PlanSummary, Pool
from .pricing import OnDemandPricer, fetch_spot_price_history, spot_price_statistics
from .store import MigrationStore


def candidate_types(facts: list[InstanceFacts]) -> set[str]:
    types = {f.instance_type for f in facts}
    for t in list(types):
        types.update(equivalent_types(t))
    return types


def pools_for(facts: InstanceFacts, spot: dict[tuple[str, str], Any], avoid: set[tuple[str, str]]) -> list[Pool]:
    pools = [
        Pool(instance_type=t, availability_zone=facts.availability_zone, spot_hourly=round(spot[(t, facts.availability_zone)].median, 5))
        for t in [facts.instance_type, *equivalent_types(facts.instance_type)]
        if (t, facts.availability_zone) in spot
    ]
    return order_pools(facts.instance_type, pools, avoid)


def analyse(
    migration_id: str,
    request: MigrationRequest,
    *,
    ec2: Any,
    cloudwatch: Any,
    elbv2: Any,
    pricer: OnDemandPricer,
    store: MigrationStore,
    now: datetime,
    recently_interrupted: set[tuple[str, str]] = frozenset(),
) -> PlanSummary:
    instances = fleet.find_instances(ec2, request.selector)
    missing = sorted(set(request.selector.instance_ids) - {i["InstanceId"] for i in instances})
    if missing:  # before anything is written
        raise InvalidMigrationRequest(f"invalid migration request: selector.instance_ids: no such (live) instance: {', '.join(missing[:20])}")
    store.create(migration_id, request.model_dump())
    traits = fleet.instance_type_traits(ec2, {i["InstanceType"] for i in instances})
    facts = [fleet.to_facts(i, traits) for i in instances]

    opted_in = [f for f in facts if f.tags.get(OPT_IN_TAG, "").lower() == "true"]
    movable_types = candidate_types(opted_in)
    on_demand = pricer.prices({f.instance_type for f in opted_in}, strict=False)
    spot = spot_price_statistics(fetch_spot_price_history(ec2, sorted(movable_types), now), now)
    cpu = telemetry.cpu_utilisation(cloudwatch, [f.instance_id for f in opted_in], now)
    membership = fleet.target_group_membership(elbv2) if opted_in else {}

    records: list[InstanceRecord] = []
    for f in facts:
        if f not in opted_in:
            records.append(InstanceRecord(
                instance_id=f.instance_id, instance_type=f.instance_type, availability_zone=f.availability_zone,
                subnet_id=f.subnet_id, name=f.name, eligible=False, status="excluded",
                exclusion_reason="not_opted_in", exclusion_detail=f"not tagged {OPT_IN_TAG}=true",
            ))
            continue
        records.append(build_record(
            f,
            on_demand_hourly=on_demand.get(f.instance_type),
            pools=pools_for(f, spot, recently_interrupted),
            cpu_values=cpu.get(f.instance_id, []),
            target_groups=membership.get(f.instance_id, []),
            min_savings_pct=request.min_savings_pct,
        ))
    store.put_records(migration_id, records)
    summary = summarize(records, pricer.source_used)
    store.update(migration_id, status="planned", summary=summary.model_dump())
    return summary
