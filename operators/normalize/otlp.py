"""OTLP traces (JSON or protobuf) -> one LlmRequest event per LLM span.

A span is an LLM call when it carries any GenAI / LLM attribute; other spans (HTTP, DB...)
are counted as skipped, not rejected. Current and legacy GenAI attribute names fill the same
slot, the best-ranked name winning; resource attributes fill slots the span left empty. A
span that fails a rule is dead-lettered on its own, with its own bytes, and its siblings go on.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import msgspec

from operators.normalize.batch import Batch
from operators.normalize.reasons import (
    IMPOSSIBLE_TIMESTAMP,
    INVALID_FIELD,
    MALFORMED_PROTOBUF,
    MISSING_FIELD,
    NEGATIVE_VALUE,
    OVERSIZED,
    Reject,
    explain,
)
from operators.normalize.sources import SourceRules
from operators.normalize.checks import check_call_limits
from operators.normalize.values import MAX_COUNT, check_time_range, count, nanos, tag_str, text
from schemas.events import AGENT_OPERATIONS, EVENT_CLASSES, SCHEMA_VERSION, AgentOperation, Event, LlmRequest
from schemas.raw import RawMessage
from schemas.scalars import MAX_MAGNITUDE
from schemas.wire import NULL_RAW, OtlpTraces, SpanEvent

try:  # opentelemetry-proto is a hard dependency; import lazily-failing for a clear message
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest as _ExportRequest,
    )
except ImportError as _exc:  # pragma: no cover
    raise ImportError("opentelemetry-proto is required to decode otlp_proto messages") from _exc

# OTLP span attributes -> LlmRequest slot. Lower rank wins; current names rank before legacy.
# Names from the GenAI semantic conventions up to v1.41 (current and deprecated), OpenLLMetry
# (llm.usage.*, llm.request.type) and OpenInference (llm.token_count.*, llm.model_name, ...).
_SLOTS = ("provider", "model", "response_model", "input", "output", "cached", "total", "operation",
          "response_id", "finish", "error_type", "ttft", "environment", "region", "cache_write", "reasoning",
          "cost", "params", "agent", "tool", "kind")
(_PROVIDER, _MODEL, _RESP_MODEL, _IN, _OUT, _CACHED, _TOTAL, _OP, _RESP_ID, _FINISH, _ERR, _TTFT,
 _ENV, _REGION, _CACHE_WRITE, _REASONING, _COST, _PARAMS, _AGENT, _TOOL, _KIND) = range(len(_SLOTS))
GENAI_ATTRIBUTES: dict[str, tuple[int, int]] = {
    "gen_ai.provider.name": (_PROVIDER, 0), "gen_ai.system": (_PROVIDER, 1), "llm.provider": (_PROVIDER, 2),
    "llm.system": (_PROVIDER, 3),
    "gen_ai.request.model": (_MODEL, 0), "llm.request.model": (_MODEL, 1),
    "gen_ai.response.model": (_RESP_MODEL, 0), "llm.response.model": (_RESP_MODEL, 1),
    "llm.model_name": (_RESP_MODEL, 2), "embedding.model_name": (_RESP_MODEL, 3),  # OpenInference: who answered
    "gen_ai.usage.input_tokens": (_IN, 0), "gen_ai.usage.prompt_tokens": (_IN, 1),
    "llm.usage.prompt_tokens": (_IN, 2), "llm.token_count.prompt": (_IN, 3),
    "gen_ai.usage.output_tokens": (_OUT, 0), "gen_ai.usage.completion_tokens": (_OUT, 1),
    "llm.usage.completion_tokens": (_OUT, 2), "llm.token_count.completion": (_OUT, 3),
    "gen_ai.usage.cache_read.input_tokens": (_CACHED, 0), "gen_ai.usage.cache_read_input_tokens": (_CACHED, 1),
    "llm.usage.cache_read_input_tokens": (_CACHED, 2), "llm.token_count.prompt_details.cache_read": (_CACHED, 3),
    "gen_ai.usage.cache_creation.input_tokens": (_CACHE_WRITE, 0),
    "gen_ai.usage.cache_creation_input_tokens": (_CACHE_WRITE, 1),
    "llm.usage.cache_creation_input_tokens": (_CACHE_WRITE, 2),
    "llm.token_count.prompt_details.cache_write": (_CACHE_WRITE, 3),
    "gen_ai.usage.reasoning.output_tokens": (_REASONING, 0), "gen_ai.usage.reasoning_tokens": (_REASONING, 1),
    "llm.usage.reasoning_tokens": (_REASONING, 2), "llm.token_count.completion_details.reasoning": (_REASONING, 3),
    "gen_ai.usage.total_tokens": (_TOTAL, 0), "llm.usage.total_tokens": (_TOTAL, 1),
    "llm.token_count.total": (_TOTAL, 2),
    "gen_ai.operation.name": (_OP, 0), "llm.request.type": (_OP, 1),
    "gen_ai.response.id": (_RESP_ID, 0),
    "gen_ai.response.finish_reasons": (_FINISH, 0), "llm.response.finish_reason": (_FINISH, 1),
    "error.type": (_ERR, 0),
    "gen_ai.response.time_to_first_chunk": (_TTFT, 0), "gen_ai.server.time_to_first_token": (_TTFT, 1),
    "deployment.environment.name": (_ENV, 0), "deployment.environment": (_ENV, 1),
    "cloud.region": (_REGION, 0),
    # What the call cost in USD, where an instrumentation or gateway reports it.
    "gen_ai.usage.cost": (_COST, 0), "llm.cost.total": (_COST, 1),
    # OpenInference keeps the request model only inside the JSON of the request parameters.
    "llm.invocation_parameters": (_PARAMS, 0), "embedding.invocation_parameters": (_PARAMS, 1),
    "gen_ai.agent.name": (_AGENT, 0), "gen_ai.tool.name": (_TOOL, 0),
}
# Attributes that fill a slot without making a span ours: OpenInference names a span's kind and
# its tool outside the llm.* namespace; only these kinds are ours.
_CONTEXT_ATTRIBUTES: dict[str, tuple[int, int]] = {"openinference.span.kind": (_KIND, 0), "tool.name": (_TOOL, 1)}
_OUR_KINDS = frozenset(("LLM", "EMBEDDING", "AGENT", "TOOL"))
# OpenInference span kind -> the GenAI operation of an agent or tool step.
_KIND_OPERATION = {"AGENT": "invoke_agent", "TOOL": "execute_tool"}
# gen_ai.* / llm.* attributes never become tags (content such as gen_ai.prompt.* is bulky and
# sensitive); neither do OpenInference's input/output payloads.
_NO_TAG_KEYS = frozenset(("input.value", "output.value", "input.mime_type", "output.mime_type"))
MAX_TAG_VALUE = 256
_LLM_PREFIXES = ("gen_ai.", "llm.", "embedding.")  # OpenInference puts embedding calls under embedding.*
_SLOT_KEY = {_IN: "gen_ai.usage.input_tokens", _OUT: "gen_ai.usage.output_tokens",
             _CACHED: "gen_ai.usage.cache_read.input_tokens", _TOTAL: "gen_ai.usage.total_tokens",
             _CACHE_WRITE: "gen_ai.usage.cache_creation.input_tokens",
             _REASONING: "gen_ai.usage.reasoning.output_tokens"}
# The LlmRequest fields [normalization.limits] bound, as span attributes name them.
_CALL_FIELDS = {"model": "gen_ai.request.model", "provider": "gen_ai.provider.name",
                "operation": "gen_ai.operation.name", "response_model": "gen_ai.response.model",
                "latency": "span duration", "input": _SLOT_KEY[_IN], "output": _SLOT_KEY[_OUT],
                "cached": _SLOT_KEY[_CACHED], "cache_write": _SLOT_KEY[_CACHE_WRITE],
                "reasoning": _SLOT_KEY[_REASONING], "total": _SLOT_KEY[_TOTAL]}
_PARAMS_DECODER = msgspec.json.Decoder(dict[str, Any])
UNKNOWN_MODEL = "unknown"

_TRACES = msgspec.json.Decoder(OtlpTraces)
_SPAN_EVENTS = msgspec.json.Decoder(list[SpanEvent])
_SPAN_ENC = msgspec.json.Encoder()
_LLM_EVENT = EVENT_CLASSES[LlmRequest]
_AGENT_EVENT = EVENT_CLASSES[AgentOperation]
# _span_event builds LlmRequest positionally; fail loudly at import if its fields move.
assert LlmRequest.__struct_fields__[:18] == (
    "model", "latency_ms", "provider", "operation", "response_model", "request_id", "time_to_first_token_ms",
    "input_tokens", "output_tokens", "cached_input_tokens", "total_tokens", "is_error", "error_type",
    "finish_reason", "span_name", "cache_write_tokens", "reasoning_tokens", "cost_usd"), "LlmRequest field order changed: update _span_event in normalize/otlp.py"


# --- messages -------------------------------------------------------------------------------------


def otlp_json(m: RawMessage, st: Batch, rt: SourceRules) -> None:
    """One OTLP/JSON ExportTraceServiceRequest -> events, skipped spans and dead letters in `st`."""
    before = (len(st.events), len(st.dead))
    skipped = 0
    try:
        traces = _TRACES.decode(m.value)
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, msgspec.ValidationError):
            code, field, reason = explain(str(exc), "otlp_json")
            st.reject(m, code, field, reason, "telemetry")
        else:
            st.reject_undecodable(m, exc)
        return
    amap = rt.mappings
    for rs in traces.resourceSpans:
        res_tags, res_slots = _resource_attrs(rs.resource.attributes if rs.resource else (), amap, _av_json)
        for ss in rs.scopeSpans:
            for sp in ss.spans:
                try:
                    slots, tags = _span_attrs(sp.attributes, amap, res_slots, res_tags, _av_json)
                    if slots is None:
                        skipped += 1
                        continue
                    status = sp.status
                    code = status.code if status is not None else 0
                    failed = code == 2 or code == "STATUS_CODE_ERROR"
                    exc_type = ""
                    if failed and slots[_ERR] is None:
                        exc_type = _exception_type_json(sp.events)
                    st.events.append(_span_event(
                        slots, tags, sp.traceId.lower(), sp.spanId.lower(), sp.parentSpanId.lower(), sp.name,
                        sp.startTimeUnixNano, sp.endTimeUnixNano, failed, exc_type, rt, st, sp))
                except Reject as r:
                    st.reject(m, r.code, r.field, r.reason, "telemetry", sp.spanId, raw=_SPAN_ENC.encode(sp))
    _account(m, st, before, skipped)


def otlp_proto(m: RawMessage, st: Batch, rt: SourceRules) -> None:
    """One OTLP protobuf ExportTraceServiceRequest -> events, skipped spans and dead letters in `st`."""
    before = (len(st.events), len(st.dead))
    skipped = 0
    try:
        req = _ExportRequest.FromString(m.value)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        st.reject(m, MALFORMED_PROTOBUF, "", f"message is not an OTLP ExportTraceServiceRequest protobuf: "
                  f"{exc}", "telemetry")
        return
    amap = rt.mappings
    for rs in req.resource_spans:
        res_tags, res_slots = _resource_attrs(rs.resource.attributes, amap, _av_pb)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                try:
                    slots, tags = _span_attrs(sp.attributes, amap, res_slots, res_tags, _av_pb)
                    if slots is None:
                        skipped += 1
                        continue
                    failed = sp.status.code == 2
                    exc_type = ""
                    if failed and slots[_ERR] is None:
                        exc_type = _exception_type(sp.events, _av_pb)
                    st.events.append(_span_event(
                        slots, tags, sp.trace_id.hex(), sp.span_id.hex(), sp.parent_span_id.hex(), sp.name,
                        sp.start_time_unix_nano, sp.end_time_unix_nano, failed, exc_type, rt, st, sp))
                except Reject as r:
                    st.reject(m, r.code, r.field, r.reason, "telemetry", sp.span_id.hex(), raw=sp.SerializeToString())
    _account(m, st, before, skipped)


NOT_LLM_SPAN = "not_llm_span"


def _account(m: RawMessage, st: Batch, before: tuple[int, int], skipped: int) -> None:
    """Every span is an event, a dead letter or skipped; a message with no span at all is a
    dead letter."""
    if skipped:
        st.skip(m, NOT_LLM_SPAN, skipped)
    elif (len(st.events), len(st.dead)) == before:
        st.reject(m, MISSING_FIELD, "resourceSpans", "OTLP message holds no spans", "telemetry")


# --- spans ----------------------------------------------------------------------------------------


def _span_event(slots: list[Any], tags: dict[str, str], trace_id: str, span_id: str, parent: str, name: str,
                start: int | str, end: int | str, failed: bool, exc_type: str, rt: SourceRules, st: Batch,
                span: Any) -> Event:
    """One LLM span (as slots of GenAI attributes) -> Event with an LlmRequest payload.

    A failed call is still a request (and an error): its model falls back from the request
    model to the request parameters to the response model to `unknown`, never a dead letter.
    """
    model = slots[_MODEL]
    resp_model = slots[_RESP_MODEL]
    if type(resp_model) is not str:
        resp_model = text(resp_model)
    if not model or type(model) is not str:
        model = _params_model(slots[_PARAMS]) or resp_model or UNKNOWN_MODEL
    op = slots[_OP]
    op = op if type(op) is str else text(op)
    if op in AGENT_OPERATIONS or slots[_KIND] in _KIND_OPERATION:
        return _agent_event(slots, tags, trace_id, _span_id(span_id, span, rt, st), parent, name,
                            _span_time(start, end, rt, st), failed, exc_type, rt, st,
                            op or _KIND_OPERATION[slots[_KIND]], "" if model == UNKNOWN_MODEL else model)
    span_id = _span_id(span_id, span, rt, st)
    ms, latency = _span_time(start, end, rt, st)
    inp, out, cached, total, cache_write, reasoning = (
        _count_slot(slots, slot, rt, st) for slot in (_IN, _OUT, _CACHED, _TOTAL, _CACHE_WRITE, _REASONING))
    if total is None and (inp is not None or out is not None):
        total = (inp or 0) + (out or 0)
    ttft = slots[_TTFT]
    if ttft is not None:
        if type(ttft) not in (int, float) or not 0 <= ttft < 86_400:  # also catches NaN
            raise Reject(INVALID_FIELD, "gen_ai.response.time_to_first_chunk",
                         "time to first token must be a non-negative number of seconds")
        ttft = ttft * 1000.0
        if ttft > latency:
            if not rt.lenient:
                raise Reject(INVALID_FIELD, "gen_ai.response.time_to_first_chunk",
                             f"time to first token ({ttft:.1f} ms) exceeds the span duration ({latency:.1f} ms)")
            st.warn("dropped_inconsistent_ttft")
            ttft = None
    cost = slots[_COST]
    if cost is not None and (type(cost) not in (int, float) or not 0 <= cost <= MAX_MAGNITUDE):  # also NaN
        raise Reject(INVALID_FIELD, "gen_ai.usage.cost", "a call's cost must be a non-negative number of USD")
    err = slots[_ERR]
    is_error = failed or bool(err)
    error_type = _error_name(text(err) if err else exc_type or "_OTHER") if is_error else ""
    finish = slots[_FINISH]
    if isinstance(finish, list):
        finish = finish[0] if finish else ""
    provider = slots[_PROVIDER]
    resp_id = slots[_RESP_ID]
    env = slots[_ENV]
    region = slots[_REGION]
    # positional, in LlmRequest field order
    p = LlmRequest(
        model, latency, provider if type(provider) is str else text(provider), op, resp_model, resp_id if type(resp_id) is str else text(resp_id), ttft, inp, out, cached, total, is_error,
        error_type, finish if type(finish) is str else text(finish), name, cache_write, reasoning,
        None if cost is None else float(cost),
    )
    check_call_limits(p, rt, _CALL_FIELDS)
    return _LLM_EVENT(span_id, ms, p, st.now, "telemetry", SCHEMA_VERSION, trace_id, parent,
                      "high" if is_error else "info", env if type(env) is str else text(env),
                      region if type(region) is str else text(region), tags)


def _span_id(span_id: str, span: Any, rt: SourceRules, st: Batch) -> str:
    """The span id is the event id; lenient mode derives one from the span's bytes."""
    if span_id:
        return span_id
    if not rt.lenient:
        raise Reject(MISSING_FIELD, "spanId", "span has no spanId, so it has no event id")
    st.warn("generated_event_id")
    raw = _SPAN_ENC.encode(span) if isinstance(span, msgspec.Struct) else span.SerializeToString()
    return "gen-" + hashlib.blake2b(raw, digest_size=16).hexdigest()


