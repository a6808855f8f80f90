"""HTTP ingest of `hub serve`: the real OpenTelemetry SDK exporters (OTLP/HTTP protobuf, gzip)
against a running `hub serve`, onto a real broker, then `hub run` on the topic; OTLP status
codes and partial success; /api/v1/events with per-item status; backpressure and a broker that
does not answer."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import Consumer
from fastapi.testclient import TestClient
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)

from config.settings import ClickHouseSettings, kafka_client_config, load_config
from connectors.clickhouse import connect
from connectors.ingest_producer import IngestProducer
from flows.serve import create_app
from tests.helpers import ROOT, topic_env, wait_for

PB = "application/x-protobuf"
N_CALLS = 12


def genai_spans(n: int):
    """Finished spans of n chat calls (one failed) and one plain HTTP span, from the real SDK."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "ingest-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for i in range(n):
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                 "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini",
                                 "gen_ai.usage.input_tokens": 100 + i, "gen_ai.usage.output_tokens": 10})
            if i == 0:
                span.set_status(Status(StatusCode.ERROR, "boom"))
                span.set_attribute("error.type", "RateLimitError")
    with tracer.start_as_current_span("GET /health"):
        pass
    return memory.get_finished_spans()


def genai_metrics():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    usage = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    for tokens in (100, 200, 300):
        usage.record(tokens, {"gen_ai.token.type": "input", "gen_ai.request.model": "gpt-4o-mini",
                              "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"})
    return reader.get_metrics_data()


def hub_serve(port: int, env: dict[str, str], log: Path, store: Path) -> subprocess.Popen:
    out = open(log, "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--port", str(port),
                             "--clickhouse", f"chdb://{store}"], cwd=ROOT, env={**os.environ, **env},
                            stdout=out, stderr=subprocess.STDOUT)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.kafka
