"""OTLP metrics and logs (JSON or protobuf) -> metric points for the windows, or skipped inputs.

Metrics: the GenAI client metrics `gen_ai.client.token.usage` (tokens per call, split by
`gen_ai.token.type` = input | output) and `gen_ai.client.operation.duration` (seconds per call)
are histograms, explicit-bucket or exponential, delta or cumulative. Each data point is already
an aggregate, so it becomes a `MetricPoint` that the shard step folds into its windows as a
partial (cumulative points turn into deltas there, where the previous point per stream lives);
it never becomes a fake event. A point is accounted as skipped input with reason
`metric_points` (it is neither an event nor a dead letter, and the `skipped_inputs` table already
balances input = events + dead letters + skipped per message, so no new table or counter is
needed); points of other metrics are skipped as `other_metric`, token types other than
input/output as `other_token_type`. A point that breaks a rule (negative or NaN values, bucket
counts that do not add up to the count, bounds out of order) is dead-lettered on its own, with
its own bytes.

Logs are not LLM calls: every log record is skipped as `log_record`, or `genai_event` (the GenAI
event `gen_ai.client.inference.operation.details`) or `exception_log` (a record with
`exception.type` / `exception.message`). Accepted and counted, never dead letters.

OTLP/JSON goes through protobuf's JSON mapping into the same messages as protobuf input, so both
encodings share one path (metrics and logs are aggregates and records, not the hot path).
"""
from __future__ import annotations

import math
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from operators.normalize.batch import Batch
from operators.normalize.otlp import _av_pb
from operators.normalize.reasons import (
    IMPOSSIBLE_TIMESTAMP,
    INVALID_FIELD,
    MALFORMED_JSON,
    MALFORMED_PROTOBUF,
    MISSING_FIELD,
    NEGATIVE_VALUE,
    Reject,
)
from operators.normalize.sources import SourceRules
from operators.normalize.values import check_time_range
from schemas.metrics import MetricPoint
from schemas.raw import RawMessage

TOKEN_USAGE = "gen_ai.client.token.usage"
DURATION = "gen_ai.client.operation.duration"
INFERENCE_EVENT = "gen_ai.client.inference.operation.details"
METRIC_POINTS, OTHER_METRIC, OTHER_TOKEN_TYPE = "metric_points", "other_metric", "other_token_type"
LOG_RECORD, GENAI_EVENT, EXCEPTION_LOG = "log_record", "genai_event", "exception_log"
TOKEN_METRICS = {"input": "input_tokens", "output": "output_tokens"}
# duration unit -> factor to ms (the convention's unit is seconds; an empty unit means it)
DURATION_UNITS = {"s": 1000.0, "": 1000.0, "ms": 1.0, "us": 0.001, "µs": 0.001}
DELTA, CUMULATIVE = 1, 2
MIN_SCALE, MAX_SCALE = -10, 20
UNKNOWN_MODEL = "unknown"


def _decode(m: RawMessage, st: Batch, cls: type, proto: bool) -> Any:
    """The request message, or None after dead-lettering bytes that are not one."""
    try:
        if proto:
            return cls.FromString(m.value)
        return json_format.Parse(m.value, cls(), ignore_unknown_fields=True)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, ParseError and friends
        what = cls.__name__
        if proto:
            st.reject(m, MALFORMED_PROTOBUF, "", f"message is not an OTLP {what} protobuf: {exc}"[:500], "telemetry")
        else:
            st.reject(m, MALFORMED_JSON, "", f"message is not an OTLP/JSON {what}: {exc}"[:500], "telemetry")
        return None


def _attrs(kvs: Any, amap: dict[str, str], into: dict[str, Any] | None = None) -> dict[str, Any]:
    out = dict(into) if into else {}
    for kv in kvs:
        out[amap.get(kv.key, kv.key) if amap else kv.key] = _av_pb(kv.value)
    return out


# --- metrics --------------------------------------------------------------------------------------


def otlp_metrics(m: RawMessage, st: Batch, rt: SourceRules, proto: bool) -> None:
    """One ExportMetricsServiceRequest -> metric points, skipped and dead-lettered points in `st`."""
    req = _decode(m, st, ExportMetricsServiceRequest, proto)
    if req is None:
        return
    amap = rt.mappings
    seen = accepted = 0
    other: dict[str, int] = {}
    for rm in req.resource_metrics:
        res = _attrs(rm.resource.attributes, amap)
        for sm in rm.scope_metrics:
            scope = sm.scope.name
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                points = getattr(metric, kind).data_points if kind else ()
                n = len(points)
                seen += n
                if metric.name not in (TOKEN_USAGE, DURATION):
                    if n:
                        other[OTHER_METRIC] = other.get(OTHER_METRIC, 0) + n
                    continue
                for dp in points:
                    try:
                        point = _point(metric, kind, dp, res, scope, amap, rt, st)
                    except Reject as r:
                        st.reject(m, r.code, r.field, r.reason, "telemetry", f"{metric.name}@{dp.time_unix_nano}",
                                  raw=dp.SerializeToString())
                        continue
                    if point is None:
                        other[OTHER_TOKEN_TYPE] = other.get(OTHER_TOKEN_TYPE, 0) + 1
                    else:
                        st.points.append(point)
                        accepted += 1
    if accepted:
        st.skip(m, METRIC_POINTS, accepted)
    for reason, n in other.items():
        st.skip(m, reason, n)
    if not seen:
        st.reject(m, MISSING_FIELD, "resourceMetrics", "OTLP metrics message holds no data points", "telemetry")


