"""Powertools Logger and Metrics shared by the handlers.

Service name and namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE. Events are never logged whole: the approval event carries
a task token, which must not reach a log.
"""

import warnings

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

# Handlers that had nothing to count (a duplicate event, an unfinished wave) flush no metric.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger(service="spot-migration")
metrics = Metrics(namespace="SpotMigration", service="spot-migration")

__all__ = ["logger", "metrics", "MetricUnit"]
