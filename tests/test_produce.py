"""`hub produce` on the real broker, and `--events` counting events (not messages) everywhere.

What is produced is checked where it lands: each format's messages decode as that format, and
the hub, run over the topics, stores exactly the events asked for.
"""
from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import time
from contextlib import closing

import msgspec
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from config.settings import SOURCES, ClickHouseSettings
from connectors.clickhouse import connect
from connectors.synthetic import generate, generate_messages
from connectors.synthetic_incidents import BOTNET, FORMATS, INCIDENTS, SPIKE_FACTOR
from flows import cli
from flows.cli import main
from flows.produce import ProgressLine
from operators.normalize import Normalizer, detect_format
from operators.shard.step import ShardState, ShardSteps, process
from schemas.items import RawBatch
from schemas.raw import RawMessage
from tests.helpers import ROOT, same_store, topic_env, wait_for

NOW_MS = int(time.time() * 1000)
ALL_INCIDENTS = {"latency-spike": "gpt-4o", "cost-surge": "marketing", "security-burst": "gpt-4o-mini",
                 "policy-violation-cascade": "support-bot"}


def hub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def consume(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every message on the topic's partitions, (key, value) in partition order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "produce-test", "enable.auto.commit": "false"})
    out: list[tuple[bytes | None, bytes]] = []
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for p in sorted(parts):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            consumer.assign([TopicPartition(topic, p, low)])
            got: list[tuple[bytes | None, bytes]] = []

            def read_all() -> bool:
                for m in consumer.consume(1000, timeout=0.2):
                    if m.error() is None:
                        got.append((m.key(), m.value()))
                return len(got) >= high - low

            wait_for(read_all, 30, f"{high - low} messages on {topic}[{p}]", 0)
            out += got
    finally:
        consumer.close()
    return out


def landed(bootstrap: str, env: dict[str, str]) -> dict[str, list[tuple[bytes | None, bytes]]]:
    """Source -> what is on its topic."""
    return {s: consume(bootstrap, env[f"HUB_KAFKA__TOPICS__{s.upper()}"]) for s in SOURCES}


def stored(dsn: str, sql: str) -> list[tuple]:
    with closing(connect(ClickHouseSettings(dsn=dsn))) as client:
        return client.query(sql).result_rows


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)


# --- the generator: exact event counts and one set of events in every format (no broker) ----------


@pytest.mark.parametrize("fmt", FORMATS)
def test_generated_messages_hold_exactly_the_events_asked_for(fmt: str) -> None:
    """Through the shard step as the flow runs it: events stored (after dedup) or, for OTLP metrics,
    calls in the latency windows equal N, with bad inputs and re-sends on top and every incident on."""
    incidents = {k: v for k, v in ALL_INCIDENTS.items() if fmt in INCIDENTS[k][2]}  # those it can carry
    for n in (1, 7, 1500):
        msgs = generate_messages(n, seed=n, start_ms=NOW_MS - 60_000, rate_per_s=100.0, fmt=fmt, incidents=incidents,
                                 bad_fraction=0.02, duplicate_fraction=0.02)
        assert sum(m.events for m in msgs) == n
        raws = [RawMessage(m.value, m.source, 0, i, NOW_MS) for i, m in enumerate(msgs)]
        out = process(ShardState(600_000, 1_000_000, 60_000), RawBatch("s", raws, final=True),
                      ShardSteps(Normalizer()), now_ms=NOW_MS)
        if fmt.startswith("otlp-metrics"):
            assert out.events == 0
            assert sum(w.count for w in out.windows if w.series.metric == "latency_ms") == n
        else:
            assert out.events == n
        assert {d.code for d in out.dead_letters} - {"duplicate"} <= {
            "malformed_json", "malformed_protobuf", "unknown_format", "unknown_event_type", "negative_value",
            "missing_field", "impossible_timestamp", "invalid_field"}


