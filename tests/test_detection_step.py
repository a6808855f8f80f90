"""The flow's detection step: shard partials merged per series window, flushed only at the end."""
from __future__ import annotations

from config.detection import DetectionSettings
from operators.correlate import is_signal, signals_from_columns
from operators.detect import DetectionState
from schemas.incidents import Signal
from schemas.items import ALL_CLOSED
from schemas.metrics import SeriesKey, WindowMetric

KEY = SeriesKey("latency_ms", "gpt-4o", "/v1/chat", "search")


def window(start_min: int, count: int, shard: str) -> WindowMetric:
    return WindowMetric(series=KEY, window_start_ms=start_min * 60_000, window_ms=60_000, count=count,
                        sum=100.0 * count, min=100.0, max=100.0, sumsq=10_000.0 * count, hist={230: count}, shard=shard)


def test_partials_of_one_window_are_merged_before_scoring():
    state = DetectionState(DetectionSettings())
    state.step("p0", [window(0, 3, "p0")], [], False)
    state.step("p1", [window(0, 4, "p1")], [], False)
    merged = state.pending[(KEY, 0)]
    assert merged.count == 7 and merged.hist == {230: 7}
    state.step("p0", [window(1, 2, "p0")], [], False)  # a later window releases window 0
    assert (KEY, 0) not in state.pending and (KEY, 60_000) in state.pending
    assert len(state.bank) == 1  # the merged window reached the detector


def test_one_shard_ending_does_not_flush_the_others():
    state = DetectionState(DetectionSettings())
    state.step("p0", [window(0, 3, "p0")], [], False)
    state.step("p1", [window(0, 4, "p1")], [], False)
    state.step("p0", [], [], True)
    assert (KEY, 0) in state.pending
    state.step("p1", [], [], True)
    assert not state.pending


def test_only_noteworthy_events_become_signals():
    assert not is_signal("telemetry.request", "high", "")
    assert not is_signal("policy.evaluated", "info", "allowed")
    assert is_signal("policy.evaluated", "info", "denied")
    assert is_signal("security.threat", "medium", "")
    assert is_signal("version.promoted", "info", "")
    cols = {"event_id": ["a", "b"], "event_time": [1, 2], "source": ["security", "telemetry"],
            "event_type": ["security.threat", "telemetry.request"], "severity": ["high", "high"],
            "outcome": ["", ""], "model": ["gpt-4o", "gpt-4o"], "asset_id": ["", ""], "correlation_id": ["c1", ""],
            "parent_event_id": ["", ""], "cost_usd": [None, None], "category": ["prompt_injection", ""],
            "team": ["search", ""]}
    [signal] = signals_from_columns(cols)
    assert (signal.id, signal.asset, signal.correlation_id, signal.severity) == ("a", "gpt-4o", "c1", "high")


def _finding(shard: str, minute: int) -> Signal:
    """A security threat on p0, a policy violation on p1 (an incident needs two kinds of evidence)."""
    source, kind = ("security", "security.threat") if shard == "p0" else ("policy", "policy.violation")
    return Signal(id=f"{shard}-{minute}", time_ms=int((minute + 0.5) * 60_000), source=source, kind=kind,
                  asset="gpt-4o", severity="high")


def _incidents(order: list[tuple[str, int]]) -> list[tuple]:
    """Two shards' outputs (shard, minute) taken in `order`: each closes that minute's window
    and carries a finding of that minute; the closing outputs follow."""
    state = DetectionState(DetectionSettings())
    found = []
    for shard, minute in order:
        out = state.step(shard, [window(minute, 5, shard)], [_finding(shard, minute)], False,
                         closed_ms=(minute + 1) * 60_000, watermark_ms=(minute + 1) * 60_000)
        found += out.incidents
    for shard in ("p0", "p1"):
        found += state.step(shard, [], [], True).incidents
    final = {i.id: i for i in found}  # the last version of each
    return sorted((i.pattern, i.root_cause_id, tuple(sorted(m.signal_id for m in i.members))) for i in final.values())


def test_incidents_do_not_depend_on_how_shards_interleave():
    """A shard running ahead (its findings at minutes 0-5, then 30-35) must not close groups
    before the other shard's findings of the same minutes arrive: a replay after a crash, or two
    processes, take the shards in another order and must find the same incidents. (Every input
    part sends its first batch at the start, then one may run far ahead of the other.)"""
    p0 = [("p0", m) for m in (*range(6), *range(30, 36))]
    p1 = [("p1", m) for m in (*range(3, 9), *range(33, 39))]
    ahead = _incidents(p0[:1] + p1[:1] + p0[1:] + p1[1:])
    interleaved = _incidents([s for pair in zip(p0, p1) for s in pair])
    behind = _incidents(p1[:1] + p0[:1] + p1[1:] + p0[1:])
    assert ahead and len(ahead) >= 2  # two separate bursts: two incidents at least
    assert ahead == interleaved == behind


def test_the_last_minute_is_scored_once_every_shard_has_closed_past_it():
    """Input stops: no later window will come to release the last one, but once no shard can send
    a part of it (its windows closed past it, or, with none open, its watermark is past it by the
    lateness), it is whole: a tailing worker scores it as a bounded run does at its end."""
    state = DetectionState(DetectionSettings(), lateness_ms=60_000)
    # p2 has no window open, but its watermark (6:30) leaves minute 5 open to its next events.
    state.step("p2", [], [], False, closed_ms=ALL_CLOSED, watermark_ms=6 * 60_000 + 30_000)
    state.step("p1", [], [], False, closed_ms=5 * 60_000 + 30_000, watermark_ms=6 * 60_000 + 30_000)
    state.step("p0", [window(5, 3, "p0")], [], False, closed_ms=20 * 60_000, watermark_ms=21 * 60_000)
    state.step("p1", [window(5, 4, "p1")], [], False, closed_ms=20 * 60_000, watermark_ms=21 * 60_000)
    assert (KEY, 5 * 60_000) in state.pending  # p2 may still send its part of minute 5...
    state.step("p2", [], [], False, closed_ms=ALL_CLOSED, watermark_ms=21 * 60_000)
    assert not state.pending  # ...not any more: scored, with no later window to release it
    assert len(state.bank) == 1


def test_a_shard_that_never_saw_an_event_holds_nothing_back():
    state = DetectionState(DetectionSettings(), lateness_ms=60_000)
    state.step("empty", [], [], False, closed_ms=ALL_CLOSED, watermark_ms=0)  # an empty topic's partition
    state.step("p0", [window(5, 3, "p0")], [], False, closed_ms=20 * 60_000, watermark_ms=21 * 60_000)
    assert not state.pending
