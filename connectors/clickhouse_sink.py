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
still in memory. A ClickHouse outage stalls the
writer (retrying with backoff) and, through the bounded queue, the flow: nothing is dropped.
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
from clickhouse_connect.driver.exceptions import OperationalError

from config.settings import HubConfig
from connectors import rollups
from connectors import worker_metrics as telemetry
from connectors.clickhouse import connect, first_line, insert_new_windows
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
MAX_BACKOFF_S = 10.0


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


class _Writer(StatefulSinkPartition[Any, None]):
    def __init__(self, cfg: HubConfig) -> None:
        self.cfg = cfg
        self.client = connect(cfg.clickhouse)
        self.queue: queue.Queue = queue.Queue(maxsize=64)
        self.failure: BaseException | None = None
        # 1-minute windows written (or found already written) whose rollups are not recomputed yet.
        self.dirty: set[int] = set()
        self.dirty_since = 0.0
        self.thread = threading.Thread(target=self._run, name="clickhouse-writer", daemon=True)
        self.thread.start()

    # -- flow side -------------------------------------------------------------------------
    def write_batch(self, values: list[ShardOutput | DetectionOutput | AlertOutput]) -> None:
        self._raise_failure()
        self.queue.put([(out, event_table(out.event_columns)
                         if isinstance(out, ShardOutput) and out.event_columns is not None else None)
                        for out in values])

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
        self.flush()
        self.queue.put(None)
        self.thread.join(timeout=60)
        self.client.close()

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise RuntimeError(f"ClickHouse writer failed: {first_line(self.failure)}") from self.failure

    # -- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        buf = _Buffers()
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
                due = buf.since and time.monotonic() - buf.since >= delay
                if barrier is not None or buf.size() >= limit or (due and not buf.empty()):
                    self._insert(buf)
                    buf = _Buffers()
                stale = self.dirty and time.monotonic() - self.dirty_since >= self.cfg.clickhouse.rollup_refresh_s
                if self.dirty and (barrier is not None or stale):
                    self._retry(lambda: rollups.refresh(self.client, self.dirty))
                    self.dirty = set()
                if barrier is not None:
                    barrier.set()
        except BaseException as exc:  # surfaced on the flow thread by _raise_failure
            self.failure = exc

    def _insert(self, buf: _Buffers) -> None:
        if buf.event_rows:
            events = pa.concat_tables(buf.events)
            self._retry(lambda: self.client.insert_arrow("events", events))
        for table, columns in ROW_TABLES.items():
            rows = buf.rows[table]
            if rows:
                self._retry(lambda t=table, r=rows, c=columns: self.client.insert(t, r, column_names=c))
        if buf.windows:
            self._retry(lambda: insert_new_windows(self.client, buf.windows))
            if not self.dirty:
                self.dirty_since = time.monotonic()
            self.dirty.update(r[4] for r in buf.windows)
        done_ms = int(time.time() * 1000)
        for stamps in buf.produced:
            telemetry.LATENCY_SAMPLE.record(stamps, done_ms)

    def _retry(self, action: Callable[[], Any]) -> None:
        """Connection failures: retry until the server is back (an outage drops nothing).
        Anything else: 3 attempts, then fail the flow loudly rather than lose rows."""
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
            except Exception:
                attempts += 1
                if attempts >= 3:
                    raise
            telemetry.STORE_RETRIES.inc()
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)


class ClickHouseSink(FixedPartitionedSink[Any, None]):
    def __init__(self, cfg: HubConfig, writers: int = 1) -> None:
        self.cfg = cfg
        self.writers = writers

    def list_parts(self) -> list[str]:
        return [f"clickhouse-{i}" for i in range(self.writers)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Writer:
        return _Writer(self.cfg)
