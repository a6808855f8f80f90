"""How the synthetic generator writes one event in each wire format the hub accepts.

The generator builds each event once, as a hub envelope or a base event (whichever the platform
component it imitates would send); these helpers re-express it in the other JSON envelope, turn
an OTLP/JSON trace batch into the protobuf bytes the Collector's `otlp_proto` encoding writes,
and summarize LLM calls as the GenAI client metrics an OpenTelemetry SDK exports. Converting
instead of generating each format separately keeps one source of realism: the same seed gives
the same events in every format.
"""
from __future__ import annotations

import bisect
import functools
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as mpb

from schemas.events import SOURCE_OF_TYPE

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# What each source's component calls itself in a base event's `source` (aliases the hub knows).
PRODUCER = {"telemetry": "observatory", "security": "sentinel", "cost": "costops",
            "governance": "governance-dashboard", "registry": "registry", "policy": "policy-engine"}
# Base metadata keys that fill envelope fields (the rest are tags), and back.
_META_TO_HUB = {"correlationId": "correlation_id", "parentEventId": "parent_event_id", "region": "region",
                "environment": "environment", "severity": "severity"}
_HUB_TO_META = {v: k for k, v in _META_TO_HUB.items()}
_UPPER = re.compile(r"(?<!^)(?=[A-Z])")
# Bucket bounds the GenAI semantic conventions advise for the two client histograms.
DURATION_BOUNDS_S = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BOUNDS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DELTA = 1


class Message(msgspec.Struct, frozen=True, gc=False):
    """One generated message and where it goes: `source` picks the topic, `key` the partition
    (the model, asset or service it is about, so their messages stay in order on one partition)."""

    source: str
    key: bytes
    value: bytes
    # Events the hub stores from it: 0 for a bad input or a re-send; for OTLP metrics, the calls
    # its histograms summarize.
    events: int


@functools.cache  # a few dozen distinct field names: convert each once
def _snake(name: str) -> str:
    return _UPPER.sub("_", name).lower()


@functools.cache
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _rekey(obj: dict[str, Any], fn: Any) -> dict[str, Any]:
    return {fn(k): _rekey(v, fn) if type(v) is dict else v for k, v in obj.items()}


def hub_to_base(obj: dict[str, Any]) -> dict[str, Any]:
    """A hub envelope as the integration note's base event (camelCase `data`, envelope in metadata)."""
    metadata: dict[str, Any] = {}
    for field, key in _HUB_TO_META.items():
        if obj.get(field):
            metadata[key] = obj[field]
    metadata.update(obj.get("tags") or {})
    out = {"eventId": obj["event_id"], "eventType": obj["event_type"], "source": PRODUCER[obj["source"]],
           "timestamp": obj["event_time"]}
    if "schema_version" in obj:
        out["version"] = obj["schema_version"]
    out["data"] = _rekey(obj["payload"], _camel)
    out["metadata"] = metadata
    return out


def base_to_hub(obj: dict[str, Any]) -> dict[str, Any]:
    """A base event as a hub envelope; unit strings in `data` must already be canonical numbers."""
    data = dict(obj["data"])
    out: dict[str, Any] = {"event_id": obj["eventId"], "event_type": obj["eventType"],
                           "event_time": obj["timestamp"], "source": SOURCE_OF_TYPE[obj["eventType"]]}
    if "version" in obj:
        out["schema_version"] = obj["version"]
    severity = data.pop("severity", "")
    tags: dict[str, str] = {}
    for key, value in (obj.get("metadata") or {}).items():
        field = _META_TO_HUB.get(key)
        if field is None:
            tags[key] = str(value)
        elif field == "severity":
            severity = severity or value
        else:
            out[field] = value
    if severity:
        out["severity"] = severity
    if tags:
        out["tags"] = tags
    out["payload"] = _rekey(data, _snake)
    return out


# --- OTLP traces ----------------------------------------------------------------------------------


def kv(key: str, value: object) -> dict:
    """One OTLP/JSON KeyValue (int64 as a string, as the spec writes it)."""
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, list):
        return {"key": key, "value": {"arrayValue": {"values": [{"stringValue": str(v)} for v in value]}}}
    return {"key": key, "value": {"stringValue": str(value)}}


def span(trace: str, span_id: str, parent: str, name: str, start_ms: int, end_ms: int, attrs: list,
         failed: bool) -> dict:
    out = {"traceId": trace, "spanId": span_id, "name": name, "kind": 3 if parent else 2,
           "startTimeUnixNano": str(start_ms * 1_000_000), "endTimeUnixNano": str(end_ms * 1_000_000),
           "attributes": attrs, "status": {"code": 2, "message": "upstream error"} if failed else {}}
    if parent:
        out["parentSpanId"] = parent
    return out


def _pb_value(value: dict, into: AnyValue) -> None:
    if "stringValue" in value:
        into.string_value = value["stringValue"]
    elif "intValue" in value:
        into.int_value = int(value["intValue"])
    elif "doubleValue" in value:
        into.double_value = value["doubleValue"]
    elif "boolValue" in value:
        into.bool_value = value["boolValue"]
    elif "arrayValue" in value:
        for v in value["arrayValue"]["values"]:
            _pb_value(v, into.array_value.values.add())


