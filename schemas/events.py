"""The unified event model: one `Event` with common fields and a tagged union of payloads.

Every accepted wire format (hub envelope, the integration note's base event schema, OTLP spans)
is decoded and normalized into these Structs; everything downstream (dedup, windows, columns,
correlation) reads only these. Times are int epoch milliseconds UTC, so the hot path never
builds datetime objects.

Validation rules that a type can say live on the types themselves, where msgspec checks them
in C while decoding and `msgspec.json.schema` publishes them to producers:
required = a field without default, range = `Meta(ge/le)`, enum = `Literal`. Formats
(semver, currency codes) are published as schema patterns but checked by the normalizer, as
are rules a type can't say (timestamps, units, aliases, cross-field checks): see
`operators/normalize.py`.

Units are canonical here: durations in ms, sizes in bytes, money in USD, rates per second.
Fields carrying a convertible unit say so in `Meta.extra["unit"]`; the normalizer reads that
to convert wire values (see `UNIT_FIELDS`).
"""
from __future__ import annotations

import types
import typing
from typing import Annotated, Any, ClassVar, Literal, Union

import msgspec
from msgspec import Meta


SCHEMA_VERSION = "1.0.0"

SEMVER_PATTERN = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"

# --- constrained scalar types: the range/format rules -----------------------------------------

DurationMs = Annotated[float, Meta(ge=0, description="Duration in milliseconds.", extra={"unit": "duration"})]
SizeBytes = Annotated[int, Meta(ge=0, description="Size in bytes.", extra={"unit": "size"})]
PerSecond = Annotated[float, Meta(ge=0, description="Rate per second.", extra={"unit": "rate"})]
Money = Annotated[float, Meta(ge=0, description="Amount in `currency` (USD once normalized).", extra={"unit": "money"})]
Count = Annotated[int, Meta(ge=0)]
Ratio = Annotated[float, Meta(ge=0, le=1, description="Fraction between 0 and 1.")]
EventId = Annotated[str, Meta(min_length=1, max_length=256)]
# Format rules that the normalizer checks itself (a regex in the decoder costs ~0.4 us per
# field, more than the rest of the decode); the exported JSON Schema still states them.
Currency = Annotated[str, Meta(extra_json_schema={"pattern": "^[A-Za-z]{3}$"},
                               description="ISO 4217 code; USD once normalized.")]
SchemaVersion = Annotated[str, Meta(extra_json_schema={"pattern": SEMVER_PATTERN},
                                    description="Semantic version of the event schema.")]


class Payload(msgspec.Struct, tag_field="type", omit_defaults=True, gc=False):
    """Base of every payload; the tag (`type`) is the event type, e.g. `telemetry.request`.

    Required fields come first, so a payload can be built positionally from its base-format
    twin (see schemas.wire) without a second validation pass.
    """

    SOURCE: ClassVar[str] = ""


# --- telemetry (LLM-Observatory, OTLP spans) ------------------------------------------------------


class LlmRequest(Payload, tag="telemetry.request"):
    """One model call (what an LLM span records): latency, token usage and outcome together.

    Both current and legacy OpenTelemetry GenAI attribute names map onto this one payload.
    """

    SOURCE: ClassVar[str] = "telemetry"
    model: str
    latency_ms: DurationMs
    provider: str = ""
    operation: str = ""
    response_model: str = ""
    request_id: str = ""
    time_to_first_token_ms: DurationMs | None = None
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    cached_input_tokens: Count | None = None
    total_tokens: Count | None = None
    is_error: bool = False
    error_type: str = ""
    finish_reason: str = ""
    span_name: str = ""


class LatencyBreakdown(msgspec.Struct, omit_defaults=True, gc=False):
    """Where the time of one request went."""

    queue_ms: DurationMs | None = None
    time_to_first_token_ms: DurationMs | None = None
    processing_ms: DurationMs | None = None
    generation_ms: DurationMs | None = None
    network_ms: DurationMs | None = None


class Latency(Payload, tag="telemetry.latency"):
    """Latency of one request with its breakdown (time to first token, queue, generation...)."""

    SOURCE: ClassVar[str] = "telemetry"
    model: str
    latency_ms: DurationMs
    provider: str = ""
    request_id: str = ""
    breakdown: LatencyBreakdown | None = None
    tokens_per_second: PerSecond | None = None


