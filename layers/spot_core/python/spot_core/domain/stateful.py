"""Stateful moves: the instance's own volumes (root included), secondary interfaces and Elastic
IPs move to a Spot instance in the same AZ, in a short maintenance step; a rollback moves them
back the same way.

The move is a reconciliation, not a script: each pass looks at where every piece is and at the
state of both instances, and `converge` says the next actions towards "every piece on the
holder, the holder running" (the holder is the Spot instance going forward, the original going
back). Nothing is copied, so nothing written before or after the move is lost; a crash or a
retried pass picks up from what EC2 says, never from a step counter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from pydantic import BaseModel, Field

from .carry import ElasticIp, Inventory

# ("stop", id), ("start", id), ("detach_volume", volume, id), ("attach_volume", volume, id, device),
# ("detach_interface", attachment), ("attach_interface", interface, id, index), ("associate", allocation, id)
Action = tuple[str, ...]
T = TypeVar("T")
Converged = Literal["done", "waiting", "acting"]


class VolumeSlot(BaseModel):
    volume_id: str
    device: str


class InterfaceSlot(BaseModel):
    interface_id: str
    device_index: int


class StatefulMove(BaseModel):
    """What moves with a stateful instance, and how long it was down."""

    volumes: list[VolumeSlot] = Field(default_factory=list)
    interfaces: list[InterfaceSlot] = Field(default_factory=list)
    addresses: list[ElasticIp] = Field(default_factory=list)
    spare_volumes: list[str] = Field(default_factory=list)  # the Spot instance's own, from its image: deleted
    stopped_at: str | None = None  # when the original stopped: the downtime began
    downtime_seconds: float | None = None  # measured: until the Spot instance proved healthy

    def volume_ids(self) -> list[str]:
        return [v.volume_id for v in self.volumes]

    def interface_ids(self) -> list[str]:
        return [i.interface_id for i in self.interfaces]

    @classmethod
    def of(cls, inventory: Inventory) -> StatefulMove:
        primary = inventory.primary
        return cls(volumes=[VolumeSlot(volume_id=v.volume_id, device=v.device) for v in inventory.volumes],
                   interfaces=[InterfaceSlot(interface_id=i.interface_id, device_index=i.device_index)
                               for i in inventory.secondary_interfaces],
                   # an address on a secondary interface moves with it; those on the primary are re-pointed
                   addresses=[a for a in inventory.addresses
                              if primary is None or a.interface_id in (None, primary.interface_id)])


@dataclass(frozen=True)
class VolumeAt:
    """Where a volume is: attached to `instance_id` at `device` (attachment state), or available."""

    state: str  # "available" | "in-use" | "creating" | "deleting" | ...
    instance_id: str | None = None
    device: str | None = None
    attachment: str | None = None  # "attaching" | "attached" | "detaching" | "detached"


@dataclass(frozen=True)
class InterfaceAt:
    status: str  # "available" | "in-use" | "attaching" | "detaching"
    instance_id: str | None = None
    device_index: int | None = None
    attachment_id: str | None = None


@dataclass(frozen=True)
class Observed:
    states: dict[str, str]  # instance id -> state ("gone" when EC2 no longer knows it)
    volumes: dict[str, VolumeAt]
    interfaces: dict[str, InterfaceAt]
    primaries: dict[str, tuple[str, str]] = field(default_factory=dict)  # instance id -> (interface, private IP)


def converge(move: StatefulMove, holder: str, other: str, seen: Observed,
             spares: tuple[str, ...] = ()) -> tuple[Converged, list[Action]]:
    """The next actions to put every piece of `move` on `holder` (stopped meanwhile) and start it;
    `spares` are volumes attached to the holder that must make room (its own root from its image).
    "done": every piece is on the holder and it runs."""
    if _all_on(move, holder, seen, spares):
        return _start(move, holder, seen)
    stops: list[Action] = [("stop", i) for i in (holder, other) if seen.states.get(i) == "running"]
    if stops:
        return "acting", stops
    if any(seen.states.get(i) in ("pending", "stopping") for i in (holder, other)):
        return "waiting", []  # a pending instance cannot be stopped yet
    actions = _detach(move, holder, seen, spares) or _attach(move, holder, seen, spares)
    return ("acting" if actions else "waiting"), actions


def _all_on(move: StatefulMove, holder: str, seen: Observed, spares: tuple[str, ...]) -> bool:
    volumes = all(_volume_on(seen, v.volume_id, holder, v.device, "attached") for v in move.volumes)
    interfaces = all(_interface_on(seen, i.interface_id, holder) for i in move.interfaces)
    room = not any(_volume_on(seen, s, holder) for s in spares)
    return volumes and interfaces and room


def _start(move: StatefulMove, holder: str, seen: Observed) -> tuple[Converged, list[Action]]:
    state = seen.states.get(holder)
    if state == "running":
        return "done", []
    if state == "stopped":
        # by interface and private IP: the holder has several interfaces (EC2 refuses an instance id then)
        interface, ip = seen.primaries.get(holder, ("", ""))
        return "acting", [*(("associate", a.allocation_id, holder, interface, ip) for a in move.addresses),
                          ("start", holder)]
    return "waiting", []  # pending (starting), or stopping: the next pass sees


def _detach(move: StatefulMove, holder: str, seen: Observed, spares: tuple[str, ...]) -> list[Action]:
    """Pieces attached elsewhere, and the holder's spares, are detached (both instances are stopped)."""
    return [*_volumes_to_detach(move, holder, seen, spares), *_interfaces_to_detach(move, holder, seen)]


