"""Every event family round-trips from every wire format that can carry it."""
from __future__ import annotations

import json
import pickle
from typing import Any

import msgspec
import pytest

from operators.normalize import Normalizer
from schemas.events import EVENT_CLASSES, EVENT_TYPES, Event, LlmRequest, new_event
from schemas.vocabulary import SOURCES
from schemas.jsonschema import PACKAGED_DIR, export_json_schemas
from schemas.wire import BaseMessage, HubMessage
from tests.fixtures_events import (
    CURRENT_ATTRIBUTES,
    EVENT_MS,
    LEGACY_ATTRIBUTES,
    NOTE_REGISTRY_EVENT,
    NOTE_VIOLATION_EVENT,
    NOW_MS,
    OPENINFERENCE_ATTRIBUTES,
    PAYLOADS,
    TRACE_ID,
    base_message,
    expected_span_payload,
    hub_message,
    otlp_json_message,
    otlp_proto_message,
    otlp_span,
    raw,
)

FAMILIES = sorted({type(p).SOURCE for p in PAYLOADS.values()})


def normalize_one(value: bytes) -> Event:
    batch = Normalizer().normalize_batch([raw(value)], now_ms=NOW_MS)
    assert not batch.dead_letters, [d.reason for d in batch.dead_letters]
    assert len(batch.events) == 1
    return batch.events[0]


def test_fixtures_cover_every_family_and_type() -> None:
    assert FAMILIES == sorted(SOURCES)
    assert set(PAYLOADS) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_hub_envelope_round_trip(event_type: str) -> None:
    e = normalize_one(hub_message(event_type))
    assert e.event_type == event_type
    assert e.payload == PAYLOADS[event_type]
    assert (e.event_id, e.event_time_ms, e.ingest_time_ms) == (f"hub-{event_type}", EVENT_MS, NOW_MS)
    assert e.source == type(PAYLOADS[event_type]).SOURCE
    assert (e.correlation_id, e.environment, e.region, e.severity) == (TRACE_ID, "prod", "us-east-1", "info")
    assert e.tags == {"team": "search", "endpoint": "/v1/chat/completions"}


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_base_event_round_trip(event_type: str) -> None:
    e = normalize_one(base_message(event_type))
    assert e.event_type == event_type
    assert e.payload == PAYLOADS[event_type]
    assert (e.event_id, e.event_time_ms) == (f"base-{event_type}", EVENT_MS)
    assert e.source == type(PAYLOADS[event_type]).SOURCE  # note names (costops, sentinel...) map to modules
    assert (e.correlation_id, e.region, e.tags) == (TRACE_ID, "us-east-1", {"team": "search"})


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_normalized_event_encodes_to_a_hub_message_that_normalizes_to_itself(event_type: str) -> None:
    first = normalize_one(base_message(event_type))
    again = normalize_one(msgspec.json.encode(first))
    assert again == first
    assert pickle.loads(pickle.dumps(first)) == first  # Events travel through Bytewax


@pytest.mark.parametrize("attributes", [CURRENT_ATTRIBUTES, LEGACY_ATTRIBUTES, OPENINFERENCE_ATTRIBUTES],
                         ids=["current", "legacy", "openinference"])
@pytest.mark.parametrize("encode", [otlp_json_message, otlp_proto_message], ids=["otlp_json", "otlp_proto"])
def test_otlp_span_round_trip(attributes: dict, encode) -> None:  # type: ignore[no-untyped-def]
    e = normalize_one(encode([otlp_span(attributes)]))
    assert e.event_type == "telemetry.request"
    assert e.payload == expected_span_payload(attributes)
    assert (e.event_id, e.correlation_id, e.parent_event_id) == ("00f067aa0ba902b7", TRACE_ID, "53995c3f42cd8ad8")
    assert (e.event_time_ms, e.environment, e.region) == (EVENT_MS, "prod", "us-east-1")
    assert e.tags == {"service.name": "search-api", "server.address": "api.openai.com", "team": "search"}


def test_otlp_json_and_proto_give_identical_events() -> None:
    spans = [otlp_span(CURRENT_ATTRIBUTES), otlp_span(LEGACY_ATTRIBUTES, span_id="1111111111111111", error=True)]
    n = Normalizer()
    from_json = n.normalize_batch([raw(otlp_json_message(spans))], now_ms=NOW_MS).events
    from_proto = n.normalize_batch([raw(otlp_proto_message(spans))], now_ms=NOW_MS).events
    assert len(from_json) == 2
    assert from_json == from_proto


