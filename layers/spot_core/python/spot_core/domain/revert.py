"""A revert: the instances a completed migration moved to Spot go back to on-demand.

It is a migration in the other direction, planned from the migration it reverts: each
instance that migration moved is followed to the instance that serves for it now (an
interruption may have replaced the Spot replacement since), and that Spot instance is
replaced, make-before-break, by an on-demand instance of the original's type in the same
zone. The Spot instance is not stopped (EC2 cannot stop a one-time Spot instance): it stays
running out of its target groups until the revert ends, so a rollback of the revert puts
back exactly the fleet it started from, and is terminated then.
"""

from __future__ import annotations

from collections.abc import Mapping

from .analysis import InstanceFacts, revert_exclusion
from .errors import InvalidMigrationRequest
from .plan import InstanceRecord, Pool, TargetRef
from .pricing import HOURS_PER_MONTH
from .request import RevertOf
from .tags import is_opted_in

REVERTIBLE_STATUSES = ("completed",)
UNKNOWN_SHOWN = 20


def check_revertible(migration_id: str, item: Mapping[str, object] | None) -> None:
    """Only a completed migration (it ran to its end, nothing in flight) is reverted."""
    if item is None:
        raise InvalidMigrationRequest(f"invalid migration request: revert.migration_id: no migration {migration_id!r}")
    status = item.get("status")
    if status not in REVERTIBLE_STATUSES:
        raise InvalidMigrationRequest(f"invalid migration request: revert.migration_id: migration {migration_id!r} "
                                      f"is {status}; only a completed migration can be reverted")
    request = item.get("request")
    if isinstance(request, Mapping) and request.get("revert"):
        raise InvalidMigrationRequest(f"invalid migration request: revert.migration_id: {migration_id!r} is itself "
                                      "a revert; migrate its instances to take them back to Spot")


def reverted_records(source: list[InstanceRecord], revert: RevertOf) -> list[InstanceRecord]:
    """The records of the source migration the revert takes: every migrated one, or those named
    (by the original's id or the current instance's); a name that matches none is an error."""
    migrated = [r for r in source if r.status == "migrated" and r.replacement_id]
    if not revert.instance_ids:
        return migrated
    by_name = {name: r for r in migrated for name in (r.instance_id, r.replacement)}
    _check_known(revert, by_name)
    return list({r.instance_id: r for r in (by_name[i] for i in revert.instance_ids)}.values())


def _check_known(revert: RevertOf, by_name: Mapping[str, InstanceRecord]) -> None:
    unknown = [i for i in revert.instance_ids if i not in by_name]
    if unknown:
        raise InvalidMigrationRequest(
            f"invalid migration request: revert.instance_ids: not moved to Spot by migration {revert.migration_id!r} "
            f"(or not on record as migrated): {', '.join(unknown[:UNKNOWN_SHOWN])}")


def revert_record(source: InstanceRecord, current: InstanceFacts | None, on_demand_hourly: float | None,
                  target_groups: list[TargetRef]) -> InstanceRecord:
    """The plan record of one instance going back: the current Spot instance, replaced by an
    on-demand instance of the original's type in its zone; excluded with a reason when it cannot."""
    current_id = source.replacement
    record = InstanceRecord(
        instance_id=current_id, **_where(source, current), name=source.name, workload=source.workload,
        cpu_mean=source.cpu_mean, cpu_p95=source.cpu_p95, cpu_max=source.cpu_max,
        risk="low", burstable=source.burstable, target_groups=target_groups, eligible=True,
        mode=source.mode, carry=source.carry,
        attempts=[f"reverts {source.instance_id} (migration's original), now served by {current_id}"],
    )
    why = _why_not(source, current, on_demand_hourly)
    if why is not None:
        record.exclude(*why)
        return record
    assert current is not None and on_demand_hourly is not None  # _why_not said so
    record.pools = [Pool(instance_type=source.instance_type, availability_zone=current.availability_zone,
                         spot_hourly=on_demand_hourly, market="on-demand")]
    _price(record, on_demand_hourly, source.replacement_spot_hourly or 0.0)
    return record


def _where(source: InstanceRecord, current: InstanceFacts | None) -> dict[str, str | None]:
    """The current instance's type, zone and subnet (as the source last knew them when it is gone)."""
    if current is None:
        return {"instance_type": source.replacement_type or "", "availability_zone": source.replacement_az or "",
                "subnet_id": source.subnet_id}
    return {"instance_type": current.instance_type, "availability_zone": current.availability_zone,
            "subnet_id": current.subnet_id}


def _price(record: InstanceRecord, on_demand_hourly: float, spot_hourly: float) -> None:
    """What going back costs a month: negative savings (on-demand less the Spot price it runs at)."""
    record.on_demand_hourly, record.spot_hourly = on_demand_hourly, on_demand_hourly
    record.monthly_on_demand = round(on_demand_hourly * HOURS_PER_MONTH, 2)
    record.monthly_savings = round((spot_hourly - on_demand_hourly) * HOURS_PER_MONTH, 2)
    record.savings_pct = round(100.0 * record.monthly_savings / record.monthly_on_demand, 1) \
        if record.monthly_on_demand else 0.0


def _why_not(source: InstanceRecord, current: InstanceFacts | None,
             on_demand_hourly: float | None) -> tuple[str, str] | None:
    if current is None:
        return "not_running", f"{source.replacement_id} (serving for {source.instance_id}) no longer exists"
    if not is_opted_in(current.tags):
        return "not_opted_in", f"{current.instance_id} is no longer tagged opt-in"
    excluded = revert_exclusion(current)
    if excluded is not None:
        return excluded
    if source.mode == "stateful":
        return "stateful_revert", ("moved with its disks (stateful): a revert moves stateless instances only; "
                                   "a rollback of the migration, or the stateful re-home, handles it")
    if on_demand_hourly is None:
        return "no_on_demand_price", f"no on-demand price for {source.instance_type}"
    return None