def _volumes_to_detach(move: StatefulMove, holder: str, seen: Observed, spares: tuple[str, ...]) -> list[Action]:
    located = _located(seen.volumes, move.volume_ids())
    away: list[Action] = [("detach_volume", v, at.instance_id or "") for v, at in located
                          if _elsewhere(at.instance_id, holder) and at.attachment == "attached"]
    return away + [("detach_volume", s, holder) for s in spares
                   if _volume_on(seen, s, holder, attachment="attached")]


def _interfaces_to_detach(move: StatefulMove, holder: str, seen: Observed) -> list[Action]:
    return [("detach_interface", where.attachment_id or "")
            for _, where in _located(seen.interfaces, move.interface_ids())
            if _elsewhere(where.instance_id, holder) and where.status == "in-use"]


def _elsewhere(instance_id: str | None, holder: str) -> bool:
    return instance_id is not None and instance_id != holder


def _located(where: Mapping[str, T], ids: list[str]) -> list[tuple[str, T]]:
    return [(i, where[i]) for i in ids if i in where]


def _attach(move: StatefulMove, holder: str, seen: Observed, spares: tuple[str, ...]) -> list[Action]:
    """Pieces free (available) go onto the holder where they were; busy ones are waited for, and
    nothing is attached while a spare still holds its device (detaching)."""
    if any(_volume_on(seen, s, holder) for s in spares):
        return []
    actions: list[Action] = [("attach_volume", v.volume_id, holder, v.device) for v in move.volumes
                             if getattr(seen.volumes.get(v.volume_id), "state", None) == "available"]
    actions += [("attach_interface", i.interface_id, holder, str(i.device_index)) for i in move.interfaces
                if getattr(seen.interfaces.get(i.interface_id), "status", None) == "available"]
    return actions


def _volume_on(seen: Observed, volume_id: str, instance_id: str, device: str | None = None,
               attachment: str | None = None) -> bool:
    at = seen.volumes.get(volume_id)
    return at is not None and at.instance_id == instance_id and (device is None or at.device == device) \
        and (attachment is None or at.attachment == attachment)


def _interface_on(seen: Observed, interface_id: str, instance_id: str) -> bool:
    where = seen.interfaces.get(interface_id)
    return where is not None and where.instance_id == instance_id and where.status == "in-use"


def missing_pieces(move: StatefulMove, seen: Observed) -> list[str]:
    """Pieces EC2 no longer knows (deleted by someone): the move cannot put them anywhere."""
    gone = [f"volume {v.volume_id}" for v in move.volumes if v.volume_id not in seen.volumes]
    gone += [f"interface {i.interface_id}" for i in move.interfaces if i.interface_id not in seen.interfaces]
    return gone
