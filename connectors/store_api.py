"""The store queries behind the HTTP API (`hub serve`): read-only, bounded, paged by keyset.

Every query runs as a read-only ClickHouse query (a live store's reader user, or `readonly=1`)
with `max_execution_time` = [serve] query_timeout_s, on one of at most
[serve] max_concurrent_queries clients at once. Lists are ordered by a key that ends in a unique
column, and pages are found by comparing that key with the last (or first) row of the page
before (keyset cursors), so a deep page costs what the first does; a page number alone (no
cursor) falls back to OFFSET, for jumps.
"""
from __future__ import annotations

import base64
import math
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from config.errors import HubError
from config.settings import ClickHouseSettings
from connectors.clickhouse import connect, first_line, read_only_settings
from schemas.rollups import BY_NAME


class QueryTimeout(HubError):
    """The store did not answer within the query timeout."""


class Busy(HubError):
    """Every query slot stayed taken for the whole wait."""


class StoreUnavailable(HubError):
    """The store cannot be reached or refused to answer."""


class BadCursor(HubError):
    """A cursor that this API did not hand out (or that a change of version invalidated)."""


class NotFound(HubError):
    """No such object in the store."""


# -- keyset cursors ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    """One column of a listing's order key: a time (compared as epoch ms), an integer (a row
    version) or a string."""

    expr: str
    kind: str  # "time" | "int" | "str"


def encode_cursor(values: Sequence[Any]) -> str:
    out = [int(v.timestamp() * 1000) if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(orjson.dumps(out)).decode().rstrip("=")


def decode_cursor(text: str, keys: Sequence[Key]) -> list[Any]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError):
        raise BadCursor("not a cursor this API handed out") from None
    if not isinstance(values, list) or len(values) != len(keys):
        raise BadCursor("not a cursor of this listing")
    for value, key in zip(values, keys):
        ok = isinstance(value, str) if key.kind == "str" else isinstance(value, int) and not isinstance(value, bool)
        if not ok:
            raise BadCursor("not a cursor of this listing")
    return values


def _key_condition(keys: Sequence[Key], values: Sequence[Any], op: str, params: dict[str, Any]) -> str:
    """`(k1, k2) < (v1, v2)` with the values bound as parameters."""
    exprs, binds = [], []
    for i, (key, value) in enumerate(zip(keys, values)):
        name = f"cursor_{i}"
        params[name] = value
        exprs.append(key.expr)
        binds.append({"time": f"fromUnixTimestamp64Milli({{{name}:Int64}}, 'UTC')", "int": f"{{{name}:Int64}}"}
                     .get(key.kind, f"{{{name}:String}}"))
    return f"({', '.join(exprs)}) {op} ({', '.join(binds)})"


@dataclass
class Position:
    """Which page to read: after a key, before a key, the last page, or by offset."""

    after: list[Any] | None = None
    before: list[Any] | None = None
    last: bool = False
    offset: int = 0


@dataclass
class Listing:
    """One listing: SELECT columns FROM source WHERE filters [GROUP BY] ORDER BY key."""

    columns: str
    source: str
    keys: list[Key]
    descending: bool
    group_by: str = ""


@dataclass
class Stats:
    """What the queries behind one answer cost (summed over them)."""

    started: float = field(default_factory=time.perf_counter)
    rows_read: int | None = None
    bytes_read: int | None = None
    queries: int = 0

    def add(self, summary: dict[str, Any]) -> None:
        self.queries += 1
        for attr, name in (("rows_read", "read_rows"), ("bytes_read", "read_bytes")):
            if name in summary:
                setattr(self, attr, (getattr(self, attr) or 0) + int(summary[name]))

    @property
    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    first_key: list[Any] | None
    last_key: list[Any] | None


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity (a percentile of an empty histogram is null); every stored
    time is UTC, so say so (the embedded client returns naive datetimes)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class StoreReader:
    """Read-only store access shared by every request of one `hub serve`."""

    def __init__(self, settings: ClickHouseSettings, max_concurrent: int, timeout_s: float) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._idle: queue.LifoQueue[Client] = queue.LifoQueue()
        self._all: list[Client] = []
        self._lock = threading.Lock()

    @contextmanager
    def _client(self) -> Iterator[Client]:
        if not self._slots.acquire(timeout=self.timeout_s):
            raise Busy(f"all query slots stayed busy for {self.timeout_s:g}s")
        try:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                client = self._open()
            try:
                yield client
            except StoreUnavailable:
                # Not back into the pool: the next query connects again and finds the store anew
                # (a live store whose run stopped is then opened directly, or a restarted server).
                self._discard(client)
                raise
            self._idle.put(client)
        finally:
            self._slots.release()

    def _discard(self, client: Client) -> None:
        with self._lock:
            if client in self._all:
                self._all.remove(client)
        try:
            client.close()
        except Exception:  # closing a broken connection may fail too; it is gone either way
            pass

    def _open(self) -> Client:
        try:
            client = connect(self.settings, read_only=True)
        except HubError as exc:
            raise StoreUnavailable(str(exc)) from None
        with self._lock:
            self._all.append(client)
        return client

    def run(self, sql: str, params: dict[str, Any], stats: Stats, query_id: str) -> tuple[list[str], list[tuple]]:
        """One read-only query under the timeout; store errors become this module's errors."""
        with self._client() as client:
            settings = {**read_only_settings(client), "max_execution_time": self.timeout_s}
            try:
                result = client.query(sql, parameters=params, settings=settings,
                                      transport_settings={"query_id": f"{query_id}-{stats.queries}"})
            except Exception as exc:  # clickhouse-connect raises several types for one cause
                error = _store_error(exc, self.timeout_s)
            else:
                error = None
            if error is not None:
                raise error
        stats.add(result.summary or {})
        return list(result.column_names), result.result_rows

    def close(self) -> None:
        with self._lock:
            for client in self._all:
                client.close()
            self._all.clear()

    # -- listings ---------------------------------------------------------------------------------

    def page(self, listing: Listing, where: list[str], params: dict[str, Any], per_page: int, pos: Position,
             stats: Stats, query_id: str) -> Page:
        """One page of a listing plus the total number of items matching the filters."""
        filters = " AND ".join(where) or "1"
        grouped = f" GROUP BY {listing.group_by}" if listing.group_by else ""
        count_sql = (f"SELECT count() FROM (SELECT 1 FROM {listing.source} WHERE {filters}{grouped})" if grouped
                     else f"SELECT count() FROM {listing.source} WHERE {filters}")
        total = int(self.run(count_sql, dict(params), stats, query_id)[1][0][0])
        page_params = dict(params)
        # Reading backwards (before a key, or the last page) walks the order reversed, then flips.
        backwards = pos.before is not None or pos.last
        conds = list(where)
        forward_op = "<" if listing.descending else ">"
        backward_op = ">" if listing.descending else "<"
        if pos.after is not None:
            conds.append(_key_condition(listing.keys, pos.after, forward_op, page_params))
        if pos.before is not None:
            conds.append(_key_condition(listing.keys, pos.before, backward_op, page_params))
        limit = per_page
        if pos.last:
            limit = total - (max(math.ceil(total / per_page), 1) - 1) * per_page or per_page
        descending = listing.descending != backwards
        order = ", ".join(f"{k.expr} {'DESC' if descending else 'ASC'}" for k in listing.keys)
        offset = f" OFFSET {int(pos.offset)}" if pos.offset and not backwards and pos.after is None else ""
        sql = (f"SELECT {listing.columns} FROM {listing.source} WHERE {' AND '.join(conds) or '1'}{grouped} "
               f"ORDER BY {order} LIMIT {int(limit)}{offset}")
        names, rows = self.run(sql, page_params, stats, query_id)
        if backwards:
            rows = rows[::-1]
        dicts = [{n: _clean(v) for n, v in zip(names, row)} for row in rows]
        key_names = [k.expr.split(".")[-1] for k in listing.keys]
        first = [dicts[0][n] for n in key_names] if dicts else None
        last = [dicts[-1][n] for n in key_names] if dicts else None
        return Page(dicts, total, first, last)

    def one(self, sql: str, params: dict[str, Any], stats: Stats, query_id: str) -> list[dict[str, Any]]:
        names, rows = self.run(sql, params, stats, query_id)
        return [{n: _clean(v) for n, v in zip(names, row)} for row in rows]