def test_hub_and_base_formats_say_the_same_thing() -> None:
    """Same seed, two envelopes: the normalized events are equal field for field."""
    events = {}
    for fmt in ("hub", "base"):
        msgs = generate_messages(3000, seed=5, start_ms=NOW_MS - 30_000, rate_per_s=100.0, fmt=fmt,
                                 incidents=ALL_INCIDENTS, bad_fraction=0, duplicate_fraction=0)
        assert {detect_format(m.value) for m in msgs} == {fmt}
        batch = Normalizer().normalize_batch([RawMessage(m.value, m.source, 0, i) for i, m in enumerate(msgs)],
                                             now_ms=NOW_MS)
        assert not batch.dead_letters
        events[fmt] = [{k: v for k, v in msgspec.to_builtins(e).items() if k != "ingest_time"} for e in batch.events]
    assert len(events["hub"]) == 3000
    for a, b in zip(events["hub"], events["base"]):
        assert same_store(a, b), (a, b)  # floats within 1e-9: "1.234s" and 1234.0 parse to neighbours


def test_legacy_generate_still_counts_messages() -> None:
    """`generate` (benchmarks, older tests) keeps its meaning: n messages."""
    assert len(generate(500, seed=1, start_ms=NOW_MS, rate_per_s=100)) == 500


# --- hub produce on the broker ----------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rewrites_one_line_on_a_terminal_and_logs_lines_otherwise() -> None:
    log = io.StringIO()
    progress = ProgressLine(log, log_interval_s=0)
    progress.maybe("10 events")
    progress.note("incident started")
    progress.maybe("20 events")
    assert log.getvalue().splitlines() == ["hub produce: 10 events", "hub produce: incident started",
                                           "hub produce: 20 events"]
    tty = _Terminal()
    progress = ProgressLine(tty)
    progress.last -= 1.0  # a second has passed
    progress.maybe("10 events")
    progress.note("incident started")  # ends the live line first
    progress.end()
    assert tty.getvalue() == "\r10 events   \nhub produce: incident started\n"


def test_produce_help() -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["produce", "--help"])
    assert exit_.value.code == 0


def _decodes_as(fmt: str, value: bytes) -> bool:
    if fmt == "otlp-proto":
        return len(ExportTraceServiceRequest.FromString(value).resource_spans) > 0
    if fmt == "otlp-metrics":
        return len(ExportMetricsServiceRequest.FromString(value).resource_metrics) > 0
    obj = orjson.loads(value)
    first = {"hub": "event_id", "base": "eventId", "otlp-json": "resourceSpans",
             "otlp-metrics-json": "resourceMetrics"}[fmt]
    return next(iter(obj)) == first


@pytest.mark.kafka
@pytest.mark.parametrize("fmt", ["hub", "base", "otlp-json", "otlp-proto", "otlp-metrics", "otlp-metrics-json", "mix"])
def test_each_format_lands_and_the_hub_stores_exactly_n(fmt, kafka_bootstrap, tmp_path, monkeypatch):
    n = 400
    env = topic_env(kafka_bootstrap)
    set_env(monkeypatch, env)
    assert main(["produce", "--format", fmt, "--events", str(n), "--seed", "11"]) == 0
    topics = landed(kafka_bootstrap, env)
    if fmt == "mix":
        assert all(topics.values()), {s: len(v) for s, v in topics.items()}  # every source
        kinds = {detect_format(v) for msgs in topics.values() for _, v in msgs}
        assert {"hub", "base", "otlp_json", "otlp_proto"} <= kinds
    else:
        assert all(_decodes_as(fmt, v) for msgs in topics.values() for _, v in msgs)
        if fmt.startswith("otlp"):
            assert not any(topics[s] for s in SOURCES if s != "telemetry")
    assert all(k for msgs in topics.values() for k, _ in msgs)  # every message keyed

    dsn = f"chdb://{tmp_path}/store"
    assert main(["run", "--until-end", "--clickhouse", dsn]) == 0
    events = stored(dsn, "SELECT count() FROM events FINAL")[0][0]
    if fmt.startswith("otlp-metrics"):  # one event = one call the histograms summarize
        assert events == 0
        assert stored(dsn, "SELECT sum(count) FROM metrics_1m FINAL WHERE metric = 'latency_ms'")[0][0] == n
    else:
        assert events == n
    assert stored(dsn, "SELECT count() FROM dead_letters FINAL")[0][0] == 0


