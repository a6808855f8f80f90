"""OTLP metrics and logs: real ExportMetricsServiceRequest / ExportLogsServiceRequest messages
(opentelemetry-proto classes, JSON and protobuf) through the normalizer and the shard step."""
from __future__ import annotations

import bisect
import math
import pickle
import random

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1 import metrics_pb2 as mpb

from config.normalization import NormalizationSettings, SourceNormalization, SourcesNormalization
from operators.normalize import Normalizer, detect_format
from operators.shard.step import ShardState, ShardSteps, process
from operators.windows import sketch
from operators.windows.points import Cumulative
from schemas.items import RawBatch
from schemas.raw import RawMessage
from tests.fixtures_events import CURRENT_ATTRIBUTES, otlp_json_message, otlp_proto_message, otlp_span

NOW_MS = 1_763_546_400_000
T0 = (NOW_MS - 600_000) * 1_000_000  # stream start, ns
MINUTE = 60_000_000_000
DELTA, CUMULATIVE = 1, 2
MODEL_ATTRS = {"gen_ai.request.model": "gpt-4o", "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}
RES = {"service.name": "search-api", "team": "search"}
TOKEN_BOUNDS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]


def _kv(attrs: dict) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=str(v))) for k, v in attrs.items()]


def explicit(values: list[float], bounds: list[float], attrs: dict, time_ns: int, start_ns: int = T0,
             minmax: bool = True) -> mpb.HistogramDataPoint:
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[bisect.bisect_left(bounds, v)] += 1  # bucket i = (b[i-1], b[i]]
    dp = mpb.HistogramDataPoint(attributes=_kv(attrs), start_time_unix_nano=start_ns, time_unix_nano=time_ns,
                                count=len(values), sum=float(sum(values)), bucket_counts=counts,
                                explicit_bounds=bounds)
    if minmax and values:
        dp.min, dp.max = min(values), max(values)
    return dp


def exponential(values: list[float], scale: int, attrs: dict, time_ns: int,
                start_ns: int = T0) -> mpb.ExponentialHistogramDataPoint:
    idx = [math.ceil(math.log2(v) * 2**scale) - 1 for v in values]  # bucket i = (base^i, base^(i+1)]
    lo = min(idx)
    counts = [0] * (max(idx) - lo + 1)
    for i in idx:
        counts[i - lo] += 1
    return mpb.ExponentialHistogramDataPoint(
        attributes=_kv(attrs), start_time_unix_nano=start_ns, time_unix_nano=time_ns, count=len(values),
        sum=float(sum(values)), min=min(values), max=max(values), scale=scale,
        positive=mpb.ExponentialHistogramDataPoint.Buckets(offset=lo, bucket_counts=counts))


def metric(name: str, points: list, temporality: int = DELTA, unit: str = "") -> mpb.Metric:
    if isinstance(points[0], mpb.ExponentialHistogramDataPoint):
        return mpb.Metric(name=name, unit=unit, exponential_histogram=mpb.ExponentialHistogram(
            data_points=points, aggregation_temporality=temporality))
    return mpb.Metric(name=name, unit=unit, histogram=mpb.Histogram(data_points=points,
                                                                    aggregation_temporality=temporality))


def request(*metrics: mpb.Metric, resource: dict = RES) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(_kv(resource))
    sm = rm.scope_metrics.add()
    sm.scope.name = "opentelemetry.instrumentation.openai_v2"
    sm.metrics.extend(metrics)
    return req


def encode(req, proto: bool) -> bytes:
    if proto:
        return req.SerializeToString()
    return json_format.MessageToJson(req, use_integers_for_enums=True, indent=None).encode()


