"""Decode, validate and normalize raw messages into `Event`s, or dead-letter them with a reason.

Per batch, per message: detect the wire format (first JSON key, else key probes; protobuf by
its first byte), decode with msgspec straight into the wire Structs (type, range, format and
enum rules are checked there, in C), then apply what types can't say: timestamps to UTC epoch
ms with per-source clock skew, units, currency, severity aliases, cross-field rules. Anything
that fails becomes a `DeadLetter` with a short code and a sentence a human can act on; the
normalizer never raises, whatever the bytes.

Pure: no I/O, no Kafka/ClickHouse/Bytewax imports.
"""
from __future__ import annotations

import hashlib
import math
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import msgspec
from msgspec.structs import astuple

from config.normalization import DEFAULT_CURRENCY_RATES, NormalizationSettings, SourceNormalization
from schemas.events import (
    DEFAULT_SEVERITY,
    EVENT_CLASSES,
    EVENT_TYPE_OF,
    SCHEMA_VERSION,
    SEMVER_PATTERN,
    SOURCE_OF_TYPE,
    UNIT_FIELDS,
    ApiCost,
    BudgetAlert,
    ErrorOccurred,
    Event,
    Latency,
    LatencyBreakdown,
    LlmRequest,
    Payload,
    ResourceConsumption,
    TokenCost,
    TokenUsage,
)
from schemas.raw import DeadLetter, RawMessage
from schemas.vocabulary import SEVERITIES, SEVERITY_ALIASES, SOURCES
from schemas.wire import (
    BASE_PAYLOAD_OF,
    BASE_POSITIONAL,
    BREAKDOWN_POSITIONAL,
    BaseMessage,
    HubMessage,
    NULL_RAW,
    OtlpTraces,
    SpanEvent,
)

# --- reason codes (stable; dashboards and the dead_letters table group by them) ----------------
MALFORMED_JSON = "malformed_json"
MALFORMED_PROTOBUF = "malformed_protobuf"
UNKNOWN_FORMAT = "unknown_format"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
UNKNOWN_SOURCE = "unknown_source"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
NEGATIVE_VALUE = "negative_value"
IMPOSSIBLE_TIMESTAMP = "impossible_timestamp"
INTERNAL_ERROR = "internal_error"
REASON_CODES = (MALFORMED_JSON, MALFORMED_PROTOBUF, UNKNOWN_FORMAT, UNKNOWN_EVENT_TYPE, UNKNOWN_SOURCE,
                MISSING_FIELD, INVALID_FIELD, NEGATIVE_VALUE, IMPOSSIBLE_TIMESTAMP, INTERNAL_ERROR)

SOURCE_ALIASES: dict[str, str] = {
    **{s: s for s in SOURCES},
    "observatory": "telemetry", "llm-observatory": "telemetry", "otel": "telemetry", "opentelemetry": "telemetry",
    "sentinel": "security", "llm-sentinel": "security",
    "costops": "cost", "cost-ops": "cost", "llm-costops": "cost",
    "governance-dashboard": "governance", "llm-governance-dashboard": "governance", "llm-governance": "governance",
    "llm-registry": "registry",
    "policy-engine": "policy", "llm-policy-engine": "policy",
}

# Lenient mode maps these enum spellings (per field, snake_case name) onto the canonical value.
ENUM_ALIASES: dict[str, dict[str, str]] = {
    "decision": {"allow": "allowed", "permit": "allowed", "permitted": "allowed", "pass": "allowed",
                 "deny": "denied", "reject": "denied", "rejected": "denied", "block": "denied", "blocked": "denied",
                 "warn": "warned", "warning": "warned"},
    "outcome": {"succeeded": "success", "successful": "success", "ok": "success", "allowed": "success",
                "failed": "failure", "fail": "failure", "error": "failure", "denied": "failure"},
    "kind": {"authn": "authentication", "authz": "authorization", "auth": "authentication"},
    "action": {"detect": "detected", "redact": "redacted", "block": "blocked", "leak": "leaked"},
    "change_type": {"create": "created", "update": "updated", "delete": "deleted", "modified": "updated"},
}

_MS_LO, _MS_HI = 100_000_000_000, 100_000_000_000_000  # epoch ms for 1973..5138
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)
_NUMERIC = re.compile(r"^[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?$")
_SEMVER = re.compile(SEMVER_PATTERN)
_LOOSE_SEMVER = re.compile(r"^[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
_UNIT_VALUE = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµ/_ ]*?)\s*$")

DURATION_UNITS: dict[str, float] = {
    "": 1.0, "ms": 1.0, "msec": 1.0, "millisecond": 1.0, "milliseconds": 1.0,
    "ns": 1e-6, "nanosecond": 1e-6, "nanoseconds": 1e-6,
    "us": 1e-3, "µs": 1e-3, "microsecond": 1e-3, "microseconds": 1e-3,
    "s": 1000.0, "sec": 1000.0, "secs": 1000.0, "second": 1000.0, "seconds": 1000.0,
    "m": 60_000.0, "min": 60_000.0, "mins": 60_000.0, "minute": 60_000.0, "minutes": 60_000.0,
    "h": 3_600_000.0, "hr": 3_600_000.0, "hrs": 3_600_000.0, "hour": 3_600_000.0, "hours": 3_600_000.0,
}
SIZE_UNITS: dict[str, float] = {  # KB = 1024 B, as the integration note's converter defines it
    "": 1.0, "b": 1.0, "byte": 1.0, "bytes": 1.0,
    "kb": 1024.0, "kib": 1024.0, "k": 1024.0,
    "mb": 1024.0**2, "mib": 1024.0**2, "m": 1024.0**2,
    "gb": 1024.0**3, "gib": 1024.0**3, "g": 1024.0**3,
    "tb": 1024.0**4, "tib": 1024.0**4, "t": 1024.0**4,
}
RATE_UNITS: dict[str, float] = {
    "": 1.0, "/s": 1.0, "/sec": 1.0, "/second": 1.0, "per_second": 1.0, "rps": 1.0, "tps": 1.0,
    "/min": 1 / 60, "/minute": 1 / 60, "per_minute": 1 / 60, "rpm": 1 / 60, "tpm": 1 / 60,
    "/h": 1 / 3600, "/hr": 1 / 3600, "/hour": 1 / 3600, "per_hour": 1 / 3600,
}
_UNIT_TABLES = {"duration": DURATION_UNITS, "size": SIZE_UNITS, "rate": RATE_UNITS}
COST_UNIT_FACTOR = {"usd": 1.0, "cents": 0.01, "micros": 1e-6}

# OTLP span attributes -> LlmRequest slot. Lower rank wins; current names rank before legacy.
_SLOTS = ("provider", "model", "response_model", "input", "output", "cached", "total", "operation",
          "response_id", "finish", "error_type", "ttft", "environment", "region")
