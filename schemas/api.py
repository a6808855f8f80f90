"""What the HTTP API (`hub serve`) answers, as pydantic models: FastAPI validates and documents
them in the generated OpenAPI schema.

The shapes follow the data-models note's API models: every success is one wrapper (`Response`:
query status, execution metrics, data, pagination with page metadata and navigation links);
every failure is an RFC 9457 problem detail (`Problem`, media type application/problem+json)
carrying the note's extras: a stable error code, field-level validation errors, a suggestion
and a documentation link.
"""
from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class QueryStatus(str, Enum):
    success = "success"
    # The answer is complete but the store may still be writing the range asked for (it ends in
    # the last few minutes, whose windows and rollups are not closed yet).
    partial = "partial"


class ExecutionMetrics(BaseModel):
    """How the answer was computed: time taken and what the store read."""

    execution_time_ms: float = Field(description="wall time of the store queries behind this answer")
    rows_read: int | None = Field(None, description="rows ClickHouse read (when the store reports it)")
    bytes_read: int | None = Field(None, description="bytes ClickHouse read (when the store reports it)")
    rows_returned: int
    queries: int = Field(description="store queries run for this answer")


class Links(BaseModel):
    """Navigation links; following them walks the pages with keyset cursors."""

    self_: str = Field(alias="self")
    first: str
    prev: str | None = None
    next: str | None = None
    last: str

    model_config = {"populate_by_name": True}


class Pagination(BaseModel):
    page: int = Field(ge=1)
    per_page: int = Field(ge=1)
    total_items: int = Field(ge=0)
    total_pages: int = Field(ge=0)
    links: Links


class Response(BaseModel, Generic[T]):
    """The one wrapper of every successful answer."""

    status: QueryStatus
    query_id: str = Field(description="id of this answer; ClickHouse query ids start with it")
    data: T
    pagination: Pagination | None = None
    metrics: ExecutionMetrics


class FieldError(BaseModel):
    field: str = Field(description="where: query.per_page, path.id, body.resourceSpans[0]...")
    message: str
    code: str = Field(description="machine-readable reason, e.g. greater_than_equal, missing, invalid_cursor")


class Problem(BaseModel):
    """RFC 9457 problem details, with the data-models note's fields as extension members."""

    type: str = Field(description="URI naming the problem type; GET it for a description")
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="the request path that failed")
    code: str = Field(description="stable error code: VALIDATION_ERROR, UNAUTHORIZED, NOT_FOUND, QUERY_TIMEOUT, ...")
    errors: list[FieldError] = Field(default_factory=list, description="field-level validation errors")
    suggestion: str | None = None
    documentation_url: str | None = None


# -- data ------------------------------------------------------------------------------------------

class MetricPoint(BaseModel):
    """One series (or group of series) in one window, from the merged log-bucket histograms."""

    metric: str
    window: str
    window_start: datetime
    model: str | None = None
    endpoint: str | None = None
    team: str | None = None
    count: int
    sum: float
    mean: float | None
    min: float | None
    max: float | None
    p50: float | None
    p95: float | None
    p99: float | None


class Event(BaseModel):
    event_id: str
    event_time: datetime
    ingest_time: datetime
    source: str
    event_type: str
    correlation_id: str
    parent_event_id: str
    severity: str
    model: str
    provider: str
    endpoint: str
    team: str
    asset_id: str
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    is_error: bool
    error_type: str
    cost_usd: float | None
    tags: dict[str, str]


class Anomaly(BaseModel):
    id: str
    metric: str
    model: str
    endpoint: str
    team: str
    window_start: datetime
    window_ms: int
    anomaly_type: str
    score: float = Field(ge=0, le=1)
    expected: float
    spread: float
    observed: float
    detector: str
    severity: str


class IncidentMember(BaseModel):
    id: str
    role: str
    source: str
    kind: str
    time: datetime


class IncidentEdge(BaseModel):
    from_id: str
    to_id: str
    relationship: str
    weight: float
    time: datetime


class Incident(BaseModel):
    id: str
    version: int
    status: str
    pattern: str
    confidence: float
    severity: str
    opened_at: datetime
    start_time: datetime
    end_time: datetime
    assets: list[str]
    root_cause_id: str
    root_cause_reasons: list[str]
    impact: dict[str, float]
    member_count: int


class IncidentGraph(Incident):
    """An incident with its event graph at its latest version."""

    pattern_reasons: list[str]
    members: list[IncidentMember]
    edges: list[IncidentEdge]
    overflow: int = Field(description="members beyond the kept ones (not in the graph)")
    merged_into: str


class Alert(BaseModel):
    """One version of an alert: its current state (/alerts) or one step of its history."""

    id: str
    version: int
    rule: str
    kind: str = Field(description="threshold | anomaly | incident | budget")
    status: str = Field(description="firing | resolved")
    event: str = Field(description="what made this version: firing | renotify | resolved")
    severity: str
    labels: dict[str, str]
    value: float
    threshold: float
    starts_at: datetime
    ends_at: datetime | None
    updated_at: datetime = Field(description="event time of this version")
    summary: str
    anomaly_ids: list[str]
    incident_ids: list[str]


class BudgetStatus(BaseModel):
    """A budget's standing in one period, as of its latest update (event time)."""

    budget: str
    scope: str
    period: str
    period_start: datetime
    period_end: datetime
    amount_usd: float
    spend: float
    forecast: float = Field(description="period-end spend at the burn rate so far")
    pct_used: float = Field(description="percent of amount_usd spent (85.0 = 85%)")
    updated_at: datetime


class ComplianceReport(BaseModel):
    """Compliance of one scope (all, an asset or a team) over one hour or day; rates are null when
    nothing was evaluated, `*_change` compare with the window before."""

    id: str
    version: int
    granularity: str
    window_start: datetime
    window_end: datetime
    scope_kind: str
    scope: str
    evaluations: int
    compliant: int
    non_compliant: int
    violations: int
    compliance_rate: float | None
    violation_rate: float | None
    violations_by_type: dict[str, int]
    violations_by_severity: dict[str, int]
    prev_evaluations: int
    prev_violations: int
    prev_compliance_rate: float | None
    compliance_rate_change: float | None
    violation_rate_change: float | None
    violations_change: int
    asset_name: str
    asset_version: str
    asset_owner: str
    asset_category: str
    asset_tags: list[str]


class Asset(BaseModel):
    """The registry's latest profile of one asset (model, endpoint, ...)."""

    asset_id: str
    name: str
    asset_type: str
    version: str
    owner: str
    category: str
    provider: str
    tags: list[str]
    description: str
    status: str
    stage: str
    versions: dict[str, str]
    replacement_asset_id: str
    sunset_date: str
    registered_at: datetime
    updated_at: datetime
    last_event_id: str
    last_event_type: str
    events: int = Field(description="registry events folded into this profile")