def _span_time(start: int | str, end: int | str, rt: SourceRules, st: Batch) -> tuple[int, float]:
    """(event time in epoch ms, duration in ms) of a span, or Reject."""
    start_ns = nanos(start, "startTimeUnixNano")
    end_ns = nanos(end, "endTimeUnixNano")
    if start_ns <= 0:
        raise Reject(IMPOSSIBLE_TIMESTAMP, "startTimeUnixNano", "span has no start time")
    if end_ns < start_ns:
        raise Reject(NEGATIVE_VALUE, "endTimeUnixNano", "span ends before it starts (negative duration)")
    ms = start_ns // 1_000_000 - rt.skew
    if ms > st.hi or ms < st.lo:
        check_time_range(ms, "startTimeUnixNano", st)
    return ms, (end_ns - start_ns) / 1e6


def _agent_event(slots: list[Any], tags: dict[str, str], trace_id: str, span_id: str, parent: str, name: str,
                 when: tuple[int, float], failed: bool, exc_type: str, rt: SourceRules, st: Batch,
                 operation: str, model: str) -> Event:
    """An agent or tool span: its own event type and series, never an LLM request."""
    ms, latency = when
    step = text(slots[_AGENT] if operation != "execute_tool" else slots[_TOOL]) or name
    err = slots[_ERR]
    is_error = failed or bool(err)
    error_type = _error_name(text(err) if err else exc_type or "_OTHER") if is_error else ""
    limit = rt.limits.max_name_length
    if len(step) > limit or len(model) > limit or len(operation) > limit:
        raise Reject(OVERSIZED, "gen_ai.agent.name", f"an agent, tool, model or operation name is longer than "
                     f"{limit} characters (normalization.limits.max_name_length)")
    p = AgentOperation(operation, step, latency, model, text(slots[_PROVIDER]), is_error,
                       error_type, name)
    return _AGENT_EVENT(span_id, ms, p, st.now, "telemetry", SCHEMA_VERSION, trace_id, parent,
                        "high" if is_error else "info", text(slots[_ENV]), text(slots[_REGION]), tags)


