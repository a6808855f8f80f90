"""The ClickHouse output of the flow (every table it writes), on a writer thread.

Inserts run on their own thread so decoding the next batch overlaps the insert (the engine and
the HTTP client work outside the GIL). Events travel as Arrow tables built on the flow thread
(clickhouse-connect's Native serializer is Python and, on the writer thread, fought the flow for
the GIL: ~34k -> ~45k msgs/s in bench/pipeline.py). Rows are buffered per table and inserted at
>= insert_batch_rows rows or >= insert_max_delay_s, whichever first; windows already stored (a
replay) are skipped. The rollup windows those 1-minute rows fall in are recomputed from the
tiers below (connectors/rollups.py) every rollup_refresh_s and before every checkpoint, replayed
windows included, so a crash between the two never leaves a tier short. `snapshot()` blocks until
everything handed over is durable, so a Bytewax snapshot never claims offsets whose results are
still in memory. A ClickHouse outage stalls the writer (retrying with backoff) and, through the
bounded backlog of rows handed over, the flow: nothing is dropped and memory stays bounded.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from msgspec.structs import astuple, replace
from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from config.settings import HubConfig
from connectors import rollups
from connectors import worker_metrics as telemetry
from connectors.clickhouse import StoreError, connect, first_line, insert_new_windows
from schemas.alerts import ALERT_COLUMNS, BUDGET_COLUMNS, alert_row, budget_row
from schemas.assets import ASSET_COLUMNS, ASSET_EVENT_COLUMNS, asset_row
from schemas.feeds import COMPLIANCE_COLUMNS, compliance_row
from schemas.incidents import ANOMALY_COLUMNS, EDGE_COLUMNS, INCIDENT_COLUMNS, anomaly_row, edge_row, incident_row
from schemas.items import AlertOutput, DetectionOutput, RegistryOutput, ShardOutput
from schemas.metrics import window_rows
from schemas.rows import (DEAD_LETTER_COLUMNS, EVENT_COLUMNS, LATE_COLUMNS, SKIPPED_COLUMNS, dead_letter_row,
                          skipped_row)

ARROW_TYPES = {"String": pa.string(), "DateTime64(3)": pa.timestamp("ms", tz="UTC"), "Float64": pa.float64(),
               "UInt64": pa.uint64(), "UInt8": pa.uint8(), "Map(String, String)": pa.map_(pa.string(), pa.string())}


def _arrow_type(ch_type: str) -> pa.DataType:
    if ch_type.startswith("Nullable("):
        ch_type = ch_type[9:-1]
    if ch_type.startswith("LowCardinality("):
        ch_type = ch_type[15:-1]
    return ARROW_TYPES[ch_type]


EVENT_SCHEMA = pa.schema([(name, _arrow_type(t)) for name, t in EVENT_COLUMNS])
ROW_TABLES = {"dead_letters": DEAD_LETTER_COLUMNS, "skipped_inputs": SKIPPED_COLUMNS, "late_events": LATE_COLUMNS, "anomalies": list(ANOMALY_COLUMNS),
              "incidents": list(INCIDENT_COLUMNS), "incident_edges": list(EDGE_COLUMNS),
              "alerts": list(ALERT_COLUMNS), "budget_status": list(BUDGET_COLUMNS),
              "assets": list(ASSET_COLUMNS), "asset_events": list(ASSET_EVENT_COLUMNS),
              "compliance_reports": list(COMPLIANCE_COLUMNS)}
# Rows handed to the writer and not yet inserted, at most this many inserts' worth: one being
# inserted while the flow fills the next. While an insert blocks (an outage) the flow stalls
# at this bound, so memory stays bounded (rows, not flow batches: a batch holds one Kafka
# consume per partition, so their size varies).
BACKLOG_INSERTS = 3
# Backoff between insert attempts: 0.2 s doubling to a cap of MAX_BACKOFF_S, plus up to 0.5 s of
# jitter (many workers do not reconnect in lockstep). The cap bounds how long after a server
# comes back the writer notices.
MAX_BACKOFF_S = 5.0
BACKOFF = wait_exponential_jitter(multiplier=0.2, max=MAX_BACKOFF_S, jitter=0.5)
# Other errors: this many attempts in all, then the flow fails loudly rather than lose rows.
OTHER_ATTEMPTS = 3
# ClickHouse error codes that clear by themselves: TIMEOUT_EXCEEDED, TOO_MANY_SIMULTANEOUS_QUERIES,
# SOCKET_TIMEOUT, NETWORK_ERROR, ABORTED, TABLE_IS_READ_ONLY, TOO_MANY_PARTS, UNKNOWN_STATUS_OF_INSERT,
# QUERY_WAS_CANCELLED (at shutdown), KEEPER_EXCEPTION.
TRANSIENT_CODES = frozenset({159, 202, 209, 210, 236, 242, 252, 319, 394, 999})


def event_table(columns: list[list]) -> pa.Table:
    """Event columns -> Arrow, on the flow thread: the writer thread then holds the GIL only
    briefly, and the engine parses Arrow outside it."""
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, EVENT_SCHEMA)], schema=EVENT_SCHEMA)


class _Buffers:
    """Rows waiting for the next insert, per table."""

    def __init__(self) -> None:
        self.events: list[pa.Table] = []
        self.event_rows = 0
        self.rows: dict[str, list] = {t: [] for t in ROW_TABLES}
        self.windows: list[list] = []
        self.produced: list[np.ndarray] = []
        self.since = 0.0

    def add(self, out: ShardOutput | DetectionOutput | AlertOutput | RegistryOutput, events: pa.Table | None) -> None:
        if not self.since:
            self.since = time.monotonic()
        if isinstance(out, RegistryOutput):
            self.rows["assets"] += [asset_row(p) for p in out.assets]
            self.rows["asset_events"] += out.asset_events
            self.rows["compliance_reports"] += [compliance_row(r) for r in out.reports]
            self._windows(out.windows)
            return
        if isinstance(out, AlertOutput):
            self.rows["alerts"] += [alert_row(a) for a in out.alerts]
            self.rows["budget_status"] += [budget_row(b) for b in out.budgets]
            return
        if isinstance(out, DetectionOutput):
            self.rows["anomalies"] += [anomaly_row(a) for a in out.anomalies]
            for incident in out.incidents:
                self.rows["incidents"].append(incident_row(incident))
                self.rows["incident_edges"] += [edge_row(e) for e in incident.edges]
            return
        if events is not None:
            self.events.append(events)
            self.event_rows += events.num_rows
        if out.produced_ms is not None:
            self.produced.append(out.produced_ms)
        self.rows["dead_letters"] += [dead_letter_row(d) for d in out.dead_letters]
        self.rows["skipped_inputs"] += [skipped_row(s) for s in out.skipped]
        self.rows["late_events"] += out.late_rows
        self._windows(out.windows)

    def _windows(self, windows: list) -> None:
        if windows:
            self.windows += window_rows(windows)
            telemetry.WINDOWS.inc(len(windows))

    def size(self) -> int:
        return max(self.event_rows, *(len(r) for r in self.rows.values()), len(self.windows))

    def empty(self) -> bool:
        return self.size() == 0


def _rows(item: list[tuple[Any, pa.Table | None]]) -> int:
    """Rows one handed-over flow batch adds to the writer's buffers, about (what the backlog
    counts): its events plus every list its outputs carry, whatever their type."""
    n = 0
    for out, events in item:
        n += events.num_rows if events is not None else 0
        n += sum(len(v) for v in astuple(out) if isinstance(v, list))
    return n


class _Backlog:
    """Rows handed to the writer and not yet inserted; the flow thread waits while there are too
    many, which is how an outage becomes backpressure (Kafka is not read) instead of memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.rows = 0
        self.cond = threading.Condition()

    def acquire(self, rows: int, check: Callable[[], None]) -> None:
        """Wait for room (any batch fits into an empty backlog); `check` raises if the writer died."""
        with self.cond:
            while self.rows and self.rows + rows > self.limit:
                check()
                self.cond.wait(0.5)
            self.rows += rows

    def release(self, rows: int) -> None:
        with self.cond:
            self.rows -= rows
            self.cond.notify_all()