class Throughput(Payload, tag="telemetry.throughput"):
    """Request and token rates of one model over a measurement window."""

    SOURCE: ClassVar[str] = "telemetry"
    model: str
    requests_per_second: PerSecond
    provider: str = ""
    tokens_per_second: PerSecond | None = None
    concurrent_requests: Count | None = None
    window_ms: DurationMs | None = None


class ErrorOccurred(Payload, tag="telemetry.error"):
    """Failed requests: one error (failed_requests=1) or a count over a window."""

    SOURCE: ClassVar[str] = "telemetry"
    error_type: str
    model: str = ""
    provider: str = ""
    request_id: str = ""
    error_code: str = ""
    message: str = ""
    failed_requests: Count = 1
    total_requests: Count | None = None


class TokenUsage(Payload, tag="telemetry.tokens"):
    """Tokens consumed by one request (or one accounting period)."""

    SOURCE: ClassVar[str] = "telemetry"
    model: str
    provider: str = ""
    request_id: str = ""
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    cached_input_tokens: Count | None = None
    reasoning_tokens: Count | None = None
    total_tokens: Count | None = None


class ModelPerformance(Payload, tag="telemetry.performance"):
    """Quality and latency figures of a model over a window, as an evaluator reports them."""

    SOURCE: ClassVar[str] = "telemetry"
    model: str
    provider: str = ""
    window_ms: DurationMs | None = None
    request_count: Count | None = None
    success_rate: Ratio | None = None
    avg_latency_ms: DurationMs | None = None
    p50_latency_ms: DurationMs | None = None
    p95_latency_ms: DurationMs | None = None
    p99_latency_ms: DurationMs | None = None
    quality_score: Ratio | None = None
    accuracy: Ratio | None = None
    hallucination_rate: Ratio | None = None


# --- security (LLM-Sentinel) ----------------------------------------------------------------------


class ThreatDetected(Payload, tag="security.threat"):
    """A detected attack or abuse (prompt injection, jailbreak, data exfiltration...)."""

    SOURCE: ClassVar[str] = "security"
    threat_type: str
    threat_id: str = ""
    model: str = ""
    asset_id: str = ""
    user_id: str = ""
    source_ip: str = ""
    confidence: Ratio | None = None
    action_taken: str = ""
    description: str = ""


class VulnerabilityFound(Payload, tag="security.vulnerability"):
    """A vulnerability in a model, dependency or endpoint."""

    SOURCE: ClassVar[str] = "security"
    vulnerability_id: str
    cve_id: str = ""
    component: str = ""
    asset_id: str = ""
    cvss_score: Annotated[float, Meta(ge=0, le=10)] | None = None
    status: str = "open"
    description: str = ""


class ComplianceViolation(Payload, tag="security.compliance"):
    """A breach of a compliance framework control (GDPR, SOC 2, HIPAA...) seen by Sentinel."""

    SOURCE: ClassVar[str] = "security"
    framework: str
    violation_id: str = ""
    control_id: str = ""
    asset_id: str = ""
    model: str = ""
    user_id: str = ""
    description: str = ""
    remediation: str = ""


class AuthDecision(Payload, tag="security.auth"):
    """An authentication or authorization decision."""

    SOURCE: ClassVar[str] = "security"
    kind: Literal["authentication", "authorization"]
    outcome: Literal["success", "failure"]
    user_id: str = ""
    method: str = ""
    resource: str = ""
    asset_id: str = ""
    source_ip: str = ""
    reason: str = ""


class PrivacyFinding(Payload, tag="security.privacy"):
    """Personal data detected, redacted, blocked or leaked in prompts or responses."""

    SOURCE: ClassVar[str] = "security"
    data_type: str
    action: Literal["detected", "redacted", "blocked", "leaked"] = "detected"
    model: str = ""
    asset_id: str = ""
    user_id: str = ""
    records_affected: Count | None = None
    description: str = ""


# --- cost (LLM-CostOps) ---------------------------------------------------------------------------


