"""HTTP ingest without Kafka: `hub serve` beside an embedded store appends what it accepts to the
local spool (fsynced before it answers) and `hub run --ingest` tails the spool into the flow.
Real processes, the real OpenTelemetry SDK exporter, a SIGKILL in the middle; backpressure and
an unwritable spool answer with Retry-After, never 200."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from config.settings import load_config
from connectors.live_store import find
from connectors.spool import pending_bytes, read_consumed, segments
from connectors.spool_source import SpoolSource
from flows.serve import create_app
from tests.helpers import ROOT, HubProcess, wait_for
from tests.test_serve_ingest import N_CALLS, answers, genai_spans, hub_serve

# Small segments (rotation and deletion happen in a test), frequent snapshots, windows closed
# soon after input stops.
FAST = {"HUB_SPOOL__SEGMENT_BYTES": "4096", "HUB_RECOVERY__SNAPSHOT_INTERVAL_S": "1",
        "HUB_WINDOWS__IDLE_CLOSE_S": "2"}


def live_rows(store: Path, sql: str) -> list[tuple] | None:
    """Rows from the store a running `hub run` serves live (None while it serves none), over HTTP:
    this process never opens the store itself."""
    address = find(store)
    if address is None:
        return None
    try:
        with closing(clickhouse_connect.get_client(**address.client_args())) as client:
            return client.query(sql).result_rows
    except Exception:  # the run is starting or was just killed: ask again
        return None


def events(ids: range, base_ms: int) -> list[dict[str, Any]]:
    """Hundreds of events 0.5 s apart, each hundred in a minute of its own (minutes 3 apart): a
    window the idle timer closed between two requests never gets a late event."""
    return [{"event_id": f"spool-{i}", "event_type": "telemetry.request",
             "event_time": base_ms + i // 100 * 180_000 + i % 100 * 500,
             "payload": {"model": "gpt-4o", "latency_ms": 100.0 + i}} for i in ids]


def start_run(store: Path, env: dict[str, str], log: Path) -> HubProcess:
    worker = HubProcess(["--ingest", "--clickhouse", f"chdb://{store}"], env, log).start()
    wait_for(lambda: find(store), 120, f"`hub run --ingest` to serve {store} live")
    return worker


@pytest.mark.slow
def test_otel_sdk_spans_reach_a_tailing_hub_run_through_the_spool(tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult
    from ports import free_port

    store = tmp_path / "store"
    worker = start_run(store, {}, tmp_path / "run.log")
    server = None
    try:
        port = free_port()
        server = hub_serve(port, {}, tmp_path / "serve.log", store)
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 60, "hub serve to answer")
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", compression=Compression.Gzip)
        assert exporter.export(genai_spans(N_CALLS)) == SpanExportResult.SUCCESS
        want = [(N_CALLS, sum(100 + i for i in range(N_CALLS)), 1)]
        sql = ("SELECT count(), sum(input_tokens), sum(is_error) FROM events FINAL "
               "WHERE tags['service.name'] = 'ingest-test' AND model = 'gpt-4o-mini'")
        wait_for(lambda: live_rows(store, sql) == want, 90, "the exported spans as events in the live store")
        r = subprocess.run([sys.executable, "-m", "flows.cli", "query", "--clickhouse", f"chdb://{store}",
                            "--format", "csv", sql], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 0 and r.stdout.splitlines()[1] == ",".join(map(str, want[0])), r.stderr
        serve_log = (tmp_path / "serve.log").read_text()
        assert f"ingest spooled to {store}.spool" in serve_log and "hub run --ingest" in serve_log
    finally:
        if server is not None:
            server.terminate()
            assert server.wait(30) == 0, (tmp_path / "serve.log").read_text()
        worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]


@pytest.mark.slow
def test_acknowledged_requests_survive_a_killed_hub_run_once_each(tmp_path: Path) -> None:
    store, log = tmp_path / "store", tmp_path / "run.log"
    cfg = load_config(environ={**os.environ, **FAST}, overrides={"clickhouse.dsn": f"chdb://{store}"})
    spool = Path(f"{store}.spool")
    base_ms = int(time.time() // 60 - 15) * 60_000
    batches = [range(0, 100), range(100, 200), range(200, 300)]
    worker = start_run(store, FAST, log)
    count_sql = "SELECT count(), uniqExact(event_id) FROM events FINAL WHERE event_id LIKE 'spool-%'"
    try:
        with TestClient(create_app(cfg), raise_server_exceptions=False) as api:
            assert api.post("/api/v1/events", json=events(batches[0], base_ms)).status_code == 202
            wait_for(lambda: live_rows(store, count_sql) == [(100, 100)], 90, "the first 100 events")
            wait_for(lambda: read_consumed(spool) is not None, 30, "a snapshot to cover the first request")
            assert api.post("/api/v1/events", json=events(batches[1], base_ms)).status_code == 202
            worker.kill()  # acknowledged; read, written, snapshotted: any of it, or none
            assert api.post("/api/v1/events", json=events(batches[2], base_ms)).status_code == 202
        written = len(segments(spool))
        assert written >= 3, "each request went past the 4 KB segment size"
        worker = start_run(store, FAST, log)
        wait_for(lambda: live_rows(store, count_sql) == [(300, 300)], 90, "all 300 events after the restart")
        # Nothing doubled: windows count each request once, and the flow's dedup saw no replays.
        wait_for(lambda: live_rows(store, "SELECT sum(count) FROM metrics_1m FINAL WHERE metric = 'requests' "
                                          "AND model = 'gpt-4o'") == [(300,)], 60, "300 requests in the 1m windows")
        assert live_rows(store, "SELECT count() FROM dead_letters FINAL") == [(0,)]
        assert live_rows(store, "SELECT count() FROM late_events FINAL") == [(0,)]
        # Consumed segments are deleted once a snapshot covers them; the newest stays for writers.
        wait_for(lambda: len(segments(spool)) == 1 and pending_bytes(spool) == 0, 30, "consumed segments deleted")
    finally:
        worker.stop()
    assert "reading HTTP ingest spool" in log.read_text()


def test_an_overfull_spool_answers_429_until_it_is_consumed(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    cfg = load_config(environ={"HUB_SPOOL__DIR": str(spool), "HUB_SPOOL__MAX_PENDING_BYTES": "100"},
                      overrides={"clickhouse.dsn": f"chdb://{tmp_path}/store"})
    batch = events(range(5), int(time.time() * 1000))
    span = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "x"}]}]}]}
    with TestClient(create_app(cfg), raise_server_exceptions=False) as api:
        assert api.post("/api/v1/events", json=batch).status_code == 202
        full = pending_bytes(spool)
        assert full > 100
        r = api.post("/api/v1/events", json=batch)
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["code"] == "TOO_MANY_REQUESTS"
        assert "max_pending_bytes" in r.json()["detail"]
        r = api.post("/v1/traces", json=span)
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["code"] == 8
        assert pending_bytes(spool) == full, "refused requests write nothing"
        # `hub run --ingest`'s source reads it; once a later snapshot covers it, the room is back.
        part = SpoolSource(spool, 1000, stop_at_end=True).build_part("input", "spool", None)
        assert REGISTRY.get_sample_value("hub_spool_pending_bytes") == full  # what the operator watches
        read = [m for b in part.next_batch() for m in b.messages]
        assert [m.topic for m in read] == [cfg.kafka.topics.telemetry] * 5
        part.snapshot()
        part.snapshot()
        assert pending_bytes(spool) == 0
        assert REGISTRY.get_sample_value("hub_spool_pending_bytes") == 0
        assert api.post("/v1/traces", json=span).status_code == 200


def test_a_spool_that_cannot_be_written_answers_503(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the spool dir should be")
    cfg = load_config(environ={"HUB_SPOOL__DIR": str(blocked)}, overrides={"clickhouse.dsn": f"chdb://{tmp_path}/store"})
    span = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "x"}]}]}]}
    with TestClient(create_app(cfg), raise_server_exceptions=False) as api:
        r = api.post("/api/v1/events", json=events(range(2), int(time.time() * 1000)))
        assert r.status_code == 503 and r.headers["retry-after"] == "5" and r.json()["code"] == "STORE_UNAVAILABLE"
        assert "cannot write the spool" in r.json()["detail"]
        r = api.post("/v1/traces", json=span)
        assert r.status_code == 503 and r.headers["retry-after"] == "5" and r.json()["code"] == 14
    assert blocked.read_text() == "a file where the spool dir should be"
