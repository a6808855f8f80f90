"""The hub side by side with the floor and a peer, on one Kafka topic (issue 18).

Why: a throughput figure means little alone. On one topic of LLM request events this runs, one
after the other, each in its own process:

  floor  the plainest correct pipeline: a serial loop, confluent-kafka `consume(20000)` ->
         msgspec typed decode -> columnar insert of the raw rows into embedded ClickHouse (chdb
         through clickhouse-connect), with a materialized view keeping per-(model, minute) count,
         latency quantiles and token sums;
  quix   Quix Streams doing per-model 1-minute event-time tumbling windows (count, mean latency,
         token sum), no sink; installed into its own virtualenv (.bench/quix-venv) because it pins
         its own Kafka client;
  hub    `hub run --until-end` on the topic into a fresh embedded store (all of its work:
         normalization, dedup, pricing, windows, detection, raw rows).

Per system: events/s = events / wall time from the first message to done (the hub: to the end
of the dataflow, before its closing summary query), peak RSS (the process's high-water mark,
from wait4), and the hub's ratio to the floor. `--runs N` repeats the three (interleaved, so
noise hits all alike) and reports medians.

The topic (`--format`): `base` is the integration note's base event schema, `telemetry.request`
only, ~430 bytes, 5 models x 7 teams, event times spread over the last hour, keyed by model.
`hub produce --format base` is not that: it sends every event kind, 8 models x 5 teams, with
event times from now at 50k/s, so this file generates its own topic. `hub` is the same calls as
hub envelopes (keyed by model); `otlp-json` writes them as OTLP/JSON span batches of 1-4 calls
of one service (keyed by service, as a Collector does); `mix` picks one of the three per message.

    python bench/peers.py                                   # 1M events, 4 partitions, base
    python bench/peers.py --events 20000 --runs 1           # a smoke run
    python bench/peers.py --only floor,hub --runs 3 --json out.json
    python bench/peers.py --profile                         # + the hub under py-spy: top functions
    python bench/peers.py --only floor,hub --hub-processes 2   # + rows `hub http`, `hub x2`
    python bench/peers.py --only floor,hub --partitions 1,2,4  # one topic per count, one table
    python bench/peers.py --only hub --latency              # + p50/p99 at half the measured rate

Scale-out (issue 18 part 3). `--hub-processes N[,N...]` adds, per N > 1, the row `hub xN`: the
hub as N processes of one Bytewax cluster (`hub run --until-end --no-migrate --process-id I
--addresses ...`, as tests/test_pipeline_kafka.py runs it) on the same topic, writing to a real
ClickHouse HTTP server that the bench starts (scripts/clickhouse_server.py: chdb serving HTTP in
its own process, as the tests' `clickhouse_server` fixture does), each run into a fresh database
migrated once up front. Its events/s runs from the cluster's first message to its last process
done; peak RSS is per process (the table shows the largest, a footnote all of them and the
events/s per process). It always adds `hub http` too: one process on the same server, since the
embedded store and the HTTP one differ. Both are also names for `--only` (`hub-http`,
`hub-xN`). The server shares the machine's cores with the hubs.

Per partition count (issue 18 part 3). `--partitions 1,2,4` produces one topic per count (same
events, same seed) and runs the chosen systems on each, run by run interleaved; the table gets a
`parts` column and `vs floor` compares with the floor on the same topic. `--profile` and the
latency run use the last count's topic.

Latency (issue 18 part 4). `--latency` (or `--latency-rate R`, which implies it) measures, for
`hub` and/or `hub-http` (those in the run; `hub` alone when only `--latency-rate` names none),
the end-to-end latency at an offered rate: a fresh, empty topic (the last --partitions count),
the hub started on it without --until-end, and once its source polls Kafka the bench produces
`--latency-events` events (default --events) at R events/s (default: half that system's median
events/s measured above, on that partition count), event times running with the wall clock.
The run stops itself when all events went through (as Ctrl-C stops `hub run`: drained and
flushed). Latency is what the hub measures for `hub_end_to_end_latency_seconds`, the mechanism
bench/pipeline.py uses: the ClickHouse writer records, when the insert holding a message
returned (queryable), that minus the message's broker timestamp (CreateTime, set when the
producer takes the message, so its 20 ms linger counts), 1 message in 64
(connectors.worker_metrics.LATENCY_SAMPLE); the worker reports p50, p99 and max of that sample.
The writer inserts every clickhouse.insert_max_delay_s (1 s) or 10,000 rows, which bounds p50
from below. Latency runs once, whatever --runs.

`--json` adds `topics` (one per count), `latency` (the latency runs, their figures in
`latency`), per run `partitions`, `processes` and `rss_per_process_mb`; with several partition
counts `median` is keyed `SYSTEM@PARTITIONS` and `hub_vs_floor` is per partition count.

Importing this file does nothing; the project modules, msgspec and confluent-kafka are imported
where used, because the Quix worker runs this same file in the Quix virtualenv.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"
QUIX_VENV = BENCH_DIR / "quix-venv"
QUIX_VERSION = "3.28.1"
SYSTEMS = ("floor", "quix", "hub")
FORMATS = ("base", "hub", "otlp-json", "mix")
CONSUME_BATCH = 20_000
PRODUCE_CHUNK = 20_000
# (name, provider, median latency ms): the first five of connectors.synthetic.MODELS, so the hub
# prices them like any other traffic.
MODELS = (("gpt-4o", "openai", 900.0), ("gpt-4o-mini", "openai", 450.0),
          ("claude-3-5-sonnet-20241022", "anthropic", 1100.0), ("claude-3-5-haiku-20241022", "anthropic", 520.0),
          ("gemini-1.5-pro", "gcp.gemini", 1000.0))
TEAMS = ("search", "support-bot", "code-assist", "analytics", "marketing", "billing", "data-platform")
REGIONS = ("us-east-1", "us-east-1", "eu-west-1", "ap-southeast-1")
ERRORS = ("rate_limit_exceeded", "timeout", "server_error")
SPAN_MS = 3_600_000  # event times cover the last hour
_HUB_DONE = re.compile(r"hub run: done in ([\d.]+)s: ([\d,]+) events")


class BenchError(RuntimeError):
    """Something the person running the bench can act on; printed as one line."""


# --- the topic ----------------------------------------------------------------------------------------


@dataclass
class Call:
    """One LLM request as every format writes it."""

    event_id: str
    t_ms: int
    model: str
    provider: str
    team: str
    region: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    error: str | None


@functools.lru_cache(maxsize=4096)
def _iso_second(s: int) -> str:
    return datetime.fromtimestamp(s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")


def iso_ms(t_ms: int) -> str:
    """Epoch ms -> '2026-11-29T10:00:00.123Z' (the base schema's date-time); an hour has 3,600 seconds."""
    return f"{_iso_second(t_ms // 1000)}{t_ms % 1000:03d}Z"


class Calls:
    """Deterministic calls for a seed, event times spread evenly over [start_ms, start_ms + span_ms)."""

    def __init__(self, total: int, seed: int, start_ms: int, span_ms: int = SPAN_MS) -> None:
        self.rng = random.Random(seed)
        self.total = total
        self.start_ms = start_ms
        self.span_ms = span_ms
        self.i = 0

    def next(self) -> Call:
        rng = self.rng
        t = int(self.start_ms + self.i * self.span_ms / self.total + rng.gauss(0.0, 150.0))
        self.i += 1
        name, provider, median = MODELS[int(rng.random() * len(MODELS))]
        error = ERRORS[int(rng.random() * len(ERRORS))] if rng.random() < 0.025 else None
        inp = int(rng.lognormvariate(6.3, 0.9)) + 5
        return Call(event_id=f"{rng.getrandbits(128):032x}", t_ms=t, model=name, provider=provider,
                    team=TEAMS[int(rng.random() * len(TEAMS))], region=REGIONS[int(rng.random() * len(REGIONS))],
                    latency_ms=round(median * rng.lognormvariate(0.0, 0.45), 3), input_tokens=inp,
                    output_tokens=0 if error else int(rng.lognormvariate(5.3, 0.8)) + 1, error=error)


def _uuid(h: str) -> str:
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def base_event(c: Call) -> dict[str, Any]:
    """The integration note's base event schema (camelCase `data`, `metadata`, ISO timestamp)."""
    data: dict[str, Any] = {"model": c.model, "provider": c.provider, "operation": "chat", "latencyMs": c.latency_ms,
                            "inputTokens": c.input_tokens, "outputTokens": c.output_tokens,
                            "totalTokens": c.input_tokens + c.output_tokens, "isError": c.error is not None}
    if c.error:
        data["errorType"] = c.error
    else:
        data["finishReason"] = "stop"
    return {"eventId": _uuid(c.event_id), "eventType": "telemetry.request", "source": "observatory",
            "timestamp": iso_ms(c.t_ms), "version": "1.0.0", "data": data,
            "metadata": {"team": c.team, "region": c.region, "environment": "prod"}}


def otlp_batch(calls: list[Call]) -> dict[str, Any]:
    """OTLP/JSON ExportTraceServiceRequest: one service's LLM spans (GenAI semantic conventions)."""
    from connectors.synthetic_wire import kv, span

    team = calls[0].team
    spans = []
    for c in calls:
        attrs = [kv("gen_ai.provider.name", c.provider), kv("gen_ai.request.model", c.model),
                 kv("gen_ai.response.model", c.model), kv("gen_ai.operation.name", "chat"),
                 kv("gen_ai.usage.input_tokens", c.input_tokens), kv("gen_ai.usage.output_tokens", c.output_tokens),
                 kv("team", team)]
        if c.error:
            attrs.append(kv("error.type", c.error))
        spans.append(span(c.event_id, c.event_id[:16], "", f"chat {c.model}", c.t_ms,
                          c.t_ms + int(c.latency_ms), attrs, c.error is not None))
    resource = [kv("service.name", f"{team}-api"), kv("deployment.environment.name", "prod"),
                kv("cloud.region", calls[0].region)]
    return {"resourceSpans": [{"resource": {"attributes": resource},
                               "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2",
                                                         "version": "0.1"}, "spans": spans}]}]}


