"""Quality gates: the baseline captured before any change, and the gate after each bake that
compares the bake window with it (plus alarms, the health of every replacement, and the health
probes of the wave's replacements, run again).

Waits happen in Step Functions, so a gate with probes to run takes several invocations: the first
sends them and answers `pending` with how long to wait; the state machine waits and runs the gate
again until every probe is in (or one failed), and only then does the gate judge. A gate with no
probe to run judges in its first invocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..domain.clock import Clock, iso
from ..domain.errors import QualityGateFailed
from ..domain.health import HealthProbe, ProbeResult, StatusChecks, overdue
from ..domain.instances import Instance
from ..domain.plan import InstanceRecord, WaveSpec, group_by_target_group
from ..domain.quality import GateResult, QualitySample, evaluate_gate, needs_load_balancer, quality_metrics
from ..domain.request import MetricQuery, MigrationRequest, QualityConfig
from ..ports import Fleet, LoadBalancer, Metrics, MigrationRepository, PlanRepository, Probes
from .probing import probe_of, probe_results, send_probes

PROBES_PER_PASS = 100  # SendCommand calls an invocation makes at most (one per probe): the rest in the next one
PROBE_POLL_SECONDS = 10  # the wait before the probes' results are read again (a probe runs for seconds)
# wave_results.<wave>.gate_probes, until the verdict: the probes sent, ISO time sent -> instance id -> command id
GATE_PROBES = "gate_probes"
Rounds = dict[str, dict[str, str]]


def gate_metrics(load_balancer: LoadBalancer, quality: QualityConfig) -> dict[str, MetricQuery]:
    """The metrics the gates read (the ALB defaults need the target group's load balancer)."""
    balancer = load_balancer.load_balancer_of(quality.target_group_arn) \
        if quality.target_group_arn and needs_load_balancer(quality) else None
    return quality_metrics(quality, balancer)


@dataclass
class _Probing:
    """The wave's probes so far: whether it has any, how many have not concluded, those that failed."""

    probed: bool = False
    waiting: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # replacement id -> why

    @property
    def pending(self) -> bool:
        """No verdict yet; a failure decides at once (the rollback need not wait for the others)."""
        return self.waiting > 0 and not self.failed


@dataclass
class QualityGate:
    metrics: Metrics
    fleet: Fleet
    load_balancer: LoadBalancer
    migrations: MigrationRepository
    plans: PlanRepository
    clock: Clock
    probes: Probes

    def capture_baseline(self, migration_id: str) -> QualitySample:
        """The quality of the service before anything changes; the gates compare with it."""
        quality = MigrationRequest.model_validate(self.migrations.get(migration_id)["request"]).quality
        metrics = gate_metrics(self.load_balancer, quality)
        now = self.clock.now()
        sample = self.metrics.quality_sample(metrics, now - timedelta(minutes=quality.baseline_minutes), now)
        baseline = {"metrics": {k: v.model_dump() for k, v in metrics.items()}, "sample": sample.model_dump()}
        self.migrations.update(migration_id, baseline=baseline, status="migrating")
        return sample

    def run(self, migration_id: str, wave: WaveSpec, since: datetime) -> GateResult:
        """QualityGateFailed (the state machine rolls back) unless the bake window is as good as the
        baseline; a pending result (no verdict yet, none stored) while the wave's probes run."""
        item = self.migrations.get(migration_id)
        request = MigrationRequest.model_validate(item["request"])
        baseline = item.get("baseline") or {}
        baseline_sample = QualitySample.model_validate(baseline.get("sample") or {})
        migrated = [r for r in self.plans.records(migration_id) if r.status == "migrated"]
        unhealthy, checks = self._unhealthy(migrated)
        probing = self._probe(migration_id, wave.index, _rounds(item, wave.index),
                              _probed(migrated, wave.index, checks))
        if probing.pending:
            return GateResult.waiting(wave.index, request.quality.threshold_pct, baseline_sample, probing.waiting,
                                      PROBE_POLL_SECONDS)
        metrics = {k: MetricQuery.model_validate(v) for k, v in (baseline.get("metrics") or {}).items()}
        current = self.metrics.quality_sample(metrics, since, self.clock.now())
        result = evaluate_gate(
            wave.index, baseline_sample, current, request.quality.threshold_pct,
            alarms_in_alarm=self.metrics.alarms_in_alarm(request.quality.alarm_names),
            unhealthy_instances=unhealthy, failed_probes=probing.failed,
        )
        self.migrations.set_wave_result(migration_id, wave.index, "gate", result.model_dump())
        if probing.probed:  # the verdict is in: the command ids are no longer needed
            self.migrations.set_wave_result(migration_id, wave.index, GATE_PROBES, {})
        if not result.passed:
            raise QualityGateFailed(f"wave {wave.index + 1} ({wave.percent:g} %): " + "; ".join(result.reasons))
        return result

    def unhealthy_replacements(self, migration_id: str) -> list[str]:
        """Replacements of migrated instances that are no longer running, healthy in every target
        group of their original, or passing EC2's status checks (an impaired one fails the gate;
        one still initializing, just replaced after an interruption, does not yet)."""
        return self._unhealthy([r for r in self.plans.records(migration_id) if r.status == "migrated"])[0]

    def _unhealthy(self, migrated: list[InstanceRecord]) -> tuple[list[str], dict[str, StatusChecks]]:
        """The unhealthy replacements (see unhealthy_replacements), and the status checks read."""
        if not migrated:
            return [], {}
        ids = [r.replacement for r in migrated]
        instances, checks = self.fleet.describe(ids), self.fleet.status_checks(ids)
        health = self.load_balancer.target_states(
            group_by_target_group((r.replacement, ref) for r in migrated for ref in r.target_groups))
        unhealthy = [r.replacement for r in migrated if not _serving(r, instances, health, checks.get(r.replacement))]
        return unhealthy, checks

    def _probe(self, migration_id: str, wave: int, rounds: Rounds, targets: dict[str, HealthProbe]) -> _Probing:
        """Send the probes of `targets` (replacement id -> probe) not sent yet; once all are sent, read them."""
        if not targets:
            return _Probing()
        sent = _sent(rounds, targets)
        unsent = {i: p for i, p in targets.items() if i not in sent}
        refused = self._send(migration_id, wave, rounds, unsent)
        # Read once every probe is out: a large wave's passes that still send would read the same
        # probes again and again.
        judged = {} if unsent else self._read(sent, targets)
        concluded = {i: r for i, r in {**judged, **refused}.items() if r.state != "pending"}
        return _Probing(probed=True, waiting=len(targets) - len(concluded),
                        failed={i: r.detail for i, r in concluded.items() if r.state == "failed"})

    def _send(self, migration_id: str, wave: int, rounds: Rounds,
              unsent: dict[str, HealthProbe]) -> dict[str, ProbeResult]:
        """Send PROBES_PER_PASS of the probes not sent yet at most, and store their command ids (a
        round) for the next passes to read; the failures of those SSM cannot reach."""
        new, refused = send_probes(self.probes, dict(list(unsent.items())[:PROBES_PER_PASS]))
        if new:
            self.migrations.set_wave_result(migration_id, wave, GATE_PROBES, {**rounds, iso(self.clock.now()): new})
        return refused

    def _read(self, sent: dict[str, tuple[str, str]], targets: dict[str, HealthProbe]) -> dict[str, ProbeResult]:
        """Replacement id -> the result of its probe sent in an earlier pass (`sent`: replacement id
        -> (when, command id)); one still pending past its timeouts has failed."""
        now = self.clock.now()
        results = probe_results(self.probes, {i: command for i, (_, command) in sent.items()})
        return {i: overdue(results.get(i, ProbeResult(state="pending")), targets[i],
                           (now - datetime.fromisoformat(at)).total_seconds()) for i, (at, _) in sent.items()}


def _probed(migrated: list[InstanceRecord], wave: int, checks: Mapping[str, StatusChecks]) -> dict[str, HealthProbe]:
    """Replacement id -> the probe of the wave's migrated instances that have one, and whose
    replacement passes its status checks (one still initializing, just replaced after an
    interruption, is not probed yet; an impaired one already fails the gate)."""
    return {r.replacement: probe for r in migrated if r.wave == wave and (probe := probe_of(r)) is not None
            and getattr(checks.get(r.replacement), "passed", False)}


def _rounds(item: Mapping[str, Any], wave: int) -> Rounds:
    """The probes this wave's gate sent so far (GATE_PROBES)."""
    rounds: Rounds = ((item.get("wave_results") or {}).get(str(wave)) or {}).get(GATE_PROBES) or {}
    return rounds


def _sent(rounds: Rounds, targets: Mapping[str, HealthProbe]) -> dict[str, tuple[str, str]]:
    """Replacement id -> (when, command id) of the probes of `targets` sent in earlier passes."""
    return {i: (at, command) for at, commands in rounds.items() for i, command in commands.items() if i in targets}


def _serving(record: InstanceRecord, instances: Mapping[str, Instance], health: Mapping[tuple[str, str], str],
             checks: StatusChecks | None) -> bool:
    """The record's replacement runs, is healthy in every target group of its original, and no
    status check of it fails."""
    instance = instances.get(record.replacement)
    return instance is not None and instance.state == "running" and not (checks and checks.failed) \
        and all(health.get((ref.arn, record.replacement)) == "healthy" for ref in record.target_groups)
