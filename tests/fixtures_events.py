"""Example events for every event type in every wire format, for tests anywhere in the repo.

`PAYLOADS` holds one realistic canonical payload per event type (canonical units, USD). The
`*_message` builders turn them into the bytes a producer would send; normalizing those bytes
must give back exactly that payload. OTLP builders make LLM spans with current or legacy
GenAI attribute names. Times are fixed: normalize with `now_ms=NOW_MS`.
"""
from __future__ import annotations

from typing import Any

import msgspec

from schemas.events import (
    EVENT_TYPE_OF,
    AgentOperation,
    ApiCost,
    AssetDeprecated,
    AssetRegistered,
    AssetUpdated,
    AuditLogged,
    AuditTrail,
    AuthDecision,
    BudgetAlert,
    ComplianceCheck,
    ComplianceVerified,
    ComplianceViolation,
    DataLineage,
    ErrorOccurred,
    GovernanceViolation,
    Latency,
    LatencyBreakdown,
    LlmRequest,
    ModelPerformance,
    Payload,
    PolicyEvaluated,
    PolicyUpdated,
    PriceChange,
    PrivacyFinding,
    ResourceConsumption,
    ThreatDetected,
    Throughput,
    TokenCost,
    TokenUsage,
    VersionPromoted,
    VersionPublished,
    VersionRetired,
    ViolationDetected,
    VulnerabilityFound,
)
from schemas.raw import RawMessage

NOW_MS = 1_763_546_400_000  # 2025-11-19T10:00:00Z
EVENT_MS = NOW_MS - 60_000  # 2025-11-19T09:59:00Z
EVENT_ISO = "2025-11-19T09:59:00.000Z"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
PARENT_SPAN_ID = "53995c3f42cd8ad8"

