"""Waiting for EC2 and the load balancer: instance states and target health, polled on the
service's clock until they settle or the deadline passes."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ..domain.clock import Clock
from ..domain.instances import GONE_STATES
from ..domain.plan import TargetGroups
from ..ports import Fleet, LoadBalancer

POLL_SECONDS = 5


@dataclass
class Traffic:
    fleet: Fleet
    load_balancer: LoadBalancer
    clock: Clock

    def wait_for_states(self, instance_ids: list[str], wanted: str, deadline: float) -> dict[str, str]:
        """Poll until every instance is in `wanted` (or gone), or the deadline. Instances EC2
        does not know (any more) are absent from the answer."""
        states: dict[str, str] = {}
        pending = list(instance_ids)
        while pending:
            for instance_id, instance in self.fleet.describe(pending).items():
                states[instance_id] = instance.state
            pending = [i for i in pending if states.get(i) not in (wanted, *GONE_STATES)]
            if not pending or self.clock.monotonic() >= deadline:
                break
            self.clock.sleep(POLL_SECONDS)
        return states

    def wait_for_targets(self, groups: TargetGroups, done: Collection[str],
                         deadline: float) -> dict[tuple[str, str], str]:
        """Poll target health until every target's state is in `done`, or the deadline."""
        while True:
            states = self.load_balancer.target_states(groups)
            if all(s in done for s in states.values()) or self.clock.monotonic() >= deadline:
                return states
            self.clock.sleep(POLL_SECONDS)

    def registered_only(self, groups: TargetGroups) -> TargetGroups:
        """The targets of `groups` that are registered now (deregistering the others fails)."""
        states = self.load_balancer.target_states(groups)
        kept = {arn: [t for t in targets if states.get((arn, t.instance_id), "unused") != "unused"]
                for arn, targets in groups.items()}
        return {arn: targets for arn, targets in kept.items() if targets}
