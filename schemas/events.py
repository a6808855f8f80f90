"""The unified event model: one `Event` with common fields and a tagged union of payloads.

Every accepted wire format (hub envelope, the integration note's base event schema, OTLP spans)
is decoded and normalized into these Structs; everything downstream (dedup, windows, columns,
correlation) reads only these. Times are int epoch milliseconds UTC, so the hot path never
builds datetime objects.

The payload Structs live in `schemas.payloads` (one module per source family) and their field
types in `schemas.scalars`; this module gathers them into the registries below and re-exports
them, so `schemas.events` stays the one place to import the event model from.

Validation rules that a type can say live on the types themselves (see `schemas.scalars`):
required = a field without default, range = `Meta(ge/le)`, enum = `Literal`. Rules a type
can't say (formats, timestamps, units, aliases, cross-field checks) are the normalizer's: see
`operators/normalize/`. Fields carrying a convertible unit are listed in `UNIT_FIELDS`.
"""
from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Union

import msgspec
from msgspec import Meta

from schemas.payloads.base import Payload
from schemas.payloads.cost import ApiCost, BudgetAlert, PriceChange, ResourceConsumption, TokenCost
from schemas.payloads.governance import AuditTrail, ComplianceCheck, DataLineage, GovernanceViolation
from schemas.payloads.policy import (
    AuditLogged,
    ComplianceVerified,
    PolicyEvaluated,
    PolicyUpdated,
    ViolationDetected,
)
from schemas.payloads.registry import (
    AssetDeprecated,
    AssetPayload,
    AssetRegistered,
    AssetUpdated,
    VersionPromoted,
    VersionPublished,
    VersionRetired,
)
from schemas.payloads.security import (
    AuthDecision,
    ComplianceViolation,
    PrivacyFinding,
    ThreatDetected,
    VulnerabilityFound,
)
from schemas.payloads.telemetry import (
    AGENT_OPERATIONS,
    AgentOperation,
    ErrorOccurred,
    Latency,
    LatencyBreakdown,
    LlmRequest,
    ModelPerformance,
    Throughput,
    TokenUsage,
)
# Re-exported with the payloads: callers import the field types from here too.
from schemas.scalars import (
    SEMVER_PATTERN,
    Count,
    Currency,
    DurationMs,
    EventId,
    Money,
    PerSecond,
    Ratio,
    SchemaVersion,
    SizeBytes,
)

SCHEMA_VERSION = "1.0.0"

PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    LlmRequest, Latency, Throughput, ErrorOccurred, TokenUsage, ModelPerformance, AgentOperation,
    ThreatDetected, VulnerabilityFound, ComplianceViolation, AuthDecision, PrivacyFinding,
    TokenCost, ApiCost, ResourceConsumption, BudgetAlert, PriceChange,
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
    """Build the Event subclass matching the payload; `source`/`severity` default from the payload type.

    >>> e = new_event("evt-1", 1_763_546_340_000, LlmRequest(model="gpt-4o", latency_ms=812.5))
    >>> e.event_type, e.source, e.severity, e.payload.model
    ('telemetry.request', 'telemetry', 'info', 'gpt-4o')
    >>> new_event("evt-2", 1_763_546_340_000, BudgetAlert(budget_id="b-1", limit=100.0, spent=95.0)).severity
    'medium'
    >>> msgspec.json.decode(msgspec.json.encode(e), type=AnyEvent) == e  # its JSON is a hub message
    True
    """
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