def messages(total: int, fmt: str, seed: int, start_ms: int, span_ms: int = SPAN_MS,
             chunk: int = PRODUCE_CHUNK) -> Iterator[list[tuple[bytes, bytes, int]]]:
    """Chunks of (key, value, events) holding exactly `total` events in format `fmt`."""
    import msgspec

    from connectors.synthetic_wire import base_to_hub

    enc = msgspec.json.Encoder()
    calls = Calls(total, seed, start_ms, span_ms)
    pick = random.Random(seed + 1)
    out: list[tuple[bytes, bytes, int]] = []
    done = 0
    while done < total:
        kind = fmt if fmt != "mix" else ("base", "hub", "otlp-json")[int(pick.random() * 3)]
        if kind == "otlp-json":
            k = min(pick.randint(1, 4), total - done)
            batch = [calls.next() for _ in range(k)]
            for c in batch[1:]:
                c.team, c.region = batch[0].team, batch[0].region  # one service's export
            out.append((f"{batch[0].team}-api".encode(), enc.encode(otlp_batch(batch)), k))
            done += k
        else:
            c = calls.next()
            obj = base_event(c)
            if kind == "hub":
                obj = base_to_hub(obj)
                obj["event_time"] = c.t_ms  # hub producers send epoch ms
            out.append((c.model.encode(), enc.encode(obj), 1))
            done += 1
        if len(out) >= chunk:
            yield out
            out = []
    if out:
        yield out


