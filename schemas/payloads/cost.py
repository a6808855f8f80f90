"""Cost payloads (LLM-CostOps): token, API and infrastructure costs, budget alerts.

Money is in `currency` on the wire; the normalizer converts it to USD.
"""
from __future__ import annotations

from typing import ClassVar

from schemas.payloads.base import Payload
from schemas.scalars import Count, Currency, DurationMs, Money, Ratio, SizeBytes


class TokenCost(Payload, tag="cost.tokens"):
    """What the tokens of one request (or period) cost."""

    SOURCE: ClassVar[str] = "cost"
    model: str
    total_cost: Money
    provider: str = ""
    request_id: str = ""
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    cached_input_tokens: Count | None = None
    input_cost: Money | None = None
    output_cost: Money | None = None
    currency: Currency = "USD"


class ApiCost(Payload, tag="cost.api"):
    """A charge for API usage not priced per token (per call, per image, per minute...)."""

    SOURCE: ClassVar[str] = "cost"
    provider: str
    total_cost: Money
    service: str = ""
    endpoint: str = ""
    model: str = ""
    request_count: Count | None = None
    currency: Currency = "USD"


class ResourceConsumption(Payload, tag="cost.resource"):
    """Infrastructure consumed (GPU, CPU, memory, storage, network) and its cost."""

    SOURCE: ClassVar[str] = "cost"
    resource_type: str
    resource_id: str = ""
    model: str = ""
    duration_ms: DurationMs | None = None
    gpu_count: Count | None = None
    memory_bytes: SizeBytes | None = None
    storage_bytes: SizeBytes | None = None
    network_bytes: SizeBytes | None = None
    utilization: Ratio | None = None
    total_cost: Money | None = None
    currency: Currency = "USD"


class BudgetAlert(Payload, tag="cost.budget"):
    """Spend crossed an alert threshold of a budget."""

    SOURCE: ClassVar[str] = "cost"
    budget_id: str
    limit: Money
    spent: Money
    budget_name: str = ""
    scope: str = ""
    period: str = ""
    threshold: Ratio | None = None
    forecast: Money | None = None
    currency: Currency = "USD"


class PriceChange(Payload, tag="cost.price"):
    """A model's token prices from this event's time on, per 1M tokens in `currency` (USD once
    normalized), as a CostOps system announces them: calls at or after the event time are priced
    with it, and `hub run` reloads every price change it stored when it starts."""

    SOURCE: ClassVar[str] = "cost"
    provider: str
    model: str
    input: Money
    output: Money
    cached_input: Money | None = None
    cache_write: Money | None = None
    reasoning: Money | None = None
    currency: Currency = "USD"
