"""The events-table column layout and the batch -> columns conversion."""
from __future__ import annotations

import msgspec

from operators.shard import to_columns
from schemas.rows import COLUMN_NAMES, EVENT_COLUMNS
from operators.normalize import Normalizer
from connectors.synthetic import generate
from schemas.events import EVENT_TYPES
from schemas.raw import RawMessage
from tests.fixtures_events import NOW_MS, PAYLOADS, TRACE_ID, hub_message, raw

EXPECTED_LAYOUT = [
    ("event_id", "String"), ("event_time", "DateTime64(3)"), ("ingest_time", "DateTime64(3)"),
    ("source", "LowCardinality(String)"), ("event_type", "LowCardinality(String)"),
    ("schema_version", "LowCardinality(String)"), ("correlation_id", "String"), ("parent_event_id", "String"),
    ("severity", "LowCardinality(String)"), ("environment", "LowCardinality(String)"),
    ("region", "LowCardinality(String)"), ("model", "LowCardinality(String)"), ("provider", "LowCardinality(String)"),
    ("endpoint", "LowCardinality(String)"), ("team", "LowCardinality(String)"), ("asset_id", "String"),
    ("latency_ms", "Nullable(Float64)"), ("ttft_ms", "Nullable(Float64)"), ("input_tokens", "Nullable(UInt64)"),
    ("output_tokens", "Nullable(UInt64)"), ("cached_tokens", "Nullable(UInt64)"), ("total_tokens", "Nullable(UInt64)"),
    ("is_error", "UInt8"), ("error_type", "LowCardinality(String)"), ("cost_usd", "Nullable(Float64)"),
    ("category", "LowCardinality(String)"), ("policy_id", "String"), ("outcome", "LowCardinality(String)"),
    ("tags", "Map(String, String)"), ("payload", "String"),
    ("request_model", "LowCardinality(String)"), ("response_model", "LowCardinality(String)"),
    ("cache_write_tokens", "Nullable(UInt64)"), ("reasoning_tokens", "Nullable(UInt64)"),
    ("cost_source", "LowCardinality(String)"), ("billed", "UInt8"),
]


def events_of_every_type() -> list:
    batch = Normalizer().normalize_batch([raw(hub_message(t)) for t in sorted(PAYLOADS)], now_ms=NOW_MS)
    assert not batch.dead_letters
    return batch.events


def test_layout_is_exactly_the_agreed_one() -> None:
    assert EVENT_COLUMNS == EXPECTED_LAYOUT
    assert COLUMN_NAMES == [n for n, _ in EXPECTED_LAYOUT]


def test_columns_for_every_event_type() -> None:
    events = events_of_every_type()
    cols = dict(zip(COLUMN_NAMES, to_columns(events)))
    assert all(len(c) == len(events) for c in cols.values())
    assert cols["event_type"] == [e.event_type for e in events] and set(cols["event_type"]) == set(EVENT_TYPES)
    assert all(type(t) is int for t in cols["event_time"] + cols["ingest_time"])
    assert set(cols["is_error"]) <= {0, 1}
    for name in ("input_tokens", "output_tokens", "cached_tokens", "total_tokens"):
        assert all(v is None or (type(v) is int and v >= 0) for v in cols[name])
    for name in ("latency_ms", "ttft_ms", "cost_usd"):
        assert all(v is None or v >= 0 for v in cols[name])
    for payload, e in zip(cols["payload"], events):
        assert msgspec.json.decode(payload, type=type(e.payload)) == e.payload
    assert cols["endpoint"] == ["/v1/chat/completions"] * len(events) and set(cols["team"]) == {"search"}
    assert set(cols["correlation_id"]) == {TRACE_ID}


def test_request_row_carries_request_metrics_and_cost_rows_do_not_repeat_tokens() -> None:
    events = {e.event_type: e for e in events_of_every_type()}
    cols = to_columns([events["telemetry.request"], events["cost.tokens"], events["policy.evaluated"]])
    row = {n: c for n, c in zip(COLUMN_NAMES, cols)}
    assert row["model"] == ["gpt-4o", "gpt-4o", "gpt-4o"]
    assert row["latency_ms"] == [812.5, None, None] and row["ttft_ms"] == [210.25, None, None]
    assert row["input_tokens"] == [640, None, None] and row["cached_tokens"] == [128, None, None]
    assert row["cost_usd"] == [None, 0.00372, None]
    assert row["outcome"] == ["success", "", "denied"] and row["policy_id"] == ["", "", "pol-456"]


def test_endpoint_falls_back_to_http_route_then_server_address() -> None:
    e1 = Normalizer().normalize_batch([raw(hub_message("telemetry.request", tags={"http.route": "/r"}))],
                                      now_ms=NOW_MS).events[0]
    e2 = Normalizer().normalize_batch([raw(hub_message("telemetry.request", tags={"server.address": "api.x"}))],
                                      now_ms=NOW_MS).events[0]
    assert dict(zip(COLUMN_NAMES, to_columns([e1, e2])))["endpoint"] == ["/r", "api.x"]


def test_empty_batch_gives_empty_columns() -> None:
    assert to_columns([]) == [[] for _ in EVENT_COLUMNS]


def test_synthetic_traffic_converts() -> None:
    msgs = [RawMessage(v, "s", 0, i) for i, v in enumerate(generate(2000, seed=3, start_ms=NOW_MS - 600_000,
                                                                     rate_per_s=5000))]
    events = Normalizer().normalize_batch(msgs, now_ms=NOW_MS).events
    cols = to_columns(events)
    assert len(cols) == len(EVENT_COLUMNS) and len(cols[0]) == len(events) > 1900
