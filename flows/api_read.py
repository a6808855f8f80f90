"""Read routes of the HTTP API: metrics, events, anomalies, incidents with their graph.

Route functions are plain `def`: FastAPI runs them on its thread pool, and the store reader
bounds how many reach the store at once. Every list answers the one wrapper with page metadata
and first/prev/next/last/self links whose cursors are keyset positions.
"""

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from config.settings import HubConfig
from connectors import store_api
from flows.api_common import ApiProblem, field_error, metrics_of, pagination, position
from schemas.api import (Anomaly, Event, Incident, IncidentEdge, IncidentGraph, IncidentMember, MetricPoint,
                         QueryStatus, Response)
from schemas.rollups import BY_NAME, WINDOWS

WindowName = Literal[tuple(w.name for w in WINDOWS)]  # type: ignore[valid-type]
Dim = Literal["model", "endpoint", "team"]
NAME_PATTERN = r"^[A-Za-z0-9_.:\-]{1,200}$"
DOCS = {"after": "keyset cursor: the page after this position (from a `next` link)",
        "before": "keyset cursor: the page before this position (from a `prev` link)",
        "last": "the last page (from the `last` link)",
        "page": "page number; without a cursor it is read by offset (a jump), with one it only labels the page"}


def _time_filters(column: str, since: datetime | None, until: datetime | None, where: list[str],
                  params: dict[str, Any]) -> None:
    if since is not None and until is not None and since >= until:
        raise ApiProblem("validation-error", "from must be before to",
                         [field_error("query.from", "must be before `to`", "range")])
    if since is not None:
        where.append(f"{column} >= fromUnixTimestamp64Milli({{since_ms:Int64}}, 'UTC')")
        params["since_ms"] = store_api.utc_ms(since)
    if until is not None:
        where.append(f"{column} < fromUnixTimestamp64Milli({{until_ms:Int64}}, 'UTC')")
        params["until_ms"] = store_api.utc_ms(until)


def _equals(column: str, value: str | bool | None, kind: str, where: list[str], params: dict[str, Any]) -> None:
    if value is not None:
        where.append(f"{column} = {{{column}:{kind}}}")
        params[column] = value


