"""Wire-format Structs: what producers send, decoded by msgspec straight into typed objects.

Three JSON formats (OTLP protobuf is decoded with `opentelemetry-proto`, see the normalizer):

- hub envelope: the hub's own format and the JSON form of `schemas.events.Event`. Common
  fields at the top, `event_type` selects the payload Struct (a tagged union on
  `event_type`), units canonical (ms, bytes, per second; money in the payload's `currency`).
- base event: the integration note's base event schema (`eventId`, `eventType`, `source`,
  `timestamp`, `version`, `data`, `metadata`), camelCase, `eventType` selects the `data`
  Struct. Duration, size and rate fields also accept strings with a unit ("1.2s", "512MB",
  "120/min").
- OTLP/JSON: `ExportTraceServiceRequest` as the OpenTelemetry Collector's Kafka exporter
  writes it with `encoding: otlp_json`.

The per-type envelope classes are generated from `schemas.events.PAYLOAD_TYPES`, so adding a
payload type adds it to every format and to the exported JSON Schemas (`schemas.jsonschema`).
"""
from __future__ import annotations

import inspect
import typing
from typing import Annotated, Any, Union

import msgspec
from msgspec import Meta

from schemas.events import (
    PAYLOAD_TYPES,
    SCHEMA_VERSION,
    UNIT_FIELDS,
    AnyEvent,
    EventId,
    LatencyBreakdown,
    Payload,
    SchemaVersion,
    TimeValue,
    is_union,
)

# --- hub envelope ----------------------------------------------------------------------------------
# The hub envelope is the JSON form of `schemas.events.Event`: common fields at the top,
# `event_type` (the tag) selects the payload Struct. Decoding it yields Events directly.
HubMessage = AnyEvent

# --- base event schema (integration note) ----------------------------------------------------------

# Convertible-unit fields accept a number in the canonical unit or a string with a unit.
_UNIT_WIRE_DESC = {
    "duration": "Milliseconds as a number, or a string with a unit: '250ms', '1.5s', '2m', '800us'.",
    "size": "Bytes as a number, or a string with a unit: '512KB', '1.5GB', '10MiB' (1 KB = 1024 B).",
    "rate": "Per second as a number, or a string with a period: '120/min', '3/s', '7200/h'.",
}


def _wire_type(hint: Any, unit: str | None) -> Any:
    """Type of a base-format data field: canonical type, widened with `str` for unit fields."""
    if unit is None or unit == "money":
        return hint
    optional = is_union(hint) and type(None) in typing.get_args(hint)
    desc = _UNIT_WIRE_DESC[unit]
    widened = Annotated[Union[Annotated[float, Meta(ge=0)], str], Meta(description=desc)]
    return Union[widened, None] if optional else widened


_CAMEL_CACHE: dict[type, type] = {}


def _camel_struct(cls: type[msgspec.Struct], extra: list[tuple[str, Any, Any]]) -> type[msgspec.Struct]:
    """camelCase twin of a payload Struct for the base format's `data` object."""
    if cls in _CAMEL_CACHE:
        return _CAMEL_CACHE[cls]
    hints = typing.get_type_hints(cls, include_extras=True)
    units = UNIT_FIELDS.get(cls, {})
    fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
    for name, default in zip(cls.__struct_fields__, _defaults(cls)):
        hint = hints[name]
        if _is_struct(hint, LatencyBreakdown):
            hint = Union[_camel_struct(LatencyBreakdown, []), None]
        typ = _wire_type(hint, units.get(name))
        fields.append((name, typ) if default is msgspec.NODEFAULT else (name, typ, default))
    fields.extend(extra)
    out = msgspec.defstruct(
        f"{cls.__name__}Data", fields, rename="camel", kw_only=True, omit_defaults=True, gc=False,
        module=__name__,
    )
    out.__doc__ = f"`data` of a base-format event carrying {cls.__name__} (camelCase fields)."
    _CAMEL_CACHE[cls] = out
    return out


def _defaults(cls: type[msgspec.Struct]) -> list[Any]:
    out = []
    for f in msgspec.structs.fields(cls):
        if f.default is not msgspec.NODEFAULT:
            out.append(f.default)
        elif f.default_factory is not msgspec.NODEFAULT:
            out.append(f.default_factory())
        else:
            out.append(msgspec.NODEFAULT)
    return out


def _is_struct(hint: Any, cls: type) -> bool:
    return hint is cls or (is_union(hint) and cls in typing.get_args(hint))


class BaseEvent(msgspec.Struct, kw_only=True, tag_field="eventType", rename="camel", forbid_unknown_fields=False,
                gc=False):
    """Common fields of the base event schema; one subclass per event type adds typed `data`."""

    event_id: EventId
    source: str
    timestamp: TimeValue
    version: SchemaVersion = SCHEMA_VERSION
    metadata: dict[str, Any] = {}


