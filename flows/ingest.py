"""Ingest routes of `hub serve`: OTLP/HTTP (`POST /v1/traces`, `/v1/metrics`, `/v1/logs`) as
OpenTelemetry SDK exporters send them, and `POST /api/v1/events` (hub or base envelopes, one or
a batch, per-item status). Accepted messages go to the source topics, or without Kafka to the
local spool that `hub run --ingest` reads; the answer comes only once they are durable: the
broker acknowledged them (connectors/ingest_producer.py) or they are fsynced (connectors/spool.py).

Status codes follow the OTLP/HTTP spec on /v1/*: 200 (with partial_success when some items were
dropped), 400 for a body that is not an export request, 413 too large, 415 unsupported media
type, 429 / 503 with Retry-After when the producer is full or the broker does not take the
records (exporters retry those); error bodies are google.rpc.Status in the request's encoding.
"""
from __future__ import annotations

import asyncio
import zlib
from concurrent.futures import Future
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from config.errors import HubError
from config.settings import HubConfig
from connectors.ingest_errors import Backpressure, DeliveryFailed, Record, TooLarge
from flows.api_common import ApiProblem, field_error
from flows.ingest_otlp import SIGNALS, BadOtlp, Signal, check_json, check_proto, response_body, status_body
from operators.normalize.formats import detect_format
from operators.normalize.normalizer import Normalizer
from schemas.raw import RawMessage

JSON, PROTOBUF = "application/json", "application/x-protobuf"
# google.rpc.Code values carried in OTLP error bodies.
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE = 3, 8, 14


class BodyTooLarge(HubError):
    pass