def run(values: list[bytes], topic_sources: dict | None = None, settings: NormalizationSettings | None = None):
    """Messages through one shard to the end of input: (shard output, closed windows by series)."""
    state = ShardState(600_000, 100_000, 60_000)
    steps = ShardSteps(Normalizer(settings, topic_sources))
    msgs = [RawMessage(v, "otel", 0, i) for i, v in enumerate(values)]
    out = process(state, RawBatch("otel-0", msgs, final=True), steps, now_ms=NOW_MS)
    windows = {(w.series.metric, w.series.model, w.window_start_ms): w for w in out.windows}
    return out, windows, state


def skipped(out) -> dict[str, int]:
    res: dict[str, int] = {}
    for s in out.skipped:
        res[s.reason] = res.get(s.reason, 0) + s.count
    return res


def true_quantile(values: list[float], q: float) -> float:
    return sorted(values)[math.floor(q * (len(values) - 1))]


def window_start(ns: int) -> int:
    ms = ns // 1_000_000
    return ms - ms % 60_000


# --- format detection -----------------------------------------------------------------------------


def test_detect_format_tells_traces_metrics_and_logs_apart() -> None:
    t1 = T0 + 5 * MINUTE
    mreq = request(metric("gen_ai.client.operation.duration", [exponential([0.5, 1.0], 6, MODEL_ATTRS, t1)]))
    ereq = request(metric("gen_ai.client.token.usage", [explicit([10.0], TOKEN_BOUNDS, MODEL_ATTRS, t1)]))
    lreq = logs_request([LogRecord(observed_time_unix_nano=t1, body=AnyValue(string_value="hi"))])
    span = otlp_span(CURRENT_ATTRIBUTES)
    assert [detect_format(encode(r, True)) for r in (mreq, ereq, lreq)] == [
        "otlp_metrics_proto", "otlp_metrics_proto", "otlp_logs_proto"]
    assert [detect_format(encode(r, False)) for r in (mreq, ereq, lreq)] == [
        "otlp_metrics_json", "otlp_metrics_json", "otlp_logs_json"]
    big = request(metric("gen_ai.client.operation.duration", [  # multi-byte lengths all the way down
        exponential([0.5] * 3, 6, {**MODEL_ATTRS, "x": "y" * 300}, t1)]), resource={"r": "z" * 20_000})
    assert detect_format(encode(big, True)) == "otlp_metrics_proto"
    assert detect_format(otlp_proto_message([span])) == "otlp_proto"
    assert detect_format(otlp_json_message([span])) == "otlp_json"


# --- metrics --------------------------------------------------------------------------------------


@pytest.mark.parametrize("proto", [True, False], ids=["proto", "json"])
def test_explicit_delta_token_usage_is_exact_and_percentiles_within_buckets(proto: bool) -> None:
    rng = random.Random(7)
    inputs = [float(rng.randint(20, 3000)) for _ in range(500)]
    outputs = [float(rng.randint(1, 800)) for _ in range(500)]
    t1 = T0 + 5 * MINUTE + 10**9
    req = request(metric("gen_ai.client.token.usage", [
        explicit(inputs, TOKEN_BOUNDS, {**MODEL_ATTRS, "gen_ai.token.type": "input"}, t1, t1 - MINUTE),
        explicit(outputs, TOKEN_BOUNDS, {**MODEL_ATTRS, "gen_ai.token.type": "output"}, t1, t1 - MINUTE)],
        unit="{token}"))
    out, windows, _ = run([encode(req, proto)])
    assert (out.events, out.dead_letters, skipped(out)) == (0, [], {"metric_points": 2})
    ws = window_start(t1)
    for name, values in (("input_tokens", inputs), ("output_tokens", outputs)):
        w = windows[(name, "gpt-4o", ws)]
        assert (w.count, w.sum, w.min, w.max) == (len(values), sum(values), min(values), max(values))
        assert w.series.team == "search"
        assert sum(w.hist.values()) == len(values)
        for q in (0.5, 0.95, 0.99):
            true = true_quantile(values, q)
            i = bisect.bisect_left(TOKEN_BOUNDS, true)
            lo, hi = (TOKEN_BOUNDS[i - 1] if i else 0), TOKEN_BOUNDS[i]
            got = sketch.quantile(w.hist, q)
            assert lo * (1 - sketch.ALPHA) <= got <= hi * (1 + sketch.ALPHA), (name, q, got, true)


