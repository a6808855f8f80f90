"""One input shard's processing step: normalize, dedup, columns, windows — per batch.

A shard is one Kafka partition (or one file, or the synthetic generator). Everything that
decides what a replay produces (dedup memory, window state, watermark) is per shard, so the
outcome depends only on the order of messages in that shard.
"""
from __future__ import annotations

import time

import msgspec
import numpy as np

from operators.correlate.signals import signals_from_columns
from operators.dedup import Deduplicator
from operators.normalize import NormalizedBatch, Normalizer
from operators.cost.pricer import Pricer
from operators.shard.columns import ColumnRules, to_columns
from operators.windows.aggregator import WindowAggregator
from operators.windows.extract import extract
from operators.windows.points import Cumulative, to_partials
from schemas.items import ALL_CLOSED, RawBatch, ShardOutput
from schemas.raw import DeadLetter, RawMessage
from schemas.rows import COLUMN_NAMES



class ShardState:
    """Picklable per-shard state carried in Bytewax snapshots."""

    def __init__(self, dedup_window_ms: int, dedup_max_entries: int, allowed_lateness_ms: int) -> None:
        self.dedup = Deduplicator(dedup_window_ms, dedup_max_entries)
        self.windows = WindowAggregator(allowed_lateness_ms)
        # Previous point per cumulative OTLP metric stream, to turn cumulative points into deltas.
        self.cumulative = Cumulative()

    def __setstate__(self, state: dict) -> None:
        state.setdefault("cumulative", Cumulative())  # snapshots taken before OTLP metrics
        self.__dict__.update(state)


class ShardSteps(msgspec.Struct, frozen=True):
    """The stateless parts of a shard's step, built once from config and shared by all shards."""

    normalizer: Normalizer
    idle_close_ms: int = 30_000
    pricer: Pricer | None = None
    columns: ColumnRules = ColumnRules()


def process(state: ShardState, batch: RawBatch, steps: ShardSteps, now_ms: int | None = None) -> ShardOutput:
    """Run one batch through normalize, dedup, columns and windows; bad input becomes dead letters.

    >>> from operators.normalize import NormalizedBatch, Normalizer
    >>> from schemas.items import RawBatch
    >>> from schemas.raw import RawMessage
    >>> good = (b'{"event_id": "evt-1", "event_type": "telemetry.request", "event_time": 1763546340000, '
    ...         b'"payload": {"model": "gpt-4o", "latency_ms": 812.5}}')
    >>> bad = b'{"event_id": "evt-2", "event_type": '
    >>> batch = RawBatch("telemetry-0", [RawMessage(good, "telemetry", 0, 0), RawMessage(bad, "telemetry", 0, 1)])
    >>> state = ShardState(dedup_window_ms=600_000, dedup_max_entries=100_000, allowed_lateness_ms=60_000)
    >>> steps = ShardSteps(Normalizer(), idle_close_ms=30_000)
    >>> out = process(state, batch, steps, now_ms=1_763_546_400_000)
    >>> out.events, [(d.code, d.topic, d.offset, d.raw == bad) for d in out.dead_letters]
    (1, [('malformed_json', 'telemetry', 1, True)])
    >>> end = process(state, RawBatch("telemetry-0", [], final=True), steps, now_ms=1_763_546_400_000)
    >>> sorted((w.series.metric, w.count) for w in end.windows)
    [('errors', 1), ('latency_ms', 1), ('requests', 1)]
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out = ShardOutput(batch.shard, final=batch.final)
    if batch.messages:
        out.produced_ms = np.fromiter((m.timestamp_ms for m in batch.messages), dtype=np.int64, count=len(batch.messages))
        normalized = steps.normalizer.normalize_batch(batch.messages, now_ms=now_ms)
        out.dead_letters = normalized.dead_letters
        out.skipped = normalized.skipped
        kept, dropped = state.dedup.filter(normalized.events)
        if dropped:
            out.dead_letters = out.dead_letters + _duplicate_letters(normalized, kept, batch.messages, now_ms)
        if kept:
            if steps.pricer is not None:
                steps.pricer.price(kept)
            columns = to_columns(kept, steps.columns)
            by_name = dict(zip(COLUMN_NAMES, columns))
            times = np.array(by_name["event_time"], dtype=np.int64)
            dims = list(zip(by_name["model"], by_name["endpoint"], by_name["team"]))
            late = state.windows.add(times, dims, extract(by_name))
            out.events = len(kept)
            out.event_columns = columns
            out.signals = signals_from_columns(by_name)
            out.late_rows = [
                [kept[e.index].event_id, int(times[e.index]), e.window_start_ms // 1000, e.watermark_ms,
                 e.watermark_ms - (e.window_start_ms + state.windows.window_ms), by_name["source"][e.index],
                 by_name["model"][e.index], batch.shard, now_ms]
                for e in late
            ]
        if normalized.metric_points:
            _fold_points(state, normalized.metric_points, steps, out, batch.shard, now_ms)
    if batch.final or (batch.idle_ms and batch.idle_ms >= steps.idle_close_ms):
        out.windows = state.windows.close_all()
    else:
        out.windows = state.windows.close_ready()
    for w in out.windows:
        w.shard = batch.shard
    windows = state.windows
    out.watermark_ms = max(windows.watermark_ms, 0)
    out.closed_ms = (max(windows.watermark_ms - windows.lateness_ms, windows.closed_floor_ms) if windows.has_open
                     else ALL_CLOSED)
    return out


def _fold_points(state: ShardState, points: list, steps: ShardSteps, out: ShardOutput, shard: str,
                 now_ms: int) -> None:
    """OTLP metric points (after this batch's events) -> deltas -> partials in the windows; late
    ones become late rows named after their series and time."""
    canonical = steps.columns.canonical
    partials = []
    for p in points:
        d = state.cumulative.delta(p)
        if d is not None:
            partials += to_partials(d, canonical)
    late = state.windows.add_partials(partials)
    if late:
        wm, wms = state.windows.watermark_ms, state.windows.window_ms
        out.late_rows = out.late_rows + [
            [f"{p.summary.series.metric}:{p.summary.series.model}@{p.time_ms}", p.time_ms,
             (p.time_ms - p.time_ms % wms) // 1000, wm, wm - (p.time_ms - p.time_ms % wms + wms), "telemetry",
             p.summary.series.model, shard, now_ms]
            for p in late]


def _duplicate_letters(normalized: NormalizedBatch, kept: list, messages: list[RawMessage],
                       now_ms: int) -> list[DeadLetter]:
    """A duplicate's dead letter keeps the message it came in: its exact bytes and its true
    topic, partition and offset (a multi-span OTLP message: the whole message, and the span's id)."""
    kept_ids = {id(e) for e in kept}
    letters = []
    for j, e in enumerate(normalized.events):
        if id(e) in kept_ids:
            continue
        m = messages[normalized.message_of(j)]
        letters.append(DeadLetter(
            raw=m.value, reason=f"duplicate of event {e.event_id} seen within the dedup window", code="duplicate",
            field="event_id", topic=m.topic, partition=m.partition, offset=m.offset, source=e.source,
            event_id=e.event_id, ingest_time_ms=now_ms))
    return letters
