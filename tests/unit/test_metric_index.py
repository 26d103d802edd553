"""The embedded runtime's metric index (spotctl/local/metric_index.py) answers GetMetricData
exactly as moto does: in verify mode, every answer is compared with moto's own."""

import random
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from spotctl.local import metric_index

STATS = ["Average", "Sum", "Minimum", "Maximum", "SampleCount"]


@pytest.fixture(scope="module")
def cw():
    """One account of metrics for the module (the tests only add datapoints no other test reads)."""
    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        rng = random.Random(1)
        now = datetime.now(UTC).replace(microsecond=123456)
        data = []
        for i in range(40):
            for _ in range(200):
                dims = [{"Name": "InstanceId", "Value": f"i-{i % 7}"}]
                if i % 3 == 0:
                    dims.append({"Name": "AutoScalingGroupName", "Value": "asg"})
                if i % 5 == 0:
                    dims.reverse()
                data.append({"MetricName": rng.choice(["CPUUtilization", "NetworkIn"]), "Dimensions": dims,
                             "Timestamp": now - timedelta(minutes=rng.randint(0, 3000), seconds=rng.random() * 60),
                             "Value": rng.random() * 100, "Unit": rng.choice(["Percent", "Count"])})
        for i in range(0, len(data), 1000):
            client.put_metric_data(Namespace="AWS/EC2" if i % 2000 == 0 else "Custom", MetricData=data[i:i + 1000])
        client.put_metric_data(Namespace="X", MetricData=[{
            "MetricName": "Agg", "Timestamp": now - timedelta(minutes=5),
            "StatisticValues": {"Sum": 10, "Minimum": 1, "Maximum": 5, "SampleCount": 4}}])
        metric_index.install(verify=True)  # every answer is compared with moto's own
        try:
            yield client, now
        finally:
            metric_index.uninstall()


QUERIES = [
    ("AWS/EC2", "CPUUtilization", [{"Name": "InstanceId", "Value": "i-1"}], None),
    ("AWS/EC2", "CPUUtilization",
     [{"Name": "InstanceId", "Value": "i-0"}, {"Name": "AutoScalingGroupName", "Value": "asg"}], None),
    ("AWS/EC2", "CPUUtilization",
     [{"Name": "AutoScalingGroupName", "Value": "asg"}, {"Name": "InstanceId", "Value": "i-0"}], "Percent"),
    ("Custom", "NetworkIn", [], None),
    ("AWS/EC2", "NetworkIn", [], "Count"),
    ("X", "Agg", [], None),
    ("AWS/EC2", "Missing", [{"Name": "InstanceId", "Value": "i-1"}], None),
]


# every statistic at 5 minutes and an hour, two of them by the minute (moto's own answer, which each
# case is checked against, is slowest there), each scan order half of the time
CASES = [(stat, period, ["TimestampAscending", "TimestampDescending"][(s + p) % 2])
         for s, stat in enumerate(STATS) for p, period in enumerate([60, 300, 3600])
         if period != 60 or stat in ("Average", "Maximum")]


@pytest.mark.parametrize(("stat", "period", "scan_by"), CASES)
def test_same_answers_as_moto(cw, stat, period, scan_by):
    client, now = cw
    queries = []
    for k, (ns, name, dims, unit) in enumerate(QUERIES):
        metric = {"Namespace": ns, "MetricName": name, "Dimensions": dims}
        stat_spec = {"Metric": metric, "Period": period, "Stat": stat}
        if unit:
            stat_spec["Unit"] = unit
        queries.append({"Id": f"q{k}", "MetricStat": stat_spec, "ReturnData": k != 3})
    result = client.get_metric_data(MetricDataQueries=queries, StartTime=now - timedelta(hours=30), EndTime=now,
                                    ScanBy=scan_by)
    assert sum(len(r["Values"]) for r in result["MetricDataResults"]) > 0


def test_sees_datapoints_put_after_the_index_was_built(cw):
    client, now = cw
    query = [{"Id": "a", "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization",
                                                   "Dimensions": [{"Name": "InstanceId", "Value": "i-9"}]},
                                        "Period": 60, "Stat": "Average"}}]
    window = {"StartTime": now - timedelta(hours=1), "EndTime": now}
    assert client.get_metric_data(MetricDataQueries=query, **window)["MetricDataResults"][0]["Values"] == []
    client.put_metric_data(Namespace="AWS/EC2", MetricData=[{"MetricName": "CPUUtilization", "Value": 42.0,
                                                             "Timestamp": now - timedelta(minutes=1),
                                                             "Dimensions": [{"Name": "InstanceId", "Value": "i-9"}]}])
    assert client.get_metric_data(MetricDataQueries=query, **window)["MetricDataResults"][0]["Values"] == [42.0]


def test_percentiles_are_answered(cw):
    """moto itself fails on pNN (it serialises None); the index computes nearest-rank percentiles."""
    client, now = cw
    query = [{"Id": "p", "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization",
                                                   "Dimensions": [{"Name": "InstanceId", "Value": "i-1"}]},
                                        "Period": 3600, "Stat": "p90"}}]
    result = client.get_metric_data(MetricDataQueries=query, StartTime=now - timedelta(hours=3), EndTime=now)
    values = result["MetricDataResults"][0]["Values"]
    assert values and all(0 <= v <= 100 for v in values)
