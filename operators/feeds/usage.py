"""The CostOps usage feed: per hour, team and model, the requests, errors, tokens and billed spend
of the hour's closed 1-minute windows (summed over endpoints and shards), emitted once the hour is
whole and again if windows of a lagging input add to it later."""
from __future__ import annotations

from collections.abc import Callable

from operators.feeds.book import WindowBook
from schemas.assets import AssetInfo
from schemas.feeds import UsageRecord
from schemas.incidents import stable_id
from schemas.metrics import WindowMetric

HOUR_MS = 3_600_000
# metric -> slot in a usage entry ([windows, requests, errors, input, output, cached, reasoning, total, cost]).
SLOTS = {"requests": 1, "errors": 2, "input_tokens": 3, "output_tokens": 4, "cached_tokens": 5,
         "reasoning_tokens": 6, "total_tokens": 7, "cost_usd": 8}


class UsageBook(WindowBook):
    """Picklable (Bytewax snapshots). Keys: (hour start, team, model).

    >>> from schemas.metrics import SeriesKey
    >>> def w(metric, minute, count, total):
    ...     return WindowMetric(series=SeriesKey(metric, model="gpt-4o", team="search"), window_start_ms=minute * 60_000,
    ...                         window_ms=60_000, count=count, sum=total, min=0, max=0, sumsq=0, hist={})
    >>> book = UsageBook()
    >>> book.add([w("requests", 1, 10, 10.0), w("errors", 1, 10, 2.0), w("cost_usd", 2, 4, 0.5)])
    >>> [(r.team, r.model, r.requests, r.errors, r.cost_usd, r.version) for r in book.records(HOUR_MS)]
    [('search', 'gpt-4o', 10, 2, 0.5, 3)]
    """

    KEEP_MS = 2 * 86_400_000

    def add(self, windows: list[WindowMetric]) -> None:
        for w in windows:
            slot = SLOTS.get(w.series.metric)
            if slot is None:
                continue
            start = w.window_start_ms - w.window_start_ms % HOUR_MS
            key = (start, w.series.team, w.series.model)
            entry = self.windows.get(key)
            if entry is None:
                if not self.kept(start, key):
                    continue
                entry = self.windows[key] = [0, 0, 0, 0, 0, 0, 0, 0, 0.0]
            entry[0] += 1
            entry[slot] += w.count if slot == 1 else w.sum
            self.touch(key)

    def records(self, complete_ms: int, asset_of: Callable[[str, int], AssetInfo | None] | None = None
                ) -> list[UsageRecord]:
        out = []
        for key in self.ready(complete_ms):
            start, team, model = key
            e: list = self.windows[key]  # type: ignore[assignment]
            out.append(UsageRecord(
                id=stable_id("usage", start, team, model), version=e[0], hour_start_ms=start,
                hour_end_ms=start + HOUR_MS, team=team, model=model, requests=int(e[1]), errors=int(e[2]),
                input_tokens=int(e[3]), output_tokens=int(e[4]), cached_tokens=int(e[5]), reasoning_tokens=int(e[6]),
                total_tokens=int(e[7]), cost_usd=float(e[8]),
                asset=asset_of(model, start + HOUR_MS) if asset_of is not None else None))
        return out
