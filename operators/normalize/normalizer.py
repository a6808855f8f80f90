"""The batch entry point: decode, validate and normalize raw messages into `Event`s, or
dead-letter them with a reason.

Per batch, per message: detect the wire format (first JSON key, else key probes; protobuf by
its first byte and a structural probe; see formats), decode with msgspec straight into the wire Structs (type, range,
format and enum rules are checked there, in C), then apply what types can't say: timestamps
to UTC epoch ms with per-source clock skew, units, currency, severity aliases, cross-field
rules (values, checks). OTLP traces go span by span (otlp), OTLP metrics point by point and
logs record by record (otlp_metrics); JSON that needs field mappings or
lenient fixes takes a slower untyped path (lenient). Anything that fails becomes a
`DeadLetter` with a short code and a sentence a human can act on (reasons); the normalizer
never raises, whatever the bytes.

Pure: no I/O, no Kafka/ClickHouse/Bytewax imports.
"""
from __future__ import annotations

import time
from typing import Any

import msgspec
from msgspec.structs import astuple

from config.normalization import NormalizationSettings
from operators.normalize.batch import Batch, NormalizedBatch
from operators.normalize.checks import CALL_FIELDS, CHECKS, check_call_limits, check_llm_request
from operators.normalize.formats import (
    BASE_METADATA,
    BASE_UNIT_FIELDS,
    FIRST_KEY_FORMAT,
    TAG_FIELDS,
    TAG_KEYS,
    camel_path,
    detect_format,
    obj_id,
)
from operators.normalize.lenient import apply_mappings, fix
from operators.normalize.otlp import otlp_json, otlp_proto
from operators.normalize.otlp_metrics import otlp_logs, otlp_metrics
from operators.normalize.reasons import (
    INVALID_FIELD,
    MISSING_FIELD,
    OVERSIZED,
    UNKNOWN_EVENT_TYPE,
    UNKNOWN_FORMAT,
    Reject,
    explain,
)
from operators.normalize.sources import SOURCE_ALIASES, SourceRules, check_source
from operators.normalize.values import (
    KNOWN_VERSIONS,
    MS_HI,
    MS_LO,
    SEVERITY_SET,
    canonical_severity,
    check_time_range,
    check_version,
    convert_unit_strings,
    json_kind,
    tag_str,
    time_ms,
)
from schemas.events import (
    DEFAULT_SEVERITY,
    EVENT_CLASSES,
    EVENT_TYPE_OF,
    SOURCE_OF_TYPE,
    Event,
    Latency,
    LatencyBreakdown,
    LlmRequest,
)
from schemas.raw import RawMessage
from schemas.vocabulary import SEVERITY_ALIASES, SOURCES
from schemas.wire import BASE_PAYLOAD_OF, BASE_POSITIONAL, BREAKDOWN_POSITIONAL, BaseMessage, HubMessage

# OTLP metrics and logs: format -> (handler, protobuf?)
_OTLP_OTHER = {"otlp_metrics_json": (otlp_metrics, False), "otlp_metrics_proto": (otlp_metrics, True),
               "otlp_logs_json": (otlp_logs, False), "otlp_logs_proto": (otlp_logs, True)}


