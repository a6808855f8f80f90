"""`hub reprice --since DATE`: after a price change, recompute the inferred cost of stored LLM calls
and every cost rollup built from them, idempotently.

What it does, in an order that a crash at any point and a re-run repair:
1. Prices every stored LLM call since DATE whose cost was inferred or unknown with today's table
   (price files + stored price changes); reported costs are never touched. Changed calls are
   written again (same key: the events ReplacingMergeTree keeps the newest).
2. Rebuilds the `cost_usd` 1-minute rows of every minute that held a changed billed call, from
   the billed raw events of that minute (late events excluded, as the flow excludes them),
   with the flow's own window code.
3. Rebuilds the affected windows of every rollup from the tier below it (connectors/rollups.py),
   so windows longer than the raw retention stay whole. Windows whose source rows may already be
   past their retention are left as they are, and said.
A re-run recomputes from raw events, not from the previous result, so it ends in the same state.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timezone

import msgspec
import numpy as np
from clickhouse_connect.driver.client import Client

from config.errors import HubError
from config.settings import HubConfig
from connectors import rollups
from connectors.clickhouse import connect, insert_new_windows
from connectors.price_store import stored_price_changes
from flows.pipeline import shard_steps
from operators.windows import MetricValues, WindowAggregator
from schemas.events import LlmRequest, new_event
from schemas.metrics import window_rows
from schemas.rollups import BY_NAME, ROLLUPS
from schemas.rows import COLUMN_NAMES

METRIC = "cost_usd"
SHARD = "reprice"
CHUNK = 50_000
_DECODE_CALL = msgspec.json.Decoder(LlmRequest)


class RepriceError(HubError):
    """A reprice that cannot run, worded as one line."""


def parse_day(value: str) -> int:
    """'2025-06-01' or an ISO date-time (UTC unless it says otherwise) -> epoch ms."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise RepriceError(f"--since/--until: '{value}' is not a date (YYYY-MM-DD) or ISO date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def reprice(cfg: HubConfig, since_ms: int, until_ms: int, dry_run: bool = False) -> dict[str, int]:
    """Returns counts for the summary: calls looked at, calls changed, minutes and windows rebuilt."""
    with closing(connect(cfg.clickhouse)) as client:
        if not client.command("EXISTS TABLE model_prices"):
            raise RepriceError("the store has no LLM call costs yet: run `hub migrate` (or `hub run`) first")
        pricer = shard_steps(cfg, stored_price_changes(client)).pricer
        counts = {"calls": 0, "changed": 0, "minutes": 0, "windows": 0, "kept_windows": 0}
        minutes: set[int] = set()
        for rows in _calls(client, since_ms, until_ms):
            counts["calls"] += len(rows)
            changed = _repriced(rows, pricer)
            counts["changed"] += len(changed)
            minutes |= {r["event_time"] // 60_000 * 60 for r in changed if r["billed"]}
            if changed and not dry_run:
                client.insert("events", [[r[c] for c in COLUMN_NAMES] for r in changed], column_names=COLUMN_NAMES)
        counts["minutes"] = len(minutes)
        if minutes and not dry_run:
            _rebuild_minutes(client, sorted(minutes))
            done, kept = _rebuild_rollups(client, cfg, sorted(minutes))
            counts["windows"], counts["kept_windows"] = done, kept
    return counts


def _calls(client: Client, since_ms: int, until_ms: int) -> Iterator[list[dict]]:
    """Stored LLM calls with an inferred or unknown cost in [since, until), in chunks, as row dicts."""
    columns = ", ".join(f"toUnixTimestamp64Milli({c}) AS {c}_ms" if c in ("event_time", "ingest_time") else c
                        for c in COLUMN_NAMES)
    last = ("", since_ms)
    while True:
        rows = client.query(
            f"SELECT {columns} FROM events FINAL WHERE event_type = 'telemetry.request' "
            "AND cost_source IN ('inferred', 'unknown') "
            "AND event_time >= fromUnixTimestamp64Milli({lo:Int64}) AND event_time < fromUnixTimestamp64Milli({hi:Int64}) "
            "AND (event_time, event_id) > (fromUnixTimestamp64Milli({at:Int64}), {id:String}) "
            "ORDER BY event_time, event_id LIMIT {n:UInt32}",
            parameters={"lo": since_ms, "hi": until_ms, "at": last[1], "id": last[0], "n": CHUNK}).result_rows
        if not rows:
            return
        yield [dict(zip(COLUMN_NAMES, r)) for r in rows]
        last = (rows[-1][0], rows[-1][1])


def _repriced(rows: list[dict], pricer) -> list[dict]:  # type: ignore[no-untyped-def]
    """The rows whose cost the current price table sees differently, with cost and payload updated."""
    calls = [_DECODE_CALL.decode(r["payload"]) for r in rows]
    for call in calls:
        call.cost_usd, call.cost_source = None, ""
    pricer.price([new_event(r["event_id"], r["event_time"], c) for r, c in zip(rows, calls)])
    changed = []
    for r, c in zip(rows, calls):
        if (c.cost_usd, c.cost_source) != (r["cost_usd"], r["cost_source"]):
            r.update(cost_usd=c.cost_usd, cost_source=c.cost_source, payload=msgspec.json.encode(c).decode())
            changed.append(r)
    return changed


def _rebuild_minutes(client: Client, minutes: list[int]) -> None:
    """The cost rows of these minutes (epoch s), from the billed raw events, late ones excluded."""
    rows = client.query(
        "SELECT toUnixTimestamp64Milli(event_time), model, endpoint, team, cost_usd FROM events FINAL "
        "WHERE billed = 1 AND cost_usd IS NOT NULL AND toStartOfMinute(event_time) IN "
        "(SELECT arrayJoin({m:Array(DateTime)})) AND event_id NOT IN (SELECT event_id FROM late_events) "
        "ORDER BY event_time", parameters={"m": minutes}).result_rows
    agg = WindowAggregator(allowed_lateness_ms=2**62)
    if rows:
        times, models, endpoints, teams, usd = zip(*rows)
        agg.add(np.array(times, dtype=np.int64), list(zip(models, endpoints, teams)),
                [MetricValues(METRIC, np.array(usd, dtype=np.float64))])
    windows = agg.close_all()
    for w in windows:
        w.shard = SHARD
    _delete(client, "metrics_1m", minutes)
    insert_new_windows(client, window_rows(windows))


def _rebuild_rollups(client: Client, cfg: HubConfig, minutes: list[int]) -> tuple[int, int]:
    """Every rollup window holding one of these minutes, recomputed from the tier below; returns
    (windows rebuilt, windows left because their source rows may be past retention). Cost rows
    are cleared first: a series whose calls all lost their cost has no source row to replace them."""
    now_s = int(datetime.now(timezone.utc).timestamp())
    oldest = {w.name: now_s - getattr(cfg.retention, BY_NAME[w.source].retention_field) * 86_400 + 3_600
              for w in ROLLUPS}
    return rollups.refresh(client, minutes, oldest, before=lambda w, starts: _delete(client, w.table, starts))


def _delete(client: Client, table: str, starts: list[int]) -> None:
    client.command(f"ALTER TABLE {table} DELETE WHERE metric = '{METRIC}' AND window_start IN "
                   "(SELECT arrayJoin({s:Array(DateTime)}))", parameters={"s": starts},
                   settings={"mutations_sync": 2})


def summary(counts: dict[str, int], dry_run: bool) -> str:
    verb = "would reprice" if dry_run else "repriced"
    line = (f"hub reprice: {verb} {counts['changed']:,} of {counts['calls']:,} calls with an inferred or unknown "
            f"cost; {counts['minutes']:,} minutes of spend")
    if not dry_run:
        line += f", {counts['windows']:,} rollup windows rebuilt"
        if counts["kept_windows"]:
            line += (f" ({counts['kept_windows']:,} left as they were: their source rows may be past retention)")
    return line


def cmd_reprice(cfg: HubConfig, since: str, until: str | None, dry_run: bool) -> int:
    since_ms = parse_day(since)
    until_ms = parse_day(until) if until else int(time.time() * 1000) + 366 * 86_400_000
    if until_ms <= since_ms:
        raise RepriceError("--until must be after --since")
    print(summary(reprice(cfg, since_ms, until_ms, dry_run), dry_run), file=sys.stderr)
    return 0