class BadEncoding(HubError):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, decompressed (gzip or none), refused past `limit` bytes before or after
    decompression (a small gzip can unpack to gigabytes)."""
    size = int(request.headers.get("content-length") or 0)
    if size > limit:
        raise BodyTooLarge(f"the body is {size:,} bytes; the limit is {limit:,}")
    chunks, got = [], 0
    async for chunk in request.stream():
        got += len(chunk)
        if got > limit:
            raise BodyTooLarge(f"the body is over the {limit:,}-byte limit")
        chunks.append(chunk)
    data = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity", "none"):
        return data
    if encoding != "gzip":
        raise BadEncoding(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(data, limit + 1)
    except zlib.error as exc:
        raise BadEncoding(f"the body is not valid gzip: {exc}") from None
    if len(out) > limit or inflate.unconsumed_tail:
        raise BodyTooLarge(f"the body unpacks to over the {limit:,}-byte limit")
    return out


class Destination(Protocol):
    """Where accepted records go (the Kafka producer or the spool writer): `send` raises
    Backpressure at once when full; its future fails with DeliveryFailed / TooLarge."""

    def send(self, records: list[Record]) -> Future[None]: ...

    def close(self) -> None: ...


async def deliver(producer: Destination | None, records: list[Record], timeout_s: float) -> None:
    if producer is None:
        raise DeliveryFailed("no Kafka is configured ([kafka] bootstrap_servers) and no spool ([spool] dir; "
                             "default only beside an embedded store): `hub serve` cannot ingest")
    future = producer.send(records)
    try:
        await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
    except asyncio.TimeoutError:
        raise DeliveryFailed(f"the records were not made durable within {timeout_s:g}s") from None


def build_ingest_router(cfg: HubConfig, producer: Destination | None) -> APIRouter:
    router = APIRouter()
    serve = cfg.serve
    otlp_topic = cfg.kafka.topics.telemetry
    topics = cfg.kafka.topics.by_source()
    wait_s = serve.delivery_timeout_s + 5  # the producer's own timeout answers first
    normalizer = Normalizer(cfg.normalization)

    async def otlp(request: Request, signal: Signal) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        as_json = ctype == JSON

        def status(code: int, rpc: int, message: str, headers: dict[str, str] | None = None) -> Response:
            return Response(status_body(rpc, message, as_json), status_code=code, headers=headers,
                            media_type=JSON if as_json else PROTOBUF)

        if ctype not in (JSON, PROTOBUF):
            return status(415, INVALID_ARGUMENT, f"Content-Type {ctype or '(none)'} is not supported; "
                                                 f"send {PROTOBUF} or {JSON}")
        try:
            data = await read_body(request, serve.max_body_bytes)
        except BodyTooLarge as exc:
            return status(413, INVALID_ARGUMENT, str(exc))
        except BadEncoding as exc:
            return status(415 if "not supported" in str(exc) else 400, INVALID_ARGUMENT, str(exc))
        try:
            checked = check_json(signal, data) if as_json else check_proto(signal, data)
        except BadOtlp as exc:
            return status(400, INVALID_ARGUMENT, str(exc))
        try:
            if checked.body:
                await deliver(producer, [(otlp_topic, None, checked.body)], wait_s)
        except Backpressure as exc:
            return status(429, RESOURCE_EXHAUSTED, str(exc), {"Retry-After": "1"})
        except TooLarge as exc:
            return status(413, INVALID_ARGUMENT, str(exc))
        except DeliveryFailed as exc:
            return status(503, UNAVAILABLE, str(exc), {"Retry-After": "5"})
        return Response(response_body(signal, checked, as_json), media_type=JSON if as_json else PROTOBUF)

    def route_for(signal: Signal) -> Any:
        async def route(request: Request) -> Response:
            return await otlp(request, signal)
        return route

    for name in SIGNALS:
        router.add_api_route(f"/v1/{name}", route_for(SIGNALS[name]), methods=["POST"], tags=["ingest"], include_in_schema=True,
                             summary=f"OTLP/HTTP {name} export (protobuf or JSON, gzip)",
                             response_class=Response, openapi_extra={"requestBody": {"content": {
                                 PROTOBUF: {}, JSON: {}}, "required": True}})

    @router.post("/api/v1/events", tags=["ingest"], status_code=202,
                 summary="Ingest hub or base envelopes: one object or a JSON array; per-item status",
                 openapi_extra={"requestBody": {"content": {JSON: {}}, "required": True}})
    async def events(request: Request) -> Any:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != JSON:
            raise ApiProblem("unsupported-media-type", f"Content-Type {ctype or '(none)'}; send {JSON}")
        try:
            data = await read_body(request, serve.max_body_bytes)
        except BodyTooLarge as exc:
            raise ApiProblem("payload-too-large", str(exc)) from None
        except BadEncoding as exc:
            raise ApiProblem("bad-request", str(exc)) from None
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ApiProblem("bad-request", f"the body is not JSON: {exc}") from None
        single = isinstance(body, dict)
        items = [body] if single else body
        if not isinstance(items, list) or not items:
            raise ApiProblem("validation-error", "send one event object or a non-empty array of them",
                             [field_error("body", "expected an object or a non-empty array", "type")])
        if len(items) > serve.max_batch_items:
            raise ApiProblem("payload-too-large", f"{len(items):,} items; at most {serve.max_batch_items:,} per request")
        results, records = judge(normalizer, items, topics)
        try:
            await deliver(producer, records, wait_s)
        except Backpressure as exc:
            raise ApiProblem("too-many-requests", str(exc), headers={"Retry-After": "1"}) from None
        except TooLarge as exc:
            raise ApiProblem("payload-too-large", str(exc)) from None
        except DeliveryFailed as exc:
            raise ApiProblem("store-unavailable", str(exc), headers={"Retry-After": "5"}) from None
        accepted = sum(r["status"] == "accepted" for r in results)
        if single and not accepted:
            r = results[0]
            raise ApiProblem("validation-error", f"the event was rejected: {r['reason']}",
                             [field_error(f"body.{r['field']}" if r["field"] else "body", r["reason"], r["code"])])
        status = "success" if accepted == len(results) else "partial" if accepted else "failed"
        return JSONResponse({"status": status, "data": {"accepted": accepted, "rejected": len(results) - accepted,
                                                        "items": results}},
                            status_code=202 if accepted else 422)

    return router


def judge(normalizer: Normalizer, items: list[Any], topics: dict[str, str]
          ) -> tuple[list[dict[str, Any]], list[Record]]:
    """Per item: accepted (with the topic of its source) or rejected with the normalizer's reason.
    Items are checked as `hub run` will check them, so what is accepted here is not a dead letter
    there (a duplicate event id aside: dedup happens in the flow)."""
    results: list[dict[str, Any]] = []
    raws: list[RawMessage] = []
    for i, item in enumerate(items):
        raw = orjson.dumps(item) if isinstance(item, dict) else b""
        fmt = detect_format(raw) if raw else None
        if fmt not in ("hub", "base"):
            results.append({"index": i, "status": "rejected", "code": "not_an_envelope", "field": "",
                            "reason": "not a hub envelope (event_type, payload, ...) or a base event "
                                      "(eventType, data, ...)"})
            continue
        results.append({"index": i, "status": "pending"})
        raws.append(RawMessage(raw, topic="http", offset=i))
    out = normalizer.normalize_batch(raws)
    rejected = {d.offset: d for d in out.dead_letters}
    records = []
    for n, raw in enumerate(raws):
        i = raw.offset
        if i in rejected:
            d = rejected[i]
            results[i] = {"index": i, "status": "rejected", "code": d.code, "field": d.field, "reason": d.reason,
                          "event_id": d.event_id}
            continue
        event = out.events[out.starts[n]]
        results[i] = {"index": i, "status": "accepted", "event_id": event.event_id, "source": event.source}
        records.append((topics[event.source], event.event_id.encode(), raw.value))
    return results, records
