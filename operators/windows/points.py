"""OTLP histogram points -> window partials: cumulative to delta, source buckets to log buckets.

Cumulative points: `Cumulative` keeps the previous point per stream (metric + attributes) and
hands on the difference; a stream starts over (the point is taken whole) when its start time
changes or its count drops (a reset), and an out-of-order or repeated point adds nothing. The
state is bounded (least recently updated streams are forgotten first; a forgotten stream's next
point counts again from its start time). Exponential buckets at different scales are subtracted
after downscaling the finer one (exact); explicit buckets need the same bounds. When buckets
cannot be subtracted (bounds changed, a bucket went down) the delta keeps its exact count and
sum and puts every observation at the mean. Min and max of a cumulative point cover the whole
stream, so a delta only uses them to clamp its bucket values.

Buckets -> the hub's log buckets (sketch), one representative value per source bucket:

- exponential (base = 2^(2^-scale), bucket i = (base^i, base^(i+1)]): the bucket's geometric
  midpoint base^(i+1/2), within sqrt(base)-1 of any value in the bucket (0.5% at scale 7, 1.1%
  at scale 5, 2.2% at scale 4), plus the hub bucket's 1%: percentiles are within
  (1 + 0.01) * sqrt(base) - 1 of the true ones (~2% at scale 5, ~1.6% at scale 6);
- explicit bounds (bucket i = (b[i-1], b[i]]): the geometric mean sqrt(b[i-1] * b[i]), or half
  the upper bound when the lower one is 0 (or the first bucket), the point's max (else the last
  bound) for the overflow bucket; percentiles are only as right as the bounds: within the
  bucket holding the true value. Values are clamped into [min, max] when the point has them,
  and a point whose min equals its max is exact.

Sums are the point's own (token counts stay exact); sums of squares come from the
representatives, so stddev is approximate. A duration point is also `count` requests, and as
many errors (value 1) when it carries `error.type`, else error value 0 — as request events are.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import msgspec
import numpy as np

from operators.windows import sketch
from operators.windows.aggregator import Partial
from schemas.metrics import MetricPoint, SeriesKey, WindowMetric

MAX_STREAMS = 100_000


class Cumulative:
    """Previous point per cumulative stream, bounded to `max_streams`; picklable (shard state).

    >>> c = Cumulative()
    >>> p1 = MetricPoint(metric="input_tokens", model="m", stream="s", start_ns=1, time_ns=10, cumulative=True,
    ...                  count=2, sum=30.0, bounds=[10.0, 100.0], counts=[0, 2, 0])
    >>> p2 = msgspec.structs.replace(p1, time_ns=20, count=5, sum=100.0, counts=[1, 3, 1])
    >>> d = c.delta(p1); d.count, d.sum
    (2, 30.0)
    >>> d = c.delta(p2); d.count, d.sum, d.counts
    (3, 70.0, [1, 1, 1])
    >>> c.delta(p2) is None  # the same point again adds nothing
    True
    """

    def __init__(self, max_streams: int = MAX_STREAMS) -> None:
        self.max_streams = max_streams
        self.last: OrderedDict[tuple[str, str], MetricPoint] = OrderedDict()

    def delta(self, p: MetricPoint) -> MetricPoint | None:
        """What `p` adds since the stream's previous point (p itself when delta or new)."""
        if not p.cumulative:
            return p
        key = (p.metric, p.stream)
        prev = self.last.get(key)
        if prev is not None and prev.start_ns == p.start_ns and p.time_ns <= prev.time_ns:
            return None  # repeated or out of order: the newer point already counted it
        self.last[key] = p
        self.last.move_to_end(key)
        if len(self.last) > self.max_streams:
            self.last.popitem(last=False)
        if prev is None or prev.start_ns != p.start_ns or p.count < prev.count:
            return p  # a new stream, or a reset: everything since its start time
        return _subtract(p, prev)


def _subtract(p: MetricPoint, prev: MetricPoint) -> MetricPoint:
    count = p.count - prev.count
    total = None if p.sum is None or prev.sum is None else p.sum - prev.sum
    base = dict(count=count, sum=total if total is None or total >= 0 else None, cumulative=False, bounded=True)
    if p.scale is None:
        if p.bounds == prev.bounds and len(p.counts) == len(prev.counts):
            counts = [a - b for a, b in zip(p.counts, prev.counts)]
            if min(counts, default=0) >= 0:
                return msgspec.structs.replace(p, counts=counts, **base)
    else:
        scale = min(p.scale, prev.scale)
        cur, old = _downscale(p, scale), _downscale(prev, scale)
        zero = p.zero_count - prev.zero_count
        diff = {i: c - old.get(i, 0) for i, c in cur.items()}
        if zero >= 0 and all(c >= 0 for c in diff.values()) and not set(old) - set(cur):
            lo = min(diff, default=0)
            counts = [diff.get(i, 0) for i in range(lo, max(diff, default=-1) + 1)]
            return msgspec.structs.replace(p, scale=scale, offset=lo, counts=counts, zero_count=zero, **base)
    # Buckets that cannot be subtracted: exact count and sum, every observation at the mean.
    return msgspec.structs.replace(p, scale=None, bounds=[], counts=[], offset=0, zero_count=0, **base)


