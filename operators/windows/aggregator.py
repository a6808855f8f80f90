"""Event-time tumbling 1-minute windows per series, folded per batch with numpy.

Why not Bytewax's EventClock: its watermark follows the wall clock, so a replay after a crash
can judge the same event late in one run and on time in another, and the 1-minute rows (and
every rollup fed from them) would differ. Here the watermark is the largest event time seen so
far in this shard, and an event is late exactly when its window had closed before it arrived
(window end + allowed lateness <= watermark). That depends only on the order of events within
the shard — which Kafka fixes per partition — so a replay closes the same windows with the same
contents, whatever the batch boundaries.

Open windows are kept as columns (series id, window start, value) and summarised only when they
close, all series at once: per-event work stays in numpy, and the only Python step per
(series, window) is building its output record.

Memory is bounded by what is open: a series keeps its id only while it has an open value. After a
close, once the id table has doubled since it was last compacted (and holds >= `COMPACT_MIN`
series), ids of series with nothing open are dropped and the rest renumbered. So the table holds
at most max(`COMPACT_MIN`, 2 x the series open at a close) plus the series new since that close,
at ~160 bytes per series, plus 24 bytes per open value; the cost is amortised O(1) per new series,
never a scan per event.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from operators.windows import sketch
from schemas.metrics import SeriesKey, WindowMetric

WINDOW_MS = 60_000
NEVER = -(2**62)
# Below this many series ids the table is never compacted (a compaction costs a pass over what is open).
COMPACT_MIN = 4096


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


@dataclass(frozen=True)
class Partial:
    """A pre-aggregated part of one series' window (an OTLP histogram point, mapped to the hub's
    log buckets) at event time `time_ms`: folded in as it is, never expanded into fake events.
    `summary` is filled like a closed window; its window start is set when it is folded in."""

    time_ms: int
    summary: WindowMetric


class WindowAggregator:
    """Per-shard window state; picklable (numpy columns) so it lives in Bytewax snapshots.

    Three latencies in minute 0 and one at 61 s: that one moves the watermark past minute 0
    (allowed lateness 0), so minute 0 closes with its count, sum and percentiles.

    >>> import numpy as np
    >>> from operators.windows import MetricValues, WindowAggregator, sketch
    >>> agg = WindowAggregator(allowed_lateness_ms=0)
    >>> times = np.array([0, 10_000, 20_000, 61_000])
    >>> dims = [("gpt-4o", "/v1/chat/completions", "search")] * 4
    >>> agg.add(times, dims, [MetricValues("latency_ms", np.array([100.0, 200.0, 300.0, 50.0]))])
    []
    >>> [w] = agg.close_ready()
    >>> w.series.metric, w.series.model, w.window_start_ms, w.count, w.sum, w.max
    ('latency_ms', 'gpt-4o', 0, 3, 600.0, 300.0)
    >>> abs(sketch.quantile(w.hist, 0.5) / 200.0 - 1) <= sketch.ALPHA  # p50 within 1%
    True
    >>> [late.window_start_ms for late in agg.add(np.array([5_000]), dims[:1],
    ...                                           [MetricValues("latency_ms", np.array([80.0]))])]
    [0]
    """

    def __init__(self, allowed_lateness_ms: int, window_ms: int = WINDOW_MS) -> None:
        self.window_ms = window_ms
        self.lateness_ms = allowed_lateness_ms
        self.watermark_ms: int = NEVER
        # Windows starting before this are closed even if the watermark has not passed them
        # (closed by the idle timer or at the end of input).
        self.closed_floor_ms: int = NEVER
        self.series: list[SeriesKey] = []
        self.series_ids: dict[SeriesKey, int] = {}
        # Open values as (series id, window start, value) column chunks, one per batch; a chunk
        # is only touched again when one of its windows closes.
        self.chunks: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (earliest start, columns...)
        # Open partial aggregates as (window start, Partial), merged into their window when it closes.
        self.partials: list[tuple[int, Partial]] = []
        # Size of the id table after its last compaction; it is compacted again at twice that.
        self.compacted_size = 0

    def __setstate__(self, state: dict) -> None:
        state.setdefault("partials", [])  # snapshots taken before partials existed
        state.setdefault("compacted_size", 0)  # snapshots taken before compaction existed
        self.__dict__.update(state)

    @property
    def has_open(self) -> bool:
        return bool(self.chunks) or bool(self.partials)

    def add_partials(self, partials: Sequence[Partial]) -> list[Partial]:
        """Fold pre-aggregated parts in, in order, under the same lateness rule as events;
        returns the late ones (their windows had already closed)."""
        late = []
        for p in partials:
            start = p.time_ms - p.time_ms % self.window_ms
            if start + self.window_ms + self.lateness_ms <= self.watermark_ms or start < self.closed_floor_ms:
                late.append(p)
            elif p.summary.count:
                self.partials.append((start, p))
            self.watermark_ms = max(self.watermark_ms, p.time_ms)
        return late

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
        sids, begins, values = [], [], []
        for m, metric in enumerate(metrics):
            vals = np.asarray(metric.values, dtype=np.float64)
            use = on_time & ~np.isnan(vals)
            if not use.any():
                continue
            local = dim_of[use]
            present, inverse = np.unique(local, return_inverse=True)
            to_global = np.fromiter((self._series_id(SeriesKey(metric.name, *dim_list[d])) for d in present.tolist()),
                                    dtype=np.int64, count=len(present))
            sids.append(to_global[inverse])
            begins.append(starts[use])
            values.append(vals[use])
        if sids:
            begin = np.concatenate(begins)
            self.chunks.append((int(begin.min()), np.concatenate(sids), begin, np.concatenate(values)))
        return late

    def _series_id(self, key: SeriesKey) -> int:
        sid = self.series_ids.get(key)
        if sid is None:
            sid = self.series_ids[key] = len(self.series)
            self.series.append(key)
        return sid

    def close_ready(self) -> list[WindowMetric]:
        """Windows the watermark has passed by the allowed lateness."""
        return self._close(self.watermark_ms - self.lateness_ms - self.window_ms)

    def close_all(self) -> list[WindowMetric]:
        """End of input or idle: close everything open; later arrivals for them are late."""
        if self.has_open:
            last = max([int(start.max()) for _, _, start, _ in self.chunks] + [s for s, _ in self.partials])
            self.closed_floor_ms = max(self.closed_floor_ms, last + self.window_ms)
        return self._close(2**62)

    def _close(self, horizon: int) -> list[WindowMetric]:
        """Summarise every open window starting at or before `horizon`, all series at once."""
        out = self._close_values(horizon)
        if self.partials and min(s for s, _ in self.partials) <= horizon:
            ready = [(s, p) for s, p in self.partials if s <= horizon]
            self.partials = [(s, p) for s, p in self.partials if s > horizon]
            out = _merge_partials(out, ready, self.window_ms)
        if len(self.series) >= max(COMPACT_MIN, 2 * self.compacted_size):
            self.compact()
        return out

    def compact(self) -> None:
        """Forget the ids of series with no open value and renumber the rest (order kept).
        Partials carry their own series key, so only value chunks are renumbered.

        >>> agg = WindowAggregator(allowed_lateness_ms=0)
        >>> for minute, team in enumerate(["a", "b", "c"]):
        ...     _ = agg.add(np.array([minute * 60_000]), [("m", "", team)], [MetricValues("requests", np.ones(1))])
        >>> [w.series.team for w in agg.close_ready()], len(agg.series)
        (['a', 'b'], 3)
        >>> agg.compact()
        >>> [k.team for k in agg.series], agg.series_ids
        (['c'], {SeriesKey(metric='requests', model='m', endpoint='', team='c'): 0})
        >>> [(w.series.team, w.count) for w in agg.close_all()]
        [('c', 1)]
        """
        if self.chunks:
            live = np.unique(np.concatenate([sid for _, sid, _, _ in self.chunks]))
            new_id = np.full(len(self.series), -1, dtype=np.int64)
            new_id[live] = np.arange(len(live), dtype=np.int64)
            self.chunks = [(first, new_id[sid], start, v) for first, sid, start, v in self.chunks]
            series = self.series
            self.series = [series[i] for i in live.tolist()]
        else:
            self.series = []
        self.series_ids = {key: i for i, key in enumerate(self.series)}
        self.compacted_size = len(self.series)

    def _close_values(self, horizon: int) -> list[WindowMetric]:
        closing = [c for c in self.chunks if c[0] <= horizon]
        if not closing:
            return []
        self.chunks = [c for c in self.chunks if c[0] > horizon]
        sid, start, v = (np.concatenate(parts) for parts in list(zip(*closing))[1:])
        ready = start <= horizon
        if not ready.all():
            keep = ~ready
            self.chunks.append((int(start[keep].min()), sid[keep], start[keep], v[keep]))
            sid, start, v = sid[ready], start[ready], v[ready]
        # Output order: by window, then series name — deterministic for any batch history. Only the
        # series closing now are ranked (the id table can be much larger than what closes).
        present = np.flatnonzero(np.bincount(sid, minlength=len(self.series)))
        names = [(k.metric, k.model, k.endpoint, k.team) for k in map(self.series.__getitem__, present.tolist())]
        rank = np.zeros(len(self.series), dtype=np.int64)
        rank[present[sorted(range(len(names)), key=names.__getitem__)]] = np.arange(len(names))
        order = _group_then_value_order((start - start.min()) // self.window_ms * len(names) + rank[sid], v)
        sid, start, v = sid[order], start[order], v[order]
        new_group = np.empty(len(sid), dtype=bool)
        new_group[0] = True
        new_group[1:] = (sid[1:] != sid[:-1]) | (start[1:] != start[:-1])
        first = np.flatnonzero(new_group)
        counts = np.diff(np.append(first, len(sid)))
        sums = np.add.reduceat(v, first)
        sumsq = np.add.reduceat(v * v, first)
        mins = np.minimum.reduceat(v, first)
        maxs = np.maximum.reduceat(v, first)
        # Values are sorted within a group, so equal buckets are adjacent: run-length encode.
        group = np.repeat(np.arange(len(first)), counts)
        buckets = sketch.bucket_indices(v)
        run = np.empty(len(v), dtype=bool)
        run[0] = True
        run[1:] = (buckets[1:] != buckets[:-1]) | (group[1:] != group[:-1])
        run_first = np.flatnonzero(run)
        run_counts = np.diff(np.append(run_first, len(v))).tolist()
        run_buckets = buckets[run_first].tolist()
        run_bounds = np.searchsorted(group[run_first], np.arange(len(first) + 1)).tolist()
        series = self.series
        out = []
        for g, (s, ws, c, total, sq, lo, hi) in enumerate(zip(sid[first].tolist(), start[first].tolist(), counts.tolist(),
                                                              sums.tolist(), sumsq.tolist(), mins.tolist(), maxs.tolist())):
            a, b = run_bounds[g], run_bounds[g + 1]
            out.append(WindowMetric(series=series[s], window_start_ms=ws, window_ms=self.window_ms, count=c, sum=total,
                                    min=lo, max=hi, sumsq=sq, hist=dict(zip(run_buckets[a:b], run_counts[a:b]))))
        return out


def _merge_partials(out: list[WindowMetric], ready: list[tuple[int, Partial]], window_ms: int) -> list[WindowMetric]:
    """Add closing partials to the windows summarised from values (or open new ones); same order
    as `_close`: by window, then series name."""
    by_key = {(w.series, w.window_start_ms): w for w in out}
    for start, p in ready:
        s = p.summary
        w = by_key.get((s.series, start))
        if w is None:
            by_key[(s.series, start)] = msgspec.structs.replace(s, window_start_ms=start, window_ms=window_ms,
                                                                hist=dict(s.hist))
            continue
        w.count += s.count
        w.sum += s.sum
        w.sumsq += s.sumsq
        w.min = min(w.min, s.min)
        w.max = max(w.max, s.max)
        sketch.merge_into(w.hist, s.hist)
    return sorted(by_key.values(), key=lambda w: (w.window_start_ms, w.series.metric, w.series.model,
                                                  w.series.endpoint, w.series.team))


def _group_then_value_order(group: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Indices sorting by group, then value (= np.lexsort((v, group)), up to ties of equal values).

    Sorting by value first and then stably by group makes each group's values come out sorted,
    so sums and histograms do not depend on arrival order. With fewer than 2^15 groups the
    second sort is numpy's O(n) radix sort on int16: ~5x faster than lexsort at 1.7M values.
    """
    order = np.argsort(v)
    if group.max() < 2**15:
        return order[np.argsort(group.astype(np.int16)[order], kind="stable")]
    return order[np.argsort(group[order], kind="stable")]

