"""The service tests' fixture: the fakes of tests/fakes.py, with a VPC of three zones and two
target groups (builders.py has the builders the tests import)."""

import pytest
from builders import new_world
from fakes import Ports


@pytest.fixture
def p() -> Ports:
    return new_world()