(_PROVIDER, _MODEL, _RESP_MODEL, _IN, _OUT, _CACHED, _TOTAL, _OP, _RESP_ID, _FINISH, _ERR, _TTFT,
 _ENV, _REGION) = range(len(_SLOTS))
GENAI_ATTRIBUTES: dict[str, tuple[int, int]] = {
    "gen_ai.provider.name": (_PROVIDER, 0), "gen_ai.system": (_PROVIDER, 1), "llm.provider": (_PROVIDER, 2),
    "llm.system": (_PROVIDER, 3),
    "gen_ai.request.model": (_MODEL, 0), "llm.request.model": (_MODEL, 1), "llm.model_name": (_MODEL, 2),
    "gen_ai.response.model": (_RESP_MODEL, 0), "llm.response.model": (_RESP_MODEL, 1),
    "gen_ai.usage.input_tokens": (_IN, 0), "gen_ai.usage.prompt_tokens": (_IN, 1),
    "llm.usage.prompt_tokens": (_IN, 2), "llm.token_count.prompt": (_IN, 3),
    "gen_ai.usage.output_tokens": (_OUT, 0), "gen_ai.usage.completion_tokens": (_OUT, 1),
    "llm.usage.completion_tokens": (_OUT, 2), "llm.token_count.completion": (_OUT, 3),
    "gen_ai.usage.cache_read.input_tokens": (_CACHED, 0), "gen_ai.usage.cache_read_input_tokens": (_CACHED, 1),
    "llm.usage.cache_read_input_tokens": (_CACHED, 2), "llm.token_count.prompt_details.cache_read": (_CACHED, 3),
    "llm.usage.total_tokens": (_TOTAL, 0), "llm.token_count.total": (_TOTAL, 1),
    "gen_ai.operation.name": (_OP, 0), "llm.request.type": (_OP, 1),
    "gen_ai.response.id": (_RESP_ID, 0),
    "gen_ai.response.finish_reasons": (_FINISH, 0), "llm.response.finish_reason": (_FINISH, 1),
    "error.type": (_ERR, 0),
    "gen_ai.server.time_to_first_token": (_TTFT, 0),
    "deployment.environment.name": (_ENV, 0), "deployment.environment": (_ENV, 1),
    "cloud.region": (_REGION, 0),
}
# gen_ai.* / llm.* attributes never become tags (content such as gen_ai.prompt.* is bulky and
# sensitive); neither do OpenInference's input/output payloads.
_NO_TAG_KEYS = frozenset(("input.value", "output.value", "input.mime_type", "output.mime_type"))
MAX_TAG_VALUE = 256
_LLM_PREFIXES = ("gen_ai.", "llm.")

_FIRST_KEY_FORMAT: dict[bytes, str] = {
    **{k.encode(): "hub" for k in ("event_id", "event_type", "event_time", "schema_version", "correlation_id",
                                   "parent_event_id", "severity", "environment", "region", "tags", "payload")},
    **{k.encode(): "base" for k in ("eventId", "eventType", "timestamp", "version", "data", "metadata")},
    b"resourceSpans": "otlp_json",
}
_PROBES = ((b'"resourceSpans"', "otlp_json"), (b'"eventType"', "base"), (b'"event_type"', "hub"))


class NormalizedBatch(msgspec.Struct):
    """What one batch became: events, dead letters and counts for metrics."""

    events: list[Event]
    dead_letters: list[DeadLetter]
    warnings: int = 0
    dead_letter_counts: dict[str, int] = {}
    warning_counts: dict[str, int] = {}
    # OTLP spans that are not LLM calls (HTTP, DB...): not errors, just not ours.
    skipped_spans: int = 0


class _Reject(Exception):
    """One input can't become an event; carries the dead-letter code, field and reason."""

    def __init__(self, code: str, field: str, reason: str) -> None:
        self.code, self.field, self.reason = code, field, reason


class _Source:
    """Per-source settings compiled for the hot path."""

    __slots__ = ("name", "skew", "lenient", "fmt", "mappings", "money_factor", "rates")

    def __init__(self, name: str, cfg: SourceNormalization, default_mode: str) -> None:
        self.name = name
        self.skew = cfg.clock_skew_ms
        self.lenient = (cfg.mode or default_mode) == "lenient"
        self.fmt = cfg.wire_format
        self.mappings = dict(cfg.field_mappings)
        self.money_factor = COST_UNIT_FACTOR[cfg.cost_unit]
        self.rates = {k.upper(): float(v) for k, v in {**DEFAULT_CURRENCY_RATES, **cfg.currency_rates}.items()}
        self.rates["USD"] = 1.0


class _Batch:
    """Mutable state of one normalize_batch call."""

    __slots__ = ("now", "ref", "lo", "hi", "events", "dead", "warnings", "dl_counts", "warn_counts", "skipped")

    def __init__(self, now: int) -> None:
        self.now = now
        # The plausible event-time range [lo, hi] is judged against `ref`: the current message's
        # broker timestamp, else the wall clock.
        self.ref = self.lo = self.hi = 0
        self.events: list[Event] = []
        self.dead: list[DeadLetter] = []
        self.warnings = 0
        self.dl_counts: dict[str, int] = {}
        self.warn_counts: dict[str, int] = {}
        self.skipped = 0

    def warn(self, code: str) -> None:
        self.warnings += 1
        self.warn_counts[code] = self.warn_counts.get(code, 0) + 1

    def reject(self, m: RawMessage, code: str, field: str, reason: str, source: str = "", event_id: str = "",
               raw: bytes | None = None) -> None:
        self.dl_counts[code] = self.dl_counts.get(code, 0) + 1
        self.dead.append(DeadLetter(
            raw=m.value if raw is None else raw, reason=reason, code=code, field=field, topic=m.topic,
            partition=m.partition, offset=m.offset, source=source, event_id=event_id, ingest_time_ms=self.now,
        ))


