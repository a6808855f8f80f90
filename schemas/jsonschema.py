"""JSON Schemas of the accepted JSON wire formats and of the outbound feeds, generated from the
msgspec Structs.

Producers validate against the input schemas before sending; they are generated from the same
Structs the normalizer decodes with, so they cannot drift. `otlp_proto` has no JSON Schema: its
schema is the OpenTelemetry protobuf definition (ExportTraceServiceRequest). Feed consumers read
the feed schemas, generated from the Structs the flow encodes its feed records from.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from schemas.events import EVENT_TYPES, PAYLOAD_TYPES
from schemas.feeds import AssetProfileEvent, AuditEntry, ComplianceReport, UsageRecord, ViolationReport
from schemas.wire import BaseMessage, HubMessage, OtlpTraces

DRAFT = "https://json-schema.org/draft/2020-12/schema"
# Where the repository keeps the exported copies (shipped as package data, linked from README).
PACKAGED_DIR = Path(__file__).with_name("json")

# file name -> (title, description, type)
SCHEMAS: dict[str, tuple[str, str, Any]] = {
    "hub-envelope.schema.json": (
        "LLM Analytics Hub envelope",
        "The hub's own event format: common fields, `event_type` selects the payload. Units are "
        "canonical (durations ms, sizes bytes, rates per second, money in `currency`).",
        HubMessage,
    ),
    "base-event.schema.json": (
        "LLM platform base event",
        "The integration patterns' base event schema (eventId, eventType, source, timestamp, version, "
        "data, metadata). Duration, size and rate fields in `data` also accept strings with a unit.",
        BaseMessage,
    ),
    "otlp-json.schema.json": (
        "OTLP/JSON traces (ExportTraceServiceRequest)",
        "What the OpenTelemetry Collector's Kafka exporter writes with encoding otlp_json. LLM spans are "
        "recognized by their gen_ai.* / llm.* attributes; other spans are skipped.",
        OtlpTraces,
    ),
}


# Outbound feeds: file name -> (title, description, record type, [kafka.topics] key).
FEED_SCHEMAS: dict[str, tuple[str, str, Any, str]] = {
    "feed-usage.schema.json": (
        "CostOps usage feed", "Hourly usage per team and model for cost allocation: requests, errors, tokens by "
        "kind, billed spend. Keyed by `id`; a higher `version` supersedes.", UsageRecord, "usage_feed"),
    "feed-compliance.schema.json": (
        "Compliance feed", "Compliance report per hour and day, for everything, per asset and per team (the rows "
        "of `compliance_reports`). Keyed by `id`; a higher `version` supersedes.", ComplianceReport,
        "compliance_feed"),
    "feed-violation.schema.json": (
        "Violation reports", "One policy or governance violation as it arrives, with its registry asset. Keyed by "
        "`id` (the event id).", ViolationReport, "violation_feed"),
    "feed-audit.schema.json": (
        "Audit trail", "One audit record of the governance dashboard or the policy engine. Keyed by `id` (the "
        "event id).", AuditEntry, "audit_feed"),
    "feed-asset-profile.schema.json": (
        "Asset profile analytics event", "Emitted when a registry event creates or updates an asset profile; "
        "`profile` is the asset after it. Keyed by `asset_id`.", AssetProfileEvent, "asset_feed"),
}

_PAYLOAD_NAMES = {p.__name__ for p in PAYLOAD_TYPES}


def schema_for(title: str, description: str, typ: Any) -> dict[str, Any]:
    out = msgspec.json.schema(typ)
    for name, definition in out.get("$defs", {}).items():
        # A payload's own `type` tag is optional inside an envelope (the envelope's event type
        # already says it); msgspec lists it as required because the Struct is tagged.
        if name in _PAYLOAD_NAMES and "type" in definition.get("required", ()):
            definition["required"] = [r for r in definition["required"] if r != "type"]
            definition["properties"]["type"]["description"] = "Optional; equals the envelope's event type."
    return {"$schema": DRAFT, "title": title, "description": description, **out}


def export_json_schemas(directory: str | Path) -> list[Path]:
    """Write one JSON Schema file per accepted JSON wire format and per outbound feed into
    `directory`; return the paths."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    every = {**SCHEMAS, **{name: (title, text, typ) for name, (title, text, typ, _) in FEED_SCHEMAS.items()}}
    for name, (title, description, typ) in every.items():
        path = target / name
        path.write_text(json.dumps(schema_for(title, description, typ), indent=2, sort_keys=False) + "\n",
                        encoding="utf-8")
        written.append(path)
    index = target / "README.md"
    index.write_text(_index(), encoding="utf-8")
    written.append(index)
    return written


def _index() -> str:
    lines = [
        "# Wire-format JSON Schemas",
        "",
        "Generated by `hub schema export DIR` from the Structs the normalizer decodes with.",
        "",
    ]
    for name, (title, description, _) in SCHEMAS.items():
        lines += [f"- [`{name}`]({name}) — {title}: {description}"]
    lines += [
        "- `otlp_proto` — OTLP protobuf `ExportTraceServiceRequest` (no JSON Schema; see opentelemetry-proto).",
        "- `otlp_metrics_json` / `otlp_metrics_proto`, `otlp_logs_json` / `otlp_logs_proto` — OTLP "
        "`ExportMetricsServiceRequest` / `ExportLogsServiceRequest` in OTLP/JSON or protobuf (no JSON Schema; "
        "see opentelemetry-proto): GenAI client metric histograms feed the windows; log records are counted.",
        "",
        f"Event types ({len(EVENT_TYPES)}): " + ", ".join(f"`{t}`" for t in EVENT_TYPES),
        "",
        "# Outbound feed JSON Schemas",
        "",
        "One JSON record per Kafka message on the topic named in `[kafka.topics]`; generated from the Structs "
        "the flow encodes them from (schemas/feeds.py). Topics are at least once: consumers upsert on the key.",
        "",
    ]
    for name, (title, description, _, topic) in FEED_SCHEMAS.items():
        lines += [f"- [`{name}`]({name}) — {title} (`[kafka.topics] {topic}`): {description}"]
    lines += [""]
    return "\n".join(lines)