def _point(metric: Any, kind: str, dp: Any, res: dict[str, Any], scope: str, amap: dict[str, str],
           rt: SourceRules, st: Batch) -> MetricPoint | None:
    """One histogram data point -> MetricPoint; None for a token type the hub has no metric for."""
    name = metric.name
    if kind not in ("histogram", "exponential_histogram"):
        raise Reject(INVALID_FIELD, name, f"{name} must be a histogram or exponential histogram, not a {kind}")
    temporality = getattr(metric, kind).aggregation_temporality
    if temporality not in (DELTA, CUMULATIVE):
        raise Reject(INVALID_FIELD, "aggregationTemporality",
                     f"{name} has no aggregation temporality (expected delta or cumulative)")
    attrs = _attrs(dp.attributes, amap, res)
    requests = name == DURATION
    if requests:
        metric_name = "latency_ms"
        factor = DURATION_UNITS.get(metric.unit)
        if factor is None:
            raise Reject(INVALID_FIELD, "unit", f"{name} unit '{metric.unit}' is not a time unit (expected s or ms)")
    else:
        metric_name = TOKEN_METRICS.get(str(attrs.get("gen_ai.token.type", "")))
        if metric_name is None:
            return None
        factor = 1.0
    if dp.time_unix_nano <= 0:
        raise Reject(IMPOSSIBLE_TIMESTAMP, "timeUnixNano", f"{name} data point has no time")
    ms = dp.time_unix_nano // 1_000_000 - rt.skew
    if ms > st.hi or ms < st.lo:
        check_time_range(ms, "timeUnixNano", st)
    count = dp.count
    total = dp.sum if dp.HasField("sum") else None
    lo = dp.min if dp.HasField("min") else None
    hi = dp.max if dp.HasField("max") else None
    for field, v in (("sum", total), ("min", lo), ("max", hi)):
        if v is not None:
            if not math.isfinite(v):
                raise Reject(INVALID_FIELD, field, f"{name} data point {field} is {v}, not a finite number")
            if v < 0:
                raise Reject(NEGATIVE_VALUE, field, f"{name} data point {field} is negative ({v}); "
                             "token counts and durations cannot be")
    if lo is not None and hi is not None and lo > hi:
        raise Reject(INVALID_FIELD, "min", f"{name} data point min ({lo}) exceeds its max ({hi})")
    if kind == "histogram":
        bounds, counts = list(dp.explicit_bounds), list(dp.bucket_counts)
        if counts and len(counts) != len(bounds) + 1:
            raise Reject(INVALID_FIELD, "bucketCounts", f"{name} data point has {len(counts)} bucket counts for "
                         f"{len(bounds)} bounds (expected {len(bounds) + 1})")
        if not all(math.isfinite(b) for b in bounds) or any(a >= b for a, b in zip(bounds, bounds[1:])):
            raise Reject(INVALID_FIELD, "explicitBounds", f"{name} data point bounds must be finite and increasing")
        if counts and sum(counts) != count:
            raise Reject(INVALID_FIELD, "bucketCounts", f"{name} data point bucket counts add up to {sum(counts)}, "
                         f"not its count {count}")
        scale, offset, zero = None, 0, 0
    else:
        scale, zero = dp.scale, dp.zero_count
        if not MIN_SCALE <= scale <= MAX_SCALE:
            raise Reject(INVALID_FIELD, "scale", f"{name} data point scale {scale} is outside "
                         f"[{MIN_SCALE}, {MAX_SCALE}]")
        if any(dp.negative.bucket_counts):
            raise Reject(NEGATIVE_VALUE, "negative", f"{name} data point has negative buckets; token counts and "
                         "durations cannot be negative")
        bounds, counts, offset = [], list(dp.positive.bucket_counts), dp.positive.offset
        if sum(counts) + zero != count:
            raise Reject(INVALID_FIELD, "positive.bucketCounts", f"{name} data point buckets add up to "
                         f"{sum(counts) + zero}, not its count {count}")
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or UNKNOWN_MODEL
    endpoint = attrs.get("endpoint") or attrs.get("http.route") or attrs.get("server.address") or ""
    stream = "\x1f".join((name, scope, *(f"{k}={v}" for k, v in sorted(attrs.items(), key=lambda kv: kv[0]))))
    return MetricPoint(
        metric=metric_name, model=str(model), endpoint=str(endpoint), team=str(attrs.get("team", "")),
        stream=stream, start_ns=dp.start_time_unix_nano, time_ns=dp.time_unix_nano, time_ms=ms,
        cumulative=temporality == CUMULATIVE, count=count, sum=total, min=lo, max=hi, factor=factor,
        bounds=bounds, counts=counts, scale=scale, offset=offset, zero_count=zero, requests=requests,
        error=requests and bool(attrs.get("error.type")))


# --- logs -----------------------------------------------------------------------------------------


def otlp_logs(m: RawMessage, st: Batch, rt: SourceRules, proto: bool) -> None:
    """One ExportLogsServiceRequest: every log record is skipped, with the reason it is not a call."""
    req = _decode(m, st, ExportLogsServiceRequest, proto)
    if req is None:
        return
    counts: dict[str, int] = {}
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                reason = _log_reason(rec)
                counts[reason] = counts.get(reason, 0) + 1
    for reason, n in counts.items():
        st.skip(m, reason, n)
    if not counts:
        st.reject(m, MISSING_FIELD, "resourceLogs", "OTLP logs message holds no log records", "telemetry")


def _log_reason(rec: Any) -> str:
    if rec.event_name == INFERENCE_EVENT:
        return GENAI_EVENT
    exception = False
    for kv in rec.attributes:
        key = kv.key
        if key == "event.name" and kv.value.string_value == INFERENCE_EVENT:
            return GENAI_EVENT
        if key in ("exception.type", "exception.message"):
            exception = True
    return EXCEPTION_LOG if exception else LOG_RECORD
