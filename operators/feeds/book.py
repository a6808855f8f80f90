"""When a window of event time is whole across shards, and which reports to (re-)emit.

A window is whole once every shard still holding windows open has closed past its end
(`ShardOutput.closed_ms`, as alerting judges minutes) and some shard has seen an event after it
(an idle input closes its windows early; that does not make the current hour whole). When every
shard has ended, everything is whole. A report is emitted when its window becomes whole and again
whenever data for it (or, for trends, for the window before it) arrives later.
"""
from __future__ import annotations


from schemas.items import ALL_CLOSED


class Horizon:
    """Per-shard progress -> the event time before which windows are whole.

    >>> h = Horizon()
    >>> h.update("a", closed_ms=50, watermark_ms=120, final=False); h.update("b", ALL_CLOSED, 90, False)
    >>> h.complete_ms
    50
    >>> h.update("a", closed_ms=ALL_CLOSED, watermark_ms=120, final=False); h.complete_ms  # idle: up to events seen
    120
    >>> h.update("a", ALL_CLOSED, 120, final=True); h.update("b", ALL_CLOSED, 90, final=True); h.complete_ms == ALL_CLOSED
    True
    """

    def __init__(self) -> None:
        self.closed: dict[str, int] = {}
        self.done: set[str] = set()
        self.watermark_ms = 0
        self.complete_ms = 0
        self.floor_ms = 0

    def update(self, shard: str, closed_ms: int, watermark_ms: int, final: bool) -> None:
        if final:
            self.done.add(shard)
        else:
            self.done.discard(shard)
        self.closed[shard] = closed_ms
        self.watermark_ms = max(self.watermark_ms, watermark_ms)
        if self.done >= self.closed.keys():
            self.complete_ms = ALL_CLOSED
            return
        holding = [c for s, c in self.closed.items() if s not in self.done]
        # Never backwards: a resumed shard's old data is late, not a reason to hold what was emitted.
        # (The end of input is not sticky: an input that resumes goes on from its events.)
        self.floor_ms = max(self.floor_ms, min(min(holding), self.watermark_ms))
        self.complete_ms = self.floor_ms


class WindowBook:
    """Keyed aggregates per window, emitted whole once their window is whole and again when they
    change. Keys are (window start ms, ...); subclasses say the span, how long a window is kept
    after it is whole, and build the records."""

    SPAN_MS = 3_600_000
    KEEP_MS = 2 * 86_400_000

    def __init__(self) -> None:
        self.windows: dict[tuple, object] = {}
        self.dirty: set[tuple] = set()
        self.emitted: set[tuple] = set()
        # Data for windows whose state was already dropped (older than KEEP_MS past the horizon).
        self.too_late = 0
        self.horizon_ms = 0

    def span(self, key: tuple) -> int:
        return self.SPAN_MS

    def kept(self, start_ms: int, key: tuple) -> bool:
        """False (and counted) for a window too old to change any more."""
        if start_ms + self.span(key) + self.KEEP_MS < self.horizon_ms and key not in self.windows:
            self.too_late += 1
            return False
        return True

    def touch(self, key: tuple, successor: tuple | None = None) -> None:
        self.dirty.add(key)
        if successor is not None and successor in self.emitted:
            self.dirty.add(successor)  # its trend compares against this window

    def ready(self, complete_ms: int) -> list[tuple]:
        """Dirty windows that are whole, in order; they count as emitted from here on. Windows
        kept past KEEP_MS are dropped."""
        out = sorted(k for k in self.dirty if k[0] + self.span(k) <= complete_ms)
        self.dirty.difference_update(out)
        self.emitted.update(out)
        if complete_ms < ALL_CLOSED:
            self.horizon_ms = max(self.horizon_ms, complete_ms)
            # One span longer than data is taken for: the next window's trend still needs this one.
            old = [k for k in self.windows if k[0] + 2 * self.span(k) + self.KEEP_MS < complete_ms]
            for k in old:
                del self.windows[k]
                self.emitted.discard(k)
                self.dirty.discard(k)
        return out


