"""Event-time tumbling 1-minute windows per series, folded per batch with numpy.

Why not Bytewax's EventClock: its watermark follows the wall clock, so a replay after a crash
can judge the same event late in one run and on time in another, and the 1-minute rows (and
every rollup fed from them) would differ. Here the watermark is the largest event time seen so
far in this shard, and an event is late exactly when its window had closed before it arrived
(window end + allowed lateness <= watermark). That depends only on the order of events within
the shard — which Kafka fixes per partition — so a replay closes the same windows with the same
contents, whatever the batch boundaries.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from operators import sketch
from schemas.metrics import SeriesKey, WindowMetric

WINDOW_MS = 60_000


@dataclass
class Partial:
    """Running summary of one series in one open window."""

    count: int = 0
    sum: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")
    sumsq: float = 0.0
    hist: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LateEvent:
    index: int
    window_start_ms: int
    watermark_ms: int


@dataclass(frozen=True)
class MetricValues:
    """One metric's values for a batch: value per event, NaN where the event has none."""

    name: str
    values: np.ndarray


class WindowAggregator:
    """Per-shard window state; picklable so it lives in Bytewax recovery snapshots."""

    def __init__(self, allowed_lateness_ms: int, window_ms: int = WINDOW_MS) -> None:
        self.window_ms = window_ms
        self.lateness_ms = allowed_lateness_ms
        self.watermark_ms: int = -(2**62)
        # Windows starting before this are closed even if the watermark has not passed them
        # (closed by the idle timer or at the end of input).
        self.closed_floor_ms: int = -(2**62)
        self.open: dict[tuple[SeriesKey, int], Partial] = {}
        self.last_input_wall_ms: int = 0

    def add(
        self,
        times_ms: np.ndarray,
        dims: Sequence[tuple[str, str, str]],
        metrics: Sequence[MetricValues],
    ) -> list[LateEvent]:
        """Fold a batch in; returns the late events (their windows had already closed).

        `dims[i]` is (model, endpoint, team) of event i; each metric's NaN values are skipped.
        """
        n = len(times_ms)
        if n == 0:
            return []
        times_ms = np.asarray(times_ms, dtype=np.int64)
        starts = times_ms - np.mod(times_ms, self.window_ms)
        before = np.empty(n, dtype=np.int64)
        before[0] = self.watermark_ms
        if n > 1:
            np.maximum.accumulate(times_ms[:-1], out=before[1:])
            np.maximum(before[1:], self.watermark_ms, out=before[1:])
        late_mask = (starts + self.window_ms + self.lateness_ms <= before) | (starts < self.closed_floor_ms)
        self.watermark_ms = max(self.watermark_ms, int(times_ms.max()))
        late = [LateEvent(int(i), int(starts[i]), int(before[i])) for i in np.flatnonzero(late_mask)]

        dim_ids: dict[tuple[str, str, str], int] = {}
        dim_of = np.fromiter((dim_ids.setdefault(d, len(dim_ids)) for d in dims), dtype=np.int64, count=n)
        dim_list = list(dim_ids)
        on_time = ~late_mask
        base = int(starts.min())
        slot = (starts - base) // self.window_ms
        nslots = int(slot.max()) + 1
        for metric in metrics:
            vals = np.asarray(metric.values, dtype=np.float64)
            use = on_time & ~np.isnan(vals)
            if not use.any():
                continue
            v = vals[use]
            key = dim_of[use] * nslots + slot[use]
            groups, inverse = np.unique(key, return_inverse=True)
            g = len(groups)
            counts = np.bincount(inverse, minlength=g)
            sums = np.bincount(inverse, weights=v, minlength=g)
            sumsq = np.bincount(inverse, weights=v * v, minlength=g)
            mins = np.full(g, np.inf)
            np.minimum.at(mins, inverse, v)
            maxs = np.full(g, -np.inf)
            np.maximum.at(maxs, inverse, v)
            buckets = sketch.bucket_indices(v)
            pair = inverse.astype(np.int64) * (2**33) + (buckets - sketch.ZERO_BUCKET)
            pairs, pair_counts = np.unique(pair, return_counts=True)
            pair_group = pairs // (2**33)
            pair_bucket = pairs % (2**33) + sketch.ZERO_BUCKET
            for gi in range(g):
                k = int(groups[gi])
                model, endpoint, team = dim_list[k // nslots]
                wkey = (SeriesKey(metric.name, model, endpoint, team), base + (k % nslots) * self.window_ms)
                p = self.open.get(wkey)
                if p is None:
                    p = self.open[wkey] = Partial()
                p.count += int(counts[gi])
                p.sum += float(sums[gi])
                p.sumsq += float(sumsq[gi])
                p.min = min(p.min, float(mins[gi]))
                p.max = max(p.max, float(maxs[gi]))
            for gi, b, c in zip(pair_group.tolist(), pair_bucket.tolist(), pair_counts.tolist()):
                k = int(groups[gi])
                model, endpoint, team = dim_list[k // nslots]
                hist = self.open[(SeriesKey(metric.name, model, endpoint, team), base + (k % nslots) * self.window_ms)].hist
                hist[b] = hist.get(b, 0) + c
        return late

    def close_ready(self) -> list[WindowMetric]:
        """Windows the watermark has passed by the allowed lateness."""
        horizon = self.watermark_ms - self.lateness_ms - self.window_ms
        return self._close(lambda start: start <= horizon)

    def close_all(self) -> list[WindowMetric]:
        """End of input or idle: close everything open; later arrivals for them are late."""
        if self.open:
            self.closed_floor_ms = max(self.closed_floor_ms, max(s for _, s in self.open) + self.window_ms)
        return self._close(lambda start: True)

    def _close(self, ready) -> list[WindowMetric]:
        keys = [k for k in self.open if ready(k[1])]
        out = []
        for key in sorted(keys, key=lambda k: (k[1], k[0].metric, k[0].model, k[0].endpoint, k[0].team)):
            p = self.open.pop(key)
            out.append(WindowMetric(series=key[0], window_start_ms=key[1], window_ms=self.window_ms,
                                    count=p.count, sum=p.sum, min=p.min, max=p.max, sumsq=p.sumsq,
                                    hist=dict(sorted(p.hist.items()))))
        return out
