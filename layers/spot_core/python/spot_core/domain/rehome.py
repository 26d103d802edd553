"""Re-homing a stateful Spot instance that EC2 takes back.

A stateful move's Spot instance runs from a persistent request that stops on interruption:
EC2 stops it with the original's disks, and only EC2 may start it again, whenever capacity
returns to its pool. Rather than wait for that, the disks move on: a successor is launched in
another pool of the same Availability Zone (EBS volumes and interfaces are zonal), or on-demand
when no Spot pool there has capacity; it is stopped once booted (nothing of the workload starts
on its throwaway disk), takes the user data, and once EC2 has stopped the interrupted instance,
every volume (root included), secondary interface and Elastic IP moves onto it at the same
devices (`domain/stateful.py` `converge`, the same reconciliation as the migration). It starts,
proves its health, and the migration record follows it; the interrupted instance is terminated.

Each step is stored on the migration record before the next one (`InstanceRecord.rehome`), so
a pass that crashes resumes from what EC2 says. A successor that does not boot, cannot start
or does not prove healthy is given up and the next one takes the disks from wherever they are;
after `MAX_SUCCESSORS` the re-home fails and says where the disks are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

RehomePhase = Literal["launching", "booting", "parking", "moving", "proving", "done", "failed"]
ENDED: tuple[RehomePhase, ...] = ("done", "failed")

MAX_SUCCESSORS = 3  # successors tried before the re-home gives up
LAUNCH_TIMEOUT = 1800  # how long no pool of the AZ (Spot or on-demand) has capacity before it gives up
BOOT_TIMEOUT = 600
STOP_TIMEOUT = 900  # how long after the warning EC2 may take to stop the interrupted instance
MOVE_TIMEOUT = 900
HEALTH_TIMEOUT = 900
WAIT_SECONDS: dict[RehomePhase, int] = {
    "launching": 30, "booting": 10, "parking": 10, "moving": 5, "proving": 15, "done": 0, "failed": 0,
}


class Rehome(BaseModel):
    """The re-home of a record's stateful Spot instance `interrupted`, as far as it got."""

    interrupted: str
    began_at: str
    phase: RehomePhase = "launching"
    phase_since: str
    successor: str | None = None
    successor_type: str | None = None
    successor_market: Literal["spot", "on-demand"] = "spot"
    successor_hourly: float = 0.0  # its Spot price (on-demand: the original's on-demand price)
    launched: int = 0  # successors launched so far (each with its own client token)
    given_up: list[str] = Field(default_factory=list)  # successors that could not take the disks
    spare_volumes: list[str] = Field(default_factory=list)  # the successors' own root volumes: deleted
    user_data_set: bool = False
    down_since: str | None = None  # first seen stopped: the workload is down from then on
    downtime_seconds: float | None = None
    outcome: str | None = None

    @classmethod
    def begin(cls, interrupted: str, now: datetime) -> Rehome:
        return cls(interrupted=interrupted, began_at=now.isoformat(), phase_since=now.isoformat())

    @property
    def ended(self) -> bool:
        return self.phase in ENDED

    @property
    def source(self) -> str:
        """Where the disks are coming from: the last successor given up, or the interrupted instance."""
        return self.given_up[-1] if self.given_up else self.interrupted

    def enter(self, phase: RehomePhase, now: datetime) -> None:
        self.phase, self.phase_since = phase, now.isoformat()

    def age(self, now: datetime) -> float:
        return (now - datetime.fromisoformat(self.phase_since)).total_seconds()

    def since_warning(self, now: datetime) -> float:
        return (now - datetime.fromisoformat(self.began_at)).total_seconds()

    def give_up_successor(self, now: datetime) -> bool:
        """The successor will not do: the next one takes the disks from it. Whether one is left to try."""
        if self.successor:
            self.given_up.append(self.successor)
        self.successor, self.successor_type, self.user_data_set = None, None, False
        self.enter("launching", now)
        return self.launched < MAX_SUCCESSORS

    def finish(self, phase: Literal["done", "failed"], outcome: str, now: datetime) -> None:
        self.outcome = outcome[:500]
        self.enter(phase, now)

    def went_down(self, now: datetime) -> None:
        self.down_since = self.down_since or now.isoformat()

    def measure_downtime(self, now: datetime) -> float:
        began = datetime.fromisoformat(self.down_since) if self.down_since else now
        self.downtime_seconds = round((now - began).total_seconds(), 1)
        return self.downtime_seconds


class RehomeProgress(BaseModel):
    """One pass's answer to the state machine: done, or when to look again."""

    done: bool
    wait_seconds: int = 0
    phase: str
    successor: str | None = None
    outcome: str | None = None

    @classmethod
    def of(cls, rehome: Rehome | None, outcome: str | None = None) -> RehomeProgress:
        if rehome is None:
            return cls(done=True, phase="none", outcome=outcome)
        return cls(done=rehome.ended, wait_seconds=WAIT_SECONDS[rehome.phase], phase=rehome.phase,
                   successor=rehome.successor, outcome=rehome.outcome or outcome)
