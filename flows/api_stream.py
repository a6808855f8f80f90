"""`GET /api/v1/stream`: server-sent events of new anomalies and incident updates.

Event types follow the data-models note: `data` (an anomaly, or an incident at a new version),
`heartbeat` (every heartbeat_s while nothing happens), `error` (a store query failed; the stream
goes on and retries) and `complete` (duration_s reached). Every event carries a sequence number
(+1 per event) and an SSE id `<sequence>.<cursor>`; a client that reconnects with `Last-Event-ID`
(browsers do it themselves) gets what came after that event, numbered on from it.

The store has no insertion order to follow, so the cursor is each kind's order key: anomalies by
(window_start, id), incidents by (end_time, id, version); an id holds the greatest key sent so
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
from starlette.concurrency import run_in_threadpool

from config.errors import HubError
from config.settings import HubConfig
from connectors import store_api
from flows.api_common import ApiProblem, field_error
from schemas.api import Anomaly, Incident

Kind = Literal["anomalies", "incidents"]
KINDS: tuple[Kind, ...] = ("anomalies", "incidents")
POLL_LIMIT = 1000
RETRY_MS = 2000


@dataclass
class Cursor:
    """Where a stream stands: the last sequence number and, per kind, the last key sent."""

    seq: int
    anomaly: tuple[int, str]  # (window_start ms, id)
    incident: tuple[int, str, int]  # (end_time ms, id, version)

    def encode(self) -> str:
        raw = orjson.dumps([*self.anomaly, *self.incident])
        return f"{self.seq}.{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        try:
            seq, _, rest = text.partition(".")
            a_ms, a_id, i_ms, i_id, i_ver = orjson.loads(base64.urlsafe_b64decode(rest + "=" * (-len(rest) % 4)))
            cursor = cls(int(seq), (int(a_ms), str(a_id)), (int(i_ms), str(i_id), int(i_ver)))
        except (ValueError, TypeError):
            raise ApiProblem("validation-error", "Last-Event-ID is not an id of this stream",
                             [field_error("header.last-event-id", "not an id this stream sent", "invalid_cursor")]) \
                from None
        if cursor.seq < 0:
            raise ApiProblem("validation-error", "Last-Event-ID has a negative sequence",
                             [field_error("header.last-event-id", "negative sequence", "invalid_cursor")])
        return cursor


def start_cursor(since: Annotated[datetime | None, Query(alias="from", description="without Last-Event-ID: send what "
                                                         "was stored for windows after this time (default: now, "
                                                         "only what is new)")] = None,
                 last_event_id: Annotated[str | None, Header(max_length=2000)] = None) -> Cursor:
    """Validated before the stream starts, so a bad id is a problem answer, not a broken stream."""
    if last_event_id:
        return Cursor.decode(last_event_id)
    ms = store_api.utc_ms(since) if since is not None else int(time.time() * 1000)
    return Cursor(0, (ms, ""), (ms, "", 0))


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
        if kind == "anomalies":
            cols, table, time_col, order = store_api.ANOMALY_COLUMNS, "anomalies", "window_start", "window_start, id"
        else:
            cols, table, time_col, order = store_api.INCIDENT_COLUMNS, "incidents", "end_time", "end_time, id"
        where = f"{time_col} >= fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC')"
        params: dict[str, Any] = {"lo": lo_ms}
        if severity:
            where += " AND severity IN {severity:Array(String)}"
            params["severity"] = severity
        sql = f"SELECT {cols}, {time_col} AS _t FROM {table} FINAL WHERE {where} ORDER BY {order} LIMIT {POLL_LIMIT}"
        return reader.one(sql, params, store_api.Stats(), store_api.new_query_id())

    @router.get("/stream", response_class=EventSourceResponse, tags=["stream"],
                summary="Server-sent events: new anomalies and incident updates (data, heartbeat, error, complete)")
    async def stream(request: Request, cursor: Annotated[Cursor, Depends(start_cursor)],
                     kinds: Annotated[list[Kind] | None, Query(description="what to stream (default both)")] = None,
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
            key = cursor.anomaly if kind == "anomalies" else cursor.incident
            watches[kind].horizon_ms = key[0] - lookback_ms
        while True:
            if await request.is_disconnected():
                return
            for kind in wanted:
                watch = watches[kind]
                try:
                    rows = await run_in_threadpool(poll, kind, watch.horizon_ms, severity)
                except HubError as exc:
                    yield event("error", {"error": {"code": type(exc).__name__, "detail": str(exc),
                                                    "retrying_in_s": serve.stream_poll_s}})
                    last_sent = time.monotonic()
                    continue
                for row in rows:
                    t_ms = store_api.utc_ms(row.pop("_t"))
                    if kind == "anomalies":
                        key: tuple = (t_ms, row["id"])
                        if not watch.is_new(row["id"], t_ms, 0, key, cursor.anomaly):
                            continue
                        cursor.anomaly = max(key, sent_max.get(kind) or key)
                        sent_max[kind] = cursor.anomaly
                        payload = {"kind": "anomaly", "data": Anomaly(**row).model_dump(mode="json")}
                    else:
                        key = (t_ms, row["id"], row["version"])
                        if not watch.is_new(row["id"], t_ms, row["version"], key, cursor.incident):
                            continue
                        cursor.incident = max(key, sent_max.get(kind) or key)
                        sent_max[kind] = cursor.incident
                        payload = {"kind": "incident", "data": Incident(**row).model_dump(mode="json")}
                    yield event("data", payload)
                    last_sent = time.monotonic()
                newest = (cursor.anomaly if kind == "anomalies" else cursor.incident)[0]
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