def _store_error(exc: Exception, timeout_s: float) -> HubError:
    text = str(exc)
    if "TIMEOUT_EXCEEDED" in text or "code: 159" in text.lower() or "Timeout exceeded" in text:
        return QueryTimeout(f"the store query ran longer than the {timeout_s:g}s limit")
    if "Connection refused" in text or "Failed to establish" in text or "Max retries exceeded" in text:
        return StoreUnavailable(f"the store does not answer: {first_line(exc)}")
    return StoreUnavailable(f"the store refused the query: {first_line(exc)}")


def new_query_id() -> str:
    return uuid.uuid4().hex


def utc_ms(dt: datetime) -> int:
    """Epoch milliseconds of a datetime; a naive one is taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


# -- the API's listings -----------------------------------------------------------------------------

METRIC_DIMS = ("model", "endpoint", "team")


def metrics_listing(window: str, group_by: Sequence[str]) -> Listing:
    """Series of one window from the merged histograms of metrics_<window>_stats."""
    table = BY_NAME[window].table
    dims = [d for d in METRIC_DIMS if d in group_by]
    cols = ", ".join(["metric", "window_start", *dims, "sum(count) AS count", "sum(sum) AS sum",
                      "sum / nullIf(count, 0) AS mean", "min(min) AS min", "max(max) AS max",
                      "sumMap(histogram) AS hist", "hub_quantile(hist, 0.5) AS p50",
                      "hub_quantile(hist, 0.95) AS p95", "hub_quantile(hist, 0.99) AS p99"])
    keys = [Key("window_start", "time"), *(Key(d, "str") for d in dims)]
    return Listing(cols, f"{table}_stats", keys, descending=False,
                   group_by=", ".join(["metric", "window_start", *dims]))


EVENT_COLUMNS = ("event_id, event_time, ingest_time, source, event_type, correlation_id, parent_event_id, severity, "
                 "model, provider, endpoint, team, asset_id, latency_ms, input_tokens, output_tokens, total_tokens, "
                 "is_error, error_type, cost_usd, tags")
EVENTS = Listing(EVENT_COLUMNS, "events FINAL", [Key("event_time", "time"), Key("event_id", "str")], descending=True)

# Float32 columns through their shortest decimal form: 0.8366, not 0.8366000056266785.
ANOMALY_COLUMNS = ("id, metric, model, endpoint, team, window_start, window_ms, anomaly_type, "
                   "toFloat64(toString(score)) AS score, expected, spread, observed, detector, severity")
ANOMALIES = Listing(ANOMALY_COLUMNS, "anomalies FINAL", [Key("window_start", "time"), Key("id", "str")],
                    descending=True)

INCIDENT_COLUMNS = ("id, version, status, pattern, toFloat64(toString(confidence)) AS confidence, severity, opened_at, "
                    "start_time, end_time, assets, "
                    "root_cause_id, root_cause_reasons, impact, length(member_ids) AS member_count")
INCIDENTS = Listing(INCIDENT_COLUMNS, "incidents FINAL", [Key("opened_at", "time"), Key("id", "str")],
                    descending=True)

INCIDENT_SQL = (f"SELECT {INCIDENT_COLUMNS}, pattern_reasons, member_ids, member_roles, member_sources, "
                "member_kinds, member_times, overflow, merged_into FROM incidents FINAL WHERE id = {id:String}")
EDGES_SQL = ("SELECT from_id, to_id, relationship, toFloat64(toString(weight)) AS weight, time FROM incident_edges FINAL "
             "WHERE incident_id = {id:String} AND version = {version:UInt64} ORDER BY time, from_id, to_id")

# What alerting and the registry store (issue 16's tables). Alerts: the current state of each
# (alerts_current: its highest version) and the history (every version); budgets: each budget's
# standing per period (FINAL keeps the latest update); compliance reports per hour or day and
# scope; assets: the registry's latest profile of each.
ALERT_COLUMNS = ("id, version, rule, kind, status, event, severity, labels, value, threshold, starts_at, ends_at, "
                 "updated_at, summary, anomaly_ids, incident_ids")
ALERTS_CURRENT = Listing(ALERT_COLUMNS, "alerts_current", [Key("starts_at", "time"), Key("id", "str")],
                         descending=True)
ALERT_HISTORY = Listing(ALERT_COLUMNS, "alerts FINAL",
                        [Key("updated_at", "time"), Key("id", "str"), Key("version", "int")], descending=True)

BUDGET_COLUMNS = "budget, scope, period, period_start, period_end, amount_usd, spend, forecast, pct_used, updated_at"
BUDGETS = Listing(BUDGET_COLUMNS, "budget_status FINAL", [Key("period_start", "time"), Key("budget", "str")],
                  descending=True)
# Only the newest period of each budget: where each one stands now.
BUDGETS_LATEST = Listing(BUDGET_COLUMNS, "(SELECT * FROM budget_status FINAL ORDER BY budget, period_start DESC "
                                         "LIMIT 1 BY budget)",
                         BUDGETS.keys, descending=True)

COMPLIANCE_COLUMNS = ("id, version, granularity, window_start, window_end, scope_kind, scope, evaluations, compliant, "
                      "non_compliant, violations, compliance_rate, violation_rate, violations_by_type, "
                      "violations_by_severity, prev_evaluations, prev_violations, prev_compliance_rate, "
                      "compliance_rate_change, violation_rate_change, violations_change, asset_name, asset_version, "
                      "asset_owner, asset_category, asset_tags")
COMPLIANCE = Listing(COMPLIANCE_COLUMNS, "compliance_reports FINAL", [Key("window_start", "time"), Key("id", "str")],
                     descending=True)

ASSET_COLUMNS = ("asset_id, name, asset_type, version, owner, category, provider, tags, description, status, stage, "
                 "versions, replacement_asset_id, sunset_date, registered_at, updated_at, last_event_id, "
                 "last_event_type, events")
ASSETS = Listing(ASSET_COLUMNS, "assets FINAL", [Key("asset_id", "str")], descending=False)
ASSET_SQL = f"SELECT {ASSET_COLUMNS} FROM assets FINAL WHERE asset_id = {{id:String}}"
