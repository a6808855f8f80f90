"""ClickHouse row layouts the flow writes: column names (and types where they are not in DDL
alone) for each table, so the operators that build rows and the sinks that insert them agree."""
from __future__ import annotations

import base64

import orjson

from schemas.raw import DeadLetter, Skipped

EVENT_COLUMNS: list[tuple[str, str]] = [
    ("event_id", "String"),
    ("event_time", "DateTime64(3)"),
    ("ingest_time", "DateTime64(3)"),
    ("source", "LowCardinality(String)"),
    ("event_type", "LowCardinality(String)"),
    ("schema_version", "LowCardinality(String)"),
    ("correlation_id", "String"),
    ("parent_event_id", "String"),
    ("severity", "LowCardinality(String)"),
    ("environment", "LowCardinality(String)"),
    ("region", "LowCardinality(String)"),
    ("model", "LowCardinality(String)"),
    ("provider", "LowCardinality(String)"),
    ("endpoint", "LowCardinality(String)"),
    ("team", "LowCardinality(String)"),
    ("asset_id", "String"),
    ("latency_ms", "Nullable(Float64)"),
    ("ttft_ms", "Nullable(Float64)"),
    ("input_tokens", "Nullable(UInt64)"),
    ("output_tokens", "Nullable(UInt64)"),
    ("cached_tokens", "Nullable(UInt64)"),
    ("total_tokens", "Nullable(UInt64)"),
    ("is_error", "UInt8"),
    ("error_type", "LowCardinality(String)"),
    ("cost_usd", "Nullable(Float64)"),
    ("category", "LowCardinality(String)"),
    ("policy_id", "String"),
    ("outcome", "LowCardinality(String)"),
    ("tags", "Map(String, String)"),
    ("payload", "String"),
    ("request_model", "LowCardinality(String)"),
    ("response_model", "LowCardinality(String)"),
    ("cache_write_tokens", "Nullable(UInt64)"),
    ("reasoning_tokens", "Nullable(UInt64)"),
    ("cost_source", "LowCardinality(String)"),
    ("billed", "UInt8"),
]
COLUMN_NAMES: list[str] = [name for name, _ in EVENT_COLUMNS]

LATE_COLUMNS: list[str] = ["event_id", "event_time", "window_start", "watermark", "lateness_ms", "source", "model",
                           "shard", "detected_at"]
DEAD_LETTER_COLUMNS: list[str] = ["ingest_time", "topic", "partition", "offset", "source", "code", "reason", "field",
                                  "event_id", "raw"]


SKIPPED_COLUMNS: list[str] = ["ingest_time", "topic", "partition", "offset", "reason", "inputs"]


def skipped_row(s: Skipped) -> list:
    return [s.ingest_time_ms, s.topic, s.partition, s.offset, s.reason, s.count]


def dead_letter_row(d: DeadLetter) -> list:
    """A `dead_letters` row. `raw` goes in as bytes: a ClickHouse String holds any bytes, so the
    stored value is the input exactly, invalid UTF-8 included (read it back with hex(raw) or as
    bytes)."""
    return [d.ingest_time_ms, d.topic, d.partition, d.offset, d.source, d.code or "invalid", d.reason, d.field,
            d.event_id, d.raw]


def dead_letter_record(d: DeadLetter) -> bytes:
    """The dead-letter topic's JSON record: exact raw bytes as base64, and where they came from."""
    return orjson.dumps({"reason": d.reason, "code": d.code, "field": d.field, "topic": d.topic,
                         "partition": d.partition, "offset": d.offset, "source": d.source, "event_id": d.event_id,
                         "ingest_time_ms": d.ingest_time_ms, "raw_b64": base64.b64encode(d.raw).decode()})