class Normalizer:
    """Turns batches of raw messages from any source into Events and dead letters.

    `topic_sources` maps input topics to source modules; it picks per-source settings (pinned
    format, field mappings, mode) before a message is decoded and names the source of dead
    letters whose bytes say nothing. Once decoded, an event's own type decides its source.
    """

    def __init__(self, settings: NormalizationSettings | None = None,
                 topic_sources: dict[str, str] | None = None) -> None:
        self.settings = settings = settings or NormalizationSettings()
        self.topic_sources = dict(topic_sources or {})
        for topic, src in self.topic_sources.items():
            if src not in SOURCES:
                raise ValueError(f"topic {topic!r} maps to unknown source {src!r}; expected one of {SOURCES}")
        self._src = {name: _Source(name, settings.sources.get(name), settings.mode) for name in SOURCES}
        self._topic_src = {t: self._src[s] for t, s in self.topic_sources.items()}
        self._topic_fmt = {t: rt.fmt for t, rt in self._topic_src.items() if rt.fmt != "auto"}
        self._mapped = {name for name, rt in self._src.items() if rt.mappings}
        self._max_future = settings.max_future_skew_s * 1000
        self._max_age = settings.max_event_age_s * 1000
        self._default_lenient = settings.mode == "lenient"
        self._hub = msgspec.json.Decoder(HubMessage)
        self._base = msgspec.json.Decoder(BaseMessage)
        self._otlp = msgspec.json.Decoder(OtlpTraces)
        self._span_enc = msgspec.json.Encoder()
        self._types = {"hub": HubMessage, "base": BaseMessage}
        # payload class -> (source, its settings, cross-field check or None, default severity;
        # None for LlmRequest, whose default depends on is_error)
        self._info = {cls: (cls.SOURCE, self._src[cls.SOURCE], _CHECKS.get(cls),
                            None if cls is LlmRequest else DEFAULT_SEVERITY[cls]) for cls in EVENT_TYPE_OF}
        # base-format envelope class -> everything _base_event needs, in one lookup
        self._base_info = {
            twin: (p, p.SOURCE, self._src[p.SOURCE], EVENT_CLASSES[p], _BASE_UNIT_FIELDS.get(p),
                   p in BASE_POSITIONAL, _CHECKS.get(p), DEFAULT_SEVERITY[p])
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
        st = _Batch(now)
        max_age, max_future = self._max_age, self._max_future
        ref = -1
        events = st.events
        topic_fmt = self._topic_fmt
        first_key = _FIRST_KEY_FORMAT
        mapped = self._mapped
        hub_decode, hub_event = self._hub.decode, self._hub_event
        base_decode, base_event = self._base.decode, self._base_event
        for m in messages:
            try:
                if m.timestamp_ms != ref:
                    # A replay must judge an event's time as the first run did, so the reference
                    # is when the broker got the message, not when we read it (wall clock only
                    # for input without timestamps: files, the generator).
                    ref = m.timestamp_ms
                    base = ref if ref > 0 else now
                    st.ref, st.lo, st.hi = base, base - max_age, base + max_future
                v = m.value
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
                    except _Reject as r:
                        st.reject(m, r.code, r.field, r.reason, type(e.payload).SOURCE, e.event_id)
                elif fmt == "base":
                    try:
                        env = base_decode(v)
                    except Exception as exc:  # noqa: BLE001
                        self._decode_failed(m, "base", exc, st)
                        continue
                    try:
                        events.append(base_event(env, st))
                    except _Reject as r:
                        st.reject(m, r.code, r.field, r.reason, BASE_PAYLOAD_OF[type(env)].SOURCE, env.event_id)
                elif fmt == "otlp_json":
                    self._otlp_json(m, st)
                elif fmt == "otlp_proto":
                    self._otlp_proto(m, st)
                else:
                    self._unknown(m, st)
            except Exception as exc:  # noqa: BLE001 - last line of defence: never stop the flow
                self._internal_error(m, exc, st)
        return NormalizedBatch(events, st.dead, st.warnings, st.dl_counts, st.warn_counts, st.skipped)

    def _internal_error(self, m: RawMessage, exc: Exception, st: _Batch) -> None:
        try:
            st.reject(m, INTERNAL_ERROR, "", f"normalizer bug while handling this message: {exc!r}"[:500],
                      self._hint_name(m))
        except Exception:  # noqa: BLE001 - not even a dead letter could be built (value is not bytes)
            st.dl_counts[INTERNAL_ERROR] = st.dl_counts.get(INTERNAL_ERROR, 0) + 1

    # --- helpers shared by formats ----------------------------------------------------------------

    def _hint_name(self, m: RawMessage) -> str:
        return self.topic_sources.get(m.topic, "")

    def _needs_mapping(self, m: RawMessage, fmt: str | None) -> bool:
        """JSON envelopes from a source with field mappings take the (slower) mapping path."""
        if fmt not in ("hub", "base"):
            return False
        rt = self._topic_src.get(m.topic)
        return rt is None or rt.name in self._mapped

    def _mode_lenient(self, source: str) -> bool:
        rt = self._src.get(source)
        return rt.lenient if rt is not None else self._default_lenient

    def _check_source(self, given: str, src: str, event_type: str, lenient: bool, st: _Batch) -> None:
        mod = SOURCE_ALIASES.get(given)
        if mod is None:
            mod = SOURCE_ALIASES.get(given.strip().lower().replace("_", "-"))
        if mod == src:
            return
        if lenient:
            st.warn("source_from_event_type")
            return
        if mod is None:
            raise _Reject(UNKNOWN_SOURCE, "source", f"source '{given}' is not a known module; expected one of "
                          f"{', '.join(SOURCES)} (or observatory, sentinel, costops, policy-engine)")
        raise _Reject(INVALID_FIELD, "source", f"source '{given}' is the {mod} module, but event type "
                      f"'{event_type}' belongs to the {src} module")

    def _time_ms(self, value: Any, field: str, lenient: bool, st: _Batch) -> int:
        """Any accepted time value -> epoch ms UTC (before skew correction)."""
        if type(value) is str:
            s = value.strip()
            if s[4:5] != "-" and _NUMERIC.match(s):  # "YYYY-..." is never a number
                value = float(s) if ("." in s or "e" in s or "E" in s) else int(s)
            else:
                try:
                    dt = datetime.fromisoformat(s)
                except ValueError:
                    raise _Reject(INVALID_FIELD, field, f"{field} '{value[:64]}' is neither an ISO-8601 date-time "
                                  "nor an epoch number") from None
                if dt.tzinfo is None:
                    if not lenient:
                        raise _Reject(INVALID_FIELD, field, f"{field} '{value[:64]}' has no UTC offset; add 'Z' or "
                                      "'+HH:MM' (lenient mode assumes UTC)")
                    st.warn("timestamp_assumed_utc")
                    dt = dt.replace(tzinfo=timezone.utc)
                try:
                    return (dt - _EPOCH) // _ONE_MS
                except OverflowError:
                    raise _Reject(IMPOSSIBLE_TIMESTAMP, field, f"{field} '{value[:64]}' is out of range") from None
        return epoch_to_ms(value, field)

    def _finish_time(self, ms: int, field: str, st: _Batch) -> None:
        if ms > st.hi:
            raise _Reject(IMPOSSIBLE_TIMESTAMP, field, f"{field} {_iso(ms)} is {(ms - st.ref) / 1000:.0f}s in the "
                          f"future (allowed: {self._max_future // 1000}s)")
        if ms < st.lo:
            raise _Reject(IMPOSSIBLE_TIMESTAMP, field, f"{field} {_iso(ms)} is older than the oldest allowed "
                          f"event age ({self._max_age // 86_400_000} days)")

    def _severity(self, given: str, payload: Payload) -> str:
        if not given:
            if type(payload) is LlmRequest and payload.is_error:
                return "high"
            return DEFAULT_SEVERITY[type(payload)]
        sev = SEVERITY_ALIASES.get(given) or SEVERITY_ALIASES.get(given.strip().lower())
        if sev is None:
            raise _Reject(INVALID_FIELD, "severity", f"severity '{given[:64]}' is not a known level; use one of "
                          f"{', '.join(SEVERITIES)} (or trace, warning, error, fatal...)")
        return sev

    # --- hub envelope -----------------------------------------------------------------------------

    def _hub_event(self, e: Any, st: _Batch) -> Event:
        """Normalize, in place, an Event decoded from a hub envelope."""
        p = e.payload
        src, rt, check, default_sev = self._info[type(p)]
        s = e.source
        if s != src:
            if s:
                self._check_source(s, src, e.event_type, rt.lenient, st)
            e.source = src
        t = e.event_time_ms
        if type(t) is int and _MS_LO <= t < _MS_HI:
            ms = t - rt.skew
        else:
            ms = self._time_ms(t, "event_time", rt.lenient, st) - rt.skew
        if ms > st.hi or ms < st.lo:
            self._finish_time(ms, "event_time", st)
        if ms != t:
            e.event_time_ms = ms
        e.ingest_time_ms = st.now
        sev = e.severity
        if sev not in _SEVERITY_SET:
            e.severity = self._severity(sev, p) if sev else (
                "high" if default_sev is None and p.is_error else default_sev or "info")
        if e.schema_version not in _KNOWN_VERSIONS:
            e.schema_version = _check_version(e.schema_version, "schema_version", rt.lenient, st)
        if default_sev is None:  # LlmRequest, the hot type: skip the call when nothing to check
            ttft = p.time_to_first_token_ms
            if p.total_tokens is None or (p.error_type and not p.is_error) or (
                    ttft is not None and ttft > p.latency_ms):
                _check_llm_request(p, rt, st, "payload.")
        elif check is not None:
            check(p, rt, st, "payload.")
        return e

    # --- base event schema ------------------------------------------------------------------------

    def _base_event(self, env: Any, st: _Batch) -> Event:
        pcls, src, rt, event_cls, units, positional, check, default_sev = self._base_info[type(env)]
        if SOURCE_ALIASES.get(env.source) != src:
            self._check_source(env.source, src, EVENT_TYPE_OF[pcls], rt.lenient, st)
        data = env.data
        if units:
            _convert_unit_strings(data, units, "data.")
            if pcls is Latency and data.breakdown is not None:
                _convert_unit_strings(data.breakdown, _BASE_UNIT_FIELDS[LatencyBreakdown], "data.breakdown.")
        try:
            if positional:  # values were validated when the twin was decoded
                if pcls is Latency and data.breakdown is not None and BREAKDOWN_POSITIONAL:
                    data.breakdown = LatencyBreakdown(*astuple(data.breakdown))
                p = pcls(*astuple(data)[:-1])  # the twin's last field is the lifted `severity`
            else:
                p = msgspec.convert(data, pcls, from_attributes=True)
        except msgspec.ValidationError as exc:
            code, field, reason = explain(_camel_path(str(exc)), "base", prefix="data")
            raise _Reject(code, field, reason) from None
        t = env.timestamp
        ms = self._time_ms(t, "timestamp", rt.lenient, st) if type(t) is not int or not _MS_LO <= t < _MS_HI else t
        ms -= rt.skew
        if ms > st.hi or ms < st.lo:
            self._finish_time(ms, "timestamp", st)
        region = environment = correlation = parent = ""
        severity = data.severity
        tags: dict[str, str] = {}
        md = env.metadata
        if md:
            for k, v in md.items():
                if v is None:
                    continue
                if type(v) is not str:
                    v = _tag_str(v)
                role = _BASE_METADATA.get(k)
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
            sev = SEVERITY_ALIASES.get(severity) or self._severity(severity, p)
        else:
            sev = "high" if pcls is LlmRequest and p.is_error else default_sev
        version = env.version
        if version not in _KNOWN_VERSIONS:
            version = _check_version(version, "version", rt.lenient, st)
        if check is not None:
            check(p, rt, st, "data.")
        return event_cls(env.event_id, ms, p, st.now, src, version, correlation, parent, sev, environment, region,
                         tags)

    # --- decode failures, lenient fixes, field mappings (the slow path) ----------------------------

    def _decode_failed(self, m: RawMessage, fmt: str, exc: Exception, st: _Batch) -> None:
        if not isinstance(exc, msgspec.ValidationError):
            self._reject_undecodable(m, exc, st)
            return
        code, field, reason = explain(str(exc), fmt)
        if code in (UNKNOWN_EVENT_TYPE, MISSING_FIELD, UNKNOWN_FORMAT) and field in _TAG_FIELDS:
            # The key probe may have guessed the wrong envelope; a message is what it decodes as.
            for other in ("hub", "base"):
                if other != fmt and _TAG_KEYS[other] in m.value:
                    try:
                        env = (self._hub if other == "hub" else self._base).decode(m.value)
                    except Exception:  # noqa: BLE001
                        continue
                    self._emit(env, other, m, st)
                    return
        self._slow_json(m, fmt, st, (code, field, reason))

    def _reject_undecodable(self, m: RawMessage, exc: Exception, st: _Batch) -> None:
        if isinstance(exc, UnicodeDecodeError):
            st.reject(m, MALFORMED_JSON, "", f"message is not valid UTF-8 (bad byte at position {exc.start})",
                      self._hint_name(m))
        elif isinstance(exc, msgspec.DecodeError):
            st.reject(m, MALFORMED_JSON, "", f"message is not valid JSON: {exc}", self._hint_name(m))
        else:
            code, field, reason = explain(str(exc), "json")
            st.reject(m, code, field, reason, self._hint_name(m))

    def _emit(self, env: Any, fmt: str, m: RawMessage, st: _Batch) -> None:
        if fmt == "hub":
            try:
                st.events.append(self._hub_event(env, st))
            except _Reject as r:
                st.reject(m, r.code, r.field, r.reason, type(env.payload).SOURCE, env.event_id)
        else:
            try:
                st.events.append(self._base_event(env, st))
            except _Reject as r:
                st.reject(m, r.code, r.field, r.reason, BASE_PAYLOAD_OF[type(env)].SOURCE, env.event_id)

    def _slow_json(self, m: RawMessage, fmt: str, st: _Batch, error: tuple[str, str, str] | None) -> None:
        """Untyped decode, then field mappings and (lenient mode) fixes, then typed convert."""
        try:
            obj = msgspec.json.decode(m.value)
        except Exception as exc:  # noqa: BLE001
            self._reject_undecodable(m, exc, st)
            return
        if not isinstance(obj, dict):
            st.reject(m, UNKNOWN_FORMAT, "", f"message is a JSON {type(obj).__name__}, not an event object",
                      self._hint_name(m))
            return
        source = self._object_source(m, obj, fmt)
        rt = self._src.get(source)
        lenient = self._mode_lenient(source)
        if error is not None and not lenient and (rt is None or not rt.mappings):
            # strict: the typed decode already said what is wrong; obj only names the event
            st.reject(m, *error, source, _obj_id(obj, fmt))
            return
        if rt is not None and rt.mappings:
            _apply_mappings(obj, rt.mappings)
        target = self._types[fmt]
        fixes: list[str] = []
        for _ in range(12):
            try:
                env = msgspec.convert(obj, target, strict=not lenient)
                break
            except msgspec.ValidationError as exc:
                code, field, reason = explain(str(exc), fmt)
                if not lenient or not _fix(obj, str(exc), m, st.now, fixes):
                    st.reject(m, code, field, reason, source, _obj_id(obj, fmt))
                    return
        else:
            st.reject(m, INVALID_FIELD, "", "too many problems to fix in lenient mode", source, _obj_id(obj, fmt))
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

    def _unknown(self, m: RawMessage, st: _Batch) -> None:
        v = m.value
        if not v.strip():
            st.reject(m, UNKNOWN_FORMAT, "", "message is empty or blank; expected a JSON event or OTLP protobuf",
                      self._hint_name(m))
            return
        try:
            obj = msgspec.json.decode(v)
        except Exception as exc:  # noqa: BLE001
            self._reject_undecodable(m, exc, st)
            return
        if isinstance(obj, dict):
            st.reject(m, UNKNOWN_FORMAT, "", "JSON object is none of the accepted formats: expected a hub envelope "
                      "(event_id, event_type, ...), a base event (eventId, eventType, ...) or OTLP/JSON "
                      "(resourceSpans)", self._hint_name(m))
        else:
            st.reject(m, UNKNOWN_FORMAT, "", f"message is a JSON {_json_kind(obj)}, not an event object",
                      self._hint_name(m))

    # --- OTLP -------------------------------------------------------------------------------------

    def _no_spans(self, m: RawMessage, st: _Batch, before: tuple[int, int, int]) -> None:
        """An OTLP message that held no span at all still leaves a trace: a dead letter."""
        if (len(st.events), len(st.dead), st.skipped) == before:
            st.reject(m, MISSING_FIELD, "resourceSpans", "OTLP message holds no spans", "telemetry")

    def _otlp_json(self, m: RawMessage, st: _Batch) -> None:
        before = (len(st.events), len(st.dead), st.skipped)
        try:
            traces = self._otlp.decode(m.value)
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, msgspec.ValidationError):
                code, field, reason = explain(str(exc), "otlp_json")
                st.reject(m, code, field, reason, "telemetry")
            else:
                self._reject_undecodable(m, exc, st)
            return
        rt = self._src["telemetry"]
        amap = rt.mappings
        for rs in traces.resourceSpans:
            res_tags, res_slots = _resource_attrs(rs.resource.attributes if rs.resource else (), amap, _av_json)
            for ss in rs.scopeSpans:
                for sp in ss.spans:
                    try:
                        slots, tags = _span_attrs(sp.attributes, amap, res_slots, res_tags, _av_json)
                        if slots is None:
                            st.skipped += 1
                            continue
                        status = sp.status
                        code = status.code if status is not None else 0
                        failed = code == 2 or code == "STATUS_CODE_ERROR"
                        exc_type = ""
                        if failed and slots[_ERR] is None:
                            exc_type = _exception_type_json(sp.events)
                        st.events.append(self._span_event(
                            slots, tags, sp.traceId.lower(), sp.spanId.lower(), sp.parentSpanId.lower(), sp.name,
                            sp.startTimeUnixNano, sp.endTimeUnixNano, failed, exc_type, rt, st, sp))
                    except _Reject as r:
                        st.reject(m, r.code, r.field, r.reason, "telemetry", sp.spanId,
                                  raw=self._span_enc.encode(sp))
        self._no_spans(m, st, before)

    def _otlp_proto(self, m: RawMessage, st: _Batch) -> None:
        before = (len(st.events), len(st.dead), st.skipped)
        try:
            req = _ExportRequest.FromString(m.value)
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
            st.reject(m, MALFORMED_PROTOBUF, "", f"message is not an OTLP ExportTraceServiceRequest protobuf: "
                      f"{exc}", "telemetry")
            return
        rt = self._src["telemetry"]
        amap = rt.mappings
        for rs in req.resource_spans:
            res_tags, res_slots = _resource_attrs(rs.resource.attributes, amap, _av_pb)
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    try:
                        slots, tags = _span_attrs(sp.attributes, amap, res_slots, res_tags, _av_pb)
                        if slots is None:
                            st.skipped += 1
                            continue
                        failed = sp.status.code == 2
                        exc_type = ""
                        if failed and slots[_ERR] is None:
                            exc_type = _exception_type(sp.events, _av_pb)
                        st.events.append(self._span_event(
                            slots, tags, sp.trace_id.hex(), sp.span_id.hex(), sp.parent_span_id.hex(), sp.name,
                            sp.start_time_unix_nano, sp.end_time_unix_nano, failed, exc_type, rt, st, sp))
                    except _Reject as r:
                        st.reject(m, r.code, r.field, r.reason, "telemetry", sp.span_id.hex(),
                                  raw=sp.SerializeToString())
        self._no_spans(m, st, before)

    def _span_event(self, slots: list[Any], tags: dict[str, str], trace_id: str, span_id: str, parent: str,
                    name: str, start: int | str, end: int | str, failed: bool, exc_type: str, rt: _Source,
                    st: _Batch, span: Any) -> Event:
        """One LLM span (as slots of GenAI attributes) -> Event with an LlmRequest payload."""
        model = slots[_MODEL] or slots[_RESP_MODEL]
        if not model or type(model) is not str:
            raise _Reject(MISSING_FIELD, "gen_ai.request.model", "LLM span has no model: set gen_ai.request.model "
                          "(or gen_ai.response.model / llm.model_name)")
        if not span_id:
            if not rt.lenient:
                raise _Reject(MISSING_FIELD, "spanId", "span has no spanId, so it has no event id")
            st.warn("generated_event_id")
            raw = self._span_enc.encode(span) if isinstance(span, msgspec.Struct) else span.SerializeToString()
            span_id = "gen-" + hashlib.blake2b(raw, digest_size=16).hexdigest()
        start_ns = _nanos(start, "startTimeUnixNano")
        end_ns = _nanos(end, "endTimeUnixNano")
        if start_ns <= 0:
            raise _Reject(IMPOSSIBLE_TIMESTAMP, "startTimeUnixNano", "span has no start time")
        if end_ns < start_ns:
            raise _Reject(NEGATIVE_VALUE, "endTimeUnixNano", "span ends before it starts (negative duration)")
        ms = start_ns // 1_000_000 - rt.skew
        if ms > st.hi or ms < st.lo:
            self._finish_time(ms, "startTimeUnixNano", st)
        inp = slots[_IN]
        if inp is not None and not (type(inp) is int and 0 <= inp <= _MAX_COUNT):
            inp = _count(inp, _SLOT_KEY[_IN], rt.lenient, st)
        out = slots[_OUT]
        if out is not None and not (type(out) is int and 0 <= out <= _MAX_COUNT):
            out = _count(out, _SLOT_KEY[_OUT], rt.lenient, st)
        cached = slots[_CACHED]
        if cached is not None and not (type(cached) is int and 0 <= cached <= _MAX_COUNT):
            cached = _count(cached, _SLOT_KEY[_CACHED], rt.lenient, st)
        total = slots[_TOTAL]
        if total is None:
            if inp is not None or out is not None:
                total = (inp or 0) + (out or 0)
        elif not (type(total) is int and 0 <= total <= _MAX_COUNT):
            total = _count(total, _SLOT_KEY[_TOTAL], rt.lenient, st)
        latency = (end_ns - start_ns) / 1e6
        ttft = slots[_TTFT]
        if ttft is not None:
            if type(ttft) not in (int, float) or not 0 <= ttft < 86_400:  # also catches NaN
                raise _Reject(INVALID_FIELD, "gen_ai.server.time_to_first_token",
                              "time to first token must be a non-negative number of seconds")
            ttft = ttft * 1000.0
            if ttft > latency:
                if not rt.lenient:
                    raise _Reject(INVALID_FIELD, "gen_ai.server.time_to_first_token",
                                  f"time to first token ({ttft:.1f} ms) exceeds the span duration ({latency:.1f} ms)")
                st.warn("dropped_inconsistent_ttft")
                ttft = None
        err = slots[_ERR]
        is_error = failed or bool(err)
        error_type = (str(err) if err else (exc_type or "_OTHER")) if is_error else ""
        finish = slots[_FINISH]
        if isinstance(finish, list):
            finish = finish[0] if finish else ""
        provider = slots[_PROVIDER]
        op = slots[_OP]
        resp_model = slots[_RESP_MODEL]
        resp_id = slots[_RESP_ID]
        env = slots[_ENV]
        region = slots[_REGION]
        # positional, in LlmRequest field order
        p = LlmRequest(
            model, latency, provider if type(provider) is str else _s(provider), op if type(op) is str else _s(op),
            resp_model if type(resp_model) is str else _s(resp_model),
            resp_id if type(resp_id) is str else _s(resp_id), ttft, inp, out, cached, total, is_error, error_type,
            finish if type(finish) is str else _s(finish), name,
        )
        return _LLM_EVENT(span_id, ms, p, st.now, "telemetry", SCHEMA_VERSION, trace_id, parent,
                          "high" if is_error else "info", env if type(env) is str else _s(env),
                          region if type(region) is str else _s(region), tags)


