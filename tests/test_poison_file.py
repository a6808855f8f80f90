"""The poison that used to stop the flow, as a user met it: one bad line in a file of 5,000.
(Its own module: the property test in test_poison.py holds an embedded store open, and one
process holds one embedded store at a time.)"""
from __future__ import annotations

import time
from contextlib import closing

import msgspec

from config.settings import load_config
from connectors.clickhouse import connect
from flows.cli import main
from tests.fixtures_events import PAYLOADS, hub_message

RECENT = int(time.time() * 1000) - 120_000


def test_the_reported_poison_is_a_dead_letter_and_the_rest_of_the_file_is_stored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The case that used to panic the output step: a token count >= 2^64 at line 2,500 of 5,000."""
    lines = [hub_message("telemetry.request", event_id=f"ok-{i}", event_time=RECENT + i) for i in range(5000)]
    payload = msgspec.to_builtins(PAYLOADS["telemetry.request"])
    payload.pop("type", None)
    bad = {
        2500: hub_message("telemetry.request", event_id="too-many-tokens", event_time=RECENT,
                          payload={**payload, "input_tokens": 2**64}),
        2600: hub_message("telemetry.request", event_id="huge-model", event_time=RECENT,
                          payload={**payload, "model": "m" * 10_000_000}),
        2700: hub_message("telemetry.request", event_id="endless", event_time=RECENT,
                          payload={**payload, "latency_ms": 1e308}),
        2800: hub_message("telemetry.request", event_id="long-model", event_time=RECENT,
                          payload={**payload, "model": "m" * 5000}),
    }
    for i, line in bad.items():
        lines[i] = line
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    dsn = f"chdb://{tmp_path / 'store'}"
    assert main(["run", "--input", str(src), "--clickhouse", dsn]) == 0
    with closing(connect(load_config(environ={"HUB_CLICKHOUSE__DSN": dsn}).clickhouse)) as client:
        assert client.query("SELECT count() FROM events FINAL").result_rows == [(5000 - len(bad),)]
        rows = client.query("SELECT offset, code, reason, raw FROM dead_letters FINAL ORDER BY offset",
                            column_formats={"raw": "bytes"}).result_rows
    assert [(offset, code) for offset, code, _, _ in rows] == [
        (2501, "invalid_field"), (2601, "oversized"), (2701, "invalid_field"), (2801, "oversized")]
    assert all(raw == lines[offset - 1] for offset, _, _, raw in rows)  # file offsets are 1-based line numbers
    assert all(reason for _, _, reason, _ in rows)
