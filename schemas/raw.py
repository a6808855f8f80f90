"""Records at the edges of the flow: raw input messages and dead letters."""
from __future__ import annotations

import msgspec


class RawMessage(msgspec.Struct, array_like=True, gc=False):
    """One input message as it arrived, before any decoding.

    `topic`/`partition`/`offset` are set for Kafka input; file input uses the file name as
    topic, partition 0 and the line number as offset, so every dead letter points somewhere.
    """

    value: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1
    # Broker timestamp (ms) when known, else 0.
    timestamp_ms: int = 0


class DeadLetter(msgspec.Struct, kw_only=True, gc=False):
    """Input that could not become an event, with a reason a human can act on."""

    raw: bytes
    reason: str
    # Short stable category for counting (malformed_json, unknown_event_type, duplicate, ...).
    code: str = ""
    field: str = ""
    topic: str = ""
    partition: int = -1
    offset: int = -1
    source: str = ""
    event_id: str = ""
    ingest_time_ms: int = 0


class Skipped(msgspec.Struct, gc=False):
    """Inputs of one message that are not ours, per reason (e.g. OTLP spans that are not LLM
    calls): not errors, but counted, so input = events + dead letters + skipped. Keyed by the
    message, so a replay writes the same row again."""

    topic: str
    partition: int
    offset: int
    reason: str
    count: int
    ingest_time_ms: int = 0