PAYLOADS: dict[str, Payload] = {p.__struct_config__.tag: p for p in (
    LlmRequest(model="gpt-4o", latency_ms=812.5, provider="openai", operation="chat", response_model="gpt-4o-2024-08-06",
               request_id="chatcmpl-123", time_to_first_token_ms=210.25, input_tokens=640, output_tokens=212,
               cached_input_tokens=128, total_tokens=852, finish_reason="stop"),
    PriceChange(provider="openai", model="gpt-4o-mini", input=0.15, output=0.6, cached_input=0.075),
    AgentOperation(operation="invoke_agent", name="travel-planner", latency_ms=4210.0, model="gpt-4o",
                   provider="openai", span_name="invoke_agent travel-planner"),
    Latency(model="claude-3-5-sonnet", latency_ms=1500.0, provider="anthropic", request_id="req-9",
            breakdown=LatencyBreakdown(queue_ms=12.0, time_to_first_token_ms=300.0, generation_ms=1150.0),
            tokens_per_second=85.5),
    Throughput(model="gpt-4o-mini", requests_per_second=12.5, provider="openai", tokens_per_second=9000.0,
               concurrent_requests=42, window_ms=60_000.0),
    ErrorOccurred(error_type="rate_limit_exceeded", model="gpt-4o", provider="openai", error_code="429",
                  message="Rate limit reached", failed_requests=17, total_requests=2400),
    TokenUsage(model="gemini-1.5-pro", provider="gcp.gemini", request_id="req-77", input_tokens=1200,
               output_tokens=300, cached_input_tokens=0, reasoning_tokens=40, total_tokens=1500),
    ModelPerformance(model="gpt-4o", provider="openai", window_ms=300_000.0, request_count=5000, success_rate=0.995,
                     avg_latency_ms=640.0, p95_latency_ms=1800.0, quality_score=0.87, hallucination_rate=0.02),
    ThreatDetected(threat_type="prompt_injection", threat_id="thr-1", model="gpt-4o", asset_id="model-123",
                   user_id="user-321", source_ip="203.0.113.9", confidence=0.93, action_taken="blocked",
                   description="Ignore previous instructions pattern"),
    VulnerabilityFound(vulnerability_id="vuln-7", cve_id="CVE-2024-3094", component="xz-utils",
                       asset_id="inference-gateway", cvss_score=10.0, status="open"),
    ComplianceViolation(framework="GDPR", violation_id="cv-2", control_id="Art.5", asset_id="model-123",
                        description="prompt logs retained beyond 30 days", remediation="purge logs"),
    AuthDecision(kind="authorization", outcome="failure", user_id="user-321", method="api_key",
                 resource="/v1/chat/completions", reason="scope missing"),
    PrivacyFinding(data_type="email", action="redacted", model="gpt-4o", user_id="user-5", records_affected=2),
    TokenCost(model="gpt-4o", total_cost=0.00372, provider="openai", request_id="chatcmpl-123", input_tokens=640,
              output_tokens=212, input_cost=0.0016, output_cost=0.00212),
    ApiCost(provider="openai", total_cost=0.8, service="image-generation", model="dall-e-3", request_count=20),
    ResourceConsumption(resource_type="gpu", resource_id="gpu-node-3", model="llama-3.1-70b",
                        duration_ms=3_600_000.0, gpu_count=8, memory_bytes=687_194_767_360, utilization=0.71,
                        total_cost=31.5),
    BudgetAlert(budget_id="budget-search", limit=10_000.0, spent=8_350.0, budget_name="search monthly",
                scope="search", period="monthly", threshold=0.8, forecast=10_900.0),
    GovernanceViolation(policy_id="pol-pii", violation_id="gv-1", policy_name="No PII in prompts",
                        violation_type="dataPrivacy", asset_id="model-123", model="gpt-4o", action_taken="masked"),
    AuditTrail(actor="user-12", action="export_report", audit_id="aud-1", resource_type="dashboard",
               resource_id="compliance-weekly", outcome="success", ip="198.51.100.7", details={"format": "pdf"}),
    ComplianceCheck(framework="SOC2", passed=True, check_id="chk-1", control_id="CC6.1", asset_id="model-123",
                    score=0.97, findings=0),
    DataLineage(source_asset_id="dataset-tickets-2024", target_asset_id="support-model-ft", lineage_id="lin-1",
                operation="fine_tune", pipeline_id="ft-42", records=120_000, size_bytes=1_610_612_736,
                contains_pii=False),
    AssetRegistered(asset_id="model-123", asset_name="GPT-4-Turbo", asset_type="model", version="1.2.0",
                    owner="ml-team", category="language-model", provider="openai",
                    tags=["production", "high-performance"]),
    AssetUpdated(asset_id="model-123", asset_name="GPT-4-Turbo", version="1.2.0", owner="platform-team",
                 changed_fields=["owner"]),
    AssetDeprecated(asset_id="model-123", asset_name="GPT-4-Turbo", reason="superseded",
                    replacement_asset_id="model-456", sunset_date="2026-03-31"),
    VersionPublished(asset_id="model-123", version="1.3.0", previous_version="1.2.0", owner="ml-team"),
    VersionPromoted(asset_id="model-123", version="1.3.0", to_stage="production", from_stage="staging"),
    VersionRetired(asset_id="model-123", version="1.1.0", reason="end of support"),
    PolicyEvaluated(policy_id="pol-456", decision="denied", evaluation_id="eval-1", policy_name="Rate limit",
                    asset_id="model-123", model="gpt-4o", user_id="user-321", evaluation_ms=2.5, rules_evaluated=12),
    ViolationDetected(policy_id="pol-456", violation_id="vio-789", violation_type="rateLimit", asset_id="model-123",
                      description="Rate limit exceeded"),
    ComplianceVerified(policy_id="pol-456", evaluation_id="eval-2", asset_id="model-123", framework="SOC2",
                       compliance_rate=0.97),
    PolicyUpdated(policy_id="pol-456", change_type="updated", policy_name="Rate limit", policy_type="usage",
                  version="3", enforcement_mode="active", changed_by="governance-bot"),
    AuditLogged(actor="user-321", action="override", audit_id="aud-9", resource="pol-456", outcome="success",
                policy_id="pol-456", details={"ticket": "OPS-12"}),
)}
assert set(PAYLOADS) == set(EVENT_TYPE_OF.values()), "one example per event type"

