"""`hub serve`: the HTTP API over the store (FastAPI on uvicorn), OpenAPI at /docs.

Wiring only: the routes (flows/api_read.py, flows/api_ops.py), the shared problem/key/paging helpers
(flows/api_common.py) and the store queries (connectors/store_api.py) meet here. On an
embedded store that a `hub run` serves live, reads go to that run over HTTP; otherwise the
store is opened in this process (and a `hub run` on it cannot start until this stops). Ingest
goes to the Kafka source topics, or without Kafka to the local spool `hub run --ingest` reads.
"""
from __future__ import annotations

import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from config.errors import HubError
from config.settings import HubConfig, kafka_client_config
from connectors import live_store, store_api
from connectors.ingest_producer import IngestProducer
from connectors.clickhouse import chdb_path, is_embedded
from connectors.spool import SpoolWriter, spool_dir
from flows.api_common import PROBLEMS, ApiKeys, ApiProblem, install_problem_handlers, is_loopback, key_digests
from flows.api_ops import build_ops_router
from flows.api_read import build_read_router
from flows.api_stream import build_stream_router
from flows.ingest import Destination, build_ingest_router
from schemas.api import PROBLEM_MEDIA_TYPE, Problem

API_TITLE = "LLM Analytics Hub API"
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": PROBLEMS[slug].title}
    for status, slug in ((401, "unauthorized"), (422, "validation-error"), (429, "too-many-requests"),
                         (503, "store-unavailable"), (504, "query-timeout"))
}


class ServeError(HubError):
    """`hub serve` cannot start as configured; one line."""


def ingest_destination(cfg: HubConfig) -> Destination | None:
    """The source topics when Kafka is configured, else the local spool (beside an embedded store,
    or [spool] dir), else none (ingest answers 503)."""
    if cfg.kafka.bootstrap_servers:
        return IngestProducer(kafka_client_config(cfg), cfg.serve.delivery_timeout_s, cfg.serve.max_in_flight,
                              cfg.serve.max_body_bytes)
    where = spool_dir(cfg.spool, cfg.clickhouse)
    return SpoolWriter(where, cfg.spool.segment_bytes, cfg.spool.max_pending_bytes) if where else None


def create_app(cfg: HubConfig, reader: store_api.StoreReader | None = None, keys: list[bytes] | None = None,
               producer: Destination | None = None) -> FastAPI:
    """The ASGI app. `keys`: API key digests (None: from [serve] api_keys). `producer`: where ingest
    puts accepted records (None: `ingest_destination`)."""
    reader = reader or store_api.StoreReader(cfg.clickhouse, cfg.serve.max_concurrent_queries, cfg.serve.query_timeout_s)
    digests = key_digests(cfg.serve.api_keys) if keys is None else keys
    if producer is None:
        producer = ingest_destination(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        reader.close()  # an embedded store opened here is free again for a `hub run`
        if producer is not None:
            producer.close()

    app = FastAPI(title=API_TITLE, version="1", lifespan=lifespan,
                  description="Read the hub's store: windowed metrics with percentiles from merged histograms, "
                              "events, anomalies and incidents with their event graph, alerts, budget status, "
                              "compliance reports and registry assets. Every answer is one "
                              "wrapper (status, query id, data, pagination, execution metrics); every error an "
                              "RFC 9457 problem detail (application/problem+json).",
                  responses=PROBLEM_RESPONSES)
    app.state.reader = reader
    install_problem_handlers(app)
    app.include_router(build_read_router(cfg, reader), dependencies=[Depends(ApiKeys(digests))])
    app.include_router(build_ops_router(cfg, reader), dependencies=[Depends(ApiKeys(digests))])
    app.include_router(build_ingest_router(cfg, producer), dependencies=[Depends(ApiKeys(digests))])
    app.include_router(build_stream_router(cfg, reader), dependencies=[Depends(ApiKeys(digests))])

    @app.get("/problems/{slug}", include_in_schema=False)
    def problem_type(slug: str) -> PlainTextResponse:
        kind = PROBLEMS.get(slug)
        if kind is None:
            raise ApiProblem("not-found", f"no problem type {slug!r}")
        return PlainTextResponse(f"{kind.title} (HTTP {kind.status}, code {kind.code})\n\nWhat to do: {kind.suggestion}\n")

    @app.get("/healthz", tags=["health"], summary="The API process answers (no store query, no key needed)")
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app


def check_bind(host: str, port: int) -> None:
    """Fail at once with one line when the port is taken (uvicorn would log and exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                             "(another `hub serve`? set --port or HUB_SERVE__PORT)") from None


def serve(cfg: HubConfig) -> int:
    """Run the API until Ctrl-C / SIGTERM."""
    import uvicorn

    host, port = cfg.serve.host, cfg.serve.port
    digests = key_digests(cfg.serve.api_keys)
    if not digests and not is_loopback(host):
        raise ServeError(f"serving on {host} (not a loopback address) needs API keys: set HUB_SERVE__API_KEYS "
                         "(comma-separated keys or sha256:<hex>), or bind 127.0.0.1")
    check_bind(host, port)
    reader = store_api.StoreReader(cfg.clickhouse, cfg.serve.max_concurrent_queries, cfg.serve.query_timeout_s)
    stats = store_api.Stats()
    try:  # fail now, not on the first request, when the store is not there
        reader.run("SELECT 1", {}, stats, store_api.new_query_id())
    except HubError as exc:
        reader.close()
        raise ServeError(str(exc)) from None
    where = cfg.clickhouse.dsn
    if is_embedded(where):
        live = live_store.find(chdb_path(where))
        where += (f" (live, served by `hub run` pid {live.pid})" if live
                  else " (opened here: a `hub run` on it cannot start while this serves)")
    keys = f"{len(digests)} API key(s)" if digests else "no API keys (loopback only)"
    spool = spool_dir(cfg.spool, cfg.clickhouse)
    ingest = (f"ingest to Kafka {cfg.kafka.bootstrap_servers}" if cfg.kafka.bootstrap_servers
              else f"ingest spooled to {spool} (`hub run --ingest --clickhouse {cfg.clickhouse.dsn}` reads it)" if spool
              else "no ingest (no [kafka] bootstrap_servers, no [spool] dir)")
    print(f"hub serve: API on http://{host}:{port} (OpenAPI: /docs); reading {where}; {ingest}; {keys}",
          file=sys.stderr, flush=True)
    app = create_app(cfg, reader, digests)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=5))
    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again to the handlers it
    # found: make those no-ops, so a stop is a clean exit (0), as for `hub run`.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)
    server.run()
    print("hub serve: stopped", file=sys.stderr)
    return 0