@dataclass
class TopicInfo:
    """What was produced, for the report."""

    name: str
    fmt: str
    partitions: int
    events: int
    messages: int
    bytes_per_message: float
    per_partition: list[int]
    produce_s: float


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": "0"})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def produce_topic(bootstrap: str, name: str, events: int, partitions: int, fmt: str, seed: int,
                  rate: float | None = None, create: bool = True) -> TopicInfo:
    """Create the topic (unless `create` is false) and fill it; every message must be delivered.

    With `rate` (events/s, the latency mode) the events are sent at that pace in 20 ms steps and
    their event times run with the wall clock (from now, over events / rate seconds), as live
    traffic does; without it as fast as the producer goes, event times over the last hour."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    if create:
        create_topic(bootstrap, name, partitions)
    # murmur2_random: the partitioner of Kafka's Java clients. librdkafka's default (CRC32) puts these
    # five models on 3 of 4 partitions (0, 2, 2, 2, 3); murmur2 on all four (1, 3, 2, 0, 0).
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": "20",
                  "compression.type": "lz4",
                  "batch.num.messages": "10000", "queue.buffering.max.messages": "1000000",
                  "enable.idempotence": "true", "log_level": "0"})
    failed: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None and len(failed) < 5:
            failed.append(err.str())

    if rate is None:
        start_ms, span_ms, chunk_size = int(time.time() * 1000) - SPAN_MS, SPAN_MS, PRODUCE_CHUNK
    else:
        start_ms, span_ms, chunk_size = int(time.time() * 1000), int(events / rate * 1000), max(int(rate / 50), 1)
    n_msgs = n_bytes = sent = 0
    t0 = time.perf_counter()
    for chunk in messages(events, fmt, seed, start_ms, span_ms, chunk_size):
        if rate is not None:
            ahead = sent / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
            sent += sum(n for _, _, n in chunk)
        for key, value, _ in chunk:
            while True:
                try:
                    p.produce(name, value, key, on_delivery=report)
                    break
                except BufferError:
                    p.poll(0.05)
            n_bytes += len(value)
        n_msgs += len(chunk)
        p.poll(0)
    left = p.flush(120)
    elapsed = time.perf_counter() - t0
    if left or failed:
        raise BenchError(f"producing the topic failed: {left} messages undelivered; {'; '.join(failed)}")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "peers-watermarks", "log_level": "0"})
    counts = []
    for part in range(partitions):
        low, high = c.get_watermark_offsets(TopicPartition(name, part), timeout=10)
        counts.append(high - low)
    c.close()
    return TopicInfo(name, fmt, partitions, events, n_msgs, n_bytes / max(n_msgs, 1), counts, elapsed)


# --- the floor (runs as `peers.py --worker floor`, in the project's environment) ------------------


FLOOR_DDL = (
    """CREATE TABLE raw (event_id String, ts DateTime64(3, 'UTC'), model LowCardinality(String),
       team LowCardinality(String), latency_ms Float64, input_tokens UInt32, output_tokens UInt32, is_error UInt8)
       ENGINE = MergeTree ORDER BY (model, ts)""",
    """CREATE TABLE per_minute (model LowCardinality(String), minute DateTime('UTC'),
       n AggregateFunction(count), latency AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64),
       input_tokens AggregateFunction(sum, UInt64), output_tokens AggregateFunction(sum, UInt64))
       ENGINE = AggregatingMergeTree ORDER BY (model, minute)""",
    """CREATE MATERIALIZED VIEW per_minute_mv TO per_minute AS
       SELECT model, toStartOfMinute(ts) AS minute, countState() AS n,
              quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency,
              sumState(toUInt64(input_tokens)) AS input_tokens, sumState(toUInt64(output_tokens)) AS output_tokens
       FROM raw GROUP BY model, minute""",
)
FLOOR_COLUMNS = ("event_id", "ts", "model", "team", "latency_ms", "input_tokens", "output_tokens", "is_error")
FLOOR_TYPES = ("String", "DateTime64(3, 'UTC')", "LowCardinality(String)", "LowCardinality(String)", "Float64",
               "UInt32", "UInt32", "UInt8")


def floor_decoders() -> Any:
    """msgspec Structs for the three wire formats, built on call (msgspec is not in the Quix venv;
    defstruct takes real types, which class bodies here would not: annotations are strings)."""
    import msgspec

    S, opt = msgspec.defstruct, msgspec.field
    base_data = S("BaseData", [("model", str), ("latencyMs", float), ("inputTokens", int, 0),
                               ("outputTokens", int, 0), ("isError", bool, False)])
    base_meta = S("BaseMeta", [("team", str, "")])
    base_event = S("BaseEvent", [("eventId", str), ("timestamp", datetime), ("data", base_data),
                                 ("metadata", base_meta, opt(default_factory=base_meta))])
    hub_payload = S("HubPayload", [("model", str), ("latency_ms", float), ("input_tokens", int, 0),
                                   ("output_tokens", int, 0), ("is_error", bool, False)])
    hub_tags = S("HubTags", [("team", str, "")])
    hub_event = S("HubEvent", [("event_id", str), ("event_time", int), ("payload", hub_payload),
                               ("tags", hub_tags, opt(default_factory=hub_tags))])
    any_value = S("AnyValue", [("stringValue", str | None, None), ("intValue", str | None, None),
                               ("doubleValue", float | None, None)])
    key_value = S("KeyValue", [("key", str), ("value", any_value)])
    status = S("Status", [("code", int, 0)])
    span = S("Span", [("spanId", str), ("startTimeUnixNano", str), ("endTimeUnixNano", str),
                      ("attributes", list[key_value], opt(default_factory=list)),
                      ("status", status, opt(default_factory=status))])
    scope_spans = S("ScopeSpans", [("spans", list[span], opt(default_factory=list))])
    resource_spans = S("ResourceSpans", [("scopeSpans", list[scope_spans], opt(default_factory=list))])
    traces = S("Traces", [("resourceSpans", list[resource_spans], opt(default_factory=list))])
    return (msgspec.json.Decoder(list[base_event]), msgspec.json.Decoder(list[hub_event]),
            msgspec.json.Decoder(traces))


def warm_chdb(path: str) -> float:
    """The embedded engine's first insert in a process costs ~2 s here (measured: 20k rows 2.5 s
    cold, 0.03 s warm), once. The floor and the hub both pay it before their first message, on a
    scratch database, so a short run measures throughput rather than that. Returns its seconds."""
    import clickhouse_connect

    return warm_store(clickhouse_connect.get_client(dsn=f"chdb://{path}"))


def warm_store(client: Any) -> float:
    """warm_chdb's scratch work on any clickhouse-connect client (closed after); also done once on
    the HTTP server, before the first run against it. Returns its seconds."""
    t0 = time.perf_counter()
    try:
        client.command("CREATE DATABASE IF NOT EXISTS peers_warmup")
        client.command("CREATE TABLE peers_warmup.raw (id String, ts DateTime64(3, 'UTC'), "
                       "model LowCardinality(String), x Float64) ENGINE = MergeTree ORDER BY (model, ts)")
        client.command("CREATE TABLE peers_warmup.agg (model LowCardinality(String), minute DateTime('UTC'), "
                       "q AggregateFunction(quantiles(0.5), Float64)) "
                       "ENGINE = AggregatingMergeTree ORDER BY (model, minute)")
        client.command("CREATE MATERIALIZED VIEW peers_warmup.mv TO peers_warmup.agg AS SELECT model, "
                       "toStartOfMinute(ts) AS minute, quantilesState(0.5)(x) AS q FROM peers_warmup.raw "
                       "GROUP BY model, minute")
        client.insert("peers_warmup.raw", [["w"], [0], ["m"], [1.0]], column_names=["id", "ts", "model", "x"],
                      column_type_names=["String", "DateTime64(3, 'UTC')", "LowCardinality(String)", "Float64"],
                      column_oriented=True)
        client.command("DROP DATABASE peers_warmup SYNC")
    finally:
        client.close()
    return time.perf_counter() - t0


class FloorColumns:
    """Columns of raw rows, appended per decoded record (DateTime64 as epoch-ms ticks)."""

    def __init__(self) -> None:
        self.cols: list[list[Any]] = [[] for _ in FLOOR_COLUMNS]

    def add_base(self, events: list[Any]) -> None:
        ids, ts, model, team, lat, inp, out, err = self.cols
        for e in events:
            d = e.data
            ids.append(e.eventId)
            ts.append(int(e.timestamp.timestamp() * 1000))
            model.append(d.model)
            team.append(e.metadata.team)
            lat.append(d.latencyMs)
            inp.append(d.inputTokens)
            out.append(d.outputTokens)
            err.append(d.isError)

    def add_hub(self, events: list[Any]) -> None:
        ids, ts, model, team, lat, inp, out, err = self.cols
        for e in events:
            p = e.payload
            ids.append(e.event_id)
            ts.append(e.event_time)
            model.append(p.model)
            team.append(e.tags.team)
            lat.append(p.latency_ms)
            inp.append(p.input_tokens)
            out.append(p.output_tokens)
            err.append(p.is_error)

    def add_otlp(self, traces: Any) -> int:
        ids, ts, model, team, lat, inp, out, err = self.cols
        n = 0
        for rs in traces.resourceSpans:
            for ss in rs.scopeSpans:
                for s in ss.spans:
                    attrs = {a.key: a.value for a in s.attributes}
                    m = attrs.get("gen_ai.request.model")
                    if m is None or m.stringValue is None:
                        continue  # not an LLM call
                    start = int(s.startTimeUnixNano)
                    ids.append(s.spanId)
                    ts.append(start // 1_000_000)
                    model.append(m.stringValue)
                    t = attrs.get("team")
                    team.append(t.stringValue or "" if t is not None else "")
                    lat.append((int(s.endTimeUnixNano) - start) / 1e6)
                    i, o = attrs.get("gen_ai.usage.input_tokens"), attrs.get("gen_ai.usage.output_tokens")
                    inp.append(int(i.intValue or 0) if i is not None else 0)
                    out.append(int(o.intValue or 0) if o is not None else 0)
                    err.append(s.status.code == 2)
                    n += 1
        return n


def floor_worker(args: argparse.Namespace) -> dict[str, Any]:
    """The serial loop: consume(20000) -> typed decode -> columnar insert (MV does the rest) -> commit."""
    import clickhouse_connect
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    warm_s = warm_chdb(args.store)
    client = clickhouse_connect.get_client(dsn=f"chdb://{args.store}")
    for ddl in FLOOR_DDL:
        client.command(ddl)
    base_dec, hub_dec, otlp_dec = floor_decoders()
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"peers-floor-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": "false", "queued.min.messages": "200000", "log_level": "0"})
    meta = c.list_topics(args.topic, timeout=10).topics[args.topic]
    parts = sorted(meta.partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)[1] for p in parts}
    pending = {p for p in parts if ends[p] > 0}
    c.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in parts])
    events = 0
    first: float | None = None
    while pending:
        msgs = c.consume(CONSUME_BATCH, timeout=1.0)
        if not msgs:
            continue
        if first is None:
            first = time.perf_counter()
        cols = FloorColumns()
        base: list[bytes] = []
        hub: list[bytes] = []
        last: dict[int, int] = {}
        for m in msgs:
            if m.error() is not None:
                continue
            v = m.value()
            last[m.partition()] = m.offset()
            if v.startswith(b'{"resourceSpans"'):
                events += cols.add_otlp(otlp_dec.decode(v))
            elif v.startswith(b'{"eventId"'):
                base.append(v)
            else:
                hub.append(v)
        if base:  # one decode call per batch: b"[" + join + b"]"
            decoded = base_dec.decode(b"[" + b",".join(base) + b"]")
            cols.add_base(decoded)
            events += len(decoded)
        if hub:
            decoded = hub_dec.decode(b"[" + b",".join(hub) + b"]")
            cols.add_hub(decoded)
            events += len(decoded)
        if cols.cols[0]:
            client.insert("raw", cols.cols, column_names=list(FLOOR_COLUMNS), column_type_names=list(FLOOR_TYPES),
                          column_oriented=True)
        c.commit(offsets=[TopicPartition(args.topic, p, o + 1) for p, o in last.items()], asynchronous=False)
        for p, o in last.items():
            if o + 1 >= ends[p]:
                pending.discard(p)
    done = time.perf_counter()
    c.close()
    stored = client.query("SELECT countMerge(n) FROM per_minute").result_rows[0][0]
    client.close()
    return {"events": events, "seconds": done - (first or done),
            "check": f"{stored:,} events in the per-minute view; engine warm-up {warm_s:.1f}s before"}


# --- Quix Streams (runs as `peers.py --worker quix`, in .bench/quix-venv) -------------------------


def quix_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Per-model 1-minute event-time tumbling windows, no sink; stops at the expected event count."""
    import logging

    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Mean, Sum

    expect = args.expect_events
    state: dict[str, Any] = {"first": None, "last": None, "seen": 0, "late": 0, "windows": 0}
    app = Application(broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
                      state_dir=args.store, loglevel=logging.WARNING)

    def first_seen(value: Any) -> None:
        if state["first"] is None:
            state["first"] = time.perf_counter()

    def counted(value: Any) -> None:
        state["seen"] += 1
        state["last"] = time.perf_counter()  # if fewer than expected come, done is the last one, not the idle stop
        if state["seen"] >= expect:
            app.stop()

    def late(*_: Any) -> bool:
        state["late"] += 1
        return False  # counted, not logged per message

    def closed(value: Any) -> None:
        state["windows"] += 1

    def ts_of(value: Any, _headers: Any, timestamp: int, _type: Any) -> int:
        if "eventId" in value:
            return int(datetime.fromisoformat(value["timestamp"]).timestamp() * 1000)
        if "event_id" in value:
            return int(value["event_time"])
        return timestamp

    def explode(value: dict[str, Any]) -> list[dict[str, Any]]:
        """One record per LLM call, whatever the envelope."""
        if "eventId" in value:
            d = value["data"]
            return [{"model": d["model"], "ts": int(datetime.fromisoformat(value["timestamp"]).timestamp() * 1000),
                     "latency_ms": d["latencyMs"], "tokens": d["inputTokens"] + d["outputTokens"]}]
        if "event_id" in value:
            p = value["payload"]
            return [{"model": p["model"], "ts": int(value["event_time"]), "latency_ms": p["latency_ms"],
                     "tokens": p["input_tokens"] + p["output_tokens"]}]
        out = []
        for rs in value["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    a = {kv["key"]: kv["value"] for kv in s["attributes"]}
                    if "gen_ai.request.model" not in a:
                        continue
                    start = int(s["startTimeUnixNano"])
                    out.append({"model": a["gen_ai.request.model"]["stringValue"], "ts": start // 1_000_000,
                                "latency_ms": (int(s["endTimeUnixNano"]) - start) / 1e6,
                                "tokens": int(a["gen_ai.usage.input_tokens"]["intValue"])
                                + int(a["gen_ai.usage.output_tokens"]["intValue"])})
        return out

    topic = app.topic(args.topic, value_deserializer="json", timestamp_extractor=ts_of)
    sdf = app.dataframe(topic)
    sdf = sdf.update(first_seen)
    if args.format in ("base", "hub"):
        # Already keyed by model: window directly, as a Quix user would.
        sdf = sdf.apply(lambda v: explode(v)[0])
    else:
        # OTLP batches are keyed by service: one record per call, re-keyed by model through Kafka.
        sdf = sdf.apply(explode, expand=True)
        sdf = sdf.set_timestamp(lambda value, _key, _ts, _headers: value["ts"])
        sdf = sdf.group_by("model")
    sdf = sdf.update(counted)
    sdf = sdf.tumbling_window(timedelta(minutes=1), grace_ms=timedelta(seconds=60), on_late=late)
    sdf = sdf.agg(count=Count(), latency_ms=Mean("latency_ms"), tokens=Sum("tokens")).final()
    sdf = sdf.update(closed)
    app.run(timeout=args.idle_timeout, collect=False)
    if state["first"] is None:
        raise BenchError("Quix Streams read no message")
    done = state["last"] or time.perf_counter()
    return {"events": state["seen"], "seconds": done - state["first"],
            "check": f"{state['windows']:,} windows closed, {state['late']:,} late"}


# --- the hub (runs as `peers.py --worker hub -- HUB ARGS`, in the project's environment) --------------


def hub_worker(args: argparse.Namespace, hub_args: list[str]) -> dict[str, Any]:
    """`hub run` in this process, timed from the first Kafka batch to the end of the dataflow.

    `hub run` prints its own time from the start of the dataflow (Bytewax setup included) and
    then runs summary queries; timing from the first batch to the end of `cli_main` instead
    measures the hub exactly as the other two are measured. Marks are also returned on the wall
    clock (`first_at`, `done_at`), so the parent can time a cluster from its first message to
    its last process done.

    `--tail` (the latency mode; `hub run` without --until-end): the ready file is created when
    the source first polls Kafka (the parent starts producing then), and the run is stopped as
    Ctrl-C would stop it (connectors.shutdown: the flow drains and flushes) once
    --expect-events events went through, or none came for --idle-timeout seconds. The latencies
    are the ones the ClickHouse writer samples for hub_end_to_end_latency_seconds
    (worker_metrics.LATENCY_SAMPLE: insert returned - broker timestamp, 1 message in 64).
    """
    sys.path.insert(0, str(ROOT))
    import bytewax.run

    from connectors import kafka_source, shutdown, worker_metrics
    from flows.cli import main

    marks: dict[str, float] = {}
    # If the reader is renamed, time from the start of the dataflow instead (and say so).
    reader = getattr(kafka_source, "_PartitionReader", None)
    next_batch = getattr(reader, "next_batch", None)

    def timed_next_batch(self: Any) -> Any:
        if args.tail and "polling" not in marks:
            marks["polling"] = time.perf_counter()
            if args.ready_file:  # --tail: the parent starts producing now
                Path(args.ready_file).touch()
        out = next_batch(self)
        if "first" not in marks and any(getattr(b, "messages", None) for b in out):
            marks["first"] = time.perf_counter()
            if args.ready_file and not args.tail:  # --profile: the parent attaches py-spy now
                Path(args.ready_file).touch()
        return out

    def stop_when_all_seen() -> None:
        last, since = -1.0, time.monotonic()
        while not shutdown.requested.is_set():
            n = worker_metrics.total(worker_metrics.EVENTS)
            if n >= args.expect_events:
                break
            if n != last:
                last, since = n, time.monotonic()
            elif n > 0 and time.monotonic() - since > args.idle_timeout:
                break
            time.sleep(0.05)
        shutdown.requested.set()

    if reader is not None and next_batch is not None:
        reader.next_batch = timed_next_batch  # type: ignore[method-assign]
    cli_main = bytewax.run.cli_main

    def timed_cli_main(*a: Any, **kw: Any) -> Any:
        marks["start"] = time.perf_counter()
        if args.tail:  # started here: `hub run` clears any stop request just before
            threading.Thread(target=stop_when_all_seen, name="peers-tail-stop", daemon=True).start()
        try:
            return cli_main(*a, **kw)
        finally:
            marks["done"] = time.perf_counter()
            if args.ready_file:  # --profile: the parent stops py-spy now
                Path(args.ready_file + ".done").touch()

    bytewax.run.cli_main = timed_cli_main
    store = hub_args[hub_args.index("--clickhouse") + 1]
    warmed = (f"engine warm-up {warm_chdb(store[len('chdb://'):]):.1f}s" if store.startswith("chdb://") else
              "server warmed by the bench")
    rc = main(hub_args)
    if rc != 0:
        raise BenchError(f"hub run exited with {rc}")
    if "done" not in marks:
        raise BenchError("hub run ended before its dataflow ran")
    events = int(worker_metrics.total(worker_metrics.EVENTS))
    dead = int(worker_metrics.total(worker_metrics.DEAD_LETTERS))
    late = int(worker_metrics.total(worker_metrics.LATE))
    start = marks.get("first", marks["start"])
    since = (f"dataflow start to first batch {start - marks['start']:.2f}s before" if "first" in marks else
             "timed from the dataflow's start (connectors.kafka_source._PartitionReader not found)")
    wall = time.time() - time.perf_counter()
    got: dict[str, Any] = {
        "events": events, "seconds": marks["done"] - start, "dead_letters": dead, "late": late,
        "first_at": marks["first"] + wall if "first" in marks else None, "done_at": marks["done"] + wall,
        "check": f"{dead:,} dead letters, {late:,} late; {warmed} and {since}"}
    if args.tail:
        import numpy as np

        sample = worker_metrics.LATENCY_SAMPLE.all()
        if not len(sample):
            raise BenchError("the ClickHouse writer sampled no latency (no event was stored?)")
        got["latency"] = {"samples": int(len(sample)), "p50_ms": float(np.percentile(sample, 50)),
                          "p99_ms": float(np.percentile(sample, 99)), "max_ms": float(sample.max())}
    return got


# --- running each system in its own process ----------------------------------------------------------


@dataclass
class Result:
    """One system's run, as the table and the JSON show it."""

    system: str
    run: int
    ok: bool
    events: int = 0
    seconds: float = 0.0
    events_per_s: float = 0.0
    peak_rss_mb: float = 0.0  # a cluster: its largest process's
    check: str = ""
    note: str = ""
    partitions: int = 0
    processes: int = 1
    rss_per_process_mb: list[float] = field(default_factory=list)
    latency: dict[str, Any] | None = None  # the latency mode: samples, p50_ms, p99_ms, max_ms, offered/achieved


@dataclass
class Bench:
    """Everything a run needs: where the broker is, the topic, scratch space, the Quix venv."""

    bootstrap: str
    topic: TopicInfo  # the one the next run reads (set per topic with --partitions 1,2,4)
    work: Path
    timeout_s: float
    quix_python: Path | None
    log_dir: Path
    run_id: str  # in every topic and group name this bench makes, so it removes only its own
    spy: Path | None = None
    notes: list[str] = field(default_factory=list)
    children: set[int] = field(default_factory=set)
    clickhouse_url: str = ""  # the ClickHouse HTTP server the hub-http and hub-xN runs write to


HUB_SYSTEM = re.compile(r"hub(?:-(http)|-x(\d+))?")


def hub_processes(system: str) -> int | None:
    """`hub`: 0 (one process, embedded store); `hub-http`: 1 (one process on the HTTP server);
    `hub-xN`: N processes of one Bytewax cluster on the HTTP server; None: not the hub."""
    m = HUB_SYSTEM.fullmatch(system)
    if m is None:
        return None
    return 1 if m.group(1) else int(m.group(2)) if m.group(2) else 0


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def label(system: str) -> str:
    """The row name: `hub x2`, `hub http`."""
    return system.replace("-", " ") if hub_processes(system) else system


@dataclass
class Tail:
    """The latency mode: produce at `rate` events/s once the hub polls the (empty) topic."""

    rate: float
    seed: int
    produced: TopicInfo | None = None
    error: str = ""
    stop: threading.Event = field(default_factory=threading.Event)  # set when the hub's run is over


def run_children(bench: Bench, children: list[tuple[list[str], dict[str, str] | None, Path]],
                 profile: tuple[Path, Path] | None = None) -> list[tuple[int, float, bool]]:
    """Run each (argv, env, log) in its own process, all at once (a cluster's processes); returns
    per child (exit code, peak RSS in MB from wait4, timed out). When one fails or the time is up,
    the others are killed: a cluster's process waits for its peers forever. Linux keeps a
    process's high-water mark across exec, so ru_maxrss is at least the bench's own RSS when it
    spawned the child (~50 MB here, with the producer and the migration imports): below every
    system's real figure.

    With `profile` = (ready file, output) (one child), py-spy attaches when the child creates
    the ready file (its first Kafka batch) and is stopped with SIGINT when it creates READY.done
    (end of the dataflow), so the profile holds the measured stretch only: no imports, warm-up
    or summary.
    """
    procs: list[subprocess.Popen[bytes]] = []
    for argv, env, log in children:
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})}, start_new_session=True)
        bench.children.add(proc.pid)
        procs.append(proc)
    deadline = time.monotonic() + bench.timeout_s
    done: dict[int, tuple[int, float, bool]] = {}
    killed = False
    spy: subprocess.Popen[bytes] | None = None
    spy_stopped = False
    while len(done) < len(procs):
        for i, proc in enumerate(procs):
            if i in done:
                continue
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                bench.children.discard(proc.pid)
                proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
                done[i] = (proc.returncode, usage.ru_maxrss / 1024.0, killed)
        failed = any(code != 0 for code, _, _ in done.values())
        if (time.monotonic() > deadline or failed) and not killed:
            killed = True
            for i, proc in enumerate(procs):
                if i not in done:  # its own session: the child and anything it started
                    os.killpg(proc.pid, signal.SIGKILL)
        if profile is not None and bench.spy is not None:
            ready, raw = profile
            if spy is None and ready.exists():
                with open(children[0][2].with_suffix(".py-spy.log"), "wb") as spy_log:
                    spy = subprocess.Popen([str(bench.spy), "record", "--pid", str(procs[0].pid), "--rate", "100",
                                            "--format", "raw", "--threads", "-o", str(raw)],
                                           stdout=spy_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
                bench.children.add(spy.pid)
            elif spy is not None and not spy_stopped and Path(f"{ready}.done").exists():
                spy.send_signal(signal.SIGINT)  # py-spy writes its output and exits
                spy_stopped = True
        time.sleep(0.05 if profile else 0.1)
    if spy is not None:
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(spy.pid, signal.SIGKILL)
            spy.wait()
        bench.children.discard(spy.pid)
    return [done[i] for i in range(len(procs))]


def _produce_when_polled(bench: Bench, tail: Tail, ready: Path) -> None:
    """The latency mode's producer (a thread of the bench process): waits until the hub polls
    the topic, then fills it at the offered rate. On failure, stops the hub's run."""
    while not ready.exists():
        if tail.stop.wait(0.05):
            tail.error = "the hub ended before it polled the topic"
            return
    t = bench.topic
    try:
        tail.produced = produce_topic(bench.bootstrap, t.name, t.events, t.partitions, t.fmt, tail.seed,
                                      rate=tail.rate, create=False)
    except Exception as exc:  # noqa: BLE001 - reported as the run's failure
        tail.error = f"producing at {tail.rate:,.0f} events/s failed: {exc}"
        for pid in list(bench.children):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _http_database(bench: Bench, database: str, drop: bool = False) -> None:
    """A fresh database on the HTTP server, migrated once up front (so a cluster's processes
    don't race to create the tables: `hub run --no-migrate`), or dropped after the run."""
    from config.settings import ClickHouseSettings, RetentionSettings
    from connectors.clickhouse import connect
    from connectors.migrations import migrate

    client = connect(ClickHouseSettings(dsn=bench.clickhouse_url, database="default" if drop else database))
    try:
        if drop:
            client.command(f"DROP DATABASE IF EXISTS `{database}` SYNC")
        else:
            migrate(client, RetentionSettings())
    finally:
        client.close()


def run_system(bench: Bench, system: str, run: int, profile_out: Path | None = None,
               tail: Tail | None = None) -> Result:
    """One measured run of `system` on the topic, in a fresh store (for the HTTP server: a fresh
    database), with a fresh consumer group. `tail`: the hub tails the topic while it is produced."""
    tag = f"{system}-{run}-{bench.run_id}-{uuid.uuid4().hex[:4]}"
    store = bench.work / tag
    procs = hub_processes(system)
    n = max(procs or 1, 1)
    names = [tag] if n == 1 else [f"{tag}-p{i}" for i in range(n)]
    results = [bench.work / f"{name}.json" for name in names]
    logs = [bench.log_dir / f"{name}.log" for name in names]

    def common(i: int) -> list[str]:
        return ["--bootstrap", bench.bootstrap, "--topic", bench.topic.name, "--format", bench.topic.fmt,
                "--store", str(store), "--result", str(results[i])]

    env: dict[str, str] | None = None
    ready: Path | None = None
    database = ""
    if system == "floor":
        argvs = [[sys.executable, __file__, "--worker", "floor", *common(0)]]
    elif system == "quix":
        assert bench.quix_python is not None
        argvs = [[str(bench.quix_python), __file__, "--worker", "quix", *common(0), "--group", f"peers-quix-{tag}",
                  "--expect-events", str(bench.topic.events)]]
    else:
        run_id = tag.replace("-", "")
        env = {"HUB_KAFKA__BOOTSTRAP_SERVERS": bench.bootstrap, "HUB_KAFKA__GROUP_ID": f"peers-hub-{run_id}",
               "HUB_METRICS__PORT": "0", "HUB_KAFKA__TOPICS__TELEMETRY": bench.topic.name,
               **{f"HUB_KAFKA__TOPICS__{s.upper()}": f"peers-{run_id}.{s}"
                  for s in ("security", "cost", "governance", "registry", "policy", "dead_letter", "alerts")}}
        hub_args = ["run", *([] if tail else ["--until-end"])]
        if procs:
            database = f"peers_{run_id}"
            env["HUB_CLICKHOUSE__DATABASE"] = database
            _http_database(bench, database)
            hub_args += ["--no-migrate", "--clickhouse", bench.clickhouse_url]
        else:
            hub_args += ["--clickhouse", f"chdb://{store}"]
        from ports import free_port

        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(n))
        cluster = [["--process-id", str(i), "--addresses", addresses] if n > 1 else [] for i in range(n)]
        ready = bench.work / f"{tag}.ready" if profile_out is not None or tail is not None else None
        worker = ["--ready-file", str(ready)] if ready else []
        if tail is not None:
            worker += ["--tail", "--expect-events", str(bench.topic.events)]
        argvs = [[sys.executable, __file__, "--worker", "hub", *common(i), *worker, "--", *hub_args, *cluster[i]]
                 for i in range(n)]
    profile = (ready, profile_out) if ready is not None and profile_out is not None else None
    producer = None
    if tail is not None and ready is not None:
        producer = threading.Thread(target=_produce_when_polled, args=(bench, tail, ready), daemon=True)
    try:
        if producer is not None:
            producer.start()
        outcome = run_children(bench, [(argv, env, log) for argv, log in zip(argvs, logs)], profile)
        if tail is not None:
            tail.stop.set()
            if producer is not None:
                producer.join(bench.timeout_s)
        why = [tail.error] if tail is not None and tail.error else []
        why += [f"exit code {code}: {_last_line(log)} (log {log})" for (code, _, timed_out), result_file, log
                in zip(outcome, results, logs) if not timed_out and (code != 0 or not result_file.is_file())]
        why += [f"killed after {bench.timeout_s:.0f}s, or when a peer failed (log {log})"
                for (_, _, timed_out), log in zip(outcome, logs) if timed_out]
        if why:
            return Result(system, run, False, partitions=bench.topic.partitions, processes=n, note=why[0])
        got = [json.loads(f.read_text()) for f in results]
        rss = [r for _, r, _ in outcome]
        events = sum(g["events"] for g in got)
        if n == 1:
            seconds, check = got[0]["seconds"], got[0]["check"]
        else:  # the cluster's first message to its last process done
            firsts = [g["first_at"] for g in got if g["first_at"] is not None]
            seconds = max(g["done_at"] for g in got) - min(firsts or [g["done_at"] for g in got])
            shares = " + ".join(format(g["events"], ",") for g in got)
            peaks = ", ".join(format(r, ",.0f") for r in rss)
            check = (f"{n} processes: {shares} events, peak RSS {peaks} MB; "
                     f"{sum(g['dead_letters'] for g in got):,} dead letters, {sum(g['late'] for g in got):,} late")
        res = Result(system, run, True, events=events, seconds=seconds, events_per_s=events / max(seconds, 1e-9),
                     peak_rss_mb=max(rss), check=check, partitions=bench.topic.partitions, processes=n,
                     rss_per_process_mb=rss)
        if tail is not None and tail.produced is not None:
            res.latency = {**got[0]["latency"], "offered_per_s": tail.rate,
                           "achieved_per_s": tail.produced.events / max(tail.produced.produce_s, 1e-9)}
        if res.events != bench.topic.events:
            res.note = f"saw {res.events:,} of {bench.topic.events:,} events"
        return res
    finally:
        shutil.rmtree(store, ignore_errors=True)
        for f in results:
            f.unlink(missing_ok=True)
        if ready is not None:
            ready.unlink(missing_ok=True)
            Path(f"{ready}.done").unlink(missing_ok=True)
        if database:
            try:
                _http_database(bench, database, drop=True)
            except Exception as exc:  # noqa: BLE001 - a database left behind is only disk space
                print(f"peers: note: could not drop {database}: {exc}", file=sys.stderr)


