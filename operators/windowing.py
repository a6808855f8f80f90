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
    """Running summary of one series in one open window.

    The histogram is kept as per-batch (bucket, count) array chunks and merged when the window
    closes (or when chunks pile up): folding a batch then costs a Python step per series, not
    per histogram bucket.
    """

    count: int = 0
    sum: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")
    sumsq: float = 0.0
    chunks: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def add_hist(self, buckets: np.ndarray, counts: np.ndarray) -> None:
        self.chunks.append((buckets, counts))
        if len(self.chunks) > MAX_CHUNKS:
            self.chunks = [self._merged()]

    def _merged(self) -> tuple[np.ndarray, np.ndarray]:
        buckets = np.concatenate([b for b, _ in self.chunks])
        counts = np.concatenate([c for _, c in self.chunks])
        keys, inverse = np.unique(buckets, return_inverse=True)
        return keys, np.bincount(inverse, weights=counts, minlength=len(keys)).astype(np.int64)

    def hist(self) -> dict[int, int]:
        if not self.chunks:
            return {}
        keys, counts = self._merged()
        return dict(zip(keys.tolist(), counts.tolist()))


MAX_CHUNKS = 32


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
        base = int(starts.min())
        slot = (starts - base) // self.window_ms
        nslots = int(slot.max()) + 1
        # One pass over all metrics: key = (metric, dims, window slot).
        keys, values = [], []
        names = []
        for metric in metrics:
            vals = np.asarray(metric.values, dtype=np.float64)
            use = ~late_mask & ~np.isnan(vals)
            if use.any():
                names.append(metric.name)
                keys.append(((len(names) - 1) * len(dim_list) + dim_of[use]) * nslots + slot[use])
                values.append(vals[use])
        if not keys:
            return late
        key = np.concatenate(keys)
        v = np.concatenate(values)
        order = np.argsort(key, kind="stable")
        key, v = key[order], v[order]
        bounds = np.flatnonzero(np.diff(key)) + 1
        starts_idx = np.concatenate(([0], bounds))
        counts = np.diff(np.concatenate((starts_idx, [len(key)])))
        sums = np.add.reduceat(v, starts_idx)
        sumsq = np.add.reduceat(v * v, starts_idx)
        mins = np.minimum.reduceat(v, starts_idx)
        maxs = np.maximum.reduceat(v, starts_idx)
        group_of = np.repeat(np.arange(len(starts_idx)), counts)
        buckets = sketch.bucket_indices(v)
        pair = group_of * (2**33) + (buckets - sketch.ZERO_BUCKET)
        pairs, pair_counts = np.unique(pair, return_counts=True)
        pair_group = pairs // (2**33)
        pair_bucket = pairs % (2**33) + sketch.ZERO_BUCKET
        pair_bounds = np.searchsorted(pair_group, np.arange(len(starts_idx) + 1))
        ndims = len(dim_list)
        for gi, (k, c, s_, sq, lo, hi) in enumerate(zip(key[starts_idx].tolist(), counts.tolist(), sums.tolist(),
                                                         sumsq.tolist(), mins.tolist(), maxs.tolist())):
            rest, window_slot = divmod(k, nslots)
            metric_i, dim_i = divmod(rest, ndims)
            model, endpoint, team = dim_list[dim_i]
            wkey = (SeriesKey(names[metric_i], model, endpoint, team), base + window_slot * self.window_ms)
            p = self.open.get(wkey)
            if p is None:
                p = self.open[wkey] = Partial()
            p.count += c
            p.sum += s_
            p.sumsq += sq
            if lo < p.min:
                p.min = lo
            if hi > p.max:
                p.max = hi
            a, b = pair_bounds[gi], pair_bounds[gi + 1]
            p.add_hist(pair_bucket[a:b], pair_counts[a:b])
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
                                    hist=p.hist()))
        return out
