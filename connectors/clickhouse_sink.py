"""ClickHouse (and dead-letter topic) output of the flow, written by a background thread.

Inserts run on their own thread so decoding the next batch overlaps the insert (the engine and
the HTTP client work outside the GIL). Raw events, dead letters, late events and closed windows
are buffered and inserted at >= insert_batch_rows rows or >= insert_max_delay_s, whichever
first; windows already stored (a replay) are skipped. `snapshot()`
blocks until everything handed over is durable, so a Bytewax snapshot never claims offsets
whose results are still in memory. A ClickHouse outage stalls the writer (retrying with
backoff) and, through the bounded queue, the flow — nothing is dropped.
"""
from __future__ import annotations

import base64
import queue
import sys
import threading
import time

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from clickhouse_connect.driver.exceptions import OperationalError

from config.settings import HubConfig, kafka_client_config
from connectors.clickhouse import connect, first_line, insert_new_windows
from connectors import worker_metrics as telemetry
from operators.event_columns import EVENT_COLUMNS
from operators.shard import LATE_COLUMNS, ShardOutput
from schemas.metrics import window_rows
from schemas.raw import DeadLetter

EVENT_NAMES = [n for n, _ in EVENT_COLUMNS]
EVENT_TYPES = [t for _, t in EVENT_COLUMNS]
DEAD_LETTER_COLUMNS = ["ingest_time", "topic", "partition", "offset", "source", "code", "reason", "field", "event_id", "raw"]
MAX_BACKOFF_S = 10.0
FLUSH = object()


def dead_letter_row(d: DeadLetter) -> list:
    return [d.ingest_time_ms, d.topic, d.partition, d.offset, d.source, d.code or "invalid", d.reason, d.field,
            d.event_id, d.raw.decode("utf-8", "backslashreplace")]


class _Writer(StatefulSinkPartition[ShardOutput, None]):
    def __init__(self, cfg: HubConfig) -> None:
        self.cfg = cfg
        self.client = connect(cfg.clickhouse)
        self.producer = None
        if cfg.kafka.bootstrap_servers:
            from confluent_kafka import Producer

            self.producer = Producer({**kafka_client_config(cfg), "linger.ms": "50", "compression.type": "lz4"})
        self.queue: queue.Queue = queue.Queue(maxsize=64)
        self.failure: BaseException | None = None
        self.idle = threading.Event()
        self.idle.set()
        self.thread = threading.Thread(target=self._run, name="clickhouse-writer", daemon=True)
        self.thread.start()

    # -- flow side -------------------------------------------------------------------------
    def write_batch(self, values: list[ShardOutput]) -> None:
        self._raise_failure()
        self.idle.clear()
        self.queue.put(values)

    def snapshot(self) -> None:
        self.flush()
        return None

    def flush(self) -> None:
        self._raise_failure()
        done = threading.Event()
        self.queue.put((FLUSH, done))
        while not done.wait(0.5):
            self._raise_failure()
        self._raise_failure()

    def close(self) -> None:
        self.flush()
        self.queue.put(None)
        self.thread.join(timeout=60)
        self.client.close()

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise RuntimeError(f"ClickHouse writer failed: {first_line(self.failure)}") from self.failure

    # -- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        events: list[list] = [[] for _ in EVENT_NAMES]
        dead: list[list] = []
        late: list[list] = []
        windows: list[list] = []
        produced: list = []
        pending = 0
        oldest = 0.0
        max_rows = self.cfg.clickhouse.insert_batch_rows
        max_delay = self.cfg.clickhouse.insert_max_delay_s
        try:
            while True:
                try:
                    item = self.queue.get(timeout=max_delay / 2)
                except queue.Empty:
                    item = ()
                if item is None:
                    self._flush_buffers(events, dead, late, windows)
                    return
                force = isinstance(item, tuple) and len(item) == 2 and item[0] is FLUSH
                if not force:
                    for out in item:
                        if out.event_columns is not None:
                            for col, values in zip(events, out.event_columns):
                                col.extend(values)
                            pending += out.events
                        if out.produced_ms is not None:
                            produced.append(out.produced_ms)
                        if out.dead_letters:
                            dead.extend(dead_letter_row(d) for d in out.dead_letters)
                            self._produce_dead_letters(out.dead_letters)
                        late.extend(out.late_rows)
                        if out.windows:
                            windows.extend(window_rows(out.windows))
                            telemetry.WINDOWS.inc(len(out.windows))
                        if pending and not oldest:
                            oldest = time.monotonic()
                if force or pending >= max_rows or len(dead) >= max_rows or (
                        oldest and time.monotonic() - oldest >= max_delay) or (not pending and (dead or late or windows)):
                    self._flush_buffers(events, dead, late, windows)
                    done_ms = int(time.time() * 1000)
                    for stamps in produced:
                        telemetry.LATENCY_SAMPLE.record(stamps, done_ms)
                    events = [[] for _ in EVENT_NAMES]
                    dead, late, windows, produced, pending, oldest = [], [], [], [], 0, 0.0
                if force:
                    if self.producer is not None:
                        self.producer.flush(30)
                    item[1].set()
        except BaseException as exc:  # surfaced on the flow thread by _raise_failure
            self.failure = exc

    def _flush_buffers(self, events: list[list], dead: list[list], late: list[list], windows: list[list]) -> None:
        if events[0]:
            self._retry(lambda: self.client.insert("events", events, column_names=EVENT_NAMES,
                                                   column_type_names=EVENT_TYPES, column_oriented=True))
        if dead:
            self._retry(lambda: self.client.insert("dead_letters", dead, column_names=DEAD_LETTER_COLUMNS))
        if late:
            self._retry(lambda: self.client.insert("late_events", late, column_names=LATE_COLUMNS))
        if windows:
            self._retry(lambda: insert_new_windows(self.client, windows))

    def _retry(self, action) -> None:
        """Retry connection failures forever (outage: wait, drop nothing); other errors 3 times."""
        delay, attempts, warned = 0.2, 0, False
        while True:
            try:
                action()
                if warned:
                    print("hub: ClickHouse is reachable again; writing resumed", file=sys.stderr, flush=True)
                return
            except OperationalError as exc:
                if not warned:
                    print(f"hub: ClickHouse unavailable ({first_line(exc)}); retrying", file=sys.stderr, flush=True)
                    warned = True
                telemetry.STORE_RETRIES.inc()
            except Exception:
                attempts += 1
                if attempts >= 3:
                    raise
                telemetry.STORE_RETRIES.inc()
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    def _produce_dead_letters(self, letters: list[DeadLetter]) -> None:
        if self.producer is None:
            return
        topic = self.cfg.kafka.topics.dead_letter
        for d in letters:
            record = {"reason": d.reason, "code": d.code, "field": d.field, "topic": d.topic, "partition": d.partition,
                      "offset": d.offset, "source": d.source, "event_id": d.event_id, "ingest_time_ms": d.ingest_time_ms,
                      "raw_b64": base64.b64encode(d.raw).decode()}
            while True:
                try:
                    self.producer.produce(topic, orjson.dumps(record))
                    break
                except BufferError:
                    self.producer.poll(0.1)
        self.producer.poll(0)


class ClickHouseSink(FixedPartitionedSink[ShardOutput, None]):
    def __init__(self, cfg: HubConfig, writers: int = 1) -> None:
        self.cfg = cfg
        self.writers = writers

    def list_parts(self) -> list[str]:
        return [f"clickhouse-{i}" for i in range(self.writers)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Writer:
        return _Writer(self.cfg)
