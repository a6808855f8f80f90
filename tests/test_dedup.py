"""Deduplication by event id within a window of event time, with bounded memory."""
from __future__ import annotations

import pickle

import pytest

from operators.dedup import Deduplicator
from schemas.events import Event, LlmRequest, new_event

MIN = 60_000


def ev(event_id: str, t: int) -> Event:
    return new_event(event_id, t, LlmRequest(model="m", latency_ms=1.0))


def test_drops_duplicates_within_the_window_and_counts_them() -> None:
    d = Deduplicator(window_ms=5 * MIN, max_entries=100)
    first = [ev("a", 0), ev("b", 1000), ev("a", 0)]
    kept, dropped = d.filter(first)
    assert [e.event_id for e in kept] == ["a", "b"] and dropped == 1
    kept, dropped = d.filter([ev("b", 1000), ev("a", 4 * MIN), ev("c", 2000)])
    assert [e.event_id for e in kept] == ["c"] and dropped == 2
    assert d.dropped == 3


def test_same_id_outside_the_window_is_a_new_event() -> None:
    d = Deduplicator(window_ms=5 * MIN, max_entries=100)
    d.filter([ev("a", 0)])
    kept, dropped = d.filter([ev("a", 5 * MIN + 1)])
    assert len(kept) == 1 and dropped == 0
    kept, dropped = d.filter([ev("a", 6 * MIN)])  # compared with the copy kept last
    assert not kept and dropped == 1


def test_event_time_eviction_keeps_memory_to_the_window() -> None:
    d = Deduplicator(window_ms=5 * MIN, max_entries=1_000_000)
    for minute in range(60):
        d.filter([ev(f"{minute}-{i}", minute * MIN + i) for i in range(100)])
    # only ids within 5 minutes of the newest event time are remembered
    assert 500 <= len(d) <= 600
    assert d.evicted == 0


def test_max_entries_bounds_memory_and_counts_early_evictions() -> None:
    d = Deduplicator(window_ms=60 * MIN, max_entries=1000)
    d.filter([ev(f"id-{i}", i) for i in range(5000)])
    assert len(d) == 1000 and d.evicted == 4000
    kept, dropped = d.filter([ev("id-4999", 4999), ev("id-0", 0)])
    assert dropped == 1 and [e.event_id for e in kept] == ["id-0"]  # the oldest ids were forgotten


def test_pickle_round_trip_is_compact_and_keeps_behaviour() -> None:
    d = Deduplicator(window_ms=5 * MIN, max_entries=10_000)
    d.filter([ev(f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd", 1_700_000_000_000 + i) for i in range(5000)])
    d.filter([ev("00000001-aaaa-bbbb-cccc-dddddddddddd", 1_700_000_000_001)])
    blob = pickle.dumps(d)
    assert len(blob) < 5000 * (36 + 8 + 8)  # ids + times, no per-entry object overhead
    restored = pickle.loads(blob)
    assert (len(restored), restored.dropped, restored.watermark_ms) == (len(d), 1, d.watermark_ms)
    kept, dropped = restored.filter([ev("00000002-aaaa-bbbb-cccc-dddddddddddd", 1_700_000_000_002),
                                     ev("new", 1_700_000_000_002)])
    assert dropped == 1 and [e.event_id for e in kept] == ["new"]


def test_replays_are_deterministic() -> None:
    events = [ev(f"id-{i % 700}", i * 1000) for i in range(3000)]
    runs = []
    for _ in range(2):
        d = Deduplicator(window_ms=5 * MIN, max_entries=500)
        runs.append([(e.event_id for e in d.filter(events[i:i + 100])[0]) for i in range(0, 3000, 100)])
        runs[-1] = [list(x) for x in runs[-1]]
    assert runs[0] == runs[1]


def test_rejects_nonsense_configuration() -> None:
    with pytest.raises(ValueError):
        Deduplicator(window_ms=0, max_entries=10)