def test_integration_note_examples_verbatim() -> None:
    n = Normalizer()
    batch = n.normalize_batch([raw(NOTE_REGISTRY_EVENT), raw(NOTE_VIOLATION_EVENT)], now_ms=NOW_MS + 600_000)
    assert not batch.dead_letters
    reg, vio = batch.events
    assert reg.event_type == "asset.registered" and reg.source == "registry"
    assert (reg.payload.asset_id, reg.payload.asset_name, reg.payload.version, reg.payload.owner) == (
        "model-123", "GPT-4-Turbo", "1.2.0", "ml-team")
    assert reg.region == "us-east-1" and reg.event_time_ms == 1_763_546_400_000
    assert vio.event_type == "violation.detected" and vio.source == "policy"
    assert vio.severity == "high"  # lifted from data.severity
    assert vio.payload.policy_id == "pol-456" and vio.tags == {"userId": "user-321"}


def test_new_event_builds_the_subclass_for_the_payload() -> None:
    e = new_event("id-1", EVENT_MS, LlmRequest(model="m", latency_ms=1.0))
    assert type(e) is EVENT_CLASSES[LlmRequest] and isinstance(e, Event)
    assert (e.event_type, e.source, e.severity) == ("telemetry.request", "telemetry", "info")
    assert msgspec.json.decode(msgspec.json.encode(e), type=HubMessage) == e


def test_json_schema_export_covers_every_format_and_type(tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths = export_json_schemas(tmp_path / "schemas")
    names = {p.name for p in paths}
    assert {"hub-envelope.schema.json", "base-event.schema.json", "otlp-json.schema.json", "README.md"} <= names
    hub = json.loads((tmp_path / "schemas" / "hub-envelope.schema.json").read_text())
    base = json.loads((tmp_path / "schemas" / "base-event.schema.json").read_text())
    otlp = json.loads((tmp_path / "schemas" / "otlp-json.schema.json").read_text())
    assert set(hub["discriminator"]["mapping"]) == set(EVENT_TYPES)
    assert hub["discriminator"]["propertyName"] == "event_type"
    assert set(base["discriminator"]["mapping"]) == set(EVENT_TYPES)
    assert base["discriminator"]["propertyName"] == "eventType"
    assert "resourceSpans" in otlp["$defs"]["OtlpTraces"]["properties"]
    # rules producers can check before sending: ranges, required fields, formats
    llm = hub["$defs"]["LlmRequest"]
    assert llm["properties"]["input_tokens"]["anyOf"][0]["minimum"] == 0
    assert set(llm["required"]) == {"model", "latency_ms"}
    assert "pattern" in hub["$defs"]["LlmRequestEvent"]["properties"]["schema_version"]
    base_latency = base["$defs"]["LatencyData"]["properties"]["latencyMs"]
    assert {"type": "string"} in base_latency["anyOf"]  # unit strings accepted in the base format


def test_wire_decoders_accept_the_fixtures_directly() -> None:
    hub = msgspec.json.Decoder(HubMessage)
    base = msgspec.json.Decoder(BaseMessage)
    for t in PAYLOADS:
        assert hub.decode(hub_message(t)).event_type == t
        assert type(base.decode(base_message(t))).__name__.startswith("Base")


def _as_data(node: Any) -> Any:
    """A schema as data: descriptions compared word by word, since msgspec's docstring cleaning
    (indentation, line breaks) changes between releases without changing the schema."""
    if isinstance(node, dict):
        return {k: " ".join(v.split()) if k == "description" and isinstance(v, str) else _as_data(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_as_data(v) for v in node]
    return node


def test_packaged_json_schemas_are_up_to_date(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fresh = export_json_schemas(tmp_path)
    for path in fresh:
        packaged = PACKAGED_DIR / path.name
        assert packaged.exists(), f"{packaged} missing; run: hub schema export {PACKAGED_DIR}"
        if path.suffix == ".json":
            stale = _as_data(json.loads(packaged.read_text())) != _as_data(json.loads(path.read_text()))
        else:
            stale = packaged.read_text() != path.read_text()
        assert not stale, f"{packaged} is stale; run: hub schema export {PACKAGED_DIR}"
