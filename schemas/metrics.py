"""Records for windowed metrics: what the window aggregator emits and ClickHouse `metrics_1m` stores."""
from __future__ import annotations

from typing import Any

import msgspec


class SeriesKey(msgspec.Struct, frozen=True, array_like=True):
    """Identity of one metric series: a metric name plus the tags it is split by."""

    metric: str
    model: str = ""
    endpoint: str = ""
    team: str = ""


class WindowMetric(msgspec.Struct, kw_only=True):
    """One closed 1-minute window of one series (per input shard).

    `hist` is a log-bucketed histogram (DDSketch idea, 1% relative accuracy): bucket index ->
    count, mergeable by adding counts, so percentiles stay correct when windows roll up.
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
    """Rows for ClickHouse `metrics_1m` (columns as in connectors.clickhouse.METRICS_1M_COLUMNS)."""
    return [[w.series.metric, w.series.model, w.series.endpoint, w.series.team, w.window_start_ms // 1000, w.shard,
             w.count, w.sum, w.min, w.max, w.sumsq, w.hist] for w in windows]
