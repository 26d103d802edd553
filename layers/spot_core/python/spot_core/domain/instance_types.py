"""Instance type specs for common EC2 families and Spot diversification candidates.

The specs come from ``data/instance_types.json`` (EC2 DescribeInstanceTypes values), so
this module makes no AWS call and works the same in Lambda and on a laptop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_DATA = Path(__file__).parent / "data" / "instance_types.json"


@dataclass(frozen=True)
class InstanceTypeSpec:
    name: str
    family: str
    size: str
    vcpu: int
    memory_gib: float
    arch: str  # "x86_64" or "arm64"
    burstable: bool
    instance_storage_gb: int  # 0 when EBS-only

    @property
    def category(self) -> str:
        """The family letter: m (general), c (compute), r (memory), t (burstable), i (storage)."""
        return self.family[0]

    @property
    def generation(self) -> int:
        digits = re.search(r"\d+", self.family)
        return int(digits.group()) if digits else 0

    @property
    def has_instance_storage(self) -> bool:
        return self.instance_storage_gb > 0


@cache
def _specs() -> dict[str, InstanceTypeSpec]:
    raw = json.loads(_DATA.read_text())["instance_types"]
    return {name: InstanceTypeSpec(name=name, **fields) for name, fields in raw.items()}


def spec(instance_type: str) -> InstanceTypeSpec | None:
    """The spec of ``instance_type``, or None for a type outside the bundled catalog."""
    return _specs().get(instance_type)


def known_types() -> list[str]:
    return sorted(_specs())


def _can_replace(original: InstanceTypeSpec, candidate: InstanceTypeSpec) -> bool:
    return (
        candidate.name != original.name
        and candidate.arch == original.arch  # an x86 AMI does not boot on arm64
        and candidate.vcpu == original.vcpu
        and original.memory_gib <= candidate.memory_gib <= 2 * original.memory_gib
        and (original.burstable or not candidate.burstable)
        and (original.has_instance_storage or not candidate.has_instance_storage)
    )


def equivalent_types(instance_type: str, limit: int = 6) -> list[str]:
    """Spot diversification candidates for ``instance_type``, best first.

    Same architecture and vCPU count, at least the memory (at most twice), never burstable
    or instance-store unless the original is. Ordered: same category letter first, then
    closest memory, then newer generation. The original itself is not listed.
    """
    return list(_equivalents(instance_type, limit))


@cache
def _equivalents(instance_type: str, limit: int) -> tuple[str, ...]:  # once per type, not per instance
    original = spec(instance_type)
    if original is None or limit <= 0:
        return ()
    candidates = [c for c in _specs().values() if _can_replace(original, c)]
    candidates.sort(key=lambda c: (
        c.category != original.category,
        c.memory_gib - original.memory_gib,
        -c.generation,
        c.name,
    ))
    return tuple(c.name for c in candidates[:limit])


def _can_grow_into(original: InstanceTypeSpec, candidate: InstanceTypeSpec) -> bool:
    """A larger type may stand in for ``original`` too: it runs the same image and fits the workload."""
    return (
        candidate.name != original.name
        and candidate.arch == original.arch
        and candidate.vcpu >= original.vcpu
        and candidate.memory_gib >= original.memory_gib
        and (original.burstable or not candidate.burstable)
        and (original.has_instance_storage or not candidate.has_instance_storage)
    )


@cache
def _diversification(instance_type: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the equivalents, best first; the larger types that are not equivalents, smallest first)."""
    original = spec(instance_type)
    if original is None:
        return (), ()
    same = _equivalents(instance_type, len(_specs()))
    larger = [c for c in _specs().values() if _can_grow_into(original, c) and c.name not in same]
    larger.sort(key=lambda c: (c.vcpu, c.memory_gib, c.category != original.category, -c.generation, c.name))
    return same, tuple(c.name for c in larger)


def diversified_types(instance_type: str, minimum: int = 6, usable: Callable[[str], bool] | None = None) -> list[str]:
    """The types an Auto Scaling group may run in place of ``instance_type``, best first.

    Every equivalent (``equivalent_types``: same vCPUs, at most twice the memory); then, while
    fewer than ``minimum``, the nearest larger types of the same architecture (at least the vCPUs
    and the memory: a group counts instances, so a larger one only costs more, never falls short).
    ``usable`` (e.g. "has a Spot price") filters both before the count. The original is not listed.
    """
    same, larger = _diversification(instance_type)
    keep = usable or (lambda _: True)
    chosen = [t for t in same if keep(t)]
    for candidate in larger:
        if len(chosen) >= minimum:
            break
        if keep(candidate):
            chosen.append(candidate)
    return chosen