# --- format detection -------------------------------------------------------------------------------

_TAG_KEYS = {"hub": b'"event_type"', "base": b'"eventType"'}
_TAG_FIELDS = ("event_type", "eventType", "")


def detect_format(v: bytes) -> str | None:
    """Wire format of one message from its first JSON key (or first byte for protobuf)."""
    if not v:
        return None
    c = v[0]
    if c == 0x7B:  # "{"
        i = 1
    elif c == 0x0A:  # protobuf field 1 (resource_spans), length-delimited
        return "otlp_proto"
    else:
        s = v.lstrip()
        if s[:1] != b"{":
            return None
        i = len(v) - len(s) + 1
    n = len(v)
    while i < n and v[i] in b" \t\r\n":
        i += 1
    if i < n and v[i] == 0x22:
        j = v.find(b'"', i + 1)
        fmt = _FIRST_KEY_FORMAT.get(v[i + 1:j]) if j > 0 else None
        if fmt is not None:
            return fmt
    for probe, fmt in _PROBES:
        if probe in v:
            return fmt
    return None


# --- error explanation --------------------------------------------------------------------------------

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`")
_INVALID_TAG = re.compile(r"^Invalid value '(?P<value>.*)'$", re.S)


def explain(message: str, fmt: str, prefix: str = "") -> tuple[str, str, str]:
    """msgspec validation message -> (reason code, field path, sentence for a human)."""
    mt = _AT.match(message)
    msg = mt.group("msg") if mt else message
    path = (mt.group("path") or "") if mt else ""
    path = path[1:] if path.startswith(".") else path
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    miss = _MISSING.match(msg)
    if miss:
        field = f"{path}.{miss.group('name')}" if path else miss.group("name")
        if field in ("event_type", "eventType"):
            return MISSING_FIELD, field, f"required field '{field}' is missing (it says which kind of event this is)"
        return MISSING_FIELD, field, f"required field '{field}' is missing"
    inv = _INVALID_TAG.match(msg)
    if inv and path in ("event_type", "eventType"):
        return UNKNOWN_EVENT_TYPE, path, (f"unknown event type '{inv.group('value')[:80]}'; accepted types are "
                                          f"published by `hub schema export`")
    if msg.startswith("Expected `") and (">= 0" in msg) and "<=" not in msg:
        return NEGATIVE_VALUE, path, f"'{path}' must not be negative"
    if not path and msg.startswith("Expected `object`"):
        return UNKNOWN_FORMAT, "", f"message is not a JSON object ({msg[0].lower()}{msg[1:]})"
    if msg.startswith("Invalid enum value"):
        return INVALID_FIELD, path, f"'{path}': {msg[0].lower()}{msg[1:]} (not one of the allowed values)"
    where = f"'{path}': " if path else ""
    return INVALID_FIELD, path, f"{where}{msg[0].lower()}{msg[1:]}" if msg else f"{where}invalid value"