def _last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no output"
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errors or lines or ["no output"])[-1].strip()[:300]


# --- the Quix virtualenv and py-spy -------------------------------------------------------------------


def _venv_python() -> Path:
    return QUIX_VENV / "bin" / "python"


def _pip_install(packages: list[str]) -> None:
    """Into .bench/quix-venv, with uv when present (as the project installs), else venv + pip."""
    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / ".gitignore").write_text("*\n")  # scratch space: never committed
    uv = shutil.which("uv")
    if not _venv_python().is_file():
        cmd = [uv, "venv", "-q", str(QUIX_VENV), "--python", sys.executable] if uv else \
            [sys.executable, "-m", "venv", str(QUIX_VENV)]
        _run_quiet(cmd, "create the virtualenv")
    cmd = [uv, "pip", "install", "-q", "--python", str(_venv_python()), *packages] if uv else \
        [str(_venv_python()), "-m", "pip", "install", "-q", *packages]
    _run_quiet(cmd, f"install {' '.join(packages)}")


def _run_quiet(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr + res.stdout).splitlines() if ln.strip()]
        why = lines[-1].strip() if lines else f"exit code {res.returncode}"
        raise BenchError(f"could not {what} in {QUIX_VENV}: {why}")


def ensure_quix(version: str) -> Path:
    """The Quix venv's python with quixstreams==version, installed on first use."""
    probe = [str(_venv_python()), "-c", "import quixstreams; print(quixstreams.__version__)"]
    if _venv_python().is_file():
        res = subprocess.run(probe, capture_output=True, text=True)
        if res.returncode == 0 and res.stdout.strip() == version:
            return _venv_python()
    print(f"installing quixstreams=={version} into {QUIX_VENV} ...", flush=True)
    _pip_install([f"quixstreams=={version}"])
    res = subprocess.run(probe, capture_output=True, text=True)
    if res.returncode != 0:
        why = (res.stderr.strip().splitlines() or ["?"])[-1]
        raise BenchError(f"quixstreams does not import in {QUIX_VENV}: {why}")
    if res.stdout.strip() != version:
        raise BenchError(f"{QUIX_VENV} has quixstreams {res.stdout.strip()}, not {version}")
    return _venv_python()


