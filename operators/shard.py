"""One input shard's processing step: normalize, dedup, columns, windows — per batch.

A shard is one Kafka partition (or one file, or the synthetic generator). Everything that
decides what a replay produces (dedup memory, window state, watermark) is per shard, so the
outcome depends only on the order of messages in that shard.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec
import numpy as np

from operators.dedup import Deduplicator
from operators.detection import signals_from_columns
from operators.event_columns import EVENT_COLUMNS, to_columns
from operators.metric_extract import extract
from operators.normalize import Normalizer
from operators.windowing import WindowAggregator
from schemas.incidents import Signal
from schemas.metrics import WindowMetric
from schemas.raw import DeadLetter, RawMessage

COLUMN_NAMES = [name for name, _ in EVENT_COLUMNS]
LATE_COLUMNS = ["event_id", "event_time", "window_start", "watermark", "lateness_ms", "source", "model", "shard", "detected_at"]


@dataclass
class RawBatch:
    """What a source emits per item: many messages from one shard (never one event per item)."""

    shard: str
    messages: list[RawMessage]
    # Set on the last batch of a finite input.
    final: bool = False
    # On idle ticks from a tailing source: how long it has had no messages. The source measures
    # it (not the shard state), so a restart does not count its own downtime as idleness.
    idle_ms: int = 0


@dataclass
class ShardOutput:
    shard: str
    events: int = 0
    event_columns: list[list] | None = None
    dead_letters: list[DeadLetter] = field(default_factory=list)
    late_rows: list[list] = field(default_factory=list)
    windows: list[WindowMetric] = field(default_factory=list)
    final: bool = False
    # Events the correlator should see (security findings, violations, budget alerts, ...).
    signals: list[Signal] = field(default_factory=list)
    # Broker timestamps of this batch's messages (0 = unknown), for end-to-end latency.
    produced_ms: np.ndarray | None = None


class ShardState:
    """Picklable per-shard state carried in Bytewax snapshots."""

    def __init__(self, dedup_window_ms: int, dedup_max_entries: int, allowed_lateness_ms: int) -> None:
        self.dedup = Deduplicator(dedup_window_ms, dedup_max_entries)
        self.windows = WindowAggregator(allowed_lateness_ms)
        # Numbers this shard's duplicates, so their dead letters have a stable, distinct key.
        self.duplicates_seen = 0


def process(state: ShardState, batch: RawBatch, normalizer: Normalizer, idle_close_ms: int,
            now_ms: int | None = None) -> ShardOutput:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out = ShardOutput(batch.shard, final=batch.final)
    if batch.messages:
        out.produced_ms = np.fromiter((m.timestamp_ms for m in batch.messages), dtype=np.int64, count=len(batch.messages))
        normalized = normalizer.normalize_batch(batch.messages, now_ms=now_ms)
        out.dead_letters = normalized.dead_letters
        kept, dropped = state.dedup.filter(normalized.events)
        if dropped:
            out.dead_letters = out.dead_letters + _duplicate_letters(normalized.events, kept, batch.shard, now_ms,
                                                                     state.duplicates_seen)
            state.duplicates_seen += dropped
        if kept:
            columns = to_columns(kept)
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
    if batch.final or (batch.idle_ms and batch.idle_ms >= idle_close_ms):
        out.windows = state.windows.close_all()
    else:
        out.windows = state.windows.close_ready()
    for w in out.windows:
        w.shard = batch.shard
    return out


def _duplicate_letters(events: list, kept: list, shard: str, now_ms: int, seq: int) -> list[DeadLetter]:
    kept_ids = {id(e) for e in kept}
    dropped = [e for e in events if id(e) not in kept_ids]
    return [
        DeadLetter(raw=msgspec.json.encode(e), reason=f"duplicate of event {e.event_id} seen within the dedup window",
                   code="duplicate", field="event_id", topic=shard, offset=seq + i, source=e.source,
                   event_id=e.event_id, ingest_time_ms=now_ms)
        for i, e in enumerate(dropped)
    ]
