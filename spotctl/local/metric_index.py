"""A per-series index for moto's CloudWatch, so GetMetricData stays fast on big fleets.

moto (5.2.5) answers every MetricStat query of GetMetricData by scanning *every* stored
datapoint once per period: reading 7 days of hourly CPU for 1,000 instances (168,000
datapoints, 1,000 queries of 169 periods) is ~3·10^10 comparisons, hours of CPU. This
module replaces `CloudWatchBackend.get_metric_data` with an equivalent that groups the
stored datapoints by series and reads only the series a query names:

    from spotctl.local import metric_index
    metric_index.install()      # idempotent; LocalRuntime._patch would call it
    ...
    metric_index.uninstall()

Same results as moto, by construction:

- series are keyed the way moto matches them: with dimensions, by (metric name, the
  dimensions sorted with moto's own `Dimension` ordering) -- moto ignores the namespace
  then; without dimensions, by (namespace, metric name);
- the time window, the period buckets (`StartTime + k·Period`, microseconds dropped),
  the Unit filter, the order of datapoints inside a bucket (insertion order), the
  statistic (moto's own `Statistics` class: Average, Sum, Minimum, Maximum, SampleCount),
  labels, `ReturnData` and `ScanBy` are moto's;
- datapoints whose dimensions lack a value (moto treats those as wildcards), the
  metrics moto generates on the fly (S3 bucket sizes) and queries with expressions
  (Metric Math, Metrics Insights) take moto's original code path.

One deliberate difference: percentiles. moto computes none -- a `pNN` MetricStat makes
its GetMetricData fail (it serialises a None value: TypeError) -- although the product
accepts `p90`/`p95`/`p99` for quality metrics. Here `pNN` (also `p99.9`) is the
nearest-rank percentile of the bucket's single values; a bucket holding only statistic
sets has no percentile and yields no datapoint, as in CloudWatch.

The index is built lazily and incrementally: each call indexes the datapoints appended
to `backend.metric_data` since the last call (moto only ever appends), and rebuilds if
the list was replaced or shrank. `install(verify=True)` also runs moto's original and
raises if the answers differ (for tests).
"""

from __future__ import annotations

import math
import re
import threading
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from moto.cloudwatch.exceptions import ValidationError
from moto.cloudwatch.models import CloudWatchBackend, Dimension, MetricDatumBase, Statistics

_ORIGINAL: Any = None
_VERIFY = False
_LOCK = threading.RLock()
_ATTR = "_spotctl_metric_index"
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")


class IndexMismatch(AssertionError):
    """`install(verify=True)`: the index answered differently from moto."""


def _dimension_key(dimensions: list[Dimension]) -> tuple[tuple[str, str], ...] | None:
    """moto compares `sorted(md.dimensions) == sorted(query_dimensions)`; with every value
    set, that is equality of these tuples. None: a wildcard (value-less) dimension."""
    ordered = sorted(dimensions)
    if any(d.value is None for d in ordered):
        return None
    return tuple((d.name, d.value) for d in ordered)


class _SeriesIndex:
    def __init__(self) -> None:
        self.source: list | None = None
        self.count = 0
        self.by_dimensions: dict[tuple, list[tuple[int, MetricDatumBase]]] = defaultdict(list)
        self.by_name: dict[tuple[str, str], list[tuple[int, MetricDatumBase]]] = defaultdict(list)
        self.wildcards: list[tuple[int, MetricDatumBase]] = []

    def refresh(self, data: list[MetricDatumBase]) -> None:
        if data is not self.source or len(data) < self.count:
            self.__init__()
            self.source = data
        for seq in range(self.count, len(data)):
            self.add(seq, data[seq])
        self.count = len(data)

    def add(self, seq: int, md: MetricDatumBase) -> None:
        self.by_name[(md.namespace, md.name)].append((seq, md))
        key = _dimension_key(md.dimensions)
        if key is None:
            self.wildcards.append((seq, md))
        else:
            self.by_dimensions[(md.name, key)].append((seq, md))


