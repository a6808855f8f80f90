"""Rollup windows recomputed from the tier below, so every tier is exact after any crash.

A rollup row is the whole aggregate of its window, never an increment: recomputing a window
from its source tier gives the same row however often it runs, and a replay that re-emits
1-minute rows repairs any window a crash left stale. Tiers go finest first (5m from 1m, 15m from
5m, ..., 1w and 1mo from 1d), so each recomputation reads at most a few dozen rows per series
and never reaches past the retention of the tier it reads (1m rows are kept days, 1d rows a
year). The rollup tables are ReplacingMergeTrees versioned by the server's clock at the moment
the recomputation read its source, so when two writers recompute the same window the one that
saw more rows wins (schemas/migrations/0006_exact_rollups.sql).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from clickhouse_connect.driver.client import Client

from schemas.rollups import BY_NAME, ROLLUPS, Window

COLUMNS = "metric, model, endpoint, team, window_start, count, sum, min, max, sumsq, hist, refreshed_at"


def refresh(client: Client, minutes: Iterable[int], oldest: Mapping[str, int] | None = None,
            before: Callable[[Window, list[int]], None] | None = None) -> tuple[int, int]:
    """Recompute every rollup window that holds one of these 1-minute windows (epoch seconds).

    `oldest` (rollup name -> epoch s) leaves windows starting earlier as they are: their source
    rows may be past retention, and a recomputation from what is left would shrink them.
    `before(window, starts)` runs ahead of each tier's recomputation (reprice clears rows there).
    Returns (windows recomputed, windows left as they were).
    """
    minutes = sorted(set(minutes))
    if not minutes:
        return 0, 0
    done = kept = 0
    for w, starts in _starts(client, minutes).items():
        whole = [s for s in starts if s >= (oldest or {}).get(w.name, 0)]
        kept += len(starts) - len(whole)
        if whole:
            if before is not None:
                before(w, whole)
            _recompute(client, w, whole)
            done += len(whole)
    return done, kept


def _starts(client: Client, minutes: list[int]) -> dict[Window, list[int]]:
    """Each rollup's windows holding these minutes, computed by the server (weeks and months
    start where ClickHouse says they do)."""
    columns = ", ".join(f"groupUniqArray(toUnixTimestamp({w.start}))" for w in ROLLUPS)
    row = client.query(f"SELECT {columns} FROM (SELECT arrayJoin({{m:Array(DateTime)}}) AS window_start)",
                       parameters={"m": minutes}).result_rows[0]
    return {w: sorted(s) for w, s in zip(ROLLUPS, row)}


def _recompute(client: Client, w: Window, starts: list[int]) -> None:
    source = BY_NAME[w.source]
    client.command(
        f"INSERT INTO {w.table} ({COLUMNS}) "
        f"SELECT metric, model, endpoint, team, {w.start} AS ws, sum(count), sum(sum), min(min), max(max), "
        f"sum(sumsq), sumMap(hist), now64(6) FROM {source.table} FINAL "
        "WHERE window_start >= toDateTime({lo:UInt32}, 'UTC') AND window_start < toDateTime({hi:UInt32}, 'UTC') "
        "AND ws IN (SELECT arrayJoin({s:Array(DateTime)})) "
        "GROUP BY metric, model, endpoint, team, ws",
        parameters={"lo": starts[0], "hi": starts[-1] + w.span_s, "s": starts})
