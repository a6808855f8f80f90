"""`GET /api/v1/stream`: server-sent events of new anomalies, incident updates and alert versions.

Event types follow the data-models note: `data` (an anomaly, an incident at a new version, or an
alert at a new version: firing, renotify, resolved),
`heartbeat` (every heartbeat_s while nothing happens), `error` (a store query failed; the stream
goes on and retries) and `complete` (duration_s reached). Every event carries a sequence number
(+1 per event) and an SSE id `<sequence>.<cursor>`; a client that reconnects with `Last-Event-ID`
(browsers do it themselves) gets what came after that event, numbered on from it.

The store has no insertion order to follow, so the cursor is each kind's order key: anomalies by
(window_start, id), incidents by (end_time, id, version), alerts by (updated_at, id, version); an id holds the greatest key sent so
far (the start position before anything was sent). A stream starts by marking what is stored at
or before its cursor as seen, then sends every row it has not seen (an incident again at each new
version), including rows stored late for earlier windows, within [serve] stream_lookback_s. A
resumed stream sends the rows past the id's keys: rows stored for windows just before the first
stream's start can come again, and rows stored while away for windows before the id's key are
not sent (at most 1000 rows per kind per poll).
"""
import asyncio
import base64
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from config.errors import HubError
from config.settings import HubConfig
from connectors import store_api
from flows.api_common import ApiProblem, field_error
from schemas.api import Alert, Anomaly, Incident

Kind = Literal["anomalies", "incidents", "alerts"]
KINDS: tuple[Kind, ...] = ("anomalies", "incidents", "alerts")
POLL_LIMIT = 1000
RETRY_MS = 2000


@dataclass(frozen=True)
class Feed:
    """What one kind streams: its rows, the time that orders them, and whether a row comes again
    at each new version (incidents, alerts) or once (anomalies)."""

    columns: str
    source: str
    time_col: str
    versioned: bool
    payload_kind: str
    model: type[BaseModel]

    def start_key(self, ms: int) -> tuple:
        return (ms, "", 0) if self.versioned else (ms, "")


FEEDS: dict[Kind, Feed] = {
    "anomalies": Feed(store_api.ANOMALY_COLUMNS, "anomalies FINAL", "window_start", False, "anomaly", Anomaly),
    "incidents": Feed(store_api.INCIDENT_COLUMNS, "incidents FINAL", "end_time", True, "incident", Incident),
    # alerts FINAL keeps every version (its key is (id, version)): each one is an event.
    "alerts": Feed(store_api.ALERT_COLUMNS, "alerts FINAL", "updated_at", True, "alert", Alert),
}


def _bad_id(message: str) -> ApiProblem:
    return ApiProblem("validation-error", f"Last-Event-ID {message}",
                      [field_error("header.last-event-id", message, "invalid_cursor")])


@dataclass
class Cursor:
    """Where a stream stands: the last sequence number and, per kind, the last key sent."""

    seq: int
    keys: dict[Kind, tuple]

    def encode(self) -> str:
        raw = orjson.dumps([v for kind in KINDS for v in self.keys[kind]])
        return f"{self.seq}.{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        try:
            seq, _, rest = text.partition(".")
            values = orjson.loads(base64.urlsafe_b64decode(rest + "=" * (-len(rest) % 4)))
            if not isinstance(values, list):
                raise ValueError
            if len(values) == 5:  # an id from before alerts were streamed: alerts from its incident time
                values = [*values, values[2], "", 0]
            keys: dict[Kind, tuple] = {}
            for kind in KINDS:
                width = 3 if FEEDS[kind].versioned else 2
                part, values = values[:width], values[width:]
                keys[kind] = (int(part[0]), str(part[1]), *(int(v) for v in part[2:]))
            if values or any(len(keys[k]) != (3 if FEEDS[k].versioned else 2) for k in KINDS):
                raise ValueError
            cursor = cls(int(seq), keys)
        except (ValueError, TypeError, IndexError):
            raise _bad_id("is not an id this stream sent") from None
        if cursor.seq < 0:
            raise _bad_id("has a negative sequence")
        return cursor


def start_cursor(since: Annotated[datetime | None, Query(alias="from", description="without Last-Event-ID: send what "
                                                         "was stored for windows after this time (default: now, "
                                                         "only what is new)")] = None,
                 last_event_id: Annotated[str | None, Header(max_length=2000)] = None) -> Cursor:
    """Validated before the stream starts, so a bad id is a problem answer, not a broken stream."""
    if last_event_id:
        return Cursor.decode(last_event_id)
    ms = store_api.utc_ms(since) if since is not None else int(time.time() * 1000)
    return Cursor(0, {kind: FEEDS[kind].start_key(ms) for kind in KINDS})


