"""Normalization rules: timestamps, units, money, severity, sources, mappings, modes, dead letters."""
from __future__ import annotations

import msgspec
import pytest

from config.normalization import NormalizationSettings, SourceNormalization, SourcesNormalization
from operators.normalize import (
    GENAI_ATTRIBUTES,
    REASON_CODES,
    NormalizedBatch,
    Normalizer,
    epoch_to_ms,
    parse_unit,
    reason_code,
)
from schemas.vocabulary import SEVERITIES
from schemas.raw import RawMessage
from tests.fixtures_events import (
    CURRENT_ATTRIBUTES,
    EVENT_MS,
    LEGACY_ATTRIBUTES,
    NOW_MS,
    PAYLOADS,
    base_message,
    hub_message,
    otlp_json_message,
    otlp_proto_message,
    otlp_span,
    raw,
)

LLM = "telemetry.request"


def settings(mode: str = "strict", **per_source: SourceNormalization) -> NormalizationSettings:
    return NormalizationSettings(mode=mode, sources=SourcesNormalization(**per_source))


def run(*values: bytes, s: NormalizationSettings | None = None, topic_sources: dict[str, str] | None = None,
        now: int = NOW_MS, topic: str = "fixtures") -> NormalizedBatch:
    msgs = [raw(v, topic=topic, offset=i) for i, v in enumerate(values)]
    return Normalizer(s, topic_sources).normalize_batch(msgs, now_ms=now)


def one(value: bytes, **kw) -> object:  # type: ignore[no-untyped-def]
    batch = run(value, **kw)
    assert not batch.dead_letters, [d.reason for d in batch.dead_letters]
    return batch.events[0]


def dead(value: bytes, **kw):  # type: ignore[no-untyped-def]
    batch = run(value, **kw)
    assert not batch.events and len(batch.dead_letters) == 1
    return batch.dead_letters[0]