def ensure_py_spy() -> Path:
    """py-spy from PyPI into the bench venv (a binary wheel; it profiles any Python process)."""
    spy = QUIX_VENV / "bin" / "py-spy"
    if not spy.is_file():
        print(f"installing py-spy into {QUIX_VENV} ...", flush=True)
        _pip_install(["py-spy"])
    if not spy.is_file():
        raise BenchError(f"py-spy is not in {spy.parent} after installing it")
    return spy


# Leaf frames that are a thread blocked, not working (py-spy cannot always tell from outside).
WAITING = ("Condition.wait (", "Event.wait (", "Thread.join (", "Queue.get (", "_wait_for_tstate_lock (", "sleep (")
# Bytewax's runtime is Rust: its own work shows as the Python frame that called it.
BYTEWAX = "hub_worker.<locals>.timed_cli_main ("


def top_functions(raw: Path, n: int = 25) -> tuple[int, int, list[tuple[str, int]], dict[str, int]]:
    """py-spy's raw (collapsed) stacks -> (samples, waiting samples, top functions by self samples
    while working, working samples per thread).

    A line is `thread;frame;...;leaf COUNT`; a frame is `function (file:line)`. Line numbers are
    dropped so a function's samples add up wherever in it they fell.
    """
    self_time: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = waiting = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = stack.split(";")
        leaf = re.sub(r":\d+\)$", ")", frames[-1])
        if leaf.startswith(WAITING):
            waiting += k
            continue
        if leaf.startswith(BYTEWAX):
            leaf = "Bytewax runtime (Rust: scheduling, state, its own operators)"
        threads[frames[0]] = threads.get(frames[0], 0) + k
        self_time[leaf] = self_time.get(leaf, 0) + k
    return total, waiting, sorted(self_time.items(), key=lambda kv: -kv[1])[:n], threads