def _percentile(stat: str) -> float | None:
    match = _PERCENTILE.match(stat)
    return float(match.group(1)) if match else None


def _nearest_rank(points: list[MetricDatumBase], pct: float) -> float | None:
    values = sorted(md.value for md in points if hasattr(md, "value"))
    if not values:
        return None
    return values[max(0, math.ceil(pct / 100.0 * len(values)) - 1)]


def _matches(md: MetricDatumBase, query_ns: str, query_name: str, dimensions: list[Dimension]) -> bool:
    """moto's predicate, for the datapoints the index cannot key."""
    if dimensions:
        return sorted(md.dimensions) == sorted(dimensions) and md.name == query_name
    return md.namespace == query_ns and md.name == query_name


def _candidates(index: _SeriesIndex, extra: list[MetricDatumBase], query_ns: str, query_name: str,
                dimensions: list[Dimension]) -> list[MetricDatumBase]:
    """The datapoints moto would consider for the query, in moto's order (stored ones in
    insertion order, then the generated ones)."""
    if dimensions:
        found = _with_dimensions(index, query_ns, query_name, dimensions)
    else:
        found = index.by_name.get((query_ns, query_name), ())
    points = [md for _, md in found]
    points += [md for md in extra if _matches(md, query_ns, query_name, dimensions)]
    return points


def _with_dimensions(index: _SeriesIndex, query_ns: str, query_name: str,
                     dimensions: list[Dimension]) -> list[tuple[int, MetricDatumBase]]:
    """The stored datapoints matching a query with dimensions: its series, plus the datapoints
    with wildcard dimensions that match it too, in insertion order."""
    key = _dimension_key(dimensions)
    if key is None:  # a value-less query dimension: only moto's own comparison will do
        stored = enumerate(index.source or [])
        return [(s, md) for s, md in stored if _matches(md, query_ns, query_name, dimensions)]
    found = list(index.by_dimensions.get((query_name, key), ()))
    wild = [(s, md) for s, md in index.wildcards if _matches(md, query_ns, query_name, dimensions)]
    return sorted(found + wild, key=lambda pair: pair[0]) if wild else found


def _indexed_get_metric_data(
    self: CloudWatchBackend,
    queries: list[dict[str, Any]],
    start_time: datetime,
    end_time: datetime,
    scan_by: str = "TimestampAscending",
) -> list[dict[str, Any]]:
    if any("MetricStat" not in q for q in queries):
        return _ORIGINAL(self, queries, start_time, end_time, scan_by)
    start_time = start_time.replace(microsecond=0)
    end_time = end_time.replace(microsecond=0)
    if start_time > end_time:
        raise ValidationError("The parameter EndTime must be greater than StartTime.")
    if start_time == end_time:
        raise ValidationError("The parameter StartTime must not equal parameter EndTime.")

    with _LOCK:
        index = _index_of(self)
        extra = self.aws_metric_data

        results_to_return = []
        for query in queries:
            metric_stat = query["MetricStat"]
            values, timestamps = _metric_stat(index, extra, metric_stat, start_time, end_time, scan_by)
            label = query.get("Label") or f"{metric_stat['Metric']['MetricName']} {metric_stat['Stat']}"
            if query.get("ReturnData", True):
                results_to_return.append({
                    "id": query["Id"], "label": label, "values": values,
                    "timestamps": timestamps, "status_code": "Complete",
                })
    return results_to_return


def _index_of(backend: CloudWatchBackend) -> _SeriesIndex:
    """The backend's index (made on first use), brought up to date; call it holding _LOCK."""
    index = getattr(backend, _ATTR, None)
    if index is None:
        index = _SeriesIndex()
        setattr(backend, _ATTR, index)
    index.refresh(backend.metric_data)
    return index


