"""Drop duplicate events (same event id within a window of event time), with bounded memory.

Kafka redelivers, producers retry: the same event arrives twice. An event is a duplicate when
an event with its id was kept and the two event times are at most `window_ms` apart. Memory
is bounded two ways: ids older than the newest event time seen minus the window are forgotten
(event-time eviction), and beyond `max_entries` the oldest remembered ids go first (counted in
`evicted`, since that shortens the effective window). State pickles compactly for Bytewax
snapshots: the ids as one msgpack blob and their times as packed int64s.
"""
from __future__ import annotations

from array import array
from collections import deque
from typing import Any

import msgspec

from schemas.events import Event


class Deduplicator:
    """Per-shard duplicate filter; order-dependent only on the order events are fed in."""

    __slots__ = ("window_ms", "max_entries", "watermark_ms", "dropped", "evicted", "_seen", "_ids", "_times")

    def __init__(self, window_ms: int, max_entries: int) -> None:
        if window_ms <= 0 or max_entries <= 0:
            raise ValueError(f"window_ms and max_entries must be > 0, got {window_ms} and {max_entries}")
        self.window_ms = window_ms
        self.max_entries = max_entries
        self.watermark_ms = -(2**62)  # newest event time seen
        self.dropped = 0  # duplicates dropped, all time
        self.evicted = 0  # ids forgotten early because of max_entries, all time
        self._seen: dict[str, int] = {}  # event id -> event time of the kept copy
        # arrival order, for eviction; an id re-kept later leaves a stale entry here
        self._ids: deque[str] = deque()
        self._times: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def filter(self, events: list[Event]) -> tuple[list[Event], int]:
        """Events not seen before (in input order) and how many duplicates were dropped.

        A redelivered event (same id, same time) is dropped; the same id far outside the
        window is a new event.

        >>> from schemas.events import LlmRequest, new_event
        >>> dedup = Deduplicator(window_ms=600_000, max_entries=100_000)
        >>> call = LlmRequest(model="gpt-4o", latency_ms=812.5)
        >>> batch = [new_event("evt-1", 1_000, call), new_event("evt-2", 2_000, call), new_event("evt-1", 1_000, call)]
        >>> kept, dropped = dedup.filter(batch)
        >>> [e.event_id for e in kept], dropped, dedup.dropped
        (['evt-1', 'evt-2'], 1, 1)
        >>> kept, dropped = dedup.filter([new_event("evt-1", 900_000, call)])
        >>> [e.event_id for e in kept], dropped
        (['evt-1'], 0)
        """
        seen = self._seen
        window = self.window_ms
        ids_append = self._ids.append
        times_append = self._times.append
        wm = self.watermark_ms
        kept: list[Event] = []
        dropped = 0
        for e in events:
            eid = e.event_id
            t = e.event_time_ms
            prev = seen.get(eid)
            if prev is not None and -window <= t - prev <= window:
                dropped += 1
                continue
            seen[eid] = t
            ids_append(eid)
            times_append(t)
            kept.append(e)
            if t > wm:
                wm = t
        self.watermark_ms = wm
        self.dropped += dropped
        self._evict()
        return kept, dropped

    def _evict(self) -> None:
        seen, ids, times = self._seen, self._ids, self._times
        cutoff = self.watermark_ms - self.window_ms
        while times and times[0] < cutoff:
            t = times.popleft()
            eid = ids.popleft()
            if seen.get(eid) == t:
                del seen[eid]
        while len(seen) > self.max_entries or len(ids) > 2 * self.max_entries:
            t = times.popleft()
            eid = ids.popleft()
            if seen.get(eid) == t:
                del seen[eid]
                self.evicted += 1

    # --- compact pickling ---------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        live = [(i, t) for i, t in zip(self._ids, self._times) if self._seen.get(i) == t]
        return {
            "window_ms": self.window_ms, "max_entries": self.max_entries, "watermark_ms": self.watermark_ms,
            "dropped": self.dropped, "evicted": self.evicted,
            "ids": msgspec.msgpack.encode([i for i, _ in live]),
            "times": array("q", [t for _, t in live]).tobytes(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.window_ms = state["window_ms"]
        self.max_entries = state["max_entries"]
        self.watermark_ms = state["watermark_ms"]
        self.dropped = state["dropped"]
        self.evicted = state["evicted"]
        ids: list[str] = msgspec.msgpack.decode(state["ids"], type=list[str])
        times = array("q")
        times.frombytes(state["times"])
        self._ids = deque(ids)
        self._times = deque(times)
        self._seen = dict(zip(ids, times))
