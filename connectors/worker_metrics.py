"""The worker's Prometheus metrics (prometheus-client), the flow's heartbeat, and the live
progress line built from them. connectors/health.py serves them on the worker's HTTP port."""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

INPUT = Counter("hub_input_messages_total", "Messages read per input: a Kafka topic by the source it feeds "
                "(telemetry, security, ...), or file / synthetic", ["source"])
EVENTS = Counter("hub_events_total", "Events normalized and accepted, by event source and input shard",
                 ["source", "shard"])
DEAD_LETTERS = Counter("hub_dead_letters_total", "Inputs rejected to the dead-letter table/topic", ["reason"])
DUPLICATES = Counter("hub_duplicate_events_total", "Events dropped as repeats within the dedup window (also in "
                     "hub_dead_letters_total{reason=\"duplicate\"})", ["source"])
SKIPPED = Counter("hub_skipped_inputs_total", "Inputs that are not events (OTLP spans that are not LLM calls, metric points, log records)",
                  ["reason"])
LATE = Counter("hub_late_events_total", "Events later than the allowed lateness (kept in late_events)")
WINDOWS = Counter("hub_windows_closed_total", "1-minute series windows closed and written")
BATCHES = Counter("hub_batches_total", "Input batches processed")
ANOMALIES = Counter("hub_anomalies_total", "Anomalies found, by type", ["type"])
INCIDENTS = Counter("hub_incidents_total", "Incidents opened (correlated groups; later versions of one are not counted)")
ALERTS = Counter("hub_alerts_total", "Anomalies and incidents at or above detection.alert_severity (put on the "
                 "alerts topic when Kafka is configured)", ["kind"])
RULE_ALERTS = Counter("hub_rule_alerts_total", "Alert transitions of [[alerts.rules]] (event: firing, renotify, "
                      "resolved), as stored in `alerts`", ["rule", "event"])
NOTIFICATIONS = Counter("hub_notifications_total", "Webhook notifications by outcome: sent, failed (dead-lettered after "
                        "the last attempt), duplicate (already recorded before a restart, not sent again)",
                        ["channel", "status"])
STORE_RETRIES = Counter("hub_store_retries_total", "ClickHouse insert attempts retried")
KAFKA_ERRORS = Counter("hub_kafka_consume_errors_total", "Non-fatal consumer errors (librdkafka retries them)", ["topic", "code"])
KAFKA_LAG = Gauge("hub_kafka_consumer_lag_messages", "Messages on the partition not read yet (high watermark - "
                  "position), refreshed every few seconds", ["topic", "partition"])
PRODUCE_ERRORS = Counter("hub_kafka_produce_errors_total", "Records the broker refused (dead-letter and alerts topics)",
                         ["topic", "code"])
