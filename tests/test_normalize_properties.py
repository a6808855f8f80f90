"""Property tests: no input crashes the normalizer; every input becomes events or dead letters."""
from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.normalization import NormalizationSettings
from operators.normalize import REASON_CODES, Normalizer, reason_code
from schemas.events import AnyEvent
from schemas.vocabulary import SEVERITIES, SOURCES
from schemas.raw import RawMessage
from tests.fixtures_events import (
    CURRENT_ATTRIBUTES,
    NOW_MS,
    PAYLOADS,
    base_message,
    hub_message,
    otlp_json_message,
    otlp_span,
)

STRICT = Normalizer(NormalizationSettings(mode="strict"))
LENIENT = Normalizer(NormalizationSettings(mode="lenient"))
EVENT_DECODER = msgspec.json.Decoder(AnyEvent)
FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=25,
)


def check(normalizer: Normalizer, value: bytes) -> None:
    """The contract: no exception; at least one outcome; outcomes are valid events or explained letters."""
    msg = RawMessage(value=value, topic="fuzz", partition=1, offset=7, timestamp_ms=NOW_MS)
    batch = normalizer.normalize_batch([msg], now_ms=NOW_MS)
    assert len(batch.events) + len(batch.dead_letters) + batch.skipped_spans >= 1
    for d in batch.dead_letters:
        assert reason_code(d) in REASON_CODES
        assert d.reason and d.topic == "fuzz" and d.partition == 1 and d.offset == 7
        assert d.code != "internal_error", d.reason
    assert sum(batch.dead_letter_counts.values()) == len(batch.dead_letters)
    for e in batch.events:
        # an Event re-validates against its own wire schema (types, ranges, required fields)
        assert EVENT_DECODER.decode(msgspec.json.encode(e)) == e
        assert type(e.event_time_ms) is int and e.ingest_time_ms == NOW_MS
        assert e.source in SOURCES and e.severity in SEVERITIES and e.event_id


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(value: bytes) -> None:
    check(STRICT, value)
    check(LENIENT, value)


@FAST
@given(json_values)
def test_arbitrary_json_never_crashes(value: Any) -> None:
    encoded = msgspec.json.encode(value)
    check(STRICT, encoded)
    check(LENIENT, encoded)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _replace(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    obj = dict(obj) if isinstance(obj, dict) else list(obj)
    obj[head] = _replace(obj[head], tuple(rest), value)
    return obj


VALID = ([hub_message(t) for t in sorted(PAYLOADS)] + [base_message(t) for t in sorted(PAYLOADS)]
         + [otlp_json_message([otlp_span(CURRENT_ATTRIBUTES)])])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.data(), json_values)
def test_valid_messages_with_one_field_replaced_never_crash(value: bytes, data: st.DataObject, junk: Any) -> None:
    obj = msgspec.json.decode(value)
    path = data.draw(st.sampled_from(_paths(obj)))
    mutated = msgspec.json.encode(_replace(obj, path, junk))
    check(STRICT, mutated)
    check(LENIENT, mutated)


@FAST
@given(st.sampled_from(VALID), st.integers(min_value=0, max_value=2000))
def test_truncated_messages_never_crash(value: bytes, cut: int) -> None:
    check(STRICT, value[:cut])


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_protobuf_looking_bytes_never_crash(tail: bytes) -> None:
    check(STRICT, b"\x0a" + tail)


attribute_values = (st.text(max_size=20) | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.booleans()
                    | st.floats(allow_nan=False, allow_infinity=False) | st.lists(st.text(max_size=5), max_size=3))
attribute_keys = st.sampled_from(sorted(CURRENT_ATTRIBUTES) + [
    "gen_ai.system", "llm.model_name", "gen_ai.usage.prompt_tokens", "llm.usage.total_tokens", "error.type",
    "gen_ai.server.time_to_first_token", "deployment.environment.name", "x"])


@FAST
@given(st.dictionaries(attribute_keys, attribute_values, max_size=8),
       st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(min_value=0, max_value=2**64 - 1),
       st.booleans())
def test_arbitrary_span_attributes_and_times_never_crash(attrs: dict, start: int, end: int, proto: bool) -> None:
    from tests.fixtures_events import otlp_proto_message

    span = otlp_span(attrs, start_ns=start, end_ns=end)
    if proto:
        if start < 0:
            return  # fixed64 cannot hold it; the JSON path covers negative times
        value = otlp_proto_message([span])
    else:
        value = otlp_json_message([span])
    check(STRICT, value)
    check(LENIENT, value)