# --- lenient fixes --------------------------------------------------------------------------------

_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def _fix(obj: dict[str, Any], message: str, m: RawMessage, now: int, fixes: list[str]) -> bool:
    """Fix, in place, the one problem msgspec reported if the fix is unambiguous; say if it did."""
    mt = _AT.match(message)
    if not mt:
        return False
    msg, path = mt.group("msg"), mt.group("path") or ""
    parts = [(a if a else (int(b) if b.isdigit() else b)) for a, b in _PATH_PART.findall(path)]
    parent: Any = obj
    for part in parts[:-1]:
        if part == "...":
            return False
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return False
    miss = _MISSING.match(msg)
    if miss:
        name = miss.group("name")
        if parts and parts[-1] != "...":
            try:
                parent = parent[parts[-1]]
            except (KeyError, IndexError, TypeError):
                return False
        if not isinstance(parent, dict):
            return False
        if not parts and name in ("event_id", "eventId"):
            parent[name] = "gen-" + hashlib.blake2b(m.value, digest_size=16).hexdigest()
            fixes.append("generated_event_id")
            return True
        if not parts and name in ("event_time", "timestamp"):
            parent[name] = m.timestamp_ms if m.timestamp_ms > 0 else now
            fixes.append("time_from_broker" if m.timestamp_ms > 0 else "time_from_ingest")
            return True
        return False
    if not parts:
        return False
    last = parts[-1]
    if last == "...":
        # a dict value (tags/metadata): stringify scalars that should have been strings
        if msg.startswith("Expected `str`") and isinstance(parent, dict):
            changed = False
            for k, v in parent.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    parent[k] = _tag_str(v)
                    changed = True
            if changed:
                fixes.append("stringified_tag")
            return changed
        return False
    try:
        value = parent[last]
    except (KeyError, IndexError, TypeError):
        return False
    if msg.startswith("Invalid enum value") and type(value) is str:
        name = _snake(str(last))
        low = value.strip().lower()
        fixed = ENUM_ALIASES.get(name, {}).get(low, low)
        if fixed != value:
            parent[last] = fixed
            fixes.append("enum_alias")
            return True
        return False
    if msg.startswith("Expected `str`") and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[last] = _tag_str(value)
        fixes.append("stringified_number")
        return True
    if msg.startswith("Expected `int`") and type(value) is float and value.is_integer():
        parent[last] = int(value)
        fixes.append("integral_float")
        return True
    return False