E2E_LATENCY = Histogram("hub_end_to_end_latency_seconds", "Kafka produce time to queryable in ClickHouse (1 in 64 messages)",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
LAST_BATCH = Gauge("hub_last_batch_timestamp_seconds", "When the flow last took a batch (input or an idle tick): "
                   "a flow that stops moving shows here and in /healthz")

# -- Faults: ClickHouse writer (connectors/clickhouse_sink.py), Kafka availability ---------------
# Per table: what was written, how long each successful insert took, what failed and was retried
# (kind: `unavailable` = retried until the store is back, `other` = a few attempts, then the flow
# fails; hub_store_retries_total above counts the retries of all tables), and what waits for the
# writer: flow batches queued, rows not yet inserted (at the backlog's bound the flow stalls).
CLICKHOUSE_INSERT_ROWS = Counter("hub_clickhouse_insert_rows_total", "Rows inserted into ClickHouse", ["table"])
CLICKHOUSE_INSERT_BATCHES = Counter("hub_clickhouse_insert_batches_total", "Insert statements that succeeded", ["table"])
CLICKHOUSE_INSERT_SECONDS = Histogram("hub_clickhouse_insert_duration_seconds", "Duration of one successful insert",
                                      ["table"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
CLICKHOUSE_INSERT_ERRORS = Counter("hub_clickhouse_insert_errors_total", "Insert attempts that failed", ["table", "kind"])
CLICKHOUSE_INSERT_RETRIES = Counter("hub_clickhouse_insert_retries_total", "Insert attempts retried after a failure",
                                    ["table"])
CLICKHOUSE_QUEUE_DEPTH = Gauge("hub_clickhouse_writer_queue_depth", "Flow batches waiting for the ClickHouse writer",
                               ["writer"])
CLICKHOUSE_BACKLOG_ROWS = Gauge("hub_clickhouse_writer_backlog_rows",
                                "Rows handed to the ClickHouse writer, not yet inserted (the flow waits at the bound)",
                                ["writer"])
SPOOL_PENDING_BYTES = Gauge("hub_spool_pending_bytes",
                            "Bytes `hub serve` accepted into the ingest spool that no snapshot of `hub run --ingest` "
                            "covers yet (ingest answers 429 past [spool] max_pending_bytes)")
CLICKHOUSE_AVAILABLE = Gauge("hub_clickhouse_available", "0 while the writer cannot reach ClickHouse, else 1")
CLICKHOUSE_AVAILABLE.set(1)
# Kafka clients (connectors/kafka_health.py): errors librdkafka reports per client (it retries
# connections itself), and whether the broker is reachable.
KAFKA_CLIENT_ERRORS = Counter("hub_kafka_client_errors_total", "Client-level Kafka errors (connection, authentication, TLS)",
                              ["code"])
KAFKA_AVAILABLE = Gauge("hub_kafka_available", "0 while the Kafka broker cannot be reached, else 1")
KAFKA_AVAILABLE.set(1)


class _Watermarks(Collector):
    """hub_watermark_lag_seconds{shard}: wall clock minus the shard's watermark (its largest event
    time), computed when scraped so a shard that went quiet shows its lag growing."""

    def __init__(self) -> None:
        self.marks: dict[str, int] = {}

    def set(self, shard: str, watermark_ms: int) -> None:
        self.marks[shard] = watermark_ms

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("hub_watermark_lag_seconds", "Wall clock minus the shard's event-time "
                                   "watermark (how far behind real time its windows close)", labels=["shard"])
        now_ms = time.time() * 1000
        for shard, mark in list(self.marks.items()):
            family.add_metric([shard], (now_ms - mark) / 1000.0)
        yield family


WATERMARKS = _Watermarks()
REGISTRY.register(WATERMARKS)


class Heartbeat:
    """When the flow last took a batch (monotonic), for liveness/readiness; None before the first."""

    def __init__(self) -> None:
        self.last: float | None = None

    def beat(self) -> None:
        self.last = time.monotonic()
        LAST_BATCH.set_to_current_time()

    def age_s(self) -> float | None:
        last = self.last
        return None if last is None else time.monotonic() - last

    def reset(self) -> None:
        self.last = None


HEARTBEAT = Heartbeat()
SAMPLE_EVERY = 64


class LatencySample:
    """A bounded sample of end-to-end latencies (ms) for benchmarks and the summary line."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.values: list[np.ndarray] = []
        self.size = 0
        self.lock = threading.Lock()

    def record(self, produced_ms: np.ndarray, done_ms: int) -> None:
        sampled = produced_ms[::SAMPLE_EVERY]
        sampled = sampled[sampled > 0]
        if not len(sampled):
            return
        latency = done_ms - sampled
        for value in (latency / 1000.0).tolist():
            E2E_LATENCY.observe(value)
        with self.lock:
            if self.size < self.limit:
                self.values.append(latency)
                self.size += len(latency)

    def all(self) -> np.ndarray:
        with self.lock:
            return np.concatenate(self.values) if self.values else np.empty(0)

    def clear(self) -> None:
        with self.lock:
            self.values, self.size = [], 0


LATENCY_SAMPLE = LatencySample()


def total(counter: Counter) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


class Progress:
    """A live view of a run: on a terminal one line rewritten every second; otherwise (a log, a
    pipe, a service manager) a full line every `log_interval_s`, so a long run is never silent."""

    def __init__(self, stream=sys.stderr, interval_s: float = 1.0, log_interval_s: float = 10.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval_s if self.tty else log_interval_s
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> "Progress":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_flag.set()
        self.thread.join()
        if self.tty and time.monotonic() - self.started >= self.interval:
            self.stream.write("\n")

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        events = total(EVENTS)
        return (f"{events:,.0f} events ({events / elapsed:,.0f}/s)  dead letters {total(DEAD_LETTERS):,.0f}  "
                f"skipped {total(SKIPPED):,.0f}  "
                f"late {total(LATE):,.0f}  windows closed {total(WINDOWS):,.0f}")

    def _loop(self) -> None:
        while not self.stop_flag.wait(self.interval):
            self.stream.write(("\r" + self.line() + "   ") if self.tty else ("hub run: " + self.line() + "\n"))
            self.stream.flush()
