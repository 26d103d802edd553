import pytest

from spot_core.domain.tags import MANAGED_TAG
from spotctl.local.runtime import LocalRuntime


@pytest.fixture
def rt():
    """A fleet of managed Spot instances serving behind the ALB, plus unmanaged ones."""
    with LocalRuntime(seed=5) as runtime:
        runtime.fleet.setup_network()
        runtime.managed = []
        for n, az in enumerate(["us-east-1a", "us-east-1b", "us-east-1c"]):
            runtime.managed += runtime.fleet.launch("m5.large", f"web-spot-{n}", az, {MANAGED_TAG: "true"},
                                                    market="spot")
        for iid in runtime.managed:
            runtime.wiring.registry.register(iid, "test fleet")
        runtime.unmanaged = runtime.fleet.launch("m5.large", "someone-elses-spot", "us-east-1a", market="spot",
                                                 register=False)
        yield runtime