# `severity` may sit in `data` (the note's violation example does that); it is lifted to the event.
_DATA_EXTRA: list[tuple[str, Any, Any]] = [("severity", str, "")]
BASE_DATA_TYPES: dict[type[Payload], type[msgspec.Struct]] = {
    p: _camel_struct(p, _DATA_EXTRA) for p in PAYLOAD_TYPES
}


def _base_variant(p: type[Payload]) -> type[BaseEvent]:
    tag = p.__struct_config__.tag
    cls = msgspec.defstruct(
        f"Base{p.__name__}", [("data", BASE_DATA_TYPES[p])], bases=(BaseEvent,), tag=tag, kw_only=True,
        rename="camel", module=__name__,
    )
    cls.__doc__ = f"A base-format event of type {tag!r}."
    return cls


BASE_VARIANTS: tuple[type[BaseEvent], ...] = tuple(_base_variant(p) for p in PAYLOAD_TYPES)
BaseMessage = Union[BASE_VARIANTS]  # type: ignore[valid-type]

# base variant class -> payload class
BASE_PAYLOAD_OF: dict[type, type[Payload]] = {v: p for v, p in zip(BASE_VARIANTS, PAYLOAD_TYPES)}


def _positional(p: type[msgspec.Struct], twin: type[msgspec.Struct]) -> bool:
    """Can `p(*astuple(twin_instance)[:n])` build the payload? (same field order, no kw-only)"""
    params = inspect.signature(p).parameters.values()
    return (all(x.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for x in params)
            and twin.__struct_fields__[: len(p.__struct_fields__)] == p.__struct_fields__)


# Payload classes whose base twin converts by positional construction (values were validated
# when the twin was decoded), instead of a second validating msgspec.convert pass.
BASE_POSITIONAL: frozenset[type[Payload]] = frozenset(
    p for p, twin in BASE_DATA_TYPES.items() if _positional(p, twin)
)
BREAKDOWN_POSITIONAL = _positional(LatencyBreakdown, _CAMEL_CACHE[LatencyBreakdown])

# --- OTLP/JSON ------------------------------------------------------------------------------------


# Absent Raw fields hold this `null`, so re-encoding a span (for a dead letter) stays valid JSON.
NULL_RAW = msgspec.Raw(b"null")


def _null_raw() -> msgspec.Raw:
    return NULL_RAW


class ArrayValue(msgspec.Struct, gc=False):
    values: list[AnyValue] = []


class AnyValue(msgspec.Struct, gc=False, omit_defaults=True):
    """OTLP AnyValue; exactly one field is set. int64 arrives as a JSON string or number."""

    stringValue: str | None = None
    intValue: int | str | None = None
    doubleValue: float | str | None = None
    boolValue: bool | None = None
    arrayValue: ArrayValue | None = None
    kvlistValue: KeyValueList | None = None
    bytesValue: str | None = None


class KeyValueList(msgspec.Struct, gc=False):
    values: list[KeyValue] = []


class KeyValue(msgspec.Struct, gc=False):
    key: str
    value: AnyValue = msgspec.field(default_factory=AnyValue)


class Status(msgspec.Struct, gc=False, omit_defaults=True):
    code: int | str = 0
    message: str = ""


class SpanEvent(msgspec.Struct, gc=False, omit_defaults=True):
    name: str = ""
    timeUnixNano: int | str = 0
    attributes: list[KeyValue] = []


class Span(msgspec.Struct, gc=False, omit_defaults=True):
    """One OTLP span. Times are unix nanoseconds (JSON string or number)."""

    traceId: str = ""
    spanId: str = ""
    parentSpanId: str = ""
    name: str = ""
    kind: int | str = 0
    startTimeUnixNano: int | str = 0
    endTimeUnixNano: int | str = 0
    attributes: list[KeyValue] = []
    # Span events (exception stack traces...) are decoded only when a failed span needs its
    # exception type: list[SpanEvent] on demand.
    events: Annotated[msgspec.Raw, Meta(description="list of SpanEvent")] = msgspec.field(default_factory=_null_raw)
    status: Status | None = None


class InstrumentationScope(msgspec.Struct, gc=False, omit_defaults=True):
    name: str = ""
    version: str = ""


class ScopeSpans(msgspec.Struct, gc=False, omit_defaults=True):
    scope: InstrumentationScope | None = None
    spans: list[Span] = []


class Resource(msgspec.Struct, gc=False, omit_defaults=True):
    attributes: list[KeyValue] = []


class ResourceSpans(msgspec.Struct, gc=False, omit_defaults=True):
    resource: Resource | None = None
    scopeSpans: list[ScopeSpans] = []


class OtlpTraces(msgspec.Struct, gc=False):
    """`ExportTraceServiceRequest` in OTLP/JSON: one message holds many spans."""

    resourceSpans: list[ResourceSpans]