# --- the report ---------------------------------------------------------------------------------------


def medians(results: list[Result]) -> list[dict[str, Any]]:
    """Per (partitions, system), in the order they ran: medians of the successful runs."""
    groups: dict[tuple[int, str], list[Result]] = {}
    for r in results:
        if r.ok:
            groups.setdefault((r.partitions, r.system), []).append(r)
    out = []
    for (parts, system), ok in groups.items():
        out.append({"system": system, "partitions": parts, "processes": ok[0].processes, "runs": len(ok),
                    "events_per_s": statistics.median(r.events_per_s for r in ok),
                    "seconds": statistics.median(r.seconds for r in ok),
                    "peak_rss_mb": statistics.median(r.peak_rss_mb for r in ok),
                    "peak_rss_per_process_mb": [statistics.median(r.rss_per_process_mb[i] for r in ok)
                                                for i in range(ok[0].processes)],
                    "events": ok[0].events})
    return out


def ratios(med: list[dict[str, Any]]) -> dict[int, float]:
    """partitions -> the single-process embedded hub's events/s over the floor's, on that topic."""
    by = {(m["partitions"], m["system"]): m["events_per_s"] for m in med}
    return {p: by[p, "hub"] / by[p, "floor"] for p, s in by if s == "hub" and (p, "floor") in by}


