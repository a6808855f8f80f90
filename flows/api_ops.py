"""Read routes for what alerting and the registry store: alerts (current state and history),
budget status, compliance reports and registry assets.

Same contract as flows/api_read.py: plain `def` routes on FastAPI's thread pool, the one
wrapper with page metadata and keyset links, filters validated up front (an unknown state,
severity or granularity is a problem answer naming the field, not an empty page).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from config.alerts import Period
from config.settings import HubConfig
from connectors import store_api
from flows.api_common import (ApiProblem, Name, Paging, contains, equals, field_error, find_one, list_answer,
                              metrics_of, paging_params, read_listing, string_filters, time_filters,
                              time_param)
from schemas.alerts import AlertEvent, AlertKind, AlertStatus
from schemas.api import Alert, Asset, BudgetStatus, ComplianceReport, QueryStatus, Response
from schemas.feeds import Granularity, ScopeKind
from schemas.vocabulary import AlertSeverity

Id = Annotated[str | None, Query(max_length=200)]
Labels = Annotated[list[str] | None, Query(max_length=20, description="`key=value`: alerts whose labels have it "
                                                                      "(repeat for several; all must match)")]

StartedFrom = time_param("from", "alerts that started at or after this")
StartedTo = time_param("to", "alerts that started before this")
UpdatedFrom = time_param("from", "versions at or after this")
UpdatedTo = time_param("to", "versions before this")
PeriodFrom = time_param("from", "periods starting at or after this")
PeriodTo = time_param("to", "periods starting before this")
WindowFrom = time_param("from", "windows starting at or after this")
WindowTo = time_param("to", "windows starting before this")
AssetFrom = time_param("from", "assets updated at or after this")
AssetTo = time_param("to", "assets updated before this")


def _label_filters(labels: list[str] | None, where: list[str], params: dict[str, Any]) -> None:
    """`label=model=gpt-4o`: a malformed one is a field error naming which."""
    for i, item in enumerate(labels or []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ApiProblem("validation-error", f"label {item!r} is not key=value",
                             [field_error(f"query.label.{i}", "expected key=value, e.g. model=gpt-4o", "format")])
        where.append(f"labels[{{label_k{i}:String}}] = {{label_v{i}:String}}")
        params[f"label_k{i}"], params[f"label_v{i}"] = key, value


def _alert_filters(state: str | None, rule: str | None, kind: str | None, severity: str | None,
                   labels: list[str] | None) -> tuple[list[str], dict[str, Any]]:
    where, params = string_filters(status=state, rule=rule, kind=kind, severity=severity)
    _label_filters(labels, where, params)
    return where, params


def build_ops_router(cfg: HubConfig, reader: store_api.StoreReader) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    Pages = Annotated[Paging, Depends(paging_params(cfg.serve))]
    State = Annotated[AlertStatus | None, Query(description="firing or resolved")]

    @router.get("/alerts", response_model=Response[list[Alert]], tags=["alerts"],
                summary="Current state of each alert (its latest version), newest start first")
    def alerts(request: Request, paging: Pages, state: State = None, rule: Name = None, kind: AlertKind | None = None,
               severity: AlertSeverity | None = None, label: Labels = None,
               since: StartedFrom = None,
               until: StartedTo = None) -> Any:
        where, params = _alert_filters(state, rule, kind, severity, label)
        time_filters("starts_at", since, until, where, params)
        return list_answer(Alert, read_listing(reader, request, store_api.ALERTS_CURRENT, where, params, paging))

    @router.get("/alerts/history", response_model=Response[list[Alert]], tags=["alerts"],
                summary="Every version of every alert (firing, renotify, resolved), newest first")
    def alert_history(request: Request, paging: Pages, alert_id: Id = None, state: State = None, rule: Name = None,
                      kind: AlertKind | None = None, severity: AlertSeverity | None = None,
                      event: AlertEvent | None = None, label: Labels = None,
                      since: UpdatedFrom = None,
                      until: UpdatedTo = None) -> Any:
        where, params = _alert_filters(state, rule, kind, severity, label)
        equals("id", alert_id, "String", where, params)
        equals("event", event, "String", where, params)
        time_filters("updated_at", since, until, where, params)
        return list_answer(Alert, read_listing(reader, request, store_api.ALERT_HISTORY, where, params, paging))

    @router.get("/budgets", response_model=Response[list[BudgetStatus]], tags=["budgets"],
                summary="Budget status per budget and period (latest update of each), newest period first")
    def budgets(request: Request, paging: Pages, budget: Name = None, period: Period | None = None,
                scope: Id = None,
                latest: Annotated[bool, Query(description="only the newest period of each budget")] = False,
                since: PeriodFrom = None,
                until: PeriodTo = None) -> Any:
        where, params = string_filters(budget=budget, period=period, scope=scope)
        time_filters("period_start", since, until, where, params)
        lst = store_api.BUDGETS_LATEST if latest else store_api.BUDGETS
        return list_answer(BudgetStatus, read_listing(reader, request, lst, where, params, paging))

    @router.get("/compliance", response_model=Response[list[ComplianceReport]], tags=["compliance"],
                summary="Compliance reports per hour or day and scope (all, asset, team), newest first")
    def compliance(request: Request, paging: Pages, granularity: Granularity | None = None,
                   scope_kind: ScopeKind | None = None,
                   asset: Annotated[str | None, Query(max_length=200, description="reports of this asset")] = None,
                   team: Annotated[str | None, Query(max_length=200, description="reports of this team")] = None,
                   since: WindowFrom = None,
                   until: WindowTo = None
                   ) -> Any:
        given = [(name, value) for name, value in (("asset", asset), ("team", team)) if value is not None]
        clash = [name for name, _ in given if scope_kind is not None and scope_kind != name]
        if len(given) > 1 or clash:
            fields = [n for n, _ in given] + (["scope_kind"] if clash else [])
            raise ApiProblem("validation-error", "asset, team and scope_kind name different scopes",
                             [field_error(f"query.{n}", "give one scope: asset, team, or scope_kind", "conflict")
                              for n in fields])
        scope = None
        if given:
            scope_kind, scope = given[0]
        where, params = string_filters(scope=scope, granularity=granularity, scope_kind=scope_kind)
        time_filters("window_start", since, until, where, params)
        return list_answer(ComplianceReport, read_listing(reader, request, store_api.COMPLIANCE, where, params, paging))

    @router.get("/assets", response_model=Response[list[Asset]], tags=["assets"],
                summary="Registry assets (latest profile of each), by asset id")
    def assets(request: Request, paging: Pages, asset_type: Name = None, owner: Name = None, category: Name = None,
               provider: Name = None, status: Name = None, stage: Name = None,
               tag: Annotated[str | None, Query(max_length=200, description="assets carrying this tag")] = None,
               since: AssetFrom = None,
               until: AssetTo = None) -> Any:
        where, params = string_filters(asset_type=asset_type, owner=owner, category=category, provider=provider,
                                       status=status, stage=stage)
        contains("tags", "tag", tag, where, params)
        time_filters("updated_at", since, until, where, params)
        return list_answer(Asset, read_listing(reader, request, store_api.ASSETS, where, params, paging))

    @router.get("/assets/{asset_id}", response_model=Response[Asset], tags=["assets"],
                summary="One registry asset's latest profile")
    def asset(asset_id: Annotated[str, Path(max_length=200)]) -> Any:
        row, stats, qid = find_one(reader, store_api.ASSET_SQL, asset_id, "asset")
        return Response[Asset](status=QueryStatus.success, query_id=qid, data=Asset(**row),
                               metrics=metrics_of(stats, 1))

    return router