class TokenCost(Payload, tag="cost.tokens"):
    """What the tokens of one request (or period) cost."""

    SOURCE: ClassVar[str] = "cost"
    model: str
    total_cost: Money
    provider: str = ""
    request_id: str = ""
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    cached_input_tokens: Count | None = None
    input_cost: Money | None = None
    output_cost: Money | None = None
    currency: Currency = "USD"


class ApiCost(Payload, tag="cost.api"):
    """A charge for API usage not priced per token (per call, per image, per minute...)."""

    SOURCE: ClassVar[str] = "cost"
    provider: str
    total_cost: Money
    service: str = ""
    endpoint: str = ""
    model: str = ""
    request_count: Count | None = None
    currency: Currency = "USD"


class ResourceConsumption(Payload, tag="cost.resource"):
    """Infrastructure consumed (GPU, CPU, memory, storage, network) and its cost."""

    SOURCE: ClassVar[str] = "cost"
    resource_type: str
    resource_id: str = ""
    model: str = ""
    duration_ms: DurationMs | None = None
    gpu_count: Count | None = None
    memory_bytes: SizeBytes | None = None
    storage_bytes: SizeBytes | None = None
    network_bytes: SizeBytes | None = None
    utilization: Ratio | None = None
    total_cost: Money | None = None
    currency: Currency = "USD"


class BudgetAlert(Payload, tag="cost.budget"):
    """Spend crossed an alert threshold of a budget."""

    SOURCE: ClassVar[str] = "cost"
    budget_id: str
    limit: Money
    spent: Money
    budget_name: str = ""
    scope: str = ""
    period: str = ""
    threshold: Ratio | None = None
    forecast: Money | None = None
    currency: Currency = "USD"


# --- governance (LLM-Governance-Dashboard) --------------------------------------------------------


class GovernanceViolation(Payload, tag="governance.violation"):
    """A governance policy was violated."""

    SOURCE: ClassVar[str] = "governance"
    policy_id: str
    violation_id: str = ""
    policy_name: str = ""
    rule_id: str = ""
    violation_type: str = ""
    asset_id: str = ""
    model: str = ""
    user_id: str = ""
    action_taken: str = ""
    description: str = ""


class AuditTrail(Payload, tag="governance.audit"):
    """Who did what to which resource, for the audit trail."""

    SOURCE: ClassVar[str] = "governance"
    actor: str
    action: str
    audit_id: str = ""
    resource_type: str = ""
    resource_id: str = ""
    outcome: str = "success"
    ip: str = ""
    details: dict[str, str] = {}


class ComplianceCheck(Payload, tag="governance.compliance"):
    """A compliance control was checked; `passed` says how it went."""

    SOURCE: ClassVar[str] = "governance"
    framework: str
    passed: bool
    check_id: str = ""
    control_id: str = ""
    asset_id: str = ""
    model: str = ""
    score: Ratio | None = None
    findings: Count | None = None
    description: str = ""


class DataLineage(Payload, tag="governance.lineage"):
    """Data moved between assets (dataset -> fine-tune -> model), for lineage graphs."""

    SOURCE: ClassVar[str] = "governance"
    source_asset_id: str
    target_asset_id: str
    lineage_id: str = ""
    operation: str = ""
    pipeline_id: str = ""
    records: Count | None = None
    size_bytes: SizeBytes | None = None
    contains_pii: bool | None = None


# --- registry (LLM-Registry) ----------------------------------------------------------------------


class AssetPayload(Payload):
    """Asset metadata every registry event carries (flat, as the registry emits it)."""

    SOURCE: ClassVar[str] = "registry"
    asset_id: str
    asset_name: str = ""
    asset_type: str = ""
    version: str = ""
    owner: str = ""
    category: str = ""
    provider: str = ""
    tags: list[str] = []
    description: str = ""


class AssetRegistered(AssetPayload, tag="asset.registered"):
    """A new asset (model, prompt, dataset, endpoint) entered the registry."""


class AssetUpdated(AssetPayload, tag="asset.updated"):
    """Asset metadata changed; `changed_fields` names what."""

    changed_fields: list[str] = []


class AssetDeprecated(AssetPayload, tag="asset.deprecated"):
    """An asset is deprecated; consumers should move to `replacement_asset_id`."""

    reason: str = ""
    replacement_asset_id: str = ""
    sunset_date: str = ""


