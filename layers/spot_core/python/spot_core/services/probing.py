"""Health probes on replacements (the Probes port: SSM Run Command), shared by the wave engine,
which proves a replacement with its probe before it takes its original's place, and the quality
gate, which runs the probe again after the bake."""

from __future__ import annotations

from collections.abc import Mapping

from ..domain.errors import ProbeRefused
from ..domain.health import HealthProbe, ProbeResult
from ..domain.plan import InstanceRecord
from ..ports import Probes

MAX_DETAIL = 300  # characters of why a probe could not run


def probe_of(record: InstanceRecord) -> HealthProbe | None:
    """The probe the record's instance is proven with (the request's or its tag's, as planned)."""
    return record.carry.probe if record.carry else None


def send_probes(probes: Probes, targets: Mapping[str, HealthProbe]) -> tuple[dict[str, str], dict[str, ProbeResult]]:
    """Run each probe on its instance (`targets`: instance id -> probe). Instance id -> command id
    of those sent, and instance id -> a failure for those SSM cannot reach (no agent there: it
    never will be, so they fail at once)."""
    sent: dict[str, str] = {}
    refused: dict[str, ProbeResult] = {}
    for instance_id, probe in targets.items():
        try:
            sent[instance_id] = probes.send(instance_id, probe)
        except ProbeRefused as why:
            refused[instance_id] = ProbeResult(state="failed", detail=f"could not run: {why}"[:MAX_DETAIL])
    return sent, refused


def probe_results(probes: Probes, commands: Mapping[str, str]) -> dict[str, ProbeResult]:
    """Instance id -> its probe's result so far (`commands`: instance id -> command id)."""
    return probes.results(commands) if commands else {}