@pytest.mark.slow
def test_otel_sdk_exporters_send_to_hub_serve_and_the_events_land(kafka_bootstrap: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics.export import MetricExportResult
    from opentelemetry.sdk.trace.export import SpanExportResult
    from ports import free_port

    env = topic_env(kafka_bootstrap)
    port = free_port()
    server = hub_serve(port, env, tmp_path / "serve.log", tmp_path / "serve-store")
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 60, "hub serve to answer")
        base = f"http://127.0.0.1:{port}"
        spans = OTLPSpanExporter(endpoint=f"{base}/v1/traces", compression=Compression.Gzip)
        assert spans.export(genai_spans(N_CALLS)) == SpanExportResult.SUCCESS
        metrics = OTLPMetricExporter(endpoint=f"{base}/v1/metrics", compression=Compression.Gzip)
        assert metrics.export(genai_metrics()) == MetricExportResult.SUCCESS
        # OTLP/JSON, as a Collector-less JS or curl producer would send it.
        recorded = (ROOT / "tests/data/genai/otel_openai_v2.otlp.jsonl").read_bytes().splitlines()[0]
        r = httpx.post(f"{base}/v1/traces", content=recorded, headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json") and r.json() == {}
    finally:
        server.terminate()
        assert server.wait(30) == 0, (tmp_path / "serve.log").read_text()

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from flows.cli import main

    dsn = f"chdb://{tmp_path}/store"
    assert main(["run", "--until-end", "--clickhouse", dsn]) == 0
    with closing(connect(ClickHouseSettings(dsn=dsn))) as client:
        rows = client.query("SELECT count(), sum(input_tokens), sum(is_error) FROM events FINAL "
                            "WHERE tags['service.name'] = 'ingest-test' AND model = 'gpt-4o-mini'").result_rows
        assert rows == [(N_CALLS, sum(100 + i for i in range(N_CALLS)), 1)]
        skipped = dict(client.query("SELECT reason, sum(inputs) FROM skipped_inputs FINAL GROUP BY reason").result_rows)
        assert skipped.get("not_llm_span", 0) >= 1 and skipped.get("metric_points", 0) >= 1
        assert client.query("SELECT count() FROM dead_letters FINAL").result_rows == [(0,)]
        recorded_calls = client.query("SELECT count() FROM events FINAL WHERE tags['service.name'] = 'svc-otel-v2'"
                                      ).result_rows
        assert recorded_calls[0][0] > 0  # the OTLP/JSON request's LLM calls


@pytest.fixture
def ingest(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    env = topic_env(kafka_bootstrap)
    cfg = load_config(environ={**env, "HUB_SERVE__MAX_BODY_BYTES": "200000"},
                      overrides={"clickhouse.dsn": f"chdb://{tmp_path}/store"})
    with TestClient(create_app(cfg), raise_server_exceptions=False) as client:
        yield client, env


def consume(bootstrap: str, topic: str, n: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
    finally:
        consumer.close()
    return got


@pytest.mark.kafka
def test_otlp_status_codes_and_partial_success(ingest, kafka_bootstrap: str) -> None:
    api, env = ingest
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    request = encode_spans(genai_spans(3))
    bad = request.resource_spans[0].scope_spans[0].spans[1]
    bad.span_id = bytes(8)  # the spec's invalid span id
    r = api.post("/v1/traces", content=gzip.compress(request.SerializeToString()),
                 headers={"Content-Type": PB, "Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"] == PB
    answer = ExportTraceServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_spans == 1 and "invalid trace or span id" in answer.partial_success.error_message
    delivered = consume(kafka_bootstrap, env["HUB_KAFKA__TOPICS__TELEMETRY"], 1)
    assert len(delivered) == 1
    sent = ExportTraceServiceRequest.FromString(delivered[0])
    assert len(sent.resource_spans[0].scope_spans[0].spans) == 3  # 4 spans less the invalid one

    as_json = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "00" * 16, "spanId": "ab" * 8, "name": "x"}]}]}]}
    r = api.post("/v1/traces", content=orjson.dumps(as_json), headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == {"partialSuccess": {"rejectedSpans": "1", "errorMessage": r.json()[
        "partialSuccess"]["errorMessage"]}}

    r = api.post("/v1/traces", content=b"\xff\xff\xff not protobuf", headers={"Content-Type": PB})
    assert r.status_code == 400
    status = status_pb2.Status.FromString(r.content)
    assert status.code == 3 and "ExportTraceServiceRequest" in status.message
    r = api.post("/v1/metrics", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == 3 and "not JSON" in r.json()["message"]
    r = api.post("/v1/logs", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = api.post("/v1/traces", content=b"x" * 300_000, headers={"Content-Type": PB})
    assert r.status_code == 413
    bomb = gzip.compress(b"\0" * 5_000_000)  # ~5 KB that unpack to 5 MB
    r = api.post("/v1/traces", content=bomb, headers={"Content-Type": PB, "Content-Encoding": "gzip"})
    assert r.status_code == 413 and "unpacks" in status_pb2.Status.FromString(r.content).message
    r = api.post("/v1/traces", content=b"{}", headers={"Content-Type": "application/json", "Content-Encoding": "br"})
    assert r.status_code == 415


@pytest.mark.kafka
def test_events_endpoint_answers_per_item_and_sends_accepted_items(ingest, kafka_bootstrap: str) -> None:
    api, env = ingest
    now = int(time.time() * 1000)
    hub_event = {"event_id": "http-1", "event_type": "telemetry.request", "event_time": now,
                 "payload": {"model": "gpt-4o", "latency_ms": 120.0}}
    iso = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now / 1000))
    base_event = {"eventId": "http-2", "eventType": "asset.registered", "source": "registry", "timestamp": iso,
                  "version": "1.0.0", "data": {"assetId": "model-123", "assetName": "GPT-4-Turbo", "version": "1.2.0",
                                               "owner": "ml-team"}}
    unknown = {"event_id": "http-3", "event_type": "telemetry.nonsense", "event_time": now, "payload": {}}
    r = api.post("/api/v1/events", json=[hub_event, base_event, unknown, 42])
    assert r.status_code == 202, r.text
    body = r.json()
    items = body["data"]["items"]
    assert body["status"] == "partial" and [i["status"] for i in items] == ["accepted", "accepted", "rejected",
                                                                            "rejected"]
    assert items[0] == {"index": 0, "status": "accepted", "event_id": "http-1", "source": "telemetry"}
    assert items[2]["status"] == "rejected" and items[2]["code"] and items[2]["reason"]
    assert items[3] == {"index": 3, "status": "rejected", "code": "not_an_envelope", "field": "",
                        "reason": items[3]["reason"]}
    accepted = [i for i in items if i["status"] == "accepted"]
    assert body["data"]["accepted"] == len(accepted)
    landed = consume(kafka_bootstrap, env["HUB_KAFKA__TOPICS__TELEMETRY"], 1)
    assert [orjson.loads(v)["event_id"] for v in landed] == ["http-1"]
    assert items[1] == {"index": 1, "status": "accepted", "event_id": "http-2", "source": "registry"}
    assert [orjson.loads(v)["eventId"] for v in consume(kafka_bootstrap, env["HUB_KAFKA__TOPICS__REGISTRY"], 1)] == ["http-2"]

    r = api.post("/api/v1/events", json=unknown)  # one object, rejected: a problem with the field
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"].startswith("body")
    r = api.post("/api/v1/events", content=b"[", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"
    r = api.post("/api/v1/events", json=[])
    assert r.status_code == 422


def test_backpressure_and_an_unreachable_broker_answer_retry_after(tmp_path: Path) -> None:
    from ports import free_port

    cfg = load_config(overrides={"clickhouse.dsn": f"chdb://{tmp_path}/store"})
    dead = {"bootstrap.servers": f"127.0.0.1:{free_port()}"}  # nothing listens there
    event = {"event_id": "bp-1", "event_type": "telemetry.request", "event_time": int(time.time() * 1000),
             "payload": {"model": "gpt-4o", "latency_ms": 1.0}}
    full = IngestProducer(dead, delivery_timeout_s=1.0, max_in_flight=1, max_message_bytes=cfg.serve.max_body_bytes)
    with TestClient(create_app(cfg, producer=full), raise_server_exceptions=False) as api:
        r = api.post("/api/v1/events", json=[event, {**event, "event_id": "bp-2"}])
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["code"] == "TOO_MANY_REQUESTS"
        started = time.monotonic()
        r = api.post("/v1/traces", content=b"{}", headers={"Content-Type": "application/json"})
        assert r.status_code == 200  # nothing in it: nothing to deliver
        request = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab" * 16, "spanId": "cd" * 8}]}]}]}
        r = api.post("/v1/traces", content=orjson.dumps(request), headers={"Content-Type": "application/json"})
        assert r.status_code == 503 and r.headers["retry-after"] == "5" and r.json()["code"] == 14
        assert time.monotonic() - started < 15
    # A server store with no Kafka and no [spool] dir has nowhere durable to put anything (beside an
    # embedded store the spool is the default: tests/test_serve_spool.py).
    no_kafka = load_config(overrides={"clickhouse.dsn": f"http://127.0.0.1:{free_port()}"})
    with TestClient(create_app(no_kafka), raise_server_exceptions=False) as api:
        r = api.post("/api/v1/events", json=event)
        assert r.status_code == 503 and "no Kafka is configured" in r.json()["detail"]
    assert kafka_client_config(no_kafka)["bootstrap.servers"] == ""