# --- timestamps ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("2025-11-19T09:59:00Z", EVENT_MS),
    ("2025-11-19T09:59:00.000Z", EVENT_MS),
    ("2025-11-19T10:59:00+01:00", EVENT_MS),
    ("2025-11-19T04:29:00.000-05:30", EVENT_MS),
    ("2025-11-20T00:59:00+15:00", EVENT_MS),  # other calendar day in that zone
    ("2025-11-19 09:59:00.123456789+00:00", EVENT_MS + 123),  # nanos truncated to ms
    ("2025-11-19T09:59:00.9999Z", EVENT_MS + 999),  # truncation, not rounding
    ("20251119T095900Z", EVENT_MS),  # ISO basic format
    (EVENT_MS // 1000, EVENT_MS),  # epoch seconds
    (EVENT_MS / 1000 + 0.25, EVENT_MS + 250),  # float seconds
    (EVENT_MS, EVENT_MS),  # ms
    (EVENT_MS * 1000 + 999, EVENT_MS),  # us
    (EVENT_MS * 1_000_000 + 999_999, EVENT_MS),  # ns
    (str(EVENT_MS), EVENT_MS),  # epoch in a string
    (str(EVENT_MS // 1000), EVENT_MS),
])
def test_event_time_forms_normalize_to_utc_ms(value: object, expected: int) -> None:
    assert one(hub_message(LLM, event_time=value)).event_time_ms == expected
    assert one(base_message(LLM, timestamp=value)).event_time_ms == expected


def test_epoch_unit_boundaries() -> None:
    # magnitude bands: s < 1e11 <= ms < 1e14 <= us < 1e17 <= ns
    assert epoch_to_ms(99_999_999_999) == 99_999_999_999_000  # largest seconds (year 5138)
    assert epoch_to_ms(100_000_000_000) == 100_000_000_000  # smallest ms (1973)
    assert epoch_to_ms(99_999_999_999_999) == 99_999_999_999_999
    assert epoch_to_ms(100_000_000_000_000) == 100_000_000_000
    assert epoch_to_ms(100_000_000_000_000_000) == 100_000_000_000
    assert epoch_to_ms(1_700_000_000.123) == 1_700_000_000_123  # float noise does not lose a ms


@pytest.mark.parametrize("value", [0, -5, True, 9.9e18, "not a time", "2025-13-40T00:00:00Z", ""])
def test_unparseable_or_absurd_times_are_dead_letters(value: object) -> None:
    d = dead(hub_message(LLM, event_time=value))
    assert reason_code(d) in ("impossible_timestamp", "invalid_field")
    assert d.field == "event_time"


def test_naive_timestamp_strict_rejects_lenient_assumes_utc() -> None:
    d = dead(base_message(LLM, timestamp="2025-11-19T09:59:00"))
    assert reason_code(d) == "invalid_field" and "UTC offset" in d.reason and d.field == "timestamp"
    batch = run(base_message(LLM, timestamp="2025-11-19T09:59:00"), s=settings("lenient"))
    assert batch.events[0].event_time_ms == EVENT_MS
    assert batch.warning_counts == {"timestamp_assumed_utc": 1}


def test_impossible_timestamps_future_and_too_old() -> None:
    s = NormalizationSettings(max_future_skew_s=60, max_event_age_s=3600)
    future = dead(hub_message(LLM, event_time=NOW_MS + 61_000), s=s)
    assert reason_code(future) == "impossible_timestamp" and "future" in future.reason
    assert one(hub_message(LLM, event_time=NOW_MS + 59_000), s=s).event_time_ms == NOW_MS + 59_000
    old = dead(hub_message(LLM, event_time=NOW_MS - 3_601_000), s=s)
    assert reason_code(old) == "impossible_timestamp" and "older" in old.reason


def test_clock_skew_is_subtracted_per_source() -> None:
    s = settings(telemetry=SourceNormalization(clock_skew_ms=250), cost=SourceNormalization(clock_skew_ms=-40))
    assert one(hub_message(LLM, event_time=EVENT_MS), s=s).event_time_ms == EVENT_MS - 250
    assert one(base_message("cost.tokens"), s=s).event_time_ms == EVENT_MS + 40
    assert one(base_message("asset.registered"), s=s).event_time_ms == EVENT_MS  # registry: no skew
    spans = otlp_json_message([otlp_span(CURRENT_ATTRIBUTES)])
    assert one(spans, s=s).event_time_ms == EVENT_MS - 250


def test_missing_time_lenient_uses_broker_timestamp() -> None:
    msg = msgspec.json.decode(hub_message(LLM))
    del msg["event_time"]
    d = dead(msgspec.json.encode(msg))
    assert reason_code(d) == "missing_field" and d.field == "event_time"
    m = raw(msgspec.json.encode(msg), timestamp_ms=NOW_MS - 1000)
    batch = Normalizer(settings("lenient")).normalize_batch([m], now_ms=NOW_MS)
    assert batch.events[0].event_time_ms == NOW_MS - 1000
    assert batch.warning_counts == {"time_from_broker": 1}


def test_time_plausibility_is_judged_against_the_broker_timestamp() -> None:
    """A replay hours later must accept and reject exactly what the first run did."""
    s = NormalizationSettings(max_future_skew_s=60, max_event_age_s=3600)
    sent = NOW_MS - 7 * 86_400_000  # a backlog replayed a week after it was produced
    values = [hub_message(LLM, event_id="ahead", event_time=sent + 61_000),
              hub_message(LLM, event_id="fine", event_time=sent - 10_000),
              hub_message(LLM, event_id="stale", event_time=sent - 3_601_000)]
    msgs = [raw(v, offset=i, timestamp_ms=sent) for i, v in enumerate(values)]
    for now in (sent + 1000, NOW_MS):
        batch = Normalizer(s).normalize_batch(msgs, now_ms=now)
        assert [e.event_id for e in batch.events] == ["fine"]
        assert [(d.event_id, d.code) for d in batch.dead_letters] == [
            ("ahead", "impossible_timestamp"), ("stale", "impossible_timestamp")]
        assert "61s in the future" in batch.dead_letters[0].reason
    # Without a broker timestamp (files, the generator) the wall clock is the reference.
    assert [e.event_id for e in Normalizer(s).normalize_batch(
        [raw(hub_message(LLM, event_id="now", event_time=NOW_MS - 10_000))], now_ms=NOW_MS).events] == ["now"]


# --- units and money -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, unit, expected", [
    ("250", "duration", 250.0), ("250ms", "duration", 250.0), ("1.5s", "duration", 1500.0),
    ("2m", "duration", 120_000.0), ("800us", "duration", 0.8), ("800µs", "duration", 0.8),
    ("1500000ns", "duration", 1.5), ("1 h", "duration", 3_600_000.0), (" 3 seconds ", "duration", 3000.0),
    ("512", "size", 512.0), ("2KB", "size", 2048.0), ("1.5 GiB", "size", 1.5 * 1024**3), ("10mb", "size", 10 * 1024**2),
    ("120/min", "rate", 2.0), ("3/s", "rate", 3.0), ("7200/h", "rate", 2.0), ("60 per_minute", "rate", 1.0),
    ("90rpm", "rate", 1.5),
])
def test_parse_unit(text: str, unit: str, expected: float) -> None:
    assert parse_unit(text, unit, "f") == pytest.approx(expected)


