"""Records for windowed metrics: what the window aggregator emits and ClickHouse `metrics_1m` stores.

One closed minute of gpt-4o latencies (100 and 200 ms) for team search, and its `metrics_1m` row:

>>> w = WindowMetric(series=SeriesKey("latency_ms", model="gpt-4o", team="search"),
...                  window_start_ms=1_763_546_340_000, window_ms=60_000, count=2, sum=300.0, min=100.0,
...                  max=200.0, sumsq=50_000.0, hist={231: 1, 265: 1}, shard="s0")
>>> w.mean, w.stddev
(150.0, 50.0)
>>> window_rows([w])
[['latency_ms', 'gpt-4o', '', 'search', 1763546340, 's0', 2, 300.0, 100.0, 200.0, 50000.0, {231: 1, 265: 1}, '', '', '', '', '', []]]
"""
from __future__ import annotations

from typing import Any

import msgspec

from schemas.assets import AssetInfo, asset_columns


class SeriesKey(msgspec.Struct, frozen=True, array_like=True):
    """Identity of one metric series: a metric name plus the tags it is split by."""

    metric: str
    model: str = ""
    endpoint: str = ""
    team: str = ""


class WindowMetric(msgspec.Struct, kw_only=True):
    """One closed 1-minute window of one series (per input shard).

    `hist` is a log-bucketed histogram (DDSketch idea, 1% relative accuracy): bucket index ->
    count, mergeable by adding counts, so percentiles stay correct when windows roll up. Mean
    and stddev derive from count, sum and sumsq, which also just add up in a rollup.
    """

    series: SeriesKey
    window_start_ms: int
    window_ms: int
    count: int
    sum: float
    min: float
    max: float
    sumsq: float
    hist: dict[int, int]
    shard: str = ""
    # The series' registry asset as of the window's end, set by the registry step (None: unknown).
    asset: AssetInfo | None = None

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    @property
    def stddev(self) -> float:
        if self.count < 2:
            return 0.0
        var = max(self.sumsq / self.count - self.mean**2, 0.0)
        return var**0.5


def window_rows(windows: list[WindowMetric]) -> list[list[Any]]:
    """Rows for ClickHouse `metrics_1m` (columns as in connectors.clickhouse.METRICS_1M_COLUMNS).

    The window start goes out in seconds (a DateTime column); the asset columns
    (schemas.assets.ASSET_INFO_COLUMNS) follow; see the module docstring's example.
    """
    return [[w.series.metric, w.series.model, w.series.endpoint, w.series.team, w.window_start_ms // 1000, w.shard,
             w.count, w.sum, w.min, w.max, w.sumsq, w.hist, *asset_columns(w.asset)] for w in windows]


class MetricPoint(msgspec.Struct, kw_only=True):
    """One OTLP histogram data point of a GenAI client metric, decoded and checked but not yet
    folded: the shard step turns cumulative points into deltas (it holds the previous point per
    stream) and adds the result to its windows as a partial aggregate, not as fake events.

    `metric` is the hub metric it feeds (`latency_ms`, `input_tokens`, `output_tokens`); values
    are in the hub's unit once multiplied by `factor` (seconds -> ms: 1000). Explicit-bucket
    points carry `bounds` and `counts` (len(bounds) + 1 buckets); exponential ones carry `scale`,
    `offset`, `counts` (positive buckets from `offset`) and `zero_count`. `min`/`max` are None when
    the point has none. `requests` marks duration points: each observation is also a request, an
    error when `error` (the point has `error.type`).
    """

    metric: str
    model: str
    endpoint: str = ""
    team: str = ""
    # Identity of the OTLP stream (metric name + resource, scope and point attributes).
    stream: str = ""
    start_ns: int = 0
    time_ns: int = 0
    # Event time (time_ns in ms, minus the source's clock skew): the window the point lands in.
    time_ms: int = 0
    cumulative: bool = False
    count: int = 0
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    factor: float = 1.0
    bounds: list[float] = []
    counts: list[int] = []
    scale: int | None = None
    offset: int = 0
    zero_count: int = 0
    requests: bool = False
    error: bool = False
    # Set on deltas of cumulative points: min/max then bound the values (they cover the whole
    # stream) rather than being this delta's own.
    bounded: bool = False