def _count_slot(slots: list[Any], slot: int, rt: SourceRules, st: Batch) -> int | None:
    v = slots[slot]
    if v is None or (type(v) is int and 0 <= v <= MAX_COUNT):
        return v
    return count(v, _SLOT_KEY[slot], rt.lenient, st)


def _params_model(params: Any) -> str:
    """The `model` inside OpenInference's llm.invocation_parameters (a JSON object as a string)."""
    if type(params) is str:
        try:
            params = _PARAMS_DECODER.decode(params)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return ""
    model = params.get("model") if type(params) is dict else None
    return model if type(model) is str else ""


def _error_name(err: str) -> str:
    """One name per error whichever instrumentation saw it: `<class 'openai.RateLimitError'>`
    and `openai.RateLimitError` (error.type or exception.type) both become RateLimitError."""
    if err.startswith("<class '") and err.endswith("'>"):
        err = err[8:-2]
    return err.rsplit(".", 1)[-1] if "." in err and " " not in err else err


# --- attributes -----------------------------------------------------------------------------------


def _av_json(v: Any) -> Any:
    """OTLP/JSON AnyValue -> Python value (int64 strings become ints)."""
    x = v.stringValue
    if x is not None:
        return x
    x = v.intValue
    if x is not None:
        if type(x) is str:
            try:
                return int(x)
            except ValueError:
                return x
        return x
    x = v.doubleValue
    if x is not None:
        if type(x) is str:
            try:
                return float(x)
            except ValueError:
                return x
        return x
    x = v.boolValue
    if x is not None:
        return x
    if v.arrayValue is not None:
        return [_av_json(i) for i in v.arrayValue.values]
    if v.kvlistValue is not None:
        return {kv.key: _av_json(kv.value) for kv in v.kvlistValue.values}
    return v.bytesValue


