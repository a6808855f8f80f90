"""Per shard output, what alerting needs from it (`AlertFeed`): the windows its threshold rules
watch, the billed spend per budget and minute, and input counts per source.

Spend comes from the events' own columns, not from the `cost_usd` windows: a budget may be scoped
by asset or any tag, which the window series (model, endpoint, team) do not carry. It sums
exactly what the `cost_usd` metric sums, `cost_usd` of the rows marked `billed` ([cost]
count_from), so a call and the cost record that restates it are never both counted. Work is per
batch in numpy, and only for what is configured.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from config.alerts import QUALITY_METRICS, SCOPE_COLUMNS, Budget, ThresholdRule
from schemas.items import AlertFeed, ShardOutput
from schemas.rows import COLUMN_NAMES

MINUTE_MS = 60_000
_COL = {name: i for i, name in enumerate(COLUMN_NAMES)}


class Feeder:
    """Built once from config; `feed` runs per shard output.

    >>> from config.alerts import Budget
    >>> from schemas.events import LlmRequest, new_event
    >>> from operators.shard.columns import to_columns
    >>> def call(i, t, usd, team):
    ...     return new_event(f"e{i}", t, LlmRequest(model="gpt-4o", latency_ms=1.0, cost_usd=usd), tags={"team": team})
    >>> events = [call(1, 60_000, 0.5, "search"), call(2, 65_000, 0.25, "ads"), call(3, 130_000, 1.0, "search")]
    >>> feeder = Feeder([Budget(name="all", amount_usd=10), Budget(name="search", amount_usd=5, scope="team=search")], [])
    >>> sorted(feeder.feed(ShardOutput("s0", event_columns=to_columns(events))).spend)
    [('all', 60000, 0.75), ('all', 120000, 1.0), ('search', 60000, 0.5), ('search', 120000, 1.0)]
    """

    def __init__(self, budgets: list[Budget], rules: list, canonical: Callable[[str], str] = str,
                 topic_sources: dict[str, str] | None = None) -> None:
        self.scopes: list[tuple[str, int | None, str, str]] = []
        for b in budgets:
            scope = b.scope_key
            if scope is None:
                self.scopes.append((b.name, None, "", ""))
                continue
            key, value = scope
            column = SCOPE_COLUMNS.get(key)
            if key == "model":
                value = canonical(value)
            self.scopes.append((b.name, _COL[column] if column else _COL["tags"], key, value))
        threshold = [r for r in rules if isinstance(r, ThresholdRule)]
        self.metrics = {m for r in threshold for m in (r.metric, r.denominator) if m and m not in QUALITY_METRICS}
        self.quality = any(r.metric in QUALITY_METRICS for r in threshold)
        self.topic_sources = topic_sources or {}

    @property
    def active(self) -> bool:
        return bool(self.scopes or self.metrics or self.quality)

    def feed(self, out: ShardOutput) -> AlertFeed:
        feed = AlertFeed(out.shard, final=out.final, watermark_ms=out.watermark_ms, closed_ms=out.closed_ms)
        if self.metrics:
            feed.windows = [w for w in out.windows if w.series.metric in self.metrics]
        if self.scopes and out.event_columns is not None:
            feed.spend = self._spend(out.event_columns)
        if self.quality:
            feed.quality = self._quality(out)
            feed.quality_minute_ms = out.watermark_ms - out.watermark_ms % MINUTE_MS
        return feed

    def _spend(self, columns: list[list]) -> list[tuple[str, int, float]]:
        billed = np.array(columns[_COL["billed"]], dtype=bool)
        if not billed.any():
            return []
        cost = np.array(columns[_COL["cost_usd"]], dtype=np.float64)  # None -> NaN
        idx = np.flatnonzero(billed & (cost > 0))
        if not len(idx):
            return []
        times = np.array(columns[_COL["event_time"]], dtype=np.int64)[idx]
        minutes, costs = times - times % MINUTE_MS, cost[idx]
        out: list[tuple[str, int, float]] = []
        picked = idx.tolist()
        for name, column, key, value in self.scopes:
            if column is None:
                mask = np.ones(len(idx), dtype=bool)
            elif column == _COL["tags"]:
                tags = columns[column]
                mask = np.array([(tags[i] or {}).get(key) == value for i in picked], dtype=bool)
            else:
                values = columns[column]
                mask = np.array([values[i] == value for i in picked], dtype=bool)
            if not mask.any():
                continue
            starts, inverse = np.unique(minutes[mask], return_inverse=True)
            sums = np.bincount(inverse, weights=costs[mask])
            out += [(name, int(s), float(u)) for s, u in zip(starts.tolist(), sums.tolist())]
        return out

    def _quality(self, out: ShardOutput) -> list[tuple[str, int, int]]:
        """(source, inputs, dead letters) of the batch: a shard reads one topic, so its inputs are
        that topic's source (a file or the generator: "file", "synthetic"), as in
        hub_input_messages_total; inputs = events + dead letters + skipped."""
        dead = len(out.dead_letters)
        inputs = out.events + dead + sum(s.count for s in out.skipped)
        if not inputs:
            return []
        return [(self.topic_sources.get(out.shard.rsplit(":", 1)[0]) or out.shard.split(":")[0], inputs, dead)]