@pytest.mark.kafka
def test_rate_is_kept_and_the_count_is_exact(kafka_bootstrap, monkeypatch):
    env = topic_env(kafka_bootstrap)
    set_env(monkeypatch, env)
    started = time.monotonic()
    assert main(["produce", "--format", "hub", "--events", "60", "--rate", "40"]) == 0
    assert time.monotonic() - started >= 60 / 40
    assert sum(len(msgs) for msgs in landed(kafka_bootstrap, env).values()) == 60  # hub: one event each


@pytest.mark.kafka
def test_duration_with_rate_sends_rate_times_duration(kafka_bootstrap, monkeypatch):
    env = topic_env(kafka_bootstrap)
    set_env(monkeypatch, env)
    started = time.monotonic()
    assert main(["produce", "--format", "otlp-json", "--duration", "1.5s", "--rate", "40"]) == 0
    assert time.monotonic() - started >= 1.5
    spans = 0
    for _, value in consume(kafka_bootstrap, env["HUB_KAFKA__TOPICS__TELEMETRY"]):
        spans += sum(1 for rs in orjson.loads(value)["resourceSpans"] for ss in rs["scopeSpans"]
                     for sp in ss["spans"] if sp.get("parentSpanId"))  # LLM calls: children of the HTTP span
    assert spans == 60


def _hub_events(bootstrap: str, env: dict[str, str]) -> list[dict]:
    return [orjson.loads(v) for msgs in landed(bootstrap, env).values() for _, v in msgs]


@pytest.mark.kafka
def test_latency_spike_slows_exactly_one_model(kafka_bootstrap, monkeypatch):
    """Same seed with and without the incident: only the target model's calls change, by the factor."""
    runs = []
    for extra in ([], ["--incident", "latency-spike"]):
        env = topic_env(kafka_bootstrap)
        set_env(monkeypatch, env)
        assert main(["produce", "--format", "hub", "--events", "2000", "--seed", "3", *extra]) == 0
        runs.append({e["event_id"]: e for e in _hub_events(kafka_bootstrap, env)
                     if e["event_type"] == "telemetry.request"})
    calm, spiked = runs
    assert calm.keys() == spiked.keys()
    ratio = {i: spiked[i]["payload"]["latency_ms"] / calm[i]["payload"]["latency_ms"] for i in calm}
    changed = {i for i, r in ratio.items() if not math.isclose(r, 1.0)}
    assert changed and {calm[i]["payload"]["model"] for i in changed} == {"gpt-4o"}
    assert all(math.isclose(ratio[i], SPIKE_FACTOR, rel_tol=1e-3) for i in changed)
    gpt4o = [i for i in calm if calm[i]["payload"]["model"] == "gpt-4o"]
    assert 0.2 < len(changed) / len(gpt4o) < 0.4  # the incident covers 50-80% of the run


@pytest.mark.kafka
def test_security_burst_and_policy_cascade_appear(kafka_bootstrap, monkeypatch):
    env = topic_env(kafka_bootstrap)
    set_env(monkeypatch, env)
    assert main(["produce", "--format", "hub", "--events", "2000", "--incident", "security-burst",
                 "--incident", "policy-violation-cascade:search"]) == 0
    events = _hub_events(kafka_bootstrap, env)
    burst = [e for e in events if e["event_type"] == "security.threat" and e["payload"]["source_ip"] in BOTNET]
    assert len(burst) > 100 and {e["payload"]["asset_id"] for e in burst} == {"gpt-4o-mini"}
    by_id = {e["event_id"]: e for e in events}
    cascades: dict[str, list[dict]] = {}
    for e in events:
        if e.get("correlation_id", "").startswith("incident-policy-cascade-"):
            cascades.setdefault(e["correlation_id"], []).append(e)
    full = [c for c in cascades.values() if len(c) == 4]
    assert len(full) > 10
    for chain in full:
        assert {e["tags"]["team"] for e in chain} == {"search"}
        types = {e["event_type"] for e in chain}
        assert types == {"policy.evaluated", "violation.detected", "governance.violation", "security.privacy"}
        children = [e for e in chain if e.get("parent_event_id")]
        assert len(children) == 3 and all(by_id[e["parent_event_id"]] in chain for e in children)