def _metric_stat(index: _SeriesIndex, extra: list[MetricDatumBase], metric_stat: dict[str, Any],
                 start_time: datetime, end_time: datetime, scan_by: str) -> tuple[list[Any], list[datetime]]:
    """One MetricStat query's values and their timestamps, one per period holding datapoints."""
    query_ns = metric_stat["Metric"]["Namespace"]
    query_name = metric_stat["Metric"]["MetricName"]
    delta = timedelta(seconds=int(metric_stat["Period"]))
    dimensions = [Dimension(name=d["Name"], value=d["Value"]) for d in metric_stat["Metric"].get("Dimensions", [])]
    unit = metric_stat.get("Unit")
    stat = metric_stat["Stat"]
    points = _candidates(index, extra, query_ns, query_name, dimensions)
    values, timestamps = _statistics(_buckets(points, start_time, end_time, delta, unit), stat, start_time, delta)
    if scan_by == "TimestampDescending" and len(timestamps) > 0:
        timestamps.reverse()
        values.reverse()
    return values, timestamps


def _buckets(points: list[MetricDatumBase], start_time: datetime, end_time: datetime, delta: timedelta,
             unit: str | None) -> dict[int, list[MetricDatumBase]]:
    """The datapoints in the time window (and of the unit, if one is given), by period."""
    buckets: dict[int, list[MetricDatumBase]] = defaultdict(list)
    for md in points:
        if not start_time <= md.timestamp < end_time:
            continue
        if unit and md.unit != unit:
            continue
        buckets[(md.timestamp - start_time) // delta].append(md)
    return buckets


def _statistics(buckets: dict[int, list[MetricDatumBase]], stat: str, start_time: datetime,
                delta: timedelta) -> tuple[list[Any], list[datetime]]:
    """The statistic of each period, in time order: a percentile (nearest rank; a period with
    no single value has none), or moto's own statistic."""
    pct = _percentile(stat)
    result_vals: list[Any] = []
    timestamps: list[datetime] = []
    for k in sorted(buckets):
        if pct is not None:
            value = _nearest_rank(buckets[k], pct)
            if value is not None:
                result_vals.append(value)
                timestamps.append(start_time + k * delta)
            continue
        stats = Statistics([stat], start_time + k * delta)
        stats.metric_data = buckets[k]
        result_vals.append(stats.get_statistics_for_type(stat))
        timestamps.append(stats.timestamp)
    return result_vals, timestamps


def _verifying_get_metric_data(self: CloudWatchBackend, queries: list[dict[str, Any]], start_time: datetime,
                               end_time: datetime, scan_by: str = "TimestampAscending") -> list[dict[str, Any]]:
    fast = _indexed_get_metric_data(self, queries, start_time, end_time, scan_by)
    comparable = [q for q in queries if "MetricStat" not in q or _percentile(q["MetricStat"]["Stat"]) is None]
    if len(comparable) < len(queries):  # moto cannot answer percentiles: compare the rest
        ids = {q["Id"] for q in comparable}
        fast_cmp = [r for r in fast if r["id"] in ids]
        slow = _ORIGINAL(self, comparable, start_time, end_time, scan_by) if comparable else []
    else:
        fast_cmp = fast
        slow = _ORIGINAL(self, queries, start_time, end_time, scan_by)
    if fast_cmp != slow:
        raise IndexMismatch(f"metric index answered {fast!r}, moto answered {slow!r}")
    return fast


def install(verify: bool | None = None) -> None:
    """Patch moto's CloudWatch backend (idempotent). `verify`: also run moto's original
    and compare (None keeps the current setting; off by default)."""
    global _ORIGINAL, _VERIFY
    with _LOCK:
        if _ORIGINAL is None:
            _ORIGINAL = CloudWatchBackend.get_metric_data
            _VERIFY = False
        if verify is not None:
            _VERIFY = verify
        CloudWatchBackend.get_metric_data = _verifying_get_metric_data if _VERIFY else _indexed_get_metric_data


def uninstall() -> None:
    global _ORIGINAL, _VERIFY
    with _LOCK:
        if _ORIGINAL is not None:
            CloudWatchBackend.get_metric_data = _ORIGINAL
            _ORIGINAL = None
            _VERIFY = False


def installed() -> bool:
    return _ORIGINAL is not None
