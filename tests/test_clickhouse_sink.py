"""The events table's wire path: columns -> Arrow -> ClickHouse, value for value."""
from __future__ import annotations

import time
from contextlib import closing

from config.normalization import LimitSettings, NormalizationSettings
from config.settings import load_config
from connectors.clickhouse import connect
from connectors.clickhouse_sink import event_table
from connectors.migrations import migrate
from operators.shard import to_columns
from schemas.rows import COLUMN_NAMES
from operators.normalize import Normalizer
from tests.fixtures_events import PAYLOADS, hub_message, raw

TIMES = ("event_time", "ingest_time")


def test_every_column_of_every_event_type_reaches_clickhouse_unchanged(chdb_dsn: str) -> None:
    now = int(time.time() * 1000)
    t = now - 60_007  # recent: the table's 7-day TTL may drop older rows at any merge
    llm = "telemetry.request"
    request = {"model": "gpt-4o", "latency_ms": 812.125, "input_tokens": 2**40, "output_tokens": 0}
    values = [hub_message(et, event_time=t) for et in sorted(PAYLOADS)] + [
        hub_message(llm, event_id="unicode", event_time=t + 7,
                    tags={"team": "søk", "endpoint": "/v1/ü", "note": "tab\there, quote \" and emoji 🚀", "empty": ""}),
        hub_message(llm, event_id="no-tags", event_time=t, tags={}, payload=request),
    ]
    # Limits as high as the schema allows: the extremes must reach the store unchanged.
    settings = NormalizationSettings(limits=LimitSettings(max_tokens=2**53))
    batch = Normalizer(settings).normalize_batch([raw(v, offset=i) for i, v in enumerate(values)], now_ms=now)
    assert not batch.dead_letters
    columns = to_columns(batch.events)
    cfg = load_config(environ={"HUB_CLICKHOUSE__DSN": chdb_dsn})
    with closing(connect(cfg.clickhouse)) as client:
        migrate(client, cfg.retention)
        client.insert_arrow("events", event_table(columns))
        select = ", ".join(f"toUnixTimestamp64Milli({c})" if c in TIMES else c for c in COLUMN_NAMES)
        stored = client.query(f"SELECT {select} FROM events ORDER BY event_id").result_rows
    expected = sorted(zip(*columns), key=lambda row: row[0])
    assert [tuple(r) for r in stored] == expected
    by_id = {r[0]: dict(zip(COLUMN_NAMES, r)) for r in stored}
    assert by_id["unicode"]["tags"]["note"] == "tab\there, quote \" and emoji 🚀"
    assert by_id["no-tags"]["tags"] == {} and by_id["no-tags"]["input_tokens"] == 2**40
    assert by_id["no-tags"]["ttft_ms"] is None and by_id["no-tags"]["cost_usd"] is None
