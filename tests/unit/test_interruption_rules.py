"""The rules of the interruption handler about one instance (domain/interruptions.py)."""

import pytest

from spot_core.domain.carry import MODE_TAG
from spot_core.domain.instances import Instance
from spot_core.domain.interruptions import left_stopped
from spot_core.domain.tags import MANAGED_TAG


def spot(state: str = "stopped", **tags: str) -> Instance:
    return Instance(instance_id="i-spot", instance_type="m5.large", availability_zone="us-east-1a", state=state,
                    lifecycle="spot", tags={MANAGED_TAG: "true", **tags},
                    state_reason="Server.SpotInstanceShutdown")


@pytest.mark.parametrize("status", ["swapped", "retired"])
def test_a_stateless_instance_stopped_once_its_replacement_took_over_is_terminated(status):
    assert left_stopped(spot(), status)
    assert left_stopped(spot(**{MODE_TAG: "stateless"}), status)


@pytest.mark.parametrize("status", [None, "launching", "launched", "prewarmed"])
def test_not_before_its_replacement_took_over(status):
    assert not left_stopped(spot(), status)


@pytest.mark.parametrize("state", ["running", "stopping", "shutting-down", "terminated"])
def test_only_once_stopped(state):
    assert not left_stopped(spot(state), "swapped")


def test_never_a_stateful_moves_instance_whose_disks_the_rehome_moves():
    assert not left_stopped(spot(**{MODE_TAG: "stateful"}), "swapped")
    assert not left_stopped(spot(**{MODE_TAG: " Stateful"}), "retired")