@pytest.mark.kafka
def test_file_replay_sends_every_line_as_it_is(kafka_bootstrap, tmp_path, monkeypatch, capsys):
    env = topic_env(kafka_bootstrap)
    set_env(monkeypatch, env)
    good = generate(300, seed=2, start_ms=NOW_MS - 60_000, rate_per_s=50.0, bad_fraction=0, duplicate_fraction=0)
    bad = [b"this is not json", b'{"event_id": "x", "event_type": "telemetry.bogus", "payload": {}}', b"[1, 2]"]
    lines = good[:100] + [bad[0], b""] + good[100:200] + bad[1:] + good[200:]
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["produce", "--file", str(src)]) == 0
    err = capsys.readouterr().err
    assert "skipped 3 lines" in err and "not a JSON object: lines 101, 204; unknown event type: line 203" in err, err
    topics = {s: [v for _, v in msgs] for s, msgs in landed(kafka_bootstrap, env).items()}
    assert sorted(v for vs in topics.values() for v in vs) == sorted(good)
    batch = Normalizer().normalize_batch([RawMessage(v, "f", 0, i) for i, v in enumerate(good)], now_ms=NOW_MS)
    assert not batch.dead_letters
    for source, values in topics.items():  # each line on its source's topic, in file order
        assert values == [v for v in good if v in set(values)]
        assert values, source
    otlp = [v for v in topics["telemetry"] if detect_format(v) == "otlp_json"]
    assert otlp  # OTLP batches go to telemetry
    assert {e.source for e in Normalizer().normalize_batch(
        [RawMessage(v, "f", 0, i) for i, v in enumerate(topics["security"])], now_ms=NOW_MS).events} == {"security"}


@pytest.mark.kafka
def test_delivery_errors_are_counted_and_fail_the_run(kafka_bootstrap, tmp_path, monkeypatch, capsys):
    env = topic_env(kafka_bootstrap)
    set_env(monkeypatch, env)
    good = generate(20, seed=4, start_ms=NOW_MS, rate_per_s=50.0, bad_fraction=0, duplicate_fraction=0)
    huge = orjson.dumps({"event_id": "huge", "event_type": "telemetry.request",
                         "payload": {"model": "m" * 2_000_000, "latency_ms": 1.0}})  # over the 1 MB message limit
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"\n".join(good[:10] + [huge] + good[10:]))
    assert main(["produce", "--file", str(src)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hub produce: error: 1 of 21 messages were not delivered (MSG_SIZE_TOO_LARGE 1)"), err
    assert sum(len(msgs) for msgs in landed(kafka_bootstrap, env).values()) == 20


def test_unreachable_broker_is_one_line_error():
    r = hub("produce", "--kafka", "127.0.0.1:9", "--events", "10", env={"HUB_KAFKA__CONNECT_TIMEOUT_S": "2"})
    assert r.returncode == 1
    assert "Kafka at 127.0.0.1:9 did not answer" in r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


@pytest.mark.parametrize("args, expected", [
    (["--events", "0"], "--events must be > 0"),
    (["--duration", "soon"], "--duration 'soon'"),
    (["--incident", "meteor"], "unknown incident"),
    (["--format", "otlp-proto", "--incident", "security-burst"], "--incident security-burst needs"),
    (["--file", "/nonexistent.jsonl"], "file /nonexistent.jsonl does not exist"),
    (["--file", "x.jsonl", "--events", "5"], "--events: for generated traffic"),
])
def test_produce_mistakes_are_one_line_errors(args, expected):
    r = hub("produce", "--kafka", "127.0.0.1:9", *args, env={})
    assert r.returncode == 1
    assert expected in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_hub_run_events_counts_stored_events(tmp_path):
    """The synthetic source: `--events N` stores N events, though OTLP batches hold several."""
    dsn = f"chdb://{tmp_path}/store"
    assert main(["run", "--events", "3000", "--clickhouse", dsn]) == 0
    assert stored(dsn, "SELECT count() FROM events FINAL")[0][0] == 3000
    # ... though some messages held several of them (OTLP batches: calls of one trace), so counting
    # messages would have stored more
    several = stored(dsn, "SELECT countIf(c > 1) FROM (SELECT correlation_id, count() AS c FROM events FINAL "
                          "WHERE event_type = 'telemetry.request' GROUP BY correlation_id)")[0][0]
    assert several > 0