class _Writer(StatefulSinkPartition[Any, None]):
    def __init__(self, cfg: HubConfig, name: str = "clickhouse-0") -> None:
        self.cfg = cfg
        self.client = connect(cfg.clickhouse)
        # pyarrow imports pandas on its first conversion from Python objects (1-2.6 s measured):
        # paid here, at start, and not by the first batch of events.
        pa.array([""])
        self.queue: queue.Queue = queue.Queue()
        self.backlog = _Backlog(BACKLOG_INSERTS * cfg.clickhouse.insert_batch_rows)
        telemetry.CLICKHOUSE_QUEUE_DEPTH.labels(writer=name).set_function(self.queue.qsize)
        telemetry.CLICKHOUSE_BACKLOG_ROWS.labels(writer=name).set_function(lambda: self.backlog.rows)
        self.failure: BaseException | None = None
        self.unavailable_since: float | None = None  # set while the store is unreachable
        # 1-minute windows written (or found already written) whose rollups are not recomputed yet.
        self.dirty: set[int] = set()
        self.dirty_since = 0.0
        self.thread = threading.Thread(target=self._run, name="clickhouse-writer", daemon=True)
        self.thread.start()

    # -- flow side -------------------------------------------------------------------------
    def write_batch(self, values: list[ShardOutput | DetectionOutput | AlertOutput]) -> None:
        self._raise_failure()
        # Events travel only as Arrow: the column lists would double what a waiting batch holds.
        item = [(replace(out, event_columns=None), event_table(out.event_columns))
                if isinstance(out, ShardOutput) and out.event_columns is not None else (out, None) for out in values]
        self.backlog.acquire(_rows(item), self._raise_failure)
        self.queue.put(item)

    def snapshot(self) -> None:
        self.flush()
        return None

    def flush(self) -> None:
        done = threading.Event()
        self.queue.put(done)
        while not done.wait(0.5):
            self._raise_failure()
        self._raise_failure()

    def close(self) -> None:
        # After a failure (already raised to Bytewax, which is unwinding and closes the sink on
        # the way) raising again would abort the process mid-cleanup: just let the thread go.
        if self.failure is None:
            self.flush()
        self.queue.put(None)
        self.thread.join(timeout=60)
        self.client.close()

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise StoreError(f"ClickHouse writer failed: {first_line(self.failure)}") from self.failure

    # -- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        buf = _Buffers()
        buffered = 0  # backlog rows in buf, released once inserted
        limit, delay = self.cfg.clickhouse.insert_batch_rows, self.cfg.clickhouse.insert_max_delay_s
        try:
            while True:
                try:
                    item = self.queue.get(timeout=delay / 2)
                except queue.Empty:
                    item = []
                if item is None:
                    return
                barrier = item if isinstance(item, threading.Event) else None
                for out, events in item if barrier is None else ():
                    buf.add(out, events)
                buffered += _rows(item) if barrier is None else 0
                due = buf.since and time.monotonic() - buf.since >= delay
                if barrier is not None or buf.size() >= limit or (due and not buf.empty()):
                    self._insert(buf)
                    buf = _Buffers()
                    self.backlog.release(buffered)
                    buffered = 0
                stale = self.dirty and time.monotonic() - self.dirty_since >= self.cfg.clickhouse.rollup_refresh_s
                if self.dirty and (barrier is not None or stale):
                    self._retry(lambda: rollups.refresh(self.client, self.dirty)[0], "rollups")
                    self.dirty = set()
                if barrier is not None:
                    barrier.set()
        except BaseException as exc:  # surfaced on the flow thread by _raise_failure
            self.failure = exc

    def _insert(self, buf: _Buffers) -> None:
        if buf.event_rows:
            events = pa.concat_tables(buf.events)
            self._retry(lambda: self.client.insert_arrow("events", events), "events", events.num_rows)
        for table, columns in ROW_TABLES.items():
            rows = buf.rows[table]
            if rows:
                self._retry(lambda t=table, r=rows, c=columns: self.client.insert(t, r, column_names=c), table, len(rows))
        if buf.windows:
            self._retry(lambda: insert_new_windows(self.client, buf.windows), "metrics_1m")
            if not self.dirty:
                self.dirty_since = time.monotonic()
            self.dirty.update(r[4] for r in buf.windows)
        done_ms = int(time.time() * 1000)
        for stamps in buf.produced:
            telemetry.LATENCY_SAMPLE.record(stamps, done_ms)

    def _retry(self, action: Callable[[], Any], table: str, rows: int | None = None) -> Any:
        """Run one insert (or the window check + insert) until it succeeds.

        Store unavailable (connection refused or lost, server shutting down or overloaded):
        retry with capped, jittered exponential backoff until it is back, since dropping rows
        or failing would lose data or force a replay. Anything else (a bad row, a missing
        table) will not fix itself: OTHER_ATTEMPTS tries, then the error fails the flow.
        While this blocks, the bounded queue stalls the flow, so an outage costs no memory.
        `rows`: rows in the insert; None = the action returns how many it inserted.
        """
        failures = 0

        def attempt() -> Any:
            started = time.perf_counter()
            try:
                result = action()
            except Exception as exc:
                telemetry.CLICKHOUSE_INSERT_ERRORS.labels(table=table, kind=_error_kind(exc)).inc()
                raise
            telemetry.CLICKHOUSE_INSERT_SECONDS.labels(table=table).observe(time.perf_counter() - started)
            return result

        def give_up(state: RetryCallState) -> bool:
            nonlocal failures
            if store_unavailable(state.outcome.exception()):
                return False
            failures += 1
            return failures >= OTHER_ATTEMPTS

        def before_sleep(state: RetryCallState) -> None:
            telemetry.STORE_RETRIES.inc()
            telemetry.CLICKHOUSE_INSERT_RETRIES.labels(table=table).inc()
            exc = state.outcome.exception()
            if store_unavailable(exc) and self.unavailable_since is None:
                self.unavailable_since = time.monotonic()
                telemetry.CLICKHOUSE_AVAILABLE.set(0)
                print(f"hub: ClickHouse unavailable ({first_line(exc)}); retrying with backoff (up to "
                      f"{MAX_BACKOFF_S:g}s apart), the flow waits and nothing is dropped", file=sys.stderr, flush=True)

        result = Retrying(stop=give_up, wait=BACKOFF, before_sleep=before_sleep, reraise=True)(attempt)
        if self.unavailable_since is not None:
            print(f"hub: ClickHouse is reachable again after {time.monotonic() - self.unavailable_since:.1f}s; "
                  "writing resumed", file=sys.stderr, flush=True)
            self.unavailable_since = None
            telemetry.CLICKHOUSE_AVAILABLE.set(1)
        telemetry.CLICKHOUSE_INSERT_BATCHES.labels(table=table).inc()
        telemetry.CLICKHOUSE_INSERT_ROWS.labels(table=table).inc(result if rows is None else rows)
        return result


def store_unavailable(exc: BaseException | None) -> bool:
    """True for failures that end when the server is back: transport errors (clickhouse-connect
    raises OperationalError for refused or dropped connections) and server errors that mean
    'not now' (shutting down, overloaded, too many parts)."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DatabaseError) and getattr(exc, "code", None) in TRANSIENT_CODES


def _error_kind(exc: BaseException) -> str:
    return "unavailable" if store_unavailable(exc) else "other"


class ClickHouseSink(FixedPartitionedSink[Any, None]):
    def __init__(self, cfg: HubConfig, writers: int = 1) -> None:
        self.cfg = cfg
        self.writers = writers

    def list_parts(self) -> list[str]:
        return [f"clickhouse-{i}" for i in range(self.writers)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Writer:
        return _Writer(self.cfg, for_part)
