"""Powertools Logger and Metrics shared by the handlers, and what each handler measures.

Events are never logged whole: the approval event carries a task token, which must not
reach a log.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from ..domain.interruptions import InterruptionOutcome
from .catalog import METRICS_NAMESPACE, SERVICE_NAME

# Handlers that had nothing to count (a duplicate event, an unfinished wave) flush no metric.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)


def count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def interruption_metrics(is_interruption: bool, outcome: InterruptionOutcome) -> None:
    count("InterruptionEvents" if is_interruption else "RebalanceEvents")
    if outcome.action == "ignored":
        count("EventsIgnored")
    if outcome.launched:
        count("ReplacementsLaunched")
        metrics.add_metric(name="EventToLaunchSeconds", unit=MetricUnit.Seconds,
                           value=outcome.seconds_from_event_to_launch or 0.0)
        if outcome.market == "on-demand":
            count("OnDemandFallbacks")


__all__ = ["logger", "metrics", "count", "interruption_metrics", "MetricUnit"]