@pytest.mark.parametrize("proto", [True, False], ids=["proto", "json"])
@pytest.mark.parametrize("scale", [5, 6, 8])
def test_exponential_duration_percentiles_within_documented_error(proto: bool, scale: int) -> None:
    rng = random.Random(scale)
    ok = [rng.lognormvariate(0.0, 0.8) for _ in range(2000)]  # seconds
    failed = [rng.lognormvariate(1.0, 0.3) for _ in range(37)]
    t1 = T0 + 7 * MINUTE + 5 * 10**9
    req = request(metric("gen_ai.client.operation.duration", [
        exponential(ok, scale, MODEL_ATTRS, t1, t1 - MINUTE),
        exponential(failed, scale, {**MODEL_ATTRS, "error.type": "RateLimitError"}, t1, t1 - MINUTE)], unit="s"))
    out, windows, _ = run([encode(req, proto)])
    assert (out.dead_letters, skipped(out)) == ([], {"metric_points": 2})
    ws = window_start(t1)
    lat = windows[("latency_ms", "gpt-4o", ws)]
    values = [v * 1000 for v in ok + failed]
    assert lat.count == len(values)
    assert lat.sum == pytest.approx(sum(values), rel=1e-12)
    assert (lat.min, lat.max) == (pytest.approx(min(values)), pytest.approx(max(values)))
    tol = (1 + sketch.ALPHA) * math.sqrt(2 ** (2.0**-scale)) - 1  # points.py's documented bound
    for q in (0.5, 0.9, 0.95, 0.99):
        got, true = sketch.quantile(lat.hist, q), true_quantile(values, q)
        assert abs(got / true - 1) <= tol + 1e-9, (q, got, true, tol)
    req_w, err_w = windows[("requests", "gpt-4o", ws)], windows[("errors", "gpt-4o", ws)]
    assert (req_w.count, req_w.sum) == (len(values), len(values))
    assert (err_w.count, err_w.sum) == (len(values), len(failed))


def _cumulative(values: list[float], time_ns: int, start_ns: int = T0) -> mpb.HistogramDataPoint:
    return explicit(values, TOKEN_BOUNDS, {**MODEL_ATTRS, "gen_ai.token.type": "input"}, time_ns, start_ns)


@pytest.mark.parametrize("proto", [True, False], ids=["proto", "json"])
def test_cumulative_points_become_deltas_and_a_reset_starts_over(proto: bool) -> None:
    first = [100.0, 200.0, 300.0]
    second = first + [5000.0, 7.0]            # +2 observations in the next minute
    restarted = [40.0]                        # process restart: new start time
    t1, t2, t3 = T0 + 2 * MINUTE, T0 + 3 * MINUTE, T0 + 4 * MINUTE
    msgs = [encode(request(metric("gen_ai.client.token.usage", [_cumulative(vals, t, start)], CUMULATIVE)), proto)
            for vals, t, start in ((first, t1, T0), (second, t2, T0), (second, t2, T0),  # a repeat adds nothing
                                   (restarted, t3, t3 - 30 * 10**9))]
    out, windows, _ = run(msgs)
    assert (out.dead_letters, skipped(out)) == ([], {"metric_points": 4})
    w1, w2, w3 = (windows[("input_tokens", "gpt-4o", window_start(t))] for t in (t1, t2, t3))
    assert (w1.count, w1.sum, w1.min, w1.max) == (3, 600.0, 100.0, 300.0)
    assert (w2.count, w2.sum) == (2, 5007.0)
    # a delta of cumulative points knows its values only by bucket: 7 in (4, 16], 5000 in (4096, 16384]
    # (clamped by the stream max, 5000)
    assert sum(w2.hist.values()) == 2 and 4 <= w2.min <= 16 and 4096 <= w2.max <= 5000
    assert (w3.count, w3.sum, w3.min, w3.max) == (1, 40.0, 40.0, 40.0)