class VersionPublished(AssetPayload, kw_only=True, tag="version.published"):
    """A new version of an asset was published."""

    version: str
    previous_version: str = ""


class VersionPromoted(AssetPayload, kw_only=True, tag="version.promoted"):
    """A version moved between stages (e.g. staging -> production)."""

    version: str
    to_stage: str
    from_stage: str = ""


class VersionRetired(AssetPayload, kw_only=True, tag="version.retired"):
    """A version was retired and no longer serves traffic."""

    version: str
    reason: str = ""


# --- policy engine (LLM-Policy-Engine) ------------------------------------------------------------


class PolicyEvaluated(Payload, tag="policy.evaluated"):
    """A policy decision on a request; `decision` is allowed, denied or warned."""

    SOURCE: ClassVar[str] = "policy"
    policy_id: str
    decision: Literal["allowed", "denied", "warned"]
    evaluation_id: str = ""
    policy_name: str = ""
    asset_id: str = ""
    model: str = ""
    user_id: str = ""
    evaluation_ms: DurationMs | None = None
    rules_evaluated: Count | None = None


class ViolationDetected(Payload, tag="violation.detected"):
    """The policy engine found a violation."""

    SOURCE: ClassVar[str] = "policy"
    policy_id: str
    violation_id: str = ""
    violation_type: str = ""
    asset_id: str = ""
    model: str = ""
    user_id: str = ""
    action_taken: str = ""
    description: str = ""


class ComplianceVerified(Payload, tag="compliance.verified"):
    """A request or asset was verified compliant with a policy."""

    SOURCE: ClassVar[str] = "policy"
    policy_id: str
    evaluation_id: str = ""
    asset_id: str = ""
    model: str = ""
    framework: str = ""
    compliance_rate: Ratio | None = None
    description: str = ""


class PolicyUpdated(Payload, tag="policy.updated"):
    """A policy was created, changed or deleted."""

    SOURCE: ClassVar[str] = "policy"
    policy_id: str
    change_type: Literal["created", "updated", "deleted"] = "updated"
    policy_name: str = ""
    policy_type: str = ""
    version: str = ""
    enforcement_mode: str = ""
    changed_by: str = ""


class AuditLogged(Payload, tag="audit.logged"):
    """An audit record written by the policy engine."""

    SOURCE: ClassVar[str] = "policy"
    actor: str
    action: str
    audit_id: str = ""
    resource: str = ""
    outcome: str = ""
    policy_id: str = ""
    details: dict[str, str] = {}


PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    LlmRequest, Latency, Throughput, ErrorOccurred, TokenUsage, ModelPerformance,
    ThreatDetected, VulnerabilityFound, ComplianceViolation, AuthDecision, PrivacyFinding,
    TokenCost, ApiCost, ResourceConsumption, BudgetAlert,
    GovernanceViolation, AuditTrail, ComplianceCheck, DataLineage,
    AssetRegistered, AssetUpdated, AssetDeprecated, VersionPublished, VersionPromoted, VersionRetired,
    PolicyEvaluated, ViolationDetected, ComplianceVerified, PolicyUpdated, AuditLogged,
)
AnyPayload = Union[PAYLOAD_TYPES]  # type: ignore[valid-type]

EVENT_TYPES: dict[str, type[Payload]] = {p.__struct_config__.tag: p for p in PAYLOAD_TYPES}
EVENT_TYPE_OF: dict[type[Payload], str] = {p: t for t, p in EVENT_TYPES.items()}
SOURCE_OF_TYPE: dict[str, str] = {t: p.SOURCE for t, p in EVENT_TYPES.items()}

# Payload types whose absent severity means "something needs a look", not "info".
DEFAULT_SEVERITY: dict[type[Payload], str] = {
    **{p: "info" for p in PAYLOAD_TYPES},
    ThreatDetected: "medium", VulnerabilityFound: "medium", ComplianceViolation: "medium",
    PrivacyFinding: "medium", BudgetAlert: "medium", GovernanceViolation: "medium",
    ViolationDetected: "medium", ErrorOccurred: "medium",
}


_EVENT_RENAME = {"event_time_ms": "event_time", "ingest_time_ms": "ingest_time"}
TimeValue = Annotated[
    Union[int, float, str],
    Meta(description="ISO-8601 date-time with offset, or epoch seconds/ms/us/ns (told apart by magnitude). "
                     "Normalized to epoch milliseconds UTC."),
]


