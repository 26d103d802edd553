"""The three review agents, as pure functions over the plan records and their evidence.

Each returns an AgentVerdict; an agent vetoes (approved=False) when the migration as a
whole is unsafe, and excludes single instances when only they are.
"""

from __future__ import annotations

import re
from collections import Counter

from .models import AgentVerdict, InstanceRecord
from .quality import QualitySample

HOT_CPU_P95 = 85.0
VETO_EXCLUDED_SHARE = 0.5
STATEFUL_NAME = re.compile(r"(^|[-_. ])(db|database|mysql|mariadb|postgres|postgresql|mongo|mongodb|kafka|zookeeper|etcd|redis|elastic|elasticsearch|opensearch|cassandra)([-_. 0-9]|$)", re.I)


def _verdict(agent: str, candidates: list[InstanceRecord], excluded: list[str], concerns: list[str],
             recommendations: list[str], confidence: float, veto_reason: str | None = None) -> AgentVerdict:
    share = len(excluded) / len(candidates) if candidates else 0.0
    approved = veto_reason is None and share < VETO_EXCLUDED_SHARE
    if veto_reason:
        concerns = [veto_reason, *concerns]
    elif not approved:
        concerns = [f"{len(excluded)} of {len(candidates)} instances unsafe to move ({share:.0%}): the plan is not viable", *concerns]
    return AgentVerdict(
        agent=agent, approved=approved, confidence=round(confidence, 2), concerns=concerns,
        recommendations=recommendations, excluded_instance_ids=sorted(excluded), excluded_count=len(excluded),
    )


def review_performance(candidates: list[InstanceRecord]) -> AgentVerdict:
    """CPU headroom, burst workloads and burstable types."""
    excluded, concerns, recs = [], [], []
    burst = [r.instance_id for r in candidates if r.workload == "burst"]
    hot = [r.instance_id for r in candidates if r.cpu_p95 is not None and r.cpu_p95 >= HOT_CPU_P95]
    if burst:
        excluded += burst
        concerns.append(f"{len(burst)} burst workload(s) excluded: sharp CPU peaks make interruptions costly")
    hot = [i for i in hot if i not in burst]
    if hot:
        excluded += hot
        concerns.append(f"{len(hot)} instance(s) with CPU p95 >= {HOT_CPU_P95:g} % excluded: no headroom for a different Spot pool")
    burstable = [r for r in candidates if r.burstable and r.instance_id not in excluded]
    if burstable:
        recs.append(f"{len(burstable)} burstable instance(s): keep 'unlimited' CPU credits on the Spot replacement")
    unknown = sum(1 for r in candidates if r.workload == "unknown")
    if unknown:
        concerns.append(f"{unknown} instance(s) without enough CPU history to classify")
    confidence = 1.0 - (unknown / len(candidates) if candidates else 0.0) * 0.5
    return _verdict("performance", candidates, excluded, concerns, recs, confidence)


def review_capacity(candidates: list[InstanceRecord], recently_interrupted: set[tuple[str, str]] = frozenset()) -> AgentVerdict:
    """Pool diversity, AZ spread, pool concentration and recent interruptions."""
    excluded, concerns, recs = [], [], []
    single_pool = [r.instance_id for r in candidates if len(r.pools) < 2]
    if single_pool:
        excluded += single_pool
        concerns.append(f"{len(single_pool)} instance(s) have a single Spot pool: no fallback when it is reclaimed")
    kept = [r for r in candidates if r.instance_id not in excluded]
    azs = Counter(r.availability_zone for r in kept)
    if len(kept) >= 4 and len(azs) == 1:
        concerns.append(f"every instance is in {next(iter(azs))}: one AZ reclaim would hit the whole fleet")
        recs.append("spread the fleet over at least two Availability Zones")
    first_pools = Counter((r.pools[0].instance_type, r.pools[0].availability_zone) for r in kept if r.pools)
    if kept and first_pools:
        (ptype, paz), count = first_pools.most_common(1)[0]
        if len(kept) >= 4 and count / len(kept) > 0.5:
            concerns.append(f"{count} of {len(kept)} replacements would share the pool {ptype}/{paz}")
            recs.append("allow more instance types so replacements spread over more pools")
    hit = [r.instance_id for r in kept if r.pools and (r.pools[0].instance_type, r.pools[0].availability_zone) in recently_interrupted]
    if hit:
        concerns.append(f"{len(hit)} instance(s) would start in a pool interrupted recently; later pools are tried first where possible")
    if kept:
        recs.append("check the Spot vCPU quota (L-34B43A08) covers the replacements before the last wave")
    diversity = sum(min(len(r.pools), 4) for r in kept) / (4 * len(kept)) if kept else 0.0
    veto = "no instance has a Spot pool to fall back to" if candidates and not kept else None
    return _verdict("capacity", candidates, excluded, concerns, recs, 0.5 + 0.5 * diversity, veto)


def review_application(candidates: list[InstanceRecord], baseline: QualitySample | None, quality_configured: bool) -> AgentVerdict:
    """Statefulness hints, load-balancer membership and whether a quality baseline exists."""
    excluded, concerns, recs = [], [], []
    stateful = [r.instance_id for r in candidates if r.name and STATEFUL_NAME.search(r.name)]
    if stateful:
        excluded += stateful
        concerns.append(f"{len(stateful)} instance(s) look stateful by name (database, queue, ...): excluded")
    standalone = [r for r in candidates if not r.target_groups and r.instance_id not in excluded]
    if standalone:
        concerns.append(f"{len(standalone)} instance(s) are in no target group: no health-checked traffic swap")
        recs.append("put serving instances behind a load balancer so replacements take traffic only when healthy")
    veto = None
    confidence = 0.9
    if quality_configured and (baseline is None or baseline.datapoints == 0):
        veto = "quality gates are configured but the baseline window has no data: the gates would be blind"
        confidence = 0.3
    elif not quality_configured:
        concerns.append("no quality metrics configured: gates check alarms and instance health only")
        confidence = 0.6
    return _verdict("application", candidates, excluded, concerns, recs, confidence, veto)