def test_cumulative_count_drop_is_a_reset_and_exponential_scales_subtract() -> None:
    c = Cumulative(max_streams=2)
    attrs = {**MODEL_ATTRS}
    norm = Normalizer()

    def point(values: list[float], scale: int, t: int):
        req = request(metric("gen_ai.client.operation.duration", [exponential(values, scale, attrs, t)], CUMULATIVE))
        [p] = norm.normalize_batch([RawMessage(encode(req, True))], now_ms=NOW_MS).metric_points
        return p

    vals = [0.3, 0.6, 1.2]
    p1 = point(vals, 8, T0 + MINUTE)
    p2 = point(vals + [2.4, 0.3], 6, T0 + 2 * MINUTE)  # the SDK downscaled between exports
    assert c.delta(p1) is p1
    d = c.delta(p2)
    assert (d.count, d.scale, sum(d.counts) + d.zero_count) == (2, 6, 2)
    assert d.sum == pytest.approx(2.7)
    p3 = point([0.5], 6, T0 + 3 * MINUTE)  # count went down with the same start time: a reset
    assert c.delta(p3) is p3
    for i in range(3):  # the state stays bounded
        c.delta(point([0.5], 6, T0 + (4 + i) * MINUTE).__class__(**{**_fields(p3), "stream": f"s{i}"}))
    assert len(c.last) == 2
    assert pickle.loads(pickle.dumps(c)).last.keys() == c.last.keys()


def _fields(p) -> dict:
    return {f: getattr(p, f) for f in p.__struct_fields__}


def test_shard_state_with_cumulative_streams_survives_a_snapshot() -> None:
    t1, t2 = T0 + 2 * MINUTE, T0 + 3 * MINUTE
    m1 = encode(request(metric("gen_ai.client.token.usage", [_cumulative([10.0, 20.0], t1)], CUMULATIVE)), True)
    m2 = encode(request(metric("gen_ai.client.token.usage", [_cumulative([10.0, 20.0, 30.0], t2)], CUMULATIVE)), True)
    state = ShardState(600_000, 100_000, 60_000)
    steps = ShardSteps(Normalizer())
    process(state, RawBatch("s", [RawMessage(m1, "otel", 0, 0)]), steps, now_ms=NOW_MS)
    state = pickle.loads(pickle.dumps(state))
    out = process(state, RawBatch("s", [RawMessage(m2, "otel", 0, 1)], final=True), steps, now_ms=NOW_MS)
    sums = {w.window_start_ms: (w.count, w.sum) for w in out.windows if w.series.metric == "input_tokens"}
    assert sums == {window_start(t1): (2, 30.0), window_start(t2): (1, 30.0)}