# The integration note's source names, as a base-format producer writes them.
BASE_SOURCE = {"telemetry": "observatory", "security": "sentinel", "cost": "costops",
               "governance": "governance-dashboard", "registry": "registry", "policy": "policy-engine"}


def event_id(event_type: str, fmt: str) -> str:
    return f"{fmt}-{event_type}"


def hub_message(event_type: str, **overrides: Any) -> bytes:
    """The example of `event_type` as a hub envelope."""
    payload = msgspec.to_builtins(PAYLOADS[event_type])
    payload.pop("type", None)
    msg = {
        "event_id": event_id(event_type, "hub"), "event_type": event_type, "event_time": EVENT_MS,
        "source": type(PAYLOADS[event_type]).SOURCE, "schema_version": "1.0.0", "correlation_id": TRACE_ID,
        "severity": "info", "environment": "prod", "region": "us-east-1",
        "tags": {"team": "search", "endpoint": "/v1/chat/completions"}, "payload": payload,
    }
    msg.update(overrides)
    return msgspec.json.encode(msg)


def camel(obj: Any) -> Any:
    """snake_case keys -> camelCase, recursively (the base format's naming)."""
    if isinstance(obj, dict):
        return {_camel(k): camel(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [camel(v) for v in obj]
    return obj


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def base_message(event_type: str, *, data: dict[str, Any] | None = None, **overrides: Any) -> bytes:
    """The example of `event_type` in the integration note's base event schema."""
    if data is None:
        data = msgspec.to_builtins(PAYLOADS[event_type])
        data.pop("type", None)
        data = camel(data)
    msg = {
        "eventId": event_id(event_type, "base"), "eventType": event_type,
        "source": BASE_SOURCE[type(PAYLOADS[event_type]).SOURCE], "timestamp": EVENT_ISO, "version": "1.0.0",
        "data": data, "metadata": {"region": "us-east-1", "correlationId": TRACE_ID, "team": "search"},
    }
    msg.update(overrides)
    return msgspec.json.encode(msg)


# The two example events of the integration note, verbatim.
NOTE_REGISTRY_EVENT = b"""{
  "eventId": "550e8400-e29b-41d4-a716-446655440000",
  "eventType": "asset.registered",
  "source": "registry",
  "timestamp": "2025-11-19T10:00:00.000Z",
  "version": "1.0.0",
  "data": {"assetId": "model-123", "assetName": "GPT-4-Turbo", "version": "1.2.0", "owner": "ml-team"},
  "metadata": {"region": "us-east-1"}
}"""
NOTE_VIOLATION_EVENT = b"""{
  "eventId": "660e8400-e29b-41d4-a716-446655440001",
  "eventType": "violation.detected",
  "source": "policy-engine",
  "timestamp": "2025-11-19T10:05:00.000Z",
  "version": "1.0.0",
  "data": {"violationId": "vio-789", "policyId": "pol-456", "assetId": "model-123", "severity": "high",
           "description": "Rate limit exceeded"},
  "metadata": {"userId": "user-321"}
}"""

# --- OTLP ---------------------------------------------------------------------------------------

# The example LlmRequest as span attributes, with today's GenAI names and with older ones.
CURRENT_ATTRIBUTES: dict[str, Any] = {
    "gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.response.id": "chatcmpl-123",
    "gen_ai.usage.input_tokens": 640, "gen_ai.usage.output_tokens": 212,
    "gen_ai.usage.cache_read.input_tokens": 128, "gen_ai.response.finish_reasons": ["stop"],
    "server.address": "api.openai.com", "team": "search",
}
LEGACY_ATTRIBUTES: dict[str, Any] = {  # OpenLLMetry / OpenInference era names for the same call
    "gen_ai.system": "openai", "llm.request.type": "chat", "llm.request.model": "gpt-4o",
    "llm.response.model": "gpt-4o-2024-08-06", "gen_ai.response.id": "chatcmpl-123",
    "gen_ai.usage.prompt_tokens": 640, "gen_ai.usage.completion_tokens": 212, "llm.usage.total_tokens": 852,
    "gen_ai.usage.cache_read_input_tokens": 128, "llm.response.finish_reason": "stop",
    "server.address": "api.openai.com", "team": "search",
}
OPENINFERENCE_ATTRIBUTES: dict[str, Any] = {
    "llm.provider": "openai", "llm.system": "openai", "llm.model_name": "gpt-4o-2024-08-06",
    "llm.invocation_parameters": '{"model": "gpt-4o", "temperature": 0}',
    "llm.token_count.prompt": 640, "llm.token_count.completion": 212, "llm.token_count.total": 852,
    "llm.token_count.prompt_details.cache_read": 128, "server.address": "api.openai.com", "team": "search",
}
RESOURCE_ATTRIBUTES: dict[str, Any] = {"service.name": "search-api", "deployment.environment.name": "prod",
                                       "cloud.region": "us-east-1"}
SPAN_START_NS = EVENT_MS * 1_000_000
SPAN_END_NS = SPAN_START_NS + 812_500_000  # 812.5 ms


def _json_value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [_json_value(x) for x in v]}}
    return {"stringValue": v}


