"""The worker's Prometheus metrics (prometheus-client), and the live progress line built from them."""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
from prometheus_client import Counter, Histogram, start_http_server

EVENTS = Counter("hub_events_total", "Events normalized and accepted", ["shard"])
DEAD_LETTERS = Counter("hub_dead_letters_total", "Inputs rejected to the dead-letter table/topic", ["reason"])
SKIPPED = Counter("hub_skipped_inputs_total", "Inputs that are not events (OTLP spans that are not LLM calls, metric points, log records)",
                  ["reason"])
LATE = Counter("hub_late_events_total", "Events later than the allowed lateness (kept in late_events)")
WINDOWS = Counter("hub_windows_closed_total", "1-minute series windows closed and written")
BATCHES = Counter("hub_batches_total", "Input batches processed")
STORE_RETRIES = Counter("hub_store_retries_total", "ClickHouse insert attempts retried")
KAFKA_ERRORS = Counter("hub_kafka_consume_errors_total", "Non-fatal consumer errors (librdkafka retries them)", ["topic", "code"])
PRODUCE_ERRORS = Counter("hub_kafka_produce_errors_total", "Records the broker refused (dead-letter and alerts topics)",
                         ["topic", "code"])
E2E_LATENCY = Histogram("hub_end_to_end_latency_seconds", "Kafka produce time to queryable in ClickHouse (1 in 64 messages)",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
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


def serve(host: str, port: int) -> None:
    """Bind where config says (Bytewax's own API binds 0.0.0.0; this one does not have to)."""
    start_http_server(port, addr=host)


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