_KNOWN_VERSIONS: set[str] = {SCHEMA_VERSION}
_SEVERITY_SET = frozenset(SEVERITIES)
_LLM_EVENT = EVENT_CLASSES[LlmRequest]
# _span_event builds LlmRequest positionally; fail loudly at import if its fields move.
assert LlmRequest.__struct_fields__[:15] == (
    "model", "latency_ms", "provider", "operation", "response_model", "request_id", "time_to_first_token_ms",
    "input_tokens", "output_tokens", "cached_input_tokens", "total_tokens", "is_error", "error_type",
    "finish_reason", "span_name"), "LlmRequest field order changed: update Normalizer._span_event"


def _check_version(version: str, field: str, lenient: bool, st: _Batch) -> str:
    """Semantic version check (cached for versions seen valid); lenient pads '1.2' / 'v1.2.3'."""
    if _SEMVER.match(version):
        if len(_KNOWN_VERSIONS) < 1024:
            _KNOWN_VERSIONS.add(version)
        return version
    loose = _LOOSE_SEMVER.match(version.strip())
    if lenient and loose:
        st.warn("padded_schema_version")
        return ".".join(g or "0" for g in loose.groups())
    raise _Reject(INVALID_FIELD, field, f"{field} '{version[:40]}' is not a semantic version (MAJOR.MINOR.PATCH)")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _apply_mappings(obj: dict[str, Any], mappings: dict[str, str]) -> None:
    """Move values from source paths to canonical paths (both dotted), in place."""
    for src, dst in mappings.items():
        parent: Any = obj
        *head, last = src.split(".")
        for part in head:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or last not in parent:
            continue
        value = parent.pop(last)
        node = obj
        *dhead, dlast = dst.split(".")
        for part in dhead:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[dlast] = value