class Normalizer:
    """Turns batches of raw messages from any source into Events and dead letters.

    `topic_sources` maps input topics to source modules; it picks per-source settings (pinned
    format, field mappings, mode) before a message is decoded and names the source of dead
    letters whose bytes say nothing. Once decoded, an event's own type decides its source.

    A hub envelope becomes an event (source, severity and total tokens filled in); bytes that
    are not JSON become a dead letter that says why and where they came from:

    >>> from schemas.raw import RawMessage
    >>> ok = RawMessage(b'{"event_id": "e1", "event_type": "telemetry.request", "event_time": 1700000000000, '
    ...                 b'"payload": {"model": "gpt-4o", "latency_ms": 812.5, "input_tokens": 12, '
    ...                 b'"output_tokens": 30}}')
    >>> bad = RawMessage(b'{"event_id": "e2", "event_type', topic="llm-telemetry", offset=7)
    >>> out = Normalizer().normalize_batch([ok, bad], now_ms=1_700_000_060_000)
    >>> e = out.events[0]
    >>> e.event_id, e.source, e.severity, e.payload.model, e.payload.total_tokens
    ('e1', 'telemetry', 'info', 'gpt-4o', 42)
    >>> d = out.dead_letters[0]
    >>> d.code, d.topic, d.offset, d.raw == bad.value, out.dead_letter_counts
    ('malformed_json', 'llm-telemetry', 7, True, {'malformed_json': 1})
    """

    def __init__(self, settings: NormalizationSettings | None = None,
                 topic_sources: dict[str, str] | None = None) -> None:
        self.settings = settings = settings or NormalizationSettings()
        self.topic_sources = dict(topic_sources or {})
        for topic, src in self.topic_sources.items():
            if src not in SOURCES:
                raise ValueError(f"topic {topic!r} maps to unknown source {src!r}; expected one of {SOURCES}")
        self._src = {name: SourceRules(name, settings.sources.get(name), settings.mode, settings.limits)
                     for name in SOURCES}
        self._topic_src = {t: self._src[s] for t, s in self.topic_sources.items()}
        self._topic_fmt = {t: rt.fmt for t, rt in self._topic_src.items() if rt.fmt != "auto"}
        self._mapped = {name for name, rt in self._src.items() if rt.mappings}
        self._max_future = settings.max_future_skew_s * 1000
        self._max_age = settings.max_event_age_s * 1000
        self._default_lenient = settings.mode == "lenient"
        self._hub = msgspec.json.Decoder(HubMessage)
        self._base = msgspec.json.Decoder(BaseMessage)
        self._types = {"hub": HubMessage, "base": BaseMessage}
        # payload class -> (source, its settings, cross-field check or None, default severity;
        # None for LlmRequest, whose default depends on is_error)
        self._info = {cls: (cls.SOURCE, self._src[cls.SOURCE], CHECKS.get(cls),
                            None if cls is LlmRequest else DEFAULT_SEVERITY[cls]) for cls in EVENT_TYPE_OF}
        # base-format envelope class -> everything _base_event needs, in one lookup
        self._base_info = {
            twin: (p, p.SOURCE, self._src[p.SOURCE], EVENT_CLASSES[p], BASE_UNIT_FIELDS.get(p),
                   p in BASE_POSITIONAL, CHECKS.get(p), DEFAULT_SEVERITY[p])
            for twin, p in BASE_PAYLOAD_OF.items()
        }

    # --- batch entry point ------------------------------------------------------------------------

    def normalize_batch(self, messages: list[RawMessage], now_ms: int | None = None) -> NormalizedBatch:
        """Decode + validate + normalize a batch. Never raises on message contents.

        Events come out in input order (the window step's lateness verdicts depend on it, and a
        replay must reach the same verdicts whatever its batch boundaries). One pass, with the
        two JSON envelopes inlined: formats interleave message by message in a mixed topic.
        """
        now = int(time.time() * 1000) if now_ms is None else now_ms
        max_age, max_future = self._max_age, self._max_future
        st = Batch(now, self.topic_sources, max_age, max_future)
        ref = -1
        events = st.events
        topic_fmt = self._topic_fmt
        first_key = FIRST_KEY_FORMAT
        mapped = self._mapped
        hub_decode, hub_event = self._hub.decode, self._hub_event
        base_decode, base_event = self._base.decode, self._base_event
        telemetry = self._src["telemetry"]
        max_bytes = self.settings.limits.max_message_bytes
        starts = st.starts
        for m in messages:
            starts.append(len(events))
            try:
                if m.timestamp_ms != ref:
                    # A replay must judge an event's time as the first run did, so the reference
                    # is when the broker got the message, not when we read it (wall clock only
                    # for input without timestamps: files, the generator).
                    ref = m.timestamp_ms
                    base = ref if ref > 0 else now
                    st.ref, st.lo, st.hi = base, base - max_age, base + max_future
                v = m.value
                if len(v) > max_bytes:
                    st.reject(m, OVERSIZED, "", f"message is {len(v):,} bytes; the limit is {max_bytes:,} "
                              "(normalization.limits.max_message_bytes)", st.hint(m))
                    continue
                fmt = topic_fmt.get(m.topic) if topic_fmt else None
                if fmt is None:
                    # Producers write a fixed key order, so the first key names the format.
                    if v.startswith(b'{"event_'):
                        fmt = "hub"
                    elif v[:2] == b'{"':
                        fmt = first_key.get(v[2:v.find(b'"', 2)]) or detect_format(v)
                    else:
                        fmt = detect_format(v)
                if mapped and self._needs_mapping(m, fmt):
                    self._slow_json(m, fmt, st, None)
                elif fmt == "hub":
                    try:
                        e = hub_decode(v)
                    except Exception as exc:  # noqa: BLE001 - every decode failure is a dead letter
                        self._decode_failed(m, "hub", exc, st)
                        continue
                    try:
                        events.append(hub_event(e, st))
                    except Reject as r:
                        st.reject(m, r.code, r.field, r.reason, type(e.payload).SOURCE, e.event_id)
                elif fmt == "base":
                    try:
                        env = base_decode(v)
                    except Exception as exc:  # noqa: BLE001
                        self._decode_failed(m, "base", exc, st)
                        continue
                    try:
                        events.append(base_event(env, st))
                    except Reject as r:
                        st.reject(m, r.code, r.field, r.reason, BASE_PAYLOAD_OF[type(env)].SOURCE, env.event_id)
                elif fmt == "otlp_json":
                    otlp_json(m, st, telemetry)
                elif fmt == "otlp_proto":
                    otlp_proto(m, st, telemetry)
                elif fmt in _OTLP_OTHER:
                    decode, proto = _OTLP_OTHER[fmt]
                    decode(m, st, telemetry, proto)
                else:
                    self._unknown(m, st)
            except Exception as exc:  # noqa: BLE001 - last line of defence: never stop the flow
                st.internal_error(m, exc)
        return st.result()

    # --- helpers shared by formats ----------------------------------------------------------------

    def _needs_mapping(self, m: RawMessage, fmt: str | None) -> bool:
        """JSON envelopes from a source with field mappings take the (slower) mapping path."""
        if fmt not in ("hub", "base"):
            return False
        rt = self._topic_src.get(m.topic)
        return rt is None or rt.name in self._mapped

    def _mode_lenient(self, source: str) -> bool:
        rt = self._src.get(source)
        return rt.lenient if rt is not None else self._default_lenient

    # --- hub envelope -----------------------------------------------------------------------------

    def _hub_event(self, e: Any, st: Batch) -> Event:
        """Normalize, in place, an Event decoded from a hub envelope."""
        p = e.payload
        src, rt, check, default_sev = self._info[type(p)]
        s = e.source
        if s != src:
            if s:
                check_source(s, src, e.event_type, rt.lenient, st)
            e.source = src
        t = e.event_time_ms
        if type(t) is int and MS_LO <= t < MS_HI:
            ms = t - rt.skew
        else:
            ms = time_ms(t, "event_time", rt.lenient, st) - rt.skew
        if ms > st.hi or ms < st.lo:
            check_time_range(ms, "event_time", st)
        if ms != t:
            e.event_time_ms = ms
        e.ingest_time_ms = st.now
        sev = e.severity
        if sev not in SEVERITY_SET:
            e.severity = canonical_severity(sev, p) if sev else (
                "high" if default_sev is None and p.is_error else default_sev or "info")
        if e.schema_version not in KNOWN_VERSIONS:
            e.schema_version = check_version(e.schema_version, "schema_version", rt.lenient, st)
        if default_sev is None:  # LlmRequest, the hot type: skip the call when nothing to check
            ttft = p.time_to_first_token_ms
            if p.total_tokens is None or (p.error_type and not p.is_error) or (
                    ttft is not None and ttft > p.latency_ms):
                check_llm_request(p, rt, st, "payload.")
            else:
                check_call_limits(p, rt, CALL_FIELDS, "payload.")
        elif check is not None:
            check(p, rt, st, "payload.")
        return e

    # --- base event schema ------------------------------------------------------------------------

    def _base_event(self, env: Any, st: Batch) -> Event:
        pcls, src, rt, event_cls, units, positional, check, default_sev = self._base_info[type(env)]
        if SOURCE_ALIASES.get(env.source) != src:
            check_source(env.source, src, EVENT_TYPE_OF[pcls], rt.lenient, st)
        data = env.data
        if units:
            convert_unit_strings(data, units, "data.")
            if pcls is Latency and data.breakdown is not None:
                convert_unit_strings(data.breakdown, BASE_UNIT_FIELDS[LatencyBreakdown], "data.breakdown.")
        try:
            if positional:  # values were validated when the twin was decoded
                if pcls is Latency and data.breakdown is not None and BREAKDOWN_POSITIONAL:
                    data.breakdown = LatencyBreakdown(*astuple(data.breakdown))
                p = pcls(*astuple(data)[:-1])  # the twin's last field is the lifted `severity`
            else:
                p = msgspec.convert(data, pcls, from_attributes=True)
        except msgspec.ValidationError as exc:
            code, field, reason = explain(camel_path(str(exc)), "base", prefix="data")
            raise Reject(code, field, reason) from None
        t = env.timestamp
        ms = time_ms(t, "timestamp", rt.lenient, st) if type(t) is not int or not MS_LO <= t < MS_HI else t
        ms -= rt.skew
        if ms > st.hi or ms < st.lo:
            check_time_range(ms, "timestamp", st)
        region = environment = correlation = parent = ""
        severity = data.severity
        tags: dict[str, str] = {}
        md = env.metadata
        if md:
            for k, v in md.items():
                if v is None:
                    continue
                if type(v) is not str:
                    v = tag_str(v)
                role = BASE_METADATA.get(k)
                if role is None:
                    tags[k] = v
                elif role == "region":
                    region = v
                elif role == "environment":
                    environment = v
                elif role == "correlation_id":
                    correlation = v
                elif role == "parent_event_id":
                    parent = v
                elif not severity:  # "severity" / "level"
                    severity = v
        if severity:
            sev = SEVERITY_ALIASES.get(severity) or canonical_severity(severity, p)
        else:
            sev = "high" if pcls is LlmRequest and p.is_error else default_sev
        version = env.version
        if version not in KNOWN_VERSIONS:
            version = check_version(version, "version", rt.lenient, st)
        if check is not None:
            check(p, rt, st, "data.")
        return event_cls(env.event_id, ms, p, st.now, src, version, correlation, parent, sev, environment, region,
                         tags)

    # --- decode failures, lenient fixes, field mappings (the slow path) ----------------------------

    def _decode_failed(self, m: RawMessage, fmt: str, exc: Exception, st: Batch) -> None:
        if not isinstance(exc, msgspec.ValidationError):
            st.reject_undecodable(m, exc)
            return
        code, field, reason = explain(str(exc), fmt)
        if code in (UNKNOWN_EVENT_TYPE, MISSING_FIELD, UNKNOWN_FORMAT) and field in TAG_FIELDS:
            # The key probe may have guessed the wrong envelope; a message is what it decodes as.
            for other in ("hub", "base"):
                if other != fmt and TAG_KEYS[other] in m.value:
                    try:
                        env = (self._hub if other == "hub" else self._base).decode(m.value)
                    except Exception:  # noqa: BLE001
                        continue
                    self._emit(env, other, m, st)
                    return
        self._slow_json(m, fmt, st, (code, field, reason))

    def _emit(self, env: Any, fmt: str, m: RawMessage, st: Batch) -> None:
        if fmt == "hub":
            try:
                st.events.append(self._hub_event(env, st))
            except Reject as r:
                st.reject(m, r.code, r.field, r.reason, type(env.payload).SOURCE, env.event_id)
        else:
            try:
                st.events.append(self._base_event(env, st))
            except Reject as r:
                st.reject(m, r.code, r.field, r.reason, BASE_PAYLOAD_OF[type(env)].SOURCE, env.event_id)

    def _slow_json(self, m: RawMessage, fmt: str, st: Batch, error: tuple[str, str, str] | None) -> None:
        """Untyped decode, then field mappings and (lenient mode) fixes, then typed convert."""
        try:
            obj = msgspec.json.decode(m.value)
        except Exception as exc:  # noqa: BLE001
            st.reject_undecodable(m, exc)
            return
        if not isinstance(obj, dict):
            st.reject(m, UNKNOWN_FORMAT, "", f"message is a JSON {type(obj).__name__}, not an event object",
                      st.hint(m))
            return
        source = self._object_source(m, obj, fmt)
        rt = self._src.get(source)
        lenient = self._mode_lenient(source)
        if error is not None and not lenient and (rt is None or not rt.mappings):
            # strict: the typed decode already said what is wrong; obj only names the event
            st.reject(m, *error, source, obj_id(obj, fmt))
            return
        if rt is not None and rt.mappings:
            apply_mappings(obj, rt.mappings)
        target = self._types[fmt]
        fixes: list[str] = []
        for _ in range(12):
            try:
                env = msgspec.convert(obj, target, strict=not lenient)
                break
            except msgspec.ValidationError as exc:
                code, field, reason = explain(str(exc), fmt)
                if not lenient or not fix(obj, str(exc), m, st.now, fixes):
                    st.reject(m, code, field, reason, source, obj_id(obj, fmt))
                    return
        else:
            st.reject(m, INVALID_FIELD, "", "too many problems to fix in lenient mode", source, obj_id(obj, fmt))
            return
        if lenient and error is not None and not fixes:
            fixes.append("coerced_type")  # strict decode failed, lax convert passed: a type was coerced
        for code in fixes:
            st.warn(code)
        self._emit(env, fmt, m, st)

    def _object_source(self, m: RawMessage, obj: dict[str, Any], fmt: str) -> str:
        hint = self.topic_sources.get(m.topic)
        if hint:
            return hint
        et = obj.get("event_type" if fmt == "hub" else "eventType")
        if type(et) is str and et in SOURCE_OF_TYPE:
            return SOURCE_OF_TYPE[et]
        src = obj.get("source")
        if type(src) is str:
            return SOURCE_ALIASES.get(src.strip().lower(), "")
        return ""

    def _unknown(self, m: RawMessage, st: Batch) -> None:
        v = m.value
        if not v.strip():
            st.reject(m, UNKNOWN_FORMAT, "", "message is empty or blank; expected a JSON event or OTLP protobuf",
                      st.hint(m))
            return
        try:
            obj = msgspec.json.decode(v)
        except Exception as exc:  # noqa: BLE001
            st.reject_undecodable(m, exc)
            return
        if isinstance(obj, dict):
            st.reject(m, UNKNOWN_FORMAT, "", "JSON object is none of the accepted formats: expected a hub envelope "
                      "(event_id, event_type, ...), a base event (eventId, eventType, ...) or OTLP/JSON "
                      "(resourceSpans, resourceMetrics or resourceLogs)", st.hint(m))
        else:
            st.reject(m, UNKNOWN_FORMAT, "", f"message is a JSON {json_kind(obj)}, not an event object",
                      st.hint(m))
