"""Stateful moves on EC2: observe where an instance's pieces are, and apply what
domain/stateful.py's `converge` says next. Shared by the wave engine (forward: onto the Spot
instance) and the rollback (back: onto the original)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..domain.instances import Instance
from ..domain.plan import InstanceRecord
from ..domain.stateful import Action, Converged, Observed, StatefulMove, converge
from ..ports import Fleet


@dataclass
class StatefulMoves:
    fleet: Fleet

    def observe(self, records: Iterable[InstanceRecord]) -> Observed:
        """Both instances of every record and every piece, in calls that grow with pages."""
        ids: list[str] = []
        volume_ids: list[str] = []
        interface_ids: list[str] = []
        for record in records:
            move = record.stateful or StatefulMove()
            ids += [record.instance_id, record.replacement]
            volume_ids += move.volume_ids() + move.spare_volumes
            interface_ids += move.interface_ids()
        return self.look(ids, volume_ids, interface_ids)

    def look(self, instance_ids: list[str], volume_ids: list[str], interface_ids: list[str]) -> Observed:
        """The instances' states ("gone" when EC2 no longer knows one) and where each piece is."""
        described = self.fleet.describe(instance_ids)
        volumes, interfaces = self.fleet.pieces(volume_ids, interface_ids)
        return Observed(states={i: described[i].state if i in described else "gone" for i in instance_ids},
                        volumes=volumes, interfaces=interfaces, primaries=_primaries(described.values()))

    def onto(self, record: InstanceRecord, holder: str, other: str, seen: Observed) -> tuple[Converged, str | None]:
        """One step of putting the record's pieces on `holder`: "done" once it runs with them; and
        why EC2 refused to start it, if it did (no capacity: the caller decides)."""
        move = record.stateful or StatefulMove()
        spares = tuple(move.spare_volumes) if holder == record.replacement_id else ()
        return self.put_on(move, holder, other, seen, spares)

    def put_on(self, move: StatefulMove, holder: str, other: str, seen: Observed,
               spares: tuple[str, ...] = ()) -> tuple[Converged, str | None]:
        """One step of putting `move`'s pieces on `holder`, `spares` (its own volumes) making room."""
        progress, actions = converge(move, holder, other, seen, spares)
        refused = [why for action in actions if (why := self._apply(action))]
        return progress, (refused[0] if refused else None)

    def _apply(self, action: Action) -> str | None:
        """Carry out one action; why EC2 refused to start the instance, if it did."""
        kind, *args = action
        if kind == "start":
            refused = self.fleet.start([args[0]])
            return str(refused[args[0]]) if args[0] in refused else None
        fleet = self.fleet
        calls: dict[str, Callable[[], None]] = {
            "stop": lambda: fleet.stop([args[0]]),
            "detach_volume": lambda: fleet.detach_volume(args[0], args[1]),
            "attach_volume": lambda: fleet.attach_volume(args[0], args[1], args[2]),
            "detach_interface": lambda: fleet.detach_interface(args[0]),
            "attach_interface": lambda: fleet.attach_interface(args[0], args[1], int(args[2])),
            "associate": lambda: fleet.associate_address(args[0], args[1], args[2] or None, args[3] or None),
        }
        calls[kind]()
        return None


def _primaries(instances: Iterable[Instance]) -> dict[str, tuple[str, str]]:
    """Instance id -> its primary interface and private IP."""
    found: dict[str, tuple[str, str]] = {}
    for instance in instances:
        primary = next((i for i in instance.interfaces if i.device_index == 0), None)
        if primary is not None:
            found[instance.instance_id] = (primary.interface_id, primary.primary_ip or "")
    return found