class Event(msgspec.Struct, gc=False, omit_defaults=True, rename=_EVENT_RENAME):
    """One normalized event: common fields plus a typed payload.

    Concrete events are instances of the per-event-type subclasses in `EVENT_CLASSES` (build
    them with `new_event`); their JSON form is the hub envelope, with `event_type` as the tag
    that selects the payload type, so hub-format messages decode straight into Events and an
    encoded Event is a valid hub message. After normalization `event_time_ms` is int epoch ms
    UTC, `source` one of schemas.vocabulary.SOURCES and `severity` one of its SEVERITIES. Positional field
    order is part of the API (it is the cheap way to build one).
    """

    event_id: EventId
    event_time_ms: int
    payload: AnyPayload
    ingest_time_ms: Annotated[int, Meta(description="Set by the hub when it ingests the event.")] = 0
    source: str = ""
    schema_version: SchemaVersion = SCHEMA_VERSION
    correlation_id: str = ""
    parent_event_id: str = ""
    severity: str = ""
    environment: str = ""
    region: str = ""
    tags: dict[str, str] = {}

    @property
    def event_type(self) -> str:
        """The event type, e.g. `telemetry.request` (the tag of the payload type)."""
        return EVENT_TYPE_OF[type(self.payload)]


def _event_class(p: type[Payload]) -> type[Event]:
    # On the wire `event_time` may be any accepted time value; the normalizer makes it int ms.
    cls = msgspec.defstruct(
        f"{p.__name__}Event", [("event_time_ms", TimeValue), ("payload", p)], bases=(Event,),
        tag_field="event_type", tag=p.__struct_config__.tag, rename=_EVENT_RENAME, module=__name__,
    )
    cls.__doc__ = f"An Event whose payload is {p.__name__} (event_type {p.__struct_config__.tag!r})."
    return cls


# payload class -> its Event subclass; registered as module globals so Events pickle.
EVENT_CLASSES: dict[type[Payload], type[Event]] = {p: _event_class(p) for p in PAYLOAD_TYPES}
globals().update({cls.__name__: cls for cls in EVENT_CLASSES.values()})
AnyEvent = Union[tuple(EVENT_CLASSES.values())]  # type: ignore[valid-type]


def new_event(event_id: str, event_time_ms: int, payload: Payload, ingest_time_ms: int = 0, source: str = "",
              schema_version: str = SCHEMA_VERSION, correlation_id: str = "", parent_event_id: str = "",
              severity: str = "", environment: str = "", region: str = "",
              tags: dict[str, str] | None = None) -> Event:
    """Build the Event subclass matching the payload; `source`/`severity` default from the payload type."""
    cls = type(payload)
    return EVENT_CLASSES[cls](
        event_id, event_time_ms, payload, ingest_time_ms, source or cls.SOURCE, schema_version, correlation_id,
        parent_event_id, severity or DEFAULT_SEVERITY[cls], environment, region, {} if tags is None else tags,
    )


def is_union(hint: Any) -> bool:
    """True for `typing.Union[...]` and PEP 604 `X | Y` alike."""
    return typing.get_origin(hint) in (Union, types.UnionType)


def _unit_fields(cls: type[msgspec.Struct]) -> dict[str, str]:
    """field name -> unit kind ("duration", "size", "rate", "money") from the type metadata."""
    out: dict[str, str] = {}
    hints = typing.get_type_hints(cls, include_extras=True)
    for name in cls.__struct_fields__:
        hint = hints[name]
        candidates = typing.get_args(hint) if is_union(hint) else (hint,)
        for cand in candidates:
            if typing.get_origin(cand) is Annotated:
                for meta in cand.__metadata__:
                    if isinstance(meta, Meta) and meta.extra and "unit" in meta.extra:
                        out[name] = meta.extra["unit"]
    return out


# payload type -> {field: unit kind}; nested structs (LatencyBreakdown) are listed too.
UNIT_FIELDS: dict[type[msgspec.Struct], dict[str, str]] = {
    cls: f for cls in (*PAYLOAD_TYPES, LatencyBreakdown) if (f := _unit_fields(cls))
}

