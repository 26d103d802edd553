"""CloudWatch: CPU history for classification, quality samples for the gates, alarms.

GetMetricData takes up to 500 queries a call, so reading the CPU of 10,000 instances
costs 20 calls (plus pages), not 10,000.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..domain.batching import chunks
from ..domain.quality import QualitySample
from ..domain.request import MetricQuery
from .aws import transient_errors

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

MAX_QUERIES = 500
ALARMS_BATCH = 100
CPU_DAYS = 7
CPU_PERIOD = 3600
QUALITY_PERIOD = 60


def _query(query_id: str, namespace: str, name: str, dimensions: Mapping[str, str], period: int,
           stat: str) -> dict[str, Any]:
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()]},
            "Period": period, "Stat": stat,
        },
        "ReturnData": True,
    }


class CloudWatchMetrics:
    def __init__(self, cloudwatch: CloudWatchClient):
        self.cloudwatch = cloudwatch

    def _metric_data(self, queries: list[dict[str, Any]], start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        for batch in chunks(queries, MAX_QUERIES):
            kwargs: dict[str, Any] = {"MetricDataQueries": batch, "StartTime": start, "EndTime": end}
            while True:
                with transient_errors():
                    page: Any = self.cloudwatch.get_metric_data(**kwargs)
                yield from page["MetricDataResults"]
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]

    def cpu_utilisation(self, instance_ids: list[str], end: datetime) -> dict[str, list[float]]:
        """Hourly average CPU per instance over the last week."""
        queries = [_query(f"c{n}", "AWS/EC2", "CPUUtilization", {"InstanceId": iid}, CPU_PERIOD, "Average")
                   for n, iid in enumerate(instance_ids)]
        series: dict[str, list[float]] = {iid: [] for iid in instance_ids}
        for result in self._metric_data(queries, end - timedelta(days=CPU_DAYS), end):
            series[instance_ids[int(result["Id"][1:])]].extend(float(v) for v in result.get("Values", []))
        return series

    def quality_sample(self, metrics: Mapping[str, MetricQuery], start: datetime, end: datetime) -> QualitySample:
        """Mean latency and error rate (errors / requests) over [start, end]."""
        if not metrics:
            return QualitySample(start=start.isoformat(), end=end.isoformat())
        queries = [_query(name, m.namespace, m.metric_name, dict(sorted(m.dimensions.items())), QUALITY_PERIOD,
                          m.statistic) for name, m in metrics.items()]
        values: dict[str, list[float]] = {name: [] for name in metrics}
        for result in self._metric_data(queries, start, end):
            values[result["Id"]].extend(float(v) for v in result.get("Values", []))
        return QualitySample.of(values.get("latency") or [], values.get("errors") or [], values.get("requests") or [],
                                start, end)

    def alarms_in_alarm(self, names: list[str]) -> list[str]:
        firing: list[str] = []
        for batch in chunks(names, ALARMS_BATCH):
            with transient_errors():
                for page in self.cloudwatch.get_paginator("describe_alarms").paginate(AlarmNames=batch):
                    alarms: list[Any] = [*page["MetricAlarms"], *page.get("CompositeAlarms", [])]
                    firing += [a["AlarmName"] for a in alarms if a["StateValue"] == "ALARM"]
        return firing
