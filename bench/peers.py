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
    """Deterministic calls for a seed, event times spread evenly over [start_ms, start_ms + SPAN_MS)."""

    def __init__(self, total: int, seed: int, start_ms: int) -> None:
        self.rng = random.Random(seed)
        self.total = total
        self.start_ms = start_ms
        self.i = 0

    def next(self) -> Call:
        rng = self.rng
        t = int(self.start_ms + self.i * SPAN_MS / self.total + rng.gauss(0.0, 150.0))
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


def messages(total: int, fmt: str, seed: int, start_ms: int) -> Iterator[list[tuple[bytes, bytes, int]]]:
    """Chunks of (key, value, events) holding exactly `total` events in format `fmt`."""
    import msgspec

    from connectors.synthetic_wire import base_to_hub

    enc = msgspec.json.Encoder()
    calls = Calls(total, seed, start_ms)
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
        if len(out) >= PRODUCE_CHUNK:
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


def produce_topic(bootstrap: str, name: str, events: int, partitions: int, fmt: str, seed: int) -> TopicInfo:
    """Create the topic and fill it; every message must be delivered."""
    from confluent_kafka import Consumer, Producer, TopicPartition

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

    start_ms = int(time.time() * 1000) - SPAN_MS
    n_msgs = n_bytes = 0
    t0 = time.perf_counter()
    for chunk in messages(events, fmt, seed, start_ms):
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

    t0 = time.perf_counter()
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
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
    measures the hub exactly as the other two are measured.
    """
    sys.path.insert(0, str(ROOT))
    import bytewax.run

    from connectors import kafka_source, worker_metrics
    from flows.cli import main

    marks: dict[str, float] = {}
    # If the reader is renamed, time from the start of the dataflow instead (and say so).
    reader = getattr(kafka_source, "_PartitionReader", None)
    next_batch = getattr(reader, "next_batch", None)

    def timed_next_batch(self: Any) -> Any:
        out = next_batch(self)
        if "first" not in marks and any(getattr(b, "messages", None) for b in out):
            marks["first"] = time.perf_counter()
            if args.ready_file:  # --profile: the parent attaches py-spy now
                Path(args.ready_file).touch()
        return out

    if reader is not None and next_batch is not None:
        reader.next_batch = timed_next_batch  # type: ignore[method-assign]
    cli_main = bytewax.run.cli_main

    def timed_cli_main(*a: Any, **kw: Any) -> Any:
        marks["start"] = time.perf_counter()
        try:
            return cli_main(*a, **kw)
        finally:
            marks["done"] = time.perf_counter()
            if args.ready_file:  # --profile: the parent stops py-spy now
                Path(args.ready_file + ".done").touch()

    bytewax.run.cli_main = timed_cli_main
    store = hub_args[hub_args.index("--clickhouse") + 1]
    warm_s = warm_chdb(store[len("chdb://"):]) if store.startswith("chdb://") else 0.0
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
    return {"events": events, "seconds": marks["done"] - start,
            "check": f"{dead:,} dead letters, {late:,} late; engine warm-up {warm_s:.1f}s and {since}"}


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
    peak_rss_mb: float = 0.0
    check: str = ""
    note: str = ""


@dataclass
class Bench:
    """Everything a run needs: where the broker is, the topic, scratch space, the Quix venv."""

    bootstrap: str
    topic: TopicInfo
    work: Path
    timeout_s: float
    quix_python: Path | None
    log_dir: Path
    run_id: str  # in every topic and group name this bench makes, so it removes only its own
    spy: Path | None = None
    notes: list[str] = field(default_factory=list)
    children: set[int] = field(default_factory=set)


def run_child(bench: Bench, argv: list[str], env: dict[str, str] | None, log: Path,
              profile: tuple[Path, Path] | None = None) -> tuple[int, float, bool]:
    """Run argv in its own process; returns (exit code, peak RSS in MB from wait4, timed out).

    With `profile` = (ready file, output), py-spy attaches when the child creates the ready file
    (its first Kafka batch) and is stopped with SIGINT when it creates READY.done (end of the
    dataflow), so the profile holds the measured stretch only: no imports, warm-up or summary.
    """
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    bench.children.add(proc.pid)
    deadline = time.monotonic() + bench.timeout_s
    timed_out = False
    spy: subprocess.Popen[bytes] | None = None
    spy_stopped = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline and not timed_out:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the child and anything it started
        if profile is not None and bench.spy is not None:
            ready, raw = profile
            if spy is None and ready.exists():
                with open(log.with_suffix(".py-spy.log"), "wb") as spy_log:
                    spy = subprocess.Popen([str(bench.spy), "record", "--pid", str(proc.pid), "--rate", "100",
                                            "--format", "raw", "--threads", "-o", str(raw)],
                                           stdout=spy_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
                bench.children.add(spy.pid)
            elif spy is not None and not spy_stopped and Path(f"{ready}.done").exists():
                spy.send_signal(signal.SIGINT)  # py-spy writes its output and exits
                spy_stopped = True
        time.sleep(0.05 if profile else 0.1)
    bench.children.discard(proc.pid)
    if spy is not None:
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(spy.pid, signal.SIGKILL)
            spy.wait()
        bench.children.discard(spy.pid)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    return proc.returncode, usage.ru_maxrss / 1024.0, timed_out


def run_system(bench: Bench, system: str, run: int, profile_out: Path | None = None) -> Result:
    """One measured run of `system` on the topic, in a fresh store, with a fresh consumer group."""
    tag = f"{system}-{run}-{bench.run_id}-{uuid.uuid4().hex[:4]}"
    store = bench.work / tag
    result_file = bench.work / f"{tag}.json"
    log = bench.log_dir / f"{tag}.log"
    common = ["--bootstrap", bench.bootstrap, "--topic", bench.topic.name, "--format", bench.topic.fmt,
              "--store", str(store), "--result", str(result_file)]
    env: dict[str, str] | None = None
    ready: Path | None = None
    if system == "floor":
        argv = [sys.executable, __file__, "--worker", "floor", *common]
    elif system == "quix":
        assert bench.quix_python is not None
        argv = [str(bench.quix_python), __file__, "--worker", "quix", *common, "--group", f"peers-quix-{tag}",
                "--expect-events", str(bench.topic.events)]
    else:
        run_id = tag.replace("-", "")
        env = {"HUB_KAFKA__BOOTSTRAP_SERVERS": bench.bootstrap, "HUB_KAFKA__GROUP_ID": f"peers-hub-{run_id}",
               "HUB_METRICS__PORT": "0", "HUB_KAFKA__TOPICS__TELEMETRY": bench.topic.name,
               **{f"HUB_KAFKA__TOPICS__{s.upper()}": f"peers-{run_id}.{s}"
                  for s in ("security", "cost", "governance", "registry", "policy", "dead_letter", "alerts")}}
        ready = bench.work / f"{tag}.ready" if profile_out is not None else None
        argv = [sys.executable, __file__, "--worker", "hub", *common, *(["--ready-file", str(ready)] if ready else []),
                "--", "run", "--until-end", "--clickhouse", f"chdb://{store}"]
    profile = (ready, profile_out) if ready is not None and profile_out is not None else None
    try:
        code, rss, timed_out = run_child(bench, argv, env, log, profile)
        if timed_out:
            return Result(system, run, False, note=f"killed after {bench.timeout_s:.0f}s; log {log}")
        if code != 0 or not result_file.is_file():
            return Result(system, run, False, note=f"exit code {code}: {_last_line(log)} (log {log})")
        got = json.loads(result_file.read_text())
        res = Result(system, run, True, events=got["events"], seconds=got["seconds"],
                     events_per_s=got["events"] / max(got["seconds"], 1e-9), peak_rss_mb=rss, check=got["check"])
        if res.events != bench.topic.events:
            res.note = f"saw {res.events:,} of {bench.topic.events:,} events"
        return res
    finally:
        shutil.rmtree(store, ignore_errors=True)
        result_file.unlink(missing_ok=True)
        if ready is not None:
            ready.unlink(missing_ok=True)
            Path(f"{ready}.done").unlink(missing_ok=True)


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


def medians(results: list[Result]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for system in SYSTEMS:
        ok = [r for r in results if r.system == system and r.ok]
        if ok:
            out[system] = {"runs": len(ok), "events_per_s": statistics.median(r.events_per_s for r in ok),
                           "seconds": statistics.median(r.seconds for r in ok),
                           "peak_rss_mb": statistics.median(r.peak_rss_mb for r in ok),
                           "events": ok[0].events}
    return out


def table(med: dict[str, dict[str, Any]], runs: int) -> str:
    floor = med.get("floor", {}).get("events_per_s")
    lines = [f"{'system':<7} {'events':>10} {'seconds':>9} {'events/s':>10} {'peak RSS MB':>12} {'vs floor':>9}"]
    for system, m in med.items():
        ratio = f"{m['events_per_s'] / floor:.2f}" if floor else "-"
        lines.append(f"{system:<7} {m['events']:>10,} {m['seconds']:>9.2f} {m['events_per_s']:>10,.0f} "
                     f"{m['peak_rss_mb']:>12,.0f} {ratio:>9}")
    return "\n".join(lines) + (f"\n(medians of {runs} runs)" if runs > 1 else "")


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
    ap.add_argument("--partitions", type=int, default=4, help="partitions of the topic (default 4)")
    ap.add_argument("--format", choices=FORMATS, default="base", help="wire format of the topic (default base)")
    ap.add_argument("--runs", type=int, default=1, help="runs of each system; medians are reported (default 1)")
    ap.add_argument("--only", default=",".join(SYSTEMS), help="systems to run, comma-separated (default all: "
                    "floor,quix,hub)")
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
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        print(f"peers: --only {args.only}: choose from {', '.join(SYSTEMS)}", file=sys.stderr)
        return 2
    if args.events <= 0 or args.partitions <= 0 or args.runs <= 0:
        print("peers: --events, --partitions and --runs must be > 0", file=sys.stderr)
        return 2
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
        name = f"peers.{args.format}.{run_id}"
        print(f"producing {args.events:,} {args.format} events into {name} ({args.partitions} partitions) on "
              f"{bootstrap} ...", flush=True)
        topic = produce_topic(bootstrap, name, args.events, args.partitions, args.format, args.seed)
        print(f"produced {topic.messages:,} messages, {topic.bytes_per_message:,.0f} bytes each on average, in "
              f"{topic.produce_s:.1f}s; per partition: {', '.join(f'{n:,}' for n in topic.per_partition)}", flush=True)
        timeout = args.timeout or 300.0 + args.events / 1000.0
        bench = Bench(bootstrap, topic, work, timeout, quix_python, log_dir, run_id, notes=notes)
        results: list[Result] = []
        for run in range(1, args.runs + 1):
            for system in systems:
                res = run_system(bench, system, run)
                results.append(res)
                failed |= not res.ok
                shown = (f"{res.events_per_s:,.0f} events/s ({res.events:,} events in {res.seconds:.2f}s), "
                         f"peak RSS {res.peak_rss_mb:,.0f} MB; {res.check}") if res.ok else "FAILED"
                print(f"run {run} {system}: {shown}{'; ' + res.note if res.note else ''}", flush=True)
        med = medians(results)
        print()
        print(table(med, args.runs))
        ratio = med["hub"]["events_per_s"] / med["floor"]["events_per_s"] if "hub" in med and "floor" in med else None
        if ratio is not None:
            print(f"hub / floor: {ratio:.2f}")
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
            out = {"machine": started, "topic": asdict(topic), "systems": systems, "runs": [asdict(r) for r in results],
                   "median": med, "hub_vs_floor": ratio, "notes": notes, "profile": profile}
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
        if broker is not None:
            import kafka_broker

            kafka_broker.stop(broker)
        if failed and not args.keep_logs:
            kept = Path(tempfile.mkdtemp(prefix="hub-peers-logs-"))
            shutil.copytree(log_dir, kept, dirs_exist_ok=True)
            print(f"peers: logs of the runs kept in {kept}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


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