def _downscale(p: MetricPoint, scale: int) -> dict[int, int]:
    """Bucket index -> count at a coarser scale (bucket i at scale s is in i >> (s - scale))."""
    shift = p.scale - scale
    out: dict[int, int] = {}
    for j, c in enumerate(p.counts):
        if c:
            i = (p.offset + j) >> shift
            out[i] = out.get(i, 0) + c
    return out


def _representatives(p: MetricPoint) -> tuple[list[float], list[int]]:
    """(value, count) per non-empty source bucket, in the point's own unit."""
    lo, hi = p.min, p.max
    if p.scale is not None:
        step = 2.0 ** -p.scale
        values = [0.0] if p.zero_count else []
        counts = [p.zero_count] if p.zero_count else []
        for j, c in enumerate(p.counts):
            if c:
                values.append(2.0 ** min((p.offset + j + 0.5) * step, 1023.0))
                counts.append(c)
    elif p.counts:
        b = p.bounds
        n = len(b)
        values, counts = [], []
        for i, c in enumerate(p.counts):
            if not c:
                continue
            if i == n:  # overflow bucket (b[-1], +inf)
                v = hi if hi is not None else (b[-1] if n else 0.0)
            else:
                low = b[i - 1] if i else 0.0
                v = math.sqrt(low * b[i]) if low > 0 else max(b[i], 0.0) / 2
            values.append(v)
            counts.append(c)
    else:  # no buckets: all at the mean
        mean = p.sum / p.count if p.sum is not None and p.count else (lo if lo is not None else hi or 0.0)
        values, counts = [mean], [p.count]
    if lo is not None and hi is not None and lo == hi and not p.bounded:
        return [lo], [p.count]
    if lo is not None:
        values = [max(v, lo) for v in values]
    if hi is not None:
        values = [min(v, hi) for v in values]
    return values, counts


def to_partials(p: MetricPoint, canonical: Callable[[str], str] = str) -> list[Partial]:
    """One (delta) point -> partials: its metric, plus requests and errors for duration points.

    >>> p = MetricPoint(metric="latency_ms", model="gpt-4o", time_ms=60_000, count=3, sum=1.5, min=0.25, max=0.75,
    ...                 factor=1000.0, bounds=[0.5], counts=[2, 1], requests=True, error=True)
    >>> [(x.summary.series.metric, x.summary.count, x.summary.sum, x.summary.min, x.summary.max)
    ...  for x in to_partials(p)]
    [('latency_ms', 3, 1500.0, 250.0, 750.0), ('requests', 3, 3.0, 1.0, 1.0), ('errors', 3, 3.0, 1.0, 1.0)]
    """
    if p.count <= 0:
        return []
    f = p.factor
    values, counts = _representatives(p)
    vals = np.array(values, dtype=np.float64) * f
    cnt = np.array(counts, dtype=np.int64)
    hist: dict[int, int] = {}
    for b, c in zip(sketch.bucket_indices(vals).tolist(), counts):
        hist[b] = hist.get(b, 0) + c
    total = p.sum * f if p.sum is not None else float((vals * cnt).sum())
    exact = not p.bounded
    lo = p.min * f if exact and p.min is not None else float(vals.min())
    hi = p.max * f if exact and p.max is not None else float(vals.max())
    model, endpoint, team = canonical(p.model), p.endpoint, p.team
    def part(metric: str, total: float, lo: float, hi: float, sumsq: float, hist: dict[int, int]) -> Partial:
        return Partial(p.time_ms, WindowMetric(series=SeriesKey(metric, model, endpoint, team), window_start_ms=0,
                                               window_ms=0, count=p.count, sum=total, min=lo, max=hi, sumsq=sumsq,
                                               hist=hist))

    out = [part(p.metric, total, lo, hi, float((vals * vals * cnt).sum()), hist)]
    if p.requests:
        n = float(p.count)
        out.append(part("requests", n, 1.0, 1.0, n, {0: p.count}))
        e = 1.0 if p.error else 0.0
        out.append(part("errors", n * e, e, e, n * e, {0 if p.error else sketch.ZERO_BUCKET: p.count}))
    return out