def otlp_span(attributes: dict[str, Any], *, span_id: str = SPAN_ID, parent: str = PARENT_SPAN_ID,
              start_ns: int = SPAN_START_NS, end_ns: int = SPAN_END_NS, error: bool = False,
              name: str = "chat gpt-4o") -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": TRACE_ID, "spanId": span_id, "parentSpanId": parent, "name": name, "kind": 3,
        "startTimeUnixNano": str(start_ns), "endTimeUnixNano": str(end_ns),
        "attributes": [{"key": k, "value": _json_value(v)} for k, v in attributes.items()],
        "status": {"code": 2, "message": "upstream error"} if error else {},
    }
    return span


def otlp_json_message(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> bytes:
    """An ExportTraceServiceRequest in OTLP/JSON holding `spans` under one resource."""
    res = RESOURCE_ATTRIBUTES if resource is None else resource
    return msgspec.json.encode({"resourceSpans": [{
        "resource": {"attributes": [{"key": k, "value": _json_value(v)} for k, v in res.items()]},
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"},
                        "spans": spans}],
    }]})


def otlp_proto_message(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> bytes:
    """The same as `otlp_json_message`, as OTLP protobuf bytes (what `otlp_proto` encoding writes)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    obj = msgspec.json.decode(otlp_json_message(spans, resource))
    for rs in obj["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:  # protobuf's JSON mapping wants base64 ids; OTLP/JSON uses hex
                for key in ("traceId", "spanId", "parentSpanId"):
                    if sp.get(key):
                        sp[key] = _b64(bytes.fromhex(sp[key]))
    return json_format.ParseDict(obj, ExportTraceServiceRequest()).SerializeToString()


def _b64(b: bytes) -> str:
    import base64

    return base64.b64encode(b).decode()


def expected_span_payload(attributes: dict[str, Any]) -> LlmRequest:
    """The LlmRequest that one of the example attribute sets above must normalize to."""
    return LlmRequest(
        model="gpt-4o", latency_ms=812.5, provider="openai",
        operation=attributes.get("gen_ai.operation.name", attributes.get("llm.request.type", "")),
        response_model=attributes.get("gen_ai.response.model", attributes.get("llm.response.model",
                                                                              attributes.get("llm.model_name", ""))),
        request_id=attributes.get("gen_ai.response.id", ""), input_tokens=640, output_tokens=212,
        cached_input_tokens=128, total_tokens=852,
        finish_reason="stop" if ("gen_ai.response.finish_reasons" in attributes
                                 or "llm.response.finish_reason" in attributes) else "",
        span_name="chat gpt-4o",
    )


def raw(value: bytes, topic: str = "fixtures", offset: int = 0, timestamp_ms: int = 0) -> RawMessage:
    return RawMessage(value=value, topic=topic, partition=0, offset=offset, timestamp_ms=timestamp_ms)