def table(med: list[dict[str, Any]], runs: int) -> str:
    floors = {m["partitions"]: m["events_per_s"] for m in med if m["system"] == "floor"}
    many_parts = len({m["partitions"] for m in med}) > 1
    cluster = [m for m in med if m["processes"] > 1]
    parts = f" {'parts':>5}" if many_parts else ""
    lines = [f"{'system':<9}{parts} {'events':>10} {'seconds':>9} {'events/s':>10} {'peak RSS MB':>12} {'vs floor':>9}"]
    for m in med:
        floor = floors.get(m["partitions"])
        ratio = f"{m['events_per_s'] / floor:.2f}" if floor else "-"
        rss = f"{m['peak_rss_mb']:,.0f}{'*' if m['processes'] > 1 else ''}"
        col = f" {m['partitions']:>5}" if many_parts else ""
        lines.append(f"{label(m['system']):<9}{col} {m['events']:>10,} "
                     f"{m['seconds']:>9.2f} {m['events_per_s']:>10,.0f} {rss:>12} {ratio:>9}")
    for m in cluster:
        on = f" on {plural(m['partitions'], 'partition')}" if many_parts else ""
        lines.append(f"* {label(m['system'])}{on}: the largest of its processes' peaks ("
                     f"{', '.join(format(r, ',.0f') for r in m['peak_rss_per_process_mb'])} MB); "
                     f"{m['events_per_s'] / m['processes']:,.0f} events/s per process (all / {m['processes']}); "
                     "timed from the cluster's first message to its last process done")
    return "\n".join(lines) + (f"\n(medians of {runs} runs)" if runs > 1 else "")