@dataclass
class Watch:
    """One kind's polling state: what was sent (or was there before the cursor) within the lookback."""

    seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (time ms, version)
    horizon_ms: int = 0  # rows older than this are not polled any more
    polled: bool = False

    def is_new(self, row_id: str, t_ms: int, version: int, key: tuple, cursor_key: tuple) -> bool:
        """Record the row; True when it is to be sent: not seen at this version, and on the first
        poll of a (resumed) stream only when past the cursor."""
        before = self.seen.get(row_id)
        self.seen[row_id] = (t_ms, max(version, before[1] if before else -1))
        if before is not None and before[1] >= version:
            return False
        return self.polled or key > cursor_key

    def advance(self, newest_ms: int, lookback_ms: int) -> None:
        self.polled = True
        horizon = max(self.horizon_ms, newest_ms - lookback_ms)
        if horizon > self.horizon_ms:
            self.horizon_ms = horizon
            self.seen = {k: v for k, v in self.seen.items() if v[0] >= horizon}


def build_stream_router(cfg: HubConfig, reader: store_api.StoreReader) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    serve = cfg.serve
    lookback_ms = int(serve.stream_lookback_s * 1000)

    def poll(kind: Kind, lo_ms: int, severity: list[str] | None) -> list[dict[str, Any]]:
        feed = FEEDS[kind]
        where = f"{feed.time_col} >= fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC')"
        params: dict[str, Any] = {"lo": lo_ms}
        if severity:
            where += " AND severity IN {severity:Array(String)}"
            params["severity"] = severity
        order = f"{feed.time_col}, id" + (", version" if feed.versioned else "")
        sql = (f"SELECT {feed.columns}, {feed.time_col} AS _t FROM {feed.source} WHERE {where} ORDER BY {order} "
               f"LIMIT {POLL_LIMIT}")
        return reader.one(sql, params, store_api.Stats(), store_api.new_query_id())

    @router.get("/stream", response_class=EventSourceResponse, tags=["stream"],
                summary="Server-sent events: new anomalies, incident updates and alerts (data, heartbeat, error, "
                        "complete)")
    async def stream(request: Request, cursor: Annotated[Cursor, Depends(start_cursor)],
                     kinds: Annotated[list[Kind] | None, Query(description="what to stream (default all)")] = None,
                     severity: Annotated[list[str] | None, Query(max_length=20, description="only these severities")] = None,
                     heartbeat_s: Annotated[float, Query(ge=0.2, le=300)] = serve.stream_heartbeat_s,
                     duration_s: Annotated[float | None, Query(gt=0, le=86_400, description="end with a `complete` "
                                                                "event after this long (default: never)")] = None,
                     ) -> AsyncIterable[ServerSentEvent]:
        wanted = list(dict.fromkeys(kinds)) if kinds else list(KINDS)
        watches = {k: Watch() for k in wanted}
        # The cursor of a kind is the greatest key sent so far (the start position until then),
        # which can lie before the start: new rows are often for windows that closed minutes ago.
        sent_max: dict[str, tuple | None] = {}
        started = last_sent = time.monotonic()
        first = True

        def event(kind: str, payload: dict[str, Any]) -> ServerSentEvent:
            nonlocal first
            cursor.seq += 1
            retry = RETRY_MS if first else None
            first = False
            return ServerSentEvent(event=kind, id=cursor.encode(), retry=retry,
                                   data={"sequence": cursor.seq, "type": kind, **payload})

        # What is already stored at the cursor counts as seen; only what lies past it is sent.
        for kind in wanted:
            watches[kind].horizon_ms = cursor.keys[kind][0] - lookback_ms
        while True:
            if await request.is_disconnected():
                return
            for kind in wanted:
                watch, feed = watches[kind], FEEDS[kind]
                try:
                    rows = await run_in_threadpool(poll, kind, watch.horizon_ms, severity)
                except HubError as exc:
                    yield event("error", {"error": {"code": type(exc).__name__, "detail": str(exc),
                                                    "retrying_in_s": serve.stream_poll_s}})
                    last_sent = time.monotonic()
                    continue
                for row in rows:
                    t_ms = store_api.utc_ms(row.pop("_t"))
                    version = row["version"] if feed.versioned else 0
                    key: tuple = (t_ms, row["id"], version) if feed.versioned else (t_ms, row["id"])
                    if not watch.is_new(row["id"], t_ms, version, key, cursor.keys[kind]):
                        continue
                    cursor.keys[kind] = max(key, sent_max.get(kind) or key)
                    sent_max[kind] = cursor.keys[kind]
                    yield event("data", {"kind": feed.payload_kind,
                                         "data": feed.model(**row).model_dump(mode="json")})
                    last_sent = time.monotonic()
                newest = cursor.keys[kind][0]
                watch.advance(max(newest, watch.horizon_ms + lookback_ms), lookback_ms)
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                yield event("complete", {"reason": f"duration_s={duration_s:g} reached"})
                return
            if now - last_sent >= heartbeat_s:
                yield event("heartbeat", {"time": datetime.now(timezone.utc).isoformat()})
                last_sent = now
            await asyncio.sleep(min(serve.stream_poll_s, heartbeat_s))

    return router
