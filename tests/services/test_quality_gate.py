"""The quality gate runs the health probe of each of the wave's migrated instances again (both
modes), as the state machine drives it: the first invocation sends the probes and answers pending,
the next ones (after the Wait they ask for) read them, and the gate judges once they are in; a
probe that fails or runs past its timeout fails the gate, naming the replacement and why. Without
probes the gate judges in one invocation, as it always did."""

from __future__ import annotations

import pytest
from builders import MID, migrate, records, replacement_of, serving
from fakes import Ports
from test_carry_stateful import plan_stateful
from test_carry_stateless import plan_stateless

from spot_core.domain.errors import QualityGateFailed
from spot_core.domain.health import HealthProbe
from spot_core.domain.plan import WaveSpec
from spot_core.domain.quality import GateResult
from spot_core.services import quality_gate
from spot_core.services.quality_gate import GATE_PROBES, QualityGate

PROBE = HealthProbe(command="curl -fsS localhost:8080/health", timeout_seconds=30)
PLANNERS = {"stateless": plan_stateless, "stateful": plan_stateful}


def gate(p: Ports) -> QualityGate:
    return QualityGate(p.metrics, p.fleet, p.load_balancer, p.migrations, p.plans, p.clock, p.probes)


def run_gate(p: Ports, wave: WaveSpec, invocations: int = 30) -> list[GateResult]:
    """The gate as the state machine runs it: again after each Wait it asks for, until it has a
    verdict; every result (QualityGateFailed propagates)."""
    since = p.clock.now()
    results: list[GateResult] = []
    for _ in range(invocations):
        results.append(gate(p).run(MID, wave, since))
        if not results[-1].pending:
            return results
        p.clock.sleep(results[-1].wait_seconds)
    raise AssertionError(f"no verdict after {invocations} invocations")


def migrated(p: Ports, mode: str, count: int = 2, probe: HealthProbe | None = PROBE) -> tuple[WaveSpec, list[str]]:
    """A wave of `count` instances migrated in `mode`, proven by `probe`; their replacements."""
    originals = serving(p, count)
    wave = PLANNERS[mode](p, originals, probe=probe)
    migrate(p, wave)
    assert {r.status for r in records(p).values()} == {"migrated"}
    p.world.calls.clear()
    return wave, sorted(replacement_of(p, o) for o in originals)


def stored(p: Ports) -> dict:
    return p.migrations.items[MID]["wave_results"]["0"]


@pytest.mark.parametrize("mode", PLANNERS)
def test_the_gate_runs_the_waves_probes_again_and_passes_once_they_pass(p, mode):
    wave, replacements = migrated(p, mode)
    sent_by_the_wave = len(p.probes.sent)

    results = run_gate(p, wave)

    assert [r.pending for r in results] == [True] * (len(results) - 1) + [False]
    assert len(results) > 1 and all(r.wait_seconds > 0 for r in results[:-1])
    assert results[-1].passed and results[-1].failed_probes == []
    assert sorted(p.probes.sent[sent_by_the_wave:]) == [(r, PROBE) for r in replacements]  # once each
    assert stored(p)["gate"]["passed"] is True and stored(p)[GATE_PROBES] == {}  # the commands are forgotten


@pytest.mark.parametrize("mode", PLANNERS)
def test_a_probe_that_fails_after_the_wave_migrated_fails_the_gate_naming_the_replacement(p, mode):
    wave, replacements = migrated(p, mode)
    p.probes.failing = {replacements[1]}

    with pytest.raises(QualityGateFailed, match=rf"health probe failed on 1 replacement\(s\): "
                                                rf"{replacements[1]} \(Failed \(exit 1\)\)"):
        run_gate(p, wave)

    gate_result = stored(p)["gate"]
    assert gate_result["passed"] is False and gate_result["failed_probes"] == [replacements[1]]


def test_a_probe_still_running_past_its_timeout_fails_the_gate(p):
    wave, replacements = migrated(p, "stateless", count=1)
    p.probes.pending_passes = 10**6  # SSM never says: the gate's own deadline decides

    started = p.clock.monotonic()
    with pytest.raises(QualityGateFailed, match=rf"{replacements[0]} \(still running after \d+ s \(timeout 30 s\)\)"):
        run_gate(p, wave)

    assert 30 + 30 < p.clock.monotonic() - started < 30 + 30 + 2 * quality_gate.PROBE_POLL_SECONDS


def test_without_probes_the_gate_judges_in_one_invocation_as_before(p):
    wave, _ = migrated(p, "stateless", probe=None)

    results = run_gate(p, wave)

    assert len(results) == 1 and results[0].passed and not results[0].pending
    assert (p.world.calls.get("probes.send", 0), p.world.calls.get("probes.results", 0)) == (0, 0)
    assert set(stored(p)) == {"migration", "gate"}


def test_a_large_wave_is_probed_a_pass_at_a_time(p, monkeypatch):
    monkeypatch.setattr(quality_gate, "PROBES_PER_PASS", 2)
    wave, replacements = migrated(p, "stateless", count=5)
    sent_by_the_wave = len(p.probes.sent)

    results = run_gate(p, wave)

    assert results[-1].passed
    assert sorted(i for i, _ in p.probes.sent[sent_by_the_wave:]) == replacements  # each once, over 3 passes
    assert len(results) >= 3