def build_read_router(cfg: HubConfig, reader: store_api.StoreReader) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    serve = cfg.serve
    Page = Annotated[int, Query(ge=1, description=DOCS["page"])]
    PerPage = Annotated[int, Query(ge=1, le=serve.max_page_size, description=f"items per page (max {serve.max_page_size})")]
    After = Annotated[str | None, Query(max_length=2000, description=DOCS["after"])]
    Before = Annotated[str | None, Query(max_length=2000, description=DOCS["before"])]
    Last = Annotated[bool, Query(description=DOCS["last"])]
    Since = Annotated[datetime | None, Query(alias="from", description="start of the time range (ISO 8601, inclusive)")]
    Until = Annotated[datetime | None, Query(alias="to", description="end of the time range (ISO 8601, exclusive)")]
    Name = Annotated[str | None, Query(pattern=NAME_PATTERN)]

    def listing(request: Request, lst: store_api.Listing, where: list[str], params: dict[str, Any], page: int,
                per_page: int, after: str | None, before: str | None, last: bool
                ) -> tuple[store_api.Page, store_api.Stats, str, Any]:
        pos = position(page, per_page, after, before, last, lst.keys)
        stats, qid = store_api.Stats(), store_api.new_query_id()
        data = reader.page(lst, where, params, per_page, pos, stats, qid)
        if last:
            page = max(-(-data.total // per_page), 1)
        return data, stats, qid, pagination(request.url, page, per_page, data)

    @router.get("/metrics", response_model=Response[list[MetricPoint]], tags=["metrics"],
                summary="Windowed metric series: count, sum, mean, min, max, p50/p95/p99")
    def metrics(request: Request,
                name: Annotated[str, Query(pattern=NAME_PATTERN, description="metric, e.g. latency_ms, cost_usd, "
                                           "input_tokens, requests, errors")],
                window: Annotated[WindowName, Query(description="window size")] = "1h",
                model: Name = None, endpoint: Name = None, team: Name = None,
                group_by: Annotated[list[Dim] | None, Query(description="dimensions to keep apart; the others are "
                                                             "merged (histograms added, so percentiles stay right). "
                                                             "Default: model, endpoint, team")] = None,
                since: Since = None, until: Until = None, page: Page = 1, per_page: PerPage = serve.default_page_size,
                after: After = None, before: Before = None, last: Last = False) -> Any:
        dims = list(dict.fromkeys(group_by)) if group_by else ["model", "endpoint", "team"]
        where, params = ["metric = {metric:String}"], {"metric": name}
        for col, value in (("model", model), ("endpoint", endpoint), ("team", team)):
            _equals(col, value, "String", where, params)
        _time_filters("window_start", since, until, where, params)
        lst = store_api.metrics_listing(window, dims)
        data, stats, qid, pages = listing(request, lst, where, params, page, per_page, after, before, last)
        # The newest windows are still open (allowed lateness) and rollups trail metrics_1m.
        open_after = time.time() - BY_NAME[window].span_s - cfg.windows.allowed_lateness_s - cfg.clickhouse.rollup_refresh_s
        end = until.timestamp() if until is not None else time.time()
        status = QueryStatus.partial if end > open_after else QueryStatus.success
        points = [MetricPoint(window=window, **{k: v for k, v in row.items() if k != "hist"}) for row in data.rows]
        return Response[list[MetricPoint]](status=status, query_id=qid, data=points, pagination=pages,
                                           metrics=metrics_of(stats, len(points)))

    @router.get("/events", response_model=Response[list[Event]], tags=["events"],
                summary="Search stored events, newest first")
    def events(request: Request, source: Name = None, event_type: Name = None, model: Name = None,
               endpoint: Name = None, team: Name = None, severity: Name = None,
               correlation_id: Annotated[str | None, Query(max_length=200)] = None,
               asset_id: Annotated[str | None, Query(max_length=200)] = None,
               is_error: bool | None = None,
               q: Annotated[str | None, Query(min_length=2, max_length=200,
                                              description="text the event's payload contains (case-insensitive)")] = None,
               since: Since = None, until: Until = None, page: Page = 1, per_page: PerPage = serve.default_page_size,
               after: After = None, before: Before = None, last: Last = False) -> Any:
        where: list[str] = []
        params: dict[str, Any] = {}
        for col, value in (("source", source), ("event_type", event_type), ("model", model), ("endpoint", endpoint),
                           ("team", team), ("severity", severity), ("correlation_id", correlation_id),
                           ("asset_id", asset_id)):
            _equals(col, value, "String", where, params)
        if is_error is not None:
            _equals("is_error", int(is_error), "UInt8", where, params)
        if q is not None:
            where.append("positionCaseInsensitiveUTF8(payload, {q:String}) > 0")
            params["q"] = q
        _time_filters("event_time", since, until, where, params)
        data, stats, qid, pages = listing(request, store_api.EVENTS, where, params, page, per_page, after, before, last)
        rows = [Event(**row) for row in data.rows]
        return Response[list[Event]](status=QueryStatus.success, query_id=qid, data=rows, pagination=pages,
                                     metrics=metrics_of(stats, len(rows)))

    @router.get("/anomalies", response_model=Response[list[Anomaly]], tags=["anomalies"],
                summary="Detected anomalies, newest window first")
    def anomalies(request: Request, metric: Name = None, model: Name = None, endpoint: Name = None, team: Name = None,
                  anomaly_type: Name = None, severity: Name = None,
                  min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
                  since: Since = None, until: Until = None, page: Page = 1, per_page: PerPage = serve.default_page_size,
                  after: After = None, before: Before = None, last: Last = False) -> Any:
        where: list[str] = []
        params: dict[str, Any] = {}
        for col, value in (("metric", metric), ("model", model), ("endpoint", endpoint), ("team", team),
                           ("anomaly_type", anomaly_type), ("severity", severity)):
            _equals(col, value, "String", where, params)
        if min_score is not None:
            where.append("score >= {min_score:Float32}")
            params["min_score"] = min_score
        _time_filters("window_start", since, until, where, params)
        data, stats, qid, pages = listing(request, store_api.ANOMALIES, where, params, page, per_page, after, before,
                                          last)
        rows = [Anomaly(**row) for row in data.rows]
        return Response[list[Anomaly]](status=QueryStatus.success, query_id=qid, data=rows, pagination=pages,
                                       metrics=metrics_of(stats, len(rows)))

    @router.get("/incidents", response_model=Response[list[Incident]], tags=["incidents"],
                summary="Correlated incidents, newest first (latest version of each)")
    def incidents(request: Request, status: Name = None, severity: Name = None, pattern: Name = None,
                  asset: Annotated[str | None, Query(max_length=200, description="incidents involving this asset")] = None,
                  since: Since = None, until: Until = None, page: Page = 1, per_page: PerPage = serve.default_page_size,
                  after: After = None, before: Before = None, last: Last = False) -> Any:
        where: list[str] = []
        params: dict[str, Any] = {}
        for col, value in (("status", status), ("severity", severity), ("pattern", pattern)):
            _equals(col, value, "String", where, params)
        if asset is not None:
            where.append("has(assets, {asset:String})")
            params["asset"] = asset
        _time_filters("opened_at", since, until, where, params)
        data, stats, qid, pages = listing(request, store_api.INCIDENTS, where, params, page, per_page, after, before,
                                          last)
        rows = [Incident(**row) for row in data.rows]
        return Response[list[Incident]](status=QueryStatus.success, query_id=qid, data=rows, pagination=pages,
                                        metrics=metrics_of(stats, len(rows)))

    @router.get("/incidents/{incident_id}", response_model=Response[IncidentGraph], tags=["incidents"],
                summary="One incident with its event graph (members with roles, edges)")
    def incident(incident_id: Annotated[str, Path(max_length=200)]) -> Any:
        stats, qid = store_api.Stats(), store_api.new_query_id()
        found = reader.one(store_api.INCIDENT_SQL, {"id": incident_id}, stats, qid)
        if not found:
            raise store_api.NotFound(f"no incident {incident_id!r}")
        row = found[0]
        edges = reader.one(store_api.EDGES_SQL, {"id": incident_id, "version": row["version"]}, stats, qid)
        members = [IncidentMember(id=i, role=r, source=s, kind=k, time=t) for i, r, s, k, t in
                   zip(row.pop("member_ids"), row.pop("member_roles"), row.pop("member_sources"),
                       row.pop("member_kinds"), row.pop("member_times"))]
        graph = IncidentGraph(**row, members=members, edges=[IncidentEdge(**e) for e in edges])
        return Response[IncidentGraph](status=QueryStatus.success, query_id=qid, data=graph,
                                       metrics=metrics_of(stats, 1 + len(edges)))

    return router