def test_base_unit_strings_become_canonical_units() -> None:
    data = {"model": "m", "latencyMs": "1.5s", "breakdown": {"timeToFirstTokenMs": "300ms", "queueMs": "0.01s"},
            "tokensPerSecond": "600/min"}
    e = one(base_message("telemetry.latency", data=data))
    assert e.payload.latency_ms == 1500.0 and e.payload.tokens_per_second == 10.0
    assert e.payload.breakdown.time_to_first_token_ms == 300.0 and e.payload.breakdown.queue_ms == 10.0
    res = one(base_message("cost.resource", data={"resourceType": "gpu", "memoryBytes": "80GB", "durationMs": "2h"}))
    assert res.payload.memory_bytes == 80 * 1024**3 and isinstance(res.payload.memory_bytes, int)
    assert res.payload.duration_ms == 7_200_000.0


@pytest.mark.parametrize("data, code, field", [
    ({"model": "m", "latencyMs": "-3s"}, "negative_value", "data.latencyMs"),
    ({"model": "m", "latencyMs": "3 parsecs"}, "invalid_field", "data.latencyMs"),
    ({"model": "m", "latencyMs": -1}, "negative_value", "data.latencyMs"),
    ({"latencyMs": 5}, "missing_field", "data.model"),
])
def test_bad_units_are_dead_letters(data: dict, code: str, field: str) -> None:
    d = dead(base_message("telemetry.latency", data=data))
    assert (reason_code(d), d.field) == (code, field)


def test_money_to_usd_with_cost_unit_and_currency_rates() -> None:
    cents = settings(cost=SourceNormalization(cost_unit="cents"))
    e = one(hub_message("cost.tokens", payload={"model": "m", "total_cost": 372.0, "input_cost": 160.0}), s=cents)
    assert e.payload.total_cost == pytest.approx(3.72) and e.payload.input_cost == pytest.approx(1.6)
    assert e.payload.currency == "USD"
    micros_eur = settings(cost=SourceNormalization(cost_unit="micros", currency_rates={"EUR": 1.10}))
    e = one(hub_message("cost.tokens", payload={"model": "m", "total_cost": 2_000_000, "currency": "eur"}),
            s=micros_eur)
    assert e.payload.total_cost == pytest.approx(2.2) and e.payload.currency == "USD"
    e = one(base_message("cost.budget", data={"budgetId": "b", "limit": 1000, "spent": 900, "currency": "GBP"}))
    assert e.payload.limit == pytest.approx(1250.0) and e.payload.spent == pytest.approx(1125.0)  # default rate