def latency_table(results: list[Result]) -> str:
    lines = ["latency: broker timestamp -> the insert holding the event returned (queryable), 1 message in 64",
             f"{'system':<9} {'parts':>5} {'offered/s':>10} {'achieved/s':>11} {'events':>9} {'samples':>8} "
             f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    for r in results:
        if r.ok and r.latency:
            lat = r.latency
            lines.append(f"{label(r.system):<9} {r.partitions:>5} {lat['offered_per_s']:>10,.0f} "
                         f"{lat['achieved_per_s']:>11,.0f} {r.events:>9,} {lat['samples']:>8,} {lat['p50_ms']:>8,.0f} "
                         f"{lat['p99_ms']:>8,.0f} {lat['max_ms']:>8,.0f}")
        else:
            lines.append(f"{label(r.system):<9} {r.partitions:>5} FAILED: {r.note}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Stated beside every figure: the same command gives other numbers elsewhere."""
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_at_start": list(os.getloadavg()),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser(prog="bench/peers.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the topic (default 1,000,000)")
    ap.add_argument("--partitions", default="4", help="partitions of the topic (default 4); a list (1,2,4) makes one "
                    "topic per count and runs the systems on each, one table")
    ap.add_argument("--format", choices=FORMATS, default="base", help="wire format of the topic (default base)")
    ap.add_argument("--runs", type=int, default=1, help="runs of each system; medians are reported (default 1)")
    ap.add_argument("--only", default=",".join(SYSTEMS), help="systems to run, comma-separated (default: "
                    "floor,quix,hub; also hub-http, hub-xN)")
    ap.add_argument("--hub-processes", metavar="N[,N]", help="also run the hub as N processes of one Bytewax cluster on "
                    "a local ClickHouse HTTP server (row `hub xN`), and as one process on it (row `hub http`)")
    ap.add_argument("--latency", action="store_true", help="also measure the hub's latency (broker timestamp -> "
                    "queryable) on a topic produced at a fixed rate while it tails it")
    ap.add_argument("--latency-rate", type=float, metavar="R", help="events/s offered in the latency run (implies "
                    "--latency; default: half the hub's measured events/s in this run)")
    ap.add_argument("--latency-events", type=int, metavar="N", help="events in the latency run (default --events)")
    ap.add_argument("--bootstrap", help="use this Kafka broker instead of starting one")
    ap.add_argument("--quix-version", default=QUIX_VERSION, help=f"quixstreams version (default {QUIX_VERSION})")
    ap.add_argument("--seed", type=int, default=18, help="seed of the generated events (default 18)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON here")
    ap.add_argument("--profile", action="store_true",
                    help="also run the hub once under py-spy and print its top functions by self time")
    ap.add_argument("--profile-out", metavar="FILE",
                    help="py-spy's raw stacks go here (default .bench/hub-profile-RUNID.txt)")
    ap.add_argument("--timeout", type=float, help="seconds before a run is killed (default 300 + 1 s per 1,000 events)")
    ap.add_argument("--keep-logs", metavar="DIR", help="keep each run's output here (default: removed unless a run "
                    "fails)")
    # Internal: one system's run, in its own process.
    ap.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    for name in ("--topic", "--store", "--result", "--group", "--ready-file"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--expect-events", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--tail", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--idle-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    return ap.parse_args(argv), rest


def worker_main(args: argparse.Namespace, rest: list[str]) -> int:
    """Inside a child process: run one system, write its result as JSON."""
    try:
        if args.worker == "floor":
            sys.path.insert(0, str(ROOT))
            got = floor_worker(args)
        elif args.worker == "quix":
            got = quix_worker(args)
        else:
            got = hub_worker(args, rest)
    except BenchError as exc:
        print(f"peers {args.worker}: {exc}", file=sys.stderr)
        return 1
    Path(args.result).write_text(json.dumps(got))
    return 0


def main(argv: list[str] | None = None) -> int:
    args, rest = parse_args(argv)
    if args.worker:
        return worker_main(args, rest)
    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS and s != "hub-http" and (hub_processes(s) or 0) < 2]
    if unknown or not systems:
        print(f"peers: --only {args.only}: choose from {', '.join(SYSTEMS)}, hub-http, hub-xN", file=sys.stderr)
        return 2
    try:
        partitions = [int(p) for p in args.partitions.split(",")]
        cluster = [int(n) for n in args.hub_processes.split(",")] if args.hub_processes else []
    except ValueError:
        print("peers: --partitions and --hub-processes take a number or a comma-separated list", file=sys.stderr)
        return 2
    for n in cluster:  # `hub http` (one process on the same server) beside any cluster: a fair comparison
        for system in ("hub-http", f"hub-x{n}") if n > 1 else ("hub-http",):
            if system not in systems:
                systems.append(system)
    args.latency = args.latency or args.latency_rate is not None
    if (args.events <= 0 or args.runs <= 0 or min(partitions) <= 0 or min(cluster, default=1) <= 0
            or (args.latency_rate or 1) <= 0 or (args.latency_events or 1) <= 0):
        print("peers: --events, --partitions, --runs, --hub-processes and --latency-* must be > 0", file=sys.stderr)
        return 2
    if len(set(partitions)) != len(partitions):
        print(f"peers: --partitions {args.partitions}: a count twice", file=sys.stderr)
        return 2
    args.partitions = partitions
    try:
        return _bench(args, systems)
    except BenchError as exc:
        print(f"peers: {exc}", file=sys.stderr)
        return 1


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: children, broker, temp dirs


def _bench(args: argparse.Namespace, systems: list[str]) -> int:
    sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
    signal.signal(signal.SIGTERM, _interrupted)
    work = Path(tempfile.mkdtemp(prefix="hub-peers-"))
    log_dir = Path(args.keep_logs) if args.keep_logs else work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    broker = None
    server = None
    bench: Bench | None = None
    failed = False
    started = machine()
    try:
        notes: list[str] = []
        quix_python = None
        if "quix" in systems:
            try:
                quix_python = ensure_quix(args.quix_version)
            except BenchError as exc:
                notes.append(f"Quix Streams skipped: {exc}")
                print(f"peers: note: {notes[-1]}", file=sys.stderr)
                systems = [s for s in systems if s != "quix"]
        spy = None
        if args.profile:
            try:
                spy = ensure_py_spy()
            except BenchError as exc:
                notes.append(f"profile skipped: {exc}")
                print(f"peers: note: {notes[-1]}", file=sys.stderr)
        bootstrap = args.bootstrap or ""
        if bootstrap:
            _check_broker(bootstrap)
        else:
            import kafka_broker

            try:
                broker = kafka_broker.start(work / "kafka")
            except kafka_broker.BrokerError as exc:
                raise BenchError(f"the local Kafka broker did not start: {exc} "
                                 "(or pass --bootstrap HOST:PORT)") from None
            bootstrap = broker.bootstrap
        run_id = uuid.uuid4().hex[:8]
        topics: list[TopicInfo] = []
        for parts in args.partitions:
            name = f"peers.{args.format}.{run_id}" + (f".p{parts}" if len(args.partitions) > 1 else "")
            print(f"producing {args.events:,} {args.format} events into {name} ({parts} partitions) on "
                  f"{bootstrap} ...", flush=True)
            topic = produce_topic(bootstrap, name, args.events, parts, args.format, args.seed)
            print(f"produced {topic.messages:,} messages, {topic.bytes_per_message:,.0f} bytes each on average, in "
                  f"{topic.produce_s:.1f}s; per partition: {', '.join(f'{n:,}' for n in topic.per_partition)}",
                  flush=True)
            topics.append(topic)
        timeout = args.timeout or 300.0 + max(args.events, args.latency_events or 0) / 1000.0
        bench = Bench(bootstrap, topics[-1], work, timeout, quix_python, log_dir, run_id, notes=notes)
        lat_systems = [s for s in systems if hub_processes(s) in (0, 1)] or (["hub"] if args.latency_rate else [])
        if args.latency and not lat_systems:
            notes.append("latency skipped: it measures hub or hub-http; run one of them or give --latency-rate")
            print(f"peers: note: {notes[-1]}", file=sys.stderr)
        if any(hub_processes(s) for s in systems + (lat_systems if args.latency else [])):
            server = _start_clickhouse(work / "clickhouse")
            bench.clickhouse_url = server.url
        results: list[Result] = []
        for run in range(1, args.runs + 1):
            for topic in topics:
                bench.topic = topic
                for system in systems:
                    res = run_system(bench, system, run)
                    results.append(res)
                    failed |= not res.ok
                    shown = (f"{res.events_per_s:,.0f} events/s ({res.events:,} events in {res.seconds:.2f}s), "
                             f"peak RSS {res.peak_rss_mb:,.0f} MB; {res.check}") if res.ok else "FAILED"
                    on = f" on {plural(topic.partitions, 'partition')}" if len(topics) > 1 else ""
                    print(f"run {run} {label(system)}{on}: {shown}{'; ' + res.note if res.note else ''}", flush=True)
        bench.topic = topics[-1]
        med = medians(results)
        latency = _latency(bench, args, lat_systems, med) if args.latency and lat_systems else []
        failed |= any(not r.ok for r in latency)
        print()
        print(table(med, args.runs))
        ratio = ratios(med)
        for parts, r in ratio.items():
            print(f"hub / floor{' on ' + plural(parts, 'partition') if len(topics) > 1 else ''}: {r:.2f}")
        if latency:
            print()
            print(latency_table(latency))
        for note in notes:
            print(f"note: {note}")
        print(f"machine: {started['cpus']} CPUs, load average at start {started['load_avg_at_start'][0]:.1f}, "
              f"Python {started['python']}")
        profile: dict[str, Any] | None = None
        if args.profile and spy is not None:
            BENCH_DIR.mkdir(exist_ok=True)
            (BENCH_DIR / ".gitignore").write_text("*\n")
            out = Path(args.profile_out) if args.profile_out else BENCH_DIR / f"hub-profile-{run_id}.txt"
            profile = _profile(bench, spy, out)
        if args.json:
            single = len(topics) == 1  # then keyed as before: by system, one ratio
            out = {"machine": started, "topic": asdict(topics[0]), "topics": [asdict(t) for t in topics],
                   "systems": systems, "runs": [asdict(r) for r in results],
                   "median": {m["system"] if single else f"{m['system']}@{m['partitions']}": m for m in med},
                   "hub_vs_floor": next(iter(ratio.values()), None) if single else ratio,
                   "latency": [asdict(r) for r in latency], "notes": notes, "profile": profile}
            Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
            print(f"wrote {args.json}")
        if broker is None:
            _delete_topics(bootstrap, run_id)
        return 1 if failed else 0
    except KeyboardInterrupt:
        print("\npeers: interrupted", file=sys.stderr)
        return 130
    finally:
        if bench is not None:
            for pid in list(bench.children):  # only the processes this bench started
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if server is not None:
            import clickhouse_server

            clickhouse_server.stop(server)
        if broker is not None:
            import kafka_broker

            kafka_broker.stop(broker)
        if failed and not args.keep_logs:
            kept = Path(tempfile.mkdtemp(prefix="hub-peers-logs-"))
            shutil.copytree(log_dir, kept, dirs_exist_ok=True)
            print(f"peers: logs of the runs kept in {kept}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


def _start_clickhouse(data: Path) -> Any:
    """The chdb-backed ClickHouse HTTP server of scripts/clickhouse_server.py (its own process, as
    the tests start it), warmed once so the first run on it does not pay the engine's start."""
    import clickhouse_connect
    import clickhouse_server

    try:
        server = clickhouse_server.start(data)
    except clickhouse_server.ServerError as exc:
        raise BenchError(f"the local ClickHouse HTTP server did not start: {exc}") from None
    warm_s = warm_store(clickhouse_connect.get_client(host="127.0.0.1", port=server.port))
    print(f"ClickHouse HTTP server on {server.url} (chdb, its own process; warm-up {warm_s:.1f}s)", flush=True)
    return server


def _latency(bench: Bench, args: argparse.Namespace, systems: list[str],
             med: list[dict[str, Any]]) -> list[Result]:
    """Issue 18 part 4, per system: a fresh topic (the last --partitions count) produced at the
    offered rate while the hub tails it; p50/p99 of broker timestamp -> queryable."""
    topic = bench.topic
    parts = topic.partitions
    events = args.latency_events or args.events
    measured = {m["system"]: m["events_per_s"] for m in med if m["partitions"] == parts}
    out = []
    for system in systems:
        rate = args.latency_rate or (measured[system] / 2 if system in measured else None)
        if rate is None:
            bench.notes.append(f"latency of {label(system)} skipped: no measured events/s in this run to take half "
                               "of (give --latency-rate)")
            print(f"peers: note: {bench.notes[-1]}", file=sys.stderr)
            continue
        name = f"peers.latency.{args.format}.{bench.run_id}.{uuid.uuid4().hex[:4]}"
        create_topic(bench.bootstrap, name, parts)
        bench.topic = TopicInfo(name, args.format, parts, events, 0, 0.0, [], 0.0)
        why = "" if args.latency_rate else f" (half of its {measured[system]:,.0f} events/s above)"
        print(f"latency {label(system)}: {events:,} events offered at {rate:,.0f}/s{why} into {name}, the hub "
              "tailing it ...", flush=True)
        res = run_system(bench, system, 0, tail=Tail(rate, args.seed))
        if res.ok and res.latency:
            lat = res.latency
            print(f"latency {label(system)}: p50 {lat['p50_ms']:,.0f} ms, p99 {lat['p99_ms']:,.0f} ms "
                  f"({lat['samples']:,} samples; produced at {lat['achieved_per_s']:,.0f}/s); {res.check}"
                  f"{'; ' + res.note if res.note else ''}", flush=True)
        else:
            print(f"latency {label(system)}: FAILED; {res.note}", flush=True)
        out.append(res)
    bench.topic = topic
    return out


def _profile(bench: Bench, spy: Path, out: Path) -> dict[str, Any] | None:
    """One more hub run under py-spy (not in the table: sampling slows it); top functions by self time."""
    print(f"\nprofiling the hub with py-spy (100 Hz, all threads, first batch to end of dataflow) -> {out} ...",
          flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    bench.spy = spy
    res = run_system(bench, "hub", 0, profile_out=out)
    if not res.ok or not out.is_file():
        print(f"profile failed: {res.note or 'py-spy wrote no profile'}")
        return None
    total, waiting, top, threads = top_functions(out)
    busy = max(total - waiting, 1)
    print(f"hub under py-spy: {res.events_per_s:,.0f} events/s (sampling slows it); {total:,} samples, "
          f"{waiting:,} of them threads waiting (left out below)")
    print("working samples per thread: " + ", ".join(f"{t} {n / busy:.0%}" for t, n in
                                                     sorted(threads.items(), key=lambda kv: -kv[1])))
    print(f"{'self %':>7}  function (file)   [% of working samples, all threads]")
    for name, n in top:
        print(f"{n / busy:>7.1%}  {name}")
    return {"samples": total, "waiting_samples": waiting, "events_per_s": res.events_per_s, "raw": str(out),
            "threads": threads, "top_self": [{"function": f, "samples": n} for f, n in top]}


def _check_broker(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka import KafkaException

    try:
        AdminClient({"bootstrap.servers": bootstrap, "log_level": "0"}).list_topics(timeout=10)
    except KafkaException as exc:
        raise BenchError(f"no Kafka broker answers at {bootstrap}: {exc.args[0].str() if exc.args else exc}") from None


def _delete_topics(bootstrap: str, run_id: str) -> None:
    """On a shared broker: remove the bench's topic and the ones Quix and the hub made for it."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": "0"})
    ours = [t for t in admin.list_topics(timeout=10).topics if run_id in t]
    if ours:
        for f in admin.delete_topics(ours, operation_timeout=30).values():
            try:
                f.result(30)
            except Exception:  # noqa: BLE001 - best effort: a topic that stays is harmless
                pass


if __name__ == "__main__":
    sys.exit(main())
