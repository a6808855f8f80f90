"""Read routes of the HTTP API: metrics, events, anomalies, incidents with their graph.

Route functions are plain `def`: FastAPI runs them on its thread pool, and the store reader
bounds how many reach the store at once. Every list answers the one wrapper with page metadata
and first/prev/next/last/self links whose cursors are keyset positions.
"""

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from config.settings import HubConfig
from connectors import store_api
from flows.api_common import (NAME_PATTERN, Name, Paging, Since, Until, contains, equals, find_one, list_answer,
                              metrics_of, paging_params, read_listing, string_filters, time_filters)
from schemas.api import (Anomaly, Event, Incident, IncidentEdge, IncidentGraph, IncidentMember, MetricPoint,
                         QueryStatus, Response)
from schemas.rollups import BY_NAME, WINDOWS

WindowName = Literal[tuple(w.name for w in WINDOWS)]  # type: ignore[valid-type]
Dim = Literal["model", "endpoint", "team"]


def build_read_router(cfg: HubConfig, reader: store_api.StoreReader) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    serve = cfg.serve
    Pages = Annotated[Paging, Depends(paging_params(serve))]

    @router.get("/metrics", response_model=Response[list[MetricPoint]], tags=["metrics"],
                summary="Windowed metric series: count, sum, mean, min, max, p50/p95/p99")
    def metrics(request: Request, paging: Pages,
                name: Annotated[str, Query(pattern=NAME_PATTERN, description="metric, e.g. latency_ms, cost_usd, "
                                           "input_tokens, requests, errors")],
                window: Annotated[WindowName, Query(description="window size")] = "1h",
                model: Name = None, endpoint: Name = None, team: Name = None,
                group_by: Annotated[list[Dim] | None, Query(description="dimensions to keep apart; the others are "
                                                             "merged (histograms added, so percentiles stay right). "
                                                             "Default: model, endpoint, team")] = None,
                since: Since = None, until: Until = None) -> Any:
        dims = list(dict.fromkeys(group_by)) if group_by else ["model", "endpoint", "team"]
        where, params = string_filters(metric=name, model=model, endpoint=endpoint, team=team)
        time_filters("window_start", since, until, where, params)
        lst = store_api.metrics_listing(window, dims)
        listed = read_listing(reader, request, lst, where, params, paging)
        # The newest windows are still open (allowed lateness) and rollups trail metrics_1m.
        open_after = time.time() - BY_NAME[window].span_s - cfg.windows.allowed_lateness_s - cfg.clickhouse.rollup_refresh_s
        end = until.timestamp() if until is not None else time.time()
        status = QueryStatus.partial if end > open_after else QueryStatus.success
        points = [MetricPoint(window=window, **{k: v for k, v in row.items() if k != "hist"})
                  for row in listed.data.rows]
        return Response[list[MetricPoint]](status=status, query_id=listed.query_id, data=points,
                                           pagination=listed.pagination, metrics=metrics_of(listed.stats, len(points)))

    @router.get("/events", response_model=Response[list[Event]], tags=["events"],
                summary="Search stored events, newest first")
    def events(request: Request, paging: Pages, source: Name = None, event_type: Name = None, model: Name = None,
               endpoint: Name = None, team: Name = None, severity: Name = None,
               correlation_id: Annotated[str | None, Query(max_length=200)] = None,
               asset_id: Annotated[str | None, Query(max_length=200)] = None,
               is_error: bool | None = None,
               q: Annotated[str | None, Query(min_length=2, max_length=200,
                                              description="text the event's payload contains (case-insensitive)")] = None,
               since: Since = None, until: Until = None) -> Any:
        where, params = string_filters(source=source, event_type=event_type, model=model, endpoint=endpoint, team=team,
                                       severity=severity, correlation_id=correlation_id, asset_id=asset_id)
        if is_error is not None:
            equals("is_error", int(is_error), "UInt8", where, params)
        if q is not None:
            where.append("positionCaseInsensitiveUTF8(payload, {q:String}) > 0")
            params["q"] = q
        time_filters("event_time", since, until, where, params)
        return list_answer(Event, read_listing(reader, request, store_api.EVENTS, where, params, paging))

    @router.get("/anomalies", response_model=Response[list[Anomaly]], tags=["anomalies"],
                summary="Detected anomalies, newest window first")
    def anomalies(request: Request, paging: Pages, metric: Name = None, model: Name = None, endpoint: Name = None,
                  team: Name = None,
                  anomaly_type: Name = None, severity: Name = None,
                  min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
                  since: Since = None, until: Until = None) -> Any:
        where, params = string_filters(metric=metric, model=model, endpoint=endpoint, team=team,
                                       anomaly_type=anomaly_type, severity=severity)
        if min_score is not None:
            where.append("score >= {min_score:Float32}")
            params["min_score"] = min_score
        time_filters("window_start", since, until, where, params)
        return list_answer(Anomaly, read_listing(reader, request, store_api.ANOMALIES, where, params, paging))

    @router.get("/incidents", response_model=Response[list[Incident]], tags=["incidents"],
                summary="Correlated incidents, newest first (latest version of each)")
    def incidents(request: Request, paging: Pages, status: Name = None, severity: Name = None, pattern: Name = None,
                  asset: Annotated[str | None, Query(max_length=200, description="incidents involving this asset")] = None,
                  since: Since = None, until: Until = None) -> Any:
        where, params = string_filters(status=status, severity=severity, pattern=pattern)
        contains("assets", "asset", asset, where, params)
        time_filters("opened_at", since, until, where, params)
        return list_answer(Incident, read_listing(reader, request, store_api.INCIDENTS, where, params, paging))

    @router.get("/incidents/{incident_id}", response_model=Response[IncidentGraph], tags=["incidents"],
                summary="One incident with its event graph (members with roles, edges)")
    def incident(incident_id: Annotated[str, Path(max_length=200)]) -> Any:
        row, stats, qid = find_one(reader, store_api.INCIDENT_SQL, incident_id, "incident")
        edges = reader.one(store_api.EDGES_SQL, {"id": incident_id, "version": row["version"]}, stats, qid)
        members = [IncidentMember(id=i, role=r, source=s, kind=k, time=t) for i, r, s, k, t in
                   zip(row.pop("member_ids"), row.pop("member_roles"), row.pop("member_sources"),
                       row.pop("member_kinds"), row.pop("member_times"))]
        graph = IncidentGraph(**row, members=members, edges=[IncidentEdge(**e) for e in edges])
        return Response[IncidentGraph](status=QueryStatus.success, query_id=qid, data=graph,
                                       metrics=metrics_of(stats, 1 + len(edges)))

    return router
