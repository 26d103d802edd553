"""The three review agents, as pure functions over the plan records and their evidence,
and how their verdicts become the final plan.

Each agent returns an AgentVerdict; an agent vetoes (approved=False) when the migration as
a whole is unsafe, and excludes single instances when only they are.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from pydantic import BaseModel

from .plan import AGENTS, Agent, AgentVerdict, InstanceRecord, WaveSpec
from .quality import QualitySample
from .waves import plan_waves, wave_order

HOT_CPU_P95 = 85.0
VETO_EXCLUDED_SHARE = 0.5
MAX_IDS_IN_PAYLOAD = 100
FULL_DIVERSITY = 4  # pools per instance that count as fully diversified
STATEFUL_NAME = re.compile(
    r"(^|[-_. ])(db|database|mysql|mariadb|postgres|postgresql|mongo|mongodb|kafka|zookeeper|etcd|redis|elastic"
    r"|elasticsearch|opensearch|cassandra)([-_. 0-9]|$)",
    re.I,
)


@dataclass
class Findings:
    """What an agent found, before it becomes a verdict."""

    excluded: list[str] = field(default_factory=list)
    concerns: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)

    def exclude(self, instance_ids: list[str], concern: str) -> None:
        if instance_ids:
            self.excluded += instance_ids
            self.concerns.append(concern)

    def verdict(self, agent: Agent, candidates: list[InstanceRecord], confidence: float,
                veto_reason: str | None = None) -> AgentVerdict:
        share = len(self.excluded) / len(candidates) if candidates else 0.0
        approved = veto_reason is None and share < VETO_EXCLUDED_SHARE
        concerns = self.concerns
        if veto_reason:
            concerns = [veto_reason, *concerns]
        elif not approved:
            concerns = [f"{len(self.excluded)} of {len(candidates)} instances unsafe to move ({share:.0%}): "
                        "the plan is not viable", *concerns]
        return AgentVerdict(
            agent=agent, approved=approved, confidence=round(confidence, 2), concerns=concerns,
            recommendations=self.recommendations, excluded_instance_ids=sorted(self.excluded),
            excluded_count=len(self.excluded),
        )


# --- performance ------------------------------------------------------------------------------
def review_performance(candidates: list[InstanceRecord]) -> AgentVerdict:
    """CPU headroom, burst workloads and burstable types."""
    found = Findings()
    burst = [r.instance_id for r in candidates if r.workload == "burst"]
    found.exclude(burst, f"{len(burst)} burst workload(s) excluded: sharp CPU peaks make interruptions costly")
    hot = [r.instance_id for r in candidates if _hot(r) and r.instance_id not in burst]
    found.exclude(hot, f"{len(hot)} instance(s) with CPU p95 >= {HOT_CPU_P95:g} % excluded: "
                       "no headroom for a different Spot pool")
    _check_burstable(candidates, found)
    unknown = sum(1 for r in candidates if r.workload == "unknown")
    if unknown:
        found.concerns.append(f"{unknown} instance(s) without enough CPU history to classify")
    return found.verdict("performance", candidates, 1.0 - _share(unknown, candidates) * 0.5)


def _check_burstable(candidates: list[InstanceRecord], found: Findings) -> None:
    burstable = [r for r in candidates if r.burstable and r.instance_id not in found.excluded]
    if burstable:
        found.recommendations.append(
            f"{len(burstable)} burstable instance(s): keep 'unlimited' CPU credits on the Spot replacement")


def _hot(record: InstanceRecord) -> bool:
    return record.cpu_p95 is not None and record.cpu_p95 >= HOT_CPU_P95


def _share(count: int, candidates: list[InstanceRecord]) -> float:
    return count / len(candidates) if candidates else 0.0


# --- capacity -----------------------------------------------------------------------------------
def review_capacity(candidates: list[InstanceRecord],
                    recently_interrupted: Collection[tuple[str, str]] = frozenset()) -> AgentVerdict:
    """Pool diversity, AZ spread, pool concentration and recent interruptions."""
    found = Findings()
    single_pool = [r.instance_id for r in candidates if len(r.pools) < 2]
    found.exclude(single_pool, f"{len(single_pool)} instance(s) have a single Spot pool: "
                               "no fallback when it is reclaimed")
    kept = [r for r in candidates if r.instance_id not in found.excluded]
    _check_spread(kept, found)
    _check_concentration(kept, found)
    _check_recent_interruptions(kept, recently_interrupted, found)
    if kept:
        found.recommendations.append(
            "check the Spot vCPU quota (L-34B43A08) covers the replacements before the last wave")
    veto = "no instance has a Spot pool to fall back to" if candidates and not kept else None
    return found.verdict("capacity", candidates, 0.5 + 0.5 * _diversity(kept), veto)


def _diversity(kept: list[InstanceRecord]) -> float:
    """0 (no fallback pool anywhere) to 1 (every instance has FULL_DIVERSITY pools)."""
    if not kept:
        return 0.0
    return sum(min(len(r.pools), FULL_DIVERSITY) for r in kept) / (FULL_DIVERSITY * len(kept))


def _check_recent_interruptions(kept: list[InstanceRecord], recently_interrupted: Collection[tuple[str, str]],
                                found: Findings) -> None:
    hit = [r.instance_id for r in kept if r.pools and r.pools[0].key in recently_interrupted]
    if hit:
        found.concerns.append(f"{len(hit)} instance(s) would start in a pool interrupted recently; "
                              "later pools are tried first where possible")


def _check_spread(kept: list[InstanceRecord], found: Findings) -> None:
    azs = Counter(r.availability_zone for r in kept)
    if len(kept) >= 4 and len(azs) == 1:
        found.concerns.append(f"every instance is in {next(iter(azs))}: one AZ reclaim would hit the whole fleet")
        found.recommendations.append("spread the fleet over at least two Availability Zones")


def _check_concentration(kept: list[InstanceRecord], found: Findings) -> None:
    first_pools = Counter(r.pools[0].key for r in kept if r.pools)
    if len(kept) < 4 or not first_pools:
        return
    (ptype, paz), count = first_pools.most_common(1)[0]
    if count / len(kept) > 0.5:
        found.concerns.append(f"{count} of {len(kept)} replacements would share the pool {ptype}/{paz}")
        found.recommendations.append("allow more instance types so replacements spread over more pools")


# --- a revert (back to on-demand) ------------------------------------------------------------------
def review_revert(agent: Agent, candidates: list[InstanceRecord]) -> AgentVerdict:
    """Performance and capacity of a revert: each instance goes back to the type it ran on before
    its migration, on-demand, where EC2 reclaims nothing; what is left to check is the quota."""
    found = Findings()
    if agent == "capacity" and candidates:
        vcpu_note = "check the on-demand vCPU quota (L-1216C47A) covers the on-demand instances before the last wave"
        found.recommendations.append(vcpu_note)
    elif agent == "performance" and candidates:
        found.recommendations.append("each instance returns to the instance type it ran on before its migration")
    return found.verdict(agent, candidates, 1.0)


# --- application ----------------------------------------------------------------------------------
def review_application(candidates: list[InstanceRecord], baseline: QualitySample | None,
                       quality_configured: bool, reverting: bool = False) -> AgentVerdict:
    """Statefulness hints, load-balancer membership and whether a quality baseline exists."""
    found = Findings()
    # a stateful-looking name moving stateless would leave its data behind; one moving with its disks does not
    # (nor does a revert's instance: it runs stateless on Spot already)
    stateful = [r.instance_id for r in candidates
                if not reverting and r.mode != "stateful" and r.name and STATEFUL_NAME.search(r.name)]
    found.exclude(stateful, f"{len(stateful)} instance(s) look stateful by name (database, queue, ...) but would "
                            "move without their disks: excluded")
    _check_standalone(candidates, found)
    if not quality_configured:
        found.concerns.append("no quality metrics configured: gates check alarms and instance health only")
        return found.verdict("application", candidates, 0.6)
    if baseline is None or baseline.datapoints == 0:
        veto = "quality gates are configured but the baseline window has no data: the gates would be blind"
        return found.verdict("application", candidates, 0.3, veto)
    return found.verdict("application", candidates, 0.9)


def _check_standalone(candidates: list[InstanceRecord], found: Findings) -> None:
    standalone = [r for r in candidates if not r.target_groups and r.instance_id not in found.excluded]
    if standalone:
        found.concerns.append(f"{len(standalone)} instance(s) are in no target group: no health-checked traffic swap")
        found.recommendations.append(
            "put serving instances behind a load balancer so replacements take traffic only when healthy")


# --- from verdicts to the final plan ------------------------------------------------------------
def payload_verdict(verdict: AgentVerdict) -> AgentVerdict:
    """The verdict as the state machine carries it: at most MAX_IDS_IN_PAYLOAD excluded ids
    (the full list stays in the table)."""
    if len(verdict.excluded_instance_ids) <= MAX_IDS_IN_PAYLOAD:
        return verdict
    return verdict.model_copy(update={"excluded_instance_ids": verdict.excluded_instance_ids[:MAX_IDS_IN_PAYLOAD],
                                      "excluded_ids_truncated": True})


def missing_agents(verdicts: list[AgentVerdict]) -> list[str]:
    return sorted(set(AGENTS) - {v.agent for v in verdicts})


def apply_exclusions(records: list[InstanceRecord], verdicts: list[AgentVerdict]) -> list[InstanceRecord]:
    """Exclude what the agents excluded (the first agent's reason wins); returns the records changed."""
    by_id = {r.instance_id: r for r in records}
    changed = []
    for verdict in verdicts:
        for instance_id in verdict.excluded_instance_ids:
            record = by_id.get(instance_id)
            if record is not None and record.eligible:
                record.exclude(f"excluded_by_{verdict.agent}_agent", next(iter(verdict.concerns), None))
                changed.append(record)
    return changed


def assign_waves(records: list[InstanceRecord], percents: list[float], bake_seconds: list[int],
                 with_groups: bool = False) -> tuple[list[WaveSpec], list[InstanceRecord]]:
    """Cut the eligible records into waves, least risky first (every wave kept when Auto Scaling
    groups move too); returns the waves and the records changed."""
    eligible = wave_order([r for r in records if r.eligible])
    waves = plan_waves(len(eligible), percents, bake_seconds, keep_every_wave=with_groups)
    start = 0
    for wave in waves:
        for record in eligible[start:wave.cumulative]:
            record.wave = wave.index
        start = wave.cumulative
    return waves, eligible[:start]


class ReviewOutcome(BaseModel):
    """What ConsolidateReviews returns to the state machine."""

    approved: bool
    vetoed_by: list[str]
    candidates: int
    monthly_savings: float
    waves: list[WaveSpec]