# --- units, money, cross-field checks ------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


# payload class -> ((field, unit kind, camelCase wire name), ...) for the base format's unit strings
_BASE_UNIT_FIELDS: dict[type, tuple[tuple[str, str, str], ...]] = {
    cls: tuple((f, u, _camel(f)) for f, u in fields.items() if u != "money") for cls, fields in UNIT_FIELDS.items()
}
_MONEY_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f for f, u in fields.items() if u == "money") for cls, fields in UNIT_FIELDS.items()
}


def parse_unit(value: str, unit: str, field: str) -> float:
    """'1.5s' -> 1500.0 (duration, ms); '2KB' -> 2048.0 (size, bytes); '120/min' -> 2.0 (rate, /s)."""
    mt = _UNIT_VALUE.match(value)
    if not mt:
        raise _Reject(INVALID_FIELD, field, f"'{field}' value '{value[:40]}' is not a number with a {unit} unit")
    number = float(mt.group(1))
    suffix = mt.group(2).replace(" ", "").lower()
    table = _UNIT_TABLES[unit]
    factor = table.get(suffix)
    if factor is None and unit == "rate" and not suffix.startswith("/"):
        factor = table.get("/" + suffix)
    if factor is None:
        raise _Reject(INVALID_FIELD, field, f"'{field}' has unknown {unit} unit '{mt.group(2)}' "
                      f"(known: {', '.join(k for k in table if k)})")
    if number < 0:
        raise _Reject(NEGATIVE_VALUE, field, f"'{field}' must not be negative")
    out = number * factor
    if not math.isfinite(out):
        raise _Reject(INVALID_FIELD, field, f"'{field}' value '{value[:40]}' is out of range")
    return out


def _convert_unit_strings(data: Any, fields: tuple[tuple[str, str, str], ...], prefix: str) -> None:
    """Base-format unit strings ('1.5s', '2GB', '120/min') -> canonical numbers, in place."""
    for name, unit, label in fields:
        v = getattr(data, name)
        if v is None:
            continue
        if type(v) is str:
            v = parse_unit(v, unit, prefix + label)
        elif unit != "size":
            continue
        if unit == "size":
            v = int(round(v))
        setattr(data, name, v)


def _camel_path(message: str) -> str:
    """Rewrite the `$.snake_name` path of a msgspec message into the base format's camelCase."""
    return re.sub(r"`\$([^`]*)`", lambda mt: "`$" + ".".join(_camel(p) for p in mt.group(1).split(".")) + "`",
                  message)


def _convert_money(p: Any, rt: _Source, st: _Batch, prefix: str) -> None:
    cur = p.currency
    if cur != "USD":
        cur = cur.upper()
    rate = rt.rates.get(cur)
    if rate is None:
        raise _Reject(INVALID_FIELD, prefix + "currency", f"no USD rate configured for currency '{p.currency}' "
                      f"(normalization.sources.{rt.name}.currency_rates)")
    factor = rate * rt.money_factor
    if factor != 1.0:
        for name in _MONEY_FIELDS[type(p)]:
            v = getattr(p, name)
            if v is not None:
                setattr(p, name, v * factor)
    p.currency = "USD"