def test_unknown_currency_is_rejected_with_the_config_key_to_set() -> None:
    d = dead(hub_message("cost.api", payload={"provider": "p", "total_cost": 1.0, "currency": "XYZ"}))
    assert reason_code(d) == "invalid_field" and d.field == "payload.currency"
    assert "currency_rates" in d.reason


# --- severity, sources, versions -------------------------------------------------------------------


@pytest.mark.parametrize("given, expected", [
    ("info", "info"), ("WARN", "medium"), ("Warning", "medium"), ("error", "high"), ("fatal", "critical"),
    ("trace", "debug"), ("notice", "info"), (" critical ", "critical"), ("HIGH", "high"),
])
def test_severity_names_map_to_one_enum(given: str, expected: str) -> None:
    assert one(hub_message(LLM, severity=given)).severity == expected
    assert expected in SEVERITIES


def test_unknown_severity_is_dead_letter_and_default_depends_on_type() -> None:
    d = dead(hub_message(LLM, severity="apocalyptic"))
    assert reason_code(d) == "invalid_field" and d.field == "severity"
    assert one(hub_message("security.threat", severity="")).severity == "medium"
    failed = dict(msgspec.to_builtins(PAYLOADS[LLM]), is_error=True, error_type="timeout")
    failed.pop("type")
    assert one(hub_message(LLM, severity="", payload=failed)).severity == "high"


@pytest.mark.parametrize("source", ["observatory", "llm-observatory", "Telemetry", "telemetry", ""])
def test_source_aliases_are_accepted(source: str) -> None:
    assert one(hub_message(LLM, source=source)).source == "telemetry"


def test_source_contradicting_the_event_type() -> None:
    d = dead(hub_message(LLM, source="sentinel"))
    assert reason_code(d) == "invalid_field" and d.field == "source" and "security" in d.reason
    d = dead(base_message("asset.registered", source="somewhere-else"))
    assert reason_code(d) == "unknown_source"
    batch = run(hub_message(LLM, source="sentinel"), s=settings("lenient"))
    assert batch.events[0].source == "telemetry" and batch.warnings == 1


def test_schema_version_semver_strict_and_lenient_padding() -> None:
    assert one(hub_message(LLM, schema_version="2.1.0-rc.1")).schema_version == "2.1.0-rc.1"
    d = dead(hub_message(LLM, schema_version="1.0"))
    assert reason_code(d) == "invalid_field" and d.field == "schema_version"
    batch = run(hub_message(LLM, schema_version="v1.2"), s=settings("lenient"))
    assert batch.events[0].schema_version == "1.2.0" and batch.warning_counts == {"padded_schema_version": 1}


# --- validation modes -------------------------------------------------------------------------------


def test_strict_rejects_numeric_strings_lenient_coerces_with_warning() -> None:
    payload = {"model": "m", "latency_ms": "812.5", "input_tokens": "640"}
    d = dead(hub_message(LLM, payload=payload))
    assert reason_code(d) == "invalid_field" and d.field == "payload.latency_ms"
    batch = run(hub_message(LLM, payload=payload), s=settings("lenient"))
    assert batch.events[0].payload.input_tokens == 640 and batch.events[0].payload.latency_ms == 812.5
    assert batch.warnings == 1


def test_lenient_enum_aliases_and_generated_ids() -> None:
    data = {"policyId": "p", "decision": "DENY"}
    assert reason_code(dead(base_message("policy.evaluated", data=data))) == "invalid_field"
    e = run(base_message("policy.evaluated", data=data), s=settings("lenient")).events[0]
    assert e.payload.decision == "denied"
    msg = msgspec.json.decode(hub_message(LLM))
    del msg["event_id"]
    value = msgspec.json.encode(msg)
    assert reason_code(dead(value)) == "missing_field"
    first = run(value, s=settings("lenient")).events[0]
    again = run(value, s=settings("lenient")).events[0]
    assert first.event_id == again.event_id and first.event_id.startswith("gen-")  # stable: dedup still works