def _pb_attrs(attrs: list[dict], into: Any) -> None:
    for a in attrs:
        _pb_value(a["value"], into.add(key=a["key"]).value)


def traces_to_proto(obj: dict[str, Any]) -> bytes:
    """An OTLP/JSON trace batch (hex ids) as ExportTraceServiceRequest protobuf bytes."""
    req = ExportTraceServiceRequest()
    for rs_json in obj["resourceSpans"]:
        rs = req.resource_spans.add()
        _pb_attrs(rs_json["resource"]["attributes"], rs.resource.attributes)
        for ss_json in rs_json["scopeSpans"]:
            ss = rs.scope_spans.add()
            ss.scope.name = ss_json["scope"]["name"]
            ss.scope.version = ss_json["scope"].get("version", "")
            for sp in ss_json["spans"]:
                s = ss.spans.add(trace_id=bytes.fromhex(sp["traceId"]), span_id=bytes.fromhex(sp["spanId"]),
                                 name=sp["name"], kind=sp["kind"], start_time_unix_nano=int(sp["startTimeUnixNano"]),
                                 end_time_unix_nano=int(sp["endTimeUnixNano"]))
                if sp.get("parentSpanId"):
                    s.parent_span_id = bytes.fromhex(sp["parentSpanId"])
                _pb_attrs(sp["attributes"], s.attributes)
                if sp["status"]:
                    s.status.code = sp["status"]["code"]
                    s.status.message = sp["status"].get("message", "")
    return req.SerializeToString()


# --- OTLP metrics ---------------------------------------------------------------------------------


class Call(msgspec.Struct, gc=False):
    """One LLM call as a GenAI client metrics recorder sees it."""

    model: str
    provider: str
    operation: str
    server: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    error: str | None


def _kvs(attrs: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()]


def _histogram(values: list[float], bounds: list[float], attrs: dict[str, str], start_ns: int,
               time_ns: int) -> mpb.HistogramDataPoint:
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[bisect.bisect_left(bounds, v)] += 1  # bucket i = (bounds[i-1], bounds[i]]
    return mpb.HistogramDataPoint(attributes=_kvs(attrs), start_time_unix_nano=start_ns, time_unix_nano=time_ns,
                                  count=len(values), sum=float(sum(values)), bucket_counts=counts,
                                  explicit_bounds=bounds, min=min(values), max=max(values))


def metrics_request(resource: dict[str, str], calls: list[Call], start_ns: int, time_ns: int, proto: bool) -> bytes:
    """One delta export of `gen_ai.client.operation.duration` (s) and `gen_ai.client.token.usage`
    covering `calls`, as protobuf or OTLP/JSON bytes."""
    durations: dict[tuple[str, ...], list[float]] = {}
    tokens: dict[tuple[str, ...], list[float]] = {}
    for c in calls:
        base = (c.operation, c.provider, c.model, c.server)
        durations.setdefault((*base, c.error or ""), []).append(c.latency_ms / 1000.0)
        if c.input_tokens:
            tokens.setdefault((*base, "input"), []).append(float(c.input_tokens))
        if c.output_tokens:
            tokens.setdefault((*base, "output"), []).append(float(c.output_tokens))

    def attrs(key: tuple[str, ...], last: str) -> dict[str, str]:
        op, provider, model, server, extra = key
        out = {"gen_ai.operation.name": op, "gen_ai.provider.name": provider, "gen_ai.request.model": model,
               "gen_ai.response.model": model, "server.address": server}
        if extra:
            out[last] = extra
        return out

    duration = mpb.Metric(name="gen_ai.client.operation.duration", unit="s", histogram=mpb.Histogram(
        aggregation_temporality=DELTA,
        data_points=[_histogram(v, DURATION_BOUNDS_S, attrs(k, "error.type"), start_ns, time_ns)
                     for k, v in durations.items()]))
    metrics = [duration]
    if tokens:
        metrics.append(mpb.Metric(name="gen_ai.client.token.usage", unit="{token}", histogram=mpb.Histogram(
            aggregation_temporality=DELTA,
            data_points=[_histogram(v, TOKEN_BOUNDS, attrs(k, "gen_ai.token.type"), start_ns, time_ns)
                         for k, v in tokens.items()])))
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(_kvs(resource))
    sm = rm.scope_metrics.add()
    sm.scope.name = "opentelemetry.instrumentation.openai_v2"
    sm.metrics.extend(metrics)
    if proto:
        return req.SerializeToString()
    return json_format.MessageToJson(req, use_integers_for_enums=True, indent=None).encode()


def iso(ms: int, offset_h: int = 0) -> str:
    tz = timezone(timedelta(hours=offset_h))
    dt = (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz)
    s = dt.isoformat(timespec="milliseconds")
    return s.replace("+00:00", "Z")