@pytest.mark.parametrize("proto", [True, False], ids=["proto", "json"])
def test_bad_points_are_dead_letters_and_their_siblings_go_on(proto: bool) -> None:
    t1 = T0 + 5 * MINUTE
    attrs = {**MODEL_ATTRS, "gen_ai.token.type": "input"}
    good = explicit([10.0, 20.0], TOKEN_BOUNDS, attrs, t1)
    wrong_total = explicit([10.0, 20.0], TOKEN_BOUNDS, attrs, t1)
    wrong_total.count = 5
    nan_sum = explicit([10.0], TOKEN_BOUNDS, attrs, t1)
    nan_sum.sum = float("nan")
    negative = explicit([10.0], TOKEN_BOUNDS, attrs, t1)
    negative.sum = -10.0
    neg_buckets = exponential([0.5], 6, MODEL_ATTRS, t1)
    neg_buckets.negative.bucket_counts.append(1)
    neg_buckets.count = 2
    req = request(metric("gen_ai.client.token.usage", [good, wrong_total, nan_sum, negative]),
                  metric("gen_ai.client.operation.duration", [neg_buckets]),
                  metric("http.client.request.duration", [explicit([0.1], [0.5], {}, t1)]))
    out, windows, _ = run([encode(req, proto)])
    reasons = sorted((d.code, d.field) for d in out.dead_letters)
    assert reasons == [("invalid_field", "bucketCounts"), ("invalid_field", "sum"), ("negative_value", "negative"),
                       ("negative_value", "sum")]
    assert all(d.reason and d.raw for d in out.dead_letters)
    assert "add up to 2, not its count 5" in next(d.reason for d in out.dead_letters if d.field == "bucketCounts")
    assert skipped(out) == {"metric_points": 1, "other_metric": 1}
    # every data point accounted: events + dead letters + skipped
    assert out.events + len(out.dead_letters) + sum(skipped(out).values()) == 6
    assert windows[("input_tokens", "gpt-4o", window_start(t1))].sum == 30.0


def test_json_negative_count_and_garbage_are_readable_dead_letters() -> None:
    neg = (b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "gen_ai.client.token.usage", '
           b'"histogram": {"aggregationTemporality": 1, "dataPoints": [{"count": "-3"}]}}]}]}]}')
    out, _, _ = run([neg, b"\n\x05\x12\x03\x12\x01\xff"],
                    topic_sources={"otel": "telemetry"},
                    settings=NormalizationSettings(sources=SourcesNormalization(
                        telemetry=SourceNormalization(wire_format="auto"))))
    codes = [d.code for d in out.dead_letters]
    assert codes[0] == "malformed_json" and "ExportMetricsServiceRequest" in out.dead_letters[0].reason
    assert len(codes) == 2


def test_pinned_metrics_proto_topic_skips_the_probe() -> None:
    t1 = T0 + 5 * MINUTE
    req = request(metric("gen_ai.client.token.usage", [
        explicit([3.0], TOKEN_BOUNDS, {**MODEL_ATTRS, "gen_ai.token.type": "output"}, t1)]))
    s = NormalizationSettings(sources=SourcesNormalization(telemetry=SourceNormalization(
        wire_format="otlp_metrics_proto")))
    out, windows, _ = run([encode(req, True)], topic_sources={"otel": "telemetry"}, settings=s)
    assert skipped(out) == {"metric_points": 1}
    assert windows[("output_tokens", "gpt-4o", window_start(t1))].sum == 3.0


# --- logs -----------------------------------------------------------------------------------------


def logs_request(records: list[LogRecord]) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(_kv(RES))
    rl.scope_logs.add().log_records.extend(records)
    return req


@pytest.mark.parametrize("proto", [True, False], ids=["proto", "json"])
def test_logs_are_accepted_and_accounted(proto: bool) -> None:
    t1 = T0 + 5 * MINUTE
    records = [
        LogRecord(time_unix_nano=t1, observed_time_unix_nano=t1, severity_number=9,
                  body=AnyValue(string_value="request served"), trace_id=bytes(range(16)), span_id=bytes(range(8))),
        LogRecord(observed_time_unix_nano=t1, event_name="gen_ai.client.inference.operation.details",
                  attributes=_kv({"gen_ai.request.model": "gpt-4o"})),
        LogRecord(observed_time_unix_nano=t1, attributes=_kv({"event.name": "gen_ai.client.inference.operation.details"})),
        LogRecord(observed_time_unix_nano=t1, severity_number=17,
                  attributes=_kv({"exception.type": "openai.RateLimitError", "exception.message": "slow down"})),
    ]
    out, windows, _ = run([encode(logs_request(records), proto)])
    assert (out.events, out.dead_letters, windows) == (0, [], {})
    assert skipped(out) == {"log_record": 1, "genai_event": 2, "exception_log": 1}