def test_mode_override_per_source() -> None:
    s = settings("strict", telemetry=SourceNormalization(mode="lenient"))
    assert run(hub_message(LLM, schema_version="1.0"), s=s).events
    assert not run(base_message("asset.registered", version="1.0"), s=s).events


def test_lenient_still_rejects_what_it_cannot_fix() -> None:
    s = settings("lenient")
    payload = dict(msgspec.to_builtins(PAYLOADS[LLM]), input_tokens=-5)
    payload.pop("type")
    for value, code in [(hub_message(LLM, payload=payload), "negative_value"),
                        (hub_message(LLM).replace(b"telemetry.request", b"telemetry.nonsense"), "unknown_event_type"),
                        (b'{"event_id": "x", "event_type": ', "malformed_json")]:
        batch = run(value, s=s)
        assert not batch.events and reason_code(batch.dead_letters[0]) == code


def test_cross_field_rules() -> None:
    payload = {"model": "m", "latency_ms": 100.0, "time_to_first_token_ms": 150.0}
    d = dead(hub_message(LLM, payload=payload))
    assert reason_code(d) == "invalid_field" and d.field == "payload.time_to_first_token_ms"
    e = run(hub_message(LLM, payload=payload), s=settings("lenient")).events[0]
    assert e.payload.time_to_first_token_ms is None
    e = one(hub_message(LLM, payload={"model": "m", "latency_ms": 1.0, "input_tokens": 3, "output_tokens": 4}))
    assert e.payload.total_tokens == 7
    d = dead(hub_message("telemetry.error", payload={"error_type": "x", "failed_requests": 5, "total_requests": 2}))
    assert d.field == "payload.total_requests"


# --- field mappings and pinned formats --------------------------------------------------------------


def test_field_mappings_rename_fields_per_source() -> None:
    s = settings(telemetry=SourceNormalization(field_mappings={
        "data.duration": "data.latencyMs", "data.modelName": "data.model", "metadata.env": "metadata.environment",
    }))
    value = base_message("telemetry.latency", data={"modelName": "m", "duration": "1.25s"})
    value = value.replace(b'"metadata":{', b'"metadata":{"env":"staging",')
    e = one(value, s=s, topic_sources={"obs": "telemetry"}, topic="obs")
    assert e.payload.model == "m" and e.payload.latency_ms == 1250.0 and e.environment == "staging"
    # without a topic mapping the message's own event type picks the source's mappings
    assert one(value, s=s).payload.latency_ms == 1250.0
    # other sources are untouched by telemetry's mappings
    assert reason_code(dead(base_message("cost.api", data={"provider": "p", "duration": 1}), s=s)) == "missing_field"


def test_field_mappings_on_otlp_attribute_names() -> None:
    s = settings(telemetry=SourceNormalization(field_mappings={"app.llm.model": "gen_ai.request.model",
                                                               "app.tokens.in": "gen_ai.usage.input_tokens"}))
    attrs = {"app.llm.model": "my-model", "app.tokens.in": 10, "gen_ai.usage.output_tokens": 3}
    e = one(otlp_json_message([otlp_span(attrs)]), s=s)
    assert (e.payload.model, e.payload.input_tokens, e.payload.total_tokens) == ("my-model", 10, 13)
    assert "app.llm.model" not in e.tags


def test_pinned_wire_format_skips_detection() -> None:
    s = settings(telemetry=SourceNormalization(wire_format="otlp_proto"))
    batch = run(otlp_json_message([otlp_span(CURRENT_ATTRIBUTES)]), s=s, topic_sources={"t": "telemetry"}, topic="t")
    assert reason_code(batch.dead_letters[0]) == "malformed_protobuf"
    batch = run(otlp_proto_message([otlp_span(CURRENT_ATTRIBUTES)]), s=s, topic_sources={"t": "telemetry"}, topic="t")
    assert len(batch.events) == 1


def test_unknown_topic_source_in_constructor_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown source"):
        Normalizer(topic_sources={"t": "billing"})


# --- format detection and dead letters --------------------------------------------------------------


