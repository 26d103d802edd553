"""Rollback of Auto Scaling groups: each group a migration touched gets its saved configuration
back (launch template or configuration, its own mixed instances policy if it had one, Capacity
Rebalancing), then one instance refresh that replaces every member (launching before it
terminates), so it ends with the capacity it has then, all members launched from its original
configuration and none of the migration's Spot instances. Its capacity is not restored: a
scaling policy may have changed it meanwhile, and the group keeps what it needs now.

One step a pass, each stored before the next (the state machine calls again until done): the
wave's refresh is cancelled (and waited for while it cancels), the migration's tags come off (so
the members launched from now on are not the migration's), the configuration goes back, the
refresh runs, and the group is rolled back once no member runs on Spot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..domain.asg import GroupRecord, restored_configuration
from ..domain.clock import Clock, iso
from ..domain.tags import GROUP_TAGS
from ..ports import AutoScaling, PlanRepository
from .group_wave import MIN_WARMUP_SECONDS, REFRESH_TIMEOUT

ENDED = ("rolled_back", "rollback_failed")


@dataclass
class GroupsRestored:
    done: bool = True
    restored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "name: why"


@dataclass
class GroupRollback:
    groups: AutoScaling
    plans: PlanRepository
    clock: Clock

    def run(self, migration_id: str) -> GroupsRestored:
        result = GroupsRestored()
        for group in [g for g in self.plans.groups(migration_id) if g.touched]:
            if group.status not in ENDED:
                _Restore(self, migration_id, group).step()
            if group.status == "rolled_back":
                result.restored.append(group.name)
            elif group.status == "rollback_failed":
                result.failed.append(f"{group.name}: {group.attempts[-1] if group.attempts else 'not restored'}")
            else:
                result.done = False
        return result


class _Restore:
    def __init__(self, service: GroupRollback, migration_id: str, group: GroupRecord):
        self.s, self.mid, self.g = service, migration_id, group
        self.now = service.clock.now()

    def step(self) -> None:
        g = self.g
        if g.status != "rolling_back":
            self._cancel()
        elif g.restore_refresh_id is None:
            self._restore()
        else:
            self._follow()

    def _cancel(self) -> None:
        """The wave's refresh stops first (a refresh towards Spot must not go on meanwhile)."""
        self.s.groups.cancel_refresh(self.g.name)
        self.g.status, self.g.phase_since = "rolling_back", iso(self.now)
        self.g.attempts.append("rollback: the migration's refresh cancelled")
        self._store()

    def _restore(self) -> None:
        """Once the wave's refresh has stopped: the saved configuration, then a refresh of every member."""
        g = self.g
        running = self.s.groups.refresh(g.name, g.refresh_id) if g.refresh_id else None
        if running is not None and running.running:
            return  # still cancelling
        self.s.groups.untag(g.name, list(GROUP_TAGS))  # the members the rollback launches are not the migration's
        self.s.groups.configure(g.name, **restored_configuration(g.config))
        g.restore_refresh_id = self.s.groups.start_refresh(g.name, MIN_WARMUP_SECONDS, skip_matching=False)
        g.phase_since = iso(self.now)
        g.attempts.append(f"rollback: configuration restored; refresh {g.restore_refresh_id} replaces every member")
        self._store()

    def _follow(self) -> None:
        g = self.g
        refresh = self.s.groups.refresh(g.name, g.restore_refresh_id or "")
        if refresh is not None and refresh.running:
            if self._age() > REFRESH_TIMEOUT:
                self._end("rollback_failed", f"rollback refresh {g.restore_refresh_id} still {refresh.status} "
                                             f"after {REFRESH_TIMEOUT // 3600} h")
            return
        if refresh is None or not refresh.succeeded:
            why = f"{refresh.status}: {refresh.reason or 'no reason given'}" if refresh else "no longer known"
            self._end("rollback_failed", f"rollback refresh {g.restore_refresh_id} {why}")
            return
        spot, members = self.s.groups.spot_share(g.name)
        if spot:
            self._end("rollback_failed", f"{spot} of {members} members still on Spot after the rollback refresh")
            return
        self._end("rolled_back", f"rolled back: {members} members, all on-demand, of the saved configuration")

    def _end(self, status: str, why: str) -> None:
        self.g.status = "rolled_back" if status == "rolled_back" else "rollback_failed"
        self.g.attempts.append(why[:300])
        self._store()

    def _age(self) -> float:
        since = datetime.fromisoformat(self.g.phase_since) if self.g.phase_since else self.now
        return (self.now - since).total_seconds()

    def _store(self) -> None:
        self.s.plans.put_group(self.mid, self.g)
