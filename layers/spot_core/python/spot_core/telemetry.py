"""CloudWatch adapter: CPU history for classification, quality samples for the gates, alarms.

GetMetricData takes up to 500 queries a call, so reading the CPU of 10,000 instances
costs 20 calls (plus pages), not 10,000.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from .aws import transient_errors
from .models import MetricQuery, QualityConfig
from .quality import QualitySample

MAX_QUERIES = 500


def _metric_data(cw: Any, queries: list[dict], start: datetime, end: datetime) -> Iterator[dict]:
    for i in range(0, len(queries), MAX_QUERIES):
        kwargs: dict[str, Any] = {"MetricDataQueries": queries[i:i + MAX_QUERIES], "StartTime": start, "EndTime": end}
        while True:
            with transient_errors():
                page = cw.get_metric_data(**kwargs)
            yield from page["MetricDataResults"]
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]


def cpu_utilisation(cw: Any, instance_ids: list[str], end: datetime, days: int = 7, period: int = 3600) -> dict[str, list[float]]:
    """Hourly average CPU per instance over the last `days`."""
    queries = [
        {
            "Id": f"c{n}",
            "MetricStat": {
                "Metric": {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization",
                           "Dimensions": [{"Name": "InstanceId", "Value": iid}]},
                "Period": period, "Stat": "Average",
            },
            "ReturnData": True,
        }
        for n, iid in enumerate(instance_ids)
    ]
    series: dict[str, list[float]] = {iid: [] for iid in instance_ids}
    for result in _metric_data(cw, queries, end - timedelta(days=days), end):
        series[instance_ids[int(result["Id"][1:])]].extend(float(v) for v in result.get("Values", []))
    return series


def resolve_quality_metrics(config: QualityConfig, elbv2: Any) -> dict[str, MetricQuery]:
    """The metrics the gates read: explicit ones, else the ALB defaults of the target group."""
    metrics: dict[str, MetricQuery] = {}
    if config.target_group_arn and (config.latency is None or config.errors is None):
        with transient_errors():
            group = elbv2.describe_target_groups(TargetGroupArns=[config.target_group_arn])["TargetGroups"][0]
        dims = {"TargetGroup": config.target_group_arn.split(":")[-1]}
        if group.get("LoadBalancerArns"):
            dims["LoadBalancer"] = group["LoadBalancerArns"][0].split(":loadbalancer/")[-1]
        alb = dict(namespace="AWS/ApplicationELB", dimensions=dims)
        metrics["latency"] = MetricQuery(metric_name="TargetResponseTime", statistic="Average", **alb)
        metrics["errors"] = MetricQuery(metric_name="HTTPCode_Target_5XX_Count", statistic="Sum", **alb)
        metrics["requests"] = MetricQuery(metric_name="RequestCount", statistic="Sum", **alb)
    for name in ("latency", "errors", "requests"):
        explicit = getattr(config, name)
        if explicit is not None:
            metrics[name] = explicit
    return metrics


def quality_sample(cw: Any, metrics: dict[str, MetricQuery], start: datetime, end: datetime) -> QualitySample:
    """Mean latency and error rate (errors / requests) over [start, end]."""
    if not metrics:
        return QualitySample(start=start.isoformat(), end=end.isoformat())
    queries = [
        {
            "Id": name,
            "MetricStat": {
                "Metric": {"Namespace": m.namespace, "MetricName": m.metric_name,
                           "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(m.dimensions.items())]},
                "Period": 60, "Stat": m.statistic,
            },
            "ReturnData": True,
        }
        for name, m in metrics.items()
    ]
    values = {name: [] for name in metrics}
    for result in _metric_data(cw, queries, start, end):
        values[result["Id"]].extend(float(v) for v in result.get("Values", []))
    latency = values.get("latency") or []
    errors, requests = sum(values.get("errors") or []), sum(values.get("requests") or [])
    return QualitySample(
        latency=sum(latency) / len(latency) if latency else None,
        error_rate=(errors / requests) if requests else None,
        requests=requests,
        datapoints=len(latency) + len(values.get("requests") or []),
        start=start.isoformat(timespec="seconds"),
        end=end.isoformat(timespec="seconds"),
    )


def alarms_in_alarm(cw: Any, names: list[str]) -> list[str]:
    firing: list[str] = []
    for i in range(0, len(names), 100):
        with transient_errors():
            for page in cw.get_paginator("describe_alarms").paginate(AlarmNames=names[i:i + 100]):
                firing += [a["AlarmName"] for a in page["MetricAlarms"] + page.get("CompositeAlarms", []) if a["StateValue"] == "ALARM"]
    return firing