def test_one_batch_mixes_every_format() -> None:
    values = [hub_message(LLM), base_message("asset.registered"), otlp_json_message([otlp_span(CURRENT_ATTRIBUTES)]),
              otlp_proto_message([otlp_span(LEGACY_ATTRIBUTES, span_id="1111111111111111")])]
    batch = run(*values)
    assert not batch.dead_letters
    assert sorted(e.event_id for e in batch.events) == sorted(
        ["hub-telemetry.request", "base-asset.registered", "00f067aa0ba902b7", "1111111111111111"])


def test_detection_does_not_depend_on_key_order_or_misleading_values() -> None:
    msg = msgspec.json.decode(hub_message(LLM))
    reordered = {"tags": {"note": '"eventType" and "resourceSpans" inside a value'}, **msg}
    e = one(msgspec.json.encode(reordered))
    assert e.event_id == "hub-telemetry.request"
    base = msgspec.json.decode(base_message("asset.registered"))
    odd_first = {"source": base.pop("source"), **base}  # "source" is a key of both envelopes
    assert one(msgspec.json.encode(odd_first)).event_type == "asset.registered"
    spaced = b"  \n " + hub_message(LLM)
    assert one(spaced).event_type == LLM


def test_dead_letters_carry_raw_bytes_position_field_and_reason() -> None:
    bad = hub_message(LLM, payload={"model": "m", "latency_ms": -1})
    msgs = [RawMessage(value=bad, topic="llm.telemetry", partition=3, offset=42, timestamp_ms=1)]
    batch = Normalizer(topic_sources={"llm.telemetry": "telemetry"}).normalize_batch(msgs, now_ms=NOW_MS)
    d = batch.dead_letters[0]
    assert (d.raw, d.topic, d.partition, d.offset) == (bad, "llm.telemetry", 3, 42)
    assert (d.source, d.event_id, d.field, d.ingest_time_ms) == ("telemetry", "hub-telemetry.request",
                                                                 "payload.latency_ms", NOW_MS)
    assert reason_code(d) == "negative_value" and "must not be negative" in d.reason
    assert batch.dead_letter_counts == {"negative_value": 1}


@pytest.mark.parametrize("value, code", [
    (b"", "unknown_format"),
    (b"   ", "unknown_format"),
    (b"\xff\xfe\x00garbage", "malformed_json"),
    (b'{"event_id": "\xff"}', "malformed_json"),
    (b"[1, 2, 3]", "unknown_format"),
    (b'"just a string"', "unknown_format"),
    (b'{"hello": "world"}', "unknown_format"),
    (b'{"event_id": "a", "event_type": "nope.nope", "event_time": 1}', "unknown_event_type"),
    (b'{"event_id": "a", "event_time": 1763546340000, "payload": {}}', "missing_field"),
    (b'{"eventId": "a", "eventType": "asset.registered", "source": "registry", "timestamp": "x"}', "missing_field"),
    (b'{"resourceSpans": 5}', "invalid_field"),
    (b"\x0a\x05\x0a\x03\xff\xff", "malformed_protobuf"),
    (b'{"event_id": "a", "event_type": "telemetry.request", "event_time": 1e400}', "malformed_json"),
])
def test_bad_inputs_get_a_code_and_a_reason(value: bytes, code: str) -> None:
    batch = run(value)
    assert not batch.events
    assert [reason_code(d) for d in batch.dead_letters] == [code]
    assert code in REASON_CODES
    assert len(batch.dead_letters[0].reason) > len(code) + 10