def _av_pb(v: Any) -> Any:
    """OTLP protobuf AnyValue -> Python value (bytes become hex)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_av_pb(i) for i in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _av_pb(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def _resource_attrs(attrs: Any, amap: dict[str, str],
                    av: Callable[[Any], Any]) -> tuple[dict[str, str], dict[int, Any]]:
    """Resource attributes (JSON or protobuf KeyValues; `av` decodes their AnyValue) -> tags, slots."""
    tags: dict[str, str] = {}
    slots: dict[int, Any] = {}
    for kv in attrs:
        key, val = kv.key, av(kv.value)
        if amap:
            key = amap.get(key, key)
        _resource_attr(key, val, tags, slots)
    return tags, slots


def _resource_attr(key: str, val: Any, tags: dict[str, str], slots: dict[int, Any]) -> None:
    role = GENAI_ATTRIBUTES.get(key)
    if role is not None:
        slot = role[0]
        if slot not in slots or role[1] < slots[slot][1]:
            slots[slot] = (val, role[1])
    elif val is not None and key not in _NO_TAG_KEYS and not key.startswith(_LLM_PREFIXES):
        s = val if type(val) is str else tag_str(val)
        if len(s) <= MAX_TAG_VALUE:
            tags[key] = s


def _span_attrs(attrs: Any, amap: dict[str, str], res_slots: dict[int, Any], res_tags: dict[str, str],
                av: Callable[[Any], Any]) -> tuple[list[Any] | None, dict[str, str]]:
    """One pass over a span's attributes (JSON or protobuf KeyValues; `av` decodes their
    AnyValue): GenAI slots (best-ranked name wins) and tags.

    Returns (None, {}) for spans that carry no GenAI/LLM attribute at all.
    """
    slots: list[Any] = [None] * len(_SLOTS)
    ranks = [99] * len(_SLOTS)
    tags = dict(res_tags)
    llm = False
    roles = GENAI_ATTRIBUTES
    for kv in attrs:
        key = kv.key
        val = av(kv.value)
        if amap:
            key = amap.get(key, key)
        role = roles.get(key)
        if role is not None:
            llm = True
            slot, rank = role
            if rank < ranks[slot]:
                slots[slot] = val
                ranks[slot] = rank
        elif key.startswith(_LLM_PREFIXES):
            llm = True
        elif key in _CONTEXT_ATTRIBUTES:
            slot, rank = _CONTEXT_ATTRIBUTES[key]
            if rank < ranks[slot]:
                slots[slot] = val
                ranks[slot] = rank
        elif val is not None and key not in _NO_TAG_KEYS:
            if type(val) is not str:
                val = tag_str(val)
            if len(val) <= MAX_TAG_VALUE:
                tags[key] = val
    if not llm and slots[_KIND] not in _OUR_KINDS:
        return None, {}
    for slot, (val, rank) in res_slots.items():
        if slots[slot] is None:
            slots[slot] = val
    return slots, tags


def _exception_type_json(raw_events: msgspec.Raw) -> str:
    try:
        events = _SPAN_EVENTS.decode(raw_events) if raw_events is not NULL_RAW else ()
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""
    return _exception_type(events or (), _av_json)


def _exception_type(events: Any, av: Callable[[Any], Any]) -> str:
    """`exception.type` of a failed span's first exception event (JSON or protobuf events)."""
    for ev in events:
        if ev.name == "exception":
            for kv in ev.attributes:
                if kv.key == "exception.type":
                    return text(av(kv.value))
    return ""
