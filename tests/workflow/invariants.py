"""What must hold of the fleet and the records after any run, however it was interrupted:
the invariants the crash-consistency and fault-matrix tests check, and the small scenarios
they run.

Each check returns a list of violations (plain sentences naming the instances and what was
observed), so a sweep can report every broken invariant of every crash point at once.

    world = observe(rt, [mid])
    violations = check_all(rt, world, result, originals)
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from spot_core.domain.outcomes import OUTCOMES
from spot_core.domain.plan import InstanceRecord
from spot_core.domain.tags import MANAGED_TAG, MIGRATION_ID_TAG, REPLACES_TAG, SUCCEEDS_TAG
from spotctl.local.runtime import TERMINAL, ExecutionResult

LIVE = ("pending", "running")
IN_USE = ("launching", "migrated", "rollback_failed")  # record statuses whose replacement still serves or may
# (status, error) of an execution -> the migration item status it must end with
ITEM_STATUS = {("SUCCEEDED", None): {"completed", "nothing_to_migrate", "planned"},
               ("FAILED", "MigrationRolledBack"): {"rolled_back"},
               ("FAILED", "RollbackFailed"): {"rollback_failed"}}


# --- what the world looks like ------------------------------------------------------------------
@dataclass
class World:
    instances: dict[str, dict[str, Any]]  # id -> {"state", "tags", "spot"}
    health: dict[str, dict[str, str]]  # target group arn -> instance id -> health state
    records: dict[str, list[InstanceRecord]]  # migration id -> its plan
    items: dict[str, dict[str, Any]]  # migration id -> the migration item (absent: never written)
    claims: list[dict[str, Any]]
    registry: dict[str, str]  # managed instance id -> registry status
    notes: list[str] = field(default_factory=list)

    def state(self, instance_id: str | None) -> str:
        return self.instances.get(instance_id or "", {}).get("state", "unknown")

    def live(self, instance_id: str | None) -> bool:
        return self.state(instance_id) in LIVE

    def healthy_in(self, instance_id: str, target_groups: list[str]) -> bool:
        return all(self.health.get(arn, {}).get(instance_id) == "healthy" for arn in target_groups)

    def serving(self, instance_id: str | None, target_groups: list[str]) -> bool:
        """Running, and healthy in every target group it must serve in."""
        return self.state(instance_id) == "running" and self.healthy_in(instance_id or "", target_groups)

    def managed_live(self) -> dict[str, dict[str, str]]:
        return {i: d["tags"] for i, d in self.instances.items()
                if d["state"] in LIVE and d["tags"].get(MANAGED_TAG) == "true"}

    def root(self, instance_id: str) -> str:
        """The original an instance ultimately stands in for: its `replaces` tag, or the start
        of its chain of `succeeds` tags (interruption replacements of managed instances)."""
        seen: set[str] = set()
        current = instance_id
        while current not in seen:
            seen.add(current)
            tags = self.instances.get(current, {}).get("tags", {})
            if tags.get(REPLACES_TAG):
                return tags[REPLACES_TAG]
            if not tags.get(SUCCEEDS_TAG):
                return current
            current = tags[SUCCEEDS_TAG]
        return current

    def replacements_of(self, original: str) -> list[str]:
        """The live instances launched to stand in for `original` (directly or down a chain)."""
        return sorted(i for i, tags in self.managed_live().items()
                      if (tags.get(REPLACES_TAG) or tags.get(SUCCEEDS_TAG)) and self.root(i) == original
                      and i != original)

    def all_records(self) -> list[tuple[str, InstanceRecord]]:
        return [(mid, r) for mid, recs in self.records.items() for r in recs]

    def in_use(self) -> dict[str, str]:
        """Live managed instances something still uses -> by what."""
        used = {r.replacement_id: f"record {r.instance_id} ({mid}, {r.status})" for mid, r in self.all_records()
                if r.replacement_id and r.status in IN_USE}
        for c in self.claims:
            if c.get("replacement_id") and c.get("status") not in ("retired",):
                used.setdefault(c["replacement_id"], f"claim of {c.get('instance_id')} ({c.get('status')})")
        return used

    def describe(self, instance_id: str | None) -> str:
        d = self.instances.get(instance_id or "")
        if not d:
            return f"{instance_id} (unknown to EC2)"
        facts = [d["state"]] + (["spot"] if d["spot"] else [])
        facts += [f"{arn.rsplit('/', 2)[-2]}:{h[instance_id]}" for arn, h in self.health.items() if instance_id in h]
        return f"{instance_id} ({', '.join(facts)})"


def observe(rt: Any, migration_ids: list[str], target_groups: list[str] | None = None) -> World:
    """Read EC2, the load balancer and the table once."""
    ec2, elbv2 = rt.client("ec2"), rt.client("elbv2")
    instances: dict[str, dict[str, Any]] = {}
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page["Reservations"]:
            for i in reservation["Instances"]:
                instances[i["InstanceId"]] = {"state": i["State"]["Name"], "spot": i.get("InstanceLifecycle") == "spot",
                                              "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])}}
    records, items = {}, {}
    for mid in migration_ids:
        records[mid] = rt.records(mid)
        with contextlib.suppress(Exception):  # never written: the run ended before the plan
            items[mid] = rt.migration(mid)
    arns = set(target_groups or ())
    if getattr(rt.fleet, "target_group_arn", None):
        arns.add(rt.fleet.target_group_arn)
    arns |= {ref.arn for recs in records.values() for r in recs for ref in r.target_groups}
    health = {}
    for arn in sorted(arns):
        described = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        health[arn] = {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in described}
    claims = rt.wiring.claims.all()
    managed = [i for i, d in instances.items() if d["tags"].get(MANAGED_TAG) == "true"]
    registry = rt.wiring.registry.statuses(managed) if managed else {}
    return World(instances, health, records, items, claims, registry)


# --- the invariants ------------------------------------------------------------------------------
def at_most_one_live_replacement(w: World) -> list[str]:
    """At most one live (pending/running) replacement per original."""
    by_original: dict[str, list[str]] = defaultdict(list)
    for iid, tags in w.managed_live().items():
        if tags.get(REPLACES_TAG) or tags.get(SUCCEEDS_TAG):
            by_original[w.root(iid)].append(iid)
    return [f"one-replacement: original {o} has {len(ids)} live replacements: "
            + ", ".join(w.describe(i) for i in sorted(ids)) for o, ids in sorted(by_original.items()) if len(ids) > 1]


def originals_served(w: World, originals: dict[str, list[str]]) -> list[str]:
    """Every original serves (running, healthy in each of its target groups) or has a serving
    replacement. ``originals``: instance id -> the target groups it served in at the start."""
    out = []
    for original, groups in sorted(originals.items()):
        if w.serving(original, groups):
            continue
        replacements = w.replacements_of(original)
        if any(w.serving(r, groups) for r in replacements):
            continue
        out.append(f"served: original {w.describe(original)} does not serve and has no serving replacement "
                   f"(live replacements: {', '.join(w.describe(r) for r in replacements) or 'none'})")
    return out


def no_unknown_managed(w: World, known: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """No managed instance runs that no record (plan records, replacement claims) knows."""
    recorded = {r.replacement_id for _, r in w.all_records() if r.replacement_id}
    recorded |= {c.get("replacement_id") for c in w.claims if c.get("replacement_id")}
    recorded |= {c.get("instance_id") for c in w.claims if c.get("instance_id")}
    return [f"unknown-managed: {w.describe(i)} is a live managed instance no record knows "
            f"(migration {tags.get(MIGRATION_ID_TAG, '-')}, replaces {tags.get(REPLACES_TAG, '-')}, "
            f"succeeds {tags.get(SUCCEEDS_TAG, '-')}, registry {w.registry.get(i, 'unknown')})"
            for i, tags in sorted(w.managed_live().items()) if i not in recorded and i not in known]


def no_leaked_replacement(w: World, known: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """A live managed instance that records know must still be in use by one of them (a record
    that says rolled back / failed while its replacement runs leaks that instance)."""
    used = w.in_use()
    claimed = {c.get("instance_id") for c in w.claims}
    out = []
    for iid in sorted(w.managed_live()):
        if iid in used or iid in known or iid in claimed:
            continue
        said = [f"{r.instance_id} ({mid}): {r.status}" for mid, r in w.all_records() if r.replacement_id == iid]
        if said:
            out.append(f"leaked: {w.describe(iid)} is live but the records that know it are done with it: "
                       + "; ".join(said))
    return out


def sweeper_orphans(rt: Any) -> set[str]:
    """What the orphan sweeper (the real function, report mode, no grace period) would call
    an orphan now."""
    rt.lambdas.environment.update({"SWEEPER_GRACE_SECONDS": "0", "SWEEPER_MODE": "report"})
    response = rt.client("lambda").invoke(FunctionName="spot-migration-sweep_orphans", Payload=b"{}")
    answer = json.loads(response["Payload"].read() or b"{}")
    if "FunctionError" in response:
        raise AssertionError(f"the sweeper failed: {answer}")
    return {o["instance_id"] for o in answer.get("orphans", [])}


def sweeper_keeps_what_is_in_use(w: World, orphans: set[str]) -> list[str]:
    """What is in use is accounted for by the orphan sweeper (``orphans``: what it would call
    an orphan); otherwise the sweeper in terminate mode would terminate a serving replacement."""
    return [f"sweeper: {w.describe(i)} is in use ({why}) but the orphan sweeper takes it for an orphan "
            f"(registry: {w.registry.get(i, 'unknown')})"
            for i, why in sorted(w.in_use().items()) if w.live(i) and i in orphans]


def records_agree_with_the_fleet(w: World, ended: bool = True) -> list[str]:
    """Each record says what the fleet shows: a migrated record's replacement runs and its
    original is stopped; a rolled-back record's original runs and its replacement is gone;
    a failed record's replacement (if any) is gone; nothing is still launching once the
    execution has ended."""
    out = []
    for mid, r in w.all_records():
        rep, orig = r.replacement_id, r.instance_id
        if r.status == "migrated" and not (w.live(rep) and w.state(orig) in ("stopped", "stopping")):
            out.append(f"record: {orig} ({mid}) says migrated, but original {w.describe(orig)}, "
                       f"replacement {w.describe(rep)}")
        elif r.status == "rolled_back" and (w.live(rep) or w.state(orig) != "running"):
            out.append(f"record: {orig} ({mid}) says rolled_back, but original {w.describe(orig)}, "
                       f"replacement {w.describe(rep)}")
        elif r.status == "failed" and rep and w.live(rep):
            out.append(f"record: {orig} ({mid}) says failed, but its replacement {w.describe(rep)} is live")
        elif ended and r.status == "launching":
            out.append(f"record: {orig} ({mid}) still says launching after the execution ended "
                       f"(original {w.describe(orig)}, replacement {w.describe(rep)})")
    return out


def ended_terminal(w: World, result: ExecutionResult | None) -> list[str]:
    """The execution ended, and the migration item is in a terminal status agreeing with it."""
    if result is None:
        return []
    out = []
    if result.status not in TERMINAL:
        out.append(f"terminal: execution {result.migration_id} is still {result.status}")
    item = w.items.get(result.migration_id)
    if item is None:
        return out  # nothing was written: the run ended before the plan (checked by the fleet checks)
    status = item.get("status")
    if status not in OUTCOMES:
        out.append(f"terminal: migration item {result.migration_id} is left '{status}' "
                   f"(execution {result.status} {result.error or ''})")
    expected = ITEM_STATUS.get((result.status, result.error))
    if expected and status not in expected:
        out.append(f"terminal: execution {result.status} {result.error or ''} but migration item '{status}'")
    return out


def rollback_restored_or_named(rt: Any, w: World, result: ExecutionResult | None, before: dict,
                               originals: dict[str, list[str]]) -> list[str]:
    """After a rollback the fleet is exactly as before (originals running and registered, no
    replacement running), or the execution ended RollbackFailed naming each kept instance."""
    if result is None or result.error not in ("MigrationRolledBack", "RollbackFailed"):
        return []
    after = rt.fleet.snapshot()
    if after == before:
        return []
    if result.error == "MigrationRolledBack":
        return ["restored: ended MigrationRolledBack but the fleet is not as it was: " + _diff(before, after)]
    item = w.items.get(result.migration_id, {})
    said = json.dumps(item, default=str) + " " + (result.cause or "")
    out = []
    for original, groups in sorted(originals.items()):
        if w.serving(original, groups) and not w.replacements_of(original):
            continue  # restored
        if original not in said:
            out.append(f"restored: RollbackFailed does not name {w.describe(original)}, which is not restored "
                       f"(replacements {', '.join(w.describe(r) for r in w.replacements_of(original)) or 'none'})")
    return out


def _diff(before: dict, after: dict) -> str:
    parts = []
    for key in sorted(set(before) | set(after)):
        gone, new = before.get(key, set()) - after.get(key, set()), after.get(key, set()) - before.get(key, set())
        if gone or new:
            parts.append(f"{key}: -{sorted(gone)} +{sorted(new)}")
    return "; ".join(parts)


def check_all(rt: Any, w: World, result: ExecutionResult | None, originals: dict[str, list[str]],
              before: dict | None = None, known: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Every invariant; ``before``: the fleet snapshot to restore to after a rollback."""
    ended = result is None or result.status in TERMINAL
    orphans = sweeper_orphans(rt)  # after everything else was read: it may finish expired prewarms
    return [
        *ended_terminal(w, result),
        *at_most_one_live_replacement(w),
        *originals_served(w, originals),
        *no_unknown_managed(w, known),
        *no_leaked_replacement(w, known),
        *sweeper_keeps_what_is_in_use(w, orphans),
        *records_agree_with_the_fleet(w, ended),
        *(rollback_restored_or_named(rt, w, result, before, originals) if before is not None else []),
    ]