def test_otlp_non_llm_spans_are_skipped_and_bad_spans_dead_lettered_alone() -> None:
    spans = [otlp_span({"http.route": "/health"}, span_id="aaaaaaaaaaaaaaaa"),
             otlp_span(CURRENT_ATTRIBUTES),
             otlp_span(dict(CURRENT_ATTRIBUTES, **{"gen_ai.usage.input_tokens": -3}), span_id="bbbbbbbbbbbbbbbb"),
             otlp_span({"gen_ai.usage.input_tokens": 3}, span_id="cccccccccccccccc"),
             otlp_span(CURRENT_ATTRIBUTES, span_id="dddddddddddddddd", start_ns=2_000, end_ns=1_000)]
    for encode in (otlp_json_message, otlp_proto_message):
        batch = run(encode(spans))
        # An LLM span without any model is still a request: model `unknown`, never lost.
        assert [(e.event_id, e.payload.model) for e in batch.events] == [("00f067aa0ba902b7", "gpt-4o"),
                                                                         ("cccccccccccccccc", "unknown")]
        assert batch.skipped_spans == 1 and [(s.reason, s.count) for s in batch.skipped] == [("not_llm_span", 1)]
        got = {(d.event_id, reason_code(d), d.field) for d in batch.dead_letters}
        assert got == {("bbbbbbbbbbbbbbbb", "negative_value", "gen_ai.usage.input_tokens"),
                       ("dddddddddddddddd", "negative_value", "endTimeUnixNano")}
        assert all(d.raw and d.raw != encode(spans) for d in batch.dead_letters)  # the span, not the batch


def test_error_spans_and_exception_events() -> None:
    attrs = dict(CURRENT_ATTRIBUTES)
    span = otlp_span(attrs, error=True)
    span["events"] = [{"name": "exception", "attributes": [
        {"key": "exception.type", "value": {"stringValue": "openai.RateLimitError"}}]}]
    e = one(otlp_json_message([span]))
    assert e.payload.is_error and e.payload.error_type == "RateLimitError" and e.severity == "high"
    e = one(otlp_json_message([otlp_span(dict(attrs, **{"error.type": "timeout"}))]))
    assert e.payload.is_error and e.payload.error_type == "timeout"  # error.type alone marks a failure
    e = one(otlp_proto_message([otlp_span(attrs, error=True)]))
    assert e.payload.is_error and e.payload.error_type == "_OTHER"


# --- GenAI attribute mapping -------------------------------------------------------------------------


@pytest.mark.parametrize("legacy, current", [
    ("gen_ai.system", "gen_ai.provider.name"),
    ("llm.request.model", "gen_ai.request.model"),
    ("llm.model_name", "gen_ai.response.model"),
    ("gen_ai.usage.prompt_tokens", "gen_ai.usage.input_tokens"),
    ("gen_ai.usage.completion_tokens", "gen_ai.usage.output_tokens"),
    ("llm.token_count.prompt", "gen_ai.usage.input_tokens"),
    ("llm.token_count.completion", "gen_ai.usage.output_tokens"),
    ("gen_ai.usage.cache_read_input_tokens", "gen_ai.usage.cache_read.input_tokens"),
    ("llm.request.type", "gen_ai.operation.name"),
    ("gen_ai.usage.cache_creation_input_tokens", "gen_ai.usage.cache_creation.input_tokens"),
    ("llm.token_count.prompt_details.cache_write", "gen_ai.usage.cache_creation.input_tokens"),
    ("gen_ai.usage.reasoning_tokens", "gen_ai.usage.reasoning.output_tokens"),
    ("llm.token_count.completion_details.reasoning", "gen_ai.usage.reasoning.output_tokens"),
    ("llm.usage.total_tokens", "gen_ai.usage.total_tokens"),
])
def test_legacy_genai_names_map_to_the_same_field_and_current_names_win(legacy: str, current: str) -> None:
    assert GENAI_ATTRIBUTES[legacy][0] == GENAI_ATTRIBUTES[current][0]
    assert GENAI_ATTRIBUTES[current][1] < GENAI_ATTRIBUTES[legacy][1]
    is_int = "token" in current
    old, new = (111, 222) if is_int else ("old-value", "new-value")
    base = {"gen_ai.request.model": "m"} if current != "gen_ai.request.model" else {}
    only_legacy = one(otlp_json_message([otlp_span({**base, legacy: old})]))
    both = one(otlp_json_message([otlp_span({**base, legacy: old, current: new})]))
    reverse = one(otlp_json_message([otlp_span({**base, current: new, legacy: old})]))
    field = {"gen_ai.provider.name": "provider", "gen_ai.request.model": "model",
             "gen_ai.usage.input_tokens": "input_tokens", "gen_ai.usage.output_tokens": "output_tokens",
             "gen_ai.usage.cache_read.input_tokens": "cached_input_tokens",
             "gen_ai.usage.cache_creation.input_tokens": "cache_write_tokens",
             "gen_ai.usage.reasoning.output_tokens": "reasoning_tokens", "gen_ai.usage.total_tokens": "total_tokens",
             "gen_ai.response.model": "response_model", "gen_ai.operation.name": "operation"}[current]
    assert getattr(only_legacy.payload, field) == old
    assert getattr(both.payload, field) == new and getattr(reverse.payload, field) == new


