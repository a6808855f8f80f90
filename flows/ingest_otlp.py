"""OTLP/HTTP request bodies as OpenTelemetry SDK exporters send them: decode, check, answer.

A request is decoded whole (protobuf, or OTLP/JSON with its hex ids and lowerCamelCase keys) so
a malformed one gets 400 at once instead of becoming a dead letter later. Spans whose trace or
span id is not a valid id (wrong length or all zeros: the spec's "invalid") are dropped and
reported in the answer's partial_success, as the OTLP spec asks; the rest travels on as one Kafka
message in the format the hub reads (`otlp_proto` / `otlp_json` and their metrics and logs kin).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (ExportMetricsServiceRequest,
                                                                           ExportMetricsServiceResponse)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse


class BadOtlp(ValueError):
    """The body is not an OTLP export request of this signal (answered 400)."""


@dataclass(frozen=True)
class Signal:
    name: str
    request: Any
    response: Any
    resources: str  # JSON key of the top-level list
    scopes: str
    items: str
    rejected_field: str  # partial_success field (snake_case; JSON camelCase)


SIGNALS = {
    "traces": Signal("traces", ExportTraceServiceRequest, ExportTraceServiceResponse, "resourceSpans", "scopeSpans",
                     "spans", "rejected_spans"),
    "metrics": Signal("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse, "resourceMetrics",
                      "scopeMetrics", "metrics", "rejected_data_points"),
    "logs": Signal("logs", ExportLogsServiceRequest, ExportLogsServiceResponse, "resourceLogs", "scopeLogs",
                   "logRecords", "rejected_log_records"),
}
METRIC_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
METRIC_KINDS_JSON = ("gauge", "sum", "histogram", "exponentialHistogram", "summary")


@dataclass
class Checked:
    body: bytes  # what goes to Kafka ("" when nothing is left)
    accepted: int  # spans, data points or log records
    rejected: int
    message: str


def _valid_id(raw: bytes, size: int) -> bool:
    return len(raw) == size and raw != bytes(size)


def _valid_hex_id(text: Any, size: int) -> bool:
    if not isinstance(text, str) or len(text) != 2 * size:
        return False
    try:
        return _valid_id(bytes.fromhex(text), size)
    except ValueError:
        return False


def check_proto(signal: Signal, data: bytes) -> Checked:
    try:
        req = signal.request.FromString(data)
    except (DecodeError, ValueError) as exc:
        raise BadOtlp(f"not a protobuf {signal.request.__name__}: {exc}") from None
    accepted = rejected = 0
    if signal.name == "traces":
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                keep = [s for s in ss.spans if _valid_id(s.trace_id, 16) and _valid_id(s.span_id, 8)]
                rejected += len(ss.spans) - len(keep)
                accepted += len(keep)
                if len(keep) != len(ss.spans):
                    del ss.spans[:]
                    ss.spans.extend(keep)
    elif signal.name == "metrics":
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    accepted += len(getattr(m, kind).data_points) if kind in METRIC_KINDS else 0
    else:
        accepted = sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)
    body = req.SerializeToString() if rejected else data
    return Checked(body if accepted else b"", accepted, rejected, _message(signal, rejected))


def check_json(signal: Signal, data: bytes) -> Checked:
    try:
        req = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadOtlp(f"not JSON: {exc}") from None
    if not isinstance(req, dict) or not isinstance(req.get(signal.resources, []), list):
        raise BadOtlp(f"an OTLP/JSON {signal.name} request is an object with a `{signal.resources}` list")
    accepted = rejected = 0
    try:
        for resource in req.get(signal.resources) or []:
            for scope in _list(resource, signal.scopes):
                items = _list(scope, signal.items)
                if signal.name == "traces":
                    keep = [s for s in items if isinstance(s, dict) and _valid_hex_id(s.get("traceId"), 16)
                            and _valid_hex_id(s.get("spanId"), 8)]
                    rejected += len(items) - len(keep)
                    accepted += len(keep)
                    if len(keep) != len(items):
                        scope[signal.items] = keep
                elif signal.name == "metrics":
                    for m in items:
                        kinds = [m[k] for k in METRIC_KINDS_JSON if isinstance(m, dict) and isinstance(m.get(k), dict)]
                        accepted += sum(len(_list(k, "dataPoints")) for k in kinds)
                else:
                    accepted += len(items)
    except BadOtlp:
        raise
    except (TypeError, AttributeError) as exc:
        raise BadOtlp(f"not an OTLP/JSON {signal.name} request: {exc}") from None
    body = orjson.dumps(req) if rejected else data
    return Checked(body if accepted else b"", accepted, rejected, _message(signal, rejected))


def _list(obj: Any, key: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise BadOtlp(f"expected an object holding `{key}`")
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise BadOtlp(f"`{key}` must be a list")
    return value


def _message(signal: Signal, rejected: int) -> str:
    if not rejected:
        return ""
    return f"{rejected} span(s) with an invalid trace or span id (wrong length or all zeros) were dropped"


def response_body(signal: Signal, checked: Checked | None, as_json: bool) -> bytes:
    """The Export*ServiceResponse: empty on full success, partial_success when some were rejected."""
    if as_json:
        if checked is None or not checked.rejected:
            return b"{}"
        camel = "".join(w.capitalize() if i else w for i, w in enumerate(signal.rejected_field.split("_")))
        return orjson.dumps({"partialSuccess": {camel: str(checked.rejected), "errorMessage": checked.message}})
    resp = signal.response()
    if checked is not None and checked.rejected:
        setattr(resp.partial_success, signal.rejected_field, checked.rejected)
        resp.partial_success.error_message = checked.message
    return resp.SerializeToString()


def status_body(code: int, message: str, as_json: bool) -> bytes:
    """A google.rpc.Status (what OTLP/HTTP error answers carry), without depending on its package:
    field 1 `code` (varint), field 2 `message` (string)."""
    if as_json:
        return orjson.dumps({"code": code, "message": message})
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