# --- the small scenarios -------------------------------------------------------------------------
@dataclass
class SmallFleet:
    """Opted-in web instances behind the ALB and one worker in no target group."""

    web: list[str]
    worker: list[str]
    originals: dict[str, list[str]]  # id -> target groups it serves in
    before: dict

    @property
    def target_group_arn(self) -> str:
        return next(g for groups in self.originals.values() for g in groups)


def small_fleet(rt: Any, web: int = 3) -> SmallFleet:
    """``web`` instances behind the ALB and one worker in no target group, all opted in. moto's
    ids are seeded, so the plan's records (ordered by instance id) come in the same order in
    every run, and the k-th mutating call of a run is the same step for the same instance."""
    from moto.moto_api._internal import mock_random

    mock_random.seed(rt.seed)
    groups = rt.fleet.seed_fleet(web, stateful=0, burst=0, cpu_days=2)
    worker = rt.fleet.launch("m5.large", "worker", "us-east-1b", register=False)
    rt.fleet.write_cpu_history(dict.fromkeys(worker, "stable"), days=2)
    originals = {i: [rt.fleet.target_group_arn] for i in groups["web"]} | dict.fromkeys(worker, [])
    return SmallFleet(groups["web"], worker, originals, rt.fleet.snapshot())


def request(rt: Any, waves: list[int] | None = None, bake: int = 60) -> dict:
    """Auto-approved, gated on the fleet's target group, a short bake per wave."""
    waves = waves or [100]
    return {"approval": {"auto_approve": True}, "quality": {"target_group_arn": rt.fleet.target_group_arn},
            "waves": waves, "bake_seconds": [bake] * len(waves)}