def test_llm_usage_total_tokens_and_response_model_fallback() -> None:
    e = one(otlp_json_message([otlp_span({"gen_ai.response.model": "gpt-4o-2024-08-06",
                                          "llm.usage.total_tokens": 900, "gen_ai.usage.input_tokens": 600})]))
    assert e.payload.model == "gpt-4o-2024-08-06" and e.payload.total_tokens == 900
    e = one(otlp_json_message([otlp_span({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 5,
                                          "gen_ai.usage.output_tokens": 6})]))
    assert e.payload.total_tokens == 11


def test_resource_attributes_become_tags_and_content_never_does() -> None:
    attrs = dict(CURRENT_ATTRIBUTES, **{"gen_ai.prompt.0.content": "secret prompt", "input.value": "x" * 10,
                                        "http.route": "/v1/chat", "big": "y" * 1000})
    e = one(otlp_json_message([otlp_span(attrs)], resource={"service.name": "svc", "service.version": "1.2",
                                                            "cloud.region": "eu-west-1"}))
    assert e.tags == {"service.name": "svc", "service.version": "1.2", "server.address": "api.openai.com",
                      "team": "search", "http.route": "/v1/chat"}
    assert e.region == "eu-west-1"


def test_agent_and_tool_spans_are_their_own_series_not_llm_requests() -> None:
    from operators.shard import to_columns
    from operators.windows import extract
    from schemas.rows import COLUMN_NAMES

    spans = [
        otlp_span({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "travel-planner",
                   "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 900}, span_id="a" * 16),
        otlp_span({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"}, span_id="b" * 16,
                  error=True),
        otlp_span({"openinference.span.kind": "TOOL", "tool.name": "search"}, span_id="c" * 16),
        otlp_span({"openinference.span.kind": "CHAIN", "input.value": "x"}, span_id="d" * 16),  # not ours
        otlp_span(CURRENT_ATTRIBUTES, span_id="e" * 16),
    ]
    for encode in (otlp_json_message, otlp_proto_message):
        batch = run(encode(spans))
        assert not batch.dead_letters and batch.skipped_spans == 1
        steps = [(e.event_type, e.payload.operation, getattr(e.payload, "name", "")) for e in batch.events]
        assert steps == [("telemetry.agent", "invoke_agent", "travel-planner"),
                         ("telemetry.agent", "execute_tool", "get_weather"),
                         ("telemetry.agent", "execute_tool", "search"),
                         ("telemetry.request", "chat", "")]
        assert batch.events[1].payload.is_error and batch.events[0].payload.model == "gpt-4o"
        columns = dict(zip(COLUMN_NAMES, to_columns(batch.events)))
        assert columns["model"][:3] == ["invoke_agent:travel-planner", "execute_tool:get_weather", "execute_tool:search"]
        metrics = {m.name: m.values.tolist() for m in extract(columns)}
        assert [v == v for v in metrics["requests"]] == [False, False, False, True]  # only the model call
        assert [v == v for v in metrics["input_tokens"]] == [False, False, False, True]  # the agent's 900: not again
        assert metrics["agent_steps"][:3] == [0.0, 1.0, 0.0]
