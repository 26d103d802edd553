"""pytest plugin: run any test suite with the moto speed-ups in checking mode.

    .venv/bin/python -m pytest tests/workflow -p bench.pytest_speedups

Every GetMetricData answer of spotctl/local/metric_index.py, every EC2 tag lookup and every
DynamoDB item response of bench/moto_speedups.py is computed both ways and compared with
moto's own; any difference fails the test that caused it.
"""

from spotctl.local import metric_index

from . import moto_speedups


def pytest_configure(config):
    metric_index.install(verify=True)
    moto_speedups.install(check=True)


def pytest_unconfigure(config):
    moto_speedups.uninstall()
    metric_index.uninstall()
