"""The window sizes of the metrics tables: the one list the rollup DDL is rendered from.

`metrics_1m` is written by the flow; every other window is recomputed from the tier named by its
`source` (connectors/rollups.py), so each tier stays within the retention of the one it reads.
The migrations in schemas/migrations repeat a `-- @for rollup` / `-- @for window` block once per
entry here (connectors/migrations.py renders them), so a window's table, view, stats and composite
views can't drift apart. Changing an entry changes the rendered text of applied migrations, which
`hub migrate` refuses: add a window with a new migration.
"""
from __future__ import annotations

from dataclasses import dataclass

BASE = "1m"


@dataclass(frozen=True)
class Window:
    """One window size: table `metrics_<name>`, views `metrics_<name>_stats` and `composite_<name>`."""

    name: str
    start: str  # ClickHouse expression: start of this window for a 1-minute `window_start`
    seconds: str  # ClickHouse expression: the window's length in seconds (weeks and months are measured)
    source: str = ""  # the finer window this one is recomputed from (its windows nest in this one's)
    longest_s: int = 0  # the longest this window can be, in seconds (months and weeks vary or start oddly)

    @property
    def span_s(self) -> int:
        return self.longest_s or int(self.seconds)

    @property
    def table(self) -> str:
        return f"metrics_{self.name}"

    @property
    def retention_field(self) -> str:
        """The `[retention]` key (RetentionSettings field) that sets this table's TTL."""
        return f"metrics_{self.name}_days"

    @property
    def stats_from(self) -> str:
        """As migration 0003 wrote the stats views (rollups aggregated on merge then; 0006 made them
        ReplacingMergeTrees read with FINAL): its rendered text must not change."""
        return f"{self.table} FINAL" if self.name == BASE else self.table

    @property
    def hist_merge(self) -> str:
        """As migration 0003 wrote it: rollups held sumMap states until 0006."""
        return "sumMap" if self.name == BASE else "sumMapMerge"

    def fields(self) -> dict[str, str]:
        """What a `${...}` placeholder in a migration's per-window block can name."""
        return {"window": self.name, "table": self.table, "start": self.start, "seconds": self.seconds,
                "stats_from": self.stats_from, "hist_merge": self.hist_merge}


def _measured(interval: str) -> str:
    return f"dateDiff('second', window_start, window_start + INTERVAL {interval})"


WINDOWS: tuple[Window, ...] = (
    Window(BASE, "window_start", "60"),
    Window("5m", "toStartOfInterval(window_start, INTERVAL 5 MINUTE)", "300", source=BASE),
    Window("15m", "toStartOfInterval(window_start, INTERVAL 15 MINUTE)", "900", source="5m"),
    Window("1h", "toStartOfHour(window_start)", "3600", source="15m"),
    Window("6h", "toStartOfInterval(window_start, INTERVAL 6 HOUR)", "21600", source="1h"),
    Window("1d", "toStartOfDay(window_start)", "86400", source="6h"),
    Window("1w", "toStartOfWeek(window_start, 1)", _measured("1 WEEK"), source="1d", longest_s=7 * 86_400),
    Window("1mo", "toStartOfMonth(window_start)", _measured("1 MONTH"), source="1d", longest_s=31 * 86_400),
)
ROLLUPS: tuple[Window, ...] = tuple(w for w in WINDOWS if w.name != BASE)
BY_NAME: dict[str, Window] = {w.name: w for w in WINDOWS}