def _check_llm_request(p: LlmRequest, rt: _Source, st: _Batch, prefix: str) -> None:
    if p.total_tokens is None and (p.input_tokens is not None or p.output_tokens is not None):
        p.total_tokens = (p.input_tokens or 0) + (p.output_tokens or 0)
    ttft = p.time_to_first_token_ms
    if ttft is not None and ttft > p.latency_ms:
        if not rt.lenient:
            raise _Reject(INVALID_FIELD, prefix + "time_to_first_token_ms",
                          f"time to first token ({ttft} ms) exceeds the total latency ({p.latency_ms} ms)")
        st.warn("dropped_inconsistent_ttft")
        p.time_to_first_token_ms = None
    if p.error_type and not p.is_error:
        p.is_error = True


def _check_latency(p: Latency, rt: _Source, st: _Batch, prefix: str) -> None:
    b = p.breakdown
    if b is not None and b.time_to_first_token_ms is not None and b.time_to_first_token_ms > p.latency_ms:
        if not rt.lenient:
            raise _Reject(INVALID_FIELD, prefix + "breakdown.time_to_first_token_ms",
                          f"time to first token ({b.time_to_first_token_ms} ms) exceeds the total latency "
                          f"({p.latency_ms} ms)")
        st.warn("dropped_inconsistent_ttft")
        b.time_to_first_token_ms = None


def _check_tokens(p: TokenUsage, rt: _Source, st: _Batch, prefix: str) -> None:
    if p.total_tokens is None and (p.input_tokens is not None or p.output_tokens is not None):
        p.total_tokens = (p.input_tokens or 0) + (p.output_tokens or 0)


def _check_error(p: ErrorOccurred, rt: _Source, st: _Batch, prefix: str) -> None:
    if p.total_requests is not None and p.total_requests < p.failed_requests:
        raise _Reject(INVALID_FIELD, prefix + "total_requests",
                      f"total_requests ({p.total_requests}) is less than failed_requests ({p.failed_requests})")


_CHECKS: dict[type, Callable[[Any, _Source, _Batch, str], None]] = {
    LlmRequest: _check_llm_request,
    Latency: _check_latency,
    TokenUsage: _check_tokens,
    ErrorOccurred: _check_error,
    TokenCost: _convert_money,
    ApiCost: _convert_money,
    ResourceConsumption: _convert_money,
    BudgetAlert: _convert_money,
}

# --- small value helpers ------------------------------------------------------------------------------

_BASE_METADATA = {
    "region": "region", "environment": "environment", "env": "environment",
    "correlationId": "correlation_id", "correlation_id": "correlation_id", "traceId": "correlation_id",
    "parentEventId": "parent_event_id", "parent_event_id": "parent_event_id",
    "severity": "severity", "level": "severity",
}
_SLOT_KEY = {_IN: "gen_ai.usage.input_tokens", _OUT: "gen_ai.usage.output_tokens",
             _CACHED: "gen_ai.usage.cache_read.input_tokens", _TOTAL: "llm.usage.total_tokens"}


def epoch_to_ms(value: Any, field: str = "event_time") -> int:
    """Epoch number in s, ms, us or ns (told apart by magnitude) -> epoch ms, floored."""
    if type(value) is bool or not isinstance(value, (int, float)) or not (0 < value < 9.3e18):
        raise _Reject(IMPOSSIBLE_TIMESTAMP, field, f"{field} {str(value)[:40]} is not a plausible epoch time")
    if value < 1e11:  # seconds (up to year 5138)
        return math.floor(value * 1000 + 1e-3) if type(value) is float else value * 1000
    if value < 1e14:  # milliseconds
        return math.floor(value) if type(value) is float else value
    if value < 1e17:  # microseconds
        return int(value // 1000)
    return int(value // 1_000_000)  # nanoseconds


def _iso(ms: int) -> str:
    try:
        return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except OverflowError:
        return str(ms)


def _nanos(value: int | str, field: str) -> int:
    if type(value) is int:
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _Reject(INVALID_FIELD, field, f"{field} '{str(value)[:40]}' is not an integer of nanoseconds") from None


_MAX_COUNT = 2**63 - 1


def _count(value: Any, key: str, lenient: bool, st: _Batch) -> int | None:
    if value is None:
        return None
    if type(value) is int:
        if value < 0:
            raise _Reject(NEGATIVE_VALUE, key, f"token count '{key}' must not be negative (got {value})")
        if value > _MAX_COUNT:
            raise _Reject(INVALID_FIELD, key, f"token count '{key}' is implausibly large ({str(value)[:30]})")
        return value
    if type(value) is float and value.is_integer() and lenient:
        st.warn("integral_float")
        return _count(int(value), key, lenient, st)
    raise _Reject(INVALID_FIELD, key, f"token count '{key}' must be an integer, got {_json_kind(value)}")


def _s(value: Any) -> str:
    if value is None:
        return ""
    return value if type(value) is str else _tag_str(value)


def _tag_str(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return msgspec.json.encode(value).decode()


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _obj_id(obj: dict[str, Any], fmt: str) -> str:
    v = obj.get("event_id" if fmt == "hub" else "eventId")
    return v if type(v) is str else ""


# --- OTLP attribute decoding ------------------------------------------------------------------------


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


def _resource_attrs(attrs: Any, amap: dict[str, str], av: Callable[[Any], Any]) -> tuple[dict[str, str], dict[int, Any]]:
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
        s = val if type(val) is str else _tag_str(val)
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
        elif val is not None and key not in _NO_TAG_KEYS:
            if type(val) is not str:
                val = _tag_str(val)
            if len(val) <= MAX_TAG_VALUE:
                tags[key] = val
    if not llm:
        return None, {}
    for slot, (val, rank) in res_slots.items():
        if slots[slot] is None:
            slots[slot] = val
    return slots, tags


_SPAN_EVENTS = msgspec.json.Decoder(list[SpanEvent])


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
                    return _s(av(kv.value))
    return ""


try:  # opentelemetry-proto is a hard dependency; import lazily-failing for a clear message
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest as _ExportRequest,
    )
except ImportError as _exc:  # pragma: no cover
    raise ImportError("opentelemetry-proto is required to decode otlp_proto messages") from _exc


def _av_pb(v: Any) -> Any:
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


def reason_code(dead_letter: DeadLetter) -> str:
    """The short code of a dead letter (kept for callers written against older letters)."""
    return dead_letter.code


__all__ = [
    "NormalizedBatch", "Normalizer", "REASON_CODES", "detect_format", "GENAI_ATTRIBUTES", "SOURCE_ALIASES", "epoch_to_ms",
    "explain", "parse_unit", "reason_code",
]
