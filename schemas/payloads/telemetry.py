"""Telemetry payloads (LLM-Observatory, OTLP spans): requests, latency, throughput, errors, tokens.

`LlmRequest` is what one LLM span becomes; the others are the Observatory's own event types.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

from schemas.payloads.base import Payload
from schemas.scalars import Count, DurationMs, Money, PerSecond, Ratio

# reported: the input said; inferred: tokens x the price table; unknown: neither was possible.
CostSource = Literal["", "reported", "inferred", "unknown"]


class LlmRequest(Payload, tag="telemetry.request"):
    """One model call (what an LLM span records): latency, token usage and outcome together.

    Both current and legacy OpenTelemetry GenAI attribute names map onto this one payload.
    """

    SOURCE: ClassVar[str] = "telemetry"
    model: str
    latency_ms: DurationMs
    provider: str = ""
    operation: str = ""
    response_model: str = ""
    request_id: str = ""
    time_to_first_token_ms: DurationMs | None = None
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    cached_input_tokens: Count | None = None
    total_tokens: Count | None = None
    is_error: bool = False
    error_type: str = ""
    finish_reason: str = ""
    span_name: str = ""
    # Part of input_tokens (OTel counting): tokens written to the provider's prompt cache.
    cache_write_tokens: Count | None = None
    # Part of output_tokens (OTel counting): hidden reasoning tokens.
    reasoning_tokens: Count | None = None
    # What the call cost, when the producer reports it; otherwise the hub infers it from the
    # price table and says which in `cost_source` (set by the hub, not by producers).
    cost_usd: Money | None = None
    cost_source: CostSource = ""


# GenAI operation names of agent and tool spans: steps of an agent, not model calls.
AGENT_OPERATIONS = frozenset(("create_agent", "invoke_agent", "execute_tool"))


class AgentOperation(Payload, tag="telemetry.agent"):
    """One agent or tool step (an `invoke_agent`, `create_agent` or `execute_tool` span): its own
    series, never an LLM request, so a run's model calls (their own spans) are not counted twice."""

    SOURCE: ClassVar[str] = "telemetry"
    operation: str
    name: str
    latency_ms: DurationMs
    model: str = ""
    provider: str = ""
    is_error: bool = False
    error_type: str = ""
    span_name: str = ""


class LatencyBreakdown(msgspec.Struct, omit_defaults=True, gc=False):
    """Where the time of one request went."""

    queue_ms: DurationMs | None = None
    time_to_first_token_ms: DurationMs | None = None
    processing_ms: DurationMs | None = None
    generation_ms: DurationMs | None = None
    network_ms: DurationMs | None = None


class Latency(Payload, tag="telemetry.latency"):
    """Latency of one request with its breakdown (time to first token, queue, generation...)."""

    SOURCE: ClassVar[str] = "telemetry"
    model: str
    latency_ms: DurationMs
    provider: str = ""
    request_id: str = ""
    breakdown: LatencyBreakdown | None = None
    tokens_per_second: PerSecond | None = None


class Throughput(Payload, tag="telemetry.throughput"):
    """Request and token rates of one model over a measurement window."""

    SOURCE: ClassVar[str] = "telemetry"
    model: str
    requests_per_second: PerSecond
    provider: str = ""
    tokens_per_second: PerSecond | None = None
    concurrent_requests: Count | None = None
    window_ms: DurationMs | None = None


class ErrorOccurred(Payload, tag="telemetry.error"):
    """Failed requests: one error (failed_requests=1) or a count over a window."""

    SOURCE: ClassVar[str] = "telemetry"
    error_type: str
    model: str = ""
    provider: str = ""
    request_id: str = ""
    error_code: str = ""
    message: str = ""
    failed_requests: Count = 1
    total_requests: Count | None = None


class TokenUsage(Payload, tag="telemetry.tokens"):
    """Tokens consumed by one request (or one accounting period)."""

    SOURCE: ClassVar[str] = "telemetry"
    model: str
    provider: str = ""
    request_id: str = ""
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    cached_input_tokens: Count | None = None
    reasoning_tokens: Count | None = None
    total_tokens: Count | None = None


class ModelPerformance(Payload, tag="telemetry.performance"):
    """Quality and latency figures of a model over a window, as an evaluator reports them."""

    SOURCE: ClassVar[str] = "telemetry"
    model: str
    provider: str = ""
    window_ms: DurationMs | None = None
    request_count: Count | None = None
    success_rate: Ratio | None = None
    avg_latency_ms: DurationMs | None = None
    p50_latency_ms: DurationMs | None = None
    p95_latency_ms: DurationMs | None = None
    p99_latency_ms: DurationMs | None = None
    quality_score: Ratio | None = None
    accuracy: Ratio | None = None
    hallucination_rate: Ratio | None = None
