"""Workflow tests run the real ASL in moto's Step Functions interpreter with the real
handlers in-process (the embedded runtime); Wait states are fast-forwarded."""

import logging

import pytest

from spotctl.local.runtime import LocalRuntime


@pytest.fixture
def rt():
    with LocalRuntime(seed=11) as runtime:
        runtime.groups = runtime.fleet.seed_fleet(10)
        runtime.before = runtime.fleet.snapshot()
        yield runtime


@pytest.fixture
def auto(rt):
    """A request that needs no human: auto-approved, gated on the seeded ALB target group."""
    return {"approval": {"auto_approve": True}, "quality": {"target_group_arn": rt.fleet.target_group_arn}}


@pytest.fixture(scope="module")
def quiet_moto():
    """moto logs every failed state with the whole state's repr: keep failure reports readable."""
    logger = logging.getLogger("moto.stepfunctions")
    level, logger.level = logger.level, logging.CRITICAL
    yield
    logger.setLevel(level)
