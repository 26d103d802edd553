"""The one launch loop: try the pools in order until EC2 serves one.

A capacity refusal (InsufficientInstanceCapacity, SpotMaxPriceTooLow, ...) moves on to the
next pool; any other refusal (LaunchRefused) is not about the pool and ends the loop. Each
pool has its own client token, so a retried invocation that repeats a launch gets the
instance it launched before instead of a second one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..domain.errors import CapacityRefused, LaunchRefused
from ..domain.instances import LaunchSpec
from ..domain.plan import Pool
from ..ports import Fleet


@dataclass
class Launch:
    """The outcome of trying the pools: what was launched where (if anything), and what each refusing pool said."""

    instance_id: str | None = None
    pool: Pool | None = None
    refused: list[str] = field(default_factory=list)  # "type/az: code", one per refusing pool
    failure: LaunchRefused | None = None  # a refusal no other pool would fix


def launch_in_first_pool(fleet: Fleet, pools: list[Pool], spec_for: Callable[[Pool], LaunchSpec],
                         token_prefix: str) -> Launch:
    launch = Launch()
    for attempt, pool in enumerate(pools):
        try:
            launch.instance_id = fleet.launch(spec_for(pool), f"{token_prefix}-{attempt}")
        except CapacityRefused as refused:
            launch.refused.append(f"{pool}: {refused.code}")
            continue
        except LaunchRefused as refused:
            launch.failure = refused
            return launch
        launch.pool = pool
        return launch
    return launch
